//! The sysbox family: reads the installed version from the `sysbox-runc` binary itself (not from
//! dpkg metadata, which lacks the ContainAI build marker), on the host's execution target, and
//! weighs it against the release target with [`version::decide`]. Read-only.

use std::time::Duration;

use super::command::CommandError;
use super::{AsRoot, Host};
use serde::Serialize;

use crate::plan::release;
use crate::plan::version::{self, Decision, SysboxVersion, parse_runc_output};

const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum SysboxError {
    #[error("cannot read the sysbox version: {0}")]
    Command(#[from] CommandError),
    #[error(transparent)]
    Parse(#[from] crate::plan::version::VersionError),
}

/// `Ok(None)` when `sysbox-runc` is not installed on the execution target (inside the Lima VM
/// on macOS).
pub fn installed_version(host: &Host) -> Result<Option<SysboxVersion>, SysboxError> {
    let output = match host.run(
        "sysbox-runc",
        &["--version".into()],
        None,
        AsRoot::No,
        VERSION_TIMEOUT,
    ) {
        Ok(output) => output.checked()?,
        Err(CommandError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(parse_runc_output(&output.stdout)?))
}

/// Sysbox on the execution target against this run's release target, read once: what every flow
/// that reports or updates sysbox decides from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// `None`: not installed, or the version check failed (then `error` says why).
    pub installed: Option<SysboxVersion>,
    pub error: Option<String>,
    /// The target's full version; `None` when it cannot be worked out (then `target_error`).
    pub target: Option<String>,
    pub target_error: Option<String>,
    /// `None` only without a target; a failed version check is the decision `check-failed`,
    /// never "up to date" [P11, P20].
    pub decision: Option<Decision>,
}

/// Reads the installed version and the release target and decides; nothing here fails, every
/// failure is a field.
pub fn status(host: &Host) -> Status {
    let (installed, error) = match installed_version(host) {
        Ok(v) => (v, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let target = host
        .release()
        .map_err(ToString::to_string)
        .map(|t| t.sysbox.version.clone());
    let parsed = target
        .clone()
        .and_then(|t| release::sysbox_version(&t).map_err(|e| format!("sysbox target {t}: {e}")));
    let decision = parsed.as_ref().ok().map(|target| {
        let seen = match &error {
            Some(reason) => Err(reason.as_str()),
            None => Ok(installed.as_ref()),
        };
        version::decide(seen, target)
    });
    Status {
        installed,
        error,
        target: target.ok(),
        target_error: parsed.err(),
        decision,
    }
}
