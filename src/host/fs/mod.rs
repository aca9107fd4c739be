//! The one root-anchored file layer: every file `cai` reads, writes, appends to, lists or connects
//! to under `--root` goes through a [`Root`], and nothing else in the crate joins a path under the
//! root.
//!
//! `--root` is made absolute, canonicalized and opened once as a directory descriptor; paths under
//! it are opened from that descriptor (`resolve.rs`: `openat2(RESOLVE_IN_ROOT)`, or a walk that
//! refuses every symlink where the kernel cannot). Writes are atomic (temporary file beside the
//! target, fsync, rename, fsync of the directory; `dir.rs`); appends never follow a symlink.
//! Trusted reads ([`Root::read_trusted`], [`trusted`]) apply the rules of [`super::trust`] to every
//! directory from `/` down and read from the descriptor that was checked.
//!
//! This module must never hand out a path string that was joined under the root for anything but
//! a message ([`Root::display_path`]); programs get `--root=<canonical root>` and sockets are
//! reached through `/proc/self/fd/N/<name>` of a directory resolved here.

mod dir;
mod error;
mod resolve;
pub mod trusted;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

pub use self::dir::{NewFile, RootDir};
pub use self::error::FsError;
use self::resolve::{
    Beneath, DANGLING, NOT_FOLLOWED, PATH_ONLY, Resolve, join, refused_symlink, relative,
    require_regular,
};
use super::trust::{Trust, TrustError};

/// Permission bits as a [`Mode`]. `mode_t` is `u32` on Linux and `u16` on macOS; the bits kept
/// (0o7777: permissions, setuid, setgid, sticky) fit both.
#[allow(clippy::unnecessary_cast)]
pub fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode((bits & 0o7777) as rustix::fs::RawMode)
}

/// The host tree given by `--root` (often `/`), opened once.
#[derive(Debug)]
pub struct Root {
    beneath: Beneath,
    path: PathBuf,
}

impl Root {
    /// Opens `--root`: relative roots are taken from the current directory and the result is
    /// canonical, so programs never see a relative path or one that starts with `-`.
    pub fn open(path: &Path) -> Result<Root, FsError> {
        Self::open_with(path, false)
    }

    /// `force_walk` lets the unit tests exercise the fallback on kernels that have `openat2`.
    fn open_with(path: &Path, force_walk: bool) -> Result<Root, FsError> {
        let open_error = |source| FsError::OpenRoot {
            path: path.to_path_buf(),
            source,
        };
        let canonical = std::fs::canonicalize(path).map_err(open_error)?;
        let dir = rustix::fs::open(
            &canonical,
            PATH_ONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOTDIR => FsError::RootNotDir {
                path: path.to_path_buf(),
            },
            other => open_error(other.into()),
        })?;
        let slash = canonical == Path::new("/");
        Ok(Root {
            beneath: Beneath::new(dir, slash, force_walk),
            path: canonical,
        })
    }

    /// The canonical absolute root.
    pub fn as_path(&self) -> &Path {
        &self.path
    }

    pub fn is_slash(&self) -> bool {
        self.path == Path::new("/")
    }

    /// How a host path under the root is named in messages. Never use it to open anything.
    pub fn display_path(&self, absolute: &Path) -> PathBuf {
        let rel = relative(absolute);
        if rel == Path::new(".") {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    /// `--root=<canonical root>` for programs that take it (systemctl, dpkg); nothing for `/`.
    pub fn program_arg(&self) -> Option<OsString> {
        if self.is_slash() {
            return None;
        }
        let mut arg = OsString::from("--root=");
        arg.push(self.path.as_os_str());
        Some(arg)
    }

    /// A file's bytes, or `None` when it does not exist. Symlinks resolve inside the root.
    pub fn read(&self, absolute: &Path) -> Result<Option<Vec<u8>>, FsError> {
        let Some(mut file) = self.open_file(absolute)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|source| FsError::Io {
            op: "read",
            path: self.display_path(absolute),
            source,
        })?;
        Ok(Some(bytes))
    }

    /// A regular file opened for reading, for callers that stream it instead of holding it in
    /// memory; `None` when it does not exist. Symlinks resolve inside the root.
    pub fn open_file(&self, absolute: &Path) -> Result<Option<std::fs::File>, FsError> {
        // O_NONBLOCK: opening a FIFO must not hang; it is refused as not a regular file below.
        let fd = match self.resolve(&relative(absolute), OFlags::RDONLY | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(Resolve::Errno(Errno::NOENT)) => return Ok(None),
            Err(e) => return Err(self.error("read", absolute, e)),
        };
        require_regular(&fd).map_err(|source| FsError::Io {
            op: "read",
            path: self.display_path(absolute),
            source,
        })?;
        Ok(Some(std::fs::File::from(fd)))
    }

    /// [`Root::read`] for text files.
    pub fn read_to_string(&self, absolute: &Path) -> Result<Option<String>, FsError> {
        self.read(absolute)?
            .map(|bytes| {
                String::from_utf8(bytes).map_err(|e| FsError::Io {
                    op: "read",
                    path: self.display_path(absolute),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })
            })
            .transpose()
    }

    /// A file that decides what `cai` does as root (site config, site scripts, a `.deb`), opened
    /// only after it and every directory from `/` down passed [`Trust`]'s rules, without following
    /// any symlink. `None` when it does not exist.
    pub fn open_trusted(
        &self,
        trust: &Trust,
        absolute: &Path,
    ) -> Result<Option<std::fs::File>, TrustError> {
        let shown = self.display_path(absolute);
        trusted::open_under(trust, self.beneath.fd(), &self.path, absolute, &shown)
    }

    /// A directory under the root reached like [`Root::open_trusted`] reaches a file: it and
    /// every directory from `/` down pass [`Trust`]'s rules, and no symlink is followed. `None`
    /// when it (or a directory above it) does not exist; what exists was checked all the same.
    pub fn trusted_dir(
        &self,
        trust: &Trust,
        absolute: &Path,
    ) -> Result<Option<OwnedFd>, TrustError> {
        let shown = self.display_path(absolute);
        trusted::dir_under(trust, self.beneath.fd(), &self.path, absolute, &shown)
    }

    /// [`Root::open_trusted`] for text files.
    pub fn read_trusted(
        &self,
        trust: &Trust,
        absolute: &Path,
    ) -> Result<Option<String>, TrustError> {
        match self.open_trusted(trust, absolute)? {
            Some(file) => trusted::read_text(file, &self.display_path(absolute)).map(Some),
            None => Ok(None),
        }
    }

    /// Replaces a file atomically: missing parent directories are created inside the root, the
    /// text goes to a temporary file in the same directory, is synced and given `mode`, and is
    /// renamed over the target; then the directory is synced. A symlink at the target is replaced,
    /// never followed.
    pub fn write_atomic(&self, absolute: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
        let (parent, name) = self.split(absolute, "write")?;
        let fd = self
            .make_dirs(&parent, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.error("write", absolute, e))?;
        let dir = RootDir::new(fd, self.display_path(&join(&parent)));
        let mut file = dir.create(&name, mode)?;
        file.write_all(bytes).map_err(|e| file.error(e))?;
        file.commit()
    }

    /// A directory under the root, held open so that files in it are reached by name only;
    /// missing directories on the way are created (mode 0755, whatever the umask).
    pub fn create_dir(&self, absolute: &Path) -> Result<RootDir, FsError> {
        let dirs: Vec<Component> = absolute
            .components()
            .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
            .collect();
        let fd = self
            .make_dirs(&dirs, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.error("create the directory", absolute, e))?;
        Ok(RootDir::new(fd, self.display_path(absolute)))
    }

    /// Appends one line (a newline is added when missing) to a file created with mode 0600, then
    /// syncs it. Meant for the journal: a symlink at the file is refused, never followed.
    pub fn append(&self, absolute: &Path, line: &[u8]) -> std::io::Result<()> {
        self.try_append(absolute, line).map_err(Into::into)
    }

    fn try_append(&self, absolute: &Path, line: &[u8]) -> Result<(), FsError> {
        let (parent, name) = self.split(absolute, "append to")?;
        let dir = self
            .make_dirs(&parent, PATH_ONLY | OFlags::DIRECTORY)
            .map_err(|e| self.error("append to", absolute, e))?;
        let flags = OFlags::WRONLY
            | OFlags::APPEND
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK;
        let fd =
            rustix::fs::openat(&dir, &name, flags, Mode::from_raw_mode(0o600)).map_err(|e| {
                if refused_symlink(&dir, &name, e) {
                    FsError::Symlink {
                        path: self.display_path(absolute),
                        detail: NOT_FOLLOWED,
                    }
                } else {
                    self.error("append to", absolute, Resolve::Errno(e))
                }
            })?;
        let io = |source| FsError::Io {
            op: "append to",
            path: self.display_path(absolute),
            source,
        };
        require_regular(&fd).map_err(io)?;
        let mut buf = line.to_vec();
        if !buf.ends_with(b"\n") {
            buf.push(b'\n');
        }
        let mut file = std::fs::File::from(fd);
        file.write_all(&buf).map_err(io)?;
        rustix::fs::fsync(&file).map_err(|e| io(e.into()))
    }

    /// A directory under the root, opened for listing.
    pub fn open_dir(&self, absolute: &Path) -> Result<OwnedFd, FsError> {
        self.resolve(&relative(absolute), OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.error("open the directory", absolute, e))
    }

    /// Names in a directory under the root (no `.` or `..`), or `None` when it does not exist.
    pub fn list_dir(&self, absolute: &Path) -> Result<Option<Vec<OsString>>, FsError> {
        let fd = match self.open_dir(absolute) {
            Ok(fd) => fd,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in Dir::new(fd).map_err(|e| self.error("list", absolute, Resolve::Errno(e)))? {
            let entry = entry.map_err(|e| self.error("list", absolute, Resolve::Errno(e)))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(os_from_bytes(name));
            }
        }
        Ok(Some(names))
    }

    /// A path that reaches `absolute` (usually a unix socket) from this process, for `connect()`
    /// and for std calls: the parent directory (or its deepest existing ancestor) is resolved inside
    /// the root and held open, and the path goes through `/proc/self/fd/N/`. A symlink at the
    /// final name, or a symlink whose target is missing inside the root, is refused.
    ///
    /// The check of the final name is made now; only someone who can already write the directory
    /// could swap it later. The path is valid while the returned value lives, in this process only.
    pub fn anchor(&self, absolute: &Path) -> Result<Anchored, FsError> {
        let (parent, name) = self.split(absolute, "reach")?;
        let (dir, found) = self
            .deepest(&parent)
            .map_err(|e| self.error("reach", absolute, e))?;
        let mut rest: Vec<&OsStr> = Vec::new();
        for component in parent[found..].iter() {
            match component {
                Component::Normal(part) => rest.push(part),
                _ => {
                    return Err(FsError::Io {
                        op: "reach",
                        path: self.display_path(absolute),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "`..` after a missing directory",
                        ),
                    });
                }
            }
        }
        rest.push(&name);
        match rustix::fs::statat(&dir, rest[0], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
                let mut shown = self.display_path(&join(&parent[..found]));
                shown.push(rest[0]);
                let detail = if rest.len() == 1 {
                    NOT_FOLLOWED
                } else {
                    DANGLING
                };
                return Err(FsError::Symlink {
                    path: shown,
                    detail,
                });
            }
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(self.error("reach", absolute, Resolve::Errno(e))),
        }
        let mut path = proc_fd_dir(&dir).map_err(|source| FsError::Io {
            op: "reach",
            path: self.display_path(absolute),
            source,
        })?;
        for part in rest {
            path.push(part);
        }
        Ok(Anchored {
            _dir: dir,
            path,
            shown: self.display_path(absolute),
        })
    }

    /// Opens `rel` beneath the root (see `resolve.rs`).
    fn resolve(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Resolve> {
        self.beneath.resolve(rel, flags)
    }

    /// The deepest existing directory among `dirs[..k]`, as (descriptor, k).
    fn deepest(&self, dirs: &[Component]) -> Result<(OwnedFd, usize), Resolve> {
        self.beneath.deepest(dirs)
    }

    /// Opens `dirs`, creating missing directories inside the root first.
    fn make_dirs(&self, dirs: &[Component], flags: OFlags) -> Result<OwnedFd, Resolve> {
        self.beneath.make_dirs(dirs, flags)
    }

    /// Opens a file for locking with `flock`: read-write, created 0644 with its directories when
    /// `create` is set; otherwise read-only, `None` when it does not exist. A symlink at the
    /// file is refused, never followed.
    pub fn open_lock(
        &self,
        absolute: &Path,
        create: bool,
    ) -> Result<Option<std::fs::File>, FsError> {
        let (parent, name) = self.split(absolute, "lock")?;
        let dir = if create {
            self.make_dirs(&parent, PATH_ONLY | OFlags::DIRECTORY)
        } else {
            match self.resolve(&join(&parent), PATH_ONLY | OFlags::DIRECTORY) {
                Err(Resolve::Errno(Errno::NOENT)) => return Ok(None),
                other => other,
            }
        }
        .map_err(|e| self.error("lock", absolute, e))?;
        // Only a run that takes the lock writes its PID into it; a check opens it read-only
        // (`flock` needs no write access), so it works on a read-only `/run` and as a user.
        let mut flags = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        flags |= if create {
            OFlags::RDWR | OFlags::CREATE
        } else {
            OFlags::RDONLY
        };
        let fd = match rustix::fs::openat(&dir, &name, flags, Mode::from_raw_mode(0o644)) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if !create => return Ok(None),
            Err(e) if refused_symlink(&dir, &name, e) => {
                return Err(FsError::Symlink {
                    path: self.display_path(absolute),
                    detail: NOT_FOLLOWED,
                });
            }
            Err(e) => return Err(self.error("lock", absolute, Resolve::Errno(e))),
        };
        require_regular(&fd).map_err(|source| FsError::Io {
            op: "lock",
            path: self.display_path(absolute),
            source,
        })?;
        Ok(Some(std::fs::File::from(fd)))
    }

    /// Removes a file (never what a symlink points to); an absent file is fine.
    pub fn remove(&self, absolute: &Path) -> Result<(), FsError> {
        let (parent, name) = self.split(absolute, "remove")?;
        let dir = match self.resolve(&join(&parent), PATH_ONLY | OFlags::DIRECTORY) {
            Err(Resolve::Errno(Errno::NOENT)) => return Ok(()),
            other => other.map_err(|e| self.error("remove", absolute, e))?,
        };
        match rustix::fs::unlinkat(&dir, &name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.error("remove", absolute, Resolve::Errno(e))),
        }
    }
    /// Removes the empty directory `absolute` inside the root; one that does not exist is fine.
    pub fn remove_dir(&self, absolute: &Path) -> Result<(), FsError> {
        let (parent, name) = self.split(absolute, "remove")?;
        let dir = match self.resolve(&join(&parent), PATH_ONLY | OFlags::DIRECTORY) {
            Err(Resolve::Errno(Errno::NOENT)) => return Ok(()),
            other => other.map_err(|e| self.error("remove", absolute, e))?,
        };
        match rustix::fs::unlinkat(&dir, &name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.error("remove", absolute, Resolve::Errno(e))),
        }
    }

    /// A directory under the root, created with its parents (0755) when missing, opened for
    /// `*at` calls. A symlink on the way resolves inside the root.
    pub fn make_dir_all(&self, absolute: &Path) -> Result<OwnedFd, FsError> {
        let dirs: Vec<Component> = absolute
            .components()
            .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
            .collect();
        self.make_dirs(&dirs, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.error("create", absolute, e))
    }

    /// Points the symlink `link` at `target` atomically: a new link under a temporary name in the
    /// same directory, renamed over the old one, so a reader always finds either the old target
    /// or the new one, never nothing. Whatever was at `link` is replaced, never followed.
    pub fn replace_symlink(&self, link: &Path, target: &Path) -> Result<(), FsError> {
        let (parent, name) = self.split(link, "link")?;
        let dir = self
            .make_dirs(&parent, PATH_ONLY | OFlags::DIRECTORY)
            .map_err(|e| self.error("link", link, e))?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = format!(
            ".cai-link-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let io = |source: std::io::Error| FsError::Io {
            op: "link",
            path: self.display_path(link),
            source,
        };
        rustix::fs::symlinkat(target, &dir, tmp.as_str()).map_err(|e| io(e.into()))?;
        if let Err(e) = rustix::fs::renameat(&dir, tmp.as_str(), &dir, &name) {
            // Best effort: the temporary link is ours; the rename error is what matters.
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            return Err(io(e.into()));
        }
        rustix::fs::fsync(
            self.resolve(&join(&parent), OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| self.error("link", link, e))?,
        )
        .map_err(|e| io(e.into()))
    }

    /// Renames `from` to `to`, two entries of the same directory (a version directory moved into
    /// place once it is complete). Fails when `to` exists and is not an empty directory.
    pub fn rename_in_dir(&self, dir: &Path, from: &str, to: &str) -> Result<(), FsError> {
        let fd = self
            .resolve(&relative(dir), OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.error("rename in", dir, e))?;
        rustix::fs::renameat(&fd, from, &fd, to).map_err(|e| FsError::Io {
            op: "rename in",
            path: self.display_path(dir),
            source: e.into(),
        })?;
        rustix::fs::fsync(&fd).map_err(|e| FsError::Io {
            op: "sync",
            path: self.display_path(dir),
            source: e.into(),
        })
    }

    /// Splits an absolute path into its parent's components and its final name.
    fn split<'a>(
        &self,
        absolute: &'a Path,
        op: &'static str,
    ) -> Result<(Vec<Component<'a>>, OsString), FsError> {
        let mut components: Vec<Component<'a>> = absolute
            .components()
            .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
            .collect();
        match components.pop() {
            Some(Component::Normal(name)) => Ok((components, name.to_os_string())),
            _ => Err(FsError::Io {
                op,
                path: self.display_path(absolute),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
            }),
        }
    }

    fn error(&self, op: &'static str, absolute: &Path, e: Resolve) -> FsError {
        match e {
            Resolve::Errno(errno) => FsError::Io {
                op,
                path: self.display_path(absolute),
                source: errno.into(),
            },
            Resolve::Symlink(rel, detail) => FsError::Symlink {
                path: self.display_path(&rel),
                detail,
            },
        }
    }
}

/// A path that reaches into the directory held by `dir`: on Linux through `/proc/self/fd/N`, so
/// the kernel goes through the very descriptor that was resolved inside the root.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn proc_fd_dir(dir: &OwnedFd) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    Ok(PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())))
}

/// macOS's `/dev/fd/N` cannot be walked through, so the path is the one the kernel gives for the
/// descriptor that was resolved inside the root (`fcntl(F_GETPATH)`): free of symlinks, naming
/// that directory as long as it is not moved before the socket is connected.
#[cfg(target_os = "macos")]
fn proc_fd_dir(dir: &OwnedFd) -> std::io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let path = rustix::fs::getpath(dir)?;
    Ok(PathBuf::from(OsString::from_vec(path.into_bytes())))
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn proc_fd_dir(dir: &OwnedFd) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    Ok(PathBuf::from(format!("/dev/fd/{}", dir.as_raw_fd())))
}

fn os_from_bytes(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    OsStr::from_bytes(bytes).to_os_string()
}

/// A path into a directory held open by this value; see [`Root::anchor`].
#[derive(Debug)]
pub struct Anchored {
    _dir: OwnedFd,
    path: PathBuf,
    shown: PathBuf,
}

impl Anchored {
    /// `/proc/self/fd/N/<rest>`: for `connect()` and std calls in this process.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path under the root, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::resolve::ResolveMode;
    use super::*;

    fn both(root: &Path) -> Vec<Root> {
        let kernel = Root::open(root).unwrap();
        // The tests assume the kernel path is the one in use here; otherwise both are the fallback.
        vec![kernel, Root::open_with(root, true).unwrap()]
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn the_root_is_canonical_and_programs_get_it_absolute() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("-x")).unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let root = Root::open(&dir.path().join("a/../-x/.")).unwrap();
        assert_eq!(root.as_path(), dir.path().join("-x"));
        let arg = root.program_arg().unwrap();
        assert_eq!(
            arg.to_string_lossy(),
            format!("--root={}", dir.path().join("-x").display())
        );
        assert!(Root::open(Path::new("/")).unwrap().program_arg().is_none());
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(Root::open(&file), Err(FsError::RootNotDir { .. })));
        assert!(matches!(
            Root::open(&dir.path().join("missing")),
            Err(FsError::OpenRoot { .. })
        ));
    }

    /// Resolution inside the root is `openat2(RESOLVE_IN_ROOT)`, which only Linux has; the walk
    /// macOS uses refuses symlinks instead (`the_fallback_refuses_symlinks_and_keeps_dotdot_inside`).
    #[cfg(target_os = "linux")]
    #[test]
    fn absolute_symlinks_resolve_inside_the_root_and_dotdot_cannot_escape() {
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("secret"), "outside");
        let tree = tempfile::tempdir().unwrap();
        let root_path = tree.path();
        // An absolute symlink naming the outside directory, and its mirror inside the root.
        symlink(outside.path(), root_path.join("link")).unwrap();
        write(
            &root_path
                .join(outside.path().strip_prefix("/").unwrap())
                .join("secret"),
            "inside",
        );
        write(&root_path.join("etc/hostname"), "root-host");
        let root = Root::open(root_path).unwrap();
        assert_eq!(
            root.beneath.mode(),
            ResolveMode::Kernel,
            "this kernel has openat2"
        );
        let text = |p: &str| root.read_to_string(Path::new(p)).unwrap();
        assert_eq!(text("/link/secret").as_deref(), Some("inside"));
        assert_eq!(text("/../../../etc/hostname").as_deref(), Some("root-host"));
        assert_eq!(
            text("/etc/../../etc/hostname").as_deref(),
            Some("root-host")
        );
        symlink("../../../../../../..", root_path.join("up")).unwrap();
        assert_eq!(text("/up/etc/hostname").as_deref(), Some("root-host"));
        assert_eq!(text("/missing"), None);
    }

    #[test]
    fn the_fallback_refuses_symlinks_and_keeps_dotdot_inside() {
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("secret"), "outside");
        let tree = tempfile::tempdir().unwrap();
        symlink(outside.path(), tree.path().join("link")).unwrap();
        symlink(outside.path().join("secret"), tree.path().join("file-link")).unwrap();
        write(&tree.path().join("etc/hostname"), "root-host");
        let root = Root::open_with(tree.path(), true).unwrap();
        assert_eq!(root.beneath.mode(), ResolveMode::Walk);
        for path in ["/link/secret", "/file-link"] {
            let err = root.read(Path::new(path)).unwrap_err();
            assert!(matches!(err, FsError::Symlink { .. }), "{path}: {err}");
            assert!(err.to_string().starts_with("refusing "), "{err}");
        }
        let text = root.read_to_string(Path::new("/etc/../../../etc/hostname"));
        assert_eq!(text.unwrap().as_deref(), Some("root-host"));
        let err = root
            .write_atomic(Path::new("/link/x"), b"x", 0o644)
            .unwrap_err();
        assert!(matches!(err, FsError::Symlink { .. }), "{err}");
        assert!(!outside.path().join("x").exists());
    }

    #[test]
    fn write_atomic_creates_parents_replaces_and_leaves_no_temporary_file() {
        let tree = tempfile::tempdir().unwrap();
        for root in both(tree.path()) {
            let target = Path::new("/etc/systemd/system/x.service");
            root.write_atomic(target, b"one", 0o644).unwrap();
            root.write_atomic(target, b"two", 0o640).unwrap();
            let real = tree.path().join("etc/systemd/system/x.service");
            assert_eq!(std::fs::read_to_string(&real).unwrap(), "two");
            assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o777, 0o640);
            let names: Vec<_> = std::fs::read_dir(real.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![OsString::from("x.service")]);
            std::fs::remove_dir_all(tree.path().join("etc")).unwrap();
        }
    }

    #[test]
    fn new_files_appear_whole_when_committed_and_leave_nothing_when_dropped() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let tree = tempfile::tempdir().unwrap();
        for root in both(tree.path()) {
            let dir = root.create_dir(Path::new("/var/cache/x")).unwrap();
            let real = tree.path().join("var/cache/x");
            assert_eq!(dir.shown(), real);
            for created in ["var", "var/cache", "var/cache/x"] {
                let mode = std::fs::metadata(tree.path().join(created)).unwrap().mode();
                assert_eq!(mode & 0o7777, 0o755, "{created}");
            }
            let names = || -> Vec<OsString> {
                std::fs::read_dir(&real)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect()
            };
            {
                let mut partial = dir.create(OsStr::new("a"), 0o644).unwrap();
                partial.write_all(b"part").unwrap();
                assert_eq!(names().len(), 1, "the temporary file exists while writing");
            }
            assert!(names().is_empty(), "a dropped file must leave nothing");
            let mut whole = dir.create(OsStr::new("a"), 0o644).unwrap();
            whole.write_all(b"whole").unwrap();
            assert_eq!(whole.shown(), real.join("a"));
            whole.commit().unwrap();
            assert_eq!(names(), vec![OsString::from("a")]);
            assert_eq!(
                std::fs::metadata(real.join("a")).unwrap().mode() & 0o7777,
                0o644
            );
            let mut text = String::new();
            dir.open_file(OsStr::new("a"))
                .unwrap()
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, "whole");
            assert!(dir.open_file(OsStr::new("missing")).unwrap().is_none());
            for bad in ["", ".", "..", "a/b", "/a"] {
                let err = dir.create(OsStr::new(bad), 0o644).unwrap_err();
                assert!(
                    err.to_string().contains("not a file name"),
                    "{bad:?}: {err}"
                );
                assert!(dir.open_file(OsStr::new(bad)).is_err(), "{bad:?}");
            }
            symlink(&victim, real.join("link")).unwrap();
            let err = dir.open_file(OsStr::new("link")).unwrap_err();
            assert!(matches!(err, FsError::Symlink { .. }), "{err}");
            // Committing over a symlink replaces it; the file it pointed to is untouched.
            let mut over = dir.create(OsStr::new("link"), 0o644).unwrap();
            over.write_all(b"new").unwrap();
            over.commit().unwrap();
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
            assert_eq!(std::fs::read_to_string(real.join("link")).unwrap(), "new");
            std::fs::remove_dir_all(tree.path().join("var")).unwrap();
        }
    }

    #[test]
    fn open_file_streams_regular_files_only() {
        let tree = tempfile::tempdir().unwrap();
        write(&tree.path().join("srv/a.deb"), "deb");
        for root in both(tree.path()) {
            let mut text = String::new();
            root.open_file(Path::new("/srv/a.deb"))
                .unwrap()
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, "deb");
            assert!(root.open_file(Path::new("/srv/none")).unwrap().is_none());
            let err = root.open_file(Path::new("/srv")).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }

    /// Resolution inside the root is `openat2(RESOLVE_IN_ROOT)`, which only Linux has; the walk
    /// macOS uses refuses symlinks instead (`the_fallback_refuses_symlinks_and_keeps_dotdot_inside`).
    #[cfg(target_os = "linux")]
    #[test]
    fn writes_through_symlinks_stay_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        // A directory symlink to the outside: the target's mirror inside the root exists.
        let mirror = tree.path().join(outside.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&mirror).unwrap();
        std::fs::create_dir(tree.path().join("etc")).unwrap();
        symlink(outside.path(), tree.path().join("etc/systemd")).unwrap();
        let root = Root::open(tree.path()).unwrap();
        root.write_atomic(Path::new("/etc/systemd/system/x.service"), b"u", 0o644)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(mirror.join("system/x.service")).unwrap(),
            "u"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        // Without the mirror, the symlink dangles inside the root: refused, nothing outside.
        std::fs::remove_dir_all(&mirror).unwrap();
        let err = root
            .write_atomic(Path::new("/etc/systemd/system/y.service"), b"u", 0o644)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("whose target does not exist inside the root"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        // A symlink at the target itself is replaced, not written through.
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        symlink(&victim, tree.path().join("etc/unit")).unwrap();
        root.write_atomic(Path::new("/etc/unit"), b"new", 0o644)
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(tree.path().join("etc/unit")).unwrap(),
            "new"
        );
    }

    #[test]
    fn append_adds_lines_with_mode_0600_and_refuses_a_symlinked_file() {
        let outside = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        for root in both(tree.path()) {
            let journal = Path::new("/var/lib/containai/actions.jsonl");
            root.append(journal, b"{\"a\":1}").unwrap();
            root.append(journal, b"{\"b\":2}\n").unwrap();
            let real = tree.path().join("var/lib/containai/actions.jsonl");
            assert_eq!(
                std::fs::read_to_string(&real).unwrap(),
                "{\"a\":1}\n{\"b\":2}\n"
            );
            assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o777, 0o600);

            std::fs::remove_file(&real).unwrap();
            let victim = outside.path().join("victim");
            std::fs::write(&victim, "keep").unwrap();
            symlink(&victim, &real).unwrap();
            let err = root.append(journal, b"x").unwrap_err();
            assert!(err.to_string().contains("it is a symlink"), "{err}");
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
            std::fs::remove_dir_all(tree.path().join("var")).unwrap();
        }
    }

    #[test]
    fn anchored_sockets_connect_inside_the_root_and_symlinks_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("var/run")).unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(tree.path().join("var/run/e.sock")).unwrap();
        let root = Root::open(tree.path()).unwrap();
        let anchored = root.anchor(Path::new("/var/run/e.sock")).unwrap();
        #[cfg(target_os = "linux")]
        assert!(anchored.path().starts_with("/proc/self/fd/"));
        #[cfg(target_os = "macos")]
        assert_eq!(anchored.path(), root.as_path().join("var/run/e.sock"));
        assert_eq!(anchored.shown(), tree.path().join("var/run/e.sock"));
        std::os::unix::net::UnixStream::connect(anchored.path()).unwrap();
        listener.accept().unwrap();

        // A missing directory anchors at the deepest existing one.
        let missing = root.anchor(Path::new("/run/x/e.sock")).unwrap();
        assert!(missing.path().ends_with("run/x/e.sock"));

        let out_sock = outside.path().join("e.sock");
        let _outside_listener = std::os::unix::net::UnixListener::bind(&out_sock).unwrap();
        std::fs::remove_dir_all(tree.path().join("var/run")).unwrap();
        symlink(outside.path(), tree.path().join("var/run")).unwrap();
        for root in both(tree.path()) {
            let err = root.anchor(Path::new("/var/run/e.sock")).unwrap_err();
            assert!(matches!(err, FsError::Symlink { .. }), "{err}");
        }
        std::fs::remove_file(tree.path().join("var/run")).unwrap();
        std::fs::create_dir(tree.path().join("var/run")).unwrap();
        symlink(&out_sock, tree.path().join("var/run/e.sock")).unwrap();
        let err = root.anchor(Path::new("/var/run/e.sock")).unwrap_err();
        assert!(err.to_string().contains("does not follow"), "{err}");
    }

    #[test]
    fn trusted_reads_check_the_tree_from_slash_and_refuse_symlinks() {
        let tree = tempfile::tempdir().unwrap();
        let trust = Trust::new(None);
        let config = tree.path().join("etc/containai/config.toml");
        write(&config, "x = 1");
        for dir in ["etc", "etc/containai"] {
            std::fs::set_permissions(tree.path().join(dir), PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let root = Root::open(tree.path()).unwrap();
        let site = Path::new("/etc/containai/config.toml");
        assert_eq!(
            root.read_trusted(&trust, site).unwrap().as_deref(),
            Some("x = 1")
        );
        assert!(
            root.read_trusted(&trust, Path::new("/etc/nope"))
                .unwrap()
                .is_none()
        );

        std::fs::set_permissions(tree.path().join("etc"), PermissionsExt::from_mode(0o777))
            .unwrap();
        let err = root.read_trusted(&trust, site).unwrap_err().to_string();
        let expected = format!(
            "refusing {}: the directory is group-",
            tree.path().join("etc").display()
        );
        assert!(err.contains(&expected), "{err}");
        std::fs::set_permissions(tree.path().join("etc"), PermissionsExt::from_mode(0o755))
            .unwrap();

        // The root's own ancestors count too.
        let parent = tempfile::tempdir().unwrap();
        let nested = parent.path().join("root");
        write(&nested.join("etc/containai/config.toml"), "x = 2");
        std::fs::set_permissions(parent.path(), PermissionsExt::from_mode(0o777)).unwrap();
        let err = Root::open(&nested)
            .unwrap()
            .read_trusted(&trust, site)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the directory is group- or world-writable"),
            "{err}"
        );

        // Even a symlink that resolves inside the root is not followed.
        std::fs::rename(tree.path().join("etc/containai"), tree.path().join("real")).unwrap();
        symlink("/real", tree.path().join("etc/containai")).unwrap();
        let err = root.read_trusted(&trust, site).unwrap_err().to_string();
        assert!(err.contains("it is a symlink"), "{err}");
    }
}
