//! `containers::` bindings over [`crate::host::docker`]. Reads run in every mode; `exec`, `stop`
//! and `start` pass through the effect gate. `query` is the read-only way to look inside a
//! container and only runs programs that cannot change anything. Every name and id is checked
//! against the engine's grammar by the host family before any request is made.

use std::rc::Rc;
use std::time::Duration;

use rhai::{Array, Dynamic, NativeCallContext};
use serde_json::json;

use super::{Doc, Registrar, Res, cut_short, fail_at, gated, strings, to_dynamic};
use crate::effects::Action;
use crate::host::Host;
use crate::host::docker::{self, ExecOutput, SetReport};

const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "containers::engine_status() -> map",
            doc: "engine socket path, whether it exists and answers, engine version",
            example: "containers::engine_status()",
        },
        move || to_dynamic(&h.docker().status()),
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "containers::wait_engine(timeout_secs: int) -> bool",
            doc: "waits until the engine answers on its socket (after a restart); false when it did not within the timeout; Ctrl-C and the script's wall-clock budget end the wait and the script",
            example: "containers::wait_engine(1)",
        },
        move |ctx: NativeCallContext, secs: i64| {
            docker::wait_engine(&h, secs)
                .map_err(|e| fail_at(&ctx, e))?
                .map_err(|cut| cut_short(&ctx, cut))
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "containers::list_managed(all: bool) -> array",
            doc: "managed containers (label or legacy image); all=false lists running ones, and an absent socket is \"none\" only while the engine unit is not active; all=true includes stopped ones and fails when the engine is not running (they exist all the same); fails when the engine does not answer",
            example: "containers::list_managed(false)",
        },
        move |ctx: NativeCallContext, all: bool| {
            to_dynamic(&docker::list_managed_checked(&h, all).map_err(|e| fail_at(&ctx, e))?)
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "containers::inspect(name: string) -> map",
            doc: "user, state, labels and mounts of one container",
            example: "try { containers::inspect(\"cai-example\") } catch { () }",
        },
        move |ctx: NativeCallContext, name: &str| {
            to_dynamic(&h.docker().inspect(name).map_err(|e| fail_at(&ctx, e))?)
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "containers::list(all: bool) -> array",
            doc: "every container on the engine, labelled or not (managed_by is () for one ContainAI does not manage: an engine restart stops it too); all=false lists running ones; fail-closed like list_managed, and all=true fails while the engine is down",
            example: "containers::list(false).filter(|c| c.managed_by == ())",
        },
        move |ctx: NativeCallContext, all: bool| {
            to_dynamic(&docker::list_checked(&h, all).map_err(|e| fail_at(&ctx, e))?)
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "containers::stopped_at_engine_start() -> array or ()",
            doc: "managed containers the engine stopped while it last started (it came up after a dockerd that died without its stop hook, and nothing starts them again): id, name, finished_at, exit_code; () when the engine unit never started in this boot",
            example: "try { containers::stopped_at_engine_start() } catch { () }",
        },
        move |ctx: NativeCallContext| {
            match docker::stopped_at_engine_start(&h).map_err(|e| {
                fail_at(&ctx, format!("containers::stopped_at_engine_start: {e}"))
            })? {
                Some(stopped) => to_dynamic(&stopped),
                None => Ok(Dynamic::UNIT),
            }
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "containers::query(name: string, argv: array) -> map",
            doc: "runs a read-only inspection program (id, getent, stat, cat, ls, test, uname, readlink, whoami) in a running container; exit_code, stdout, stderr",
            example: "try { containers::query(\"cai-example\", [\"id\", \"-u\"]) } catch { () }",
        },
        move |ctx: NativeCallContext, name: &str, argv: Array| {
            let argv = strings(&ctx, "containers::query", argv)?;
            let out = h.docker().query(name, &argv, EXEC_TIMEOUT);
            to_dynamic(&out.map_err(|e| fail_at(&ctx, format!("containers::query: {e}")))?)
        },
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "containers::exec(name: string, argv: array) -> map",
            doc: "runs a program in a running container (no shell); exit_code, stdout, stderr",
            example: "containers::exec(\"cai-example\", [\"touch\", \"/tmp/x\"])",
        },
        move |ctx: NativeCallContext, name: &str, argv: Array| {
            let argv = strings(&ctx, "containers::exec", argv)?;
            docker::validate_ref(name).map_err(|e| fail_at(&ctx, e))?;
            if argv.is_empty() {
                return Err(fail_at(
                    &ctx,
                    "containers::exec: the argument list is empty",
                ));
            }
            let action = Action::new("containers.exec", name, json!({ "argv": argv }));
            gated(&ctx, &h, action, ExecOutput::default, |ok| {
                h.docker().exec(ok, name, &argv, EXEC_TIMEOUT)
            })
        },
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "containers::stop(ids: array, timeout_secs: int) -> map",
            doc: "stops a set concurrently; done (incl. already stopped), gone, failed; the timeout defaults to config stop_timeout_secs; while the update lock is held, only containers recorded by update::record, named by their full ID",
            example: "containers::stop([\"cai-example\"], 100)",
        },
        move |ctx: NativeCallContext, ids: Array, secs: i64| stop(&ctx, &h, ids, secs),
    );
    let h = host.clone();
    reg.overload(
        "containers::stop(ids: array) -> map",
        move |ctx: NativeCallContext, ids: Array| {
            let secs =
                i64::try_from(h.config.stop_timeout_secs).unwrap_or(docker::MAX_TIMEOUT_SECS);
            stop(&ctx, &h, ids, secs)
        },
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "containers::start(ids: array) -> map",
            doc: "starts a set concurrently; done, gone, failed",
            example: "containers::start([\"cai-example\"])",
        },
        move |ctx: NativeCallContext, ids: Array| {
            let ids = set(&ctx, "containers::start", ids)?;
            let action = Action::new("containers.start", ids.join(" "), json!({ "ids": ids }));
            let predicted = || SetReport {
                done: ids.clone(),
                ..Default::default()
            };
            gated(&ctx, &h, action, predicted, |ok| h.docker().start(ok, &ids))
        },
    );
}

/// The members of a set, each checked against the engine's grammar before anything is planned.
fn set(ctx: &NativeCallContext, what: &str, ids: Array) -> Res<Vec<String>> {
    let ids = strings(ctx, what, ids)?;
    for id in &ids {
        docker::validate_ref(id).map_err(|e| fail_at(ctx, format!("{what}: {e}")))?;
    }
    Ok(ids)
}

fn stop(ctx: &NativeCallContext, host: &Host, ids: Array, secs: i64) -> Res<Dynamic> {
    let ids = set(ctx, "containers::stop", ids)?;
    let timeout = docker::timeout_secs("containers::stop", secs).map_err(|e| fail_at(ctx, e))?;
    crate::host::update::check_stoppable(host, &ids)
        .map_err(|e| fail_at(ctx, format!("containers::stop: {e}")))?;
    let action = Action::new(
        "containers.stop",
        ids.join(" "),
        json!({ "ids": ids, "timeout_secs": secs }),
    );
    let predicted = || SetReport {
        done: ids.clone(),
        ..Default::default()
    };
    gated(ctx, host, action, predicted, |ok| {
        host.docker().stop(ok, &ids, timeout)
    })
}

#[cfg(test)]
mod tests {
    use crate::host::docker::QUERY_PROGRAMS;

    /// The allow-list lives in `host::docker`; the doc operators read must name exactly it.
    #[test]
    fn the_query_doc_names_the_allow_list() {
        let mut reg = super::Registrar::default();
        let root = tempfile::tempdir().unwrap();
        let host = crate::script::tests::dry_run_host(root.path().to_path_buf());
        super::register(&mut reg, &host);
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
