//! `units::` bindings over [`crate::host::systemd`]: unit files only under `/etc/systemd/system`
//! and `systemctl` verbs, every mutating one gated.

use std::rc::Rc;

use rhai::{Dynamic, NativeCallContext};
use serde_json::json;

use super::{Doc, Registrar, fail_at, gated};
use crate::effects::Action;
use crate::host::{Host, systemd};

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "units::read(name: string) -> string or ()",
            doc: "text of a unit file in /etc/systemd/system, () when absent",
            example: "units::read(\"containai-docker.service\")",
        },
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
    reg.mutating(
        Doc {
            signature: "units::write(name: string, text: string) -> bool",
            doc: "writes a unit file in /etc/systemd/system atomically; true when the text changed",
            example: "units::write(\"containai-example.service\", \"[Unit]\\n\")",
        },
        move |ctx: NativeCallContext, name: &str, text: &str| {
            systemd::check_writable(name).map_err(|e| fail_at(&ctx, e))?;
            let path = systemd::unit_path(&h, name).map_err(|e| fail_at(&ctx, e))?;
            let current = systemd::read(&h, name).map_err(|e| fail_at(&ctx, e))?;
            if current.as_deref() == Some(text) {
                return Ok(Dynamic::FALSE);
            }
            let action = Action::new(
                "units.write",
                path.display().to_string(),
                json!({ "bytes": text.len(), "replaces": current.is_some() }),
            );
            gated(
                &ctx,
                &h,
                action,
                || true,
                |ok| systemd::write(ok, &h, name, text).map(|()| true),
            )
        },
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "units::daemon_reload()",
            doc: "systemctl daemon-reload",
            example: "units::daemon_reload()",
        },
        move |ctx: NativeCallContext| {
            let action = Action::new("units.daemon_reload", "systemd", json!({}));
            gated(&ctx, &h, action, || (), |ok| systemd::daemon_reload(ok, &h))
        },
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "units::restart(name: string)",
            doc: "systemctl restart NAME (containai-* units and the sysbox services only)",
            example: "units::restart(\"containai-example.service\")",
        },
        move |ctx: NativeCallContext, name: &str| {
            systemd::check_restartable(name).map_err(|e| fail_at(&ctx, e))?;
            let action = Action::new("units.restart", name, json!({}));
            gated(&ctx, &h, action, || (), |ok| systemd::restart(ok, &h, name))
        },
    );
}
