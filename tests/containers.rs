//! The container family against a real private dockerd: which containers count as managed, how
//! a set is stopped and started, and what happens when the engine does not answer.

mod support;

use std::time::{Duration, Instant};

use support::{Dockerd, TEST_IMAGE, TestHost};

const LIST_SCRIPT: &str = r#"//! version: 1.0.0
//! api: 1
let all = run::args().contains("all");
for c in containers::list_managed(all) {
    print(`${c.name} ${c.managed_by} ${c.state}`);
}
"#;

fn names_of(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn list_managed_returns_labelled_and_legacy_containers_and_no_others() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    engine.docker(&["tag", TEST_IMAGE, "containai:latest"]);
    engine.docker(&["tag", TEST_IMAGE, "containai:gemini"]);
    engine.run_agent("labelled");
    engine.run("legacy-latest", &[], "containai:latest", &["sleep", "600"]);
    engine.run("legacy-gemini", &[], "containai:gemini", &["sleep", "600"]);
    engine.run("other", &[], TEST_IMAGE, &["sleep", "600"]);
    engine.run(
        "label-false",
        &["containai.managed=false"],
        TEST_IMAGE,
        &["sleep", "600"],
    );
    engine.run(
        "stopped-labelled",
        &["containai.managed=true"],
        TEST_IMAGE,
        &["true"],
    );
    engine.docker(&["wait", "stopped-labelled"]);
    let script = host.script("list.rhai", LIST_SCRIPT);

    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        names_of(&stdout),
        ["labelled", "legacy-gemini", "legacy-latest"],
        "{stdout}"
    );
    assert!(stdout.contains("legacy-latest legacy running"), "{stdout}");
    assert!(stdout.contains("labelled label running"), "{stdout}");

    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap(), "--", "all"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        names_of(&stdout),
        [
            "labelled",
            "legacy-gemini",
            "legacy-latest",
            "stopped-labelled"
        ],
        "{stdout}"
    );
}

/// An engine restart stops every container on it, so `containers::list` lists them all, those
/// ContainAI does not manage marked as such; with the engine down it lists no running container,
/// but listing all of them (stopped ones still exist) is an error [P63].
#[test]
fn list_returns_every_container_and_marks_the_unmanaged_ones() {
    let host = TestHost::new();
    let script = host.script(
        "list-all.rhai",
        r#"//! version: 1.0.0
//! api: 1
let all = run::args().contains("all");
for c in containers::list(all) {
    print(`${c.name} ${c.managed_by != ()} ${c.managed_by} ${c.state}`);
}
"#,
    );
    {
        let engine = Dockerd::start(&host);
        engine.docker(&["tag", TEST_IMAGE, "containai:latest"]);
        engine.run_agent("labelled");
        engine.run("legacy", &[], "containai:latest", &["sleep", "600"]);
        engine.run("other", &[], TEST_IMAGE, &["sleep", "600"]);
        engine.run("stopped-other", &[], TEST_IMAGE, &["true"]);
        engine.docker(&["wait", "stopped-other"]);

        let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            stdout,
            "labelled true label running\nlegacy true legacy running\nother false  running\n"
        );
        let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap(), "--", "all"]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            names_of(&stdout),
            ["labelled", "legacy", "other", "stopped-other"],
            "{stdout}"
        );
    }

    // The engine is down (no socket, no systemd as init to run it).
    std::fs::remove_dir(host.root().join("run/systemd/system")).unwrap();
    let _ = std::fs::remove_file(host.socket());
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let (code, _, stderr) = host.run(&["run", script.to_str().unwrap(), "--", "all"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot list stopped containers: the engine is not running"),
        "{stderr}"
    );
}

/// P1, P2: `DOCKER_HOST`, `DOCKER_CONTEXT` and a docker client config naming another context are
/// all ignored; only the `--root` socket is used.
#[test]
fn regression_p1_p2_engine_environment_and_contexts_are_ignored() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    engine.run_agent("agent-1");
    let docker_config = host.home.path().join(".docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        r#"{"currentContext": "stale"}"#,
    )
    .unwrap();
    let script = host.script("list.rhai", LIST_SCRIPT);
    // host.cai() sets DOCKER_HOST and DOCKER_CONTEXT to places that do not exist.
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(names_of(&stdout), ["agent-1"]);
}

#[test]
fn stop_of_a_set_is_concurrent() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    // `sleep` as PID 1 has no SIGTERM handler, so every stop waits for the full timeout.
    let ids: Vec<String> = (0..8)
        .map(|i| engine.run_agent(&format!("stubborn-{i}")))
        .collect();
    let script = host.script(
        "stop.rhai",
        r#"//! version: 1.0.0
//! api: 1
let ids = containers::list_managed(false).map(|c| c.id);
let report = containers::stop(ids, 2);
print(`done=${report.done.len()} gone=${report.gone.len()} failed=${report.failed.len()}`);
"#,
    );
    let start = Instant::now();
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    let elapsed = start.elapsed();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("done=8 gone=0 failed=0"), "{stdout}");
    for id in &ids {
        assert_eq!(engine.state(id), "exited");
    }
    // Serial stops would take 8 x 2 s = 16 s; concurrent ones about 2 s plus start-up and
    // engine overhead, which a loaded two-core machine stretches.
    assert!(
        elapsed < Duration::from_secs(12),
        "stopping 8 containers took {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(2),
        "the stop timeout was not honoured: {elapsed:?}"
    );
}

/// P8: a container that exited (or was removed) between the listing and the stop counts as
/// stopped, not as a failure.
#[test]
fn regression_p8_container_gone_between_list_and_stop_counts_as_stopped() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    let exited = engine.run_agent("exits");
    let removed = engine.run_agent("removed");
    let running = engine.run_agent("runs");
    // The listing happened while all three ran; now two of them go away before the stop.
    engine.docker(&["kill", &exited]);
    engine.docker(&["rm", "-f", &removed]);
    let script = host.script(
        "stop.rhai",
        r#"//! version: 1.0.0
//! api: 1
let report = containers::stop(run::args(), 5);
print(`done=${report.done.len()} gone=${report.gone.len()} failed=${report.failed}`);
"#,
    );
    let (code, stdout, stderr) = host.run(&[
        "run",
        script.to_str().unwrap(),
        "--",
        &exited,
        &removed,
        &running,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("done=2 gone=1 failed=[]"), "{stdout}");
    assert_eq!(engine.state(&running), "exited");
}

#[test]
fn start_and_exec_and_inspect_work_in_live_mode_and_are_journalled() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    engine.run_agent("agent-1");
    engine.docker(&["volume", "create", "agent-data"]);
    engine.docker(&["stop", "-t", "0", "agent-1"]);
    let script = host.script(
        "start.rhai",
        r#"//! version: 1.0.0
//! api: 1
let report = containers::start(["agent-1"]);
print(`started=${report.done}`);
let who = containers::query("agent-1", ["id", "-u", "agent"]);
print(`agent uid=[${who.stdout}] code=${who.exit_code}`);
let out = containers::exec("agent-1", ["sh", "-c", "echo to-err >&2; exit 3"]);
print(`exec code=${out.exit_code} err=[${out.stderr}]`);
let details = containers::inspect("agent-1");
print(`running=${details.running} managed=${details.managed_by}`);
try {
    containers::query("agent-1", ["rm", "-rf", "/"]);
} catch (e) {
    print(`refused: ${e}`);
}
"#,
    );
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("started=[\"agent-1\"]"), "{stdout}");
    assert!(stdout.contains("agent uid=[1000\n] code=0"), "{stdout}");
    assert!(stdout.contains("exec code=3 err=[to-err\n]"), "{stdout}");
    assert!(stdout.contains("running=true managed=label"), "{stdout}");
    assert!(
        stdout.contains("refused:") && stdout.contains("not a read-only inspection program"),
        "{stdout}"
    );
    assert_eq!(engine.state("agent-1"), "running");
    let journal =
        std::fs::read_to_string(host.root().join("var/lib/containai/actions.jsonl")).unwrap();
    assert!(
        journal.contains("\"kind\":\"containers.start\""),
        "{journal}"
    );
    assert!(
        journal.contains("\"kind\":\"containers.exec\""),
        "{journal}"
    );
}

/// P3, P5: the socket file exists but nothing answers: listing is an error, never an empty list.
#[test]
fn regression_p3_p5_unreachable_engine_with_socket_present_is_an_error() {
    let host = TestHost::new();
    let socket = host.socket();
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let script = host.script("list.rhai", LIST_SCRIPT);
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "stdout: {stdout}");
    assert!(stderr.contains("cannot reach the engine"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    // A plain file where the socket should be is just as unreachable.
    std::fs::remove_file(&socket).unwrap();
    std::fs::write(&socket, "").unwrap();
    let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot reach the engine"), "{stderr}");

    // No socket and the engine unit inactive: no engine, so no container can be running.
    std::fs::remove_file(&socket).unwrap();
    host.fakes
        .add("systemctl", r#"[ "$1" = is-active ] && exit 3; exit 0"#);
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        host.fakes
            .log()
            .contains("systemctl [is-active] [--quiet] [containai-docker.service]"),
        "{}",
        host.fakes.log()
    );
}

/// Issue 7.5: a socket deleted under a live engine is not "no containers". While the engine unit
/// is active, or nobody can tell whether it is, listing refuses, whatever the script wants; only
/// a host without systemd as init (no unit can run the engine) takes the absent socket at its word.
#[test]
fn an_absent_socket_means_no_containers_only_while_the_engine_unit_is_down() {
    let host = TestHost::new();
    let script = host.script("list.rhai", LIST_SCRIPT);
    let run = || host.run(&["run", script.to_str().unwrap()]);

    host.fakes
        .add("systemctl", r#"[ "$1" = is-active ] && exit 0; exit 0"#);
    let (code, stdout, stderr) = run();
    assert_eq!(code, 1, "stdout: {stdout}");
    assert!(
        stderr.contains("cannot verify running container state")
            && stderr.contains("containai-docker.service is active"),
        "{stderr}"
    );

    // systemctl cannot answer (a dead bus): unknown, so refused too.
    host.fakes
        .add("systemctl", "echo 'Failed to connect to bus' >&2; exit 1");
    let (code, _, stderr) = run();
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot verify running container state")
            && stderr.contains("Failed to connect to bus"),
        "{stderr}"
    );

    // No systemd as init: no unit can run the engine; systemctl is not even asked.
    std::fs::remove_dir(host.root().join("run/systemd/system")).unwrap();
    let before = host.fakes.log();
    let (code, stdout, stderr) = run();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(host.fakes.log(), before, "systemctl was asked");
}

/// A name or id reaches the engine's URL path, where `/`, `..`, `?` and `&` would change the
/// endpoint: `query("victim/kill?signal=KILL&x=", ...)` would POST to `/containers/victim/kill`
/// from a read-only primitive, in a dry run, and `../volumes/create?x=` would create a volume.
/// Every name is checked against the engine's grammar before any request.
#[test]
fn regression_hostile_names_never_reach_the_engine_in_a_dry_run() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    engine.run_agent("victim");
    engine.docker(&["volume", "create", "victim-data"]);
    let volumes_before = engine.docker(&["volume", "ls", "-q"]);
    let states_before = engine.states();
    let script = host.script(
        "hostile.rhai",
        r#"//! version: 1.0.0
//! api: 1
let names = [
    "victim/kill?signal=KILL&x=",
    "victim/stop?t=0&x=",
    "../volumes/create?x=",
    "../volumes/victim-data?force=1&x=",
    "victim/../victim/pause?x=",
    "victim\nx",
    "-victim",
    "",
];
let refused = 0;
for name in names {
    for verb in ["inspect", "query", "exec", "stop", "start"] {
        try {
            switch verb {
                "inspect" => containers::inspect(name),
                "query" => containers::query(name, ["id"]),
                "exec" => containers::exec(name, ["id"]),
                "stop" => containers::stop([name], 1),
                "start" => containers::start([name]),
            };
            print(`accepted ${verb} ${name}`);
        } catch (e) {
            if `${e}`.contains("invalid container name or id") { refused += 1; } else { print(`other error ${verb}: ${e}`); }
        }
    }
}
print(`refused=${refused} planned=${run::plan().len()}`);
"#,
    );
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("refused=40 planned=0"), "{stdout}");
    assert!(!stdout.contains("accepted"), "{stdout}");
    assert_eq!(engine.states(), states_before);
    assert_eq!(engine.state("victim"), "running");
    assert_eq!(engine.docker(&["volume", "ls", "-q"]), volumes_before);
}

/// What the system said about the engine socket, not the client library's "client error
/// (Connect)": a file that is not a socket, a socket nobody listens on, one this user may not
/// open (root's, mode 0660) and none at all each get their own line and their own help.
#[test]
fn engine_socket_problems_are_told_apart_in_the_systems_words() {
    use std::os::unix::fs::PermissionsExt;
    support::require_root();
    let host = TestHost::new();
    let script = host.script("list.rhai", LIST_SCRIPT);
    // The script lives in HOME, which the unprivileged run must read too.
    std::fs::set_permissions(host.home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script.to_str().unwrap();
    let socket = host.socket();
    let sock = socket.display();
    let listed = |stderr: &str| {
        assert!(!stderr.contains("hyper"), "{stderr}");
        assert!(!stderr.contains("client error"), "{stderr}");
    };

    std::fs::write(&socket, "not a socket\n").unwrap();
    let (code, _, stderr) = host.run(&["run", script]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the engine at {sock}: it is not a socket but a regular file\nhelp: look at it with `ls -l {sock}`; remove it, then `systemctl restart containai-docker`\n"
        )),
        "{stderr}"
    );
    listed(&stderr);
    std::fs::remove_file(&socket).unwrap();

    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let (code, _, stderr) = host.run(&["run", script]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the engine at {sock}: nothing listens on it (connection refused), so the engine is not running\nhelp: systemctl restart containai-docker\n"
        )),
        "{stderr}"
    );
    listed(&stderr);
    std::fs::remove_file(&socket).unwrap();

    let _listening = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660)).unwrap();
    let root = host.root().display();
    let (code, _, stderr) = host.run_as_nobody(&["run", script]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "permission denied on {sock}: the containai-docker engine socket is open to root only\nhelp: sudo cai --root {root} run {script}\n"
        )),
        "{stderr}"
    );
    listed(&stderr);
    let (code, stdout, stderr) = host.run_as_nobody(&["doctor", "--check", "engine.socket"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("permission denied on {sock}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "help: sudo cai --root {root} doctor --check engine.socket"
        )),
        "{stdout}"
    );
    listed(&stdout);
    std::fs::remove_file(&socket).unwrap();

    let (code, _, stderr) = host.run(&["run", script]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{sock} does not exist")),
        "{stderr}"
    );
    listed(&stderr);
}
