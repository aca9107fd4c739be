//! The one error type of `cai` and the exit codes it decides. Every command returns
//! `Result<u8, Error>`; [`Error::code`] is the only place that maps a failure to an exit status,
//! so nothing downcasts an error to find out what the process should return.

use crate::config::ConfigError;
use crate::host::fs::FsError;
use crate::host::trust::TrustError;
use crate::script::RunError;
use crate::script::catalog::CatalogError;
use crate::script::error::ScriptError;

/// Success, or nothing to do.
pub const OK: u8 = 0;
/// Failure, including usage errors and bad input.
pub const FAILURE: u8 = 1;
/// `cai shell` and `cai exec` failed themselves (container not found, cannot connect, host key
/// mismatch, missing key, bad input), as opposed to the remote command's own status.
pub const REMOTE_FAILURE: u8 = 125;
/// Interrupted by Ctrl-C.
pub const INTERRUPTED: u8 = 130;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    /// `cai shell` / `cai exec` could not run the remote command.
    #[error(transparent)]
    Ssh(#[from] crate::host::ssh::SshError),
    /// Bad input that is not a file or a script: the message says what to do.
    #[error("{0}")]
    Input(String),
    /// Anything else, with its context chain.
    #[error("{}", chain(.0))]
    Other(#[from] anyhow::Error),
}

impl Error {
    /// The exit status this failure ends the process with.
    pub fn code(&self) -> u8 {
        match self {
            Error::Script(e) if e.interrupted => INTERRUPTED,
            Error::Ssh(_) => REMOTE_FAILURE,
            _ => FAILURE,
        }
    }
}

impl From<RunError> for Error {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Catalog(e) => Error::Catalog(e),
            RunError::Script(e) => Error::Script(e),
        }
    }
}

/// `outer: inner: innermost`, the way operators read a cause.
fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_decided_here() {
        let interrupted = ScriptError {
            message: "x.rhai: script interrupted by Ctrl-C".into(),
            interrupted: true,
        };
        assert_eq!(Error::from(interrupted).code(), INTERRUPTED);
        let failed = ScriptError {
            message: "x.rhai:1:1: boom".into(),
            interrupted: false,
        };
        assert_eq!(Error::from(RunError::Script(failed)).code(), FAILURE);
        assert_eq!(Error::Input("bad".into()).code(), FAILURE);
        let ssh = crate::host::ssh::SshError::Input("bad".into());
        assert_eq!(Error::from(ssh).code(), REMOTE_FAILURE);
        let other = Error::from(anyhow::anyhow!("inner").context("outer"));
        assert_eq!(other.to_string(), "outer: inner");
    }
}
