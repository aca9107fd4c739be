//! External programs (systemctl, dpkg, sysbox-runc, limactl), found on the host's `PATH`, run
//! with argument vectors (never a shell string) and a timeout after which they are killed.
//!
//! A program runs on a [`Machine`]: this one, or the Lima VM that carries the
//! engine on macOS (`limactl shell VM -- argv`; limactl quotes each argument for the VM's shell,
//! so an argument is never spliced into a command string). Bytes a program reads (a file written
//! inside the VM) travel on its stdin, never in an argument. A child's stderr is kept as text for
//! framed display; it is never parsed as data. Failures name the program that ran and its exit
//! status or signal.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The machine programs run on, which is the one the engine runs on: this one, or the Lima VM on
/// macOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Machine {
    /// This machine.
    Local,
    /// Inside the named Lima VM, through `limactl shell`.
    Lima { vm: String },
}

/// How a finished program ended: an exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Code(code) => write!(f, "exited with status {code}"),
            Ended::Signal(signal) => write!(f, "was killed by signal {signal}"),
        }
    }
}

/// What a finished program produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The command line as it is shown in messages (`systemctl restart x.service`).
    pub command: String,
    pub ended: Ended,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.ended == Ended::Code(0)
    }

    /// The output of a successful run, or an error naming the command and how it ended.
    pub fn checked(self) -> Result<CommandOutput, CommandError> {
        if self.success() {
            Ok(self)
        } else {
            Err(CommandError::Failed {
                command: self.command,
                ended: self.ended,
                stderr: framed(&self.stderr),
            })
        }
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
    #[error("{command} {ended}{}", if stderr.is_empty() { String::new() } else { format!("\n{stderr}") })]
    Failed {
        command: String,
        ended: Ended,
        stderr: String,
    },
}

/// Exit status of a shell that could not find the program it was asked to run.
const SHELL_NOT_FOUND: i32 = 127;

impl Machine {
    /// Runs `program args...` on this target, capturing stdout and stderr; `stdin` is fed to the
    /// program (through `limactl shell` inside the VM), otherwise its stdin is closed. `as_root`
    /// prefixes `sudo -n` inside the Lima VM, where the shell user is not root; on this machine
    /// `cai` already runs as root.
    pub fn run(
        &self,
        path: Option<&OsStr>,
        program: &str,
        args: &[OsString],
        stdin: Option<&[u8]>,
        as_root: bool,
        timeout: Duration,
    ) -> Result<CommandOutput, CommandError> {
        let shown = std::iter::once(program.to_string())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        match self {
            Machine::Local => {
                let found = find_program(path, program).ok_or_else(|| CommandError::NotFound {
                    program: program.to_string(),
                })?;
                let mut out = run(&found, args, stdin, timeout).map_err(|e| named(e, program))?;
                out.command = shown;
                Ok(out)
            }
            Machine::Lima { vm } => {
                let limactl =
                    find_program(path, "limactl").ok_or_else(|| CommandError::NotFound {
                        program: "limactl".into(),
                    })?;
                let mut argv: Vec<OsString> = vec!["shell".into(), "--workdir".into(), "/".into()];
                argv.push(vm.into());
                argv.push("--".into());
                if as_root {
                    argv.extend(["sudo".into(), "-n".into()]);
                }
                argv.push(program.into());
                argv.extend(args.iter().cloned());
                let mut out =
                    run(&limactl, &argv, stdin, timeout).map_err(|e| named(e, program))?;
                out.command = format!("{shown} (in the Lima VM {vm})");
                if out.ended == Ended::Code(SHELL_NOT_FOUND) {
                    return Err(CommandError::NotFound {
                        program: format!("{program} (in the Lima VM {vm})"),
                    });
                }
                Ok(out)
            }
        }
    }
}

/// Copies the file at `local` on this machine to `dest` inside the Lima VM `vm` with
/// `limactl copy LOCAL VM:DEST`, as the VM's shell user. limactl reads an argument with one `:` as
/// `VM:PATH`, so `local` must not contain one (the caller checks; a second `:` is refused by
/// limactl itself).
pub fn lima_copy(
    path: Option<&OsStr>,
    vm: &str,
    local: &Path,
    dest: &Path,
    timeout: Duration,
) -> Result<CommandOutput, CommandError> {
    let limactl = find_program(path, "limactl").ok_or_else(|| CommandError::NotFound {
        program: "limactl".into(),
    })?;
    let mut remote = OsString::from(format!("{vm}:"));
    remote.push(dest.as_os_str());
    let args = [OsString::from("copy"), local.as_os_str().to_owned(), remote];
    let mut out = run(&limactl, &args, None, timeout).map_err(|e| named(e, "limactl"))?;
    out.command = std::iter::once("limactl".to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(out)
}

/// Looks `name` up on `path`: an executable regular file. Names with a slash never are.
pub fn find_program(path: Option<&OsStr>, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn named(e: CommandError, program: &str) -> CommandError {
    match e {
        CommandError::Spawn { source, .. } => CommandError::Spawn {
            program: program.to_string(),
            source,
        },
        CommandError::Timeout { secs, .. } => CommandError::Timeout {
            program: program.to_string(),
            secs,
        },
        other => other,
    }
}

/// Runs the executable at `program`, feeding it `stdin` (closed when `None`) and capturing
/// stdout and stderr.
pub fn run<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<CommandOutput, CommandError> {
    let shown = program.display().to_string();
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    let expression = duct::cmd(program, &args)
        // Its own process group: a Ctrl-C on the terminal reaches `cai`, which lets the action
        // finish and journals it, instead of killing dpkg or systemctl half-way.
        .before_spawn(|command| {
            std::os::unix::process::CommandExt::process_group(command, 0);
            Ok(())
        });
    let expression = match stdin {
        // duct writes the bytes from a thread, so a program that does not read them all (or
        // exits early) cannot block `cai`; the timeout still applies.
        Some(bytes) => expression.stdin_bytes(bytes.to_vec()),
        None => expression.stdin_null(),
    };
    let expression = expression.stdout_capture().stderr_capture().unchecked();
    // ETXTBSY: the executable was just written and another thread's fork still holds it open for
    // writing (it closes at that child's exec). It clears within milliseconds; retry briefly.
    let mut tries = 0;
    let handle = loop {
        match expression.start() {
            Ok(handle) => break handle,
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error())
                    && tries < 20 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => return Err(spawn_error(&shown, source)),
        }
    };
    match handle.wait_timeout(timeout) {
        Ok(Some(output)) => Ok(CommandOutput {
            command: shown,
            ended: match (output.status.code(), output.status.signal()) {
                (Some(code), _) => Ended::Code(code),
                (None, Some(signal)) => Ended::Signal(signal),
                // Neither a code nor a signal does not happen on Unix; report it as a failure.
                (None, None) => Ended::Code(-1),
            },
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Ok(None) => {
            // Best effort: the process may have exited between the timeout and the kill.
            let _ = handle.kill();
            Err(CommandError::Timeout {
                program: shown,
                secs: timeout.as_secs(),
            })
        }
        Err(source) => Err(spawn_error(&shown, source)),
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

    fn path() -> Option<std::ffi::OsString> {
        std::env::var_os("PATH")
    }

    /// `sh -c SCRIPT` on this machine.
    fn sh(script: &str) -> CommandOutput {
        Machine::Local
            .run(
                path().as_deref(),
                "sh",
                &["-c".into(), script.into()],
                None,
                false,
                Duration::from_secs(5),
            )
            .unwrap()
    }

    #[test]
    fn captures_streams_separately_and_how_the_program_ended() {
        let out = sh("echo out; echo err >&2; exit 3");
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.ended, Ended::Code(3));
        let message = out.checked().unwrap_err().to_string();
        assert_eq!(
            message,
            "sh -c echo out; echo err >&2; exit 3 exited with status 3\n  | err"
        );
        let killed = sh("kill -9 $$");
        assert_eq!(killed.ended, Ended::Signal(9));
        assert!(
            killed
                .checked()
                .unwrap_err()
                .to_string()
                .ends_with("was killed by signal 9")
        );
    }

    #[test]
    fn missing_program_and_timeout_are_distinct_errors() {
        assert!(matches!(
            Machine::Local.run(
                path().as_deref(),
                "cai-no-such-program",
                &[],
                None,
                false,
                Duration::from_secs(1)
            ),
            Err(CommandError::NotFound { .. })
        ));
        assert!(find_program(path().as_deref(), "/bin/sh").is_none());
        let start = std::time::Instant::now();
        assert!(matches!(
            Machine::Local.run(
                path().as_deref(),
                "sleep",
                &["30".into()],
                None,
                false,
                Duration::from_millis(200)
            ),
            Err(CommandError::Timeout { .. })
        ));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn lima_runs_the_argv_through_limactl_shell_unspliced() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("argv");
        let fake = dir.path().join("limactl");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\" >> '{}'; done\n[ \"$6\" = no-such ] && exit 127\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let lima = Machine::Lima {
            vm: "containai-docker".into(),
        };
        let path = Some(dir.path().as_os_str());
        lima.run(
            path,
            "dpkg",
            &["-i".into(), "/tmp/a b;$(x).deb".into()],
            None,
            true,
            Duration::from_secs(5),
        )
        .unwrap()
        .checked()
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "[shell][--workdir][/][containai-docker][--][sudo][-n][dpkg][-i][/tmp/a b;$(x).deb]"
        );
        assert!(matches!(
            lima.run(path, "no-such", &[], None, false, Duration::from_secs(5)),
            Err(CommandError::NotFound { .. })
        ));
    }

    #[test]
    fn stdin_bytes_reach_the_program_here_and_through_limactl() {
        let out = Machine::Local
            .run(
                path().as_deref(),
                "cat",
                &[],
                Some(b"[Unit]\n$(x) 'q'\n"),
                false,
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(out.stdout, "[Unit]\n$(x) 'q'\n");

        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("stdin");
        let fake = dir.path().join("limactl");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\ncat > '{}'\n",
                got.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let out = Machine::Lima {
            vm: "containai-docker".into(),
        }
        .run(
            Some(dir.path().as_os_str()),
            "install",
            &["-m".into(), "0644".into(), "/dev/stdin".into(), "/x".into()],
            Some(b"text"),
            true,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            out.stdout,
            "[shell][--workdir][/][containai-docker][--][sudo][-n][install][-m][0644][/dev/stdin][/x]"
        );
        assert_eq!(std::fs::read(&got).unwrap(), b"text");
    }

    #[test]
    fn lima_copy_names_the_vm_path_and_shows_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("limactl");
        std::fs::write(
            &fake,
            "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\nexit 4\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let out = lima_copy(
            Some(dir.path().as_os_str()),
            "containai-docker",
            Path::new("/tmp/cai-deb-x/a b.deb"),
            Path::new("/tmp/cai-0123.deb"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            out.stdout,
            "[copy][/tmp/cai-deb-x/a b.deb][containai-docker:/tmp/cai-0123.deb]"
        );
        assert_eq!(
            out.checked().unwrap_err().to_string(),
            "limactl copy /tmp/cai-deb-x/a b.deb containai-docker:/tmp/cai-0123.deb exited with status 4"
        );
    }
}
