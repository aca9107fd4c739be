//! `packages::` bindings over [`crate::host::packages`]: verified `.deb` installs, gated.

use std::rc::Rc;

use rhai::NativeCallContext;
use serde_json::json;

use super::{Doc, Registrar, fail_at, gated};
use crate::effects::Action;
use crate::host::Host;
use crate::host::packages::{self, PackageError};

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "packages::install_deb(path: string)",
            doc: "installs a .deb that passes the trust rules (root-owned, not writable by others, no symlinks) from a private copy with dpkg -i; the plan shows its sha256; while the update lock is held, refused unless every running container (labelled or not) is recorded",
            example: "try { packages::install_deb(\"/var/cache/containai/x.deb\") } catch { () }",
        },
        move |ctx: NativeCallContext, path: &str| {
            let file = std::path::Path::new(path);
            // A sysbox package's maintainer scripts restart sysbox, and the engine with it, which
            // stops every container on it; which package restarts what is not known here, so
            // during an update every package waits until every running container is recorded.
            super::containers::check_all_recorded(&h)
                .map_err(|e| fail_at(&ctx, format!("packages::install_deb {path}: {e}")))?;
            // Verified in every mode (it only reads), so a dry run shows what would be installed.
            // A dry run may name a package that an earlier step of the same run would have
            // fetched (and verified against its pinned sha256): that one is planned as such.
            let deb = match packages::verify_deb(&h, file) {
                Ok(deb) => Some(deb),
                Err(PackageError::Missing(_)) if h.gate.is_dry_run() => None,
                Err(e) => return Err(fail_at(&ctx, e)),
            };
            let action = match &deb {
                Some(deb) => Action::new(
                    "packages.install_deb",
                    deb.shown.display().to_string(),
                    json!({ "bytes": deb.bytes, "sha256": deb.sha256 }),
                ),
                None => Action::new(
                    "packages.install_deb",
                    h.root().display_path(file).display().to_string(),
                    json!({ "sha256": "checked when it is fetched" }),
                ),
            };
            gated(&ctx, &h, action, || (), |ok| match &deb {
                Some(deb) => packages::install_deb(ok, &h, deb),
                // Unreachable in a live run: the missing file was refused above.
                None => Err(PackageError::Missing(h.root().display_path(file))),
            })
        },
    );
}
