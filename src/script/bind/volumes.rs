//! `volumes::` bindings over [`crate::host::volumes`]: the managed volumes, an ownership scan of
//! one, and the gated chown inside one. Scripts pass volume names, never paths; which volumes may
//! be walked or changed is decided in the core ([`volumes::scan`], [`volumes::prepare_chown`]),
//! whatever the script asks: a volume it leaves alone comes back as a report with `skip` set and
//! nothing walked.

use std::rc::Rc;

use rhai::Map;
use serde_json::json;

use super::{Doc, Effect, Field, Registrar};
use crate::effects::Action;
use crate::host::Host;
use crate::host::volumes::{self, Owner, Prepared, VolumeReport};

/// What a walk of one volume found or changed (`volumes::scan`, `volumes::chown`).
const VOLUME_REPORT: &[Field] = &[
    ("volume", "string", "the volume's name"),
    (
        "scanned",
        "int",
        "entries looked at, its top directory included",
    ),
    (
        "matched",
        "int",
        "entries owned by the uid or gid looked for (65534 for a scan)",
    ),
    (
        "changed",
        "int",
        "entries changed (in a dry run: that would change); 0 for a scan",
    ),
    (
        "skipped",
        "int",
        "entries left alone (hard link, mount point, changed during the walk, unreadable)",
    ),
    ("failed", "int", "entries whose change failed"),
    ("skipped_by_reason", "map", "reason to count"),
    (
        "samples",
        "array",
        "#{path, reason} for up to a few skipped or failed entries",
    ),
    (
        "uids",
        "map",
        "entries per owning uid (the uid as a string)",
    ),
    ("gids", "map", "entries per owning gid"),
    ("truncated", "bool", "the walk stopped at its entry limit"),
    (
        "dry_run",
        "bool",
        "nothing was changed because the run is a dry run",
    ),
    (
        "resolver",
        "string",
        "openat2 or fallback: how the walk entered directories",
    ),
    (
        "skip",
        "string or ()",
        "why the volume was not walked; () when it was",
    ),
];
const VOLUME_REPORT_EXAMPLE: &str = r#"#{volume: "agent-1-home", scanned: 1204, matched: 3, changed: 0, skipped: 1, failed: 0, skipped_by_reason: #{"hard link": 1}, samples: [#{path: "/.cache/x", reason: "hard link"}], uids: #{"1000": 1201, "65534": 3}, gids: #{"1000": 1201, "65534": 3}, truncated: false, dry_run: false, resolver: "openat2", skip: ()}"#;

pub fn register(reg: &mut Registrar) {
    reg.reads(
        Doc {
            signature: "volumes::managed() -> array of map",
            doc: "named volumes attached to containers labelled containai.managed=true, running or stopped (bind mounts never): volume, container, destination, running; fails when the engine is not running",
            example: "try { volumes::managed() } catch { [] }",
        }
        .returns(
            &[
                ("volume", "string", "the volume's name"),
                ("container", "string", "the labelled container it is attached to"),
                ("destination", "string", "where it is mounted in that container"),
                ("running", "bool", "whether that container runs"),
            ],
            r#"#{volume: "agent-1-home", container: "agent-1", destination: "/home/agent", running: true}"#,
        ),
        |h: &Host| volumes::managed(h).map_err(|e| format!("volumes::managed: {e}")),
    );

    reg.reads(
        Doc {
            signature: "volumes::scan(name: string, limit: int) -> map",
            doc: "ownership of a volume's files: scanned, matched (owned by 65534, uid or gid), skipped with reasons, uids and gids histograms; stops after LIMIT entries (0: all); a volume whose data is not under the volumes directory is not walked and has skip set to why",
            example: "try { volumes::scan(\"cai-example\", 100) } catch { () }",
        }
        .returns(VOLUME_REPORT, VOLUME_REPORT_EXAMPLE),
        scan,
    );
    reg.overload(
        "volumes::scan(name: string) -> map",
        |h: &Host, name: &str| scan(h, name, 0),
    );

    reg.reads(
        Doc {
            signature: "volumes::protected_hardlinks() -> int or ()",
            doc: "the kernel's fs.protected_hardlinks (1: nobody can hard-link a file they do not own into a volume); () when it cannot be read",
            example: "volumes::protected_hardlinks()",
        },
        |h: &Host| {
            volumes::protected_hardlinks(h).map_err(|e| format!("volumes::protected_hardlinks: {e}"))
        },
    );

    reg.gated(
        Doc {
            signature: "volumes::chown(name: string, from: map, to: map) -> map",
            doc: "inside a managed volume, changes the uid and gid that equal FROM #{uid, gid} to TO, never following a symlink or crossing a mount; hard-linked files skipped; scanned, matched, changed, skipped, failed; a volume whose data is not under the volumes directory, or that an unlabelled container shares, is not walked and has skip set to why",
            example: "try { volumes::chown(\"cai-example\", #{uid: 65534, gid: 65534}, #{uid: 1000, gid: 1000}) } catch { () }",
        }
        .returns(VOLUME_REPORT, VOLUME_REPORT_EXAMPLE),
        chown,
    );
}

fn scan(h: &Host, name: &str, limit: i64) -> Result<VolumeReport, String> {
    let limit =
        u64::try_from(limit).map_err(|_| format!("volumes::scan: limit {limit} is negative"))?;
    volumes::scan(h, name, limit).map_err(|e| format!("volumes::scan: {e}"))
}

fn owner(what: &str, map: &Map) -> Result<Owner, String> {
    let id = |key: &str| -> Result<u32, String> {
        let value = map
            .get(key)
            .and_then(|v| v.as_int().ok())
            .ok_or_else(|| format!("volumes::chown: {what} needs an integer `{key}`"))?;
        // -1 means "unchanged" to chown(2) and is never an owner.
        u32::try_from(value)
            .ok()
            .filter(|v| *v != u32::MAX)
            .ok_or_else(|| format!("volumes::chown: {what}.{key} {value} is not a valid id"))
    };
    Ok(Owner {
        uid: id("uid")?,
        gid: id("gid")?,
    })
}

fn chown(h: &Host, name: &str, from: Map, to: Map) -> Result<Effect<VolumeReport>, String> {
    let from = owner("from", &from)?;
    let to = owner("to", &to)?;
    let chown = match volumes::prepare_chown(h, name, from, to)
        .map_err(|e| format!("volumes::chown: {e}"))?
    {
        Prepared::Ready(chown) => Rc::new(chown),
        Prepared::Skipped(report) => return Ok(Effect::Unchanged(report)),
    };
    let action = Action::new(
        "volumes.chown",
        name,
        json!({ "path": chown.shown(), "from": from, "to": to }),
    );
    let predicted = chown.clone();
    Ok(Effect::act(
        action,
        move || predicted.predict(),
        move |_, ok| Ok::<_, std::convert::Infallible>(chown.perform(ok)),
    ))
}
