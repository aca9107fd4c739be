//! What `cai --version` says after the name: the package version, and, when the crate is built
//! from its own git checkout, the commit and its date, as rustup and cargo do:
//! `0.2.0 (abc1234 2026-12-05)`. Used by `build.rs`, and by `tests/version.rs` against real
//! repositories.
//!
//! A build from a source tarball has no repository and gets the version alone. So does a tarball
//! unpacked inside some other repository: only a checkout whose top level is the crate's own
//! directory counts, so an unrelated commit is never named. The date is the commit's, in UTC, so
//! the same commit says the same thing wherever it is built.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The git checkout a build in `crate_dir` comes from: its commit (short hash) and the commit's
/// date (`YYYY-MM-DD`, UTC), or `None` when `crate_dir` is not the top level of a checkout or git
/// cannot say (not installed, a repository owned by someone else).
pub fn git_commit(crate_dir: &Path) -> Option<(String, String)> {
    let top = git(crate_dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), crate_dir) {
        return None;
    }
    let hash = git(crate_dir, &["rev-parse", "--short=7", "HEAD"])?;
    let date = git(
        crate_dir,
        &[
            "log",
            "-1",
            "--no-show-signature",
            "--format=%cd",
            "--date=format-local:%Y-%m-%d",
            "HEAD",
        ],
    )?;
    let valid_hash = hash.len() >= 7 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    let valid_date = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    (valid_hash && valid_date).then_some((hash, date))
}

/// `version`, followed by ` (HASH DATE)` when `crate_dir` is its own git checkout.
pub fn describe(version: &str, crate_dir: &Path) -> String {
    match git_commit(crate_dir) {
        Some((hash, date)) => format!("{version} ({hash} {date})"),
        None => version.to_string(),
    }
}

/// The files whose change means another commit is checked out: the checkout's `HEAD` and its
/// reflog (every commit, checkout and reset appends to it). Empty outside a checkout.
pub fn watched(crate_dir: &Path) -> Vec<PathBuf> {
    if git_commit(crate_dir).is_none() {
        return Vec::new();
    }
    let Some(dir) = git(crate_dir, &["rev-parse", "--absolute-git-dir"]) else {
        return Vec::new();
    };
    let dir = PathBuf::from(dir);
    [dir.join("HEAD"), dir.join("logs/HEAD")]
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

/// One line of git's output in `dir`, with the environment that could point git elsewhere
/// removed (`GIT_DIR` and friends are set when cargo runs inside a git hook).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .env_remove("GIT_CEILING_DIRECTORIES")
        .env("TZ", "UTC")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    (!line.is_empty() && !line.contains('\n')).then(|| line.to_string())
}
