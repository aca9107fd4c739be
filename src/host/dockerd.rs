//! The dockerd static bundle under `/opt/containai` (under `--root`): each version unpacked in its
//! own directory `/opt/containai/docker/<version>/`, the active one reached through symlinks in
//! `/opt/containai/bin/`. Which version is active is what the active binary itself reports
//! (`/opt/containai/bin/dockerd --version`), never a file `cai` wrote [P73]; `/opt/containai/VERSION`
//! only notes, for people, the version the last install verified.
//!
//! An install never touches the running version's files: the bundle is unpacked beside it into a
//! temporary directory, its `dockerd --version` must report the version being installed (checked
//! there, before anything else moves: a bundle that is another version is refused and the active
//! one stays), the directory is renamed into place, then each link in `bin/` is switched
//! atomically (a new link renamed over the old), so a reader always finds a complete version. The
//! previous version stays for a rollback. The tarball is read from a descriptor that
//! passed the trust rules, and only plain files directly under `docker/` are taken from it: no
//! links, devices, absolute paths or `..` can place anything elsewhere. [`check_bundle`] applies
//! exactly these rules (the same walk over every entry, without writing) so that the update
//! refuses a bundle before it stops any container, and a dry run on a cached one [P62].
//!
//! On macOS the engine runs in the Lima VM, so the bundle is installed there: it is checked and
//! unpacked on the Mac by the same rules into a private directory, each binary is written into a
//! staging directory in the VM, whose `dockerd --version` is run there (a Linux binary does not
//! run on the Mac), that is renamed into place, and the links and `VERSION` switch as on Linux
//! (`ln -sfn` to a temporary name, then `mv -T` over the old link).
//!
//! A binary is run on this machine through `/proc/<pid>/fd/N` of a descriptor opened inside the
//! root, never through a path string joined under it; the program it runs is the one that was
//! checked (a shell script's interpreter can open the same path while `cai` holds it).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{AtFlags, Mode, OFlags};

use super::command::{self, CommandError, CommandOutput, Ended, Machine};
use super::files::{self, FileError};
use super::fs::FsError;
use super::installs;
use super::trust::TrustError;
use super::{AsRoot, Host};
use crate::effects::Approval;
use crate::plan::version::{VersionError, parse_dockerd_output};

pub const BUNDLE_DIR: &str = "/opt/containai/docker";
pub const BIN_DIR: &str = "/opt/containai/bin";
pub const VERSION_FILE: &str = "/opt/containai/VERSION";
pub use crate::plan::layout::DAEMON_CONFIG;
/// Where fetched artifacts land; bundles are installed only from here.
pub const CACHE_DIR: &str = "/var/cache/containai";

#[derive(Debug, thiserror::Error)]
pub enum DockerdError {
    #[error(
        "invalid dockerd version {0:?}: expected a version like 28.2.2 (digits, dots, letters, - and +)"
    )]
    Version(String),
    #[error(
        "refusing bundle {0:?}: bundles are installed from {CACHE_DIR}/NAME.tgz only\nhelp: fetch it with artifacts::fetch first"
    )]
    NotInCache(String),
    #[error(
        "cannot install {path}: the file does not exist\nhelp: fetch it with artifacts::fetch first"
    )]
    Missing { path: PathBuf },
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "refusing bundle {bundle}: {reason}\nhelp: a dockerd static bundle holds only regular files under docker/; fetch the official one"
    )]
    Unsafe { bundle: String, reason: String },
    #[error("cannot unpack {bundle}: {source}")]
    Unpack {
        bundle: String,
        source: std::io::Error,
    },
    #[error("refusing bundle {0}: it has no docker/dockerd")]
    NoDockerd(String),
    #[error(
        "refusing bundle {bundle}: its dockerd --version reports {found}, expected {expected}; the active version is unchanged"
    )]
    WrongVersion {
        bundle: String,
        found: String,
        expected: String,
    },
    #[error(
        "refusing to link {dir}: its dockerd --version reports {found}, expected {expected}; the active version is unchanged\nhelp: move {dir} aside, then run the command again"
    )]
    WrongInstalled {
        dir: String,
        found: String,
        expected: String,
    },
    #[error(
        "cannot use the installed dockerd bundle {dir}: {reason}\nhelp: it was pruned or moved; cai update installs the release target again"
    )]
    NotInstalled { dir: String, reason: String },
    #[error("cannot run {binary} --version: {reason}")]
    RunVersion { binary: String, reason: String },
    #[error("cannot read the version of {binary}: {source}")]
    VersionOutput {
        binary: String,
        source: VersionError,
    },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// How long one step of an install inside the VM may take (a binary of ~70 MB through stdin).
const VM_STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// `dockerd --version` answers at once; one that does not is not a working dockerd.
const VERSION_TIMEOUT: Duration = Duration::from_secs(15);
/// The active dockerd, the one the engine unit starts.
const ACTIVE_DOCKERD: &str = "/opt/containai/bin/dockerd";

/// The engine's daemon configuration where the engine runs (inside the Lima VM on macOS), or
/// `None` when it does not exist.
pub fn read_config(host: &Host) -> Result<Option<String>, DockerdError> {
    Ok(files::read_to_string(host, Path::new(DAEMON_CONFIG))?)
}

/// Replaces the daemon configuration with `text` (always [`crate::plan::daemon::render`] of the
/// operator's config), atomically, mode 0644.
pub fn write_config(_: Approval, host: &Host, text: &str) -> Result<(), DockerdError> {
    Ok(files::write_atomic(
        host,
        Path::new(DAEMON_CONFIG),
        text.as_bytes(),
        0o644,
    )?)
}

/// The active version, as `/opt/containai/bin/dockerd --version` reports it (inside the Lima VM
/// on macOS), or `None` when there is no such binary. Output that is not a version is an error,
/// never "not installed" [P73]. Runs the installed binary, never a fetched one, in every mode.
pub fn installed(host: &Host) -> Result<Option<String>, DockerdError> {
    let active = Path::new(ACTIVE_DOCKERD);
    let shown = files::shown(host, active);
    match host.machine() {
        Machine::Local => {
            let Some(file) = host.root().open_file(active)? else {
                return Ok(None);
            };
            local_version(&file, &shown).map(Some)
        }
        Machine::Lima { .. } => {
            // Only a silent exit 1 of `test` means "absent"; a VM that cannot be asked fails.
            let probe = host.run(
                "test",
                &["-e".into(), ACTIVE_DOCKERD.into()],
                None,
                AsRoot::No,
                VERSION_TIMEOUT,
            )?;
            if probe.ended == Ended::Code(1) && probe.stderr.trim().is_empty() {
                return Ok(None);
            }
            probe.checked()?;
            vm_version(host, ACTIVE_DOCKERD, &shown).map(Some)
        }
    }
}

/// What the binary open as `file` (on this machine) says with `--version`, run through this
/// process's descriptor so that what runs is what was opened; `shown` names it in messages.
fn local_version(file: &impl AsRawFd, shown: &str) -> Result<String, DockerdError> {
    let program = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        file.as_raw_fd()
    ));
    let out = command::run(&program, &["--version"], None, VERSION_TIMEOUT).map_err(|e| {
        let reason = match e {
            CommandError::Spawn { source, .. } => source.to_string(),
            CommandError::Timeout { secs, .. } => format!("it did not finish within {secs} s"),
            CommandError::NotFound { .. } => "it cannot be executed".into(),
            other => other.to_string(),
        };
        DockerdError::RunVersion {
            binary: shown.to_string(),
            reason,
        }
    })?;
    parse_version_output(
        CommandOutput {
            command: format!("{shown} --version"),
            ..out
        },
        shown,
    )
}

/// What the binary at `path` inside the Lima VM says with `--version`.
fn vm_version(host: &Host, path: &str, shown: &str) -> Result<String, DockerdError> {
    let out = host.run(
        path,
        &["--version".into()],
        None,
        AsRoot::No,
        VERSION_TIMEOUT,
    )?;
    parse_version_output(out, shown)
}

fn parse_version_output(out: CommandOutput, shown: &str) -> Result<String, DockerdError> {
    let out = out.checked()?;
    parse_dockerd_output(&out.stdout).map_err(|source| DockerdError::VersionOutput {
        binary: shown.to_string(),
        source,
    })
}

/// Checks a version used as a directory name.
pub fn validate_version(version: &str) -> Result<(), DockerdError> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version.as_bytes()[0].is_ascii_digit()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        && !version.contains("..");
    if ok {
        Ok(())
    } else {
        Err(DockerdError::Version(version.to_string()))
    }
}

/// The bundle a script names: a `.tgz` directly in the artifact cache.
pub fn check_bundle_path(bundle: &str) -> Result<PathBuf, DockerdError> {
    let path = Path::new(bundle);
    let in_cache = path.parent() == Some(Path::new(CACHE_DIR))
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".tgz") && !n.starts_with('.'));
    if in_cache {
        Ok(path.to_path_buf())
    } else {
        Err(DockerdError::NotInCache(bundle.to_string()))
    }
}

/// Checks `bundle` (under `--root`) with every rule [`install`] applies to it, without writing
/// anything: the trust rules for the file and its directories, and every tar entry (plain files
/// directly under `docker/`, a `docker/dockerd` among them). Returns the binaries' names, or
/// `None` when the file does not exist. Reads only; runs in every mode.
///
/// With a `version`, a live run on this machine also runs the bundle's `docker/dockerd
/// --version` and refuses the bundle unless it reports `version`, as the install will, so that
/// this refusal too comes before any container stops [P62, P73]. The binary runs from memory
/// (a sealed memfd, never a file on disk). A dry run never runs a downloaded binary, and inside
/// the Lima VM the check is left to the install (which runs it there before the links switch):
/// a Linux binary does not run on the Mac, and a check writes nothing into the VM.
pub fn check_bundle(
    host: &Host,
    bundle: &Path,
    version: Option<&str>,
) -> Result<Option<Vec<String>>, DockerdError> {
    let root = host.root();
    let shown = root.display_path(bundle).display().to_string();
    let Some(file) = root.open_trusted(&host.trust, bundle)? else {
        return Ok(None);
    };
    let run_it =
        version.is_some() && !host.gate.is_dry_run() && matches!(host.machine(), Machine::Local);
    let Some(version) = version.filter(|_| run_it) else {
        return unpack(file, None, &shown).map(Some);
    };
    validate_version(version)?;
    let (names, found) = unpack_checking_version(file, &shown)?;
    match found {
        Some(found) if found != version => Err(DockerdError::WrongVersion {
            bundle: shown,
            found,
            expected: version.to_string(),
        }),
        _ => Ok(Some(names)),
    }
}

/// [`unpack`] without writing, keeping `docker/dockerd` in memory to run its `--version`; the
/// version is `None` (with a warning) when this kernel does not let `cai` make an executable
/// memfd (`vm.memfd_noexec`), and then the install's own check is the one that refuses.
#[cfg(target_os = "linux")]
fn unpack_checking_version(
    file: std::fs::File,
    shown: &str,
) -> Result<(Vec<String>, Option<String>), DockerdError> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let memory = |e: rustix::io::Errno| unpack_error(shown, e.into());
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC says so explicitly where `vm.memfd_noexec` would seal it; kernels before 6.3 do
    // not know the flag, and their memfds are executable without it.
    let created = rustix::fs::memfd_create("cai-dockerd", flags | MemfdFlags::EXEC).or_else(|e| {
        if e == rustix::io::Errno::INVAL {
            rustix::fs::memfd_create("cai-dockerd", flags)
        } else {
            Err(e)
        }
    });
    let fd = match created {
        Ok(fd) => fd,
        Err(e) => {
            crate::term::err(&format!(
                "warning: cannot run the dockerd of {shown} from memory here ({}); dockerd::install checks its version before the links switch",
                std::io::Error::from(e)
            ));
            return unpack(file, None, shown).map(|names| (names, None));
        }
    };
    let mut writer = std::fs::File::from(fd);
    let names = unpack_into(file, Sink::Check(Some(&mut writer)), shown)?;
    // Sealed against writes, and only a read-only descriptor kept: the kernel refuses to run a
    // file open for writing (ETXTBSY), and nothing can change the bytes between check and run.
    rustix::fs::fcntl_add_seals(
        &writer,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .map_err(memory)?;
    let reader = rustix::fs::open(
        format!("/proc/self/fd/{}", writer.as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(memory)?;
    drop(writer);
    let found = local_version(&reader, &format!("docker/dockerd of {shown}"))?;
    Ok((names, Some(found)))
}

/// A Linux binary runs only on Linux (on macOS the engine and the check are in the Lima VM).
#[cfg(not(target_os = "linux"))]
fn unpack_checking_version(
    file: std::fs::File,
    shown: &str,
) -> Result<(Vec<String>, Option<String>), DockerdError> {
    drop(file);
    Err(DockerdError::RunVersion {
        binary: format!("docker/dockerd of {shown}"),
        reason: "a dockerd bundle runs only on Linux".into(),
    })
}

/// Unpacks `bundle` as `version` beside the installed versions, checks that its `dockerd
/// --version` reports `version` (refusing it otherwise, with the links untouched), switches every
/// link in `bin/` to it atomically and notes it in `VERSION`. Returns the names of the linked
/// binaries.
pub fn install(
    _: Approval,
    host: &Host,
    bundle: &Path,
    version: &str,
) -> Result<Vec<String>, DockerdError> {
    validate_version(version)?;
    // Recorded before anything changes: pending until the core's check of the active binary.
    installs::begin(host, installs::Component::Dockerd);
    let root = host.root();
    let shown = root.display_path(bundle).display().to_string();
    let file = root
        .open_trusted(&host.trust, bundle)?
        .ok_or_else(|| DockerdError::Missing {
            path: root.display_path(bundle),
        })?;
    if let Machine::Lima { .. } = host.machine() {
        return install_in_vm(host, file, version, &shown);
    }

    let versions = root.make_dir_all(Path::new(BUNDLE_DIR))?;
    let staging = format!(".{version}.cai-new-{}", std::process::id());
    // A leftover from an interrupted install of the same version is ours to replace.
    remove_tree(&versions, &staging);
    rustix::fs::mkdirat(&versions, staging.as_str(), Mode::from_raw_mode(0o755))
        .map_err(|e| unpack_error(&shown, e.into()))?;
    let dir = rustix::fs::openat(
        &versions,
        staging.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| unpack_error(&shown, e.into()))?;
    let names = match unpack(file, Some(&dir), &shown) {
        Ok(names) => names,
        Err(e) => {
            remove_tree(&versions, &staging);
            return Err(e);
        }
    };
    rustix::fs::fsync(&dir).map_err(|e| unpack_error(&shown, e.into()))?;

    // The unpacked binary must be the version being installed [P73], before anything moves.
    let checked = version_in(&dir, &format!("docker/dockerd of {shown}"));
    match checked {
        Ok(found) if found == version => {}
        Ok(found) => {
            remove_tree(&versions, &staging);
            return Err(DockerdError::WrongVersion {
                bundle: shown,
                found,
                expected: version.to_string(),
            });
        }
        Err(e) => {
            remove_tree(&versions, &staging);
            return Err(e);
        }
    }

    // A complete directory of this version already installed stays as it is (its binaries may
    // be running); the new copy is only moved into place when there is none. What the links
    // will reach is then that directory's dockerd, which must be the version too.
    let exists = rustix::fs::statat(&versions, version, AtFlags::SYMLINK_NOFOLLOW).is_ok();
    if exists {
        remove_tree(&versions, &staging);
        let complete = Path::new(BUNDLE_DIR).join(version);
        let shown_dir = root.display_path(&complete).display().to_string();
        let existing = rustix::fs::openat(
            &versions,
            version,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| unpack_error(&shown, e.into()))?;
        let found = version_in(&existing, &format!("{shown_dir}/dockerd"))?;
        if found != version {
            return Err(DockerdError::WrongInstalled {
                dir: shown_dir,
                found,
                expected: version.to_string(),
            });
        }
    } else {
        root.rename_in_dir(Path::new(BUNDLE_DIR), &staging, version)?;
    }

    switch_links(host, version, &names)?;
    Ok(names)
}

/// Switches each link in `bin/` to `../docker/<version>/NAME`, atomically one by one (a new link
/// renamed over the old: locally inside the root, in the VM with `ln -sfn` to a temporary name
/// and `mv -T`), then notes the version in `VERSION`.
fn switch_links(host: &Host, version: &str, names: &[String]) -> Result<(), DockerdError> {
    match host.machine() {
        Machine::Lima { .. } => {
            let vm = |args: &[&str]| -> Result<(), DockerdError> {
                let (program, rest) = args.split_first().expect("a program");
                let rest: Vec<std::ffi::OsString> = rest.iter().map(Into::into).collect();
                host.run(program, &rest, None, AsRoot::Yes, VM_STEP_TIMEOUT)?
                    .checked()?;
                Ok(())
            };
            vm(&["mkdir", "-p", BIN_DIR])?;
            for name in names {
                let link = format!("{BIN_DIR}/{name}");
                let temporary = format!("{link}.cai-new");
                let target = format!("../docker/{version}/{name}");
                vm(&["ln", "-sfn", &target, &temporary])?;
                vm(&["mv", "-Tf", &temporary, &link])?;
            }
        }
        Machine::Local => {
            for name in names {
                let link = Path::new(BIN_DIR).join(name);
                let target = Path::new("../docker").join(version).join(name);
                host.root().replace_symlink(&link, &target)?;
            }
        }
    }
    files::write_atomic(
        host,
        Path::new(VERSION_FILE),
        format!("{version}\n").as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// [`install`] inside the Lima VM: unpacked here by the same rules, then written into the VM.
fn install_in_vm(
    host: &Host,
    file: std::fs::File,
    version: &str,
    shown: &str,
) -> Result<Vec<String>, DockerdError> {
    let private = tempfile::Builder::new()
        .prefix("cai-bundle")
        .tempdir()
        .map_err(|e| unpack_error(shown, e))?;
    let dir = rustix::fs::open(
        private.path(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| unpack_error(shown, e.into()))?;
    let names = unpack(file, Some(&dir), shown)?;

    let vm = |program: &str, args: &[&str], stdin: Option<&[u8]>| -> Result<(), DockerdError> {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        host.run(program, &args, stdin, AsRoot::Yes, VM_STEP_TIMEOUT)?
            .checked()?;
        Ok(())
    };
    let staging = format!("{BUNDLE_DIR}/.{version}.cai-new");
    let complete = format!("{BUNDLE_DIR}/{version}");
    // A leftover from an interrupted install of the same version is ours to replace.
    vm("rm", &["-rf", &staging], None)?;
    for name in &names {
        let local = private.path().join(name);
        let bytes = std::fs::read(&local).map_err(|e| unpack_error(shown, e))?;
        let mode = std::fs::metadata(&local)
            .map_err(|e| unpack_error(shown, e))?
            .permissions();
        let mode = format!(
            "{:04o}",
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o755
        );
        let dest = format!("{staging}/{name}");
        vm(
            "install",
            &["-D", "-m", &mode, "/dev/stdin", &dest],
            Some(&bytes),
        )?;
    }
    // The unpacked binary must be the version being installed [P73], before anything moves.
    let staged = format!("{staging}/dockerd");
    match vm_version(host, &staged, &format!("docker/dockerd of {shown}")) {
        Ok(found) if found == version => {}
        Ok(found) => {
            vm("rm", &["-rf", &staging], None)?;
            return Err(DockerdError::WrongVersion {
                bundle: shown.to_string(),
                found,
                expected: version.to_string(),
            });
        }
        Err(e) => {
            vm("rm", &["-rf", &staging], None)?;
            return Err(e);
        }
    }
    // A complete directory of this version already installed stays as it is; its dockerd is
    // what the links will reach, so it must be the version too.
    if files::is_dir(host, Path::new(&complete))? {
        vm("rm", &["-rf", &staging], None)?;
        let dir = files::shown(host, Path::new(&complete));
        let found = vm_version(
            host,
            &format!("{complete}/dockerd"),
            &format!("{dir}/dockerd"),
        )?;
        if found != version {
            return Err(DockerdError::WrongInstalled {
                dir,
                found,
                expected: version.to_string(),
            });
        }
    } else {
        vm("mv", &["-T", &staging, &complete], None)?;
    }
    switch_links(host, version, &names)?;
    Ok(names)
}

/// Points every link in `bin/` back at the installed `version` (a rollback to the version an
/// update replaced): the directory `/opt/containai/docker/<version>` must exist and its `dockerd
/// --version` must report `version` (checked before any link moves), then each link is switched
/// atomically and `VERSION` notes it. Returns the names of the linked binaries.
pub fn activate(_: Approval, host: &Host, version: &str) -> Result<Vec<String>, DockerdError> {
    validate_version(version)?;
    let complete = Path::new(BUNDLE_DIR).join(version);
    let shown_dir = files::shown(host, &complete);
    let names = match host.machine() {
        Machine::Lima { .. } => {
            let found = vm_version(
                host,
                &format!("{}/dockerd", complete.display()),
                &format!("{shown_dir}/dockerd"),
            )?;
            check_found(&shown_dir, found, version)?;
            let args: Vec<std::ffi::OsString> = vec!["-1".into(), complete.as_os_str().to_owned()];
            let out = host
                .run("ls", &args, None, AsRoot::Yes, VM_STEP_TIMEOUT)?
                .checked()?;
            out.stdout.lines().map(str::to_string).collect()
        }
        Machine::Local => {
            let versions = host.root().make_dir_all(Path::new(BUNDLE_DIR))?;
            let not_installed = |e: rustix::io::Errno| DockerdError::NotInstalled {
                dir: shown_dir.clone(),
                reason: std::io::Error::from(e).to_string(),
            };
            let dir = rustix::fs::openat(
                &versions,
                version,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(not_installed)?;
            let found = version_in(&dir, &format!("{shown_dir}/dockerd"))?;
            check_found(&shown_dir, found, version)?;
            let mut names = Vec::new();
            let mut entries = rustix::fs::Dir::read_from(&dir).map_err(not_installed)?;
            while let Some(Ok(entry)) = entries.next() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type() == rustix::fs::FileType::RegularFile && !name.starts_with('.')
                {
                    names.push(name);
                }
            }
            names.sort();
            names
        }
    };
    switch_links(host, version, &names)?;
    Ok(names)
}

fn check_found(dir: &str, found: String, expected: &str) -> Result<(), DockerdError> {
    if found == expected {
        Ok(())
    } else {
        Err(DockerdError::WrongInstalled {
            dir: dir.to_string(),
            found,
            expected: expected.to_string(),
        })
    }
}

/// The bundle versions unpacked under `/opt/containai/docker`, sorted (staging directories of
/// an install in progress are not versions).
pub fn versions(host: &Host) -> Result<Vec<String>, DockerdError> {
    let mut out: Vec<String> = match host.machine() {
        Machine::Lima { .. } => {
            if !files::is_dir(host, Path::new(BUNDLE_DIR))? {
                return Ok(Vec::new());
            }
            let args: Vec<std::ffi::OsString> = vec!["-1".into(), BUNDLE_DIR.into()];
            host.run("ls", &args, None, AsRoot::Yes, VM_STEP_TIMEOUT)?
                .checked()?
                .stdout
                .lines()
                .map(str::to_string)
                .collect()
        }
        Machine::Local => host
            .root()
            .list_dir(Path::new(BUNDLE_DIR))?
            .unwrap_or_default()
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect(),
    };
    out.retain(|n| !n.starts_with('.') && validate_version(n).is_ok());
    out.sort();
    Ok(out)
}

/// Removes the unpacked bundle `version` (never the active one: the caller keeps it). Used to
/// prune versions nobody can roll back to any more.
pub fn remove_version(_: Approval, host: &Host, version: &str) -> Result<(), DockerdError> {
    validate_version(version)?;
    // Never the active one, whoever asks: the engine runs from it.
    if installed(host)?.as_deref() == Some(version) {
        return Err(DockerdError::NotInstalled {
            dir: files::shown(host, &Path::new(BUNDLE_DIR).join(version)),
            reason: "it is the active version; refusing to remove it".into(),
        });
    }
    match host.machine() {
        Machine::Lima { .. } => {
            let dir = format!("{BUNDLE_DIR}/{version}");
            let args: Vec<std::ffi::OsString> = vec!["-rf".into(), dir.into()];
            host.run("rm", &args, None, AsRoot::Yes, VM_STEP_TIMEOUT)?
                .checked()?;
        }
        Machine::Local => {
            let versions = host.root().make_dir_all(Path::new(BUNDLE_DIR))?;
            remove_tree(&versions, version);
        }
    }
    Ok(())
}

/// Where [`unpack_into`] puts what it reads.
enum Sink<'a> {
    /// Nowhere, or only `docker/dockerd` into the file given.
    Check(Option<&'a mut std::fs::File>),
    /// Every file into this directory.
    Dir(&'a OwnedFd),
}

/// Writes every regular file directly under `docker/` into `dir` (only checks them without a
/// `dir`); anything else in the tarball refuses the whole bundle.
fn unpack(
    file: std::fs::File,
    dir: Option<&OwnedFd>,
    shown: &str,
) -> Result<Vec<String>, DockerdError> {
    let sink = match dir {
        Some(dir) => Sink::Dir(dir),
        None => Sink::Check(None),
    };
    unpack_into(file, sink, shown)
}

/// [`unpack`] into a [`Sink`]: the same walk and the same rules, whatever is kept.
fn unpack_into(
    file: std::fs::File,
    mut sink: Sink<'_>,
    shown: &str,
) -> Result<Vec<String>, DockerdError> {
    let unsafe_entry = |reason: String| DockerdError::Unsafe {
        bundle: shown.to_string(),
        reason,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut names = Vec::new();
    let entries = archive.entries().map_err(|e| unpack_error(shown, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpack_error(shown, e))?;
        let path = entry
            .path()
            .map_err(|e| unpack_error(shown, e))?
            .into_owned();
        let kind = entry.header().entry_type();
        let text = path.display().to_string();
        let trimmed = text.trim_start_matches("./").trim_end_matches('/');
        if kind.is_dir() && trimmed == "docker" {
            continue;
        }
        let Some(name) = trimmed.strip_prefix("docker/") else {
            return Err(unsafe_entry(format!("{text:?} is outside docker/")));
        };
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !name.starts_with('.');
        if !plain {
            return Err(unsafe_entry(format!(
                "{text:?} is not a plain file name under docker/"
            )));
        }
        if !kind.is_file() {
            return Err(unsafe_entry(format!(
                "{text:?} is not a regular file (links and devices are refused)"
            )));
        }
        let mode = entry.header().mode().map_err(|e| unpack_error(shown, e))? & 0o755;
        if names.iter().any(|n| n == name) {
            return Err(unsafe_entry(format!("{text:?} appears twice")));
        }
        let dir = match &mut sink {
            Sink::Dir(dir) => *dir,
            Sink::Check(keep) => {
                // Read through, so a body cut short fails the check as it would fail the install.
                match keep {
                    Some(out) if name == "dockerd" => std::io::copy(&mut entry, *out),
                    _ => std::io::copy(&mut entry, &mut std::io::sink()),
                }
                .map_err(|e| unpack_error(shown, e))?;
                names.push(name.to_string());
                continue;
            }
        };
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            super::fs::mode(mode),
        )
        .map_err(|e| unpack_error(shown, e.into()))?;
        let mut out = std::fs::File::from(fd);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(|e| unpack_error(shown, e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| unpack_error(shown, e))?;
        }
        rustix::fs::fchmod(&out, super::fs::mode(mode))
            .map_err(|e| unpack_error(shown, e.into()))?;
        out.sync_all().map_err(|e| unpack_error(shown, e))?;
        names.push(name.to_string());
    }
    if !names.iter().any(|n| n == "dockerd") {
        return Err(DockerdError::NoDockerd(shown.to_string()));
    }
    names.sort();
    Ok(names)
}

/// What `dockerd --version` says of the `dockerd` directly in `dir` (never through a symlink).
fn version_in(dir: &OwnedFd, shown: &str) -> Result<String, DockerdError> {
    let file = rustix::fs::openat(
        dir,
        "dockerd",
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| DockerdError::RunVersion {
        binary: shown.to_string(),
        reason: std::io::Error::from(e).to_string(),
    })?;
    local_version(&file, shown)
}

fn unpack_error(bundle: &str, source: std::io::Error) -> DockerdError {
    DockerdError::Unpack {
        bundle: bundle.to_string(),
        source,
    }
}

/// Removes `name` under `parent` and the files directly in it (a bundle version or a rollback
/// set: flat directories), best effort; never follows a symlink.
pub(crate) fn remove_tree(parent: &OwnedFd, name: &str) {
    let Ok(dir) = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    if let Ok(mut entries) = rustix::fs::Dir::read_from(&dir) {
        while let Some(Ok(entry)) = entries.next() {
            let file = entry.file_name();
            if file.to_bytes() != b"." && file.to_bytes() != b".." {
                let _ = rustix::fs::unlinkat(&dir, file, AtFlags::empty());
            }
        }
    }
    let _ = rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_bundle_paths_are_checked() {
        for ok in ["28.2.2", "28.3.0-rc.1", "29.0.0+build"] {
            assert!(validate_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "28/2", "v28", "28..2", "28 2", ".28"] {
            assert!(validate_version(bad).is_err(), "{bad}");
        }
        assert!(check_bundle_path("/var/cache/containai/docker-28.2.2.tgz").is_ok());
        for bad in [
            "/tmp/docker.tgz",
            "/var/cache/containai/sub/docker.tgz",
            "/var/cache/containai/docker.tar",
            "/var/cache/containai/.hidden.tgz",
            "docker.tgz",
        ] {
            assert!(check_bundle_path(bad).is_err(), "{bad}");
        }
    }
}
