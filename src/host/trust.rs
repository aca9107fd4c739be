//! Reading files that decide what `cai` does as root: scripts, modules and config files.
//!
//! A trusted file is a regular file that only root or the invoking user could have written: it
//! and every directory above it are owned by one of them and not writable by group or others (a
//! root-owned sticky directory such as `/tmp` is exempt from the writable test, since it only lets
//! owners replace their entries). The check walks the canonical path from `/` one directory
//! descriptor at a time without following symlinks and opens the file from the last descriptor,
//! so nothing can be swapped between the check and the read. There is deliberately no switch that
//! turns this off.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

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

    /// The file's text, or `None` when it (or a directory above it) does not exist.
    pub fn read(&self, path: &Path) -> Result<Option<String>, TrustError> {
        let read_error = |cause: std::io::Error| TrustError::Read {
            path: path.to_path_buf(),
            cause,
        };
        let absolute = std::path::absolute(path).map_err(read_error)?;
        let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
            return Err(read_error(std::io::Error::other("not a file path")));
        };
        let parent = match std::fs::canonicalize(parent) {
            Ok(parent) => parent,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_error(e)),
        };

        let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut current = PathBuf::from("/");
        let mut dir =
            rustix::fs::open("/", dir_flags, Mode::empty()).map_err(|e| read_error(e.into()))?;
        self.check(&dir, &current, Kind::Directory)?;
        for component in parent.components() {
            let Component::Normal(part) = component else {
                continue;
            };
            current.push(part);
            dir = rustix::fs::openat(&dir, part, dir_flags | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|e| match e {
                    Errno::LOOP | Errno::NOTDIR => self.unsafe_path(
                        &current,
                        "it changed into a symlink while being checked".into(),
                    ),
                    other => read_error(other.into()),
                })?;
            self.check(&dir, &current, Kind::Directory)?;
        }

        let file_flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&dir, name, file_flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(self.not_a_file(path, "it is a symlink (symlinks are not followed)"));
            }
            Err(e) => return Err(read_error(e.into())),
        };
        self.check(&fd, path, Kind::File)?;
        let mut text = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        Ok(Some(text))
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

    fn unsafe_path(&self, path: &Path, reason: String) -> TrustError {
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
    fn not_a_file(&self, path: &Path, reason: &str) -> TrustError {
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn reads_well_owned_files_and_reports_absent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "x = 1").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let trust = Trust::new(None);
        assert_eq!(trust.read(&file).unwrap().as_deref(), Some("x = 1"));
        assert!(trust.read(&dir.path().join("missing")).unwrap().is_none());
        assert!(
            trust
                .read(&dir.path().join("no/such/dir/file"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn refuses_writable_files_directories_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.rhai");
        std::fs::write(&file, "x").unwrap();
        let trust = Trust::new(None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o646)).unwrap();
        let err = trust.read(&file).unwrap_err().to_string();
        assert!(
            err.contains("the file is group- or world-writable (mode 646)"),
            "{err}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

        let link = dir.path().join("link.rhai");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let err = trust.read(&link).unwrap_err().to_string();
        assert!(err.contains("it is a symlink"), "{err}");

        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = trust.read(&file).unwrap_err().to_string();
        assert!(
            err.contains("the directory is group- or world-writable"),
            "{err}"
        );
        // A sticky world-writable directory is fine only when root owns it (as /tmp).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let result = trust.read(&file);
        if rustix::process::geteuid().is_root() {
            assert!(result.is_ok());
        }
    }
}
