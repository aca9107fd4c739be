//! `update::` bindings over [`crate::host::update`]: the update lock and the crash-safe record of
//! the containers an update stops. The lock and the reads run in every mode (a dry run only
//! checks the lock); recording and clearing the state pass through the effect gate. What a script
//! asks to record is resolved with the engine in every mode, so a dry run refuses what the live
//! run would; only the resolved entries (full ID, current name) reach the record.
//! `update::verify()` is the core's check of this run's installs ([`crate::host::installs`]),
//! which clearing the record waits for.

use rhai::Array;
use serde_json::json;

use super::{Answer, Doc, Effect, Registrar};
use crate::effects::Action;
use crate::host::Host;
use crate::host::update::{self, STATE_FILE, Stopped};

pub fn register(reg: &mut Registrar) {
    reg.run_state(
        Doc {
            signature: "update::lock() -> int",
            doc: "takes the update lock until the run ends (a dry run only checks it); fails at once, naming the holder's PID, when another update holds it",
            example: "update::lock()",
        },
        |h: &Host| update::lock(h).map(i64::from),
    );

    reg.reads(
        Doc {
            signature: "update::state() -> map or ()",
            doc: "what an interrupted update left: phase, containers (id, name) it stopped, run; () when none",
            example: "update::state()",
        }
        .returns(
            &[
                ("phase", "string", "where the update was, e.g. stopping or installing"),
                ("containers", "array", "#{id, name} of each container it stopped (full ID)"),
                ("run", "string", "the journal's id of the run that wrote it"),
            ],
            r#"#{phase: "stopping", containers: [#{id: "4f2c9b0e1d7a4c3b8e6f5a2d1c0b9a8e7f6d5c4b3a291807f6e5d4c3b2a19080", name: "agent-1"}], run: "20260127T091403Z-4242"}"#,
        ),
        |h: &Host| update::read_state(h),
    );

    reg.gated(
        Doc {
            signature: "update::record(phase: string, containers: array)",
            doc: "durably records the containers (maps with id and name) an update is about to stop, before it stops them; each is checked with the engine (the ID's container must have that name) and stored by full ID; the record only grows (union with what is on disk); needs --stop-containers or a person's yes (never --yes)",
            example: "update::record(\"stopping\", containers::list(false).map(|c| #{id: c.id, name: c.name}))",
        },
        |h: &Host, phase: &str, containers: Array| -> Answer<Effect<()>> {
            let containers = stopped(containers)?;
            // Refused in a dry run too, so the plan shows what the live run would do: another
            // run's lock first, then consent, then what the engine says about each entry.
            update::lock(h)?;
            update::check_consent(h, &containers)?;
            let resolved = update::resolve(h, &containers)?;
            let names: Vec<&str> = resolved
                .containers()
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            let ids: Vec<&str> = resolved
                .containers()
                .iter()
                .map(|c| c.id.as_str())
                .collect();
            let action = Action::new(
                "update.record",
                STATE_FILE,
                json!({ "phase": phase, "containers": names, "ids": ids }),
            );
            let phase = phase.to_string();
            Ok(Effect::act(action, || (), move |h, ok| {
                update::record(ok, h, &phase, &resolved)
            }))
        },
    );

    reg.reads(
        Doc {
            signature: "update::verify() -> array",
            doc: "checks every install of this run (packages::install_deb: sysbox-runc --version; dockerd::install: /opt/containai/bin/dockerd --version) against the release target's full version and returns what failed, one line each (\"sysbox is X, expected Y\"); [] when all match or nothing was installed; update::clear() refuses until every install passed it",
            example: "for f in update::verify() { log::error(`verification failed: ${f}`) }",
        },
        |h: &Host| Ok::<_, String>(update::verify(h)),
    );

    reg.gated(
        Doc {
            signature: "update::clear()",
            doc: "removes the record of stopped containers once they run again (refused while one is stopped, unless the run has --no-restart) and every install of this run passed update::verify() (refused otherwise, keeping the record)",
            example: "update::clear()",
        },
        |_: &Host| {
            let action = Action::new("update.clear", STATE_FILE, json!({}));
            Ok::<_, String>(Effect::act(action, || (), |h, ok| update::clear(ok, h)))
        },
    );
}

/// Containers as scripts pass them: maps with string `id` and `name`.
fn stopped(containers: Array) -> Result<Vec<Stopped>, String> {
    containers
        .into_iter()
        .map(|c| {
            rhai::serde::from_dynamic::<Stopped>(&c)
                .map_err(|e| format!("update::record: each container is #{{id, name}}: {e}"))
        })
        .collect()
}
