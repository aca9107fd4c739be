//! `prompt::` bindings: the only way a script asks the operator something. `confirm` is any
//! yes/no question and agrees to nothing else; `confirm_stop` is the one question whose yes lets
//! an update stop containers, worded by the core from the containers it names [P74].

use rhai::{Array, Dynamic};

use super::{Doc, Registrar};
use crate::host::Host;

pub fn register(reg: &mut Registrar) {
    reg.run_state(
        Doc {
            signature: "prompt::confirm(question: string) -> bool",
            doc: "asks yes/no on the terminal; false without a TTY, true with --yes; a yes never agrees to stopping containers (see confirm_stop)",
            example: "prompt::confirm(\"continue?\")",
        },
        |h: &Host, question: &str| Ok::<_, String>(h.confirm(question)),
    );

    reg.run_state(
        Doc {
            signature: "prompt::confirm_stop(containers: array) -> bool",
            doc: "asks the person at the terminal to stop these containers (maps with a name, as containers::list_managed returns, or names) for the update, naming each; a yes is consent to record and stop exactly these containers in this run; false without a TTY, never answered by --yes or --force",
            example: "prompt::confirm_stop([\"cai-example\"])",
        },
        |h: &Host, containers: Array| names(containers).map(|names| h.confirm_stop(&names)),
    );
}

/// The name of each container: a string, or a map's `name` (`id` when it has none).
fn names(containers: Array) -> Result<Vec<String>, String> {
    if containers.is_empty() {
        return Err(
            "prompt::confirm_stop: the list of containers is empty; there is nothing to agree to"
                .to_string(),
        );
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
                format!(
                    "prompt::confirm_stop: {c} is neither a container name nor a map with a name"
                )
            })
        })
        .collect()
}
