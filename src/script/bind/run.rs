//! `run::` bindings: facts about this run (arguments, mode, output format, the plan so far), and
//! the typed outcomes a script ends with when the exit code is a documented one
//! ([`crate::error::exit_code`] decides it).

use std::rc::Rc;

use rhai::Dynamic;

use super::{Doc, Registrar};
use crate::host::Host;
use crate::script::outcome::Outcome;

pub fn register(reg: &mut Registrar, args: &Rc<Vec<String>>, json: bool) {
    let a = args.clone();
    reg.reads(
        Doc {
            signature: "run::args() -> array",
            doc: "arguments given after `--` on the command line",
            example: "run::args()",
        },
        move |_: &Host| Ok::<_, String>(a.to_vec()),
    );
    reg.reads(
        Doc {
            signature: "run::dry_run() -> bool",
            doc: "true when mutating primitives only record a plan",
            example: "run::dry_run()",
        },
        |h: &Host| Ok::<_, String>(h.gate.is_dry_run()),
    );
    reg.reads(
        Doc {
            signature: "run::json() -> bool",
            doc: "true when the caller asked for JSON output",
            example: "run::json()",
        },
        move |_: &Host| Ok::<_, String>(json),
    );
    reg.reads(
        Doc {
            signature: "run::yes() -> bool",
            doc: "true when --yes answers every confirmation",
            example: "run::yes()",
        },
        |h: &Host| Ok::<_, String>(h.yes),
    );
    reg.reads(
        Doc {
            signature: "run::plan() -> array",
            doc: "the actions recorded so far in this dry run",
            example: "run::plan()",
        },
        |h: &Host| Ok::<_, String>(h.gate.plan()),
    );
    reg.reads(
        Doc {
            signature: "run::refused() -> outcome",
            doc: "the outcome of a flow that refused to act and changed nothing; exit(run::refused()) ends the script with the documented exit code (2)",
            example: "run::refused()",
        },
        |_: &Host| Ok::<_, String>(Dynamic::from(Outcome::Refused)),
    );
    reg.reads(
        Doc {
            signature: "run::updates_available() -> outcome",
            doc: "the outcome of a check that found updates; exit(run::updates_available()) ends the script with the documented exit code (100)",
            example: "run::updates_available()",
        },
        |_: &Host| Ok::<_, String>(Dynamic::from(Outcome::UpdatesAvailable)),
    );
}
