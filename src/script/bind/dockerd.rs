//! `dockerd::` bindings over [`crate::host::dockerd`]: which dockerd bundle is active, installing
//! one beside it with an atomic switch of the links, and the engine's daemon configuration, which
//! is always rendered from config (a script never supplies its text); the writes are gated.

use serde_json::json;

use super::{Answer, Doc, Effect, Registrar};
use crate::effects::Action;
use crate::host::Host;
use crate::host::dockerd::{self, BIN_DIR, BUNDLE_DIR, DAEMON_CONFIG};
use crate::host::files;
use crate::plan::{daemon, unit};

pub fn register(reg: &mut Registrar) {
    reg.reads(
        Doc {
            signature: "dockerd::installed() -> string or ()",
            doc: "the active dockerd version, as /opt/containai/bin/dockerd --version reports it (inside the Lima VM on macOS); () when there is no such binary; output that is not a version is an error",
            example: "dockerd::installed()",
        },
        |h: &Host| dockerd::installed(h),
    );

    reg.reads(
        Doc {
            signature: "dockerd::check_bundle(bundle: string, version: string) -> array or ()",
            doc: "checks a fetched bundle (/var/cache/containai/NAME.tgz) with every rule dockerd::install applies (trusted path, each tar entry a plain file under docker/, a docker/dockerd) without writing; with a version, a live run on Linux also runs the bundle's docker/dockerd --version from memory and refuses it unless it reports that version (never in a dry run; on macOS dockerd::install checks it inside the VM); returns the binaries' names; () in a dry run when it is not fetched yet",
            example: "dockerd::check_bundle(\"/var/cache/containai/docker-28.2.2.tgz\", \"28.2.2\")",
        },
        |h: &Host, bundle: &str, version: &str| check_bundle(h, bundle, Some(version)),
    );
    reg.overload(
        "dockerd::check_bundle(bundle: string) -> array or ()",
        |h: &Host, bundle: &str| check_bundle(h, bundle, None),
    );

    reg.gated(
        Doc {
            signature: "dockerd::install(bundle: string, version: string)",
            doc: "unpacks a fetched bundle (/var/cache/containai/NAME.tgz) into /opt/containai/docker/VERSION beside the old one, refuses it unless its dockerd --version reports the version (the links stay), switches the /opt/containai/bin links atomically and notes it in /opt/containai/VERSION",
            example: "dockerd::install(\"/var/cache/containai/docker-28.2.2.tgz\", \"28.2.2\")",
        },
        |_: &Host, bundle: &str, version: &str| -> Answer<Effect<()>> {
            let path = dockerd::check_bundle_path(bundle)?;
            dockerd::validate_version(version)?;
            let action = Action::new(
                "dockerd.install",
                format!("{BUNDLE_DIR}/{version}"),
                json!({ "bundle": bundle, "version": version, "links": BIN_DIR }),
            );
            let version = version.to_string();
            Ok(Effect::act(action, || (), move |h, ok| {
                dockerd::install(ok, h, &path, &version).map(|_| ())
            }))
        },
    );

    reg.reads(
        Doc {
            signature: "dockerd::config_read() -> string or ()",
            doc: "text of /etc/containai/docker/daemon.json (inside the Lima VM on macOS), () when absent",
            example: "dockerd::config_read()",
        },
        |h: &Host| dockerd::read_config(h),
    );

    reg.reads(
        Doc {
            signature: "dockerd::config_render() -> string",
            doc: "the engine's daemon configuration (/etc/containai/docker/daemon.json) as cai would write it, from config",
            example: "dockerd::config_render()",
        },
        |h: &Host| daemon_config(h).map(|c| c.text),
    );

    reg.reads(
        Doc {
            signature: "dockerd::config_diff() -> string",
            doc: "unified diff from the daemon configuration on disk to dockerd::config_render(), \"\" when current (trailing newlines ignored)",
            example: "dockerd::config_diff()",
        },
        |h: &Host| daemon_config(h).map(|c| c.diff()),
    );

    reg.reads(
        Doc {
            signature: "dockerd::config_state() -> map",
            doc: "the daemon configuration on disk against dockerd::config_render(): state (\"current\", \"differs\" or \"missing\"; trailing newlines ignored) and diff (\"\" when current)",
            example: "dockerd::config_state()",
        }
        .returns(
            &[
                ("state", "string", "\"current\", \"differs\" or \"missing\""),
                ("diff", "string", "unified diff from the file on disk to the rendered one; \"\" when current"),
            ],
            r#"#{state: "differs", diff: "--- /etc/containai/docker/daemon.json\n+++ /etc/containai/docker/daemon.json (rendered)\n@@ -1 +1 @@\n-{}\n+{\"hosts\": []}\n"}"#,
        ),
        |h: &Host| daemon_config(h).map(|c| c.compare()),
    );

    reg.gated(
        Doc {
            signature: "dockerd::install_config() -> bool",
            doc: "writes dockerd::config_render() to /etc/containai/docker/daemon.json atomically when it differs; true when it changed",
            example: "dockerd::install_config()",
        },
        |h: &Host| -> Answer<Effect<bool>> {
            let proposed = daemon_config(h)?;
            if proposed.is_current() {
                return Ok(Effect::Unchanged(false));
            }
            let action = Action::new(
                "dockerd.install_config",
                proposed.path.clone(),
                json!({
                    "replaces": proposed.on_disk.is_some(),
                    "bytes": proposed.text.len(),
                    "diff": proposed.diff(),
                }),
            );
            let text = proposed.text;
            Ok(Effect::act(action, || true, move |h, ok| {
                dockerd::write_config(ok, h, &text).map(|()| true)
            }))
        },
    );
}

/// The binaries of a fetched bundle; `None` in a dry run before the fetch that would bring it.
fn check_bundle(host: &Host, bundle: &str, version: Option<&str>) -> Answer<Option<Vec<String>>> {
    let path = dockerd::check_bundle_path(bundle)?;
    match dockerd::check_bundle(host, &path, version)? {
        Some(names) => Ok(Some(names)),
        // A dry run plans the fetch that would bring it; a live run has fetched it.
        None if host.gate.is_dry_run() => Ok(None),
        None => Err(dockerd::DockerdError::Missing {
            path: host.root().display_path(&path),
        }
        .into()),
    }
}

/// The daemon configuration as rendered from config, beside the file on disk.
fn daemon_config(host: &Host) -> Result<unit::Rendered, String> {
    let values = host.config.engine_values().map_err(|e| e.to_string())?;
    Ok(unit::Rendered {
        path: files::shown(host, std::path::Path::new(DAEMON_CONFIG)),
        text: daemon::render(&values),
        on_disk: dockerd::read_config(host).map_err(|e| e.to_string())?,
    })
}
