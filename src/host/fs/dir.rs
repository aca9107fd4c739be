//! A directory under the root held open, and the files written in it: [`RootDir`] reaches its
//! files by name from its descriptor, one path component at a time, and [`NewFile`] writes a file
//! under a temporary name that is renamed into place only when it is complete and synced.
//!
//! This module never takes a path of more than one component, never follows a symlink at a name
//! it opens, and never leaves a temporary file behind a write that was not committed.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::error::FsError;
use super::resolve::{NOT_FOLLOWED, refused_symlink, require_regular};

/// A directory under the root, held open (see `Root::create_dir`): files in it are reached by
/// name from its descriptor, one path component, never by a path joined under the root.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    shown: PathBuf,
}

impl RootDir {
    /// `fd` is a directory resolved inside the root, shown as `shown` in messages.
    pub(super) fn new(fd: OwnedFd, shown: PathBuf) -> RootDir {
        RootDir { fd, shown }
    }

    /// The directory as a path under the root, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// The open directory, for checks of its own ownership and mode.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The regular file `name` here, opened for reading; `None` when there is none. A symlink at
    /// `name` is refused, never followed.
    pub fn open_file(&self, name: &OsStr) -> Result<Option<std::fs::File>, FsError> {
        let name = self.file_name(name, "read")?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) if refused_symlink(&self.fd, name, e) => {
                return Err(FsError::Symlink {
                    path: self.shown.join(name),
                    detail: NOT_FOLLOWED,
                });
            }
            Err(e) => return Err(self.io("read", name, e.into())),
        };
        require_regular(&fd).map_err(|e| self.io("read", name, e))?;
        Ok(Some(std::fs::File::from(fd)))
    }

    /// A new file that will replace `name` here with `mode` once it is complete: it is written
    /// under a temporary name, and [`NewFile::commit`] syncs it and renames it into place.
    /// Dropped without a commit, it is removed, so a failed or abandoned write leaves nothing.
    pub fn create(&self, name: &OsStr, mode: u32) -> Result<NewFile<'_>, FsError> {
        let name = self.file_name(name, "write")?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = format!(
            ".cai-tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let fd = rustix::fs::openat(
            &self.fd,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.io("write", name, e.into()))?;
        Ok(NewFile {
            dir: self,
            tmp: Some(tmp),
            name: name.to_os_string(),
            file: std::fs::File::from(fd),
            mode,
        })
    }

    /// `name` when it is one plain path component.
    fn file_name<'n>(&self, name: &'n OsStr, op: &'static str) -> Result<&'n OsStr, FsError> {
        let mut components = Path::new(name).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(part)), None) if part == name => Ok(name),
            _ => Err(self.io(
                op,
                name,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
            )),
        }
    }

    fn io(&self, op: &'static str, name: &OsStr, source: std::io::Error) -> FsError {
        FsError::Io {
            op,
            path: self.shown.join(name),
            source,
        }
    }
}

/// A file being written under a temporary name in a [`RootDir`]; see [`RootDir::create`].
#[derive(Debug)]
pub struct NewFile<'a> {
    dir: &'a RootDir,
    /// `None` once renamed into place.
    tmp: Option<String>,
    name: OsString,
    file: std::fs::File,
    mode: u32,
}

impl NewFile<'_> {
    /// The file it will become, as a path under the root, for messages.
    pub fn shown(&self) -> PathBuf {
        self.dir.shown.join(&self.name)
    }

    /// An I/O error while writing, naming the file it will become.
    pub fn error(&self, source: std::io::Error) -> FsError {
        self.dir.io("write", &self.name, source)
    }

    /// Gives the file its mode, syncs it, renames it over the target (a symlink there is
    /// replaced, never followed) and syncs the directory.
    pub fn commit(mut self) -> Result<(), FsError> {
        let Some(tmp) = self.tmp.clone() else {
            return Ok(());
        };
        let done = (|| -> std::io::Result<()> {
            rustix::fs::fchmod(&self.file, super::mode(self.mode))?;
            rustix::fs::fsync(&self.file)?;
            rustix::fs::renameat(&self.dir.fd, tmp.as_str(), &self.dir.fd, &self.name)?;
            Ok(())
        })();
        done.map_err(|e| self.error(e))?;
        self.tmp = None;
        rustix::fs::fsync(&self.dir.fd).map_err(|e| self.error(e.into()))
    }
}

impl Write for NewFile<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for NewFile<'_> {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            // Best effort: the temporary file is ours and useless now; whatever made the write
            // fail is the error that matters.
            let _ = rustix::fs::unlinkat(&self.dir.fd, tmp.as_str(), AtFlags::empty());
        }
    }
}
