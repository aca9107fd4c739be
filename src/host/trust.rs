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
        // `st_mode` is a `u32` on Linux and a `u16` on macOS.
        #[allow(clippy::useless_conversion)]
        let mode = u32::from(stat.st_mode);
        owner_and_mode(&self.owners, stat.st_uid, mode, kind)
            .map_err(|reason| self.unsafe_path(path, format!("{what} {reason}")))
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

/// The rule itself, on what `fstat` said: owned by one of `owners`, and not writable by group or
/// others unless it is a root-owned sticky directory (as `/tmp`).
fn owner_and_mode(owners: &[u32], uid: u32, st_mode: u32, kind: Kind) -> Result<(), String> {
    let mode = st_mode & 0o7777;
    if !owners.contains(&uid) {
        let allowed: Vec<String> = owners.iter().map(ToString::to_string).collect();
        return Err(format!(
            "is owned by uid {uid} (only uid {} may own it)",
            allowed.join(" or ")
        ));
    }
    let sticky_root_dir = kind == Kind::Directory && mode & 0o1000 != 0 && uid == 0;
    if mode & 0o022 != 0 && !sticky_root_dir {
        return Err(format!("is group- or world-writable (mode {mode:o})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ownership and mode rule for every case, whoever runs the tests (no chown needed).
    #[test]
    fn owner_and_mode_rule_table() {
        let owners = [0, 1000];
        let cases: [(u32, u32, Kind, Result<(), &str>); 10] = [
            (0, 0o644, Kind::File, Ok(())),
            (1000, 0o600, Kind::File, Ok(())),
            (0, 0o755, Kind::Directory, Ok(())),
            // Root-owned sticky world-writable directory, as /tmp.
            (0, 0o1777, Kind::Directory, Ok(())),
            (
                1000,
                0o1777,
                Kind::Directory,
                Err("is group- or world-writable (mode 1777)"),
            ),
            (
                0,
                0o1666,
                Kind::File,
                Err("is group- or world-writable (mode 1666)"),
            ),
            (
                0,
                0o775,
                Kind::Directory,
                Err("is group- or world-writable (mode 775)"),
            ),
            (
                1000,
                0o646,
                Kind::File,
                Err("is group- or world-writable (mode 646)"),
            ),
            (
                4321,
                0o644,
                Kind::File,
                Err("is owned by uid 4321 (only uid 0 or 1000 may own it)"),
            ),
            (
                4321,
                0o1777,
                Kind::Directory,
                Err("is owned by uid 4321 (only uid 0 or 1000 may own it)"),
            ),
        ];
        for (uid, mode, kind, want) in cases {
            let got = owner_and_mode(&owners, uid, mode, kind);
            assert_eq!(
                got.as_ref().copied().map_err(String::as_str),
                want,
                "{uid} {mode:o} {kind:?}"
            );
        }
    }
}
