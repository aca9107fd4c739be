//! `volumes::` bindings over [`crate::host::volumes`]: the managed volumes, an ownership scan of
//! one, and the gated chown inside one. Scripts pass volume names, never paths; which volumes may
//! be walked or changed is decided in the core ([`volumes::scan`], [`volumes::prepare_chown`]),
//! whatever the script asks: a volume it leaves alone comes back as a report with `skip` set and
//! nothing walked.

use std::rc::Rc;

use rhai::{Dynamic, Map, NativeCallContext};
use serde_json::json;

use super::{Doc, Registrar, Res, fail_at, gated, to_dynamic};
use crate::effects::Action;
use crate::host::Host;
use crate::host::volumes::{self, Owner, Prepared, VolumeReport};

pub fn register(reg: &mut Registrar, host: &Rc<Host>) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "volumes::managed() -> array",
            doc: "named volumes attached to containers labelled containai.managed=true, running or stopped (bind mounts never): volume, container, destination, running; fails when the engine is not running",
            example: "try { volumes::managed() } catch { [] }",
        },
        move |ctx: NativeCallContext| {
            to_dynamic(
                &volumes::managed(&h)
                    .map_err(|e| fail_at(&ctx, format!("volumes::managed: {e}")))?,
            )
        },
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "volumes::scan(name: string, limit: int) -> map",
            doc: "ownership of a volume's files: scanned, matched (owned by 65534, uid or gid), skipped with reasons, uids and gids histograms; stops after LIMIT entries (0: all); a volume whose data is not under the volumes directory is not walked and has skip set to why",
            example: "try { volumes::scan(\"cai-example\", 100) } catch { () }",
        },
        move |ctx: NativeCallContext, name: &str, limit: i64| scan(&ctx, &h, name, limit),
    );
    let h = host.clone();
    reg.overload(
        "volumes::scan(name: string) -> map",
        move |ctx: NativeCallContext, name: &str| scan(&ctx, &h, name, 0),
    );

    let h = host.clone();
    reg.read(
        Doc {
            signature: "volumes::protected_hardlinks() -> int or ()",
            doc: "the kernel's fs.protected_hardlinks (1: nobody can hard-link a file they do not own into a volume); () when it cannot be read",
            example: "volumes::protected_hardlinks()",
        },
        move |ctx: NativeCallContext| {
            let value = volumes::protected_hardlinks(&h)
                .map_err(|e| fail_at(&ctx, format!("volumes::protected_hardlinks: {e}")))?;
            Ok(value.map_or(Dynamic::UNIT, Dynamic::from))
        },
    );

    let h = host.clone();
    reg.mutating(
        Doc {
            signature: "volumes::chown(name: string, from: map, to: map) -> map",
            doc: "inside a managed volume, changes the uid and gid that equal FROM #{uid, gid} to TO, never following a symlink or crossing a mount; hard-linked files skipped; scanned, matched, changed, skipped, failed; a volume whose data is not under the volumes directory, or that an unlabelled container shares, is not walked and has skip set to why",
            example: "try { volumes::chown(\"cai-example\", #{uid: 65534, gid: 65534}, #{uid: 1000, gid: 1000}) } catch { () }",
        },
        move |ctx: NativeCallContext, name: &str, from: Map, to: Map| {
            chown(&ctx, &h, name, &from, &to)
        },
    );
}

fn scan(ctx: &NativeCallContext, host: &Host, name: &str, limit: i64) -> Res<Dynamic> {
    let limit = u64::try_from(limit)
        .map_err(|_| fail_at(ctx, format!("volumes::scan: limit {limit} is negative")))?;
    let report = volumes::scan(host, name, limit)
        .map_err(|e| fail_at(ctx, format!("volumes::scan: {e}")))?;
    to_dynamic(&report)
}

fn owner(ctx: &NativeCallContext, what: &str, map: &Map) -> Res<Owner> {
    let id = |key: &str| -> Res<u32> {
        let value = map.get(key).and_then(|v| v.as_int().ok()).ok_or_else(|| {
            fail_at(
                ctx,
                format!("volumes::chown: {what} needs an integer `{key}`"),
            )
        })?;
        // -1 means "unchanged" to chown(2) and is never an owner.
        u32::try_from(value)
            .ok()
            .filter(|v| *v != u32::MAX)
            .ok_or_else(|| {
                fail_at(
                    ctx,
                    format!("volumes::chown: {what}.{key} {value} is not a valid id"),
                )
            })
    };
    Ok(Owner {
        uid: id("uid")?,
        gid: id("gid")?,
    })
}

fn chown(ctx: &NativeCallContext, host: &Host, name: &str, from: &Map, to: &Map) -> Res<Dynamic> {
    let from = owner(ctx, "from", from)?;
    let to = owner(ctx, "to", to)?;
    let chown = match volumes::prepare_chown(host, name, from, to)
        .map_err(|e| fail_at(ctx, format!("volumes::chown: {e}")))?
    {
        Prepared::Ready(chown) => chown,
        Prepared::Skipped(report) => return to_dynamic(&report),
    };
    let action = Action::new(
        "volumes.chown",
        name,
        json!({ "path": chown.shown(), "from": from, "to": to }),
    );
    gated(
        ctx,
        host,
        action,
        || chown.predict(),
        |ok| Ok::<VolumeReport, std::convert::Infallible>(chown.perform(ok)),
    )
}
