//! The engine's daemon configuration, `/etc/containai/docker/daemon.json`, which the engine unit
//! hands to dockerd with `--config-file`. It is built as JSON from the same checked values as the
//! unit (socket, data root, exec root, pid file), so no value can leak into another key, and it is
//! compared with the file on disk like a unit: trailing newlines do not count.
//!
//! Pure: values in, text out.

use serde_json::json;

use super::unit::UnitValues;

/// The runtime every container of the engine runs under.
pub const SYSBOX_RUNC: &str = "/usr/bin/sysbox-runc";

/// The daemon configuration for `values`, pretty-printed with a final newline.
pub fn render(values: &UnitValues) -> String {
    let config = json!({
        "hosts": [format!("unix://{}", values.socket.as_str())],
        "data-root": values.data_root.as_str(),
        "exec-root": values.exec_root.as_str(),
        "pidfile": values.pidfile.as_str(),
        "runtimes": { "sysbox-runc": { "path": SYSBOX_RUNC } },
        "default-runtime": "sysbox-runc",
    });
    let mut text = serde_json::to_string_pretty(&config).expect("a JSON value always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_configuration_carries_the_engine_values_and_the_sysbox_runtime() {
        let values =
            UnitValues::engine(Path::new("/run/x.sock"), Path::new("/srv/engine"), 100).unwrap();
        let text = render(&values);
        assert!(text.ends_with("}\n"));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["hosts"][0], "unix:///run/x.sock");
        assert_eq!(parsed["data-root"], "/srv/engine");
        assert_eq!(parsed["exec-root"], "/var/run/containai-docker");
        assert_eq!(parsed["pidfile"], "/var/run/containai-docker.pid");
        assert_eq!(parsed["default-runtime"], "sysbox-runc");
        assert_eq!(parsed["runtimes"]["sysbox-runc"]["path"], SYSBOX_RUNC);
    }
}
