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
use crate::host::rollback::{self, ROLLBACK_DIR};
use crate::host::update::{self, STATE_FILE, Stopped};

/// What `update::rollback_plan()` and `update::keep()` return.
const ROLLBACK_PLAN_EXAMPLE: &str = r#"#{dockerd: "28.1.1", unit: true, config: true, sysbox: "0.6.6+containai.20251201", sysbox_package: "/var/cache/containai/sysbox-ce_0.6.6+containai.20251201.linux_amd64.deb", missing: []}"#;

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
            signature: "update::health() -> map",
            doc: "the health gate after the engine restart, which update::clear() waits for whenever the run installed something or restarted the engine: the engine answers within 120 s, docker info names sysbox-runc as the default runtime, every install of this run reports the target's full version (update::verify()), then every recorded container is started (unless --no-restart) and must run; returns ok, failures (one line each) and started (names); a dry run predicts ok",
            example: "let h = update::health(); if !h.ok { update::rollback(h.failures[0]) }",
        }
        .returns(
            &[
                ("ok", "bool", "every check passed and every recorded container runs again (or the run has --no-restart)"),
                ("failures", "array", "what failed, one line each"),
                ("started", "array", "the recorded containers it started, by name"),
            ],
            r#"#{ok: false, failures: ["sysbox is 0.6.6+containai.20251201, expected 0.6.7+containai.20260127"], started: ["agent-1"]}"#,
        ),
        |h: &Host| {
            let recorded = update::read_state(h)?
                .map(|s| s.containers)
                .unwrap_or_default();
            let ids: Vec<&str> = recorded.iter().map(|c| c.id.as_str()).collect();
            let action = Action::new(
                "update.health",
                "containai-docker.service",
                json!({ "start": recorded.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), "ids": ids, "wait_secs": update::HEALTH_WAIT_SECS }),
            );
            let recorded: Vec<String> = recorded.into_iter().map(|c| c.name).collect();
            let predicted = update::Health {
                ok: true,
                failures: Vec::new(),
                started: if h.no_restart.get() { Vec::new() } else { recorded },
            };
            Ok::<_, update::UpdateError>(Effect::act(action, move || predicted, |h, ok| {
                update::health(ok, h, update::HEALTH_WAIT_SECS)
            }))
        },
    );

    reg.reads(
        Doc {
            signature: "update::rollback_plan() -> map",
            doc: "what an update would keep to roll back to, read before anything changes: dockerd (the version the links point at), unit and config (whether the files exist), sysbox (the installed version), sysbox_package (its cached .deb, or ()), missing (what could not be restored, one line each)",
            example: "for m in update::rollback_plan().missing { log::warn(m) }",
        }
        .returns(
            &[
                ("dockerd", "string or ()", "the dockerd version the links point at; () when none"),
                ("unit", "bool", "whether the engine unit file exists (and would be kept)"),
                ("config", "bool", "whether daemon.json exists (and would be kept)"),
                ("sysbox", "string or ()", "the installed sysbox version; () when none"),
                ("sysbox_package", "string or ()", "its cached .deb; () when it is not cached"),
                ("missing", "array", "what a rollback could not restore, one line each"),
            ],
            ROLLBACK_PLAN_EXAMPLE,
        ),
        |h: &Host| rollback::plan(h),
    );

    reg.gated(
        Doc {
            signature: "update::keep() -> map",
            doc: "writes this run's rollback set under /var/lib/containai/rollback/<run id>/, read by the core as update::rollback_plan() reads it: the unit file, daemon.json, the cached package of the installed sysbox, and a manifest (dockerd version the links point at, sysbox version); call it before the first change; returns the plan it kept",
            example: "update::keep()",
        }
        .returns(
            &[
                ("dockerd", "string or ()", "the dockerd version the links point at; () when none"),
                ("unit", "bool", "whether the engine unit file was kept"),
                ("config", "bool", "whether daemon.json was kept"),
                ("sysbox", "string or ()", "the installed sysbox version; () when none"),
                ("sysbox_package", "string or ()", "its cached .deb; () when it is not cached"),
                ("missing", "array", "what a rollback could not restore, one line each"),
            ],
            ROLLBACK_PLAN_EXAMPLE,
        ),
        |h: &Host| -> Answer<Effect<rollback::Plan>> {
            let plan = rollback::plan(h)?;
            let action = Action::new(
                "update.keep",
                ROLLBACK_DIR,
                serde_json::to_value(&plan).unwrap_or_default(),
            );
            let predicted = plan.clone();
            Ok(Effect::act(action, move || predicted, move |h, ok| {
                rollback::keep(ok, h, &plan).map(|_| plan)
            }))
        },
    );

    reg.reads(
        Doc {
            signature: "update::rollback_set() -> map or ()",
            doc: "the rollback set a rollback would restore now (the one a rollback in progress names, else the newest not yet restored): run, created, dockerd, unit, config, sysbox, sysbox_deb, restored; () when there is none",
            example: "update::rollback_set()",
        }
        .returns(
            &[
                ("run", "string", "the run that kept it"),
                ("created", "int", "when, in seconds since the epoch"),
                ("dockerd", "string or ()", "the dockerd version the links pointed at; () when none"),
                ("unit", "bool", "whether the engine unit file is kept"),
                ("config", "bool", "whether daemon.json is kept"),
                ("sysbox", "string or ()", "the sysbox version installed then; () when none"),
                ("sysbox_deb", "bool", "whether its package is kept"),
                ("restored", "bool", "a rollback restored this set already"),
            ],
            r#"#{run: "20260127T091403Z-4242", created: 1769505243, dockerd: "28.1.1", unit: true, config: true, sysbox: "0.6.6+containai.20251201", sysbox_deb: true, restored: false}"#,
        ),
        |h: &Host| match rollback::current(h) {
            Ok(m) => Ok(Some(m)),
            Err(rollback::RollbackError::NoSet) => Ok(None),
            Err(e) => Err(e),
        },
    );

    reg.gated(
        Doc {
            signature: "update::rollback(reason: string) -> map",
            doc: "restores the current rollback set, each phase (links, files, sysbox, engine, containers) written to the update state before it starts so cai system resume finishes a crashed one: the bundle links, the unit and daemon.json (then daemon-reload), the kept sysbox package, the engine (start limit reset, restarted), then every recorded container started; the record clears once they all run; returns the account: reason, set, restored, missing, sysbox, dockerd (what runs now), running, not_running, complete",
            example: "let a = update::rollback(\"the engine did not start\"); print(a.restored)",
        }
        .returns(
            &[
                ("reason", "string", "why it rolled back (the argument)"),
                ("set", "string", "the rollback set restored"),
                ("restored", "array", "what it put back, one line each"),
                ("missing", "array", "what it could not put back, one line each"),
                ("sysbox", "string or ()", "the sysbox version running now"),
                ("dockerd", "string or ()", "the dockerd version running now"),
                ("running", "array", "recorded containers running again, by name"),
                ("not_running", "array", "recorded containers that do not run"),
                ("complete", "bool", "every kept version runs again and every recorded container runs"),
            ],
            r#"#{reason: "the engine did not start", set: "/var/lib/containai/rollback/20260127T091403Z-4242", restored: ["dockerd 28.1.1", "containai-docker.service", "daemon.json"], missing: [], sysbox: "0.6.6+containai.20251201", dockerd: "28.1.1", running: ["agent-1"], not_running: [], complete: true}"#,
        ),
        |h: &Host, reason: &str| -> Answer<Effect<rollback::Account>> {
            let predicted = rollback::preview(h, reason)?;
            let action = Action::new(
                "update.rollback",
                predicted.set.clone(),
                json!({ "reason": reason, "restore": predicted.restored, "missing": predicted.missing, "start": predicted.running }),
            );
            let reason = reason.to_string();
            Ok(Effect::act(action, move || predicted, move |h, ok| {
                rollback::run(ok, h, &reason)
            }))
        },
    );

    reg.gated(
        Doc {
            signature: "update::prune() -> map",
            doc: "removes rollback sets beyond the newest two and the dockerd bundle versions neither active nor named by the newest set; returns sets and bundles removed",
            example: "update::prune()",
        }
        .returns(
            &[
                ("sets", "array", "the rollback sets removed, by the run that kept them"),
                ("bundles", "array", "the dockerd bundle versions removed"),
            ],
            r#"#{sets: ["20251201T080000Z-1234"], bundles: ["27.5.1"]}"#,
        ),
        |h: &Host| -> Answer<Effect<rollback::Pruned>> {
            let what = rollback::prunable(h)?;
            let action = Action::new(
                "update.prune",
                ROLLBACK_DIR,
                serde_json::to_value(&what).unwrap_or_default(),
            );
            let predicted = what.clone();
            Ok(Effect::act(action, move || predicted, move |h, ok| {
                rollback::prune(ok, h, &what).map(|()| what)
            }))
        },
    );

    reg.gated(
        Doc {
            signature: "update::clear()",
            doc: "removes the record of stopped containers once they run again (refused while one is stopped, unless the run has --no-restart) and every install of this run passed update::verify() (refused otherwise, keeping the record)",
            example: "update::clear()",
        },
        |_: &Host| {
            let action = Action::new("update.clear", STATE_FILE, json!({}));
            Ok::<_, String>(Effect::act(action, || (), |h, ok| {
                update::clear(ok.again(), h)?;
                // A run that changed nothing leaves no rollback set behind.
                if !crate::host::installs::needs_health(h) {
                    rollback::discard_own(ok, h);
                }
                Ok::<_, update::UpdateError>(())
            }))
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
