//! `packages::` bindings over [`crate::host::packages`]: verified `.deb` installs, gated.

use std::rc::Rc;

use rhai::NativeCallContext;
use serde_json::json;

use super::{Doc, Registrar, fail_at, gated};
use crate::effects::Action;
use crate::host::{Host, packages};

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "packages::install_deb(path: string)",
            doc: "installs a .deb that passes the trust rules (root-owned, not writable by others, no symlinks) from a private copy with dpkg -i; the plan shows its sha256",
            example: "try { packages::install_deb(\"/var/cache/containai/x.deb\") } catch { () }",
        },
        move |ctx: NativeCallContext, path: &str| {
            // Verified in every mode (it only reads), so a dry run shows what would be installed.
            let deb = packages::verify_deb(&h, std::path::Path::new(path))
                .map_err(|e| fail_at(&ctx, e))?;
            let action = Action::new(
                "packages.install_deb",
                deb.shown.display().to_string(),
                json!({ "bytes": deb.bytes, "sha256": deb.sha256 }),
            );
            gated(&ctx, &h, action, || (), |ok| {
                packages::install_deb(ok, &h, &deb)
            })
        },
    );
}
