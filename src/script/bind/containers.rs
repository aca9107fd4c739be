//! `containers::` bindings over [`crate::host::docker`]. Reads run in every mode; `exec`, `stop`
//! and `start` pass through the effect gate. `query` is the read-only way to look inside a
//! container and only runs programs that cannot change anything. Every name and id is checked
//! against the engine's grammar by the host family before any request is made.

use std::time::Duration;

use rhai::Array;
use serde_json::json;

use super::{Answer, Doc, Effect, Field, Registrar, strings};
use crate::effects::Action;
use crate::host::Host;
use crate::host::docker::{self, ExecOutput, SetReport};

const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// A container in a list (`list_managed`, `list`).
const CONTAINER: &[Field] = &[
    ("id", "string", "full container ID (64 hex digits)"),
    ("name", "string", "name without the leading /"),
    ("image", "string", "image the container was created from"),
    (
        "state",
        "string",
        "engine state: created, running, paused, restarting, exited, dead",
    ),
    ("running", "bool", "whether it runs now"),
    (
        "managed_by",
        "string",
        "\"label\" (containai.managed=true) or \"legacy\" (a ContainAI image without the label)",
    ),
    (
        "ssh_port",
        "string or ()",
        "its containai.ssh-port label; () without one",
    ),
    ("labels", "map", "every label, name to value"),
];
/// Any container on the engine (`list`).
const ENGINE_CONTAINER: &[Field] = &[
    ("id", "string", "full container ID (64 hex digits)"),
    ("name", "string", "name without the leading /"),
    ("image", "string", "image the container was created from"),
    (
        "state",
        "string",
        "engine state: created, running, paused, restarting, exited, dead",
    ),
    ("running", "bool", "whether it runs now"),
    (
        "managed_by",
        "string or ()",
        "\"label\", \"legacy\", or () for a container ContainAI does not manage",
    ),
    ("labels", "map", "every label, name to value"),
    (
        "mounts",
        "array",
        "#{kind, name, source, destination} per mount (kind: volume, bind, tmpfs, ...)",
    ),
];
const CONTAINER_EXAMPLE: &str = r#"#{id: "4f2c9b0e1d7a4c3b8e6f5a2d1c0b9a8e7f6d5c4b3a291807f6e5d4c3b2a19080", name: "agent-1", image: "containai:latest", state: "running", running: true, managed_by: "label", ssh_port: "2222", labels: #{"containai.managed": "true", "containai.ssh-port": "2222"}}"#;

/// What a program run in a container left.
const EXEC_OUTPUT: &[Field] = &[
    (
        "exit_code",
        "int",
        "the program's exit status (128 + N when signal N ended it)",
    ),
    ("stdout", "string", "its standard output"),
    ("stderr", "string", "its standard error"),
];
const EXEC_EXAMPLE: &str = r#"#{exit_code: 0, stdout: "1000\n", stderr: ""}"#;

/// What happened to each member of a set (`stop`, `start`).
const SET_REPORT: &[Field] = &[
    (
        "done",
        "array",
        "members that reached the wanted state, including those already in it, as given",
    ),
    (
        "gone",
        "array",
        "members removed before they were reached (for a stop, as good as stopped)",
    ),
    (
        "failed",
        "array",
        "#{id, error} for each member that failed",
    ),
];
const SET_EXAMPLE: &str =
    r#"#{done: ["agent-1"], gone: [], failed: [#{id: "agent-2", error: "engine timeout"}]}"#;

pub fn register(reg: &mut Registrar) {
    reg.reads(
        Doc {
            signature: "containers::engine_status() -> map",
            doc: "engine socket path, whether it exists and answers, engine version; when it does not answer, `error` says why and `help` what to do",
            example: "containers::engine_status()",
        }
        .returns(
            &[
                ("socket", "string", "the engine socket's host path"),
                ("present", "bool", "whether anything exists at that path"),
                ("reachable", "bool", "whether the engine answered"),
                ("version", "string", "engine version; \"\" when it did not answer"),
                ("api_version", "string", "engine API version; \"\" when it did not answer"),
                ("error", "string", "why it did not answer, in the system's words; \"\" when it did"),
                ("help", "string", "what to do about error; \"\" when nothing"),
            ],
            r#"#{socket: "/var/run/containai-docker.sock", present: true, reachable: true, version: "28.2.2", api_version: "1.50", error: "", help: ""}"#,
        ),
        |h: &Host| Ok::<_, String>(h.docker().status()),
    );

    reg.reads(
        Doc {
            signature: "containers::wait_engine(timeout_secs: int) -> bool",
            doc: "waits until the engine answers on its socket (after a restart); false when it did not within the timeout; Ctrl-C and the script's wall-clock budget end the wait and the script",
            example: "containers::wait_engine(1)",
        },
        |h: &Host, secs: i64| -> Answer<bool> { Ok(docker::wait_engine(h, secs)??) },
    );

    reg.reads(
        Doc {
            signature: "containers::list_managed(all: bool) -> array of map",
            doc: "managed containers (label or legacy image); all=false lists running ones, and an absent socket is \"none\" only while the engine unit is not active; all=true includes stopped ones and fails when the engine is not running (they exist all the same); fails when the engine does not answer",
            example: "containers::list_managed(false)",
        }
        .returns(CONTAINER, CONTAINER_EXAMPLE),
        |h: &Host, all: bool| docker::list_managed_checked(h, all),
    );

    reg.reads(
        Doc {
            signature: "containers::inspect(name: string) -> map",
            doc: "user, state, labels and mounts of one container",
            example: "try { containers::inspect(\"cai-example\") } catch { () }",
        }
        .returns(
            &[
                ("id", "string", "full container ID"),
                ("name", "string", "name without the leading /"),
                ("image", "string", "image it was created from"),
                ("user", "string", "its Config.User (\"\" when unset: root)"),
                ("state", "string", "engine state: created, running, paused, restarting, exited, dead"),
                ("running", "bool", "whether it runs now"),
                ("pid", "int", "its main process's PID on the host; 0 when stopped"),
                ("finished_at", "string", "when it last stopped (RFC 3339, UTC); \"\" or 0001-01-01T00:00:00Z when never"),
                ("exit_code", "int", "exit status of its last run"),
                ("managed_by", "string or ()", "\"label\", \"legacy\", or () when ContainAI does not manage it"),
                ("labels", "map", "every label, name to value"),
                ("mounts", "array", "#{kind, name, source, destination} per mount (kind: volume, bind, tmpfs, ...)"),
            ],
            r#"#{id: "4f2c9b0e1d7a4c3b8e6f5a2d1c0b9a8e7f6d5c4b3a291807f6e5d4c3b2a19080", name: "agent-1", image: "containai:latest", user: "agent", state: "running", running: true, pid: 4242, finished_at: "0001-01-01T00:00:00Z", exit_code: 0, managed_by: "label", labels: #{"containai.managed": "true"}, mounts: [#{kind: "volume", name: "agent-1-home", source: "/var/lib/containai-docker/volumes/agent-1-home/_data", destination: "/home/agent"}]}"#,
        ),
        |h: &Host, name: &str| h.docker().inspect(name),
    );

    reg.reads(
        Doc {
            signature: "containers::list(all: bool) -> array of map",
            doc: "every container on the engine, labelled or not (managed_by is () for one ContainAI does not manage: an engine restart stops it too); all=false lists running ones; fail-closed like list_managed, and all=true fails while the engine is down",
            example: "containers::list(false).filter(|c| c.managed_by == ())",
        }
        .returns(
            ENGINE_CONTAINER,
            r#"#{id: "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9", name: "postgres", image: "postgres:16", state: "running", running: true, managed_by: (), labels: #{}, mounts: [#{kind: "volume", name: "pgdata", source: "/var/lib/containai-docker/volumes/pgdata/_data", destination: "/var/lib/postgresql/data"}]}"#,
        ),
        |h: &Host, all: bool| docker::list_checked(h, all),
    );

    reg.reads(
        Doc {
            signature: "containers::stopped_at_engine_start() -> array of map or ()",
            doc: "managed containers the engine stopped while it last started (it came up after a dockerd that died without its stop hook, and nothing starts them again): id, name, finished_at, exit_code; () when the engine unit never started in this boot",
            example: "try { containers::stopped_at_engine_start() } catch { () }",
        }
        .returns(
            &[
                ("id", "string", "full container ID"),
                ("name", "string", "container name"),
                ("finished_at", "string", "when the engine stopped it (RFC 3339, UTC)"),
                ("exit_code", "int", "its exit status then"),
            ],
            r#"#{id: "4f2c9b0e1d7a4c3b8e6f5a2d1c0b9a8e7f6d5c4b3a291807f6e5d4c3b2a19080", name: "agent-1", finished_at: "2026-01-27T09:14:03.5Z", exit_code: 255}"#,
        ),
        |h: &Host| {
            docker::stopped_at_engine_start(h)
                .map_err(|e| format!("containers::stopped_at_engine_start: {e}"))
        },
    );

    reg.reads(
        Doc {
            signature: "containers::query(name: string, argv: array) -> map",
            doc: "runs a read-only inspection program (id, getent, stat, cat, ls, test, uname, readlink, whoami) in a running container; exit_code, stdout, stderr",
            example: "try { containers::query(\"cai-example\", [\"id\", \"-u\"]) } catch { () }",
        }
        .returns(EXEC_OUTPUT, EXEC_EXAMPLE),
        |h: &Host, name: &str, argv: Array| {
            let argv = strings("containers::query", argv)?;
            h.docker()
                .query(name, &argv, EXEC_TIMEOUT)
                .map_err(|e| format!("containers::query: {e}"))
        },
    );

    reg.reads(
        Doc {
            signature: "containers::user_ids(name: string, user: string) -> map",
            doc: "the owner a container's files should have when its Config.User is USER (SPEC 5.2): uid, gid, source, warning (\"\" when none); a user name is resolved inside the running container only, never on this host",
            example: "try { containers::user_ids(\"cai-example\", \"\") } catch { () }",
        }
        .returns(
            &[
                ("uid", "int", "the owner's uid"),
                ("gid", "int", "the owner's gid"),
                ("source", "string", "how they were found (Config.User, the agent user inside the container, or a default)"),
                ("warning", "string", "why the default was used; \"\" when none"),
            ],
            r#"#{uid: 1000, gid: 1000, source: "user agent inside the container (id agent)", warning: ""}"#,
        ),
        |h: &Host, name: &str, user: &str| h.docker().user_ids(name, user, EXEC_TIMEOUT),
    );

    reg.reads(
        Doc {
            signature: "containers::root_taint(name: string) -> array",
            doc: "signs that a running container's own files are damaged (/usr/bin/sudo not owned by root, system directories owned by 65534), one line each; [] when none or stopped",
            example: "try { containers::root_taint(\"cai-example\") } catch { () }",
        },
        |h: &Host, name: &str| h.docker().root_taint(name, EXEC_TIMEOUT),
    );

    reg.gated(
        Doc {
            signature: "containers::exec(name: string, argv: array) -> map",
            doc: "runs a program in a running container (no shell); exit_code, stdout, stderr",
            example: "containers::exec(\"cai-example\", [\"touch\", \"/tmp/x\"])",
        }
        .returns(EXEC_OUTPUT, EXEC_EXAMPLE),
        |_: &Host, name: &str, argv: Array| -> Answer<Effect<ExecOutput>> {
            let argv = strings("containers::exec", argv)?;
            docker::validate_ref(name)?;
            if argv.is_empty() {
                return Err("containers::exec: the argument list is empty".into());
            }
            let action = Action::new("containers.exec", name, json!({ "argv": argv }));
            let name = name.to_string();
            Ok(Effect::act(action, ExecOutput::default, move |h, ok| {
                h.docker().exec(ok, &name, &argv, EXEC_TIMEOUT)
            }))
        },
    );

    reg.gated(
        Doc {
            signature: "containers::stop(ids: array, timeout_secs: int) -> map",
            doc: "stops a set concurrently; done (incl. already stopped), gone, failed; the timeout defaults to config stop_timeout_secs; while the update lock is held, only containers recorded by update::record, named by their full ID",
            example: "containers::stop([\"cai-example\"], 100)",
        }
        .returns(SET_REPORT, SET_EXAMPLE),
        stop,
    );
    reg.overload_gated(
        "containers::stop(ids: array) -> map",
        |h: &Host, ids: Array| {
            let secs =
                i64::try_from(h.config.stop_timeout_secs).unwrap_or(docker::MAX_TIMEOUT_SECS);
            stop(h, ids, secs)
        },
    );

    reg.gated(
        Doc {
            signature: "containers::start(ids: array) -> map",
            doc: "starts a set concurrently; done, gone, failed",
            example: "containers::start([\"cai-example\"])",
        }
        .returns(SET_REPORT, SET_EXAMPLE),
        |h: &Host, ids: Array| -> Answer<Effect<SetReport>> {
            let ids = set("containers::start", ids)?;
            let action = Action::new("containers.start", named(h, &ids), json!({ "ids": ids }));
            let predicted = predicted_set(&ids);
            Ok(Effect::act(action, predicted, move |h, ok| {
                h.docker().start(ok, &ids)
            }))
        },
    );
}

/// The members of a set, each checked against the engine's grammar before anything is planned.
fn set(what: &str, ids: Array) -> Result<Vec<String>, String> {
    let ids = strings(what, ids)?;
    for id in &ids {
        docker::validate_ref(id).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(ids)
}

/// A set as plan and journal lines show it: `agent-1 (0123456789ab), legacy-1 (…)`, each member
/// named by the engine (its full ID stays in the details). A member the engine does not list, or
/// an engine that does not answer, shows as given.
fn named(h: &Host, ids: &[String]) -> String {
    let listed = h.docker().list(true).ok().flatten().unwrap_or_default();
    ids.iter()
        .map(|id| {
            let found = listed.iter().find(|c| {
                c.id == *id || c.name == *id || (id.len() >= 12 && c.id.starts_with(id.as_str()))
            });
            match found {
                Some(c) if !c.name.is_empty() => {
                    format!("{} ({})", c.name, c.id.get(..12).unwrap_or(&c.id))
                }
                _ => id.clone(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A dry run predicts every member done.
fn predicted_set(ids: &[String]) -> impl FnOnce() -> SetReport + 'static {
    let done = ids.to_vec();
    move || SetReport {
        done,
        ..Default::default()
    }
}

fn stop(h: &Host, ids: Array, secs: i64) -> Answer<Effect<SetReport>> {
    let ids = set("containers::stop", ids)?;
    let timeout = docker::timeout_secs("containers::stop", secs)?;
    crate::host::update::check_stoppable(h, &ids).map_err(|e| format!("containers::stop: {e}"))?;
    let action = Action::new(
        "containers.stop",
        named(h, &ids),
        json!({ "ids": ids, "timeout_secs": secs }),
    );
    let predicted = predicted_set(&ids);
    Ok(Effect::act(action, predicted, move |h, ok| {
        h.docker().stop(ok, &ids, timeout)
    }))
}

#[cfg(test)]
mod tests {
    use crate::host::docker::QUERY_PROGRAMS;

    /// The allow-list lives in `host::docker`; the doc operators read must name exactly it.
    #[test]
    fn the_query_doc_names_the_allow_list() {
        let root = tempfile::tempdir().unwrap();
        let host = crate::script::tests::dry_run_host(root.path().to_path_buf());
        let mut reg = super::Registrar::new(&host);
        super::register(&mut reg);
        let (primitives, _) = reg.finish().unwrap();
        let query = primitives.iter().find(|p| p.name == "query").unwrap();
        let listed = query
            .doc
            .split_once('(')
            .unwrap()
            .1
            .split_once(')')
            .unwrap()
            .0;
        assert_eq!(listed, QUERY_PROGRAMS.join(", "));
    }
}
