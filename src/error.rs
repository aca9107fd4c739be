//! The one error type of `cai` and the exit codes it decides. Every command returns
//! `Result<u8, Error>`; [`Error::code`] is the only place that maps a failure to an exit status,
//! and [`exit_code`] the only one that maps a script's outcome to one, so nothing downcasts an
//! error, and no script hard-codes a documented code, to find out what the process returns.

use crate::config::ConfigError;
use crate::host::fs::FsError;
use crate::host::trust::TrustError;
use crate::script::catalog::CatalogError;
use crate::script::error::ScriptError;
use crate::script::{Outcome, RunError};

/// Success, or nothing to do.
pub const OK: u8 = 0;
/// Failure, including usage errors and bad input.
pub const FAILURE: u8 = 1;
/// The flow refused to act and changed nothing (`cai update` with running containers and no
/// `--stop-containers`).
pub const REFUSED: u8 = 2;
/// `cai update --check` found updates to apply.
pub const UPDATES_AVAILABLE: u8 = 100;
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

/// The exit status of a script that finished: the documented code of a typed outcome, or the
/// script's own code.
pub fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Done => OK,
        Outcome::Code(code) => code,
        Outcome::Refused => REFUSED,
        Outcome::UpdatesAvailable => UPDATES_AVAILABLE,
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
        assert_eq!(exit_code(Outcome::Done), OK);
        assert_eq!(exit_code(Outcome::Code(7)), 7);
        assert_eq!(exit_code(Outcome::Refused), REFUSED);
        assert_eq!(exit_code(Outcome::UpdatesAvailable), UPDATES_AVAILABLE);
        let other = Error::from(anyhow::anyhow!("inner").context("outer"));
        assert_eq!(other.to_string(), "outer: inner");
    }
}
