//! `cai packaging patch-control DIR`, the hidden command that scripts/build-sysbox.sh runs before
//! building the sysbox package: it finds every `deb/<package>/control` under DIR, applies the
//! fuse → fuse3 patch from `crate::plan::deb822`, and verifies the result.
//!
//! This file owns the file-system side only: walking the tree, reading, writing atomically with
//! the original permissions, and reporting. It must never decide anything about the content of
//! a control file (that is `deb822`'s job), never follow symbolic links while walking (a
//! packaging checkout links back to its own parent, which would loop), and never write a file
//! whose patched text fails verification.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::plan::deb822::{self, Patch};
use crate::term;

/// Every failure here (nothing to patch, or a file that cannot be brought into shape) is the
/// shared failure code: the build script only needs to know whether to stop.
const FAILURE: i32 = crate::error::FAILURE as i32;

/// Patches every `deb/*/control` under `dir`; returns the process exit code.
///
/// Prints `patched <path>` or `unchanged <path>` on stdout for each file that passes, and
/// `error: <path>: …` on stderr for each that does not; returns 0 only when all pass.
pub fn patch_control(dir: &Path) -> anyhow::Result<i32> {
    if !dir.is_dir() {
        term::err(&format!("error: {} is not a directory", dir.display()));
        term::err(
            "help: pass the packaging checkout, e.g. cai packaging patch-control sysbox/sysbox-pkgr",
        );
        return Ok(FAILURE);
    }
    let mut files = Vec::new();
    find_control_files(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        term::err(&format!(
            "error: no control files under {}: expected files named deb/<package>/control",
            dir.display()
        ));
        term::err(
            "help: pass the packaging checkout, e.g. cai packaging patch-control sysbox/sysbox-pkgr",
        );
        return Ok(FAILURE);
    }

    let mut failed = false;
    for path in &files {
        match patch_file(path)? {
            Ok(true) => term::out(&format!("patched {}", path.display())),
            Ok(false) => term::out(&format!("unchanged {}", path.display())),
            Err(error) => {
                term::err(&format!("error: {}: {error}", path.display()));
                failed = true;
            }
        }
    }
    Ok(if failed { FAILURE } else { 0 })
}

/// Patches one file. The outer error is an I/O failure; the inner one a content problem that is
/// reported per file. `Ok(Ok(true))` means the file was rewritten.
fn patch_file(path: &Path) -> anyhow::Result<Result<bool, deb822::Deb822Error>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let new_text = match deb822::patch(&text) {
        Ok(Patch::Unchanged) => None,
        Ok(Patch::Changed(new_text)) => Some(new_text),
        Err(error) => return Ok(Err(error)),
    };
    // Verify before writing, so a file that cannot be fixed is left exactly as it was.
    if let Err(error) = deb822::verify(new_text.as_deref().unwrap_or(&text)) {
        return Ok(Err(error));
    }
    match new_text {
        None => Ok(Ok(false)),
        Some(new_text) => {
            write_atomically(path, &new_text)?;
            Ok(Ok(true))
        }
    }
}

/// Replaces `path` by a temporary file written next to it, so a reader never sees half a file
/// and the packaging keeps the original mode bits.
fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let permissions = fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .permissions();
    let mut temp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    temp.write_all(contents.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write a temporary file in {}", parent.display()))?;
    fs::set_permissions(temp.path(), permissions)
        .with_context(|| format!("cannot set permissions on {}", temp.path().display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Collects regular files matching `deb822::is_control_path` below `dir`, without following
/// symbolic links and skipping `.git`.
fn find_control_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_dir() {
            if entry.file_name() != ".git" {
                find_control_files(&path, out)?;
            }
        } else if kind.is_file() && deb822::is_control_path(&path) {
            out.push(path);
        }
    }
    Ok(())
}
