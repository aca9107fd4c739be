//! `--root` is a boundary: symlinks inside the tree never lead `cai` out of it (unit files, the
//! journal, the engine socket), external programs always get the absolute canonical root, and a
//! `.deb` is installed only from a private copy of a file that passed the trust rules.

mod support;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};
use support::TestHost;

const HEADER: &str = "//! version: 1.0.0\n//! api: 1\n";

fn first_line(stderr: &str) -> &str {
    stderr.lines().next().unwrap_or("")
}

/// The `error:` line, which follows the list of actions a failed live run had already performed.
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or("")
}

/// A directory outside the root, for symlinks inside the root to point at.
fn outside() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cai-outside")
        .tempdir()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Where an absolute symlink target lands when it is resolved inside the root.
fn mirror(host: &TestHost, target: &Path) -> PathBuf {
    host.root().join(target.strip_prefix("/").unwrap())
}

#[test]
fn regression_units_write_through_a_symlinked_etc_systemd_never_leaves_the_root() {
    let host = TestHost::new();
    host.fakes.add_standard("sysbox-runc version 0.6.7");
    let out = outside();
    std::fs::remove_dir_all(host.root().join("etc/systemd")).unwrap();
    symlink(out.path(), host.root().join("etc/systemd")).unwrap();
    let script = host.script(
        "w.rhai",
        &format!("{HEADER}print(units::install(\"containai-docker.service\"));\n0\n"),
    );

    // The symlink's target does not exist inside the root: refused, nothing written anywhere.
    let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(error_line(&stderr).contains("refusing"), "{stderr}");
    assert!(entries(out.path()).is_empty(), "wrote outside the root");

    // With the target's mirror inside the root, the write lands there, as in a chroot.
    std::fs::create_dir_all(mirror(&host, out.path())).unwrap();
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "true");
    let inside = mirror(&host, out.path()).join("system/containai-docker.service");
    let text = std::fs::read_to_string(inside).unwrap();
    assert!(
        text.starts_with("[Unit]") || text.contains("\n[Unit]"),
        "{text}"
    );
    assert!(entries(out.path()).is_empty(), "wrote outside the root");
}

#[test]
fn regression_a_symlinked_journal_file_or_directory_is_refused_never_followed() {
    let host = TestHost::new();
    host.fakes.add_standard("sysbox-runc version 0.6.7");
    let out = outside();
    let victim = out.path().join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    let script = host.script(
        "w.rhai",
        &format!("{HEADER}units::install(\"containai-docker.service\");\n0\n"),
    );
    let unit = host
        .root()
        .join("etc/systemd/system/containai-docker.service");

    // The journal file itself is a symlink to a file outside.
    let journal_dir = host.root().join("var/lib/containai");
    std::fs::create_dir_all(&journal_dir).unwrap();
    symlink(&victim, journal_dir.join("actions.jsonl")).unwrap();
    let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        first_line(&stderr).contains("actions.jsonl: it is a symlink"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    assert!(!unit.exists(), "acted although the journal was refused");

    // The journal directory is a symlink to a directory outside.
    std::fs::remove_dir_all(&journal_dir).unwrap();
    symlink(out.path(), &journal_dir).unwrap();
    let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(first_line(&stderr).contains("refusing"), "{stderr}");
    assert_eq!(entries(out.path()), ["victim"]);

    // An absolute symlink whose target exists inside the root is followed there.
    std::fs::create_dir_all(mirror(&host, out.path())).unwrap();
    let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let journal = mirror(&host, out.path()).join("actions.jsonl");
    let text = std::fs::read_to_string(journal).unwrap();
    assert!(text.contains("\"kind\":\"units.install\""), "{text}");
    assert_eq!(entries(out.path()), ["victim"]);
}

#[test]
fn regression_engine_status_through_a_symlinked_var_run_never_reaches_an_outside_engine() {
    let host = TestHost::new();
    let out = outside();
    let listener =
        std::os::unix::net::UnixListener::bind(out.path().join("containai-docker.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::fs::remove_dir_all(host.root().join("var/run")).unwrap();
    symlink(out.path(), host.root().join("var/run")).unwrap();
    let script = host.script(
        "s.rhai",
        &format!(
            "{HEADER}let s = containers::engine_status();\nprint(`reachable ${{s.reachable}}`);\nprint(s.error);\ncontainers::list_managed(false);\n"
        ),
    );
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert!(stdout.contains("reachable false"), "{stdout}");
    assert!(stdout.contains("symlink"), "{stdout}");
    // Listing fails closed: an engine that cannot be reached safely is not "no containers".
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("cannot reach the engine"), "{stderr}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("cai connected to the engine outside the root: {other:?}"),
    }
}

/// A `cai` command run from `dir` with `--root` exactly as given.
fn cai_in(host: &TestHost, dir: &Path, root_args: &[&str]) -> Command {
    let mut cmd = Command::new(support::cai_bin());
    cmd.current_dir(dir)
        .args(root_args)
        .env("HOME", host.home.path())
        .env("PATH", host.fakes.path_env())
        .stdin(Stdio::null());
    cmd
}

#[test]
fn regression_a_relative_root_or_one_named_like_an_option_reaches_systemctl_absolute() {
    let host = TestHost::new();
    host.fakes.add_standard("sysbox-runc version 0.6.7");
    let script = host.script("r.rhai", &format!("{HEADER}units::daemon_reload();\n"));
    let parent = std::fs::canonicalize(host.root()).unwrap();
    for (name, args) in [
        ("nested", vec!["--root", "nested"]),
        ("-x", vec!["--root=-x"]),
        ("-x", vec!["--root", "./-x"]),
    ] {
        std::fs::create_dir_all(parent.join(name)).unwrap();
        let out = cai_in(&host, &parent, &args)
            .args(["run", script.to_str().unwrap()])
            .output()
            .unwrap();
        let (code, _, stderr) = support::decode(out);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        let want = format!(
            "systemctl [--root={}] [daemon-reload]",
            parent.join(name).display()
        );
        let log = host.fakes.log();
        assert!(log.lines().last() == Some(want.as_str()), "{args:?}: {log}");
    }
}

/// A host whose fake dpkg copies the package it is given to `<home>/installed.deb` and records
/// the path in `<home>/installed.path`.
fn deb_host() -> TestHost {
    let host = TestHost::new();
    host.fakes.add_standard("sysbox-runc version 0.6.7");
    let dest = host.home.path().join("installed.deb");
    let body = format!(
        "for a in \"$@\"; do last=\"$a\"; done\ncp \"$last\" '{dest}'\nprintf '%s' \"$last\" > '{path}'",
        dest = dest.display(),
        path = host.home.path().join("installed.path").display()
    );
    host.fakes.add("dpkg", &body);
    std::fs::create_dir_all(host.root().join("var/cache/containai")).unwrap();
    host
}

fn install_script(host: &TestHost) -> PathBuf {
    host.script(
        "deb.rhai",
        &format!("{HEADER}packages::install_deb(ARGS[0]);\n"),
    )
}

#[test]
fn regression_untrusted_debs_are_refused_with_one_line_and_nothing_runs() {
    let host = deb_host();
    let script = install_script(&host);
    let cache = host.root().join("var/cache/containai");
    let deb = |name: &str, mode: u32| {
        let path = cache.join(name);
        std::fs::write(&path, b"!<arch>\npretend deb\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    deb("writable.deb", 0o666);
    let foreign = deb("foreign.deb", 0o644);
    std::os::unix::fs::chown(&foreign, Some(1234), Some(1234)).unwrap();
    deb("good.deb", 0o644);
    symlink("good.deb", cache.join("link.deb")).unwrap();
    let open = host.root().join("var/cache/open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(open.join("in-open-dir.deb"), b"x").unwrap();

    for (path, reason) in [
        (
            "/var/cache/containai/writable.deb",
            "the file is group- or world-writable (mode 666)",
        ),
        (
            "/var/cache/containai/foreign.deb",
            "the file is owned by uid 1234",
        ),
        (
            "/var/cache/open/in-open-dir.deb",
            "the directory is group- or world-writable (mode 777)",
        ),
        ("/var/cache/containai/link.deb", "it is a symlink"),
        ("var/cache/containai/good.deb", "not an absolute path"),
    ] {
        let (code, _, stderr) = host.run(&["run", script.to_str().unwrap(), "--", path]);
        assert_eq!(code, 1, "{path}: {stderr}");
        let line = first_line(&stderr);
        assert!(
            line.contains("refusing") && line.contains(reason),
            "{path}: {stderr}"
        );
        assert!(
            !host.fakes.log().contains("dpkg"),
            "{path}: {}",
            host.fakes.log()
        );
    }
}

#[test]
fn a_good_deb_is_planned_with_its_sha256_and_dpkg_gets_a_private_copy() {
    let host = deb_host();
    let script = install_script(&host);
    let original = host.root().join("var/cache/containai/good.deb");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&original, &bytes).unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));

    let (code, stdout, stderr) = host.run(&[
        "run",
        "--dry-run",
        "--json",
        script.to_str().unwrap(),
        "--",
        "/var/cache/containai/good.deb",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let action = &doc["plan"][0];
    assert_eq!(action["kind"], "packages.install_deb");
    assert_eq!(action["target"], original.display().to_string());
    assert_eq!(action["details"]["sha256"], sha);
    assert_eq!(action["details"]["bytes"], bytes.len());
    let (_, human, _) = host.run(&[
        "run",
        "--dry-run",
        script.to_str().unwrap(),
        "--",
        "/var/cache/containai/good.deb",
    ]);
    assert!(human.contains(&sha), "{human}");
    assert!(!host.fakes.log().contains("dpkg"), "{}", host.fakes.log());

    let (code, _, stderr) = host.run(&[
        "run",
        script.to_str().unwrap(),
        "--",
        "/var/cache/containai/good.deb",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let given =
        PathBuf::from(std::fs::read_to_string(host.home.path().join("installed.path")).unwrap());
    assert_ne!(given, original, "dpkg was given the original path");
    assert!(!given.starts_with(host.root()), "{}", given.display());
    assert_eq!(
        std::fs::read(host.home.path().join("installed.deb")).unwrap(),
        bytes
    );
    assert!(!given.exists(), "the private copy outlived the run");

    // A dpkg that stops on missing dependencies: apt-get install -f finishes the job.
    host.fakes
        .add("dpkg", "echo 'dpkg: dependency problems' >&2; exit 1");
    host.fakes.add("apt-get", "exit 0");
    let (code, _, stderr) = host.run(&[
        "run",
        script.to_str().unwrap(),
        "--",
        "/var/cache/containai/good.deb",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let log = host.fakes.log();
    assert!(
        log.contains(&format!(
            "apt-get [-o] [Dir={}] [install] [-f] [-y]",
            host.root().display()
        )),
        "{log}"
    );

    // A failing dpkg names the program and its exit status, and apt-get's failure beside it.
    host.fakes
        .add("dpkg", "echo 'dpkg: error: broken' >&2; exit 1");
    host.fakes
        .add("apt-get", "echo 'E: Unmet dependencies' >&2; exit 100");
    let (code, _, stderr) = host.run(&[
        "run",
        script.to_str().unwrap(),
        "--",
        "/var/cache/containai/good.deb",
    ]);
    assert_eq!(code, 1);
    assert!(error_line(&stderr).contains("dpkg -i "), "{stderr}");
    assert!(
        error_line(&stderr).contains("exited with status 1"),
        "{stderr}"
    );
    assert!(stderr.contains("  | dpkg: error: broken"), "{stderr}");
    assert!(
        stderr.contains("apt-get install -f exited with status 100 too"),
        "{stderr}"
    );
    assert!(stderr.contains("  | E: Unmet dependencies"), "{stderr}");
    assert!(!stderr.contains("Some(1)"), "{stderr}");
}
