//! Unit files end to end: every unit `cai` renders passes `systemd-analyze verify` in a staged
//! root; site templates are used only when trusted and only when they render into an acceptable
//! unit; a script can name a unit but never supply its text; a dry run shows the diff and
//! changes nothing; installing an identical unit (also one differing only in trailing newlines,
//! P18) does nothing.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{INSTALL_UNITS, Run, TestHost};

const ENGINE: &str = "containai-docker.service";

/// Prints the rendered unit named in ARGS, then its diff after a marker line.
const RENDER: &str = r#"//! version: 1.0.0
//! api: 1.1
let name = run::args()[0];
print(units::render(name));
print("=== diff");
print(units::diff(name));
"#;

/// The first line of stderr, which must say what is wrong on its own.
fn first_line(stderr: &str) -> &str {
    stderr.lines().next().unwrap_or("")
}

fn unit_file(host: &TestHost, name: &str) -> PathBuf {
    host.root().join("etc/systemd/system").join(name)
}

fn site_template(host: &TestHost, name: &str) -> PathBuf {
    host.root().join("etc/containai/units").join(name)
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn bundled_engine_template() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/units/containai-docker.service"),
    )
    .unwrap()
}

/// Every bundled unit template's name.
fn bundled_units() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/units");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    names
}

/// Runs a script file with ARGS, live unless `extra` says `--dry-run`.
fn run_script(
    host: &TestHost,
    script: &str,
    extra: &[&str],
    args: &[&str],
) -> (i32, String, String) {
    Run::script(host, "units.rhai", script)
        .args(extra)
        .script_args(args)
        .run()
}

/// The unit as `cai` renders it on this host (read-only, so it may run live).
fn rendered(host: &TestHost, name: &str) -> (String, String) {
    let (code, stdout, stderr) = run_script(host, RENDER, &[], &[name]);
    assert_eq!(code, 0, "{stderr}");
    let (text, diff) = stdout
        .split_once("\n=== diff\n")
        .unwrap_or_else(|| panic!("no marker in {stdout}"));
    (
        text.to_string(),
        diff.strip_suffix('\n').unwrap_or(diff).to_string(),
    )
}

fn journal_lines(host: &TestHost) -> usize {
    std::fs::read_to_string(host.root().join("var/lib/containai/actions.jsonl"))
        .map(|j| j.lines().count())
        .unwrap_or(0)
}

/// A stub executable that does nothing, for systemd-analyze to find.
fn stub(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    write_mode(path, "#!/bin/sh\nexit 0\n", 0o755);
}

/// `systemd-analyze verify` of one unit in `root`; fails (never skips) without systemd.
fn verify(root: &Path, unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg(format!("--root={}", root.display()))
        .args(["--man=no", "--generators=no", "--recursive-errors=no", "verify"])
        .arg(unit)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze is required for this test ({e}); install with: apt-get install systemd")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let warned = text.lines().any(|l| {
        l.contains("Unknown key") || l.contains("Unknown lvalue") || l.contains("ignoring")
    });
    (out.status.success() && !warned, text)
}

/// Stages what the unit refers to under `root`: stub executables for every Exec*= command and
/// stub sysbox units, so `Requires=`/`PartOf=`/`After=` resolve.
fn stage(root: &Path, unit_text: &str) {
    for line in unit_text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim().starts_with("Exec") {
            let command = value.trim().trim_start_matches(['-', '@', ':', '+', '!']);
            let program = command.split_whitespace().next().unwrap();
            stub(&root.join(program.trim_start_matches('/')));
        }
    }
    stub(&root.join("usr/bin/sysbox-runc"));
    for name in ["sysbox-mgr.service", "sysbox-fs.service"] {
        write_mode(
            &root.join("etc/systemd/system").join(name),
            "[Unit]\nDescription=stub\n\n[Service]\nExecStart=/usr/bin/sysbox-runc\n",
            0o644,
        );
    }
}

#[test]
fn every_unit_cai_renders_passes_systemd_analyze_verify() {
    let host = TestHost::new();
    // Non-default values, so the rendered unit shows they came from config.
    write_mode(
        &host.root().join("etc/containai/config.toml"),
        "socket = \"/run/cai-test/engine.sock\"\ndata_root = \"/srv/cai-test\"\nstop_timeout_secs = 45\n",
        0o644,
    );
    let names = bundled_units();
    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run_script(&host, INSTALL_UNITS, &[], &args);
    assert_eq!(code, 0, "{stderr}");
    for name in &names {
        assert!(stdout.contains(&format!("{name} changed true")), "{stdout}");
        let path = unit_file(&host, name);
        let text = std::fs::read_to_string(&path).unwrap();
        stage(host.root(), &text);
        let (ok, output) = verify(host.root(), &path);
        assert!(
            ok,
            "systemd-analyze verify {name} failed:\n{output}\n--- unit ---\n{text}"
        );
    }
    let engine = std::fs::read_to_string(unit_file(&host, ENGINE)).unwrap();
    for want in [
        "ExecStart=/opt/containai/bin/dockerd --config-file=/etc/containai/docker/daemon.json\n",
        "ExecStop=/usr/local/bin/cai system stop-containers --timeout=45",
        "TimeoutStopSec=105",
    ] {
        assert!(engine.contains(want), "{want} missing from\n{engine}");
    }
}

#[test]
fn systemd_analyze_flags_the_directives_cai_refuses() {
    // The verify check above has teeth: the directive the old shell unit relied on is reported.
    let host = TestHost::new();
    let text = "[Unit]\nDescription=x\n\n[Service]\nExecStart=/opt/containai/bin/dockerd\nExecStopPre=/usr/local/bin/cai\n";
    let path = unit_file(&host, "containai-bad.service");
    write_mode(&path, text, 0o644);
    stage(host.root(), text);
    let (ok, output) = verify(host.root(), &path);
    assert!(!ok, "{output}");
    assert!(output.contains("Unknown key"), "{output}");
}

#[test]
fn a_trusted_site_template_is_used() {
    let host = TestHost::new();
    let template = bundled_engine_template().replace(
        "Description=ContainAI Docker engine (sysbox runtime)",
        "Description=site engine",
    );
    assert!(template.contains("Description=site engine"));
    write_mode(&site_template(&host, ENGINE), &template, 0o644);

    let (code, _, stderr) = run_script(&host, INSTALL_UNITS, &[], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    let unit = std::fs::read_to_string(unit_file(&host, ENGINE)).unwrap();
    assert!(unit.contains("Description=site engine"), "{unit}");
    assert!(
        unit.contains("ExecStart=/opt/containai/bin/dockerd "),
        "{unit}"
    );

    let (code, stdout, stderr) = host.run(&["scripts", "list"]);
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("units/containai-docker.service"))
        .unwrap_or_else(|| panic!("no unit line in {stdout}"));
    assert!(line.contains(" site "), "{line}");
    assert!(
        line.ends_with(&site_template(&host, ENGINE).display().to_string()),
        "{line}"
    );
    let (code, stdout, _) = host.run(&["scripts", "show", "units/containai-docker.service"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, template);
    let (code, stdout, stderr) = host.run(&["scripts", "check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("(site, unit template)"), "{stdout}");
}

#[test]
fn the_bundled_template_is_listed_and_shown() {
    let host = TestHost::new();
    let (code, stdout, stderr) = host.run(&["scripts", "list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("units/containai-docker.service") && l.contains(" bundled ")),
        "{stdout}"
    );
    let (code, stdout, _) = host.run(&["scripts", "show", "units/containai-docker.service"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, bundled_engine_template());
    let (code, _, stderr) = host.run(&["scripts", "show", "units/containai-nope.service"]);
    assert_eq!(code, 1);
    assert!(
        first_line(&stderr).contains("no unit template named \"containai-nope.service\""),
        "{stderr}"
    );
}

#[test]
fn a_world_writable_site_template_is_refused_and_nothing_is_written() {
    let host = TestHost::new();
    let site = site_template(&host, ENGINE);
    write_mode(&site, &bundled_engine_template(), 0o666);
    let before = host.snapshot_files();

    let (code, stdout, stderr) = run_script(&host, INSTALL_UNITS, &[], &[ENGINE]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let first = first_line(&stderr);
    assert!(first.starts_with("error: "), "{stderr}");
    assert!(
        first.contains(&format!("refusing {}", site.display()))
            && first.contains("group- or world-writable (mode 666)"),
        "{stderr}"
    );
    assert!(!unit_file(&host, ENGINE).exists());
    assert_eq!(
        host.snapshot_files(),
        before,
        "a refused template changed the host"
    );

    let (code, _, stderr) = host.run(&["scripts", "show", "units/containai-docker.service"]);
    assert_eq!(code, 1);
    assert!(first_line(&stderr).contains("world-writable"), "{stderr}");
    let (code, _, stderr) = host.run(&["scripts", "list"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("error: units/containai-docker.service: refusing"),
        "{stderr}"
    );
}

#[test]
fn a_site_template_that_does_not_render_cleanly_is_refused_naming_the_line() {
    let bundled = bundled_engine_template();
    let exec_stop_line = bundled
        .lines()
        .position(|l| l.starts_with("ExecStop="))
        .unwrap()
        + 1;
    let cases = [
        (
            bundled.replace(
                "--config-file={{daemon_config}}",
                "--config-file={{config_dir}}",
            ),
            bundled
                .lines()
                .position(|l| l.starts_with("ExecStart="))
                .unwrap()
                + 1,
            "unknown placeholder {{config_dir}}",
        ),
        (
            bundled.replace("ExecStop=", "ExecStopPre="),
            exec_stop_line,
            "ExecStopPre= does not exist for services",
        ),
        (
            bundled.replace(
                "--timeout={{stop_timeout_secs}}",
                "--timeout={{stop_timeout_secs",
            ),
            exec_stop_line,
            "leftover `{{`",
        ),
    ];
    for (template, line, problem) in cases {
        let host = TestHost::new();
        let site = site_template(&host, ENGINE);
        write_mode(&site, &template, 0o644);
        let before = host.snapshot_files();
        let want = format!("unit template {} line {line}: {problem}", site.display());

        let (code, _, stderr) = run_script(&host, INSTALL_UNITS, &[], &[ENGINE]);
        assert_eq!(code, 1, "{stderr}");
        assert!(first_line(&stderr).contains(&want), "want {want}\n{stderr}");
        assert!(
            stderr.contains(&format!("help: fix {}", site.display())),
            "{stderr}"
        );
        assert_eq!(host.snapshot_files(), before);

        let (code, _, stderr) = run_script(&host, INSTALL_UNITS, &["--dry-run"], &[ENGINE]);
        assert_eq!(code, 1, "{stderr}");
        assert!(first_line(&stderr).contains(&want), "{stderr}");

        let (code, _, stderr) = host.run(&["scripts", "check"]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(&want), "{stderr}");
        let (code, _, stderr) = host.run(&["scripts", "check", site.to_str().unwrap()]);
        assert_eq!(code, 1, "{stderr}");
        assert!(first_line(&stderr).contains(&want), "{stderr}");
    }
}

#[test]
fn a_script_cannot_get_its_own_text_into_a_unit() {
    let host = TestHost::new();
    // No units:: primitive takes more than the unit's name.
    let (code, stdout, stderr) = host.run(&["scripts", "api", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let units: Vec<&serde_json::Value> = doc["primitives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["module"] == "units")
        .collect();
    assert!(units.iter().any(|p| p["name"] == "install"));
    for p in &units {
        let signature = p["signature"].as_str().unwrap();
        let params = signature
            .split_once('(')
            .unwrap()
            .1
            .split_once(')')
            .unwrap()
            .0;
        assert!(
            params.is_empty() || params == "name: string",
            "{signature} takes more than a unit name"
        );
    }

    let before = host.snapshot_files();
    for (call, want) in [
        (
            r#"units::write("containai-docker.service", "[Service]\nExecStart=/bin/sh -c evil\n")"#,
            "units:: has no primitive write",
        ),
        (
            r#"units::install("containai-docker.service", "[Service]\nExecStart=/bin/sh -c evil\n")"#,
            "units::install cannot be called with (string, string)",
        ),
    ] {
        let script = format!("//! version: 1.0.0\n//! api: 1.1\n{call};\n");
        let (code, _, stderr) = run_script(&host, &script, &[], &[]);
        assert_eq!(code, 1, "{call}: {stderr}");
        assert!(first_line(&stderr).contains(want), "{stderr}");
    }
    // Only ContainAI's own units, and only those with a template.
    for (name, want) in [
        ("ssh.service", "refusing to install unit ssh.service"),
        ("containai-evil.service", "no unit template named"),
        ("../containai-x.service", "invalid unit name"),
    ] {
        let (code, _, stderr) = run_script(&host, INSTALL_UNITS, &[], &[name]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(first_line(&stderr).contains(want), "{name}: {stderr}");
    }
    assert_eq!(host.snapshot_files(), before);
}

#[test]
fn dry_run_plan_shows_the_diff_and_changes_nothing() {
    let host = TestHost::new();
    write_mode(
        &unit_file(&host, ENGINE),
        "[Unit]\nDescription=old\n",
        0o644,
    );
    let before = host.snapshot_files();

    let (code, stdout, stderr) =
        run_script(&host, INSTALL_UNITS, &["--dry-run", "--json"], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("changed true"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let plan = doc["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 1, "{stdout}");
    assert_eq!(plan[0]["kind"], "units.install");
    assert_eq!(
        plan[0]["target"],
        unit_file(&host, ENGINE).display().to_string()
    );
    assert_eq!(plan[0]["details"]["replaces"], true);
    let diff = plan[0]["details"]["diff"].as_str().unwrap();
    let path = unit_file(&host, ENGINE).display().to_string();
    assert!(
        diff.starts_with(&format!("--- {path}\n+++ {path} (rendered)\n@@ ")),
        "{diff}"
    );
    assert!(diff.contains("\n-Description=old\n"), "{diff}");
    assert!(
        diff.contains(
            "\n+ExecStart=/opt/containai/bin/dockerd --config-file=/etc/containai/docker/daemon.json\n"
        ),
        "{diff}"
    );
    // units::diff gives scripts the same text.
    let (_, script_diff) = rendered(&host, ENGINE);
    assert_eq!(script_diff, diff);

    let (code, stdout, stderr) = run_script(&host, INSTALL_UNITS, &["--dry-run"], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("dry run: 1 planned action; nothing was changed"),
        "{stdout}"
    );
    assert!(stdout.contains("units.install"), "{stdout}");
    assert!(stdout.contains("\n        -Description=old\n"), "{stdout}");
    assert!(stdout.contains("\n        +Restart=always\n"), "{stdout}");
    assert!(!stdout.contains("diff="), "{stdout}");

    assert_eq!(host.snapshot_files(), before, "a dry run changed the host");
}

#[test]
fn a_second_install_of_an_identical_unit_is_a_no_op() {
    let host = TestHost::new();
    let (code, stdout, stderr) = run_script(&host, INSTALL_UNITS, &[], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("changed true"), "{stdout}");
    let (text, diff) = rendered(&host, ENGINE);
    assert_eq!(
        std::fs::read_to_string(unit_file(&host, ENGINE)).unwrap(),
        text
    );
    assert_eq!(diff, "");
    let meta = std::fs::metadata(unit_file(&host, ENGINE)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    assert_eq!(journal_lines(&host), 2, "one intent and one outcome");

    let before = host.snapshot_files();
    let (code, stdout, stderr) = run_script(&host, INSTALL_UNITS, &[], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("changed false"), "{stdout}");
    assert_eq!(journal_lines(&host), 2, "an unchanged unit was journalled");
    assert_eq!(host.snapshot_files(), before);

    let (code, stdout, stderr) = run_script(&host, INSTALL_UNITS, &["--dry-run"], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("dry run: no changes planned"), "{stdout}");
}

#[test]
fn p18_a_unit_equal_but_for_trailing_newlines_is_current() {
    let host = TestHost::new();
    let (text, _) = rendered(&host, ENGINE);
    let trimmed = text.trim_end_matches('\n');
    for on_disk in [trimmed.to_string(), format!("{trimmed}\n\n\n")] {
        write_mode(&unit_file(&host, ENGINE), &on_disk, 0o644);
        let before = host.snapshot_files();
        let (_, diff) = rendered(&host, ENGINE);
        assert_eq!(diff, "", "trailing newlines counted as a change");
        let (code, stdout, stderr) = run_script(&host, INSTALL_UNITS, &["--dry-run"], &[ENGINE]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("dry run: no changes planned"), "{stdout}");
        let (code, stdout, stderr) = run_script(&host, INSTALL_UNITS, &[], &[ENGINE]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("changed false"), "{stdout}");
        assert_eq!(host.snapshot_files(), before);
        assert_eq!(journal_lines(&host), 0);
    }
}

/// Prints `units::state` of the unit named in ARGS and `dockerd::config_state()`, one line each.
const STATE: &str = r#"//! version: 1.0.0
//! api: 1.7
let unit = units::state(run::args()[0]);
let config = dockerd::config_state();
print(`unit ${unit.state} ${unit.diff == ""}`);
print(`config ${config.state} ${config.diff == ""}`);
"#;

/// The state says "missing", "differs" or "current" itself, for the unit and the daemon
/// configuration alike; the diff is empty exactly when current, trailing newlines aside [P18].
#[test]
fn state_tells_missing_differs_and_current_apart() {
    let host = TestHost::new();
    let state = || {
        let (code, stdout, stderr) = run_script(&host, STATE, &[], &[ENGINE]);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    assert_eq!(state(), "unit missing false\nconfig missing false\n");

    let (text, _) = rendered(&host, ENGINE);
    write_mode(&unit_file(&host, ENGINE), "[Unit]\n", 0o644);
    let config = host.root().join("etc/containai/docker/daemon.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    write_mode(&config, "{}\n", 0o644);
    assert_eq!(state(), "unit differs false\nconfig differs false\n");

    write_mode(
        &unit_file(&host, ENGINE),
        &format!("{}\n\n", text.trim_end_matches('\n')),
        0o644,
    );
    let (code, _, stderr) = run_script(
        &host,
        "//! version: 1.0.0\n//! api: 1.5\ndockerd::install_config();\n0\n",
        &[],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(state(), "unit current true\nconfig current true\n");
}
