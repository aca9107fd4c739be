//! `lima::` bindings: the Lima VM that carries the engine on macOS, as limactl lists it. Read-only:
//! nothing here starts, stops or creates the VM. On Linux and WSL2 there is no VM and the engine's
//! architecture is this machine's.

use super::{Doc, Registrar};
use crate::host::Host;

pub fn register(reg: &mut Registrar) {
    reg.reads(
        Doc {
            signature: "lima::status() -> string",
            doc: "the engine's Lima VM: \"running\", \"stopped\", \"not-found\", \"unreachable\" (limactl missing or failing), or \"not-used\" off macOS",
            example: "lima::status()",
        },
        |h: &Host| Ok::<_, String>(h.lima_state().map_or("not-used", |s| s.as_str())),
    );
    reg.reads(
        Doc {
            signature: "lima::arch() -> string",
            doc: "Debian architecture (amd64, arm64) the engine runs on: the Lima VM's on macOS, this machine's elsewhere; fails when the VM cannot be found",
            example: "lima::arch()",
        },
        |h: &Host| h.engine_arch(),
    );
}
