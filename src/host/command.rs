//! External programs (systemctl, dpkg, sysbox-runc, limactl), found on `PATH`, run with argument
//! vectors (never a shell string) and a timeout after which they are killed.
//!
//! A child's stderr is kept as text for framed display; it is never parsed as data.

use std::ffi::OsStr;
use std::time::Duration;

/// What a finished program produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{program} not found on PATH")]
    NotFound { program: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {secs} s and was killed")]
    Timeout { program: String, secs: u64 },
}

/// Runs `program args...` with stdin closed, capturing stdout and stderr.
pub fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
) -> Result<CommandOutput, CommandError> {
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    let handle = duct::cmd(program, &args)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .map_err(|source| spawn_error(program, source))?;
    match handle.wait_timeout(timeout) {
        Ok(Some(output)) => Ok(CommandOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Ok(None) => {
            // Best effort: the process may have exited between the timeout and the kill.
            let _ = handle.kill();
            Err(CommandError::Timeout {
                program: program.to_string(),
                secs: timeout.as_secs(),
            })
        }
        Err(source) => Err(spawn_error(program, source)),
    }
}

fn spawn_error(program: &str, source: std::io::Error) -> CommandError {
    if source.kind() == std::io::ErrorKind::NotFound {
        CommandError::NotFound {
            program: program.to_string(),
        }
    } else {
        CommandError::Spawn {
            program: program.to_string(),
            source,
        }
    }
}

/// How a program ended, for messages: `exited with status 1` or `was killed by a signal`.
pub fn exit_status(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_string(),
    }
}

/// Frames a child's stderr for display under an error line.
pub fn framed(stderr: &str) -> String {
    stderr
        .trim_end()
        .lines()
        .map(|line| format!("  | {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_streams_separately_and_exit_code() {
        let out = run(
            "sh",
            &["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.code, Some(3));
    }

    #[test]
    fn missing_program_and_timeout_are_distinct_errors() {
        assert!(matches!(
            run("cai-no-such-program", &["x"], Duration::from_secs(1)),
            Err(CommandError::NotFound { .. })
        ));
        let start = std::time::Instant::now();
        assert!(matches!(
            run("sleep", &["30"], Duration::from_millis(200)),
            Err(CommandError::Timeout { .. })
        ));
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
