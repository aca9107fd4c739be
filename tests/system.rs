//! `cai system`: the engine unit's stop hook (`stop-containers`) against a real private dockerd,
//! and `unit`, which prints what `cai` would write.

mod support;

use std::time::{Duration, Instant};

use support::{Dockerd, TEST_IMAGE, TestHost};

#[test]
fn stop_hook_exits_zero_at_once_when_the_engine_socket_is_gone() {
    let host = TestHost::new();
    let started = Instant::now();
    let (code, stdout, stderr) = host.run(&["system", "stop-containers", "--timeout", "100"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.is_empty() && !stderr.contains("error"),
        "{stdout}{stderr}"
    );
    // Well below any stop timeout: there is nothing to wait for.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn stop_hook_stops_managed_containers_concurrently_and_leaves_others_running() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    // PID 1 `sleep` ignores SIGTERM, like a container running systemd that takes its time.
    engine.run_agent("agent-1");
    engine.run_agent("agent-2");
    engine.docker(&["tag", TEST_IMAGE, "containai:latest"]);
    engine.run("legacy", &[], "containai:latest", &["sleep", "600"]);
    engine.run("bystander", &[], TEST_IMAGE, &["sleep", "600"]);

    // A dry run plans one concurrent stop of exactly the managed set and changes nothing.
    let (code, stdout, stderr) = host.run(&["system", "stop-containers", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("containers.stop"), "{stdout}");
    assert!(stdout.contains("timeout_secs=100"), "{stdout}");
    for name in ["agent-1", "agent-2", "legacy", "bystander"] {
        assert_eq!(engine.state(name), "running", "{name}");
    }

    let started = Instant::now();
    let (code, _, stderr) = host.run(&["system", "stop-containers", "--timeout", "2"]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("stopped 3 managed container(s)"),
        "{stderr}"
    );
    for name in ["agent-1", "agent-2", "legacy"] {
        assert_eq!(engine.state(name), "exited", "{name}");
    }
    assert_eq!(engine.state("bystander"), "running");
    // Concurrent: three 2 s stops take about 2 s, not 6 (generous bound for a loaded machine).
    assert!(took < Duration::from_secs(12), "took {took:?}");
    let journal =
        std::fs::read_to_string(host.root().join("var/lib/containai/actions.jsonl")).unwrap();
    assert!(
        journal.contains("\"kind\":\"containers.stop\"")
            && journal.contains("\"outcome\":\"done\""),
        "{journal}"
    );

    // Nothing running any more: the hook has nothing to do and says nothing.
    let (code, _, stderr) = host.run(&["system", "stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("stopped"), "{stderr}");
}

#[test]
fn stop_hook_fails_closed_when_the_socket_exists_but_nothing_answers() {
    let host = TestHost::new();
    drop(std::os::unix::net::UnixListener::bind(host.socket()).unwrap());
    let (code, _, stderr) = host.run(&["system", "stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach the engine"), "{stderr}");
    let (code, _, stderr) = host.run(&["system", "stop-containers", "--timeout", "0"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");
}

#[test]
fn system_unit_prints_exactly_what_install_would_write() {
    let host = TestHost::new();
    let (code, printed, stderr) = host.run(&["system", "unit"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        printed.contains("\nExecStop=/usr/local/bin/cai system stop-containers --timeout=100\n"),
        "{printed}"
    );
    let (code, one, _) = host.run(&["system", "unit", "containai-docker.service"]);
    assert_eq!(code, 0);
    let (code, config, _) = host.run(&["system", "unit", "daemon.json"]);
    assert_eq!(code, 0);
    assert_eq!(
        printed,
        format!("==> containai-docker.service <==\n{one}==> daemon.json <==\n{config}"),
        "one prints without a header, several with one each"
    );
    let parsed: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(parsed["default-runtime"], "sysbox-runc");

    let script = host.script(
        "install.rhai",
        "//! version: 1.0.0\n//! api: 1.5\nunits::install(\"containai-docker.service\");\ndockerd::install_config();\n0\n",
    );
    let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let written = std::fs::read_to_string(
        host.root()
            .join("etc/systemd/system/containai-docker.service"),
    )
    .unwrap();
    assert_eq!(written, one);
    let written =
        std::fs::read_to_string(host.root().join("etc/containai/docker/daemon.json")).unwrap();
    assert_eq!(written, config);

    for bad in ["../x.service", "containai-none.service"] {
        let (code, _, stderr) = host.run(&["system", "unit", bad]);
        assert_eq!(code, 1, "{bad}: {stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{stderr}"
        );
    }
}

#[test]
fn live_commands_that_change_the_host_say_first_that_they_need_root() {
    support::require_root();
    let host = TestHost::new();
    let before = host.snapshot_files();
    let root = host.root().display().to_string();
    for (args, command, why) in [
        (
            &["update"][..],
            "cai update",
            "it installs packages and restarts the engine",
        ),
        (
            &["update", "--stop-containers"][..],
            "cai update",
            "it installs packages and restarts the engine",
        ),
        (
            &["system", "resume"][..],
            "cai system resume",
            "it takes the update lock and starts the engine and the containers an update stopped",
        ),
        (
            &["doctor", "--repair", "--all"][..],
            "cai doctor --repair",
            "it changes the owner of files in managed volumes",
        ),
    ] {
        let (code, stdout, stderr) = host.run_as_nobody(args);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert_eq!(
            stderr,
            format!(
                "error: {command} needs root ({why})\nhelp: sudo cai --root {root} {}\n",
                args.join(" ")
            ),
            "{args:?}"
        );
    }
    // Reading and planning stay open to everyone.
    for args in [&["update", "--dry-run"][..], &["update", "--check"][..]] {
        let (_, stdout, stderr) = host.run_as_nobody(args);
        assert!(!stderr.contains("needs root"), "{args:?}: {stderr}");
        // The plan is shown (stdout for --check, stderr for --dry-run).
        assert!(
            format!("{stdout}{stderr}").contains("sysbox: none -> "),
            "{args:?}: {stdout}{stderr}"
        );
    }
    assert_eq!(host.snapshot_files(), before);
}

/// A dry run of the stop hook says what it would stop, by name, and its plan line names each
/// container (with a short ID), never a 64-hex ID; it never claims to have stopped anything.
#[test]
fn a_dry_run_stop_hook_says_would_stop_by_name() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    engine.run_agent("agent-1");
    engine.docker(&["tag", TEST_IMAGE, "containai:latest"]);
    engine.run("legacy-1", &[], "containai:latest", &["sleep", "600"]);

    let (code, stdout, stderr) = host.run(&["system", "stop-containers", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("would stop agent-1, legacy-1"), "{stderr}");
    assert!(!stderr.contains("stopped"), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains("containers.stop"))
        .expect(&stdout);
    assert!(
        line.contains("agent-1 (") && line.contains("legacy-1 ("),
        "{line}"
    );
    let long_hex = line
        .split(|c: char| !c.is_ascii_hexdigit())
        .any(|w| w.len() >= 64);
    assert!(!long_hex, "{line}");
    for name in ["agent-1", "legacy-1"] {
        assert_eq!(engine.state(name), "running", "{name}");
    }
}
