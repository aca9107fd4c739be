//! `units::` and `packages::` bindings over [`crate::host::systemd`]: unit files only under
//! `/etc/systemd/system`, `systemctl` verbs and `.deb` installs, all mutating ones gated.

use std::rc::Rc;

use rhai::{Dynamic, NativeCallContext};
use serde_json::json;

use super::{Registrar, fail_at};
use crate::effects::Action;
use crate::host::{Host, systemd};

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.add(
        "units",
        "read",
        move |ctx: NativeCallContext, name: &str| {
            Ok(
                match systemd::read(&h, name).map_err(|e| fail_at(&ctx, e))? {
                    Some(text) => Dynamic::from(text),
                    None => Dynamic::UNIT,
                },
            )
        },
    );

    let h = host.clone();
    reg.add(
        "units",
        "write",
        move |ctx: NativeCallContext, name: &str, text: &str| {
            systemd::check_writable(name).map_err(|e| fail_at(&ctx, e))?;
            let path = systemd::unit_path(&h, name).map_err(|e| fail_at(&ctx, e))?;
            let current = systemd::read(&h, name).map_err(|e| fail_at(&ctx, e))?;
            let changed = current.as_deref() != Some(text);
            if !changed {
                return Ok(false);
            }
            let action = Action::new(
                "units.write",
                path.display().to_string(),
                json!({ "bytes": text.len(), "replaces": current.is_some() }),
            );
            h.gate
                .apply(
                    action,
                    || true,
                    |ok| systemd::write(ok, &h, name, text).map(|()| true),
                )
                .map_err(|e| fail_at(&ctx, e))
        },
    );

    let h = host.clone();
    reg.add("units", "daemon_reload", move |ctx: NativeCallContext| {
        let action = Action::new("units.daemon_reload", "systemd", json!({}));
        h.gate
            .apply(action, || (), |ok| systemd::daemon_reload(ok, &h))
            .map_err(|e| fail_at(&ctx, e))
    });

    let h = host.clone();
    reg.add(
        "units",
        "restart",
        move |ctx: NativeCallContext, name: &str| {
            systemd::check_restartable(name).map_err(|e| fail_at(&ctx, e))?;
            let action = Action::new("units.restart", name, json!({}));
            h.gate
                .apply(action, || (), |ok| systemd::restart(ok, &h, name))
                .map_err(|e| fail_at(&ctx, e))
        },
    );

    let h = host.clone();
    reg.add(
        "packages",
        "install_deb",
        move |ctx: NativeCallContext, path: &str| {
            if !path.starts_with('/') || !path.ends_with(".deb") {
                return Err(fail_at(
                    &ctx,
                    format!(
                        "packages::install_deb: {path:?} is not an absolute path to a .deb file"
                    ),
                ));
            }
            let file = h.path(path);
            let meta = std::fs::symlink_metadata(&file).map_err(|e| {
                fail_at(
                    &ctx,
                    format!("packages::install_deb: cannot use {}: {e}", file.display()),
                )
            })?;
            if !meta.is_file() {
                return Err(fail_at(
                    &ctx,
                    format!(
                        "packages::install_deb: {} is not a regular file",
                        file.display()
                    ),
                ));
            }
            let action = Action::new(
                "packages.install_deb",
                file.display().to_string(),
                json!({ "bytes": meta.len() }),
            );
            h.gate
                .apply(action, || (), |ok| systemd::install_deb(ok, &h, &file))
                .map_err(|e| fail_at(&ctx, e))
        },
    );
}
