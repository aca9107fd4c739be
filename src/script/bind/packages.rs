//! `packages::` bindings over [`crate::host::packages`]: `.deb` installs, gated.

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
            doc: "installs an existing .deb file with dpkg -i (path resolved under --root)",
            example: "try { packages::install_deb(\"/var/cache/containai/x.deb\") } catch { () }",
        },
        move |ctx: NativeCallContext, path: &str| {
            let file = packages::check_deb_path(&h, path).map_err(|e| fail_at(&ctx, e))?;
            let meta = std::fs::symlink_metadata(&file).map_err(|e| {
                fail_at(
                    &ctx,
                    format!("packages::install_deb: cannot use {}: {e}", file.display()),
                )
            })?;
            if !meta.is_file() {
                return Err(fail_at(
                    &ctx,
                    format!(
                        "packages::install_deb: {} is not a regular file",
                        file.display()
                    ),
                ));
            }
            let action = Action::new(
                "packages.install_deb",
                file.display().to_string(),
                json!({ "bytes": meta.len() }),
            );
            gated(
                &ctx,
                &h,
                action,
                || (),
                |ok| packages::install_deb(ok, &h, &file),
            )
        },
    );
}
