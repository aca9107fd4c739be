//! `cai --version`: the version, and the commit and its date when built from git
//! (`build/version.rs`, run by `build.rs`). The logic is tried against real repositories made
//! here (a checkout, a plain directory, a tarball unpacked inside another repository), and the
//! built binary is checked against what git says about this checkout.

#[path = "../build/version.rs"]
mod version;

mod support;

use std::path::Path;
use std::process::Command;

use support::TestHost;

const PACKAGE: &str = env!("CARGO_PKG_VERSION");

fn git(dir: &Path, args: &[&str]) -> String {
    support::require("git");
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        // 23:30 at UTC-05:00 is the next day in UTC: the date must be UTC's.
        .env("GIT_COMMITTER_DATE", "2026-12-04T23:30:00-05:00")
        .env("GIT_AUTHOR_DATE", "2026-12-04T23:30:00-05:00")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn repository(dir: &Path) -> String {
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("Cargo.toml"), "[package]\n").unwrap();
    git(dir, &["add", "Cargo.toml"]);
    git(
        dir,
        &["-c", "commit.gpgsign=false", "commit", "-q", "-m", "one"],
    );
    git(dir, &["rev-parse", "--short=7", "HEAD"])
}

#[test]
fn a_checkout_names_its_commit_and_the_commits_utc_date() {
    let dir = tempfile::tempdir().unwrap();
    let hash = repository(dir.path());
    assert_eq!(hash.len(), 7, "{hash}");
    assert_eq!(
        version::describe("0.2.0", dir.path()),
        format!("0.2.0 ({hash} 2026-12-05)")
    );
    let watched = version::watched(dir.path());
    assert!(
        watched.iter().any(|p| p.ends_with(".git/HEAD")),
        "{watched:?}"
    );
}

#[test]
fn a_tree_without_git_gets_the_version_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), "[package]\n").unwrap();
    assert_eq!(version::describe("0.2.0", dir.path()), "0.2.0");
    assert!(version::watched(dir.path()).is_empty());
}

/// A source tarball unpacked inside another project's repository must not name that
/// repository's commit.
#[test]
fn a_tarball_inside_another_repository_gets_the_version_alone() {
    let dir = tempfile::tempdir().unwrap();
    repository(dir.path());
    let unpacked = dir.path().join("vendor/containai-0.2.0");
    std::fs::create_dir_all(&unpacked).unwrap();
    assert_eq!(version::describe("0.2.0", &unpacked), "0.2.0");
}

/// The binary under test says what `build.rs` made of this checkout: with commit and date when
/// the crate's directory is the top of a git checkout (asked of git here, independently of
/// `build/version.rs`), the version alone otherwise.
#[test]
fn cai_version_shows_the_commit_and_date_of_a_git_build() {
    let host = TestHost::new();
    let (code, stdout, stderr) = host.run(&["--version"]);
    assert_eq!(code, 0, "{stderr}");
    let line = stdout.trim();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let top = Command::new("git")
        .arg("-C")
        .arg(crate_dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let in_git =
        top.is_some_and(|t| Path::new(&t).canonicalize().ok() == crate_dir.canonicalize().ok());
    if !in_git {
        assert_eq!(line, format!("cai {PACKAGE}"));
        return;
    }
    let hash = git(crate_dir, &["rev-parse", "--short=7", "HEAD"]);
    let rest = line
        .strip_prefix(&format!("cai {PACKAGE} ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("want `cai {PACKAGE} (HASH DATE)`, got {line:?}"));
    let (got_hash, date) = rest.split_once(' ').expect("hash and date");
    assert_eq!(got_hash, hash, "{line}");
    let b = date.as_bytes();
    assert!(
        b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && date.replace('-', "").bytes().all(|c| c.is_ascii_digit()),
        "date {date:?} in {line:?}"
    );
    // Subcommands print the same after their own name.
    let (_, stdout, _) = host.run(&["doctor", "--version"]);
    assert_eq!(stdout.trim(), format!("cai-doctor {PACKAGE} ({rest})"));
}
