//! `units::` bindings over [`crate::host::systemd`]: unit files only under `/etc/systemd/system`
//! (inside the Lima VM on macOS) and `systemctl` verbs, every mutating one gated.
//!
//! A script names a unit and never supplies its text: `units::install` writes what the catalog's
//! template renders to (typed values from config, checked by [`crate::plan::unit`]). There must
//! never be a primitive here that takes unit text, because a unit file is a command systemd runs
//! as root.

use std::rc::Rc;

use rhai::{Dynamic, NativeCallContext};
use serde_json::json;

use super::{Doc, Registrar, fail_at, gated};
use crate::effects::Action;
use crate::host::{Host, systemd};
use crate::plan::unit;
use crate::script::catalog::{Catalog, UnitTemplate};

pub fn register(reg: &mut Registrar, host: &Rc<Host>, catalog: &Rc<Catalog>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "units::read(name: string) -> string or ()",
            doc: "text of a unit file in /etc/systemd/system (inside the Lima VM on macOS), () when absent",
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

    let (h, c) = (host.clone(), catalog.clone());
    reg.read(
        Doc {
            signature: "units::render(name: string) -> string",
            doc: "the unit as cai would install it: its catalog template filled from config and checked",
            example: "units::render(\"containai-docker.service\")",
        },
        move |ctx: NativeCallContext, name: &str| {
            let proposed = Proposed::new(&h, &c, name).map_err(|e| fail_at(&ctx, e))?;
            Ok(Dynamic::from(proposed.file.text))
        },
    );

    let (h, c) = (host.clone(), catalog.clone());
    reg.read(
        Doc {
            signature: "units::diff(name: string) -> string",
            doc: "unified diff from the unit file on disk to units::render(name), \"\" when current (trailing newlines ignored)",
            example: "units::diff(\"containai-docker.service\")",
        },
        move |ctx: NativeCallContext, name: &str| {
            let proposed = Proposed::new(&h, &c, name).map_err(|e| fail_at(&ctx, e))?;
            Ok(Dynamic::from(proposed.file.diff()))
        },
    );

    let (h, c) = (host.clone(), catalog.clone());
    reg.mutating(
        Doc {
            signature: "units::install(name: string) -> bool",
            doc: "writes units::render(name) to /etc/systemd/system atomically when it differs (containai-* only); true when it changed",
            example: "units::install(\"containai-docker.service\")",
        },
        move |ctx: NativeCallContext, name: &str| {
            systemd::check_writable(name).map_err(|e| fail_at(&ctx, e))?;
            let proposed = Proposed::new(&h, &c, name).map_err(|e| fail_at(&ctx, e))?;
            if proposed.file.is_current() {
                return Ok(Dynamic::FALSE);
            }
            let action = Action::new(
                "units.install",
                proposed.file.path.clone(),
                json!({
                    "template": proposed.template.display_name(),
                    "replaces": proposed.file.on_disk.is_some(),
                    "bytes": proposed.file.text.len(),
                    "diff": proposed.file.diff(),
                }),
            );
            gated(
                &ctx,
                &h,
                action,
                || true,
                |ok| systemd::write(ok, &h, name, &proposed.file.text).map(|()| true),
            )
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "units::is_active(name: string) -> bool",
            doc: "whether the service manager reports the unit active (systemctl is-active); fails when it cannot tell",
            example: "try { units::is_active(\"containai-docker.service\") } catch { () }",
        },
        move |ctx: NativeCallContext, name: &str| {
            systemd::is_active(&h, name).map_err(|e| fail_at(&ctx, e))
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
            doc: "systemctl restart NAME (containai-* units and the sysbox services only); while the update lock is held, refused unless every running container (labelled or not) is recorded",
            example: "units::restart(\"containai-example.service\")",
        },
        move |ctx: NativeCallContext, name: &str| {
            systemd::check_restartable(name).map_err(|e| fail_at(&ctx, e))?;
            only_recorded_stop(&h, "restart", name).map_err(|e| fail_at(&ctx, e))?;
            let action = Action::new("units.restart", name, json!({}));
            gated(&ctx, &h, action, || (), |ok| systemd::restart(ok, &h, name))
        },
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "units::stop(name: string)",
            doc: "systemctl stop NAME (containai-* units and the sysbox services only); the engine's stop hook stops its containers first",
            example: "units::stop(\"containai-example.service\")",
        },
        move |ctx: NativeCallContext, name: &str| {
            systemd::check_restartable(name).map_err(|e| fail_at(&ctx, e))?;
            only_recorded_stop(&h, "stop", name).map_err(|e| fail_at(&ctx, e))?;
            let action = Action::new("units.stop", name, json!({}));
            gated(&ctx, &h, action, || (), |ok| systemd::stop(ok, &h, name))
        },
    );
}

/// Restarting or stopping the engine (or sysbox, which takes the engine with it) stops every
/// running container on it: during an update only recorded ones may be.
fn only_recorded_stop(h: &Host, verb: &str, name: &str) -> Result<(), String> {
    crate::host::update::check_engine_stop(h).map_err(|e| format!("units::{verb} {name}: {e}"))
}

/// A unit as rendered from its template, beside the file it would replace.
struct Proposed {
    template: UnitTemplate,
    file: unit::Rendered,
}

impl Proposed {
    fn new(host: &Host, catalog: &Catalog, name: &str) -> Result<Self, String> {
        let template = catalog.unit_template(name).map_err(|e| e.to_string())?;
        let file = unit::Rendered {
            path: systemd::unit_path(host, name).map_err(|e| e.to_string())?,
            text: template.render(&host.config).map_err(|e| e.to_string())?,
            on_disk: systemd::read(host, name).map_err(|e| e.to_string())?,
        };
        Ok(Self { template, file })
    }
}
