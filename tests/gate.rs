//! The effect gate in live mode, end to end: the journal is written ahead of every action, an
//! action whose intent cannot be journalled is refused, and a second Ctrl-C while an action is
//! being performed waits for it and journals its outcome before `cai` leaves.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{TestHost, interrupt};

const RESTART: &str = "//! version: 1.0.0\n//! api: 1\nunits::restart(\"containai-docker.service\");\nprint(\"after the restart\");\n";

fn journal_lines(host: &TestHost) -> Vec<serde_json::Value> {
    std::fs::read_to_string(host.root().join("var/lib/containai/actions.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn regression_second_ctrl_c_during_an_action_waits_for_it_and_journals_the_outcome() {
    let host = TestHost::new();
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    let finished = marks.path().join("finished");
    host.fakes.add(
        "systemctl",
        &format!(
            "touch '{}'; sleep 2; touch '{}'; exit 0",
            started.display(),
            finished.display()
        ),
    );
    let script = host.script("restart.rhai", RESTART);
    let child = host.spawn_run(&script);
    wait_for(&started);
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The action in progress ran to its end before cai left, and both entries are there.
    assert!(
        finished.exists(),
        "cai left while systemctl was running: {stderr}"
    );
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("waiting for the action in progress to finish"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("after the restart"));
    let lines = journal_lines(&host);
    let phases: Vec<&str> = lines.iter().map(|l| l["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["intent", "outcome"], "{lines:?}");
    assert_eq!(lines[1]["outcome"], "done");
}

#[test]
fn regression_a_live_run_whose_journal_cannot_be_written_refuses_before_acting() {
    let host = TestHost::new();
    host.fakes
        .add_standard("sysbox-runc version 0.6.7+containai.20260127");
    // The journal's directory is a plain file, so no journal line can be written.
    std::fs::create_dir_all(host.root().join("var/lib")).unwrap();
    std::fs::write(host.root().join("var/lib/containai"), "not a directory").unwrap();
    let script = host.script("restart.rhai", RESTART);
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to act: cannot write the journal"),
        "{stderr}"
    );
    assert!(!stdout.contains("after the restart"), "{stdout}");
    assert!(
        !host.fakes.log().contains("systemctl"),
        "systemctl ran without a journal entry: {}",
        host.fakes.log()
    );
}
