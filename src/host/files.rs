//! Files where the engine runs: the one place that decides whether a host path (a unit file, a
//! package to install) is reached on this machine through the root-anchored layer
//! ([`super::fs::Root`], under `--root`) or inside the Lima VM that carries the engine on macOS.
//! Callers name the plain host path and never match on the target themselves.
//!
//! Inside the VM a path is the plain host path (`/etc/systemd/system/NAME`), never joined under
//! the Mac's `--root`, which names nothing there. Every access is a program run with an argument
//! vector through `limactl shell` (`test -e`, `cat`, `install`, `mv`, `rm`) or a `limactl copy`;
//! bytes to write travel on stdin. This module must never build a shell string, put file contents
//! in an argument, or join a path under the root itself.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::command::{self, CommandError, Ended, Machine};
use super::fs::FsError;
use super::{AsRoot, Host};
use crate::term::quoted;

/// Each access opens an ssh session to the VM; a VM busy restarting its engine answers slowly.
const VM_FILE_TIMEOUT: Duration = Duration::from_secs(60);
/// A package goes over the same ssh transport and can be tens of megabytes.
const VM_COPY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(
        "cannot tell whether {shown} exists: {command} {ended}{}\nhelp: limactl start {vm}",
        if stderr.is_empty() { String::new() } else { format!("\n{stderr}") }
    )]
    Probe {
        shown: String,
        command: String,
        ended: Ended,
        stderr: String,
        vm: String,
    },
    #[error(
        "refusing {}: a path inside the Lima VM must be absolute, without `.` or `..`",
        quoted(.0)
    )]
    VmPath(PathBuf),
    #[error(
        "cannot copy {} into the Lima VM {vm}: limactl copy reads a `:` in a path as VM:PATH\nhelp: rename the file without `:` and run the command again", .local.display()
    )]
    Colon { local: PathBuf, vm: String },
}

/// How a host path on the engine's machine is named in plans and messages: under `--root` on
/// this machine, `VM:PATH` in the Lima VM (the form `limactl copy` takes).
pub fn shown(host: &Host, absolute: &Path) -> String {
    match host.machine() {
        Machine::Local => host.root().display_path(absolute).display().to_string(),
        Machine::Lima { vm } => format!("{vm}:{}", absolute.display()),
    }
}

/// A text file's contents on the engine's machine, or `None` when it does not exist. Inside the
/// VM it is read as the shell user, without `sudo`: what is read here (unit files) is
/// world-readable, and a read needs no more privilege than that.
pub fn read_to_string(host: &Host, absolute: &Path) -> Result<Option<String>, FileError> {
    let vm = match host.machine() {
        Machine::Local => return Ok(host.root().read_to_string(absolute)?),
        Machine::Lima { vm } => vm,
    };
    let path = vm_path(absolute)?;
    let probe = host.run(
        "test",
        &["-e".into(), path.clone()],
        None,
        AsRoot::No,
        VM_FILE_TIMEOUT,
    )?;
    match probe.ended {
        Ended::Code(0) => {}
        // `test` itself never prints. A missing or stopped VM makes `limactl shell` exit 1 too,
        // with its reason on stderr, and that must not read as "no such file" (a dry run would
        // then plan to create a unit that exists).
        Ended::Code(1) if probe.stderr.trim().is_empty() => return Ok(None),
        ended => {
            return Err(FileError::Probe {
                shown: shown(host, absolute),
                command: probe.command,
                ended,
                stderr: command::framed(&probe.stderr),
                vm: vm.clone(),
            });
        }
    }
    let out = host
        .run("cat", &[path], None, AsRoot::No, VM_FILE_TIMEOUT)?
        .checked()?;
    // The output is decoded lossily: a file that is not UTF-8 differs from every rendered unit
    // and is replaced, never taken for current.
    Ok(Some(out.stdout))
}

/// Whether a directory exists on the engine's machine (`test -d` inside the VM).
pub fn is_dir(host: &Host, absolute: &Path) -> Result<bool, FileError> {
    let vm = match host.machine() {
        Machine::Local => {
            return match host.root().open_dir(absolute) {
                Ok(_) => Ok(true),
                Err(e) if e.is_not_found() || e.kind() == std::io::ErrorKind::NotADirectory => {
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            };
        }
        Machine::Lima { vm } => vm,
    };
    let path = vm_path(absolute)?;
    let probe = host.run(
        "test",
        &["-d".into(), path],
        None,
        AsRoot::No,
        VM_FILE_TIMEOUT,
    )?;
    match probe.ended {
        Ended::Code(0) => Ok(true),
        // As for `test -e` above: only a silent exit 1 is `test` saying no.
        Ended::Code(1) if probe.stderr.trim().is_empty() => Ok(false),
        ended => Err(FileError::Probe {
            shown: shown(host, absolute),
            command: probe.command,
            ended,
            stderr: command::framed(&probe.stderr),
            vm: vm.clone(),
        }),
    }
}

/// Replaces a file on the engine's machine atomically with `bytes` and `mode`. On this machine
/// through [`super::fs::Root::write_atomic`]; inside the VM as root, `install -m MODE /dev/stdin
/// PATH.cai-new` with the bytes on stdin, then `mv -f` over the target (a rename in the same
/// directory, so systemd never reads half a unit).
pub fn write_atomic(
    host: &Host,
    absolute: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), FileError> {
    if *host.machine() == Machine::Local {
        return Ok(host.root().write_atomic(absolute, bytes, mode)?);
    }
    let path = vm_path(absolute)?;
    let mut staged = path.clone();
    staged.push(".cai-new");
    host.run(
        "install",
        &[
            // Missing parent directories are created (0755), as on this machine.
            "-D".into(),
            "-m".into(),
            format!("{mode:04o}").into(),
            "/dev/stdin".into(),
            staged.clone(),
        ],
        Some(bytes),
        AsRoot::Yes,
        VM_FILE_TIMEOUT,
    )?
    .checked()?;
    let moved = host
        .run(
            "mv",
            &["-f".into(), staged.clone(), path],
            None,
            AsRoot::Yes,
            VM_FILE_TIMEOUT,
        )
        .and_then(command::CommandOutput::checked);
    if let Err(e) = moved {
        // Best effort: the staged file is ours and useless now; the error that matters is `e`.
        let _ = host.run(
            "rm",
            &["-f".into(), staged],
            None,
            AsRoot::Yes,
            VM_FILE_TIMEOUT,
        );
        return Err(e.into());
    }
    Ok(())
}

/// A local file made readable to programs on the engine's machine: the file itself on this
/// machine; inside the VM a copy at a path chosen by the caller, removed again (best effort,
/// as root) when this value is dropped, whether or not the program that read it succeeded.
pub struct Staged<'h> {
    host: &'h Host,
    path: PathBuf,
    copied: bool,
}

impl Staged<'_> {
    /// The path programs on the target are given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the staged file is named in messages.
    pub fn shown(&self) -> String {
        if self.copied {
            shown(self.host, &self.path)
        } else {
            self.path.display().to_string()
        }
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if self.copied {
            // Best effort: a leftover copy in the VM's /tmp is harmless, and failing here would
            // hide the outcome of the program that used it.
            let _ = self.host.run(
                "rm",
                &["-f".into(), self.path.clone().into_os_string()],
                None,
                AsRoot::Yes,
                VM_FILE_TIMEOUT,
            );
        }
    }
}

/// Makes the local file `local` (a path on this machine, not under `--root`: a private copy
/// `cai` made itself) readable on the engine's machine. Inside the VM it is copied to `dest`
/// with `limactl copy`.
pub fn stage<'h>(host: &'h Host, local: &Path, dest: &Path) -> Result<Staged<'h>, FileError> {
    let vm = match host.machine() {
        Machine::Local => {
            return Ok(Staged {
                host,
                path: local.to_path_buf(),
                copied: false,
            });
        }
        Machine::Lima { vm } => vm,
    };
    vm_path(dest)?;
    if local.as_os_str().as_encoded_bytes().contains(&b':') {
        return Err(FileError::Colon {
            local: local.to_path_buf(),
            vm: vm.clone(),
        });
    }
    command::lima_copy(host.path.as_deref(), vm, local, dest, VM_COPY_TIMEOUT)?.checked()?;
    Ok(Staged {
        host,
        path: dest.to_path_buf(),
        copied: true,
    })
}

/// A path for a program inside the VM: absolute and plain, so it can neither be read as an
/// option nor climb out of the directory it names.
fn vm_path(absolute: &Path) -> Result<OsString, FileError> {
    let mut components = absolute.components();
    let rooted = components.next() == Some(Component::RootDir);
    let names: Vec<Component> = components.collect();
    let plain = !names.is_empty() && names.iter().all(|c| matches!(c, Component::Normal(_)));
    if rooted && plain {
        Ok(absolute.as_os_str().to_owned())
    } else {
        Err(FileError::VmPath(absolute.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_paths_are_absolute_and_plain() {
        for ok in [
            "/etc/systemd/system/containai-docker.service",
            "/tmp/cai-0a.deb",
        ] {
            assert_eq!(vm_path(Path::new(ok)).unwrap(), OsString::from(ok));
        }
        for bad in ["etc/x", "/etc/../x", "-x", "/", ""] {
            assert!(vm_path(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
