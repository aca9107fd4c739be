//! `sysbox::` bindings over [`crate::host::sysbox`]. Read-only.

use std::rc::Rc;

use rhai::{Dynamic, NativeCallContext};

use super::{Doc, Registrar, fail_at, to_dynamic};
use crate::host::{Host, sysbox};

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "sysbox::installed_version() -> map or ()",
            doc: "version read from `sysbox-runc --version` (full, semver, containai_build); () when not installed",
            example: "try { sysbox::installed_version() } catch { () }",
        },
        move |ctx: NativeCallContext| match sysbox::installed_version(&h) {
            Ok(Some(v)) => to_dynamic(&v),
            Ok(None) => Ok(Dynamic::UNIT),
            Err(e) => Err(fail_at(&ctx, e)),
        },
    );
}
