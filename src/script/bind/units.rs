//! `units::` bindings over [`crate::host::systemd`]: unit files only under `/etc/systemd/system`
//! (inside the Lima VM on macOS) and `systemctl` verbs, every mutating one gated.
//!
//! A script names a unit and never supplies its text: `units::install` writes what the catalog's
//! template renders to (typed values from config, checked by [`crate::plan::unit`]). There must
//! never be a primitive here that takes unit text, because a unit file is a command systemd runs
//! as root.

use std::rc::Rc;

use serde_json::json;

use super::{Answer, Doc, Effect, Registrar};
use crate::effects::Action;
use crate::host::{Host, systemd};
use crate::plan::unit;
use crate::script::catalog::{Catalog, UnitTemplate};

pub fn register(reg: &mut Registrar, catalog: &Rc<Catalog>) {
    reg.reads(
        Doc {
            signature: "units::read(name: string) -> string or ()",
            doc: "text of a unit file in /etc/systemd/system (inside the Lima VM on macOS), () when absent",
            example: "units::read(\"containai-docker.service\")",
        },
        |h: &Host, name: &str| systemd::read(h, name),
    );

    let c = catalog.clone();
    reg.reads(
        Doc {
            signature: "units::render(name: string) -> string",
            doc: "the unit as cai would install it: its catalog template filled from config and checked",
            example: "units::render(\"containai-docker.service\")",
        },
        move |h: &Host, name: &str| Proposed::new(h, &c, name).map(|p| p.file.text),
    );

    let c = catalog.clone();
    reg.reads(
        Doc {
            signature: "units::diff(name: string) -> string",
            doc: "unified diff from the unit file on disk to units::render(name), \"\" when current (trailing newlines ignored)",
            example: "units::diff(\"containai-docker.service\")",
        },
        move |h: &Host, name: &str| Proposed::new(h, &c, name).map(|p| p.file.diff()),
    );

    let c = catalog.clone();
    reg.reads(
        Doc {
            signature: "units::state(name: string) -> map",
            doc: "the unit file on disk against units::render(name): state (\"current\", \"differs\" or \"missing\"; trailing newlines ignored) and diff (\"\" when current)",
            example: "units::state(\"containai-docker.service\")",
        }
        .returns(
            &[
                ("state", "string", "\"current\", \"differs\" or \"missing\""),
                ("diff", "string", "unified diff from the file on disk to the rendered one; \"\" when current"),
            ],
            r#"#{state: "differs", diff: "--- /etc/containai/containai-docker.service\n+++ /etc/containai/containai-docker.service (rendered)\n@@ -1 +1 @@\n-{}\n+{\"hosts\": []}\n"}"#,
        ),
        move |h: &Host, name: &str| Proposed::new(h, &c, name).map(|p| p.file.compare()),
    );

    let c = catalog.clone();
    reg.gated(
        Doc {
            signature: "units::install(name: string) -> bool",
            doc: "writes units::render(name) to /etc/systemd/system atomically when it differs (containai-* only); true when it changed",
            example: "units::install(\"containai-docker.service\")",
        },
        move |h: &Host, name: &str| -> Answer<Effect<bool>> {
            systemd::check_writable(name)?;
            let proposed = Proposed::new(h, &c, name)?;
            if proposed.file.is_current() {
                return Ok(Effect::Unchanged(false));
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
            let (name, text) = (name.to_string(), proposed.file.text);
            Ok(Effect::act(action, || true, move |h, ok| {
                systemd::write(ok, h, &name, &text).map(|()| true)
            }))
        },
    );

    reg.reads(
        Doc {
            signature: "units::is_active(name: string) -> bool",
            doc: "whether the service manager reports the unit active (systemctl is-active); fails when it cannot tell",
            example: "try { units::is_active(\"containai-docker.service\") } catch { () }",
        },
        |h: &Host, name: &str| systemd::is_active(h, name),
    );

    reg.gated(
        Doc {
            signature: "units::daemon_reload()",
            doc: "systemctl daemon-reload",
            example: "units::daemon_reload()",
        },
        |_: &Host| {
            let action = Action::new("units.daemon_reload", "systemd", json!({}));
            Ok::<_, String>(Effect::act(
                action,
                || (),
                |h, ok| systemd::daemon_reload(ok, h),
            ))
        },
    );

    reg.gated(
        Doc {
            signature: "units::restart(name: string)",
            doc: "systemctl restart NAME (containai-* units and the sysbox services only); while the update lock is held, refused unless every running container (labelled or not) is recorded",
            example: "units::restart(\"containai-example.service\")",
        },
        |h: &Host, name: &str| -> Answer<Effect<()>> {
            systemd::check_restartable(name)?;
            only_recorded_stop(h, "restart", name)?;
            let action = Action::new("units.restart", name, json!({}));
            let name = name.to_string();
            Ok(Effect::act(action, || (), move |h, ok| {
                systemd::restart(ok, h, &name)
            }))
        },
    );

    reg.gated(
        Doc {
            signature: "units::enable(name: string)",
            doc: "systemctl enable NAME (only units cai writes): the unit starts at boot, through its WantedBy=",
            example: "units::enable(\"containai-example.service\")",
        },
        |_: &Host, name: &str| -> Answer<Effect<()>> {
            systemd::check_writable(name)?;
            let action = Action::new("units.enable", name, json!({}));
            let name = name.to_string();
            Ok(Effect::act(action, || (), move |h, ok| {
                systemd::enable(ok, h, &name)
            }))
        },
    );

    reg.gated(
        Doc {
            signature: "units::stop(name: string)",
            doc: "systemctl stop NAME (containai-* units and the sysbox services only); the engine's stop hook stops its containers first",
            example: "units::stop(\"containai-example.service\")",
        },
        |h: &Host, name: &str| -> Answer<Effect<()>> {
            systemd::check_restartable(name)?;
            only_recorded_stop(h, "stop", name)?;
            let action = Action::new("units.stop", name, json!({}));
            let name = name.to_string();
            Ok(Effect::act(action, || (), move |h, ok| {
                systemd::stop(ok, h, &name)
            }))
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
