//! The sysbox family: reads the installed version from the `sysbox-runc` binary itself (not from
//! dpkg metadata, which lacks the ContainAI build marker). Read-only.

use std::time::Duration;

use super::command::{self, CommandError};
use crate::plan::version::{SysboxVersion, parse_runc_output};

const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum SysboxError {
    #[error("sysbox-runc --version failed: {0}")]
    Command(#[from] CommandError),
    #[error("sysbox-runc --version exited with {code:?}\n{stderr}")]
    Failed { code: Option<i32>, stderr: String },
    #[error(transparent)]
    Parse(#[from] crate::plan::version::VersionError),
}

/// `Ok(None)` when `sysbox-runc` is not installed.
pub fn installed_version() -> Result<Option<SysboxVersion>, SysboxError> {
    let output = match command::run("sysbox-runc", &["--version"], VERSION_TIMEOUT) {
        Ok(output) => output,
        Err(CommandError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !output.success() {
        return Err(SysboxError::Failed {
            code: output.code,
            stderr: command::framed(&output.stderr),
        });
    }
    Ok(Some(parse_runc_output(&output.stdout)?))
}
