//! The rules for files that decide what `cai` does as root: scripts, modules, config files and
//! `.deb` packages.
//!
//! A trusted file is a regular file that only root or the invoking user could have written: it
//! and every directory above it are owned by one of them and not writable by group or others (a
//! root-owned sticky directory such as `/tmp` is exempt from the writable test, since it only lets
//! owners replace their entries). This module holds the rules and checks one open descriptor at a
//! time; it never opens a path. The walk that applies them, one directory descriptor at a time from
//! `/` without following symlinks, reading the file from the descriptor that was checked, is
//! [`super::fs::trusted`]. There is deliberately no switch that turns this off.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("refusing {path}: {reason}\nhelp: {help}")]
    Unsafe {
        path: PathBuf,
        reason: String,
        help: String,
    },
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Who may own trusted files.
#[derive(Debug, Clone)]
pub struct Trust {
    owners: Vec<u32>,
}

impl Trust {
    /// Root and this process's user; when running as root, also the user who ran `sudo`.
    pub fn new(sudo_uid: Option<u32>) -> Self {
        let euid = rustix::process::geteuid().as_raw();
        let mut owners = vec![0, euid];
        if euid == 0 {
            owners.extend(sudo_uid);
        }
        owners.dedup();
        Self { owners }
    }

    pub fn is_root(&self) -> bool {
        rustix::process::geteuid().is_root()
    }

    pub(crate) fn check_dir(&self, fd: &OwnedFd, path: &Path) -> Result<(), TrustError> {
        self.check(fd, path, Kind::Directory)
    }

    pub(crate) fn check_file(&self, fd: &OwnedFd, path: &Path) -> Result<(), TrustError> {
        self.check(fd, path, Kind::File)
    }

    fn check(&self, fd: &OwnedFd, path: &Path, kind: Kind) -> Result<(), TrustError> {
        let stat = rustix::fs::fstat(fd).map_err(|e| TrustError::Read {
            path: path.to_path_buf(),
            cause: e.into(),
        })?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        let what = match kind {
            Kind::File if file_type != FileType::RegularFile => {
                return Err(self.not_a_file(path, "not a regular file"));
            }
            Kind::File => "the file",
            Kind::Directory => "the directory",
        };
        let mode = stat.st_mode & 0o7777;
        if !self.owners.contains(&stat.st_uid) {
            let allowed: Vec<String> = self.owners.iter().map(ToString::to_string).collect();
            return Err(self.unsafe_path(
                path,
                format!(
                    "{what} is owned by uid {} (only uid {} may own it)",
                    stat.st_uid,
                    allowed.join(" or ")
                ),
            ));
        }
        let sticky_root_dir = kind == Kind::Directory && mode & 0o1000 != 0 && stat.st_uid == 0;
        if mode & 0o022 != 0 && !sticky_root_dir {
            return Err(self.unsafe_path(
                path,
                format!("{what} is group- or world-writable (mode {mode:o})"),
            ));
        }
        Ok(())
    }

    pub(crate) fn unsafe_path(&self, path: &Path, reason: String) -> TrustError {
        let shown = path.display();
        TrustError::Unsafe {
            path: path.to_path_buf(),
            reason,
            help: format!(
                "cai runs as root and reads only files nobody else can change; fix with `chown root:root {shown} && chmod go-w {shown}`"
            ),
        }
    }

    /// Not a plain file (a symlink, directory, FIFO or device): no chmod makes it one.
    pub(crate) fn not_a_file(&self, path: &Path, reason: &str) -> TrustError {
        TrustError::Unsafe {
            path: path.to_path_buf(),
            reason: reason.to_string(),
            help: "pass the path of the regular file itself".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Directory,
}
