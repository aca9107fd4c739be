//! `log::` bindings: lines for the operator on stderr, never on stdout (which may carry JSON).

use super::{Doc, Registrar};
use crate::host::Host;
use crate::term;

pub fn register(reg: &mut Registrar) {
    reg.run_state(
        Doc {
            signature: "log::info(message: string)",
            doc: "prints an informational line on stderr",
            example: "log::info(\"hello\")",
        },
        |_: &Host, m: &str| {
            term::err(&format!("info: {}", term::text(m)));
            Ok::<_, String>(())
        },
    );
    reg.run_state(
        Doc {
            signature: "log::warn(message: string)",
            doc: "prints a warning line on stderr",
            example: "log::warn(\"careful\")",
        },
        |_: &Host, m: &str| {
            term::err(&format!("warning: {}", term::text(m)));
            Ok::<_, String>(())
        },
    );
    reg.run_state(
        Doc {
            signature: "log::error(message: string)",
            doc: "prints an error line on stderr (does not stop the script); a message starting with `help: ` (or the part after `; help: `) prints as a `help:` line. A script that then ends with a failure code has these lines as its --json document's error",
            example: "log::error(\"oops\")",
        },
        |_: &Host, m: &str| {
            term::script_error(m);
            Ok::<_, String>(())
        },
    );
    reg.run_state(
        Doc {
            signature: "log::verbose(message: string)",
            doc: "prints a line on stderr with --verbose only",
            example: "log::verbose(\"detail\")",
        },
        |h: &Host, m: &str| {
            if h.verbose {
                term::err(&format!("debug: {}", term::text(m)));
            }
            Ok::<_, String>(())
        },
    );
}
