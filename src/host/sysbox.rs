//! The sysbox family: reads the installed version from the `sysbox-runc` binary itself (not from
//! dpkg metadata, which lacks the ContainAI build marker), on the host's execution target.
//! Read-only.

use std::time::Duration;

use super::command::CommandError;
use super::{AsRoot, Host};
use crate::plan::version::{SysboxVersion, parse_runc_output};

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
