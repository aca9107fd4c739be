//! Every line `cai` prints is true and every `help:` line works when followed: failing `--json`
//! documents carry their reason, doctor says what the host lacks (systemd as init, root) and
//! advises in an order that works, lists and system errors read as an operator writes them, and
//! the command line meets what the ecosystem expects (man page, help, quiet pipes).

mod support;

use std::process::Stdio;

use support::{Dockerd, Run, TEST_IMAGE, TestHost};

const HEADER: &str = "//! version: 1.0.0\n//! api: 1.9\n";

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// No line reads `error: help: …`, and no system error keeps its `(os error N)`.
fn assert_operator_text(stderr: &str) {
    assert!(!stderr.contains("error: help:"), "{stderr}");
    assert!(!stderr.contains("(os error"), "{stderr}");
}

#[test]
fn every_failing_json_document_carries_its_reason() {
    let host = TestHost::new();

    // A script that logs its reason and advice, then fails without run::refuse.
    let (code, stdout, stderr) = Run::script(
        &host,
        "fails.rhai",
        &format!(
            "{HEADER}log::error(\"disk full on /var\");\nlog::error(\"help: free space, then run it again\");\nexit(3);\n"
        ),
    )
    .arg("--json")
    .run();
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(json(&stdout)["error"], "disk full on /var", "{stdout}");
    assert_eq!(json(&stdout)["exit_code"], 3);
    assert!(
        stderr.contains("error: disk full on /var\nhelp: free space, then run it again\n"),
        "{stderr}"
    );
    assert_operator_text(&stderr);

    // The advice after `; help: ` in one error line is a help line too.
    let (_, stdout, stderr) = Run::script(
        &host,
        "inline.rhai",
        &format!(
            "{HEADER}log::error(\"nothing was changed; help: cai update again\");\nexit(1);\n"
        ),
    )
    .arg("--json")
    .run();
    assert_eq!(json(&stdout)["error"], "nothing was changed", "{stdout}");
    assert!(
        stderr.contains("error: nothing was changed\nhelp: cai update again\n"),
        "{stderr}"
    );

    // Silent failure: at least which script ended with which code.
    let (code, stdout, _) = Run::script(&host, "silent.rhai", &format!("{HEADER}exit(4);\n"))
        .arg("--json")
        .run();
    assert_eq!(code, 4);
    let error = json(&stdout)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.ends_with("silent.rhai ended with exit code 4"),
        "{stdout}"
    );

    // The bundled update script's own failures (logged, then exit 1) carry their reason too.
    let (code, stdout, stderr) = host.run(&[
        "run",
        "update",
        "--dry-run",
        "--json",
        "--",
        "--stop-containers",
    ]);
    assert_eq!(code, 1, "{stderr}");
    let error = json(&stdout)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.starts_with(
            "update.rhai takes its options from cai update, not from arguments after --"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("\nhelp: cai update --check (or --stop-containers"),
        "{stderr}"
    );
    assert_operator_text(&stderr);

    // Refused before any script ran (root): still one document with the reason.
    let (code, stdout, stderr) = host.run_as_nobody(&["update", "--json"]);
    assert_eq!(code, 1, "{stderr}");
    let doc = json(&stdout);
    assert_eq!(
        doc["error"], "cai update needs root (it installs packages and restarts the engine)",
        "{stdout}"
    );
    assert_eq!(doc["mode"], "live");
    assert!(
        stderr.starts_with("error: cai update needs root"),
        "{stderr}"
    );

    // Success keeps `error: null`.
    let (code, stdout, _) = Run::script(&host, "fine.rhai", &format!("{HEADER}exit(0);\n"))
        .arg("--json")
        .run();
    assert_eq!(code, 0);
    assert!(json(&stdout)["error"].is_null(), "{stdout}");

    // doctor: an unknown check id, and failed checks, name themselves.
    let (code, stdout, stderr) = host.run(&["doctor", "--check", "nope", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(json(&stdout)["error"], "unknown check id nope");
    assert_eq!(
        json(&stdout)["refusal"]["help"],
        "cai doctor --list-checks shows every id"
    );
    assert!(
        stderr.contains(
            "error: unknown check id nope\nhelp: cai doctor --list-checks shows every id\n"
        ),
        "{stderr}"
    );
    assert_operator_text(&stderr);
    let (code, stdout, _) = host.run(&["doctor", "--check", "engine.socket", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(json(&stdout)["error"], "1 check(s) failed: engine.socket");

    // repair: the engine is not running, and its unit is not installed: install it first.
    let (code, stdout, stderr) = host.run(&[
        "doctor",
        "--repair",
        "--container",
        "nosuch",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, 1, "{stderr}");
    let doc = json(&stdout);
    let error = doc["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("the containai-docker engine is not running"),
        "{stdout}"
    );
    assert_eq!(
        doc["refusal"]["help"],
        "cai update installs the engine unit and starts the engine"
    );
    assert_operator_text(&stderr);
}

#[test]
fn doctor_checks_systemd_as_init_and_privileges() {
    let host = TestHost::new();
    let (code, stdout, _) = host.run(&["doctor", "--list-checks"]);
    assert_eq!(code, 0);
    for id in ["systemd.init", "privileges"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("{id} "))),
            "{stdout}"
        );
    }

    let check = |args: &[&str], id: &str| -> serde_json::Value {
        let (_, stdout, stderr) = if args.first() == Some(&"nobody") {
            host.run_as_nobody(&["doctor", "--check", id, "--json"])
        } else {
            host.run(&["doctor", "--check", id, "--json"])
        };
        let doc = json(&stdout);
        let found = doc["reports"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["checks"].as_array().cloned().unwrap_or_default())
            .find(|c| c["id"] == id);
        found.unwrap_or_else(|| panic!("no {id} in {stdout}\n{stderr}"))
    };

    // The test root is a host booted with systemd.
    assert_eq!(check(&[], "systemd.init")["status"], "ok");
    assert_eq!(check(&[], "privileges")["status"], "ok");
    let nobody = check(&["nobody"], "privileges");
    assert_eq!(nobody["status"], "warn", "{nobody}");
    assert!(
        nobody["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("engine.socket"),
        "{nobody}"
    );
    assert_eq!(nobody["remediation"], "sudo cai doctor");

    // Remediations in an order that works: no unit yet, so `cai update` first ...
    let socket = check(&[], "engine.socket");
    assert_eq!(socket["status"], "error");
    assert_eq!(
        socket["remediation"],
        "install and start the engine: cai update"
    );
    // ... `systemctl start` once the unit is installed.
    std::fs::write(
        host.root()
            .join("etc/systemd/system/containai-docker.service"),
        "[Unit]\n",
    )
    .unwrap();
    let socket = check(&[], "engine.socket");
    assert_eq!(
        socket["remediation"],
        "start the engine: systemctl start containai-docker.service"
    );

    // Without systemd as init neither works: say so.
    std::fs::remove_dir(host.root().join("run/systemd/system")).unwrap();
    let init = check(&[], "systemd.init");
    assert_eq!(init["status"], "error", "{init}");
    assert!(
        init["summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("systemd is not init (PID 1)"),
        "{init}"
    );
    let socket = check(&[], "engine.socket");
    assert_eq!(
        socket["remediation"],
        "the engine runs as a systemd unit: see the systemd.init check"
    );
}

/// The advice for a container that is not there names the ContainAI engine (a plain
/// `docker ps -a` asks the default one), and lists read `a, b`.
#[test]
fn repair_of_an_unknown_container_names_the_containai_engine_and_lists_read_plainly() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    engine.run_agent("agent-1");
    engine.run_agent("agent-2");
    engine.docker(&["tag", TEST_IMAGE, "containai:latest"]);
    engine.run("legacy-1", &[], "containai:latest", &["sleep", "600"]);

    let (code, _, stderr) = host.run(&["doctor", "--repair", "--container", "nosuch", "--dry-run"]);
    assert_eq!(code, 1, "{stderr}");
    let help = stderr
        .lines()
        .find(|l| l.starts_with("help: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        help.starts_with("help: docker -H unix://")
            && help.contains("containai-docker.sock ps -a lists the ContainAI engine's containers"),
        "{help}"
    );
    assert!(
        help.ends_with("labelled: agent-1, agent-2 (cai doctor --repair --all repairs every one)"),
        "{help}"
    );
    assert!(!stderr.contains("[\""), "{stderr}");
    assert_operator_text(&stderr);

    let (_, stdout, _) = host.run(&["doctor", "--check", "containers.legacy"]);
    assert!(
        stdout.contains("without the containai.managed label: legacy-1\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("[\""), "{stdout}");
}

#[test]
fn system_errors_read_without_os_error_numbers() {
    let out = std::process::Command::new(support::cai_bin())
        .args(["--root", "/nonexistent-root", "doctor"])
        .output()
        .unwrap();
    let (code, _, stderr) = support::decode(out);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().next(),
        Some("error: cannot use --root /nonexistent-root: No such file or directory"),
        "{stderr}"
    );
    assert_operator_text(&stderr);
}

#[test]
fn exec_without_the_separator_suggests_it() {
    let host = TestHost::new();
    let (code, _, stderr) = host.run(&["exec", "agent-1", "ls", "-la"]);
    assert_eq!(code, 125);
    assert_eq!(
        stderr,
        "error: unexpected argument \"ls\" for cai exec: the command goes after `--`\nhelp: cai --root "
            .to_string()
            + host.root().to_str().unwrap()
            + " exec agent-1 -- ls -la\n"
    );
}

#[test]
fn run_of_a_missing_file_says_it_runs_the_catalog_script() {
    let host = TestHost::new();
    let cwd = tempfile::tempdir().unwrap();
    let out = host
        .cai()
        .current_dir(cwd.path())
        .args(["run", "detect.rhai"])
        .output()
        .unwrap();
    let (code, _, stderr) = support::decode(out);
    assert_eq!(code, 0, "{stderr}");
    let version = {
        let text = include_str!("../stdlib/detect.rhai");
        let line = text
            .lines()
            .find(|l| l.starts_with("//! version:"))
            .unwrap();
        line.trim_start_matches("//! version:").trim().to_string()
    };
    assert_eq!(
        stderr.lines().next(),
        Some(
            format!(
                "note: no file ./detect.rhai; running catalog script detect (bundled {version})"
            )
            .as_str()
        ),
        "{stderr}"
    );
}

/// A value is checked once, when the config is read, whichever command reads it, and the error
/// names the file it came from.
#[test]
fn config_values_are_checked_when_read_naming_their_file() {
    let host = TestHost::new();
    let config = host.home.path().join("relative.toml");
    std::fs::write(&config, "socket = \"run/x.sock\"\n").unwrap();
    let path = config.to_str().unwrap();
    for args in [
        &["doctor"][..],
        &["system", "unit"][..],
        &["update", "--check"][..],
    ] {
        let (code, stdout, stderr) = Run::new(&host).config(&config).args(args).run();
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert_eq!(
            stderr,
            format!(
                "error: invalid socket in config {path}: a unit path must be absolute (\"run/x.sock\")\nhelp: fix or remove socket in {path}\n"
            ),
            "{args:?}"
        );
    }
}

#[test]
fn scripts_list_marks_old_overrides_and_names_failing_ones() {
    let host = TestHost::new();
    let dir = host.root().join("etc/containai/scripts");
    std::fs::write(
        dir.join("update.rhai"),
        "//! version: 0.0.1\n//! api: 1\nprint(1);\n",
    )
    .unwrap();
    std::fs::write(dir.join("detect.rhai"), "print(1);\n").unwrap();
    let update = dir.join("update.rhai");
    let detect = dir.join("detect.rhai");

    let (code, stdout, stderr) = host.run(&["scripts", "list"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("update "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.ends_with(&format!(
            "{}  (older than bundled {})",
            update.display(),
            bundled("update")
        )),
        "{line}"
    );
    assert!(
        stderr.contains(&format!(
            "error: detect: {}: the script declares no version",
            detect.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: {} 0.0.1 is older than the bundled {} it shadows",
            update.display(),
            bundled("update")
        )),
        "{stderr}"
    );

    let (code, stdout, _) = host.run(&["scripts", "list", "--json"]);
    assert_eq!(code, 1);
    let doc = json(&stdout);
    let rows = doc["scripts"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    assert_eq!(row("update")["older_than_bundled"], bundled("update"));
    assert_eq!(row("update")["source"], "site");
    assert!(row("doctor")["older_than_bundled"].is_null());
    assert_eq!(row("doctor")["source"], "bundled");
    assert!(
        row("detect")["error"]
            .as_str()
            .unwrap_or_default()
            .contains(detect.to_str().unwrap()),
        "{stdout}"
    );
    assert!(
        rows.iter()
            .any(|r| r["name"] == "units/containai-docker.service")
    );
}

fn bundled(name: &str) -> String {
    let text = match name {
        "update" => include_str!("../stdlib/update.rhai"),
        _ => panic!("{name}"),
    };
    let line = text
        .lines()
        .find(|l| l.starts_with("//! version:"))
        .unwrap();
    line.trim_start_matches("//! version:").trim().to_string()
}

#[test]
fn man_page_and_help_meet_what_the_ecosystem_expects() {
    let host = TestHost::new();
    let (code, man, _) = host.run(&["man"]);
    assert_eq!(code, 0);
    assert!(man.contains(".TH cai 1"), "{man}");
    assert!(
        man.contains("GLOBAL OPTIONS") && man.contains("update"),
        "{man}"
    );

    let (_, help, _) = host.run(&["--help"]);
    let global = help.split("Global options:").nth(1).unwrap_or_default();
    for option in ["--root", "--config", "--yes", "--verbose"] {
        assert!(global.contains(option), "{help}");
    }
    assert!(
        !help
            .split("Global options:")
            .next()
            .unwrap()
            .contains("--root <DIR>"),
        "{help}"
    );

    for (args, wanted) in [
        (&["scripts", "show", "--help"][..], "A catalog script"),
        (
            &["scripts", "check", "--help"][..],
            ".rhai scripts and NAME.service",
        ),
        (&["scripts", "list", "--help"][..], "--json"),
        (&["system", "resume", "--help"][..], "--dry-run"),
    ] {
        let (code, out, _) = host.run(args);
        assert_eq!(code, 0);
        assert!(out.contains(wanted), "{args:?}: {out}");
    }
    for command in ["update", "doctor"] {
        let (_, out, _) = host.run(&[command, "--help"]);
        assert!(out.contains("Examples:\n  cai "), "{command}: {out}");
        assert!(out.contains("Exit codes:\n  0 "), "{command}: {out}");
    }
    let (_, out, _) = host.run(&["update", "--help"]);
    assert!(
        out.contains("  100  --check: updates are available"),
        "{out}"
    );
}

#[test]
fn system_resume_dry_run_needs_no_root_and_changes_nothing() {
    let host = TestHost::new();
    let before = host.snapshot_files();
    let (code, stdout, stderr) = host.run_as_nobody(&["system", "resume", "--dry-run"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("no interrupted update to resume"),
        "{stderr}"
    );
    assert!(!stderr.contains("needs root"), "{stderr}");
    assert_eq!(host.snapshot_files(), before);
}

/// `cai doctor | head -1`: a report whose reader went away ends quietly; a live run still says
/// its output was cut short (tests/sandbox.rs).
#[test]
fn a_report_whose_reader_went_away_ends_quietly() {
    let host = TestHost::new();
    for args in [
        &["doctor", "--list-checks"][..],
        &["scripts", "list"][..],
        &["scripts", "api"][..],
        &["man"][..],
        &["doctor", "--check", "privileges"][..],
    ] {
        let mut child = host
            .cai()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}
