//! Trusted reads: the one walk that reaches a file deciding what `cai` does as root (site config,
//! site scripts, a `.deb`, the user's config, a script named on the command line) or a directory
//! that holds one.
//!
//! The walk starts at `/` and goes down one directory descriptor at a time without following any
//! symlink; `/`, every directory on the way and the file itself must pass [`Trust`]'s rules, and
//! the file is read from the descriptor that was checked, so nothing can be swapped between the
//! check and the read. Files under `--root` are reached through the root's own methods
//! (`Root::open_trusted`, which first confirms that the walk arrived at the directory opened as
//! the root); [`open`] and [`read`] serve files outside it. There is deliberately no switch that
//! turns the checks off.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::resolve::{PATH_ONLY, refused_symlink};
use crate::host::trust::{Trust, TrustError};

/// The text of a file outside `--root`, or `None` when it (or a directory above it) does not
/// exist. Symlinks above the file are resolved first (the canonical path is then checked from
/// `/`); the file itself must not be one.
pub fn read(trust: &Trust, path: &Path) -> Result<Option<String>, TrustError> {
    match open(trust, path)? {
        Some(file) => read_text(file, path).map(Some),
        None => Ok(None),
    }
}

/// [`read`] without reading: the checked file, open.
pub fn open(trust: &Trust, path: &Path) -> Result<Option<std::fs::File>, TrustError> {
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
    let Some(dir) = dir(trust, &parent)? else {
        return Ok(None);
    };
    file(trust, &dir, name, path)
}

/// The directory at the canonical path `absolute`, reached from `/` with `/` and every directory
/// on the way checked and no symlink followed. `None` when it (or a directory above it) does not
/// exist; what exists was checked all the same.
pub fn dir(trust: &Trust, absolute: &Path) -> Result<Option<OwnedFd>, TrustError> {
    let names: Vec<&OsStr> = absolute
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let slash = Path::new("/");
    let start = rustix::fs::open(
        slash,
        PATH_ONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| TrustError::Read {
        path: slash.to_path_buf(),
        cause: e.into(),
    })?;
    trust.check_dir(&start, slash)?;
    dirs(trust, start, slash, &names)
}

/// The regular file `absolute` under the root opened as `root` at the canonical `root_path`,
/// reached like [`dir`] reaches a directory and checked too (`shown` names it in messages).
/// `None` when it does not exist.
pub(super) fn open_under(
    trust: &Trust,
    root: &OwnedFd,
    root_path: &Path,
    absolute: &Path,
    shown: &Path,
) -> Result<Option<std::fs::File>, TrustError> {
    let names = names_under(trust, absolute, shown)?;
    let Some((name, dirs_above)) = names.split_last() else {
        return Err(trust.not_a_file(shown, "not a regular file"));
    };
    let start = checked_root(trust, root, root_path)?;
    let Some(dir) = dirs(trust, start, root_path, dirs_above)? else {
        return Ok(None);
    };
    file(trust, &dir, name, shown)
}

/// The directory `absolute` under the root, reached like [`open_under`] reaches a file. `None`
/// when it (or a directory above it) does not exist; what exists was checked all the same.
pub(super) fn dir_under(
    trust: &Trust,
    root: &OwnedFd,
    root_path: &Path,
    absolute: &Path,
    shown: &Path,
) -> Result<Option<OwnedFd>, TrustError> {
    let names = names_under(trust, absolute, shown)?;
    let start = checked_root(trust, root, root_path)?;
    dirs(trust, start, root_path, &names)
}

/// The names from the root down to `absolute`; `..` is refused, since a trusted path says plainly
/// where it is.
fn names_under<'a>(
    trust: &Trust,
    absolute: &'a Path,
    shown: &Path,
) -> Result<Vec<&'a OsStr>, TrustError> {
    let mut names = Vec::new();
    for component in absolute.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::CurDir | Component::RootDir => {}
            _ => {
                return Err(trust.not_a_file(shown, "the path must not contain `..`"));
            }
        }
    }
    Ok(names)
}

/// The root directory itself, reached from `/` with every directory on the way checked, and
/// confirmed to be the directory opened at start-up.
fn checked_root(trust: &Trust, root: &OwnedFd, root_path: &Path) -> Result<OwnedFd, TrustError> {
    let read_error = |cause: std::io::Error| TrustError::Read {
        path: root_path.to_path_buf(),
        cause,
    };
    let dir = dir(trust, root_path)?
        .ok_or_else(|| read_error(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    let walked = rustix::fs::fstat(&dir).map_err(|e| read_error(e.into()))?;
    let opened = rustix::fs::fstat(root).map_err(|e| read_error(e.into()))?;
    if (walked.st_dev, walked.st_ino) != (opened.st_dev, opened.st_ino) {
        return Err(trust.unsafe_path(
            root_path,
            "the root directory was replaced while cai was running".into(),
        ));
    }
    Ok(dir)
}

/// Walks `names` down from the checked directory `start` (named `start_shown`), checking each
/// directory without following symlinks. `None` when one does not exist.
fn dirs(
    trust: &Trust,
    start: OwnedFd,
    start_shown: &Path,
    names: &[&OsStr],
) -> Result<Option<OwnedFd>, TrustError> {
    let mut dir = start;
    let mut shown = start_shown.to_path_buf();
    for name in names {
        shown.push(name);
        let flags = PATH_ONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        dir = match rustix::fs::openat(&dir, *name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                return Err(if refused_symlink(&dir, name, e) {
                    trust.not_a_file(&shown, "it is a symlink (symlinks are not followed)")
                } else {
                    trust.not_a_file(&shown, "not a directory")
                });
            }
            Err(e) => {
                return Err(TrustError::Read {
                    path: shown,
                    cause: e.into(),
                });
            }
        };
        trust.check_dir(&dir, &shown)?;
    }
    Ok(Some(dir))
}

/// Opens `name` in the checked directory `dir` and checks it. `None` when it does not exist.
fn file(
    trust: &Trust,
    dir: &OwnedFd,
    name: &OsStr,
    shown: &Path,
) -> Result<Option<std::fs::File>, TrustError> {
    // O_NONBLOCK: opening a FIFO must not hang; it is refused as not a regular file below.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => {
            return Err(trust.not_a_file(shown, "it is a symlink (symlinks are not followed)"));
        }
        Err(e) => {
            return Err(TrustError::Read {
                path: shown.to_path_buf(),
                cause: e.into(),
            });
        }
    };
    trust.check_file(&fd, shown)?;
    Ok(Some(std::fs::File::from(fd)))
}

/// The whole text of a checked file (`shown` names it in messages).
pub(super) fn read_text(mut file: std::fs::File, shown: &Path) -> Result<String, TrustError> {
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|cause| TrustError::Read {
            path: shown.to_path_buf(),
            cause,
        })?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::host::trust::Trust;

    #[test]
    fn reads_well_owned_files_and_reports_absent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "x = 1").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let trust = Trust::new(None);
        assert_eq!(read(&trust, &file).unwrap().as_deref(), Some("x = 1"));
        assert!(read(&trust, &dir.path().join("missing")).unwrap().is_none());
        assert!(
            read(&trust, &dir.path().join("no/such/dir/file"))
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
        let err = read(&trust, &file).unwrap_err().to_string();
        assert!(
            err.contains("the file is group- or world-writable (mode 646)"),
            "{err}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

        let link = dir.path().join("link.rhai");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let err = read(&trust, &link).unwrap_err().to_string();
        assert!(err.contains("it is a symlink"), "{err}");

        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = read(&trust, &file).unwrap_err().to_string();
        assert!(
            err.contains("the directory is group- or world-writable"),
            "{err}"
        );
        // A sticky world-writable directory is fine only when root owns it (as /tmp): the
        // temporary directory is this user's, so the answer depends on who runs the test, and
        // both answers are checked.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let result = read(&trust, &file);
        if rustix::process::geteuid().is_root() {
            assert!(result.is_ok(), "{result:?}");
        } else {
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("the directory is group- or world-writable (mode 1777)"),
                "{err}"
            );
        }
    }
}
