//! The invoking user's own state files under `$HOME` (the REPL history), written by a process
//! that usually runs as root. A file there is opened only inside a directory owned by the user who
//! invoked `cai` (the `sudo` user in `SUDO_UID`, else this process's user) or by this process's
//! own user, that nobody else can write, reached one component at a time below `$HOME` without
//! following symlinks; the file itself is never a symlink. Otherwise nothing is read or written:
//! history is a convenience, never a reason for root to write where someone else points it.

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

#[derive(Debug, thiserror::Error)]
#[error("not using {path}: {reason}")]
pub struct StateError {
    path: PathBuf,
    reason: String,
}

/// A state file that passed the checks, open for reading and rewriting.
pub struct StateFile {
    file: std::fs::File,
}

/// Who may own the directories a state file lives in.
#[derive(Debug, Clone, Copy)]
pub struct Owners {
    /// The user who ran `cai` (under `sudo`, the one in `SUDO_UID`).
    pub invoking: u32,
    /// This process's effective user.
    pub effective: u32,
    /// The group new directories get, so a user's own directories stay theirs under `sudo`.
    pub invoking_gid: Option<u32>,
}

impl Owners {
    pub fn probe(sudo_uid: Option<u32>, sudo_gid: Option<u32>) -> Self {
        let effective = rustix::process::geteuid().as_raw();
        let (invoking, invoking_gid) = match sudo_uid {
            Some(uid) if effective == 0 => (uid, sudo_gid),
            _ => (effective, None),
        };
        Self {
            invoking,
            effective,
            invoking_gid,
        }
    }

    fn allows(&self, uid: u32) -> bool {
        uid == self.invoking || uid == self.effective
    }
}

impl StateFile {
    /// Opens `home/relative`, creating missing directories (0700, owned by the invoking user)
    /// and the file (0600).
    pub fn open(home: &Path, relative: &Path, owners: Owners) -> Result<Self, StateError> {
        let full = home.join(relative);
        let refuse = |reason: String| StateError {
            path: full.clone(),
            reason,
        };
        let (Some(dirs), Some(name)) = (relative.parent(), relative.file_name()) else {
            return Err(refuse("not a file path".into()));
        };
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut dir = rustix::fs::open(home, dir_flags, Mode::empty())
            .map_err(|e| refuse(format!("cannot open {}: {e}", home.display())))?;
        check_dir(&dir, owners).map_err(|r| refuse(format!("{}: {r}", home.display())))?;
        for component in dirs.components() {
            let Component::Normal(part) = component else {
                return Err(refuse("the path must stay below $HOME".into()));
            };
            match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    if owners.effective == 0 && owners.invoking != 0 {
                        let _ = rustix::fs::chownat(
                            &dir,
                            part,
                            Some(rustix::fs::Uid::from_raw(owners.invoking)),
                            owners.invoking_gid.map(rustix::fs::Gid::from_raw),
                            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                        );
                    }
                }
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(refuse(format!("cannot create {part:?}: {e}"))),
            }
            dir = rustix::fs::openat(&dir, part, dir_flags | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|e| {
                    refuse(format!(
                        "cannot open {part:?} (symlinks are not followed): {e}"
                    ))
                })?;
            check_dir(&dir, owners).map_err(|r| refuse(format!("{part:?}: {r}")))?;
        }
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| {
            refuse(format!(
                "cannot open the file (symlinks are not followed): {e}"
            ))
        })?;
        check_file(&fd, owners).map_err(refuse)?;
        if owners.effective == 0 && owners.invoking != 0 {
            let _ = rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(owners.invoking)),
                owners.invoking_gid.map(rustix::fs::Gid::from_raw),
            );
        }
        Ok(Self {
            file: std::fs::File::from(fd),
        })
    }

    pub fn read(&mut self) -> std::io::Result<String> {
        let mut text = String::new();
        self.file.rewind()?;
        self.file.read_to_string(&mut text)?;
        Ok(text)
    }

    /// Replaces the whole content.
    pub fn rewrite(&mut self, text: &str) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()
    }
}

fn check_dir(fd: &OwnedFd, owners: Owners) -> Result<(), String> {
    let stat = rustix::fs::fstat(fd).map_err(|e| e.to_string())?;
    if !owners.allows(stat.st_uid) {
        return Err(format!(
            "the directory is owned by uid {}, not by the invoking user",
            stat.st_uid
        ));
    }
    if stat.st_mode & 0o022 != 0 {
        return Err(format!(
            "the directory is group- or world-writable (mode {:o})",
            stat.st_mode & 0o7777
        ));
    }
    Ok(())
}

fn check_file(fd: &OwnedFd, owners: Owners) -> Result<(), String> {
    let stat = rustix::fs::fstat(fd).map_err(|e| e.to_string())?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err("not a regular file".into());
    }
    if !owners.allows(stat.st_uid) {
        return Err(format!(
            "the file is owned by uid {}, not by the invoking user",
            stat.st_uid
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn me() -> Owners {
        Owners::probe(None, None)
    }

    #[test]
    fn creates_reads_and_rewrites_below_home() {
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let rel = Path::new(".local/state/containai/repl_history");
        let mut file = StateFile::open(home.path(), rel, me()).unwrap();
        file.rewrite("a\nb\n").unwrap();
        let mut again = StateFile::open(home.path(), rel, me()).unwrap();
        assert_eq!(again.read().unwrap(), "a\nb\n");
        let mode = std::fs::metadata(home.path().join(rel))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn symlinks_and_foreign_or_writable_directories_are_refused() {
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".local/state")).unwrap();
        // A directory that is a symlink elsewhere.
        std::os::unix::fs::symlink(outside.path(), home.path().join(".local/state/containai"))
            .unwrap();
        let rel = Path::new(".local/state/containai/repl_history");
        assert!(StateFile::open(home.path(), rel, me()).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // The file itself a symlink.
        std::fs::remove_file(home.path().join(".local/state/containai")).unwrap();
        std::fs::create_dir(home.path().join(".local/state/containai")).unwrap();
        let target = outside.path().join("passwd");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, home.path().join(rel)).unwrap();
        let err = StateFile::open(home.path(), rel, me())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("symlinks are not followed"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        // A world-writable directory on the way.
        std::fs::remove_file(home.path().join(rel)).unwrap();
        std::fs::set_permissions(
            home.path().join(".local/state"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let err = StateFile::open(home.path(), rel, me())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("world-writable"), "{err}");
        // A directory owned by somebody else. Giving one away needs root; instead the
        // directories stay this user's and the owners allowed are somebody else, which is the
        // same check from the other side, whoever runs the test.
        std::fs::set_permissions(
            home.path().join(".local/state"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert!(StateFile::open(home.path(), rel, me()).is_ok());
        let mine = std::fs::metadata(home.path()).unwrap().uid();
        let stranger = mine.wrapping_add(4321);
        let others = Owners {
            invoking: stranger,
            effective: stranger,
            invoking_gid: None,
        };
        let err = StateFile::open(home.path(), rel, others)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!(
                "the directory is owned by uid {mine}, not by the invoking user"
            )),
            "{err}"
        );
        // Below a directory that is ours, each directory on the way is checked too.
        let dir = rustix::fs::open(
            home.path().join(".local/state"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let err = check_dir(&dir, others).unwrap_err();
        assert!(err.contains(&format!("owned by uid {mine}")), "{err}");
        let file = rustix::fs::open(home.path().join(rel), OFlags::RDONLY, Mode::empty()).unwrap();
        let err = check_file(&file, others).unwrap_err();
        assert!(err.contains(&format!("owned by uid {mine}")), "{err}");
    }
}
