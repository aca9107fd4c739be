//! What can go wrong in the root-anchored file layer: the root cannot be opened, an operation on a
//! path under it failed, or a symlink was refused. Every variant names the path as it is shown
//! under the root; none of them carries a path that could be used to open anything.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot use --root {path}: {source}\nhelp: pass an existing directory")]
    OpenRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--root {path} is not a directory\nhelp: pass the directory that holds the host tree")]
    RootNotDir { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing {path}: it is a symlink{detail}\nhelp: replace the symlink with the file or directory it stands for"
    )]
    Symlink { path: PathBuf, detail: &'static str },
}

impl FsError {
    pub fn kind(&self) -> std::io::ErrorKind {
        match self {
            FsError::OpenRoot { source, .. } | FsError::Io { source, .. } => source.kind(),
            FsError::RootNotDir { .. } => std::io::ErrorKind::NotADirectory,
            FsError::Symlink { .. } => std::io::ErrorKind::PermissionDenied,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == std::io::ErrorKind::NotFound
    }
}

impl From<FsError> for std::io::Error {
    fn from(e: FsError) -> Self {
        std::io::Error::new(e.kind(), e)
    }
}
