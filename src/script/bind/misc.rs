//! `run::`, `platform::`, `prompt::`, `log::` and `sysbox::` bindings: facts about this run and
//! this machine, and the only way a script talks to the operator.

use std::io::{BufRead, IsTerminal};
use std::rc::Rc;

use rhai::{Array, Dynamic, NativeCallContext};

use super::{Registrar, fail_at, to_dynamic};
use crate::host::{Host, platform, sysbox};
use crate::render::{self, CheckRecord, Status};
use crate::script::engine::limits;
use crate::script::guard;
use crate::term;

pub fn register(reg: &mut Registrar, host: &Rc<Host>, args: &Rc<Vec<String>>, json: bool) {
    let a = args.clone();
    reg.add("run", "args", move || {
        Ok(a.iter().cloned().map(Dynamic::from).collect::<Array>())
    });
    let h = host.clone();
    reg.add("run", "dry_run", move || Ok(h.gate.is_dry_run()));
    reg.add("run", "json", move || Ok(json));
    let h = host.clone();
    reg.add("run", "yes", move || Ok(h.yes));
    let h = host.clone();
    reg.add("run", "plan", move || to_dynamic(&h.gate.plan()));

    let h = host.clone();
    reg.add("platform", "detect", move || {
        Ok(h.platform.as_str().to_string())
    });
    reg.add("platform", "arch", || Ok(platform::deb_arch().to_string()));

    reg.add("platform", "has_program", |name: &str| {
        Ok(has_program(name))
    });

    let h = host.clone();
    reg.add(
        "report",
        "checks",
        move |ctx: NativeCallContext, records: Array| {
            let records = records
                .into_iter()
                .map(|r| rhai::serde::from_dynamic::<CheckRecord>(&r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail_at(&ctx, format!("report::checks: malformed record: {e}")))?;
            if json {
                // With --json the records join the one document printed at the end of the run.
                h.reports.borrow_mut().push(render::checks_value(&records));
            } else {
                term::out(&render::checks_human(&records));
            }
            Ok(
                i64::try_from(records.iter().filter(|r| r.status == Status::Error).count())
                    .unwrap_or(i64::MAX),
            )
        },
    );

    let h = host.clone();
    reg.add(
        "report",
        "data",
        move |ctx: NativeCallContext, value: Dynamic| {
            if !json {
                return Ok(());
            }
            // Converting to JSON recurses once per level of nesting.
            if guard::nesting_depth(&value) > limits::NESTING {
                return Err(fail_at(&ctx, guard::too_deep("report::data", "converted")));
            }
            let value = rhai::serde::from_dynamic::<serde_json::Value>(&value)
                .map_err(|e| fail_at(&ctx, format!("report::data: {e}")))?;
            h.reports.borrow_mut().push(value);
            Ok(())
        },
    );

    let h = host.clone();
    reg.add("prompt", "confirm", move |question: &str| {
        Ok(confirm(&h, question))
    });

    reg.add("log", "info", |m: &str| {
        term::err(&format!("info: {}", term::text(m)));
        Ok(())
    });
    reg.add("log", "warn", |m: &str| {
        term::err(&format!("warning: {}", term::text(m)));
        Ok(())
    });
    reg.add("log", "error", |m: &str| {
        term::err(&format!("error: {}", term::text(m)));
        Ok(())
    });
    let h = host.clone();
    reg.add("log", "verbose", move |m: &str| {
        if h.verbose {
            term::err(&format!("debug: {}", term::text(m)));
        }
        Ok(())
    });

    reg.add(
        "sysbox",
        "installed_version",
        |ctx: NativeCallContext| match sysbox::installed_version() {
            Ok(Some(v)) => to_dynamic(&v),
            Ok(None) => Ok(Dynamic::UNIT),
            Err(e) => Err(fail_at(&ctx, e)),
        },
    );
}

/// `--yes` answers yes; without a terminal the answer is no, so unattended runs never proceed
/// on a question nobody saw.
fn confirm(host: &Host, question: &str) -> bool {
    if host.yes {
        return true;
    }
    if !host.interactive || !std::io::stdin().is_terminal() {
        return false;
    }
    term::err_raw(&format!("{} [y/N] ", term::line(question)));
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Looks for an executable on `PATH`; names with a slash are never looked up.
fn has_program(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if name.is_empty() || name.contains('/') {
        return false;
    }
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}
