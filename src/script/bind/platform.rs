//! `platform::` bindings: which kind of host this is and what is installed on it. Read-only.

use super::{Doc, Registrar};
use crate::host::Host;
use crate::plan::platform;

pub fn register(reg: &mut Registrar) {
    reg.reads(
        Doc {
            signature: "platform::detect() -> string",
            doc: "\"linux\", \"wsl2\" or \"macos\" (config `platform` overrides)",
            example: "platform::detect()",
        },
        |h: &Host| Ok::<_, String>(h.platform.as_str()),
    );
    reg.reads(
        Doc {
            signature: "platform::arch() -> string",
            doc: "Debian architecture of this machine (amd64, arm64)",
            example: "platform::arch()",
        },
        |_: &Host| Ok::<_, String>(platform::deb_arch()),
    );
    reg.reads(
        Doc {
            signature: "platform::systemd_running() -> bool",
            doc: "true when systemd is the init of this host (/run/systemd/system exists; inside the Lima VM on macOS)",
            example: "platform::systemd_running()",
        },
        |h: &Host| crate::host::systemd::running(h),
    );
    reg.reads(
        Doc {
            signature: "platform::has_program(name: string) -> bool",
            doc: "true when an executable NAME is on PATH",
            example: "platform::has_program(\"sh\")",
        },
        |h: &Host, name: &str| Ok::<_, String>(h.has_program(name)),
    );
}
