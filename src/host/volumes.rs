//! Managed volumes: where they live, which of them may be walked, and the one walk that reads and
//! repairs ownership inside them (SPEC 5.2, 5.3). Scripts name a volume; this module validates the
//! name, resolves `<data-root>/volumes/<name>/_data` itself (never a path from a script) and walks
//! it.
//!
//! Before any walk, [`open_checked`] applies the rules no script can bypass: a repair needs the
//! engine to list every container, stopped ones included [P75], and touches only a volume that
//! labelled containers alone use [P66]; any walk skips a volume whose data is not under the
//! volumes directory (a driver other than `local`, options `type`/`o`/`device`, or a mount on
//! `_data`) [P65]. A skipped volume is reported with why, never walked.
//!
//! The walk holds directory descriptors all the way down. Every directory is entered from its
//! pinned parent descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`,
//! so a directory swapped for a symlink meanwhile, a `..`, or a mount (tmpfs, or a bind mount of
//! the same file system) is refused by the kernel instead of followed. Where the kernel has no
//! `openat2` or a sandbox refuses it (ENOSYS, EPERM, EINVAL), the fallback opens with
//! `O_NOFOLLOW | O_DIRECTORY` and checks the opened directory's device and inode against the
//! parent's listing and its mount id against the parent's. A directory is changed through the
//! descriptor it was opened with. Any other entry is looked at with `statx` beneath its pinned
//! parent (never followed): it changes only when its uid or gid is the `from` one, it is no mount
//! root (a mount is never crossed, nor its root changed), and, for a regular file, it has one link
//! (a file with more links may share its inode with a file outside the volume: skipped and
//! reported). The change is `fchownat(AT_SYMLINK_NOFOLLOW)` relative to the pinned parent, so a
//! symlink swapped in meanwhile is changed itself and nothing it points to; a rename cannot bring
//! in anything from another mount, and mounts made inside a container do not show in this mount
//! namespace. Where `statx` cannot tell a mount root, and on the fallback, the entry is opened
//! `O_PATH | O_NOFOLLOW` from the parent, its inode, device, mount id and link count checked
//! again on that descriptor, and changed through it (`fchownat(AT_EMPTY_PATH)`).
//!
//! The walk is iterative (a shared stack of directories to visit, no recursion: 20,000-deep chains
//! are fine), keeps memory flat in the number of files (only directories still to visit are held,
//! and a descriptor only while a child still needs it), and runs on every core. It must never
//! follow a symlink, cross a mount, or change an entry it did not check.

use std::collections::BTreeMap;
#[cfg(target_os = "linux")]
use std::ffi::{CStr, CString};
#[cfg(target_os = "linux")]
use std::mem::MaybeUninit;
#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(target_os = "linux")]
use std::sync::{Arc, Condvar, Mutex, PoisonError};

#[cfg(target_os = "linux")]
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, ResolveFlags, Stat, StatxFlags};
#[cfg(target_os = "linux")]
use rustix::io::Errno;
use serde::Serialize;

use super::Host;
use super::docker::{DockerError, EngineContainer};
use super::fs::{FsError, Root};
use crate::effects::Approval;
use crate::plan::containers::ManagedBy;
use crate::term::{Count, Progress};

/// The ownership broken id-mapped mounts leave behind (`nobody:nogroup`).
pub const NOBODY: u32 = 65534;
/// How many skipped or failed entries a report names; the rest are counted.
#[cfg(target_os = "linux")]
const MAX_SAMPLES: usize = 20;
/// A `getdents` buffer per worker.
#[cfg(target_os = "linux")]
const DIR_BUF: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "invalid volume name {0:?}: a volume name is letters, digits, `_`, `.` and `-`, starting with a letter or digit (no `/`, no `..`)\nhelp: `docker volume ls` shows the names"
    )]
    InvalidName(String),
    #[error(
        "the engine data root {0} does not exist\nhelp: check data_root in /etc/containai/config.toml, or start the engine once: systemctl start containai-docker.service (cai update installs the unit first when it is missing)"
    )]
    NoDataRoot(String),
    #[error(
        "volume {name} has no directory at {path}\nhelp: `docker volume inspect {name}` shows where the engine keeps it"
    )]
    Missing { name: String, path: String },
    #[error(
        "refusing volume {name}: {path} is a symlink or crosses one; cai never follows a symlink inside the data root\nhelp: inspect it with `ls -la {path}` and restore the volume directory"
    )]
    Symlink { name: String, path: String },
    #[error(
        "refusing volume {name}: {path} is a mount point, so its data is not under the volumes directory\nhelp: see what is mounted there with `findmnt {path}`"
    )]
    MountPoint { name: String, path: String },
    #[error(
        "volume {0} is not attached to a container labelled containai.managed=true; cai changes ownership only inside managed volumes\nhelp: `docker ps -a --filter volume={0}` shows which containers use it"
    )]
    NotManaged(String),
    #[error(transparent)]
    Engine(#[from] DockerError),
    #[error("cannot open volume {name} at {path}: {source}")]
    Open {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "cannot walk volume {0}: cai walks volumes only on Linux, where the engine keeps them; on macOS they live inside the Lima VM containai-docker\nhelp: cai does not scan or repair volumes on macOS; look at them inside the VM: limactl shell containai-docker"
    )]
    NotLinux(String),
}

/// A uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// What a walk does besides counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Count only; `matched` counts entries owned by `from` (uid or gid).
    Scan { from: Owner },
    /// Change what matches `from` to `to`; `perform: false` predicts without changing.
    Chown {
        from: Owner,
        to: Owner,
        perform: bool,
    },
}

#[cfg(target_os = "linux")]
impl Change {
    fn from(&self) -> Owner {
        match *self {
            Change::Scan { from } | Change::Chown { from, .. } => from,
        }
    }
}

/// How directories are entered; the fallback is what runs where `openat2` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolver {
    /// `openat2` when the kernel has it, else the fallback.
    #[default]
    Auto,
    /// `O_NOFOLLOW | O_DIRECTORY` with device, inode and mount-id checks (selected by tests).
    Fallback,
}

/// What one walk of one volume found and did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VolumeReport {
    pub volume: String,
    /// Entries looked at, the volume's top directory included.
    pub scanned: u64,
    /// Entries whose uid or gid is the `from` one.
    pub matched: u64,
    /// Entries changed (in a dry run: that would change).
    pub changed: u64,
    /// Entries left alone for a reason (hard link, mount point, changed during the walk, unreadable).
    pub skipped: u64,
    /// Entries whose change failed.
    pub failed: u64,
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Up to a few skipped or failed entries by path (escaped), with why.
    pub samples: Vec<Sample>,
    /// Entries per owning uid and per gid.
    pub uids: BTreeMap<String, u64>,
    pub gids: BTreeMap<String, u64>,
    /// The walk stopped at its entry limit (a sample, not the whole volume).
    pub truncated: bool,
    pub dry_run: bool,
    /// Which resolver entered the directories: `openat2` or `fallback`.
    pub resolver: String,
    /// Why the volume was left alone without a walk (its data is not under the volumes
    /// directory, or another container shares it); `None` when it was walked.
    pub skip: Option<String>,
}

impl VolumeReport {
    /// The report of a volume that was not walked, and why.
    pub fn skipped(volume: &str, why: &Skip) -> Self {
        Self {
            volume: volume.to_string(),
            skip: Some(why.to_string()),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub path: String,
    pub reason: String,
}

impl crate::effects::FailedMembers for VolumeReport {
    fn failed_members(&self) -> Option<String> {
        (self.failed > 0).then(|| {
            format!(
                "{}: {} entr{} could not be changed",
                self.volume,
                self.failed,
                if self.failed == 1 { "y" } else { "ies" }
            )
        })
    }
}

/// Checks a volume name against the engine's grammar (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), which has
/// no `/` and cannot be `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), VolumeError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 255
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::InvalidName(name.to_string()))
    }
}

/// Volume options that put its data somewhere else (a host directory, a device, a tmpfs, an NFS
/// share): the `local` driver mounts that on `_data` while a container uses it [P65].
const ELSEWHERE_OPTIONS: [&str; 3] = ["type", "o", "device"];

/// Why a volume is left alone, whatever a script asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A driver other than `local` keeps the data wherever it likes [P65].
    Driver(String),
    /// `local` with `type`/`o`/`device` options mounts other data on `_data` [P65].
    Options(Vec<String>),
    /// Something is mounted on `_data` (found when opening it) [P65].
    MountPoint(String),
    /// Containers that are not labelled use the volume too; their files are not ours [P66].
    Shared(Vec<String>),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Driver(driver) => write!(
                f,
                "driver {driver} is not local: its data is not under the volumes directory"
            ),
            Skip::Options(keys) => write!(
                f,
                "its options carry {}: its data is not under the volumes directory",
                keys.join(", ")
            ),
            Skip::MountPoint(path) => write!(
                f,
                "{path} is a mount point: its data is not under the volumes directory"
            ),
            Skip::Shared(names) => {
                let s = if names.len() == 1 { "" } else { "s" };
                write!(f, "shared with unmanaged container{s} {}", names.join(", "))
            }
        }
    }
}

/// Whether a volume's data lives under the volumes directory, from its driver and options alone.
pub fn skip_for_driver(driver: &str, options: &BTreeMap<String, String>) -> Option<Skip> {
    if driver != "local" {
        return Some(Skip::Driver(driver.to_string()));
    }
    let keys: Vec<String> = ELSEWHERE_OPTIONS
        .iter()
        .filter(|k| options.contains_key(**k))
        .map(|k| (*k).to_string())
        .collect();
    (!keys.is_empty()).then_some(Skip::Options(keys))
}

/// Whether a volume may be repaired, from who uses it: `Err` when no labelled container does,
/// `Some` naming every other container that does (legacy ones included: only labelled
/// containers are repaired, so any other user's files are not ours to change) [P66].
pub fn skip_for_users(name: &str, all: &[EngineContainer]) -> Result<Option<Skip>, VolumeError> {
    let uses = |c: &&EngineContainer| {
        c.mounts
            .iter()
            .any(|m| m.kind == "volume" && m.name == name)
    };
    if !all
        .iter()
        .filter(uses)
        .any(|c| c.managed_by == Some(ManagedBy::Label))
    {
        return Err(VolumeError::NotManaged(name.to_string()));
    }
    let others: Vec<String> = all
        .iter()
        .filter(uses)
        .filter(|c| c.managed_by != Some(ManagedBy::Label))
        .map(|c| c.name.clone())
        .collect();
    Ok((!others.is_empty()).then_some(Skip::Shared(others)))
}

/// One named volume attached to a labelled container.
#[derive(Debug, Clone, Serialize)]
pub struct ManagedVolume {
    pub volume: String,
    pub container: String,
    pub destination: String,
    pub running: bool,
}

/// The named volumes of labelled containers, running or stopped (bind mounts never [P43]). Needs
/// the engine: stopped containers and their volumes exist while it is down, so that is an error,
/// never an empty list [P75].
pub fn managed(host: &Host) -> Result<Vec<ManagedVolume>, DockerError> {
    let mut out = Vec::new();
    for c in host.docker().list_all()? {
        // Legacy containers count as managed for safety, but ownership repair is only for
        // containers that carry the label.
        if c.managed_by != Some(ManagedBy::Label) {
            continue;
        }
        for m in c.mounts {
            if m.kind == "volume" && !m.name.is_empty() {
                out.push(ManagedVolume {
                    volume: m.name,
                    container: c.name.clone(),
                    destination: m.destination,
                    running: c.running,
                });
            }
        }
    }
    Ok(out)
}

/// A volume ready for a walk, or why it is left alone.
pub enum Checked {
    Open(Volume),
    Skip(Skip),
}

/// What a walk of a volume must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Reading only: the data must be under the volumes directory.
    Scan,
    /// Changing owners: also a volume of a labelled container that no other container uses.
    Repair,
}

/// Opens a volume for a walk after every rule the core enforces, whatever the script asks: the
/// engine lists every container (an error with it down [P75]), the volume is a labelled
/// container's and nobody else's (for a repair [P66]), its driver and options keep the data under
/// the volumes directory, and `_data` is no mount point [P65].
pub fn open_checked(host: &Host, name: &str, purpose: Purpose) -> Result<Checked, VolumeError> {
    validate_name(name)?;
    if purpose == Purpose::Repair {
        let all = host.docker().list_all()?;
        if let Some(skip) = skip_for_users(name, &all)? {
            return Ok(Checked::Skip(skip));
        }
    }
    let info = host.docker().inspect_volume(name)?;
    if let Some(skip) = skip_for_driver(&info.driver, &info.options) {
        return Ok(Checked::Skip(skip));
    }
    match Volume::open(host.root(), host.data_root(), name) {
        Ok(volume) => Ok(Checked::Open(volume)),
        Err(VolumeError::MountPoint { path, .. }) => Ok(Checked::Skip(Skip::MountPoint(path))),
        Err(e) => Err(e),
    }
}

/// The sysctl that keeps container users from hard-linking files they do not own.
const PROTECTED_HARDLINKS: &str = "/proc/sys/fs/protected_hardlinks";
/// A walk taking longer than this gets a progress line on a terminal.
const PROGRESS_AFTER: std::time::Duration = std::time::Duration::from_millis(800);

/// The kernel's `fs.protected_hardlinks` (1: nobody can hard-link a file they do not own into a
/// volume), read under the root; `None` when it cannot be read or is not a number.
pub fn protected_hardlinks(host: &Host) -> Result<Option<i64>, super::files::FileError> {
    let text = super::files::read_to_string(host, Path::new(PROTECTED_HARDLINKS))?;
    Ok(text.and_then(|t| t.trim().parse::<i64>().ok()))
}

/// Counts the ownership of a volume's files (what 65534 owns is `matched`), stopping after
/// `limit` entries (0: all). A volume the core's rules leave alone ([`open_checked`]) comes back
/// as a report with `skip` set and nothing walked. Reads only.
pub fn scan(host: &Host, name: &str, limit: u64) -> Result<VolumeReport, VolumeError> {
    let volume = match open_checked(host, name, Purpose::Scan)? {
        Checked::Open(volume) => volume,
        Checked::Skip(why) => return Ok(VolumeReport::skipped(name, &why)),
    };
    let nobody = Owner {
        uid: NOBODY,
        gid: NOBODY,
    };
    let opts = WalkOptions {
        limit,
        ..walk_options(host, Change::Scan { from: nobody })
    };
    Ok(with_progress(name, |seen| volume.walk(&opts, seen)))
}

/// A chown inside a volume that passed the core's rules, ready for the effect gate.
pub struct Chown {
    volume: Volume,
    from: Owner,
    to: Owner,
    opts: WalkOptions,
}

/// A chown ready to plan, or the report of a volume the core leaves alone.
pub enum Prepared {
    Ready(Chown),
    Skipped(VolumeReport),
}

/// Opens a volume for a chown of what `from` owns to `to` after the repair rules: only a volume
/// a labelled container uses alone, whose data is under the volumes directory, whatever the
/// script passes [P65, P66, P75]. Changes nothing.
pub fn prepare_chown(
    host: &Host,
    name: &str,
    from: Owner,
    to: Owner,
) -> Result<Prepared, VolumeError> {
    Ok(match open_checked(host, name, Purpose::Repair)? {
        Checked::Open(volume) => Prepared::Ready(Chown {
            volume,
            from,
            to,
            opts: walk_options(host, Change::Scan { from }),
        }),
        Checked::Skip(why) => Prepared::Skipped(VolumeReport::skipped(name, &why)),
    })
}

impl Chown {
    /// The volume's directory as a host path, for the plan.
    pub fn shown(&self) -> &str {
        self.volume.shown()
    }

    /// What the chown would change, found by walking without changing anything.
    pub fn predict(&self) -> VolumeReport {
        let opts = WalkOptions {
            change: Change::Chown {
                from: self.from,
                to: self.to,
                perform: false,
            },
            ..self.opts
        };
        with_progress(&self.volume.name, |seen| self.volume.walk(&opts, seen))
    }

    /// Changes what `from` owns to `to`; the gate's approval proves it may.
    pub fn perform(&self, ok: Approval) -> VolumeReport {
        with_progress(&self.volume.name, |seen| {
            self.volume.chown(ok, self.from, self.to, self.opts, seen)
        })
    }
}

fn walk_options(host: &Host, change: Change) -> WalkOptions {
    WalkOptions {
        change,
        resolver: host.walk_resolver.get(),
        limit: 0,
        threads: 0,
    }
}

/// Runs a walk; when it takes more than a moment and stderr is a terminal, shows how many
/// entries it has seen.
fn with_progress(name: &str, walk: impl FnOnce(&AtomicU64) -> VolumeReport + Send) -> VolumeReport {
    let seen = AtomicU64::new(0);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return walk(&seen);
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let report = walk(&seen);
            done.store(true, Ordering::SeqCst);
            report
        });
        let start = std::time::Instant::now();
        let mut line: Option<Progress> = None;
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if line.is_none() && start.elapsed() >= PROGRESS_AFTER {
                line = Progress::start(&format!("volume {name}"), Count::Entries);
            }
            if let Some(line) = &line {
                line.set(seen.load(Ordering::Relaxed));
            }
        }
        // Cleared from the terminal before the report is shown.
        drop(line);
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A volume's `_data` directory, opened: the walk starts from this descriptor.
pub struct Volume {
    name: String,
    shown: String,
    #[cfg(target_os = "linux")]
    dir: OwnedFd,
    /// There is no walk off Linux (on macOS the volumes live inside the Lima VM), so no
    /// `Volume` can exist there: [`Volume::open`] refuses.
    #[cfg(not(target_os = "linux"))]
    never: std::convert::Infallible,
}

impl Volume {
    /// Opens `<data_root>/volumes/<name>/_data` under `root`. The data root may be reached
    /// through symlinks inside the root (an operator may keep it on another disk), and
    /// `volumes` may be a mount of its own; below it nothing is followed and no mount is
    /// crossed: `<name>/_data` must be real directories on the mount of `volumes`
    /// (`RESOLVE_NO_XDEV`, and device and mount ids compared), so a volume whose `_data` has
    /// something mounted on it is refused [P65].
    #[cfg(target_os = "linux")]
    pub fn open(root: &Root, data_root: &Path, name: &str) -> Result<Volume, VolumeError> {
        validate_name(name)?;
        let shown_root = root.display_path(data_root);
        let base = match root.open_dir(data_root) {
            Ok(fd) => fd,
            Err(e) if e.is_not_found() => {
                return Err(VolumeError::NoDataRoot(shown_root.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let rel = format!("volumes/{name}/_data");
        let shown = shown_root.join(&rel).display().to_string();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fail = |e: Errno| match e {
            Errno::NOENT => VolumeError::Missing {
                name: name.to_string(),
                path: shown.clone(),
            },
            Errno::LOOP | Errno::NOTDIR => VolumeError::Symlink {
                name: name.to_string(),
                path: shown.clone(),
            },
            Errno::XDEV => VolumeError::MountPoint {
                name: name.to_string(),
                path: shown.clone(),
            },
            e => VolumeError::Open {
                name: name.to_string(),
                path: shown.clone(),
                source: e.into(),
            },
        };
        let volumes = open_below(&base, "volumes", flags, false).map_err(fail)?;
        let dir = open_below(&volumes, &format!("{name}/_data"), flags, true).map_err(fail)?;
        // Whichever way it was opened, `_data` is on the mount of `volumes` and of
        // `volumes/<name>`: the fallback cannot tell a mount point by its name, and a
        // same-file-system bind mount keeps the device.
        let top = open_below(&volumes, name, flags, true).map_err(fail)?;
        let same = |a: &OwnedFd, b: &OwnedFd| -> Result<bool, Errno> {
            let (sa, sb) = (rustix::fs::fstat(a)?, rustix::fs::fstat(b)?);
            Ok(sa.st_dev == sb.st_dev && mount_id(a.as_fd()) == mount_id(b.as_fd()))
        };
        if !same(&dir, &top).map_err(fail)? || !same(&top, &volumes).map_err(fail)? {
            return Err(fail(Errno::XDEV));
        }
        Ok(Volume {
            name: name.to_string(),
            shown,
            dir,
        })
    }

    /// Off Linux the engine's volumes are not on this machine (on macOS they live inside the
    /// Lima VM `containai-docker`) and the walk needs Linux's `openat2` and `statx`: refused
    /// with what to do, after the name is checked.
    #[cfg(not(target_os = "linux"))]
    pub fn open(_: &Root, _: &Path, name: &str) -> Result<Volume, VolumeError> {
        validate_name(name)?;
        Err(VolumeError::NotLinux(name.to_string()))
    }

    /// The volume's directory as a host path, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Counts ownership (and, for a chown that was approved, changes it). `limit` stops after
    /// that many entries (0: no limit); `progress` is bumped once per entry.
    #[cfg(target_os = "linux")]
    pub fn walk(&self, opts: &WalkOptions, progress: &AtomicU64) -> VolumeReport {
        walk(self, opts, progress)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn walk(&self, _: &WalkOptions, _: &AtomicU64) -> VolumeReport {
        match self.never {}
    }

    /// Changes what is owned by `from` to `to`; the gate's approval proves it may.
    pub fn chown(
        &self,
        _: Approval,
        from: Owner,
        to: Owner,
        opts: WalkOptions,
        progress: &AtomicU64,
    ) -> VolumeReport {
        let opts = WalkOptions {
            change: Change::Chown {
                from,
                to,
                perform: true,
            },
            ..opts
        };
        self.walk(&opts, progress)
    }
}

/// Opens `rel` beneath `base` without following any symlink or `..`, and, with `no_xdev`,
/// without crossing a mount; one component at a time where `openat2` is unavailable (the caller
/// compares mount ids then).
#[cfg(target_os = "linux")]
fn open_below(base: &OwnedFd, rel: &str, flags: OFlags, no_xdev: bool) -> Result<OwnedFd, Errno> {
    let mut resolve =
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    if no_xdev {
        resolve |= ResolveFlags::NO_XDEV;
    }
    match rustix::fs::openat2(base, rel, flags, Mode::empty(), resolve) {
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => {}
        other => return other,
    }
    let mut dir: Option<OwnedFd> = None;
    for part in rel.split('/') {
        let at = dir.as_ref().map_or(base.as_fd(), AsFd::as_fd);
        dir = Some(rustix::fs::openat(at, part, flags, Mode::empty())?);
    }
    dir.ok_or(Errno::INVAL)
}

#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    pub change: Change,
    pub resolver: Resolver,
    /// Stop after this many entries (0: the whole volume).
    pub limit: u64,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl WalkOptions {
    pub fn scan(from: Owner) -> Self {
        Self {
            change: Change::Scan { from },
            resolver: Resolver::Auto,
            limit: 0,
            threads: 0,
        }
    }
}

// --- the walk ---------------------------------------------------------------------------------

/// A directory's place in the tree, for messages: its name and its parent's node. Only nodes of
/// directories still to visit (and their ancestors) are alive.
#[cfg(target_os = "linux")]
struct PathNode {
    name: CString,
    parent: Option<Arc<PathNode>>,
}

#[cfg(target_os = "linux")]
impl Drop for PathNode {
    /// Unlinks the chain iteratively: dropping a 20,000-deep chain recursively would overflow
    /// the stack.
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut node) => next = node.parent.take(),
                Err(_) => break,
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn render_path(node: Option<&Arc<PathNode>>, leaf: Option<&CStr>) -> String {
    let mut parts: Vec<&[u8]> = Vec::new();
    if let Some(leaf) = leaf {
        parts.push(leaf.to_bytes());
    }
    let mut at = node;
    while let Some(n) = at {
        parts.push(n.name.to_bytes());
        at = n.parent.as_ref();
    }
    if parts.is_empty() {
        return ".".to_string();
    }
    parts.reverse();
    let joined = parts.join(&b'/');
    escape_bytes(&joined)
}

/// A path for messages: valid UTF-8 as is (escaped for the terminal later), other bytes as `\xNN`.
#[cfg(target_os = "linux")]
fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A directory to visit: its parent's descriptor, its name there, and the inode the parent's
/// listing gave (the fallback checks it).
#[cfg(target_os = "linux")]
struct Item {
    parent: Arc<OwnedFd>,
    parent_dev: u64,
    parent_mnt: Option<u64>,
    node: Arc<PathNode>,
    ino: u64,
}

#[cfg(target_os = "linux")]
struct Queue {
    items: Vec<Item>,
    busy: usize,
    stop: bool,
}

#[cfg(target_os = "linux")]
struct Shared<'a> {
    queue: Mutex<Queue>,
    wake: Condvar,
    opts: &'a WalkOptions,
    kernel: bool,
    seen: &'a AtomicU64,
}

#[cfg(target_os = "linux")]
#[derive(Default)]
struct Tally {
    scanned: u64,
    /// Counted here but not yet added to the shared counter.
    unflushed: u64,
    matched: u64,
    changed: u64,
    failed: u64,
    skipped: BTreeMap<&'static str, u64>,
    samples: Vec<Sample>,
    uids: BTreeMap<u32, u64>,
    gids: BTreeMap<u32, u64>,
}

#[cfg(target_os = "linux")]
impl Tally {
    fn owner(&mut self, uid: u32, gid: u32) {
        *self.uids.entry(uid).or_default() += 1;
        *self.gids.entry(gid).or_default() += 1;
    }

    fn skip(&mut self, reason: &'static str, path: impl FnOnce() -> String) {
        *self.skipped.entry(reason).or_default() += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(Sample {
                path: path(),
                reason: reason.to_string(),
            });
        }
    }

    /// An entry that could not be read: skipped, with the error beside its path.
    fn unreadable(&mut self, e: Errno, path: impl FnOnce() -> String) {
        self.skip(UNREADABLE, || {
            format!("{} ({})", path(), std::io::Error::from(e))
        });
    }

    fn fail(&mut self, e: Errno, path: impl FnOnce() -> String) {
        self.failed += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(Sample {
                path: path(),
                reason: format!("chown failed: {}", std::io::Error::from(e)),
            });
        }
    }

    fn merge(&mut self, other: Tally) {
        self.scanned += other.scanned;
        self.matched += other.matched;
        self.changed += other.changed;
        self.failed += other.failed;
        for (k, v) in other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        for s in other.samples {
            if self.samples.len() < MAX_SAMPLES {
                self.samples.push(s);
            }
        }
        for (k, v) in other.uids {
            *self.uids.entry(k).or_default() += v;
        }
        for (k, v) in other.gids {
            *self.gids.entry(k).or_default() += v;
        }
    }
}

/// A regular file with more than one link may share its inode with a file outside the volume.
#[cfg(target_os = "linux")]
const HARD_LINK: &str = "hard link";
/// The walk never crosses a mount (tmpfs, bind mounts of the same file system included).
#[cfg(target_os = "linux")]
const MOUNT: &str = "mount point";
/// Replaced between the listing and the change (a directory swapped for a symlink, say); never
/// followed.
#[cfg(target_os = "linux")]
const SWAPPED: &str = "changed during the walk";
#[cfg(target_os = "linux")]
const UNREADABLE: &str = "unreadable";

/// Whether `openat2` with the walk's resolve flags works here.
#[cfg(target_os = "linux")]
fn kernel_has_openat2(dir: &OwnedFd) -> bool {
    !matches!(
        open_beneath(dir.as_fd(), c".", OFlags::PATH | OFlags::DIRECTORY),
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL)
    )
}

#[cfg(target_os = "linux")]
fn open_beneath(dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_XDEV
        | ResolveFlags::NO_MAGICLINKS;
    // EAGAIN: a rename or mount raced with the resolution; the kernel asks for a retry.
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(
            dir,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        ) {
            Err(Errno::AGAIN) if attempts < 16 => attempts += 1,
            other => return other,
        }
    }
}

/// The mount id of an open file, where the kernel reports it.
#[cfg(target_os = "linux")]
fn mount_id(fd: BorrowedFd<'_>) -> Option<u64> {
    let stx = rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).ok()?;
    (stx.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(stx.stx_mnt_id)
}

/// Lets this process hold as many descriptors as its hard limit allows: a directory's descriptor
/// stays open while a subdirectory of it waits to be visited, so a deep tree with siblings at
/// every level needs one per level. What still does not fit is reported as unreadable.
#[cfg(target_os = "linux")]
fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        // Best effort: the walk reports EMFILE per directory if this fails.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

#[cfg(target_os = "linux")]
fn walk(volume: &Volume, opts: &WalkOptions, seen: &AtomicU64) -> VolumeReport {
    raise_open_files();
    let kernel = opts.resolver == Resolver::Auto && kernel_has_openat2(&volume.dir);
    let report = VolumeReport {
        volume: volume.name.clone(),
        dry_run: matches!(opts.change, Change::Chown { perform: false, .. }),
        resolver: if kernel { "openat2" } else { "fallback" }.to_string(),
        ..Default::default()
    };
    let mut tally = Tally::default();
    // The top directory itself: reached through no name of the walk's, changed through its fd.
    let top = match rustix::fs::fstat(&volume.dir) {
        Ok(st) => st,
        Err(e) => {
            tally.unreadable(e, || ".".to_string());
            return finish(report, tally, false);
        }
    };
    let root_fd = match rustix::fs::openat(
        &volume.dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Arc::new(fd),
        Err(e) => {
            tally.unreadable(e, || ".".to_string());
            return finish(report, tally, false);
        }
    };
    let shared = Shared {
        queue: Mutex::new(Queue {
            items: Vec::new(),
            busy: 1,
            stop: false,
        }),
        wake: Condvar::new(),
        opts,
        kernel,
        seen,
    };
    let mut buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUF];
    let top_mnt = if kernel {
        None
    } else {
        mount_id(root_fd.as_fd())
    };
    visit_dir(&shared, &root_fd, &top, top_mnt, None, &mut tally, &mut buf);
    drop(root_fd);
    finish_item(&shared);
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
    } else {
        opts.threads
    }
    .clamp(1, 16);
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| worker(&shared)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    for t in tallies {
        tally.merge(t);
    }
    let truncated = shared
        .queue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .stop;
    finish(report, tally, truncated)
}

#[cfg(target_os = "linux")]
fn finish(mut report: VolumeReport, tally: Tally, truncated: bool) -> VolumeReport {
    report.scanned = tally.scanned;
    report.matched = tally.matched;
    report.changed = tally.changed;
    report.failed = tally.failed;
    report.skipped = tally.skipped.values().sum();
    report.skipped_by_reason = tally
        .skipped
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    report.samples = tally.samples;
    report.uids = tally
        .uids
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    report.gids = tally
        .gids
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    report.truncated = truncated;
    report
}

/// Marks one item done; wakes everyone when the walk is over.
#[cfg(target_os = "linux")]
fn finish_item(shared: &Shared<'_>) {
    let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
    q.busy -= 1;
    if q.busy == 0 && (q.items.is_empty() || q.stop) {
        shared.wake.notify_all();
    }
}

#[cfg(target_os = "linux")]
fn worker(shared: &Shared<'_>) -> Tally {
    let mut tally = Tally::default();
    let mut buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUF];
    loop {
        let item = {
            let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if q.stop {
                    return tally;
                }
                if let Some(item) = q.items.pop() {
                    q.busy += 1;
                    break item;
                }
                if q.busy == 0 {
                    drop(q);
                    flush(shared, &mut tally);
                    return tally;
                }
                q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        enter(shared, item, &mut tally, &mut buf);
        finish_item(shared);
    }
}

/// Opens a directory found in a listing and visits it.
#[cfg(target_os = "linux")]
fn enter(shared: &Shared<'_>, item: Item, tally: &mut Tally, buf: &mut [MaybeUninit<u8>]) {
    let Item {
        parent,
        parent_dev,
        parent_mnt,
        node,
        ino,
    } = item;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY;
    let opened = if shared.kernel {
        open_beneath(parent.as_fd(), &node.name, flags)
    } else {
        rustix::fs::openat(
            &*parent,
            &*node.name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return,
        Err(Errno::XDEV) => {
            tally.skip(MOUNT, || render_path(Some(&node), None));
            return;
        }
        Err(Errno::LOOP | Errno::NOTDIR) => {
            // It was a directory when listed and is something else now (a symlink, say): look
            // at it as an entry of its parent, which never follows it.
            let name = node.name.clone();
            let up = node.parent.clone();
            visit_entry(
                shared,
                &parent,
                parent_dev,
                parent_mnt,
                up.as_ref(),
                &name,
                tally,
                None,
            );
            return;
        }
        Err(e) => {
            tally.unreadable(e, || render_path(Some(&node), None));
            return;
        }
    };
    let st = match rustix::fs::fstat(&fd) {
        Ok(st) => st,
        Err(e) => {
            tally.unreadable(e, || render_path(Some(&node), None));
            return;
        }
    };
    let mut mnt = None;
    if !shared.kernel {
        // The fallback's guard: the directory opened is the one listed (same inode on the
        // parent's device) and on the parent's mount. A mount point lists the inode underneath
        // it but opens the mounted root; a same-file-system bind mount keeps the device.
        mnt = mount_id(fd.as_fd());
        if st.st_dev != parent_dev || st.st_ino != ino || mnt != parent_mnt {
            let reason = if st.st_dev != parent_dev || mnt != parent_mnt {
                MOUNT
            } else {
                SWAPPED
            };
            tally.skip(reason, || render_path(Some(&node), None));
            return;
        }
    }
    drop(parent);
    let fd = Arc::new(fd);
    visit_dir(shared, &fd, &st, mnt, Some(&node), tally, buf);
}

/// Counts and (maybe) changes an open directory, then lists it: subdirectories go on the stack,
/// everything else is looked at here.
#[cfg(target_os = "linux")]
fn visit_dir(
    shared: &Shared<'_>,
    fd: &Arc<OwnedFd>,
    st: &Stat,
    mnt: Option<u64>,
    node: Option<&Arc<PathNode>>,
    tally: &mut Tally,
    buf: &mut [MaybeUninit<u8>],
) {
    if !count(shared, tally) {
        return;
    }
    // The directory itself: changed through the descriptor that was opened safely.
    tally.owner(st.st_uid, st.st_gid);
    if let Some(new) = wanted(shared.opts, st) {
        tally.matched += 1;
        apply(
            shared.opts,
            tally,
            || rustix::fs::fchown(&**fd, new.0, new.1),
            || render_path(node, None),
        );
    }
    let mut children = Vec::new();
    let mut dir = RawDir::new(fd.as_fd(), buf);
    while let Some(entry) = dir.next() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                tally.skip(UNREADABLE, || {
                    format!(
                        "{} (listing stopped: {})",
                        render_path(node, None),
                        std::io::Error::from(e)
                    )
                });
                break;
            }
        };
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let mut file_type = entry.file_type();
        let mut stat = None;
        if file_type == FileType::Unknown {
            // Some file systems leave d_type empty; ask without following a symlink.
            match rustix::fs::statat(&**fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => {
                    file_type = FileType::from_raw_mode(s.st_mode);
                    stat = Some(s);
                }
                Err(Errno::NOENT) => continue,
                Err(e) => {
                    tally.scanned += 1;
                    tally.unreadable(e, || render_path(node, Some(name)));
                    continue;
                }
            }
        }
        if file_type == FileType::Directory {
            children.push(Item {
                parent: fd.clone(),
                parent_dev: st.st_dev,
                parent_mnt: mnt,
                node: Arc::new(PathNode {
                    name: name.to_owned(),
                    parent: node.cloned(),
                }),
                ino: stat.map_or(entry.ino(), |s| s.st_ino),
            });
            continue;
        }
        visit_entry(shared, fd, st.st_dev, mnt, node, name, tally, stat);
    }
    if !children.is_empty() {
        let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.items.append(&mut children);
        drop(q);
        shared.wake.notify_all();
    }
}

/// Counts one entry against the limit; false (and the walk stops) once the limit is reached.
/// The shared counter (progress and limit) is bumped in batches, so the cores do not fight over
/// one cache line per entry; a limit may be passed by a batch per worker.
#[cfg(target_os = "linux")]
fn count(shared: &Shared<'_>, tally: &mut Tally) -> bool {
    const BATCH: u64 = 64;
    tally.scanned += 1;
    tally.unflushed += 1;
    if tally.unflushed < BATCH {
        return true;
    }
    flush(shared, tally)
}

/// Adds what a worker counted to the shared counter; false once the limit is passed.
#[cfg(target_os = "linux")]
fn flush(shared: &Shared<'_>, tally: &mut Tally) -> bool {
    let n = shared.seen.fetch_add(tally.unflushed, Ordering::Relaxed) + tally.unflushed;
    tally.unflushed = 0;
    if shared.opts.limit > 0 && n > shared.opts.limit {
        let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.stop = true;
        shared.wake.notify_all();
        return false;
    }
    true
}

#[cfg(target_os = "linux")]
type NewIds = (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>);

/// The new (uid, gid) for an entry owned by `from` (uid or gid), or `None` when it stays.
#[cfg(target_os = "linux")]
fn wanted(opts: &WalkOptions, st: &Stat) -> Option<NewIds> {
    wanted_ids(opts, st.st_uid, st.st_gid)
}

#[cfg(target_os = "linux")]
fn wanted_ids(opts: &WalkOptions, uid: u32, gid: u32) -> Option<NewIds> {
    let from = opts.change.from();
    let (uid, gid) = (uid == from.uid, gid == from.gid);
    if !uid && !gid {
        return None;
    }
    let to = match opts.change {
        Change::Chown { to, .. } => to,
        // A scan never changes anything; the ids only mark what matched.
        Change::Scan { from } => from,
    };
    Some((
        uid.then(|| rustix::fs::Uid::from_raw(to.uid)),
        gid.then(|| rustix::fs::Gid::from_raw(to.gid)),
    ))
}

/// What the walk needs to know about an entry before it changes it.
#[cfg(target_os = "linux")]
struct Meta {
    uid: u32,
    gid: u32,
    file_type: FileType,
    nlink: u64,
    ino: u64,
    dev: u64,
    /// Whether the entry is the root of a mount; `None` where the kernel cannot tell.
    mount_root: Option<bool>,
}

#[cfg(target_os = "linux")]
impl Meta {
    fn from_stat(st: &Stat) -> Self {
        Self {
            uid: st.st_uid,
            gid: st.st_gid,
            file_type: FileType::from_raw_mode(st.st_mode),
            nlink: st.st_nlink,
            ino: st.st_ino,
            dev: st.st_dev,
            mount_root: None,
        }
    }
}

/// Looks at one entry without following it: `statx`, which also says whether it is a mount
/// root (Linux 5.8), else `fstatat`.
#[cfg(target_os = "linux")]
fn pre_stat(dir: BorrowedFd<'_>, name: &CStr) -> Result<Meta, Errno> {
    use rustix::fs::StatxAttributes;
    let mask = StatxFlags::TYPE
        | StatxFlags::MODE
        | StatxFlags::NLINK
        | StatxFlags::UID
        | StatxFlags::GID
        | StatxFlags::INO;
    match rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, mask) {
        Ok(stx) => Ok(Meta {
            uid: stx.stx_uid,
            gid: stx.stx_gid,
            file_type: FileType::from_raw_mode(rustix::fs::RawMode::from(stx.stx_mode)),
            nlink: u64::from(stx.stx_nlink),
            ino: stx.stx_ino,
            dev: rustix::fs::makedev(stx.stx_dev_major, stx.stx_dev_minor),
            mount_root: stx
                .stx_attributes_mask
                .contains(StatxAttributes::MOUNT_ROOT)
                .then(|| stx.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)),
        }),
        Err(Errno::NOSYS) => {
            rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map(|st| Meta::from_stat(&st))
        }
        Err(e) => Err(e),
    }
}

/// Performs (or predicts) one change and counts it.
#[cfg(target_os = "linux")]
fn apply(
    opts: &WalkOptions,
    tally: &mut Tally,
    change: impl FnOnce() -> Result<(), Errno>,
    path: impl FnOnce() -> String,
) {
    match opts.change {
        Change::Scan { .. } => {}
        Change::Chown { perform: false, .. } => tally.changed += 1,
        Change::Chown { perform: true, .. } => match change() {
            Ok(()) => tally.changed += 1,
            Err(Errno::NOENT) => {}
            Err(e) => tally.fail(e, path),
        },
    }
}

/// Looks at one entry that is not a directory (or no longer one): counts its owner and, when it
/// matches, changes it through a descriptor of that inode opened beneath the parent.
#[cfg(target_os = "linux")]
#[allow(clippy::too_many_arguments)]
fn visit_entry(
    shared: &Shared<'_>,
    dir: &Arc<OwnedFd>,
    dir_dev: u64,
    dir_mnt: Option<u64>,
    node: Option<&Arc<PathNode>>,
    name: &CStr,
    tally: &mut Tally,
    stat: Option<Stat>,
) {
    if !count(shared, tally) {
        return;
    }
    let st = match stat {
        Some(st) => Meta::from_stat(&st),
        None => match pre_stat(dir.as_fd(), name) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
                tally.scanned -= 1;
                return;
            }
            Err(e) => {
                tally.unreadable(e, || render_path(node, Some(name)));
                return;
            }
        },
    };
    tally.owner(st.uid, st.gid);
    let Some(new) = wanted_ids(shared.opts, st.uid, st.gid) else {
        return;
    };
    tally.matched += 1;
    if st.mount_root == Some(true) || st.dev != dir_dev {
        tally.skip(MOUNT, || render_path(node, Some(name)));
        return;
    }
    if st.file_type == FileType::RegularFile && st.nlink > 1 {
        tally.skip(HARD_LINK, || render_path(node, Some(name)));
        return;
    }
    if !matches!(shared.opts.change, Change::Chown { perform: true, .. }) {
        apply(shared.opts, tally, || Ok(()), String::new);
        return;
    }
    if shared.kernel && st.mount_root == Some(false) {
        // The kernel said the entry is no mount root, and the parent is pinned: the name can
        // only stand for something inside this directory (a rename cannot cross a mount, and
        // mounts made inside a container do not show in this namespace). No-follow: a symlink
        // swapped in is changed itself.
        apply(
            shared.opts,
            tally,
            || rustix::fs::chownat(&**dir, name, new.0, new.1, AtFlags::SYMLINK_NOFOLLOW),
            || render_path(node, Some(name)),
        );
        return;
    }
    // Changed only through a descriptor of the inode that was looked at: `O_PATH` never follows
    // the final symlink (a symlink is changed itself) and, beneath the parent, refuses a mount.
    let opened = if shared.kernel {
        open_beneath(dir.as_fd(), name, OFlags::PATH)
    } else {
        rustix::fs::openat(
            &**dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return,
        Err(Errno::XDEV) => {
            tally.skip(MOUNT, || render_path(node, Some(name)));
            return;
        }
        Err(e) => {
            tally.fail(e, || render_path(node, Some(name)));
            return;
        }
    };
    let now = match rustix::fs::fstat(&fd) {
        Ok(now) => now,
        Err(e) => {
            tally.fail(e, || render_path(node, Some(name)));
            return;
        }
    };
    if now.st_dev != dir_dev || (!shared.kernel && mount_id(fd.as_fd()) != dir_mnt) {
        tally.skip(MOUNT, || render_path(node, Some(name)));
        return;
    }
    if now.st_ino != st.ino {
        tally.skip(SWAPPED, || render_path(node, Some(name)));
        return;
    }
    let Some(new) = wanted(shared.opts, &now) else {
        return;
    };
    if FileType::from_raw_mode(now.st_mode) == FileType::RegularFile && now.st_nlink > 1 {
        tally.skip(HARD_LINK, || render_path(node, Some(name)));
        return;
    }
    apply(
        shared.opts,
        tally,
        || rustix::fs::chownat(&fd, c"", new.0, new.1, AtFlags::EMPTY_PATH),
        || render_path(node, Some(name)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_follow_the_engine_grammar_and_never_form_a_path() {
        for good in ["vol", "a", "my-vol_1.data", &"f".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", ".", "..", "../x", "a/b", "/abs", "-x", ".hidden", "a b", "a\nb", "é",
        ] {
            assert!(
                matches!(validate_name(bad), Err(VolumeError::InvalidName(_))),
                "{bad:?}"
            );
        }
    }

    /// P65: only a `local` volume without options that mount other data walks.
    #[test]
    fn p65_driver_and_options_that_put_data_elsewhere_are_skipped() {
        let opts = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        let cases: [(&str, BTreeMap<String, String>, Option<&str>); 7] = [
            ("local", opts(&[]), None),
            ("local", opts(&[("size", "10m")]), None),
            (
                "local",
                opts(&[("type", "none"), ("o", "bind"), ("device", "/srv/x")]),
                Some(
                    "its options carry type, o, device: its data is not under the volumes directory",
                ),
            ),
            (
                "local",
                opts(&[("device", "/dev/sdb1")]),
                Some("its options carry device: its data is not under the volumes directory"),
            ),
            (
                "local",
                opts(&[("type", "tmpfs")]),
                Some("its options carry type: its data is not under the volumes directory"),
            ),
            (
                "local",
                opts(&[("o", "addr=10.0.0.1")]),
                Some("its options carry o: its data is not under the volumes directory"),
            ),
            (
                "nfs-plugin",
                opts(&[]),
                Some("driver nfs-plugin is not local: its data is not under the volumes directory"),
            ),
        ];
        for (driver, options, want) in cases {
            let got = skip_for_driver(driver, &options).map(|s| s.to_string());
            assert_eq!(got.as_deref(), want, "{driver} {options:?}");
        }
    }

    /// P66: a volume is repaired only when labelled containers alone use it.
    #[test]
    fn p66_a_volume_used_by_any_unlabelled_container_is_skipped() {
        let c = |name: &str, managed_by: Option<ManagedBy>, vols: &[&str]| EngineContainer {
            id: format!("{name}-id"),
            name: name.to_string(),
            image: String::new(),
            state: "exited".into(),
            running: false,
            managed_by,
            labels: BTreeMap::new(),
            mounts: vols
                .iter()
                .map(|v| super::super::docker::MountInfo {
                    kind: "volume".into(),
                    name: (*v).to_string(),
                    source: String::new(),
                    destination: "/data".into(),
                })
                .collect(),
        };
        let all = [
            c(
                "a",
                Some(ManagedBy::Label),
                &["own", "shared", "legacy-too"],
            ),
            c("b", Some(ManagedBy::Label), &["own"]),
            c("stranger", None, &["shared", "theirs"]),
            c("old", Some(ManagedBy::Legacy), &["legacy-too"]),
        ];
        assert_eq!(skip_for_users("own", &all).unwrap(), None);
        assert_eq!(
            skip_for_users("shared", &all)
                .unwrap()
                .map(|s| s.to_string()),
            Some("shared with unmanaged container stranger".to_string())
        );
        assert_eq!(
            skip_for_users("legacy-too", &all).unwrap(),
            Some(Skip::Shared(vec!["old".into()]))
        );
        for name in ["theirs", "nobody-uses-it"] {
            assert!(matches!(
                skip_for_users(name, &all),
                Err(VolumeError::NotManaged(_))
            ));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn paths_in_reports_escape_bytes_that_are_not_utf8() {
        assert_eq!(escape_bytes(b"ok/na\xffme"), "ok/na\\xffme");
        assert_eq!(escape_bytes("two\nlines".as_bytes()), "two\nlines");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_deep_path_chain_drops_without_recursion() {
        let mut node: Option<Arc<PathNode>> = None;
        for _ in 0..200_000 {
            node = Some(Arc::new(PathNode {
                name: c"d".to_owned(),
                parent: node,
            }));
        }
        drop(node);
    }

    /// Off Linux no volume is walked: the name is still checked, then the walk is refused with
    /// where the volumes are.
    #[cfg(not(target_os = "linux"))]
    #[test]
    fn off_linux_a_volume_is_refused_with_where_it_lives() {
        let root = Root::open(Path::new("/")).unwrap();
        assert!(matches!(
            Volume::open(&root, Path::new("/var/lib/docker"), "../x"),
            Err(VolumeError::InvalidName(_))
        ));
        // `Volume` is uninhabited off Linux, so `Err` is the only possible answer.
        let Err(e) = Volume::open(&root, Path::new("/var/lib/docker"), "vol");
        let text = e.to_string();
        assert!(text.contains("Lima VM containai-docker"), "{text}");
    }
}
