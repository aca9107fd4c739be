//! `prompt::` bindings: the only way a script asks the operator something. `confirm` is any
//! yes/no question and agrees to nothing else; `confirm_stop` is the one question whose yes lets
//! an update stop containers, worded by the core from the containers it names [P74].

use std::rc::Rc;

use rhai::{Array, Dynamic, NativeCallContext};

use super::{Doc, Registrar, Res, fail_at};
use crate::host::Host;

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "prompt::confirm(question: string) -> bool",
            doc: "asks yes/no on the terminal; false without a TTY, true with --yes; a yes never agrees to stopping containers (see confirm_stop)",
            example: "prompt::confirm(\"continue?\")",
        },
        move |question: &str| Ok(h.confirm(question)),
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "prompt::confirm_stop(containers: array) -> bool",
            doc: "asks the person at the terminal to stop these containers (maps with a name, as containers::list_managed returns, or names) for the update, naming each; a yes is consent to record and stop containers in this run, as --stop-containers is; false without a TTY, never answered by --yes or --force",
            example: "prompt::confirm_stop([\"cai-example\"])",
        },
        move |ctx: NativeCallContext, containers: Array| {
            let names = names(&ctx, containers)?;
            Ok(h.confirm_stop(&names))
        },
    );
}

/// The name of each container: a string, or a map's `name` (`id` when it has none).
fn names(ctx: &NativeCallContext, containers: Array) -> Res<Vec<String>> {
    if containers.is_empty() {
        return Err(fail_at(
            ctx,
            "prompt::confirm_stop: the list of containers is empty; there is nothing to agree to",
        ));
    }
    containers
        .into_iter()
        .map(|c: Dynamic| {
            let found = if let Some(map) = c.read_lock::<rhai::Map>() {
                ["name", "id"]
                    .iter()
                    .find_map(|k| map.get(*k).and_then(|v| v.clone().into_string().ok()))
                    .filter(|n| !n.is_empty())
            } else {
                c.clone().into_string().ok().filter(|n| !n.is_empty())
            };
            found.ok_or_else(|| {
                fail_at(
                    ctx,
                    format!(
                        "prompt::confirm_stop: {c} is neither a container name nor a map with a name"
                    ),
                )
            })
        })
        .collect()
}
