//! The units family: reads and writes unit files under `<root>/etc/systemd/system` only, and asks
//! `systemctl` (found on `PATH`) to reload or restart. Unit names are validated, so a script can
//! never turn a unit name into a path elsewhere. Writes are atomic (temporary file + rename).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::Host;
use super::command::{self, CommandError};
use crate::effects::Approval;

pub const UNIT_DIR: &str = "/etc/systemd/system";
/// systemctl waits for the unit's stop; the engine unit's TimeoutStopSec exceeds 100 s.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error(
        "invalid unit name {0:?}: expected NAME.service, NAME.socket or NAME.timer without slashes"
    )]
    InvalidName(String),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("systemctl {args} exited with {code:?}\n{stderr}")]
    Failed {
        args: String,
        code: Option<i32>,
        stderr: String,
    },
}

/// Checks a unit name: letters, digits and `@._-`, with a known unit suffix.
pub fn validate_name(name: &str) -> Result<(), UnitError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-'));
    let suffix = [".service", ".socket", ".timer"]
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s));
    if valid_chars && suffix && !name.starts_with('.') {
        Ok(())
    } else {
        Err(UnitError::InvalidName(name.to_string()))
    }
}

pub fn unit_path(host: &Host, name: &str) -> Result<PathBuf, UnitError> {
    validate_name(name)?;
    Ok(host.path(UNIT_DIR).join(name))
}

/// The unit file's text, or `None` when it does not exist.
pub fn read(host: &Host, name: &str) -> Result<Option<String>, UnitError> {
    let path = unit_path(host, name)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(UnitError::Io {
            what: "read",
            path,
            source,
        }),
    }
}

pub fn write(_: Approval, host: &Host, name: &str, text: &str) -> Result<(), UnitError> {
    let path = unit_path(host, name)?;
    let dir = host.path(UNIT_DIR);
    let io = |what, source| UnitError::Io {
        what,
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create the directory of", e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| io("create a temporary file beside", e))?;
    tmp.write_all(text.as_bytes()).map_err(|e| io("write", e))?;
    tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(tmp.path(), perms).map_err(|e| io("set permissions of", e))?;
    tmp.persist(&path).map_err(|e| io("replace", e.error))?;
    Ok(())
}

pub fn daemon_reload(_: Approval) -> Result<(), UnitError> {
    systemctl(&["daemon-reload"])
}

pub fn restart(_: Approval, name: &str) -> Result<(), UnitError> {
    validate_name(name)?;
    systemctl(&["restart", name])
}

fn systemctl(args: &[&str]) -> Result<(), UnitError> {
    let out = command::run("systemctl", args, SYSTEMCTL_TIMEOUT)?;
    if out.success() {
        Ok(())
    } else {
        Err(UnitError::Failed {
            args: args.join(" "),
            code: out.code,
            stderr: command::framed(&out.stderr),
        })
    }
}

/// Installs a `.deb` with `dpkg -i`. The path must name an existing regular `.deb` file.
pub fn install_deb(_: Approval, path: &std::path::Path) -> Result<(), UnitError> {
    let out = command::run(
        "dpkg",
        &[std::ffi::OsStr::new("-i"), path.as_os_str()],
        SYSTEMCTL_TIMEOUT,
    )?;
    if out.success() {
        Ok(())
    } else {
        Err(UnitError::Failed {
            args: format!("dpkg -i {}", path.display()),
            code: out.code,
            stderr: command::framed(&out.stderr),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_validated() {
        for ok in [
            "containai-docker.service",
            "sysbox-fs.service",
            "a@b.socket",
            "x.timer",
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../x.service",
            "/etc/x.service",
            "x",
            ".service",
            "a b.service",
            "x.conf",
            "a/b.service",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
