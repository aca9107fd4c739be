//! `dockerd::` bindings over [`crate::host::dockerd`]: which dockerd bundle is active, installing
//! one beside it with an atomic switch of the links, and the engine's daemon configuration, which
//! is always rendered from config (a script never supplies its text); the writes are gated.

use std::rc::Rc;

use rhai::{Dynamic, NativeCallContext};
use serde_json::json;

use super::{Doc, Registrar, Res, fail_at, gated, to_dynamic};
use crate::effects::Action;
use crate::host::Host;
use crate::host::dockerd::{self, BIN_DIR, BUNDLE_DIR, DAEMON_CONFIG};
use crate::host::files;
use crate::plan::{daemon, unit};

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "dockerd::installed() -> string or ()",
            doc: "the active dockerd version, as /opt/containai/bin/dockerd --version reports it (inside the Lima VM on macOS); () when there is no such binary; output that is not a version is an error",
            example: "dockerd::installed()",
        },
        move |ctx: NativeCallContext| {
            Ok(
                match dockerd::installed(&h).map_err(|e| fail_at(&ctx, e))? {
                    Some(version) => Dynamic::from(version),
                    None => Dynamic::UNIT,
                },
            )
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "dockerd::check_bundle(bundle: string, version: string) -> array or ()",
            doc: "checks a fetched bundle (/var/cache/containai/NAME.tgz) with every rule dockerd::install applies (trusted path, each tar entry a plain file under docker/, a docker/dockerd) without writing; with a version, a live run on Linux also runs the bundle's docker/dockerd --version from memory and refuses it unless it reports that version (never in a dry run; on macOS dockerd::install checks it inside the VM); returns the binaries' names; () in a dry run when it is not fetched yet",
            example: "dockerd::check_bundle(\"/var/cache/containai/docker-28.2.2.tgz\", \"28.2.2\")",
        },
        move |ctx: NativeCallContext, bundle: &str, version: &str| {
            check_bundle(&ctx, &h, bundle, Some(version))
        },
    );
    let h = host.clone();
    reg.overload(
        "dockerd::check_bundle(bundle: string) -> array or ()",
        move |ctx: NativeCallContext, bundle: &str| check_bundle(&ctx, &h, bundle, None),
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "dockerd::install(bundle: string, version: string)",
            doc: "unpacks a fetched bundle (/var/cache/containai/NAME.tgz) into /opt/containai/docker/VERSION beside the old one, refuses it unless its dockerd --version reports the version (the links stay), switches the /opt/containai/bin links atomically and notes it in /opt/containai/VERSION",
            example: "dockerd::install(\"/var/cache/containai/docker-28.2.2.tgz\", \"28.2.2\")",
        },
        move |ctx: NativeCallContext, bundle: &str, version: &str| {
            let path = dockerd::check_bundle_path(bundle).map_err(|e| fail_at(&ctx, e))?;
            dockerd::validate_version(version).map_err(|e| fail_at(&ctx, e))?;
            let action = Action::new(
                "dockerd.install",
                format!("{BUNDLE_DIR}/{version}"),
                json!({ "bundle": bundle, "version": version, "links": BIN_DIR }),
            );
            gated(&ctx, &h, action, || (), |ok| {
                dockerd::install(ok, &h, &path, version).map(|_| ())
            })
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "dockerd::config_read() -> string or ()",
            doc: "text of /etc/containai/docker/daemon.json (inside the Lima VM on macOS), () when absent",
            example: "dockerd::config_read()",
        },
        move |ctx: NativeCallContext| {
            Ok(
                match dockerd::read_config(&h).map_err(|e| fail_at(&ctx, e))? {
                    Some(text) => Dynamic::from(text),
                    None => Dynamic::UNIT,
                },
            )
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "dockerd::config_render() -> string",
            doc: "the engine's daemon configuration (/etc/containai/docker/daemon.json) as cai would write it, from config",
            example: "dockerd::config_render()",
        },
        move |ctx: NativeCallContext| {
            Ok(Dynamic::from(
                daemon_config(&h).map_err(|e| fail_at(&ctx, e))?.text,
            ))
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "dockerd::config_diff() -> string",
            doc: "unified diff from the daemon configuration on disk to dockerd::config_render(), \"\" when current (trailing newlines ignored)",
            example: "dockerd::config_diff()",
        },
        move |ctx: NativeCallContext| {
            let proposed = daemon_config(&h).map_err(|e| fail_at(&ctx, e))?;
            Ok(Dynamic::from(proposed.diff()))
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "dockerd::config_state() -> map",
            doc: "the daemon configuration on disk against dockerd::config_render(): state (\"current\", \"differs\" or \"missing\"; trailing newlines ignored) and diff (\"\" when current)",
            example: "dockerd::config_state()",
        },
        move |ctx: NativeCallContext| {
            to_dynamic(&daemon_config(&h).map_err(|e| fail_at(&ctx, e))?.compare())
        },
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "dockerd::install_config() -> bool",
            doc: "writes dockerd::config_render() to /etc/containai/docker/daemon.json atomically when it differs; true when it changed",
            example: "dockerd::install_config()",
        },
        move |ctx: NativeCallContext| {
            let proposed = daemon_config(&h).map_err(|e| fail_at(&ctx, e))?;
            if proposed.is_current() {
                return Ok(Dynamic::FALSE);
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
            gated(&ctx, &h, action, || true, |ok| {
                dockerd::write_config(ok, &h, &proposed.text).map(|()| true)
            })
        },
    );
}

fn check_bundle(
    ctx: &NativeCallContext,
    host: &Host,
    bundle: &str,
    version: Option<&str>,
) -> Res<Dynamic> {
    let path = dockerd::check_bundle_path(bundle).map_err(|e| fail_at(ctx, e))?;
    match dockerd::check_bundle(host, &path, version).map_err(|e| fail_at(ctx, e))? {
        Some(names) => Ok(Dynamic::from_array(
            names.into_iter().map(Dynamic::from).collect(),
        )),
        // A dry run plans the fetch that would bring it; a live run has fetched it.
        None if host.gate.is_dry_run() => Ok(Dynamic::UNIT),
        None => Err(fail_at(
            ctx,
            dockerd::DockerdError::Missing {
                path: host.root().display_path(&path),
            },
        )),
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
