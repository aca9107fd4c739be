//! The units family: reads and writes unit files in `/etc/systemd/system` only, and asks
//! `systemctl` (found on `PATH`) to reload or restart. Unit names are validated, so a script can
//! never turn a unit name into a path elsewhere, and only ContainAI's own units may be written or
//! restarted: a unit file is a command run as root, so a script must not be able to create or
//! restart arbitrary ones. The text written is always a rendered catalog template (see
//! `units::install`), never text from a script.
//!
//! Unit files live where the engine runs and are reached through [`super::files`]: on this
//! machine under `--root` through the root-anchored layer (atomic writes; symlinks resolve inside
//! the root), on macOS inside the Lima VM at the plain path. With `--root` other than `/`, a local
//! `systemctl` gets `--root=<canonical root>` too, so it acts on that tree or refuses (systemctl
//! does not reload or restart under `--root`) instead of changing the running machine; inside the
//! VM it gets none, since the Mac's root names nothing there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::command::{CommandError, Ended};
use super::files::{self, FileError};
use super::{AsRoot, Host};
use crate::effects::Approval;

pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The engine's unit: while it is active, an absent socket does not mean "no engine".
pub const ENGINE_UNIT: &str = "containai-docker.service";
/// What sd_booted(3) checks: systemd creates it at boot, nothing else does.
pub const SYSTEMD_RUNTIME: &str = "/run/systemd/system";
/// systemctl waits for the unit's stop; the engine unit's TimeoutStopSec exceeds 100 s.
pub const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error(
        "invalid unit name {0:?}: expected NAME.service, NAME.socket or NAME.timer without slashes"
    )]
    InvalidName(String),
    #[error("refusing to {verb} unit {name}: cai only {verb}s {allowed}")]
    NotManaged {
        verb: &'static str,
        name: String,
        allowed: &'static str,
    },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Checks a unit name: letters, digits and `@._-`, with a known unit suffix.
pub fn validate_name(name: &str) -> Result<(), UnitError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-'));
    let suffix = [".service", ".socket", ".timer"]
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s));
    if valid_chars && suffix && !name.starts_with('.') {
        Ok(())
    } else {
        Err(UnitError::InvalidName(name.to_string()))
    }
}

/// Units a script may install: ContainAI's own (`containai-*`).
pub fn check_writable(name: &str) -> Result<(), UnitError> {
    validate_name(name)?;
    if name.starts_with("containai-") {
        Ok(())
    } else {
        Err(UnitError::NotManaged {
            verb: "install",
            name: name.to_string(),
            allowed: "containai-* units",
        })
    }
}

/// Units a script may restart: ContainAI's own and the sysbox services.
pub fn check_restartable(name: &str) -> Result<(), UnitError> {
    validate_name(name)?;
    let sysbox = ["sysbox.service", "sysbox-mgr.service", "sysbox-fs.service"];
    if name.starts_with("containai-") || sysbox.contains(&name) {
        Ok(())
    } else {
        Err(UnitError::NotManaged {
            verb: "restart",
            name: name.to_string(),
            allowed: "containai-* units and sysbox.service, sysbox-mgr.service, sysbox-fs.service",
        })
    }
}

/// The unit file as a host path (absolute; under `--root` locally, plain inside the VM).
fn unit_file(name: &str) -> Result<PathBuf, UnitError> {
    validate_name(name)?;
    Ok(Path::new(UNIT_DIR).join(name))
}

/// How the unit file is named in plans and messages (`VM:PATH` inside the Lima VM).
pub fn unit_path(host: &Host, name: &str) -> Result<String, UnitError> {
    Ok(files::shown(host, &unit_file(name)?))
}

/// The unit file's text where the engine runs, or `None` when it does not exist.
pub fn read(host: &Host, name: &str) -> Result<Option<String>, UnitError> {
    Ok(files::read_to_string(host, &unit_file(name)?)?)
}

/// Replaces the unit file where the engine runs with `text` (a rendered template), mode 0644.
pub fn write(_: Approval, host: &Host, name: &str, text: &str) -> Result<(), UnitError> {
    check_writable(name)?;
    // 0644: systemd reads units as root, and nobody else may change them.
    Ok(files::write_atomic(
        host,
        &unit_file(name)?,
        text.as_bytes(),
        0o644,
    )?)
}

pub fn daemon_reload(_: Approval, host: &Host) -> Result<(), UnitError> {
    systemctl(host, &["daemon-reload"])
}

/// `systemctl restart NAME`. When systemd refuses because the unit hit its start limit [P77]
/// (`StartLimitBurst=` counts every start, manual or not: an update's restart, the sysbox
/// package's scripts restarting the engine through `PartOf=`, a retry), the count is reset with
/// `systemctl reset-failed NAME` and the restart tried once more: a restart cai needs must not
/// be refused by starts it did not make. Only the unit's `Result` property decides that, never
/// systemctl's message.
pub fn restart(_: Approval, host: &Host, name: &str) -> Result<(), UnitError> {
    check_restartable(name)?;
    match systemctl(host, &["restart", name]) {
        Err(_) if start_limit_hit(host, name) => {
            systemctl(host, &["reset-failed", name])?;
            systemctl(host, &["restart", name])
        }
        other => other,
    }
}

/// `systemctl reset-failed NAME`: forgets the unit's failed state and its start-limit count, so
/// the next start is not refused by starts made before (a rollback after a failed update).
pub fn reset_failed(_: Approval, host: &Host, name: &str) -> Result<(), UnitError> {
    check_restartable(name)?;
    systemctl(host, &["reset-failed", name])
}

/// `systemctl enable NAME`: the unit starts at boot (its `WantedBy=`). Only units `cai` writes;
/// an installed engine that does not come back after a reboot leaves every agent down.
pub fn enable(_: Approval, host: &Host, name: &str) -> Result<(), UnitError> {
    check_writable(name)?;
    systemctl(host, &["enable", name])
}

/// `systemctl stop NAME`: the update stops the engine before a package whose scripts would
/// restart it, so that it starts once, after everything is in place.
pub fn stop(_: Approval, host: &Host, name: &str) -> Result<(), UnitError> {
    check_restartable(name)?;
    systemctl(host, &["stop", name])
}

/// When `name` last started (its main process, then ready), or `None` when it never did in this
/// boot. `systemctl show --timestamp=us+utc` prints `KEY=Sat 2026-01-27 10:00:00.123456 UTC`, or
/// `KEY=` for never.
pub fn last_start(
    host: &Host,
    name: &str,
) -> Result<Option<crate::plan::containers::EngineStart>, UnitError> {
    validate_name(name)?;
    let args: Vec<OsString> = [
        "show",
        "--timestamp=us+utc",
        "-p",
        "ExecMainStartTimestamp",
        "-p",
        "ActiveEnterTimestamp",
        name,
    ]
    .iter()
    .map(Into::into)
    .collect();
    let out = host
        .run("systemctl", &args, None, AsRoot::No, SYSTEMCTL_TIMEOUT)?
        .checked()?;
    let value = |key: &str| {
        out.stdout.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix('=')?;
            // `Sat 2026-01-27 10:00:00.123456 UTC` -> `2026-01-27T10:00:00.123456Z`
            let mut words = value.split_whitespace();
            let (_, date, time, zone) =
                (words.next()?, words.next()?, words.next()?, words.next()?);
            (zone == "UTC")
                .then(|| crate::plan::containers::unix_micros(&format!("{date}T{time}Z")))
                .flatten()
        })
    };
    Ok(
        value("ExecMainStartTimestamp").map(|exec_start| crate::plan::containers::EngineStart {
            exec_start,
            ready: value("ActiveEnterTimestamp").unwrap_or(exec_start),
        }),
    )
}

/// Whether systemd last refused to start `name` because of its start limit.
fn start_limit_hit(host: &Host, name: &str) -> bool {
    let args: Vec<OsString> = vec!["show".into(), "-P".into(), "Result".into(), name.into()];
    host.run("systemctl", &args, None, AsRoot::No, SYSTEMCTL_TIMEOUT)
        .ok()
        .and_then(|out| out.checked().ok())
        .is_some_and(|out| out.stdout.trim() == "start-limit-hit")
}

/// Whether the service manager reports `name` active (`systemctl is-active`): exit 0 is active,
/// 3 inactive or failed, 4 no such unit; anything else (no systemd, a dead bus) is an error, never
/// "inactive", because "inactive" is what lets an absent socket mean "no containers".
pub fn is_active(host: &Host, name: &str) -> Result<bool, UnitError> {
    validate_name(name)?;
    let args: Vec<OsString> = vec!["is-active".into(), "--quiet".into(), name.into()];
    let out = host.run("systemctl", &args, None, AsRoot::No, SYSTEMCTL_TIMEOUT)?;
    match out.ended {
        Ended::Code(0) => Ok(true),
        Ended::Code(3 | 4) => Ok(false),
        _ => Err(out.checked().err().map_or_else(
            || UnitError::InvalidName(name.to_string()),
            UnitError::Command,
        )),
    }
}

/// Whether systemd is init where the engine runs (on this machine under `--root`, inside the Lima
/// VM on macOS).
pub fn running(host: &Host) -> Result<bool, FileError> {
    files::is_dir(host, Path::new(SYSTEMD_RUNTIME))
}

/// Whether the engine is known to be down: systemd is not init (no unit can run it) or its unit
/// is not active. An error means nobody can tell, which is never "down".
pub fn engine_down(host: &Host) -> Result<bool, UnitError> {
    if !running(host)? {
        return Ok(true);
    }
    Ok(!is_active(host, ENGINE_UNIT)?)
}

fn systemctl(host: &Host, args: &[&str]) -> Result<(), UnitError> {
    let mut full: Vec<OsString> = host.program_root_arg().into_iter().collect();
    full.extend(args.iter().map(Into::into));
    host.run("systemctl", &full, None, AsRoot::Yes, SYSTEMCTL_TIMEOUT)?
        .checked()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_containai_units_are_written_and_only_ours_or_sysbox_restarted() {
        assert!(check_writable("containai-docker.service").is_ok());
        assert!(check_writable("containai-stop.service").is_ok());
        for bad in [
            "ssh.service",
            "sysbox.service",
            "evil.service",
            "../containai-x.service",
        ] {
            assert!(check_writable(bad).is_err(), "{bad}");
        }
        for ok in [
            "containai-docker.service",
            "sysbox.service",
            "sysbox-mgr.service",
            "sysbox-fs.service",
        ] {
            assert!(check_restartable(ok).is_ok(), "{ok}");
        }
        for bad in ["ssh.service", "sysbox-evil.service", "docker.service"] {
            assert!(check_restartable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unit_names_are_validated() {
        for ok in [
            "containai-docker.service",
            "sysbox-fs.service",
            "a@b.socket",
            "x.timer",
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../x.service",
            "/etc/x.service",
            "x",
            ".service",
            "a b.service",
            "x.conf",
            "a/b.service",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
