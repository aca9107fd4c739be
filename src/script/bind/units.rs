//! `units::` and `packages::` bindings over [`crate::host::systemd`] and [`crate::host::packages`]:
//! unit files only under `/etc/systemd/system`, `systemctl` verbs and verified `.deb` installs, all
//! mutating ones gated.

use std::rc::Rc;

use rhai::{Dynamic, NativeCallContext};
use serde_json::json;

use super::{Registrar, fail_at};
use crate::effects::Action;
use crate::host::{Host, packages, systemd};

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
            // Verified in every mode (it only reads), so a dry run shows what would be installed.
            let deb = packages::verify_deb(&h, std::path::Path::new(path))
                .map_err(|e| fail_at(&ctx, e))?;
            let action = Action::new(
                "packages.install_deb",
                deb.shown.display().to_string(),
                json!({ "bytes": deb.bytes, "sha256": deb.sha256 }),
            );
            h.gate
                .apply(action, || (), |ok| packages::install_deb(ok, &h, &deb))
                .map_err(|e| fail_at(&ctx, e))
        },
    );
}
