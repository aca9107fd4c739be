//! `run::` bindings: facts about this run (arguments, mode, output format, the plan so far), and
//! the typed outcomes a script ends with when the exit code is a documented one
//! ([`crate::error::exit_code`] decides it).

use std::rc::Rc;

use rhai::{Array, Dynamic};

use super::{Doc, Registrar, to_dynamic};
use crate::host::Host;
use crate::script::outcome::Outcome;

pub fn register(reg: &mut Registrar, host: &Rc<Host>, args: &Rc<Vec<String>>, json: bool) {
    let a = args.clone();
    reg.read(
        Doc {
            signature: "run::args() -> array",
            doc: "arguments given after `--` on the command line",
            example: "run::args()",
        },
        move || Ok(a.iter().cloned().map(Dynamic::from).collect::<Array>()),
    );
    let h = host.clone();
    reg.read(
        Doc {
            signature: "run::dry_run() -> bool",
            doc: "true when mutating primitives only record a plan",
            example: "run::dry_run()",
        },
        move || Ok(h.gate.is_dry_run()),
    );
    reg.read(
        Doc {
            signature: "run::json() -> bool",
            doc: "true when the caller asked for JSON output",
            example: "run::json()",
        },
        move || Ok(json),
    );
    let h = host.clone();
    reg.read(
        Doc {
            signature: "run::yes() -> bool",
            doc: "true when --yes answers every confirmation",
            example: "run::yes()",
        },
        move || Ok(h.yes),
    );
    let h = host.clone();
    reg.read(
        Doc {
            signature: "run::plan() -> array",
            doc: "the actions recorded so far in this dry run",
            example: "run::plan()",
        },
        move || to_dynamic(&h.gate.plan()),
    );
    reg.read(
        Doc {
            signature: "run::refused() -> outcome",
            doc: "the outcome of a flow that refused to act and changed nothing; exit(run::refused()) ends the script with the documented exit code (2)",
            example: "run::refused()",
        },
        || Ok(Outcome::Refused),
    );
    reg.read(
        Doc {
            signature: "run::updates_available() -> outcome",
            doc: "the outcome of a check that found updates; exit(run::updates_available()) ends the script with the documented exit code (100)",
            example: "run::updates_available()",
        },
        || Ok(Outcome::UpdatesAvailable),
    );
}
