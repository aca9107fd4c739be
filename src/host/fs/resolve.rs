//! How a path under the root is opened: from the root's directory descriptor, with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` where the kernel has it, so `..` stops at the
//! root and an absolute symlink resolves inside it as in a chroot; where the kernel has no
//! `openat2` (ENOSYS) or a sandbox forbids it (EPERM), by a walk of one component at a time with
//! `O_NOFOLLOW` that refuses every symlink instead. Missing directories are created here too, each
//! resolved again from the root once it exists.
//!
//! This module must never open anything by a path string joined under the root, and never
//! return a descriptor reached by following a symlink out of it.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Directories `cai` creates on the way to a file it writes.
const DIR_MODE: u32 = 0o755;

/// `O_PATH` where it exists: a handle that names a directory without opening it for reading.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) const PATH_ONLY: OFlags = OFlags::PATH;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) const PATH_ONLY: OFlags = OFlags::RDONLY;

/// Why a symlink was refused, for the `detail` of a symlink error.
pub(super) const NOT_FOLLOWED: &str =
    " (cai does not follow a symlink it writes or connects through)";
pub(super) const DANGLING: &str = " whose target does not exist inside the root";
const NO_OPENAT2: &str =
    " (this kernel cannot resolve symlinks inside the root, so cai refuses them there)";

/// How a path beneath the root is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResolveMode {
    /// `openat2` with `RESOLVE_IN_ROOT`.
    Kernel,
    /// Component walk with `O_NOFOLLOW`, refusing symlinks.
    Walk,
}

/// The root's directory, opened once, and the way paths beneath it are resolved.
#[derive(Debug)]
pub(super) struct Beneath {
    dir: OwnedFd,
    mode: ResolveMode,
    /// The root is `/`, beneath which nothing can escape.
    slash: bool,
}

impl Beneath {
    /// `force_walk` lets the unit tests exercise the fallback on kernels that have `openat2`.
    pub(super) fn new(dir: OwnedFd, slash: bool, force_walk: bool) -> Beneath {
        let mode = if force_walk || !kernel_resolves(&dir) {
            ResolveMode::Walk
        } else {
            ResolveMode::Kernel
        };
        Beneath { dir, mode, slash }
    }

    /// The root directory itself.
    pub(super) fn fd(&self) -> &OwnedFd {
        &self.dir
    }

    #[cfg(test)]
    pub(super) fn mode(&self) -> ResolveMode {
        self.mode
    }

    /// Opens `rel` beneath the root with `flags` (creating files is left to callers that hold the
    /// parent directory).
    pub(super) fn resolve(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Resolve> {
        match self.mode {
            ResolveMode::Kernel => kernel_open(&self.dir, rel, flags).map_err(Resolve::Errno),
            ResolveMode::Walk => self.walk_open(rel, flags),
        }
    }

    /// The fallback: one component at a time, never following a symlink. `..` pops back to the
    /// previous directory and stops at the root, which is exact because no symlink was followed.
    fn walk_open(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Resolve> {
        if self.slash {
            // Beneath `/` nothing can escape, so the ordinary resolution is the right one.
            return rustix::fs::openat(&self.dir, rel, flags | OFlags::CLOEXEC, Mode::empty())
                .map_err(Resolve::Errno);
        }
        let components: Vec<Component> = rel.components().collect();
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut done: Vec<&OsStr> = Vec::new();
        let Some((last, dirs)) = components.split_last() else {
            return rustix::fs::openat(&self.dir, ".", flags | OFlags::CLOEXEC, Mode::empty())
                .map_err(Resolve::Errno);
        };
        for component in dirs {
            match component {
                Component::ParentDir => {
                    stack.pop();
                    done.pop();
                }
                Component::Normal(part) => {
                    let current = stack.last().map_or(self.dir.as_fd(), AsFd::as_fd);
                    let flags = PATH_ONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    let fd = rustix::fs::openat(current, *part, flags, Mode::empty())
                        .map_err(|e| walk_refusal(current, part, e, &done))?;
                    stack.push(fd);
                    done.push(part);
                }
                _ => {}
            }
        }
        let name: &OsStr = match last {
            Component::Normal(part) => part,
            Component::ParentDir => {
                stack.pop();
                OsStr::new(".")
            }
            _ => OsStr::new("."),
        };
        let current = stack.last().map_or(self.dir.as_fd(), AsFd::as_fd);
        let fd = rustix::fs::openat(
            current,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| walk_refusal(current, name, e, &done))?;
        // `O_PATH | O_NOFOLLOW` opens a symlink itself instead of failing.
        let stat = rustix::fs::fstat(&fd).map_err(Resolve::Errno)?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            let mut at: Vec<&OsStr> = done.clone();
            at.push(name);
            return Err(Resolve::Symlink(join_names(&at), NO_OPENAT2));
        }
        Ok(fd)
    }

    /// The deepest existing directory among `dirs[..k]`, as (descriptor, k).
    pub(super) fn deepest(&self, dirs: &[Component]) -> Result<(OwnedFd, usize), Resolve> {
        let flags = PATH_ONLY | OFlags::DIRECTORY;
        let mut k = dirs.len();
        loop {
            match self.resolve(&join(&dirs[..k]), flags) {
                Ok(fd) => return Ok((fd, k)),
                Err(Resolve::Errno(Errno::NOENT)) if k > 0 => k -= 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens `dirs` with `flags`, creating missing directories inside the root first. A missing
    /// component is created with `mkdirat` in its resolved parent and then resolved again from the
    /// root, so a symlink that appears meanwhile still resolves inside the root.
    pub(super) fn make_dirs(&self, dirs: &[Component], flags: OFlags) -> Result<OwnedFd, Resolve> {
        match self.resolve(&join(dirs), flags) {
            Err(Resolve::Errno(Errno::NOENT)) => {}
            other => return other,
        }
        let (mut dir, found) = self.deepest(dirs)?;
        for k in found..dirs.len() {
            let Component::Normal(part) = dirs[k] else {
                return Err(Resolve::Errno(Errno::INVAL));
            };
            let created = match rustix::fs::mkdirat(&dir, part, super::mode(DIR_MODE)) {
                Ok(()) => true,
                Err(Errno::EXIST) => false,
                Err(e) => return Err(Resolve::Errno(e)),
            };
            // A directory made here is opened for reading, so its mode can be set: the umask
            // must not decide who can read a directory `cai` creates (a 0700 cache would hide
            // the packages it holds from the tools that install them).
            let flags = if created {
                OFlags::RDONLY | OFlags::DIRECTORY
            } else {
                PATH_ONLY | OFlags::DIRECTORY
            };
            dir = match self.resolve(&join(&dirs[..=k]), flags) {
                Err(Resolve::Errno(Errno::NOENT)) => {
                    // It exists (mkdirat said so) but does not resolve: a dangling symlink.
                    return Err(Resolve::Symlink(join(&dirs[..=k]), DANGLING));
                }
                other => other?,
            };
            if created {
                rustix::fs::fchmod(&dir, super::mode(DIR_MODE)).map_err(Resolve::Errno)?;
            }
        }
        self.resolve(&join(dirs), flags)
    }
}

/// A failed resolution: an errno, or a symlink that was refused (path relative to the root).
#[derive(Debug)]
pub(super) enum Resolve {
    Errno(Errno),
    Symlink(PathBuf, &'static str),
}

/// Whether `openat2` with `RESOLVE_IN_ROOT` works here (not filtered by seccomp, not too old).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn kernel_resolves(dir: &OwnedFd) -> bool {
    !matches!(
        kernel_open(dir, Path::new("."), PATH_ONLY | OFlags::DIRECTORY),
        Err(Errno::NOSYS | Errno::PERM)
    )
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn kernel_resolves(_: &OwnedFd) -> bool {
    false
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn kernel_open(dir: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    use rustix::fs::ResolveFlags;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    // EAGAIN: a rename or mount raced with the resolution; the kernel asks for a retry.
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            Err(Errno::AGAIN) if attempts < 16 => attempts += 1,
            other => return other,
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn kernel_open(_: &OwnedFd, _: &Path, _: OFlags) -> Result<OwnedFd, Errno> {
    Err(Errno::NOSYS)
}

/// Turns ELOOP/ENOTDIR from an `O_NOFOLLOW` open into a symlink refusal when that is the cause.
fn walk_refusal(dir: BorrowedFd<'_>, name: &OsStr, e: Errno, done: &[&OsStr]) -> Resolve {
    if refused_symlink(dir, name, e) {
        let mut at = done.to_vec();
        at.push(name);
        Resolve::Symlink(join_names(&at), NO_OPENAT2)
    } else {
        Resolve::Errno(e)
    }
}

/// Whether `e` came from `name` in `dir` being a symlink that `O_NOFOLLOW` did not follow.
pub(super) fn refused_symlink(dir: impl AsFd, name: &OsStr, e: Errno) -> bool {
    matches!(e, Errno::LOOP | Errno::NOTDIR)
        && rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink)
}

/// The part of an absolute host path below the root, with `..` kept for the resolver (which
/// stops it at the root) and `.` dropped; `.` when nothing is left.
pub(super) fn relative(absolute: &Path) -> PathBuf {
    let rel: PathBuf = absolute
        .components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

pub(super) fn join(components: &[Component]) -> PathBuf {
    let path: PathBuf = components.iter().collect();
    if path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        path
    }
}

fn join_names(names: &[&OsStr]) -> PathBuf {
    names.iter().collect()
}

/// The descriptor is a regular file (not a directory, FIFO or device).
pub(super) fn require_regular(fd: &OwnedFd) -> std::io::Result<()> {
    let stat = rustix::fs::fstat(fd)?;
    if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile {
        Ok(())
    } else {
        Err(std::io::Error::other("not a regular file"))
    }
}
