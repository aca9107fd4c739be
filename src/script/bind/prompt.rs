//! `prompt::` bindings: the only way a script asks the operator something.

use std::rc::Rc;

use super::{Doc, Registrar};
use crate::host::Host;

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "prompt::confirm(question: string) -> bool",
            doc: "asks yes/no on the terminal; false without a TTY, true with --yes",
            example: "prompt::confirm(\"continue?\")",
        },
        move |question: &str| Ok(h.confirm(question)),
    );
}
