//! Command-line behaviour: bad input gets one clear line and a non-zero exit with nothing changed,
//! and the `update` / `doctor` aliases run their bundled scripts end to end.

mod support;

use support::{Dockerd, TestHost};

/// The first line of stderr, which must say what is wrong on its own.
fn first_line(stderr: &str) -> &str {
    stderr.lines().next().unwrap_or("")
}

#[test]
fn bad_input_gets_one_clear_line_a_nonzero_exit_and_no_change() {
    let host = TestHost::new();
    let before = host.snapshot_files();

    let (code, _, stderr) = host.run(&["update", "--frobnicate"]);
    assert_eq!(code, 1);
    assert!(
        first_line(&stderr).contains("unexpected argument '--frobnicate'"),
        "{stderr}"
    );

    let (code, _, stderr) = host.run(&["run", "/nonexistent/x.rhai"]);
    assert_eq!(code, 1);
    assert!(
        first_line(&stderr).contains("script file /nonexistent/x.rhai does not exist"),
        "{stderr}"
    );

    let (code, _, stderr) = host.run(&["run", "no-such-script"]);
    assert_eq!(code, 1);
    assert!(
        first_line(&stderr).contains("no script named \"no-such-script\""),
        "{stderr}"
    );

    let (code, _, stderr) = host.run(&["--config", "/nonexistent/cai.toml", "doctor"]);
    assert_eq!(code, 1);
    assert!(
        first_line(&stderr).contains("config file /nonexistent/cai.toml does not exist"),
        "{stderr}"
    );

    let config = host.root().join("etc/containai/config.toml");
    std::fs::write(&config, "platform = \"linux\"\nstop_timeout = 5\n").unwrap();
    let (code, _, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    assert!(first_line(&stderr).contains("malformed config"), "{stderr}");
    assert!(
        first_line(&stderr).contains("line 2") && first_line(&stderr).contains("stop_timeout"),
        "{stderr}"
    );

    std::fs::write(&config, "platform = [").unwrap();
    let (code, _, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    assert!(first_line(&stderr).contains("malformed config"), "{stderr}");

    let out = std::process::Command::new(support::cai_bin())
        .args(["--root", "/nonexistent-root", "doctor"])
        .output()
        .unwrap();
    let (code, _, stderr) = support::decode(out);
    assert_eq!(code, 1);
    assert!(
        first_line(&stderr).contains("cannot use --root /nonexistent-root"),
        "{stderr}"
    );

    std::fs::remove_file(&config).unwrap();
    let throws = host.script(
        "throws.rhai",
        "//! version: 1.0.0\n//! api: 1\nthrow \"disk on fire\";\n",
    );
    let (code, _, stderr) = host.run(&["run", throws.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        first_line(&stderr).ends_with(":3:1: disk on fire"),
        "{stderr}"
    );

    assert_eq!(host.snapshot_files(), before, "bad input changed the host");
}

#[test]
fn unreadable_or_untrusted_config_is_reported() {
    support::require_root();
    let host = TestHost::new();
    // A directory where the file should be cannot be read as text, even by root.
    std::fs::create_dir(host.root().join("etc/containai/config.toml")).unwrap();
    let (code, _, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    assert!(
        first_line(&stderr).contains("not a regular file"),
        "{stderr}"
    );

    // A config anyone could have written is not read by a root process.
    let config = host.root().join("etc/containai/config.toml");
    std::fs::remove_dir(&config).unwrap();
    std::fs::write(&config, "platform = \"macos\"\n").unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let (code, _, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    assert!(
        first_line(&stderr).contains("the file is group- or world-writable"),
        "{stderr}"
    );
    assert!(stderr.contains("help: "), "{stderr}");
}

#[test]
fn version_help_and_completions() {
    let host = TestHost::new();
    let (code, stdout, _) = host.run(&["--version"]);
    assert_eq!(code, 0);
    // With the commit and date of a git build after it (tests/version.rs).
    assert!(
        stdout.starts_with(&format!("cai {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    let (code, stdout, _) = host.run(&["--help"]);
    assert_eq!(code, 0);
    for sub in ["run", "repl", "scripts", "completions", "update", "doctor"] {
        assert!(stdout.contains(sub), "{sub} missing from help");
    }
    let (code, stdout, _) = host.run(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("_cai()") && stdout.contains("--stop-containers"),
        "bash completion incomplete"
    );
}

#[test]
fn config_platform_overrides_detection_and_wsl_is_detected() {
    let host = TestHost::new();
    let script = host.script(
        "p.rhai",
        "//! version: 1.0.0\n//! api: 1\nprint(platform::detect());\n",
    );
    let (_, stdout, _) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(stdout.trim(), "linux");
    std::fs::create_dir_all(host.root().join("proc/sys/kernel")).unwrap();
    std::fs::write(
        host.root().join("proc/sys/kernel/osrelease"),
        "5.15.167.4-microsoft-standard-WSL2\n",
    )
    .unwrap();
    let (_, stdout, _) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(stdout.trim(), "wsl2");
    std::fs::write(
        host.root().join("etc/containai/config.toml"),
        "platform = \"macos\"\n",
    )
    .unwrap();
    let (_, stdout, _) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(stdout.trim(), "macos");
    let explicit = host.home.path().join("explicit.toml");
    std::fs::write(&explicit, "platform = \"linux\"\n").unwrap();
    let (_, stdout, _) = host.run(&[
        "--config",
        explicit.to_str().unwrap(),
        "run",
        script.to_str().unwrap(),
    ]);
    assert_eq!(stdout.trim(), "linux");
}

#[test]
fn run_passes_arguments_byte_for_byte_and_honours_exit() {
    let host = TestHost::new();
    let script = host.script(
        "args.rhai",
        "//! version: 1.0.0\n//! api: 1\nfor a in ARGS { print(`<${a}>`); }\nif run::args().len() == 3 { exit(7); }\n",
    );
    let (code, stdout, stderr) = host.run(&[
        "run",
        script.to_str().unwrap(),
        "--",
        "a b",
        "--flag",
        "$x;`y`",
    ]);
    assert_eq!(code, 7, "{stderr}");
    assert_eq!(stdout, "<a b>\n<--flag>\n<$x;`y`>\n");
}

#[test]
fn doctor_alias_reports_stable_check_ids_in_text_and_json() {
    let host = TestHost::new();
    host.fakes.add_standard("sysbox-runc\n\tedition: \tCommunity Edition (CE)\n\tversion: \t0.6.7+containai.20260127\n\tcommit: \tabc");
    host.fakes.add("fusermount3", "exit 0");
    let engine = Dockerd::start(&host);
    engine.run_agent("agent-1");
    // The unit exactly as cai renders it, so the check is `ok`.
    let (code, rendered, stderr) = host.run(&["system", "unit", "containai-docker.service"]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(
        host.root()
            .join("etc/systemd/system/containai-docker.service"),
        rendered,
    )
    .unwrap();

    let (code, config, stderr) = host.run(&["system", "unit", "daemon.json"]);
    assert_eq!(code, 0, "{stderr}");
    let config_file = host.root().join("etc/containai/docker/daemon.json");
    std::fs::create_dir_all(config_file.parent().unwrap()).unwrap();
    std::fs::write(&config_file, config).unwrap();

    let (code, stdout, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for line in [
        "ok       engine.socket",
        "ok       containers.managed     1 managed container(s), 1 running",
        "ok       sysbox.installed       sysbox 0.6.7+containai.20260127",
        "ok       sysbox.target          sysbox 0.6.7+containai.20260127 is the target 0.6.7+containai.20260127",
        "ok       fuse.fusermount3",
        "ok       unit.engine",
        "ok       unit.daemon_config     /etc/containai/docker/daemon.json is current",
        "skip     lima.vm                no Lima VM on linux",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from\n{stdout}");
    }

    let (code, stdout, stderr) = host.run(&["doctor", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value =
        serde_json::from_str(&stdout).expect("doctor --json prints one JSON document");
    let checks = doc["reports"][0]["checks"].as_array().unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "systemd.init",
            "privileges",
            "lima.vm",
            "engine.socket",
            "containers.managed",
            "containers.legacy",
            "containers.stopped_at_start",
            "volumes.managed",
            "volumes.ownership",
            "fs.protected_hardlinks",
            "sysbox.installed",
            "sysbox.target",
            "release.checksums",
            "fuse.fusermount3",
            "unit.engine",
            "unit.daemon_config"
        ]
    );
    assert_eq!(doc["reports"][0]["summary"]["error"], 0);

    // A daemon.json edited by hand is reported as different from what cai renders.
    std::fs::write(&config_file, "{\"debug\": true}\n").unwrap();
    let (_, stdout, _) = host.run(&["doctor", "--check", "unit.daemon_config"]);
    assert!(
        stdout
            .contains("warn     unit.daemon_config     /etc/containai/docker/daemon.json differs"),
        "{stdout}"
    );
    std::fs::remove_file(&config_file).unwrap();
    let (_, stdout, _) = host.run(&["doctor", "--check", "unit.daemon_config"]);
    assert!(
        stdout.contains(
            "warn     unit.daemon_config     /etc/containai/docker/daemon.json is not installed"
        ),
        "{stdout}"
    );

    // An error check makes the exit code 1.
    drop(engine);
    let (code, stdout, _) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("error    engine.socket"), "{stdout}");
}

/// P3/P5 through the update alias: a socket that does not answer refuses, never "no containers";
/// and the alias never touches containers or units while it cannot tell what to update.
#[test]
fn json_runs_print_one_document_even_when_the_script_fails() {
    let host = TestHost::new();
    let script = host.script(
        "fails.rhai",
        "//! version: 1.0.0\n//! api: 1\nunits::daemon_reload();\ncontainers::stop([\"a\"], 0);\n",
    );
    let (code, stdout, stderr) =
        host.run(&["run", "--dry-run", "--json", script.to_str().unwrap()]);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["plan"].as_array().unwrap().len(), 1);
    // A primitive's own error points at its call in the script.
    let error = doc["error"].as_str().unwrap();
    assert!(
        error.contains("fails.rhai:4:13: containers::stop: timeout 0 s is outside 1..=3600"),
        "{error}"
    );
    assert!(
        stderr.contains("4 | containers::stop([\"a\"], 0);"),
        "{stderr}"
    );
}

/// On macOS the engine and sysbox live in the Lima VM: the same doctor flow reads the sysbox
/// version there, through `limactl shell containai-docker -- sysbox-runc --version`, with no
/// branch in the script.
#[test]
fn on_macos_programs_run_inside_the_lima_vm() {
    let host = TestHost::new();
    // A host sysbox-runc that must not be asked, and a VM that answers with its own version.
    host.fakes
        .add("sysbox-runc", "echo 'sysbox-runc version 0.0.1'");
    host.fakes.add(
        "limactl",
        "[ \"$1 $2 $3 $4 $5 $6\" = 'shell --workdir / containai-docker -- sysbox-runc' ] || exit 2\nprintf 'sysbox-runc\\n\\tedition: \\tCommunity Edition (CE)\\n\\tversion: \\t0.6.7+containai.20260127\\n'",
    );
    std::fs::write(
        host.root().join("etc/containai/config.toml"),
        "platform = \"macos\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = host.run(&["doctor", "--json"]);
    assert_eq!(code, 1, "the engine socket is absent: {stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let check = doc["reports"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "sysbox.installed")
        .cloned()
        .unwrap();
    assert_eq!(check["status"], "ok", "{check}");
    assert_eq!(check["summary"], "sysbox 0.6.7+containai.20260127");
    let log = host.fakes.log();
    assert!(
        log.contains(
            "limactl [shell] [--workdir] [/] [containai-docker] [--] [sysbox-runc] [--version]"
        ),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("sysbox-runc")), "{log}");
}

/// A release-target override is checked at load with the rules the fetch applies, so a URL the
/// fetch would refuse (a bad %-escape, a query on a file URL) or a sha256 that is not one stops
/// every command there, naming the key and the file, before any script runs or anything changes.
#[test]
fn a_malformed_artifact_url_or_sha256_in_config_is_refused_at_load() {
    let host = TestHost::new();
    host.fakes
        .add_standard("sysbox-runc version 0.6.7+containai.20260127");
    let config = host.root().join("etc/containai/config.toml");
    let shown = config.display().to_string();
    let before = host.snapshot_files();
    for (text, key, why) in [
        (
            "sysbox_url = \"file:///srv/a%ZZ.deb?x\"\n",
            "sysbox_url",
            "\"file:///srv/a%ZZ.deb?x\" has a query or fragment",
        ),
        (
            "sysbox_url = \"file:///srv/a%ZZ.deb\"\n",
            "sysbox_url",
            "\"file:///srv/a%ZZ.deb\" has a bad %-escape",
        ),
        (
            "dockerd_url = \"https://mirror.example:99999/docker.tgz\"\n",
            "dockerd_url",
            "\"https://mirror.example:99999/docker.tgz\" has a port outside 1..=65535",
        ),
        (
            "sysbox_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0\"\n",
            "sysbox_sha256",
            "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0\" is not a sha256",
        ),
        (
            "dockerd_sha256 = \"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n",
            "dockerd_sha256",
            "is not a sha256",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let start = format!("error: invalid {key} in config {shown}: ");
        for args in [
            &["doctor"][..],
            &["update", "--dry-run"],
            &["scripts", "list"],
        ] {
            let (code, stdout, stderr) = host.run(args);
            assert_eq!(code, 1, "{text} {args:?}: {stderr}");
            let first = first_line(&stderr);
            assert!(
                first.starts_with(&start) && first.contains(why),
                "{text} {args:?}: {stderr}"
            );
            assert_eq!(
                stderr.lines().nth(1),
                Some(format!("help: fix or remove {key} in {shown}").as_str()),
                "{stderr}"
            );
            assert_eq!(stderr.lines().count(), 2, "{stderr}");
            assert!(stdout.is_empty(), "{stdout}");
        }
    }
    std::fs::remove_file(&config).unwrap();
    assert!(host.fakes.log().is_empty(), "{}", host.fakes.log());
    assert_eq!(
        host.snapshot_files(),
        before,
        "a refused config changed the host"
    );
}

#[test]
fn prompt_confirm_without_a_terminal_says_there_was_none_and_answers_no() {
    let host = TestHost::new();
    let script = host.script(
        "ask.rhai",
        "//! version: 1.0.0\n//! api: 1\nif prompt::confirm(\"go on?\") { print(\"yes\"); } else { print(\"no\"); }\n0\n",
    );
    // `TestHost::cai` gives the binary a null stdin: nobody to ask.
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "no\n");
    assert_eq!(
        stderr, "info: no terminal to ask \"go on?\"; the answer is no\n",
        "{stderr}"
    );
}
