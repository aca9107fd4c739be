//! End-to-end checks of the sysbox packaging patch as the build uses it: the real
//! `scripts/build-sysbox.sh --patch-only DIR` running the `cai` binary built for this test, on the
//! control fixtures in tests/fixtures/control, then real `dpkg-deb` packages built from the
//! result; `scripts/pin-release.sh` pinning the release manifest's checksums from `file://`
//! artifacts; plus the shape of the GitHub workflows that call the scripts.
//!
//! These tests own only temporary directories. They must never skip silently: a missing
//! `dpkg-deb` (or `curl`) is a failure that names the package to install.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const CAI: &str = env!("CARGO_BIN_EXE_cai");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/control")
}

fn script() -> Command {
    let mut command = Command::new("bash");
    command
        .arg(repo().join("scripts/build-sysbox.sh"))
        .env("CAI", CAI);
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the command starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The fixture names that have an `.expected` twin, sorted.
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures())
        .expect("fixtures exist")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "control"))
        .map(|p| {
            p.file_stem()
                .expect("fixture stem")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    for name in &names {
        assert!(
            fixtures().join(format!("{name}.expected")).is_file(),
            "fixture {name}.control has no {name}.expected"
        );
    }
    assert!(names.len() >= 10, "fixtures went missing: {names:?}");
    names
}

/// Lays every fixture out as `<tmp>/pkgr/deb/<name>/control`, the packaging tree's layout.
fn fixture_tree() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("pkgr");
    for name in fixture_names() {
        let dir = root.join("deb").join(&name);
        fs::create_dir_all(&dir).expect("mkdir");
        fs::copy(
            fixtures().join(format!("{name}.control")),
            dir.join("control"),
        )
        .expect("copy fixture");
    }
    (tmp, root)
}

fn control_of(root: &Path, name: &str) -> PathBuf {
    root.join("deb").join(name).join("control")
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn patch_only_turns_every_fixture_into_its_expected_file_and_a_second_run_changes_nothing() {
    let (_tmp, root) = fixture_tree();
    // One file with unusual permissions, to see they survive the atomic rewrite.
    let restricted = control_of(&root, "sysbox-ce");
    fs::set_permissions(&restricted, fs::Permissions::from_mode(0o640)).expect("chmod");

    let first = run(script().arg("--patch-only").arg(&root));
    assert_ok(&first, "first --patch-only");
    let stdout = text(&first.stdout);
    for name in fixture_names() {
        let path = control_of(&root, &name);
        let want = fs::read(fixtures().join(format!("{name}.expected"))).expect("expected");
        let got = fs::read(&path).expect("patched");
        assert_eq!(text(&got), text(&want), "fixture {name} after --patch-only");
        let input = fs::read(fixtures().join(format!("{name}.control"))).expect("input");
        let verb = if input == want {
            "unchanged"
        } else {
            "patched"
        };
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("{verb} {}", path.display())),
            "expected `{verb} {}` in:\n{stdout}",
            path.display()
        );
    }
    assert_eq!(
        fs::metadata(&restricted)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o640,
        "permissions kept"
    );

    let before: BTreeMap<String, Vec<u8>> = fixture_names()
        .into_iter()
        .map(|n| {
            let bytes = fs::read(control_of(&root, &n)).expect("read");
            (n, bytes)
        })
        .collect();
    let second = run(script().arg("--patch-only").arg(&root));
    assert_ok(&second, "second --patch-only");
    let stdout = text(&second.stdout);
    assert_eq!(
        stdout.lines().count(),
        before.len(),
        "one line per file:\n{stdout}"
    );
    assert!(
        stdout.lines().all(|l| l.starts_with("unchanged ")),
        "second run changed something:\n{stdout}"
    );
    for (name, bytes) in before {
        assert_eq!(
            fs::read(control_of(&root, &name)).expect("read"),
            bytes,
            "fixture {name} changed on the second run"
        );
    }
}

#[test]
fn patch_only_touches_only_deb_package_control_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let fuse = "Package: p\nDepends: fuse\n";
    let targets = ["deb/p/control", "nested/deep/deb/q/control"];
    let bystanders = [
        "debian/control",
        "deb/control",
        "deb/p/extra/control",
        "deb/p/control.in",
        "rpm/p/control",
    ];
    for rel in targets.iter().chain(&bystanders) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, fuse).expect("write");
    }
    let output = run(script().arg("--patch-only").arg(root));
    assert_ok(&output, "--patch-only");
    for rel in targets {
        assert_eq!(
            fs::read_to_string(root.join(rel)).expect("read"),
            "Package: p\nDepends: fuse3\n",
            "{rel} should be patched"
        );
    }
    for rel in bystanders {
        assert_eq!(
            fs::read_to_string(root.join(rel)).expect("read"),
            fuse,
            "{rel} is not a deb/<package>/control file and must stay"
        );
    }
}

#[test]
fn patch_only_without_control_files_fails_saying_what_it_expected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(tmp.path().join("deb/p")).expect("mkdir");
    fs::write(tmp.path().join("deb/p/rules"), "#!/usr/bin/make -f\n").expect("write");
    let output = run(script().arg("--patch-only").arg(tmp.path()));
    assert!(!output.status.success(), "must fail: {output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error: no control files under")
            && stderr.contains("deb/<package>/control"),
        "unclear message:\n{stderr}"
    );
    assert!(stderr.contains("help: "), "no help line:\n{stderr}");
}

#[test]
fn patch_only_refuses_files_it_cannot_bring_into_shape_and_leaves_them_alone() {
    let cases = [
        ("source-only", "no binary package paragraph"),
        ("malformed", "line 4: expected a `Name: value` field"),
    ];
    for (name, message) in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("deb").join(name).join("control");
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let input = fs::read(fixtures().join(format!("fail/{name}.control"))).expect("fixture");
        fs::write(&path, &input).expect("write");
        // A good file next to it is still patched: each file stands on its own.
        let good = tmp.path().join("deb/good/control");
        fs::create_dir_all(good.parent().expect("parent")).expect("mkdir");
        fs::write(&good, "Package: good\nDepends: fuse\n").expect("write");

        let output = run(script().arg("--patch-only").arg(tmp.path()));
        assert_eq!(output.status.code(), Some(1), "{name}: {output:?}");
        let stderr = text(&output.stderr);
        let line = format!("error: {}: {message}", path.display());
        assert!(
            stderr.contains(&line),
            "{name}: expected `{line}` in:\n{stderr}"
        );
        assert_eq!(fs::read(&path).expect("read"), input, "{name} was modified");
        assert_eq!(
            fs::read_to_string(&good).expect("read"),
            "Package: good\nDepends: fuse3\n"
        );
    }
}

#[test]
fn script_usage_errors_are_one_line_with_help() {
    let help = run(script().arg("--help"));
    assert_ok(&help, "--help");
    let usage = text(&help.stdout);
    for word in [
        "--patch-only DIR",
        "--verify-deb",
        "--repo",
        "--branch",
        "--suffix",
        "CAI",
    ] {
        assert!(
            usage.contains(word),
            "--help does not mention {word}:\n{usage}"
        );
    }

    let cases: &[(&[&str], i32, &str)] = &[
        (&["--bogus"], 2, "error: unknown argument --bogus"),
        (&["--patch-only"], 2, "error: --patch-only needs a value"),
        (
            &["--verify-deb"],
            2,
            "error: --verify-deb needs at least one .deb",
        ),
        (
            &["--patch-only", "/nonexistent/containai"],
            1,
            "error: /nonexistent/containai is not a directory",
        ),
        (
            &["--suffix", "+bad suffix"],
            2,
            "has characters a Debian version cannot hold",
        ),
    ];
    for (args, code, message) in cases {
        let output = run(script().args(*args));
        assert_eq!(output.status.code(), Some(*code), "{args:?}: {output:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in:\n{stderr}"
        );
        assert!(
            stderr.contains("help: "),
            "{args:?}: no help line:\n{stderr}"
        );
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let output = run(script()
        .env("CAI", "/nonexistent/cai")
        .arg("--patch-only")
        .arg(tmp.path()));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("error: CAI is set to /nonexistent/cai"),
        "{output:?}"
    );
}

// --- packages -------------------------------------------------------------------------------

/// Fails (never skips) when dpkg-deb is missing, naming what to install.
fn require_dpkg_deb() {
    let found = Command::new("dpkg-deb").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "dpkg-deb is required by these tests and was not found: apt-get install dpkg-dev"
    );
}

/// Paragraphs of a control file as (field name, raw value with continuation lines) lists.
/// Written independently of the code under test, so it checks that code rather than echoing it.
fn paragraphs(control: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in control.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            let (_, value) = current.last_mut().expect("continuation after a field");
            value.push('\n');
            value.push_str(line);
        } else {
            let (name, value) = line.split_once(':').expect("a field");
            current.push((name.to_string(), value.trim_start().to_string()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn field<'a>(paragraph: &'a [(String, String)], name: &str) -> Option<&'a str> {
    paragraph
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What the build's substitution step would leave of a Depends value: one line, without the
/// `${...}` variables (they expand to nothing here).
fn built_depends(raw: &str) -> String {
    raw.split(',')
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|r| !r.is_empty() && !r.starts_with("${"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds a minimal package and returns its path.
fn build_deb(dir: &Path, package: &str, depends: &str, description: &str) -> PathBuf {
    let root = dir.join(format!("{package}-root"));
    fs::create_dir_all(root.join("DEBIAN")).expect("mkdir DEBIAN");
    let control = format!(
        "Package: {package}\nVersion: 1.0+containai.test\nArchitecture: all\n\
         Maintainer: ContainAI Tests <tests@containai.invalid>\nDepends: {depends}\n\
         Description: {description}\n"
    );
    fs::write(root.join("DEBIAN/control"), control).expect("write DEBIAN/control");
    let deb = dir.join(format!("{package}.deb"));
    let output = run(Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg("--build")
        .arg(&root)
        .arg(&deb));
    assert_ok(&output, &format!("dpkg-deb --build {package}"));
    deb
}

fn deb_depends(deb: &Path) -> String {
    let output = run(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Depends"));
    assert_ok(&output, "dpkg-deb -f Depends");
    text(&output.stdout).trim().to_string()
}

/// The package name an alternative starts with.
fn name_of(alternative: &str) -> &str {
    let alternative = alternative.trim();
    let end = alternative
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .unwrap_or(alternative.len());
    &alternative[..end]
}

/// Relation by relation, on exact names: `fuse` nowhere, `fuse3` as a relation of its own.
fn depends_is_fuse3_only(depends: &str) -> bool {
    let relations: Vec<&str> = depends.split(',').collect();
    let no_fuse = relations
        .iter()
        .flat_map(|r| r.split('|'))
        .all(|a| name_of(a) != "fuse");
    let fuse3 = relations
        .iter()
        .any(|r| !r.contains('|') && name_of(r) == "fuse3");
    no_fuse && fuse3
}

#[test]
fn packages_built_from_patched_fixtures_depend_on_fuse3_and_not_fuse() {
    require_dpkg_deb();
    let (tmp, root) = fixture_tree();
    assert_ok(
        &run(script().arg("--patch-only").arg(&root)),
        "--patch-only",
    );
    let debs_dir = tmp.path().join("debs");
    fs::create_dir_all(&debs_dir).expect("mkdir");
    let mut debs = Vec::new();
    for name in fixture_names() {
        let control = fs::read_to_string(control_of(&root, &name)).expect("read");
        let binaries: Vec<_> = paragraphs(&control)
            .into_iter()
            .filter(|p| field(p, "Package").is_some())
            .collect();
        assert!(!binaries.is_empty(), "{name} has no binary paragraph");
        for paragraph in binaries {
            let package = field(&paragraph, "Package").expect("Package").trim();
            let depends = built_depends(field(&paragraph, "Depends").expect("Depends added"));
            let description = field(&paragraph, "Description").unwrap_or("fixture package");
            let deb = build_deb(&debs_dir, package, &depends, description);
            let built = deb_depends(&deb);
            assert!(
                depends_is_fuse3_only(&built),
                "{name}/{package}: dpkg-deb -f Depends gave {built:?}"
            );
            debs.push(deb);
        }
    }
    // The script's own check, which the workflow runs on the real package, agrees.
    let output = run(script().arg("--verify-deb").args(&debs));
    assert_ok(&output, "--verify-deb on patched packages");
    assert_eq!(text(&output.stdout).lines().count(), debs.len());
}

#[test]
fn deb_check_is_exact_about_fuse_and_fuse3() {
    require_dpkg_deb();
    let tmp = tempfile::tempdir().expect("tempdir");
    // (Depends, passes)
    let cases: &[(&str, bool)] = &[
        ("fuse3", true),
        ("rsync, fuse3 (>= 3.10), fuse-overlayfs, libfuse2", true),
        ("fuse3:any, iptables", true),
        ("fuse, fuse3", false),
        ("rsync, fuse (>= 2.9), fuse3", false),
        ("fuse3 | fuse", false),
        ("fuse:any, fuse3", false),
        ("rsync, fuse-overlayfs, libfuse3-3", false),
        ("rsync, fuse3 | fuse-t", false),
        ("rsync", false),
    ];
    for (i, (depends, passes)) in cases.iter().enumerate() {
        let deb = build_deb(tmp.path(), &format!("case{i}"), depends, "check case");
        assert_eq!(
            depends_is_fuse3_only(&deb_depends(&deb)),
            *passes,
            "test oracle on {depends:?}"
        );
        let output = run(script().arg("--verify-deb").arg(&deb));
        assert_eq!(
            output.status.success(),
            *passes,
            "--verify-deb on {depends:?}: {output:?}"
        );
        if !passes {
            let stderr = text(&output.stderr);
            assert!(
                stderr.starts_with(&format!("error: {}: Depends still ", deb.display())),
                "{depends:?}: {stderr}"
            );
        }
    }
}

// --- the full build, offline -----------------------------------------------------------------

/// Stands in for the packaging's `deb/Makefile`: `generic` packages whatever `sysbox-ce/control`
/// says at that moment, with the version read through `../sources/sysbox`, as the real one does.
const FAKE_MAKEFILE: &str = "clean:\n\trm -rf build\n\ngeneric:\n\tbash ./fake-build.sh\n";

const FAKE_BUILD: &str = r#"set -euo pipefail
version=$(tr -d '[:space:]' < ../sources/sysbox/VERSION)
depends=$(awk '/^Package:/ { bin = 1 }
  bin && /^Depends:/ { on = 1; sub(/^Depends:/, ""); print; next }
  on && /^[ \t]/ { print; next }
  { on = 0 }' sysbox-ce/control | tr '\n\t' '  ' | sed -E 's/\$\{[^}]*\},?//g; s/  +/ /g; s/^ //; s/ $//')
root=build/amd64/generic/root
mkdir -p "$root/DEBIAN"
printf 'Package: sysbox-ce\nVersion: %s-0.linux\nArchitecture: all\nMaintainer: ContainAI Tests <tests@containai.invalid>\nDepends: %s\nDescription: fake build\n' "$version" "$depends" > "$root/DEBIAN/control"
dpkg-deb --root-owner-group --build "$root" "build/amd64/generic/sysbox-ce_${version}-0.linux_all.deb" >/dev/null
"#;

/// A sysbox checkout with its packaging submodule, a HOME with a git identity, and a PATH whose
/// `docker` only answers `docker info`.
struct FakeSysbox {
    tmp: TempDir,
}

impl FakeSysbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("sysbox");
        let deb = src.join("sysbox-pkgr/deb");
        fs::create_dir_all(deb.join("sysbox-ce")).expect("mkdir");
        fs::copy(
            fixtures().join("sysbox-ce.control"),
            deb.join("sysbox-ce/control"),
        )
        .expect("copy control");
        fs::write(deb.join("Makefile"), FAKE_MAKEFILE).expect("Makefile");
        fs::write(deb.join("fake-build.sh"), FAKE_BUILD).expect("fake-build.sh");
        fs::write(src.join("VERSION"), "0.6.7\n").expect("VERSION");
        fs::write(
            src.join("CHANGELOG.md"),
            "# Changelog\n\n## [0.6.7] - 2025-01-01\n### Fixed\n * Something.\n",
        )
        .expect("CHANGELOG.md");
        fs::create_dir_all(tmp.path().join("home")).expect("mkdir home");
        fs::write(
            tmp.path().join("home/.gitconfig"),
            "[user]\n\tname = ContainAI Tests\n\temail = tests@containai.invalid\n",
        )
        .expect(".gitconfig");
        let bin = tmp.path().join("bin");
        fs::create_dir_all(&bin).expect("mkdir bin");
        fs::write(
            bin.join("docker"),
            "#!/bin/sh\n[ \"$1\" = info ] && exit 0\necho \"fake docker: $*\" >&2\nexit 1\n",
        )
        .expect("docker");
        fs::set_permissions(bin.join("docker"), fs::Permissions::from_mode(0o755)).expect("chmod");
        FakeSysbox { tmp }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn build(&self) -> Command {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = script();
        command
            .env("PATH", path)
            .env("HOME", self.path("home"))
            .arg("--source")
            .arg(self.path("sysbox"))
            .arg("--out")
            .arg(self.path("out"))
            .arg("--suffix")
            .arg("+containai.20260101");
        command
    }
}

#[test]
fn full_build_patches_before_make_stamps_the_version_and_checks_the_package() {
    require_dpkg_deb();
    let fake = FakeSysbox::new();
    for round in ["first", "second"] {
        let output = run(&mut fake.build());
        assert_ok(&output, &format!("{round} build"));
        assert_eq!(
            fs::read_to_string(fake.path("sysbox/sysbox-pkgr/deb/sysbox-ce/control"))
                .expect("control"),
            fs::read_to_string(fixtures().join("sysbox-ce.expected")).expect("expected"),
            "{round} build: control patched"
        );
        // A rebuild of the same checkout must not stack suffixes or changelog entries.
        assert_eq!(
            fs::read_to_string(fake.path("sysbox/VERSION")).expect("VERSION"),
            "0.6.7+containai.20260101\n",
            "{round} build: VERSION"
        );
        let changelog = fs::read_to_string(fake.path("sysbox/CHANGELOG.md")).expect("changelog");
        assert_eq!(
            changelog
                .matches("## [0.6.7+containai.20260101] - unreleased")
                .count(),
            1,
            "{round} build: one unreleased entry on top:\n{changelog}"
        );
        let first_entry = changelog.lines().find(|l| l.starts_with("## "));
        assert_eq!(
            first_entry,
            Some("## [0.6.7+containai.20260101] - unreleased")
        );
        let deb = fake.path("out/sysbox-ce_0.6.7+containai.20260101-0.linux_all.deb");
        assert!(deb.is_file(), "{round} build: no {}", deb.display());
        let depends = deb_depends(&deb);
        assert_eq!(
            depends, "debconf, jq, lsb-release, rsync, iptables, fuse3",
            "{round} build"
        );
        assert!(
            text(&output.stdout).contains(&format!("ok {}: Depends: {depends}", deb.display())),
            "{round} build: the package check did not run:\n{}",
            text(&output.stdout)
        );
    }
}

#[test]
fn full_build_stops_early_with_a_next_step() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "no git identity",
            "home/.gitconfig",
            "/.gitconfig is missing, the package changelog takes its author from it",
        ),
        (
            "no packaging submodule",
            "sysbox/sysbox-pkgr",
            "the checkout lacks its sysbox-pkgr submodule",
        ),
    ];
    for (what, remove, message) in cases {
        let fake = FakeSysbox::new();
        let target = fake.path(remove);
        if target.is_dir() {
            fs::remove_dir_all(&target).expect("remove dir");
        } else {
            fs::remove_file(&target).expect("remove file");
        }
        let output = run(&mut fake.build());
        assert_eq!(output.status.code(), Some(1), "{what}: {output:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(message),
            "{what}: expected {message:?} in:\n{stderr}"
        );
        assert!(stderr.contains("help: "), "{what}: no help line:\n{stderr}");
    }
}

// --- workflows ------------------------------------------------------------------------------

fn workflow(name: &str) -> serde_norway::Value {
    let path = repo().join(".github/workflows").join(name);
    let text = fs::read_to_string(&path).expect("workflow exists");
    serde_norway::from_str::<serde_norway::Value>(&text).expect("workflow is valid YAML")
}

/// Every `run:` script of every step of every job, in order.
fn runs(workflow: &serde_norway::Value) -> Vec<String> {
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    jobs.values()
        .flat_map(|job| job["steps"].as_sequence().expect("steps").iter())
        .filter_map(|step| step["run"].as_str().map(str::to_string))
        .collect()
}

fn uses(workflow: &serde_norway::Value) -> Vec<String> {
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    jobs.values()
        .flat_map(|job| job["steps"].as_sequence().expect("steps").iter())
        .filter_map(|step| step["uses"].as_str().map(str::to_string))
        .collect()
}

/// The `on:` triggers, whichever way the parser reads the bare `on` key.
fn triggers(workflow: &serde_norway::Value) -> Vec<String> {
    let on = workflow
        .get("on")
        .or_else(|| workflow.get(serde_norway::Value::Bool(true)))
        .expect("on:");
    match on {
        serde_norway::Value::Mapping(m) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        serde_norway::Value::Sequence(s) => s
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        other => vec![other.as_str().unwrap_or_default().to_string()],
    }
}

#[test]
fn build_workflow_builds_with_the_script_on_both_architectures_and_checks_the_package() {
    let wf = workflow("build-sysbox.yml");
    let runs = runs(&wf);
    let all = runs.join("\n");
    assert!(
        runs.iter()
            .any(|r| r.lines().any(|l| l.trim() == "./scripts/build-sysbox.sh")),
        "no step builds with ./scripts/build-sysbox.sh:\n{all}"
    );
    for needle in [
        "dpkg-deb -f",
        "scripts/build-sysbox.sh --verify-deb",
        "apt-get install -y \"./$deb\"",
        "command -v fusermount3",
    ] {
        assert!(all.contains(needle), "no step runs {needle:?}:\n{all}");
    }
    assert!(
        uses(&wf)
            .iter()
            .any(|u| u.starts_with("actions/upload-artifact@")),
        "the package is not uploaded"
    );

    let build = &wf["jobs"]["build"];
    assert_eq!(build["runs-on"].as_str(), Some("${{ matrix.runner }}"));
    let include = build["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("matrix include");
    let pairs: Vec<(&str, &str)> = include
        .iter()
        .map(|e| {
            (
                e["arch"].as_str().expect("arch"),
                e["runner"].as_str().expect("runner"),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [("amd64", "ubuntu-24.04"), ("arm64", "ubuntu-24.04-arm")]
    );
}

#[test]
fn release_workflow_pins_the_manifest_checksums_before_building() {
    let wf = workflow("release.yml");
    let runs = runs(&wf);
    let pin = runs
        .iter()
        .position(|r| {
            r.lines()
                .any(|l| l.trim() == "./scripts/pin-release.sh stdlib/release.toml")
        })
        .unwrap_or_else(|| panic!("no step runs ./scripts/pin-release.sh: {runs:?}"));
    let build = runs
        .iter()
        .position(|r| r.contains("cargo build --release --locked"))
        .unwrap_or_else(|| panic!("no step builds cai: {runs:?}"));
    assert!(
        pin < build,
        "the manifest is pinned after cai embedded it: {runs:?}"
    );
    assert!(
        runs[build + 1..]
            .iter()
            .any(|r| r.contains("release::target()")),
        "the built cai is not checked for pinned checksums: {runs:?}"
    );
    assert!(
        triggers(&wf).iter().any(|t| t == "push"),
        "release does not run on tags"
    );
}

// --- release manifest pinning -----------------------------------------------------------------

/// The bundled manifest re-pointed at `file://` artifacts under `dir`, with those artifacts
/// written; returns the manifest path and each artifact's expected sha256 by URL.
fn file_manifest(dir: &Path) -> (PathBuf, BTreeMap<String, String>) {
    use sha2::Digest;
    let gh = format!("file://{}/gh", dir.display());
    let docker = format!("file://{}/docker", dir.display());
    let text = containai::plan::release::BUNDLED
        .replace(
            "https://github.com/novotnyllc/ContainAI/releases/download",
            &gh,
        )
        .replace("https://download.docker.com/linux/static/stable", &docker);
    let manifest = containai::plan::release::Manifest::parse(&text).expect("re-pointed manifest");
    let mut sums = BTreeMap::new();
    let assets = manifest
        .sysbox
        .assets
        .values()
        .chain(manifest.dockerd.assets.values());
    for (i, asset) in assets.enumerate() {
        let url = asset.url.as_str();
        let path = PathBuf::from(url.strip_prefix("file://").unwrap());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let content = format!("artifact {i} at {url}\n");
        fs::write(&path, &content).unwrap();
        sums.insert(url.to_string(), hex::encode(sha2::Sha256::digest(content)));
    }
    let path = dir.join("release.toml");
    fs::write(&path, text).unwrap();
    (path, sums)
}

fn pin(manifest: &Path) -> Output {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "curl is required for this test; install with: apt-get install curl"
    );
    run(Command::new("bash")
        .arg(repo().join("scripts/pin-release.sh"))
        .arg(manifest))
}

#[test]
fn pin_release_writes_each_artifacts_sha256_and_a_second_run_changes_nothing() {
    let tmp = TempDir::new().unwrap();
    let (manifest, sums) = file_manifest(tmp.path());
    let before = fs::read_to_string(&manifest).unwrap();
    assert_ok(&pin(&manifest), "pin-release.sh");
    let pinned = fs::read_to_string(&manifest).unwrap();
    let parsed = containai::plan::release::Manifest::parse(&pinned).expect("pinned manifest");
    let assets: Vec<_> = parsed
        .sysbox
        .assets
        .values()
        .chain(parsed.dockerd.assets.values())
        .collect();
    assert_eq!(assets.len(), 4);
    for asset in assets {
        let want = &sums[asset.url.as_str()];
        assert_eq!(
            asset.sha256.as_ref().map(|s| s.as_str()),
            Some(want.as_str()),
            "{}",
            asset.url
        );
    }
    // Only the sha256 lines changed; comments and everything else are as they were.
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(pinned.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(before.lines().count(), pinned.lines().count());
    assert_eq!(changed.len(), 4, "{changed:?}");
    assert!(
        changed
            .iter()
            .all(|(a, b)| *a == "sha256 = \"\"" && b.starts_with("sha256 = \"")),
        "{changed:?}"
    );
    assert_ok(&pin(&manifest), "pin-release.sh, second run");
    assert_eq!(fs::read_to_string(&manifest).unwrap(), pinned);
}

#[test]
fn pin_release_changes_nothing_when_an_artifact_cannot_be_fetched() {
    let tmp = TempDir::new().unwrap();
    let (manifest, sums) = file_manifest(tmp.path());
    let before = fs::read_to_string(&manifest).unwrap();
    let last = sums.keys().last().unwrap();
    fs::remove_file(last.strip_prefix("file://").unwrap()).unwrap();
    let out = pin(&manifest);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("error: cannot download {last}")),
        "{stderr}"
    );
    assert!(stderr.contains("help: "), "{stderr}");
    assert_eq!(fs::read_to_string(&manifest).unwrap(), before);

    // A table without a url cannot be pinned: refused, nothing changed.
    let tmp = TempDir::new().unwrap();
    let (manifest, _) = file_manifest(tmp.path());
    let broken = fs::read_to_string(&manifest)
        .unwrap()
        .replacen("url = ", "# url = ", 1);
    fs::write(&manifest, &broken).unwrap();
    let out = pin(&manifest);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("4 asset tables but 3 url lines"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&manifest).unwrap(), broken);
}

#[test]
fn ci_workflow_runs_the_readme_test_command_format_and_lints() {
    let wf = workflow("ci.yml");
    let triggers = triggers(&wf);
    for event in ["push", "pull_request"] {
        assert!(
            triggers.iter().any(|t| t == event),
            "ci does not run on {event}"
        );
    }
    // CI runs the one local command, and that command checks format and lints before testing.
    let runs = runs(&wf);
    assert_eq!(
        runs.iter().filter(|r| r.trim() == "./.ci/run").count(),
        1,
        "expected one step running ./.ci/run: {runs:?}"
    );
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(ci.contains("./scripts/test.sh"), "{ci}");
    let test_sh = std::fs::read_to_string(repo().join("scripts/test.sh")).unwrap();
    for command in [
        "cargo fmt --check",
        "cargo clippy --all-targets --locked -- -D warnings",
        "cargo test --locked",
    ] {
        assert!(
            test_sh.contains(command),
            "scripts/test.sh does not run {command:?}"
        );
    }
}
