//! `lima::` bindings: the Lima VM that carries the engine on macOS, as limactl lists it. Read-only:
//! nothing here starts, stops or creates the VM. On Linux and WSL2 there is no VM and the engine's
//! architecture is this machine's.

use std::rc::Rc;

use rhai::NativeCallContext;

use super::{Doc, Registrar, fail_at};
use crate::host::Host;

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "lima::status() -> string",
            doc: "the engine's Lima VM: \"running\", \"stopped\", \"not-found\", \"unreachable\" (limactl missing or failing), or \"not-used\" off macOS",
            example: "lima::status()",
        },
        move || Ok(h.lima_state().map_or("not-used", |s| s.as_str()).to_string()),
    );
    let h = host.clone();
    reg.read(
        Doc {
            signature: "lima::arch() -> string",
            doc: "Debian architecture (amd64, arm64) the engine runs on: the Lima VM's on macOS, this machine's elsewhere; fails when the VM cannot be found",
            example: "lima::arch()",
        },
        move |ctx: NativeCallContext| h.engine_arch().map_err(|e| fail_at(&ctx, e)),
    );
}
