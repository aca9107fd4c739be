//! The update lock and the crash-safe record of stopped containers, through the real binary:
//! two live runs never hold the lock at once, a dry run never creates or keeps it, and the record
//! survives the process that wrote it.

mod support;

use std::io::BufRead;
use std::time::{Duration, Instant};

use support::{Dockerd, TestHost, interrupt};

const HEADER: &str = "//! version: 1.0.0\n//! api: 1\n";

#[test]
fn two_updates_never_hold_the_lock_at_once() {
    let host = TestHost::new();
    let holder = host.script(
        "holder.rhai",
        &format!("{HEADER}update::lock();\nprint(\"locked\");\nsleep(30);\n0\n"),
    );
    let second = host.script(
        "second.rhai",
        &format!("{HEADER}update::lock();\nprint(\"second got it\");\n0\n"),
    );
    let mut child = host.spawn_run(&holder);
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "locked\n");

    for args in [vec!["run"], vec!["run", "--dry-run"]] {
        let started = Instant::now();
        let mut full = args.clone();
        full.push(second.to_str().unwrap());
        let (code, stdout, stderr) = host.run(&full);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(!stdout.contains("second got it"), "{stdout}");
        assert!(
            stderr.contains(&format!(
                "another cai update is running (pid {})",
                child.id()
            )),
            "{stderr}"
        );
        // Refused at once, not after waiting for the holder.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    // A script that never asks for the lock cannot record (or clear) a second run's stopped
    // containers either: the core takes the lock for it, and refuses.
    let sneaky = host.script(
        "sneaky.rhai",
        &format!(
            "{HEADER}update::record(\"stopping\", [#{{id: \"0123abcd\", name: \"agent-1\"}}]);\nprint(\"recorded\");\n0\n"
        ),
    );
    let (code, stdout, stderr) =
        host.run(&["run", sneaky.to_str().unwrap(), "--", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(!stdout.contains("recorded"), "{stdout}");
    assert!(stderr.contains("another cai update is running"), "{stderr}");
    assert!(
        !host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists()
    );

    interrupt(&child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // The holder is gone, so the lock is free again.
    let (code, stdout, stderr) = host.run(&["run", second.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "second got it\n");
}

#[test]
fn a_dry_run_neither_creates_nor_keeps_the_lock() {
    let host = TestHost::new();
    let script = host.script("lock.rhai", &format!("{HEADER}update::lock();\n0\n"));
    let (code, _, stderr) = host.run(&["run", "--dry-run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!host.root().join("run/containai/update.lock").exists());
    let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(host.root().join("run/containai/update.lock").exists());
}

#[test]
fn a_symlinked_lock_file_is_refused_never_followed() {
    let host = TestHost::new();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    std::fs::create_dir_all(host.root().join("run/containai")).unwrap();
    std::os::unix::fs::symlink(&victim, host.root().join("run/containai/update.lock")).unwrap();
    let script = host.script("lock.rhai", &format!("{HEADER}update::lock();\n0\n"));
    let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("it is a symlink"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
}

#[test]
fn the_record_of_stopped_containers_survives_the_run_and_is_planned_in_a_dry_run() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    let id1 = engine.run_agent("agent-1");
    engine.run_agent("agent-2");
    let state = host.root().join("var/lib/containai/update-state.json");
    let record = host.script(
        "record.rhai",
        &format!(
            "{HEADER}update::record(\"stopping\", containers::list_managed(false).map(|c| #{{id: c.id, name: c.name}}));\n0\n"
        ),
    );
    let consent = ["--", "--stop-containers"];
    let (code, stdout, stderr) = host.run(
        &[
            &["run", "--dry-run", record.to_str().unwrap()][..],
            &consent,
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("update.record"), "{stdout}");
    assert!(!state.exists(), "a dry run wrote the state");

    let (code, _, stderr) = host.run(&[&["run", record.to_str().unwrap()][..], &consent].concat());
    assert_eq!(code, 0, "{stderr}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["phase"], "stopping");
    assert_eq!(saved["containers"][0]["id"], id1.as_str());
    assert_eq!(saved["containers"][1]["name"], "agent-2");

    // A later run (another process) reads what this one left.
    let read = host.script(
        "read.rhai",
        &format!(
            "{HEADER}let s = update::state();\nprint(`${{s.phase}} ${{s.containers.len()}} ${{s.containers[0].id}}`);\nupdate::clear();\nprint(`${{update::state() == ()}}`);\n0\n"
        ),
    );
    // Stopped, as the update left them: the record stays.
    engine.docker(&["stop", "-t", "0", "agent-1", "agent-2"]);
    let (code, _, stderr) = host.run(&["run", read.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to clear the update state: agent-1, agent-2"),
        "{stderr}"
    );
    assert!(state.exists());
    // --no-restart: the operator leaves them stopped, and the record may go.
    let (code, stdout, stderr) = host.run(&["run", read.to_str().unwrap(), "--", "--no-restart"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("stopping 2 {id1}\ntrue\n"));
    assert!(!state.exists());

    // A malformed record is one clear error, never "nothing to resume".
    std::fs::write(&state, "{\"phase\": 3}").unwrap();
    let (code, stdout, stderr) = host.run(&["run", read.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("is malformed"), "{stderr}");
    let bad = host.script(
        "bad.rhai",
        &format!("{HEADER}update::record(\"stopping\", [#{{id: 1}}]);\n0\n"),
    );
    let (code, _, stderr) = host.run(&["run", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("each container is #{id, name}"), "{stderr}");
}

#[test]
fn a_corrupt_update_state_is_named_with_its_path_and_left_untouched_by_resume() {
    let host = TestHost::new();
    let _engine = Dockerd::start(&host);
    let state = host.root().join("var/lib/containai/update-state.json");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    let corrupt =
        r#"{"phase": "stopping", "containers": [{"id": "", "name": "agent-1"}], "run": "r1"}"#;
    std::fs::write(&state, corrupt).unwrap();
    let (code, stdout, stderr) = host.run(&["system", "resume"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let path = state.display();
    assert!(
        stderr.contains(&format!(
            "the update state file {path} is malformed: container 1 has id \"\", not a container ID; nothing was changed\nhelp: inspect it with `cat {path}`; once the containers it lists are running again, remove it with `rm {path}`\n"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("invalid container name or id"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), corrupt);
}
