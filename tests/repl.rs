//! `cai repl` driven through a real pseudo-terminal: multi-line input, calls, history recall,
//! `:plan`, `:live`, and the history file.

mod support;

use support::TestHost;

#[test]
fn repl_multiline_definition_call_history_plan_and_live() {
    let host = TestHost::new();
    host.fakes.add_standard("sysbox-runc version 0.6.7");
    let mut cmd = host.cai_tty();
    cmd.arg("repl").env("TERM", "xterm").env_remove("NO_COLOR");
    let mut p =
        rexpect::session::spawn_command(cmd, Some(15_000)).expect("spawn cai repl in a PTY");

    p.exp_string("dry-run mode").unwrap();
    p.exp_string("cai[dry-run]> ").unwrap();

    // A function defined over two lines: the first line alone is incomplete.
    p.send_line("fn add(a, b) {").unwrap();
    p.send_line("  a + b }").unwrap();
    p.exp_string("cai[dry-run]> ").unwrap();
    // The prompt is drawn before the editor switches the terminal back to raw mode, which
    // discards input typed ahead of it: give it that moment.
    std::thread::sleep(std::time::Duration::from_millis(200));
    p.send_line("add(40, 2)").unwrap();
    p.exp_string("=> 42").unwrap();
    p.exp_string("cai[dry-run]> ").unwrap();

    // Up-arrow recalls the previous entry.
    p.send("\x1b[A").unwrap();
    p.flush().unwrap();
    // The editor must see the arrow's escape sequence on its own before Enter arrives.
    p.exp_string("add(40, 2)").unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("=> 42").unwrap();
    p.exp_string("cai[dry-run]> ").unwrap();

    // A mutating primitive in dry-run lands in the plan only.
    p.send_line("units::daemon_reload()").unwrap();
    p.exp_string("cai[dry-run]> ").unwrap();
    p.send_line(":plan").unwrap();
    p.exp_string("1 planned action").unwrap();
    p.exp_string("units.daemon_reload").unwrap();
    p.exp_string("cai[dry-run]> ").unwrap();
    assert!(
        !host.fakes.log().contains("systemctl"),
        "dry-run REPL ran systemctl"
    );

    p.send_line(":live").unwrap();
    p.exp_string("warning: live mode").unwrap();
    p.exp_string("cai[live]> ").unwrap();
    p.send_line("units::daemon_reload()").unwrap();
    p.exp_string("cai[live]> ").unwrap();
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();

    assert!(
        host.fakes.log().contains("[daemon-reload]"),
        "{}",
        host.fakes.log()
    );
    // Live actions taken after `:live` are journalled.
    let journal =
        std::fs::read_to_string(host.root().join("var/lib/containai/actions.jsonl")).unwrap();
    assert!(
        journal.contains("units.daemon_reload") && journal.contains("\"outcome\":\"done\""),
        "{journal}"
    );
    let history =
        std::fs::read_to_string(host.home.path().join(".local/state/containai/repl_history"))
            .unwrap();
    assert!(history.contains("add(40, 2)"), "{history}");
    assert!(history.contains(":live"), "{history}");
}

#[test]
fn repl_reports_errors_and_keeps_going() {
    let host = TestHost::new();
    // The engine unit is not running, so its absent socket means "no containers".
    host.fakes.add("systemctl", "exit 3");
    let mut cmd = host.cai_tty();
    cmd.arg("repl").env("TERM", "xterm");
    let mut p =
        rexpect::session::spawn_command(cmd, Some(15_000)).expect("spawn cai repl in a PTY");
    p.exp_string("cai[dry-run]> ").unwrap();
    p.send_line("no_such_fn(1)").unwrap();
    p.exp_string("function not found: no_such_fn").unwrap();
    p.exp_string("cai[dry-run]> ").unwrap();
    p.send_line("let x = 5;").unwrap();
    p.exp_string("cai[dry-run]> ").unwrap();
    p.send_line("x * 2").unwrap();
    p.exp_string("=> 10").unwrap();
    // Tab completes a primitive name.
    p.send("containers::list_m").unwrap();
    p.flush().unwrap();
    p.exp_string("containers::list_m").unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.exp_string("anaged(").unwrap();
    // Running ones: the unit is not active, so the absent socket means none (listing stopped
    // ones too would need the engine [P75]).
    p.send_line("false)").unwrap();
    p.exp_string("=> []").unwrap();
    p.send_line(":nonsense").unwrap();
    p.exp_string("unknown command :nonsense").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

/// The history file is written as root: a symlink planted where it lives, or a directory another
/// user owns, must never lead root to write elsewhere.
#[test]
fn regression_history_file_symlink_is_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let host = TestHost::new();
    std::fs::set_permissions(host.home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = host.home.path().join(".local/state/containai");
    std::fs::create_dir_all(&state).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, state.join("repl_history")).unwrap();

    let mut cmd = host.cai_tty();
    cmd.arg("repl").env("TERM", "xterm");
    let mut p =
        rexpect::session::spawn_command(cmd, Some(15_000)).expect("spawn cai repl in a PTY");
    p.exp_string("no REPL history this session").unwrap();
    p.exp_string("cai[dry-run]> ").unwrap();
    p.send_line("40 + 2").unwrap();
    p.exp_string("=> 42").unwrap();
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        std::fs::symlink_metadata(state.join("repl_history"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
