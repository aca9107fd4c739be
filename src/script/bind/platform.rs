//! `platform::` bindings: which kind of host this is and what is installed on it. Read-only.

use std::rc::Rc;

use rhai::NativeCallContext;

use super::{Doc, Registrar, fail_at};

use crate::host::Host;
use crate::plan::platform;

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "platform::detect() -> string",
            doc: "\"linux\", \"wsl2\" or \"macos\" (config `platform` overrides)",
            example: "platform::detect()",
        },
        move || Ok(h.platform.as_str().to_string()),
    );
    reg.read(
        Doc {
            signature: "platform::arch() -> string",
            doc: "Debian architecture of this machine (amd64, arm64)",
            example: "platform::arch()",
        },
        || Ok(platform::deb_arch().to_string()),
    );
    let h = host.clone();
    reg.read(
        Doc {
            signature: "platform::systemd_running() -> bool",
            doc: "true when systemd is the init of this host (/run/systemd/system exists; inside the Lima VM on macOS)",
            example: "platform::systemd_running()",
        },
        move |ctx: NativeCallContext| {
            crate::host::systemd::running(&h).map_err(|e| fail_at(&ctx, e))
        },
    );
    let h = host.clone();
    reg.read(
        Doc {
            signature: "platform::has_program(name: string) -> bool",
            doc: "true when an executable NAME is on PATH",
            example: "platform::has_program(\"sh\")",
        },
        move |name: &str| Ok(h.has_program(name)),
    );
}
