//! `containers::` bindings over [`crate::host::docker`]. Reads run in every mode; `exec`, `stop`
//! and `start` pass through the effect gate. `query` is the read-only way to look inside a
//! container and only runs programs that cannot change anything.

use std::rc::Rc;
use std::time::Duration;

use rhai::{Array, Dynamic, NativeCallContext};
use serde_json::json;

use super::{Registrar, Res, fail_at, strings, to_dynamic};
use crate::effects::Action;
use crate::host::Host;
use crate::host::docker::{ExecOutput, SetReport};

const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// A stop timeout above an hour is a typo, not a plan.
const MAX_STOP_SECS: i64 = 3600;

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.add("containers", "engine_status", move || {
        to_dynamic(&h.engine.status(h.runtime()))
    });

    let h = host.clone();
    reg.add(
        "containers",
        "list_managed",
        move |ctx: NativeCallContext, all: bool| list(&ctx, &h, all),
    );

    let h = host.clone();
    reg.add(
        "containers",
        "inspect",
        move |ctx: NativeCallContext, name: &str| {
            to_dynamic(
                &h.engine
                    .inspect(h.runtime(), name)
                    .map_err(|e| fail_at(&ctx, e))?,
            )
        },
    );

    let h = host.clone();
    reg.add(
        "containers",
        "query",
        move |ctx: NativeCallContext, name: &str, argv: Array| {
            let argv = strings(&ctx, "containers::query", argv)?;
            let out = h.engine.query(h.runtime(), name, &argv, EXEC_TIMEOUT);
            to_dynamic(&out.map_err(|e| fail_at(&ctx, format!("containers::query: {e}")))?)
        },
    );

    let h = host.clone();
    reg.add(
        "containers",
        "exec",
        move |ctx: NativeCallContext, name: &str, argv: Array| {
            let argv = strings(&ctx, "containers::exec", argv)?;
            if argv.is_empty() {
                return Err(fail_at(
                    &ctx,
                    "containers::exec: the argument list is empty",
                ));
            }
            let action = Action::new("containers.exec", name, json!({ "argv": argv }));
            let out = h.gate.apply(action, ExecOutput::default, |ok| {
                h.engine.exec(ok, h.runtime(), name, &argv, EXEC_TIMEOUT)
            });
            to_dynamic(&out.map_err(|e| fail_at(&ctx, e))?)
        },
    );

    let h = host.clone();
    reg.add(
        "containers",
        "stop",
        move |ctx: NativeCallContext, ids: Array, secs: i64| stop(&ctx, &h, ids, secs),
    );
    let h = host.clone();
    reg.add(
        "containers",
        "stop",
        move |ctx: NativeCallContext, ids: Array| {
            let secs = i64::try_from(h.config.stop_timeout_secs).unwrap_or(MAX_STOP_SECS);
            stop(&ctx, &h, ids, secs)
        },
    );

    let h = host.clone();
    reg.add(
        "containers",
        "start",
        move |ctx: NativeCallContext, ids: Array| {
            let ids = strings(&ctx, "containers::start", ids)?;
            let action = Action::new("containers.start", ids.join(" "), json!({ "ids": ids }));
            let predicted = || SetReport {
                done: ids.clone(),
                ..Default::default()
            };
            let out = h.gate.apply(action, predicted, |ok| {
                h.engine.start(ok, h.runtime(), &ids)
            });
            to_dynamic(&out.map_err(|e| fail_at(&ctx, e))?)
        },
    );
}

fn list(ctx: &NativeCallContext, host: &Host, all: bool) -> Res<Dynamic> {
    match host
        .engine
        .list_managed(host.runtime(), all)
        .map_err(|e| fail_at(ctx, e))?
    {
        Some(list) => to_dynamic(&list),
        None => Ok(Dynamic::from_array(Vec::new())),
    }
}

fn stop(ctx: &NativeCallContext, host: &Host, ids: Array, secs: i64) -> Res<Dynamic> {
    let ids = strings(ctx, "containers::stop", ids)?;
    if !(1..=MAX_STOP_SECS).contains(&secs) {
        return Err(fail_at(
            ctx,
            format!("containers::stop: timeout {secs} s is outside 1..={MAX_STOP_SECS}"),
        ));
    }
    let timeout = Duration::from_secs(secs.unsigned_abs());
    let action = Action::new(
        "containers.stop",
        ids.join(" "),
        json!({ "ids": ids, "timeout_secs": secs }),
    );
    let predicted = || SetReport {
        done: ids.clone(),
        ..Default::default()
    };
    let out = host.gate.apply(action, predicted, |ok| {
        host.engine.stop(ok, host.runtime(), &ids, timeout)
    });
    to_dynamic(&out.map_err(|e| fail_at(ctx, e))?)
}
