//! `dockerd::` bindings over [`crate::host::dockerd`]: which dockerd bundle is active, and
//! installing one beside it with an atomic switch of the links, gated.

use std::rc::Rc;

use rhai::{Dynamic, NativeCallContext};
use serde_json::json;

use super::{Doc, Registrar, fail_at, gated};
use crate::effects::Action;
use crate::host::Host;
use crate::host::dockerd::{self, BIN_DIR, BUNDLE_DIR};

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "dockerd::installed() -> string or ()",
            doc: "the active dockerd bundle version from /opt/containai/VERSION; () when none is installed",
            example: "dockerd::installed()",
        },
        move |ctx: NativeCallContext| {
            Ok(
                match dockerd::installed(&h).map_err(|e| fail_at(&ctx, e))? {
                    Some(version) => Dynamic::from(version),
                    None => Dynamic::UNIT,
                },
            )
        },
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "dockerd::install(bundle: string, version: string)",
            doc: "unpacks a fetched bundle (/var/cache/containai/NAME.tgz) into /opt/containai/docker/VERSION beside the old one, switches the /opt/containai/bin links atomically and writes VERSION",
            example: "dockerd::install(\"/var/cache/containai/docker-28.2.2.tgz\", \"28.2.2\")",
        },
        move |ctx: NativeCallContext, bundle: &str, version: &str| {
            let path = dockerd::check_bundle_path(bundle).map_err(|e| fail_at(&ctx, e))?;
            dockerd::validate_version(version).map_err(|e| fail_at(&ctx, e))?;
            let action = Action::new(
                "dockerd.install",
                format!("{BUNDLE_DIR}/{version}"),
                json!({ "bundle": bundle, "version": version, "links": BIN_DIR }),
            );
            gated(&ctx, &h, action, || (), |ok| {
                dockerd::install(ok, &h, &path, version).map(|_| ())
            })
        },
    );
}
