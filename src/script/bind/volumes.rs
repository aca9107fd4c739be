//! `volumes::` bindings over [`crate::host::volumes`]: the managed volumes, an ownership scan of
//! one, and the gated chown inside one. Scripts pass volume names, never paths; which volumes may
//! be walked or changed is decided by [`volumes::open_checked`] in the core, whatever the script
//! asks: a volume it leaves alone comes back as a report with `skip` set and nothing walked.

use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Map, NativeCallContext};
use serde_json::json;

use super::{Doc, Registrar, Res, fail_at, gated, to_dynamic};
use crate::effects::Action;
use crate::host::Host;
use crate::host::volumes::{
    self, Change, Checked, NOBODY, Owner, Purpose, Volume, VolumeReport, WalkOptions,
};

/// The sysctl that keeps container users from hard-linking files they do not own (under `--root`).
const PROTECTED_HARDLINKS: &str = "/proc/sys/fs/protected_hardlinks";
/// A volume taking longer than this gets a progress line on a terminal.
const PROGRESS_AFTER: Duration = Duration::from_millis(800);

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
            let text = crate::host::files::read_to_string(&h, std::path::Path::new(PROTECTED_HARDLINKS))
                .map_err(|e| fail_at(&ctx, format!("volumes::protected_hardlinks: {e}")))?;
            Ok(text
                .and_then(|t| t.trim().parse::<i64>().ok())
                .map_or(Dynamic::UNIT, Dynamic::from))
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

/// The volume opened for a walk after the core's rules, or the report of one left alone.
fn open(
    ctx: &NativeCallContext,
    host: &Host,
    what: &str,
    name: &str,
    purpose: Purpose,
) -> Res<Result<Volume, VolumeReport>> {
    match volumes::open_checked(host, name, purpose) {
        Ok(Checked::Open(volume)) => Ok(Ok(volume)),
        Ok(Checked::Skip(why)) => Ok(Err(VolumeReport::skipped(name, &why))),
        Err(e) => Err(fail_at(ctx, format!("{what}: {e}"))),
    }
}

fn options(host: &Host, change: Change) -> WalkOptions {
    WalkOptions {
        change,
        resolver: host.walk_resolver.get(),
        limit: 0,
        threads: 0,
    }
}

fn scan(ctx: &NativeCallContext, host: &Host, name: &str, limit: i64) -> Res<Dynamic> {
    let limit = u64::try_from(limit)
        .map_err(|_| fail_at(ctx, format!("volumes::scan: limit {limit} is negative")))?;
    let volume = match open(ctx, host, "volumes::scan", name, Purpose::Scan)? {
        Ok(volume) => volume,
        Err(skipped) => return to_dynamic(&skipped),
    };
    let nobody = Owner {
        uid: NOBODY,
        gid: NOBODY,
    };
    let opts = WalkOptions {
        limit,
        ..options(host, Change::Scan { from: nobody })
    };
    to_dynamic(&with_progress(name, |seen| volume.walk(&opts, seen)))
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
    // The safety rules are the core's: only a volume a labelled container uses alone, whose data
    // is under the volumes directory, whatever the script passes.
    let volume = match open(ctx, host, "volumes::chown", name, Purpose::Repair)? {
        Ok(volume) => volume,
        Err(skipped) => return to_dynamic(&skipped),
    };
    let action = Action::new(
        "volumes.chown",
        name,
        json!({ "path": volume.shown(), "from": from, "to": to }),
    );
    let predict = || {
        let opts = options(
            host,
            Change::Chown {
                from,
                to,
                perform: false,
            },
        );
        with_progress(name, |seen| volume.walk(&opts, seen))
    };
    gated(ctx, host, action, predict, |ok| {
        let opts = options(host, Change::Scan { from });
        Ok::<VolumeReport, std::convert::Infallible>(with_progress(name, |seen| {
            volume.chown(ok, from, to, opts, seen)
        }))
    })
}

/// Runs a walk; when it takes more than a moment and stderr is a terminal, shows how many
/// entries it has seen.
fn with_progress(name: &str, walk: impl FnOnce(&AtomicU64) -> VolumeReport + Send) -> VolumeReport {
    let seen = AtomicU64::new(0);
    if !std::io::stderr().is_terminal() {
        return walk(&seen);
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let report = walk(&seen);
            done.store(true, Ordering::SeqCst);
            report
        });
        let start = Instant::now();
        let mut bar: Option<indicatif::ProgressBar> = None;
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            if bar.is_none() && start.elapsed() >= PROGRESS_AFTER {
                let b =
                    indicatif::ProgressBar::with_draw_target(None, crate::term::progress_target());
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg} {spinner} {pos} entries {per_sec}",
                ) {
                    b.set_style(style);
                }
                b.set_message(format!("volume {}", crate::term::line(name)));
                bar = Some(b);
            }
            if let Some(b) = &bar {
                b.set_position(seen.load(Ordering::Relaxed));
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
