//! `cai update` end to end against a real private dockerd: the target comes from a site config
//! that points at `file://` artifacts under the root (no network); the sysbox package is built
//! with the real `dpkg-deb`, and the fake `dpkg` unpacks it into the root with `dpkg-deb -x`, so
//! the installed `sysbox-runc` really reports the new version; `systemctl` is a fake that records
//! its calls. Containers, files, units and the dockerd bundle are real.

mod support;

use std::collections::BTreeMap;

use support::{Dockerd, TestHost};

const OLD_SYSBOX: &str = "0.6.7+containai.20251201";
const TARGET_SYSBOX: &str = "0.6.7+containai.20260127";
const TARGET_DOCKERD: &str = "28.2.2";
const DEB: &str = "sysbox-ce_0.6.7+containai.20260127.linux_amd64.deb";
const BUNDLE: &str = "docker-28.2.2.tgz";

fn sha256(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// A dockerd static bundle with just `docker/dockerd`.
fn bundle_bytes() -> Vec<u8> {
    let stage = tempfile::tempdir().unwrap();
    let out = stage.path().join("b.tgz");
    support::dockerd_bundle(&out, &["dockerd"], TARGET_DOCKERD, |_| {});
    std::fs::read(out).unwrap()
}

struct Fixture {
    host: TestHost,
    engine: Dockerd,
}

/// The installed sysbox: `<root>/usr/bin/sysbox-runc` printing `version` (the one-line format),
/// found on `PATH` through the fakes directory. The fake `dpkg` unpacks the package it is given
/// into its `--root` with the real `dpkg-deb -x`, so after an install `sysbox-runc` reports what
/// the package holds.
fn set_sysbox(host: &TestHost, version: &str) {
    use std::os::unix::fs::PermissionsExt;
    let bin = host.root().join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let runc = bin.join("sysbox-runc");
    std::fs::write(
        &runc,
        format!("#!/bin/sh\necho 'sysbox-runc version {version}'\n"),
    )
    .unwrap();
    std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = host.fakes.dir().join("sysbox-runc");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&runc, &link).unwrap();
    host.fakes.add(
        "dpkg",
        r#"root=; deb=
for a; do case "$a" in --root=*) root="${a#--root=}" ;; esac; deb="$a"; done
[ -n "$root" ] || { echo "fake dpkg: refusing to unpack without --root" >&2; exit 2; }
exec dpkg-deb -x "$deb" "$root""#,
    );
}

/// Publishes the release target in the root's mirror: the target's sysbox package (its control
/// file names the target) whose `sysbox-runc` reports `installs`, and the dockerd bundle, with
/// their sha256 in the site config (`deb_sha` replaces the package's).
fn publish(host: &TestHost, installs: &str, deb_sha: Option<&str>) {
    let mirror = host.root().join("srv/mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    let deb = support::fake_sysbox_deb("sysbox-ce", TARGET_SYSBOX, this_deb_arch(), installs);
    std::fs::write(mirror.join(DEB), &deb).unwrap();
    let bundle = bundle_bytes();
    std::fs::write(mirror.join(BUNDLE), &bundle).unwrap();
    let config = format!(
        "sysbox_url = \"file:///srv/mirror/{DEB}\"\nsysbox_version = \"{TARGET_SYSBOX}\"\nsysbox_tag = \"sysbox-build-20260127-10\"\nsysbox_sha256 = \"{}\"\ndockerd_url = \"file:///srv/mirror/{BUNDLE}\"\ndockerd_version = \"{TARGET_DOCKERD}\"\ndockerd_sha256 = \"{}\"\nstop_timeout_secs = 2\n",
        deb_sha.map_or_else(|| sha256(&deb), str::to_string),
        sha256(&bundle)
    );
    std::fs::write(host.root().join("etc/containai/config.toml"), config).unwrap();
}

fn fixture(deb_sha: Option<&str>) -> Fixture {
    let host = TestHost::new();
    host.fakes.add("systemctl", "exit 0");
    set_sysbox(&host, OLD_SYSBOX);
    publish(&host, TARGET_SYSBOX, deb_sha);
    let engine = Dockerd::start(&host);
    engine.run_agent("agent-1");
    Fixture { host, engine }
}

/// Files under the root that an update may change, without the engine's own logs.
fn files(host: &TestHost) -> BTreeMap<String, String> {
    let mut files = host.snapshot_files();
    files.retain(|k, _| {
        !k.ends_with("dockerd.log") && !k.ends_with("dockerd.err") && !k.contains("docker-client")
    });
    files
}

fn cache_is_empty(host: &TestHost) -> bool {
    let cache = host.root().join("var/cache/containai");
    !cache.exists() || std::fs::read_dir(cache).unwrap().count() == 0
}

#[test]
fn running_containers_refuse_the_update_before_anything_is_fetched() {
    let f = fixture(None);
    let before = files(&f.host);
    let (code, stdout, stderr) = f.host.run(&["update"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("managed containers are running: agent-1"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("sysbox: {OLD_SYSBOX} -> {TARGET_SYSBOX}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("dockerd: none -> 28.2.2 (bundle missing)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unit: none -> rendered (not installed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: cai update --stop-containers"),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(cache_is_empty(&f.host), "fetched before refusing");
    assert!(
        !f.host.fakes.log().contains("dpkg"),
        "{}",
        f.host.fakes.log()
    );
    assert_eq!(files(&f.host), before);
}

#[test]
fn dry_run_prints_the_whole_plan_and_changes_nothing() {
    let f = fixture(None);
    let before = files(&f.host);
    let states = f.engine.states();
    let (code, stdout, stderr) = f.host.run(&["update", "--dry-run", "--stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    for kind in [
        "artifacts.fetch",
        "update.record",
        "containers.stop",
        "units.install",
        "units.daemon_reload",
        "dockerd.install",
        "packages.install_deb",
        "units.restart",
        // The core's health gate, which starts the recorded containers.
        "update.health",
        "update.keep",
        "update.clear",
    ] {
        assert!(stdout.contains(kind), "{kind} missing from {stdout}");
    }
    assert_eq!(files(&f.host), before);
    assert_eq!(f.engine.states(), states);
    let (code, stdout, stderr) =
        f.host
            .run(&["update", "--dry-run", "--stop-containers", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["mode"], "dry-run");
    assert!(doc["plan"].as_array().unwrap().len() >= 10, "{stdout}");
}

#[test]
fn stop_containers_updates_everything_verifies_and_restarts_them() {
    let f = fixture(None);
    let (code, stdout, stderr) = f.host.run(&["update", "--check"]);
    assert_eq!(code, 100, "{stdout}{stderr}");
    assert!(stdout.contains("sysbox:"), "{stdout}");

    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    let root = f.host.root();
    assert_eq!(
        std::fs::read_to_string(root.join("opt/containai/VERSION")).unwrap(),
        "28.2.2\n"
    );
    assert!(
        root.join("etc/systemd/system/containai-docker.service")
            .is_file()
    );
    assert!(!root.join("var/lib/containai/update-state.json").exists());
    // The package was unpacked into the root: its sysbox-runc reports the target (multi-line).
    let runc = std::process::Command::new(root.join("usr/bin/sysbox-runc"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&runc.stdout).contains(&format!("\tversion: \t{TARGET_SYSBOX}")),
        "{runc:?}"
    );
    let daemon: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("etc/containai/docker/daemon.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(daemon["default-runtime"], "sysbox-runc");
    let log = f.host.fakes.log();
    assert!(
        log.contains("[restart] [containai-docker.service]"),
        "{log}"
    );
    // The journal shows the order: every fetch before the stop, the stop before any install.
    let journal = std::fs::read_to_string(root.join("var/lib/containai/actions.jsonl")).unwrap();
    let kinds: Vec<String> = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["phase"] == "intent")
        .map(|l| l["kind"].as_str().unwrap().to_string())
        .collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k}: {kinds:?}"))
    };
    assert!(at("artifacts.fetch") < at("containers.stop"), "{kinds:?}");
    assert!(at("update.record") < at("containers.stop"), "{kinds:?}");
    assert!(
        at("containers.stop") < at("packages.install_deb"),
        "{kinds:?}"
    );
    assert!(at("update.keep") < at("containers.stop"), "{kinds:?}");
    // The containers start in the core's health gate, after the engine restart.
    assert!(at("units.restart") < at("update.health"), "{kinds:?}");

    // Now current: nothing to do, and the containers are not touched [P10].
    let (code, stdout, stderr) = f.host.run(&["update", "--check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let entries = journal.lines().count();
    let (code, _, stderr) = f.host.run(&["update"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("up to date"), "{stderr}");
    let journal = std::fs::read_to_string(root.join("var/lib/containai/actions.jsonl")).unwrap();
    assert_eq!(
        journal.lines().count(),
        entries,
        "a current host was touched"
    );
}

#[test]
fn a_corrupt_artifact_aborts_with_nothing_stopped() {
    let f = fixture(Some(&"0".repeat(64)));
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(
        !f.host.fakes.log().contains("dpkg"),
        "{}",
        f.host.fakes.log()
    );
}

#[test]
fn a_wrong_installed_version_fails_the_health_gate_and_rolls_back() {
    let f = fixture(None);
    // The package holds the old build again [P24].
    publish(&f.host, OLD_SYSBOX, None);
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the update failed: sysbox is {OLD_SYSBOX}, expected {TARGET_SYSBOX}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("rolling back"), "{stderr}");
    // The rollback started the agent again and the record went with it.
    assert_eq!(f.engine.state("agent-1"), "running");
    let state = f.host.root().join("var/lib/containai/update-state.json");
    assert!(!state.exists(), "{stderr}");

    // The next run with the right package completes.
    publish(&f.host, TARGET_SYSBOX, None);
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(!state.exists());
}

#[test]
fn container_state_that_cannot_be_verified_refuses() {
    // A socket file nobody answers on [P3, P5].
    let host = TestHost::new();
    host.fakes.add("systemctl", "exit 0");
    set_sysbox(&host, OLD_SYSBOX);
    drop(std::os::unix::net::UnixListener::bind(host.socket()).unwrap());
    let (code, _, stderr) = host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot verify running container state"),
        "{stderr}"
    );

    // No socket, but the engine unit says it is active: the socket was deleted under a live
    // engine, so "no socket" cannot mean "no containers".
    std::fs::remove_file(host.socket()).unwrap();
    let (code, _, stderr) = host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is active but"), "{stderr}");
    assert!(!host.fakes.log().contains("dpkg"));

    // A sysbox version nobody can parse is "could not tell", never "up to date" [P11, P21].
    host.fakes
        .add("sysbox-runc", "echo 'something else entirely'");
    let (code, stdout, stderr) = host.run(&["update", "--check"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("cannot tell whether sysbox is current"),
        "{stderr}"
    );
}

/// A site script that holds the update lock cannot stop a container it has not recorded: a crash
/// would leave it stopped with no record for the next run to restart it from.
#[test]
fn an_update_run_stops_only_recorded_containers() {
    let f = fixture(None);
    let script = f.host.script(
        "skip-record.rhai",
        "update::lock();\nlet ids = containers::list_managed(false).map(|c| c.id);\ncontainers::stop(ids, 2);\n",
    );
    let (code, _, stderr) = f.host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to stop") && stderr.contains("update::record"),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");

    // Recording needs the operator's consent: --yes is not it.
    let script = f.host.script(
        "record.rhai",
        "update::lock();\nlet c = containers::inspect(\"agent-1\");\nupdate::record(\"stopping\", [#{id: c.id, name: c.name}]);\ncontainers::stop([c.id], 2);\n0\n",
    );
    let (code, _, stderr) = f.host.run(&["--yes", "run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to record containers for stopping"),
        "{stderr}"
    );
    assert!(
        !f.host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists()
    );
    assert_eq!(f.engine.state("agent-1"), "running");

    // With --stop-containers and recorded first, the same stop (by the full ID) goes ahead.
    let (code, _, stderr) =
        f.host
            .run(&["run", script.to_str().unwrap(), "--", "--stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "exited");
}

/// Every artifact is fetched before any container stops (SPEC 4.2.7), also for a site script that
/// tries it the other way round: once this run recorded containers, downloads are refused.
#[test]
fn an_update_run_fetches_nothing_after_recording_containers() {
    let f = fixture(None);
    let script = f.host.script(
        "late-fetch.rhai",
        &format!(
            "update::lock();\nupdate::record(\"stopping\", containers::list_managed(false).map(|c| #{{id: c.id, name: c.name}}));\nartifacts::fetch(#{{name: \"{DEB}\", url: \"file:///srv/mirror/{DEB}\", sha256: \"{}\", config_key: \"sysbox_sha256\"}});\n0\n",
            sha256(&std::fs::read(f.host.root().join("srv/mirror").join(DEB)).unwrap())
        ),
    );
    let (code, _, stderr) =
        f.host
            .run(&["run", script.to_str().unwrap(), "--", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to download during an update"),
        "{stderr}"
    );
    assert!(cache_is_empty(&f.host));
}

/// Issue 7 acceptance: the private engine SIGKILLed, its socket file left behind: refuse, exit 1,
/// nothing fetched or installed.
#[test]
fn a_killed_engine_whose_socket_remains_refuses_the_update() {
    let host = TestHost::new();
    host.fakes.add("systemctl", "exit 0");
    set_sysbox(&host, OLD_SYSBOX);
    let mut engine = Dockerd::start(&host);
    engine.kill();
    assert!(
        host.socket().exists(),
        "the socket file should outlive a SIGKILL"
    );
    let (code, stdout, stderr) = host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("cannot verify running container state"),
        "{stderr}"
    );
    let log = host.fakes.log();
    assert!(!log.contains("dpkg") && !log.contains("[restart]"), "{log}");
    assert!(cache_is_empty(&host));
}

#[test]
fn killed_between_stop_and_restart_the_next_run_restarts_the_journalled_containers() {
    let f = fixture(None);
    let marks = tempfile::tempdir().unwrap();
    let mark = marks.path().join("dpkg.pid");
    // dpkg hangs, so cai is inside the install when it is killed.
    f.host.fakes.add(
        "dpkg",
        &format!(
            "echo $$ > '{}.tmp'; mv '{}.tmp' '{}'; sleep 60",
            mark.display(),
            mark.display(),
            mark.display()
        ),
    );
    let mut child = f
        .host
        .cai()
        .args(["update", "--stop-containers"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !mark.exists() {
        assert!(std::time::Instant::now() < deadline, "dpkg never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let dpkg: i32 = std::fs::read_to_string(&mark)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(dpkg).unwrap(),
        rustix::process::Signal::KILL,
    );
    assert_eq!(f.engine.state("agent-1"), "exited");
    assert!(
        f.host
            .root()
            .join("var/lib/containai/update-state.json")
            .is_file()
    );

    // The next run first rolls the interrupted update back to the set it kept and starts
    // exactly the recorded containers; the update itself is for the run after.
    set_sysbox(&f.host, OLD_SYSBOX);
    let (code, _, stderr) = f.host.run(&["update"]);
    assert!(
        stderr.contains(
            "an interrupted update stopped agent-1 after it kept what it replaces; rolling back"
        ),
        "{stderr}"
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(
        !f.host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists(),
        "{stderr}"
    );
    let (code, _, stderr) = f.host.run(&["update"]);
    assert_eq!(code, 2, "sysbox still needs the update: {stderr}");
}

#[test]
fn system_resume_starts_what_an_interrupted_update_stopped_and_yes_never_stops_containers() {
    let f = fixture(None);
    // --yes answers prompts, but stopping containers takes --stop-containers or a person.
    let (code, _, stderr) = f.host.run(&["--yes", "update", "--force"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");

    let (code, _, stderr) = f.host.run(&["system", "resume"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("no interrupted update to resume"),
        "{stderr}"
    );

    // What an interrupted update leaves: the record, and the container stopped.
    let id = f
        .engine
        .docker(&["inspect", "--format", "{{.Id}}", "agent-1"]);
    f.engine.docker(&["stop", "-t", "0", "agent-1"]);
    std::fs::create_dir_all(f.host.root().join("var/lib/containai")).unwrap();
    std::fs::write(
        f.host.root().join("var/lib/containai/update-state.json"),
        format!("{{\"phase\": \"stopping\", \"containers\": [{{\"id\": \"{id}\", \"name\": \"agent-1\"}}], \"run\": \"r\"}}"),
    )
    .unwrap();
    let (code, _, stderr) = f.host.run(&["system", "resume"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(
        !f.host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists()
    );
    // Resuming touched nothing else: no fetch, no install.
    assert!(cache_is_empty(&f.host));
    assert!(!f.host.fakes.log().contains("dpkg"));
}

#[test]
fn without_systemd_as_init_the_update_refuses_and_names_the_fix() {
    let f = fixture(None);
    std::fs::remove_dir_all(f.host.root().join("run/systemd")).unwrap();
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cai update needs systemd as init"),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(cache_is_empty(&f.host));

    // On WSL2 the message names /etc/wsl.conf [P19 is about not skipping; this is the fix].
    std::fs::create_dir_all(f.host.root().join("proc/sys/kernel")).unwrap();
    std::fs::write(
        f.host.root().join("proc/sys/kernel/osrelease"),
        "5.15.167.4-microsoft-standard-WSL2\n",
    )
    .unwrap();
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/etc/wsl.conf"), "{stderr}");

    // With systemd enabled, WSL2 updates an installed but outdated sysbox [P19].
    std::fs::create_dir_all(f.host.root().join("run/systemd/system")).unwrap();
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("updated sysbox: {OLD_SYSBOX} -> {TARGET_SYSBOX}")),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");
}

#[test]
fn no_restart_leaves_the_stopped_containers_stopped_and_clears_the_record() {
    let f = fixture(None);
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers", "--no-restart"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--no-restart: leaving agent-1 stopped"),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "exited");
    assert!(
        !f.host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists()
    );
}

#[test]
fn a_unit_path_that_is_a_directory_refuses_before_any_container_stops() {
    let f = fixture(None);
    std::fs::create_dir(
        f.host
            .root()
            .join("etc/systemd/system/containai-docker.service"),
    )
    .unwrap();
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("containai-docker.service"), "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(cache_is_empty(&f.host));
}

#[test]
fn a_read_only_opt_fails_the_install_and_rolls_back() {
    let f = fixture(None);
    let opt = f.host.root().join("opt");
    let mount = |args: &[&str]| {
        let status = std::process::Command::new("mount")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "mount {args:?}");
    };
    let opt_text = opt.to_str().unwrap();
    mount(&["--bind", opt_text, opt_text]);
    mount(&["-o", "remount,ro,bind", opt_text]);
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    let _ = std::process::Command::new("umount").arg(&opt).status();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    // The failed install rolled back and started the agent again; nothing is left recorded.
    assert!(stderr.contains("rolling back"), "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(
        !f.host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists(),
        "{stderr}"
    );
}

/// Two `cai update` processes at once: the second is refused at once with the first one's PID
/// while the first is inside the update (here: restarting the engine), and it changes nothing.
#[test]
fn two_concurrent_updates_never_both_proceed() {
    let f = fixture(None);
    f.host.fakes.add(
        "systemctl",
        r#"case "$*" in *restart*) sleep 3 ;; esac; exit 0"#,
    );
    let first = f
        .host
        .cai()
        .args(["update", "--stop-containers"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !f.host.fakes.log().contains("[restart]") {
        assert!(
            std::time::Instant::now() < deadline,
            "the first update never reached the restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another cai update is running (pid {})",
            first.id()
        )),
        "{stderr}"
    );
    let out = first.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = f.host.fakes.log();
    assert_eq!(log.matches("[restart]").count(), 1, "{log}");
    assert_eq!(log.matches("dpkg ").count(), 1, "{log}");
    assert_eq!(f.engine.state("agent-1"), "running");
}

/// A site `update.rhai` that skips the lock and the record cannot weaken the core's rules:
/// `cai update` takes the update lock itself before the script runs, so stopping an unrecorded
/// container, restarting the engine (whose stop hook stops them all) under running unrecorded
/// containers, and clearing a record whose containers are still stopped are each refused.
#[test]
fn a_site_update_script_cannot_skip_the_record_or_clear_it_early() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture(None);
    let site = f.host.root().join("etc/containai/scripts/update.rhai");
    let write_site = |body: &str| {
        std::fs::write(
            &site,
            format!("//! version: 9.0.0\n//! api: 1.5\n{body}\n0\n"),
        )
        .unwrap();
        std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o644)).unwrap();
    };

    write_site("containers::stop(containers::list_managed(false).map(|c| c.id), 2);");
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("refusing to stop"), "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");

    write_site("units::restart(\"containai-docker.service\");");
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("units::restart containai-docker.service: refusing to stop"),
        "{stderr}"
    );
    assert!(!f.host.fakes.log().contains("[restart]"));

    write_site(
        "let ids = containers::list_managed(false).map(|c| c.id);\nupdate::record(\"stopping\", containers::list_managed(false).map(|c| #{id: c.id, name: c.name}));\ncontainers::stop(ids, 2);\nupdate::clear();",
    );
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to clear the update state: agent-1"),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "exited");
    assert!(
        f.host
            .root()
            .join("var/lib/containai/update-state.json")
            .is_file(),
        "the record must survive"
    );

    // The bundled script resumes from the record it left: the container runs again.
    std::fs::remove_file(&site).unwrap();
    let (code, _, stderr) = f.host.run(&["system", "resume"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
}

// --- Everything that can refuse the install is checked before the first container stops [P62];
// --- a checksum never comes over the channel it protects [P67]; downloads are bounded [P68].

/// The Debian name of this machine's architecture, which the release target uses.
fn this_deb_arch() -> &'static str {
    containai::plan::platform::deb_arch()
}

/// Replaces one `key = ...` line of the site config (or appends it).
fn set_config(host: &TestHost, key: &str, value: Option<&str>) {
    let path = host.root().join("etc/containai/config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} =")))
        .map(String::from)
        .collect();
    if let Some(value) = value {
        lines.push(format!("{key} = {value}"));
    }
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// Puts `deb` in the mirror as the target package and pins its sha256 in the site config.
fn republish_deb(host: &TestHost, deb: &[u8]) {
    std::fs::write(host.root().join("srv/mirror").join(DEB), deb).unwrap();
    set_config(host, "sysbox_sha256", Some(&format!("\"{}\"", sha256(deb))));
}

/// The refusal every P62/P67/P68 case must end in: exit 1, one `error:` line that says `want`,
/// the managed container still running, nothing installed and nothing recorded.
fn assert_refused_before_any_stop(f: &Fixture, code: i32, stderr: &str, want: &str) {
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(want), "want {want:?} in {stderr}");
    assert_eq!(f.engine.state("agent-1"), "running", "{stderr}");
    let log = f.host.fakes.log();
    assert!(!log.contains("dpkg"), "{log}");
    assert!(!log.contains("[restart]"), "{log}");
    assert!(
        !f.host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists(),
        "{stderr}"
    );
    assert!(!f.host.root().join("opt/containai/VERSION").exists());
}

#[test]
fn p62_a_group_writable_cache_ancestor_refuses_before_any_container_stops() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture(None);
    let var_cache = f.host.root().join("var/cache");
    std::fs::create_dir_all(&var_cache).unwrap();
    std::fs::set_permissions(&var_cache, std::fs::Permissions::from_mode(0o775)).unwrap();
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_refused_before_any_stop(
        &f,
        code,
        &stderr,
        "var/cache: the directory is group- or world-writable",
    );
    // The dry run applies the same check.
    let (code, _, stderr) = f.host.run(&["update", "--dry-run", "--stop-containers"]);
    assert_refused_before_any_stop(
        &f,
        code,
        &stderr,
        "var/cache: the directory is group- or world-writable",
    );
}

#[test]
fn p62_a_symlinked_cache_directory_refuses_before_any_container_stops() {
    let f = fixture(None);
    let elsewhere = f.host.root().join("srv/cache");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(f.host.root().join("var/cache")).unwrap();
    std::os::unix::fs::symlink("/srv/cache", f.host.root().join("var/cache/containai")).unwrap();
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_refused_before_any_stop(&f, code, &stderr, "var/cache/containai: it is a symlink");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    let (code, _, stderr) = f.host.run(&["update", "--dry-run", "--stop-containers"]);
    assert_refused_before_any_stop(&f, code, &stderr, "var/cache/containai: it is a symlink");
}

#[test]
fn p62_a_bundle_entry_that_is_not_a_regular_file_refuses_before_any_container_stops() {
    let f = fixture(None);
    let stage = tempfile::tempdir().unwrap();
    let bundle = stage.path().join("b.tgz");
    support::dockerd_bundle(&bundle, &["dockerd"], TARGET_DOCKERD, |dir| {
        std::fs::create_dir(dir.join("docker/completion")).unwrap();
    });
    let bytes = std::fs::read(&bundle).unwrap();
    std::fs::write(f.host.root().join("srv/mirror").join(BUNDLE), &bytes).unwrap();
    set_config(
        &f.host,
        "dockerd_sha256",
        Some(&format!("\"{}\"", sha256(&bytes))),
    );
    let want = "\"docker/completion/\" is not a regular file";
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_refused_before_any_stop(&f, code, &stderr, want);

    // The verified bundle is in the cache now: the dry run checks what it would install.
    assert!(
        f.host
            .root()
            .join("var/cache/containai")
            .join(BUNDLE)
            .is_file()
    );
    let (code, _, stderr) = f.host.run(&["update", "--dry-run", "--stop-containers"]);
    assert_refused_before_any_stop(&f, code, &stderr, want);
}

#[test]
fn p62_a_package_that_is_not_the_target_refuses_before_any_container_stops() {
    let f = fixture(None);
    let arch = this_deb_arch();
    let other_arch = if arch == "amd64" { "arm64" } else { "amd64" };
    for (deb, want) in [
        (
            support::fake_sysbox_deb("sysbox", TARGET_SYSBOX, arch, TARGET_SYSBOX),
            "its package is sysbox, expected sysbox-ce".to_string(),
        ),
        (
            support::fake_sysbox_deb("sysbox-ce", TARGET_SYSBOX, other_arch, TARGET_SYSBOX),
            format!("its architecture is {other_arch}, expected {arch}"),
        ),
        (
            support::fake_sysbox_deb("sysbox-ce", OLD_SYSBOX, arch, TARGET_SYSBOX),
            format!("its version is {OLD_SYSBOX}-0, expected {TARGET_SYSBOX}"),
        ),
    ] {
        republish_deb(&f.host, &deb);
        let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
        assert_refused_before_any_stop(&f, code, &stderr, &want);
        let (code, _, stderr) = f.host.run(&["update", "--dry-run", "--stop-containers"]);
        assert_refused_before_any_stop(&f, code, &stderr, &want);
    }
}

/// Points the sysbox target at `url` in the site config, without a pinned sha256.
fn sysbox_over(host: &TestHost, url: &str) {
    set_config(host, "sysbox_url", Some(&format!("\"{url}\"")));
    set_config(host, "sysbox_sha256", None);
}

#[test]
fn p67_sidecar_checksum_over_http_is_refused() {
    let f = fixture(None);
    let server = support::HttpServer::start();
    let deb = support::fake_sysbox_deb("sysbox-ce", TARGET_SYSBOX, this_deb_arch(), TARGET_SYSBOX);
    let url = server.put(DEB, &deb);
    server.put(
        &format!("{DEB}.sha256"),
        format!("{}  {DEB}\n", sha256(&deb)).as_bytes(),
    );

    // From config: the refusal names the config key to pin.
    sysbox_over(&f.host, &url);
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_refused_before_any_stop(&f, code, &stderr, "needs a pinned sha256");
    assert!(stderr.contains("help: set sysbox_sha256"), "{stderr}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    // From the environment (which wins whole over config): it names CAI_SYSBOX_SHA256.
    set_config(&f.host, "sysbox_url", None);
    let with_env = |sha: Option<&str>| {
        let mut cmd = f.host.cai();
        cmd.args(["update", "--stop-containers"])
            .env("CAI_SYSBOX_URL", &url)
            .env("CAI_SYSBOX_VERSION", TARGET_SYSBOX)
            .env("CAI_SYSBOX_TAG", "sysbox-build-20260127-10");
        if let Some(sha) = sha {
            cmd.env("CAI_SYSBOX_SHA256", sha);
        }
        support::decode(cmd.output().unwrap())
    };
    let (code, _, stderr) = with_env(None);
    assert_refused_before_any_stop(&f, code, &stderr, "needs a pinned sha256");
    assert!(stderr.contains("CAI_SYSBOX_SHA256"), "{stderr}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    // Pinned, plain http is fine: the pin travels in config, not over the wire.
    let (code, _, stderr) = with_env(Some(&sha256(&deb)));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert_eq!(server.requests(), [format!("GET /{DEB} 200")]);
}

#[test]
fn p68_a_body_larger_than_download_max_mb_is_refused_before_any_container_stops() {
    let f = fixture(None);
    let server = support::HttpServer::start();
    // 2 MiB: over a ceiling of 1 MiB.
    let body = vec![7u8; 2 << 20];
    let url = server.put(DEB, &body);
    set_config(&f.host, "sysbox_url", Some(&format!("\"{url}\"")));
    set_config(
        &f.host,
        "sysbox_sha256",
        Some(&format!("\"{}\"", sha256(&body))),
    );
    set_config(&f.host, "download_max_mb", Some("1"));
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_refused_before_any_stop(&f, code, &stderr, "more than download_max_mb = 1");
    assert!(stderr.contains("help: raise download_max_mb"), "{stderr}");
    // Only the bundle, fetched and verified before; no part of the package.
    let cached: Vec<String> = std::fs::read_dir(f.host.root().join("var/cache/containai"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached, [BUNDLE]);
    // Refused on the announced length: one request, not retried (python logs the reset too).
    let gets = server.requests();
    let gets: Vec<&String> = gets.iter().filter(|l| l.starts_with("GET ")).collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
}

// --- The record of stopped containers only grows and names containers by full ID [P60, P61];
// --- every container on the engine is accounted for [P63, P64].

/// Installs `body` as the site's `update.rhai` (what `cai update` and `cai system resume` run).
fn write_site(host: &TestHost, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let site = host.root().join("etc/containai/scripts/update.rhai");
    std::fs::write(
        &site,
        format!("//! version: 9.0.0\n//! api: 1.5\n{body}\n0\n"),
    )
    .unwrap();
    std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o644)).unwrap();
    site
}

/// The record of stopped containers, as the next run reads it.
fn recorded(host: &TestHost) -> serde_json::Value {
    let text =
        std::fs::read_to_string(host.root().join("var/lib/containai/update-state.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// P60: a site script that records again after stopping (with fewer containers, or none) cannot
/// shrink the record: what is on disk stays in it, so `cai system resume` still starts them all.
#[test]
fn p60_site_script_cannot_empty_the_record() {
    let f = fixture(None);
    let id1 = f
        .engine
        .docker(&["inspect", "--format", "{{.Id}}", "agent-1"]);
    let id2 = f.engine.run_agent("agent-2");
    let site = write_site(
        &f.host,
        "let running = containers::list_managed(false);\n\
         update::record(\"stopping\", running.map(|c| #{id: c.id, name: c.name}));\n\
         containers::stop(running.map(|c| c.id), 2);\n\
         let second = running.filter(|c| c.name == \"agent-2\");\n\
         update::record(\"installing\", second.map(|c| #{id: c.id, name: c.name}));\n\
         update::record(\"restarting\", []);\n\
         exit(1);",
    );
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "exited");
    assert_eq!(f.engine.state("agent-2"), "exited");
    let state = recorded(&f.host);
    assert_eq!(state["phase"], "restarting", "{state}");
    let mut ids: Vec<&str> = state["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = vec![id1.as_str(), id2.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "the record shrank: {state}");

    // The bundled flow resumes from it: both run again.
    std::fs::remove_file(site).unwrap();
    let (code, _, stderr) = f.host.run(&["system", "resume"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert_eq!(f.engine.state("agent-2"), "running");
}

/// P61: a record entry is resolved with the engine before it is written (full ID, current name),
/// an entry whose ID and name disagree is refused, and under the lock a container is stopped only
/// by the full ID recorded for it, never by a name an entry carries.
#[test]
fn p61_a_record_entry_must_be_the_container_it_names() {
    let f = fixture(None);
    let id1 = f
        .engine
        .docker(&["inspect", "--format", "{{.Id}}", "agent-1"]);
    let id2 = f.engine.run_agent("agent-2");
    let state_file = f.host.root().join("var/lib/containai/update-state.json");

    // A made-up ID beside a real name.
    write_site(
        &f.host,
        "update::record(\"stopping\", [#{id: \"0123456789ab\", name: \"agent-1\"}]);\ncontainers::stop([\"agent-1\"], 2);",
    );
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot record container agent-1 (0123456789ab)"),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(!state_file.exists());

    // A real ID under another container's name.
    write_site(
        &f.host,
        &format!(
            "update::record(\"stopping\", [#{{id: \"{id2}\", name: \"agent-1\"}}]);\ncontainers::stop([\"agent-1\"], 2);"
        ),
    );
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refusing to record {id2} as agent-1: that ID belongs to container agent-2"
        )),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");
    assert_eq!(f.engine.state("agent-2"), "running");
    assert!(!state_file.exists());

    // A short ID is stored as the full one; stopping by name (or short ID) is still refused.
    write_site(
        &f.host,
        &format!(
            "update::record(\"stopping\", [#{{id: \"{}\", name: \"agent-1\"}}]);\ncontainers::stop([\"agent-1\"], 2);",
            &id1[..12]
        ),
    );
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to stop agent-1 during an update by name or short ID"),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");
    assert_eq!(recorded(&f.host)["containers"][0]["id"], id1.as_str());
}

/// P61: "gone" is decided by the recorded ID and the recorded name together: a stopped recorded
/// container keeps the record; once it is removed and its name is free or taken by another
/// container, the record may go.
#[test]
fn p61_gone_needs_the_id_and_the_name_to_be_absent() {
    let f = fixture(None);
    let id1 = f
        .engine
        .docker(&["inspect", "--format", "{{.Id}}", "agent-1"]);
    let consent = ["--", "--stop-containers"];
    let state_file = f.host.root().join("var/lib/containai/update-state.json");
    let clear = f.host.script("clear.rhai", "update::clear();\n0\n");

    // A record as an earlier cai let a site script write it: a made-up ID beside the name of a
    // stopped container. The ID proves nothing, so the name decides: agent-1 is stopped.
    f.engine.docker(&["stop", "-t", "0", "agent-1"]);
    std::fs::create_dir_all(state_file.parent().unwrap()).unwrap();
    std::fs::write(
        &state_file,
        "{\"phase\": \"stopping\", \"containers\": [{\"id\": \"0123456789ab\", \"name\": \"agent-1\"}], \"run\": \"r\"}",
    )
    .unwrap();
    let (code, _, stderr) = f.host.run(&["run", clear.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to clear the update state: agent-1"),
        "{stderr}"
    );
    assert!(state_file.exists());
    std::fs::remove_file(&state_file).unwrap();
    f.engine.docker(&["start", "agent-1"]);

    let record = f.host.script(
        "record.rhai",
        &format!(
            "update::record(\"stopping\", [#{{id: \"{id1}\", name: \"agent-1\"}}]);\ncontainers::stop([\"{id1}\"], 2);\n0\n"
        ),
    );
    let (code, _, stderr) = f
        .host
        .run(&[&["run", record.to_str().unwrap()][..], &consent].concat());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "exited");

    let (code, _, stderr) = f.host.run(&["run", clear.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to clear the update state: agent-1"),
        "{stderr}"
    );

    // Renamed, it is still the recorded container (found by its ID), and still stopped.
    f.engine.docker(&["rename", "agent-1", "agent-1-renamed"]);
    let (code, _, stderr) = f.host.run(&["run", clear.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");

    // Removed, and its name now another container's: gone.
    f.engine.docker(&["rm", "agent-1-renamed"]);
    f.engine.docker(&[
        "create",
        "--network",
        "none",
        "--name",
        "agent-1",
        support::TEST_IMAGE,
        "sleep",
        "600",
    ]);
    let (code, _, stderr) = f.host.run(&["run", clear.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!state_file.exists());
}

/// P63: an engine restart stops every container on it, labelled or not. An unlabelled running
/// container is named in the refusal (as not managed by ContainAI), and with --stop-containers it
/// is recorded, stopped and started again like the managed ones.
#[test]
fn p63_unlabelled_containers_are_refused_recorded_and_restarted() {
    let f = fixture(None);
    let other = f
        .engine
        .run("other", &[], support::TEST_IMAGE, &["sleep", "600"]);
    let (code, stdout, stderr) = f.host.run(&["update"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("managed containers are running: agent-1"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "containers not managed by ContainAI are running: other (restarting the engine stops them too)"
        ),
        "{stderr}"
    );
    assert!(cache_is_empty(&f.host));

    // The JSON document carries them apart.
    let (code, stdout, stderr) = f.host.run(&["update", "--dry-run", "--json"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let update = &doc["reports"][0]["update"];
    assert_eq!(update["containers"]["managed"][0], "agent-1", "{stdout}");
    assert_eq!(update["containers"]["unmanaged"][0], "other", "{stdout}");
    assert!(update["refused"].is_string(), "{stdout}");

    // Only an unlabelled one running still refuses.
    f.engine.docker(&["stop", "-t", "0", "agent-1"]);
    let (code, _, stderr) = f.host.run(&["update"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("containers not managed by ContainAI are running: other "),
        "{stderr}"
    );
    f.engine.docker(&["start", "agent-1"]);

    // A script that records only the managed ones cannot restart the engine under the other.
    let site = write_site(
        &f.host,
        "let running = containers::list_managed(false);\n\
         update::record(\"stopping\", running.map(|c| #{id: c.id, name: c.name}));\n\
         containers::stop(running.map(|c| c.id), 2);\n\
         units::restart(\"containai-docker.service\");",
    );
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("units::restart containai-docker.service: refusing to stop other"),
        "{stderr}"
    );
    assert!(!f.host.fakes.log().contains("[restart]"));
    std::fs::remove_file(site).unwrap();
    let (code, _, stderr) = f.host.run(&["system", "resume"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");

    let started = |name: &str| {
        f.engine
            .docker(&["inspect", "--format", "{{.State.StartedAt}}", name])
    };
    let before = started("other");
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert_eq!(f.engine.state("other"), "running");
    assert_ne!(
        started("other"),
        before,
        "other was never stopped and started"
    );
    let journal =
        std::fs::read_to_string(f.host.root().join("var/lib/containai/actions.jsonl")).unwrap();
    for kind in ["update.record", "containers.stop", "update.health"] {
        assert!(
            journal
                .lines()
                .any(|l| l.contains(&format!("\"{kind}\"")) && l.contains(&other)),
            "{kind} without {other}: {journal}"
        );
    }
}

/// P64: installing a package under the update lock (a sysbox package's maintainer scripts restart
/// sysbox, and the engine with it) is refused while any running container is unrecorded,
/// labelled or not, as restarting the engine is.
#[test]
fn p64_install_deb_under_the_lock_needs_every_running_container_recorded() {
    let f = fixture(None);
    f.engine
        .run("other", &[], support::TEST_IMAGE, &["sleep", "600"]);
    let deb = format!("/srv/mirror/{DEB}");
    let consent = ["--", "--stop-containers"];

    let bare = f.host.script(
        "bare.rhai",
        &format!("update::lock();\npackages::install_deb(\"{deb}\");\n0\n"),
    );
    let (code, _, stderr) = f.host.run(&["run", bare.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("packages::install_deb {deb}: refusing to stop")),
        "{stderr}"
    );
    assert!(
        !f.host.fakes.log().contains("dpkg"),
        "{}",
        f.host.fakes.log()
    );

    // Records and stops what `list` returns, then installs the package.
    let stop_then_install = |list: &str| {
        let script = f.host.script(
            "stop-then-install.rhai",
            &format!(
                "let running = {list};\n\
                 update::record(\"stopping\", running.map(|c| #{{id: c.id, name: c.name}}));\n\
                 containers::stop(running.map(|c| c.id), 2);\n\
                 packages::install_deb(\"{deb}\");\n0\n"
            ),
        );
        f.host
            .run(&[&["run", script.to_str().unwrap()][..], &consent].concat())
    };

    // The managed one recorded and stopped: the unlabelled one still runs unrecorded.
    let (code, _, stderr) = stop_then_install("containers::list_managed(false)");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("refusing to stop other"), "{stderr}");
    assert!(
        !f.host.fakes.log().contains("dpkg"),
        "{}",
        f.host.fakes.log()
    );

    // Every running container recorded and stopped: the install goes ahead.
    let (code, _, stderr) = stop_then_install("containers::list(false)");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        f.host.fakes.log().contains("dpkg"),
        "{}",
        f.host.fakes.log()
    );
}

/// P24: post-install verification is in the core. A site `update.rhai` that records and stops the
/// containers, installs the dockerd bundle and the sysbox package, starts the containers again
/// and clears the record without the core's check of what it installed is refused: the record
/// is kept and names what was not verified. The same script with the core's health gate,
/// `update::health()` (whose checks run `dockerd --version` and `sysbox-runc --version` against
/// the release target, read the engine's default runtime and start the containers), clears it.
#[test]
fn p24_a_site_update_script_that_skips_verification_cannot_clear_the_record() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture(None);
    let site = f.host.root().join("etc/containai/scripts/update.rhai");
    let state = f.host.root().join("var/lib/containai/update-state.json");
    let write_site = |verify: &str| {
        let body = format!(
            r#"//! version: 9.0.0
//! api: 1.5
update::lock();
let target = release::target();
fn fetch(t) {{
    let parts = t.url.split("/");
    artifacts::fetch(#{{ name: parts[parts.len() - 1], url: t.url, sha256: t.sha256,
        sha256_url: t.sha256_url, config_key: t.sha256_key }})
}}
let bundle = fetch(target.dockerd);
let deb = fetch(target.sysbox);
let running = containers::list(false);
update::record("stopping", running.map(|c| #{{ id: c.id, name: c.name }}));
containers::stop(running.map(|c| c.id), 2);
dockerd::install(bundle.path, target.dockerd.version);
packages::install_deb(deb.path);
containers::start(running.map(|c| c.id));
{verify}
update::clear();
0
"#
        );
        std::fs::write(&site, body).unwrap();
        std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o644)).unwrap();
    };

    write_site("");
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to clear the update state: this run installed dockerd and did not verify it (update::verify()); this run installed sysbox and did not verify it"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "the record of stopped containers is kept\nhelp: cai update retries the update"
        ),
        "{stderr}"
    );
    assert!(state.is_file(), "the record must survive");
    assert!(
        std::fs::read_to_string(&state).unwrap().contains("agent-1"),
        "the record must still name agent-1"
    );
    // The install itself happened: only the check was skipped.
    assert_eq!(
        std::fs::read_link(f.host.root().join("opt/containai/bin/dockerd")).unwrap(),
        std::path::Path::new("../docker/28.2.2/dockerd")
    );
    assert_eq!(f.engine.state("agent-1"), "running");

    // Ignoring what the check found is no better than skipping it: the package now installs
    // the old build, so the core's check fails and the record stays.
    publish(&f.host, OLD_SYSBOX, None);
    write_site("update::verify();");
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "this run installed sysbox and its verification failed: sysbox is {OLD_SYSBOX}, expected {TARGET_SYSBOX}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("installed dockerd"), "{stderr}");
    assert!(state.is_file(), "the record must survive");

    // The core's check passes: the record goes.
    publish(&f.host, TARGET_SYSBOX, None);
    write_site(
        "units::restart(\"containai-docker.service\");\nlet h = update::health();\nif !h.ok { throw `${h.failures}`; }",
    );
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!state.exists(), "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
}

/// P73 with P62: a live update runs the fetched bundle's `dockerd --version` in the
/// fetch-and-verify step, so a bundle that is another version than the target is refused before
/// any container stops; a dry run never runs a downloaded binary.
#[test]
fn p73_a_bundle_whose_dockerd_is_another_version_refuses_before_any_container_stops() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture(None);
    let ran = f.host.root().join("bundle-dockerd-ran");
    let stage = tempfile::tempdir().unwrap();
    let bundle = stage.path().join("b.tgz");
    let marker = ran.clone();
    support::dockerd_bundle(&bundle, &["dockerd"], "28.1.0", move |dir| {
        let dockerd = dir.join("docker/dockerd");
        let text = std::fs::read_to_string(&dockerd).unwrap();
        let logged = text.replacen(
            "#!/bin/sh\n",
            &format!("#!/bin/sh\necho \"$@\" >> '{}'\n", marker.display()),
            1,
        );
        std::fs::write(&dockerd, logged).unwrap();
        std::fs::set_permissions(&dockerd, std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    let bytes = std::fs::read(&bundle).unwrap();
    std::fs::write(f.host.root().join("srv/mirror").join(BUNDLE), &bytes).unwrap();
    set_config(
        &f.host,
        "dockerd_sha256",
        Some(&format!("\"{}\"", sha256(&bytes))),
    );

    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_refused_before_any_stop(
        &f,
        code,
        &stderr,
        &format!("its dockerd --version reports 28.1.0, expected {TARGET_DOCKERD}"),
    );
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "--version\n");
    assert!(!f.host.root().join("opt/containai/bin").exists());

    // The bundle is cached now; a dry run checks its entries but never runs it.
    std::fs::remove_file(&ran).unwrap();
    let (code, stdout, stderr) = f.host.run(&["update", "--dry-run", "--stop-containers"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!ran.exists(), "a dry run ran the downloaded dockerd");
    assert_eq!(f.engine.state("agent-1"), "running");
}

// --- `cai update --check` only reads [P70].

/// Undoes a read-only bind mount of a directory over itself, even when the test fails.
struct ReadOnlyMount(std::path::PathBuf);

impl ReadOnlyMount {
    fn over(dir: &std::path::Path) -> Self {
        let mount = |args: &[&str]| {
            let out = std::process::Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .output()
                .expect("run mount");
            assert!(
                out.status.success(),
                "mount {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        mount(&["--bind"]);
        let guard = ReadOnlyMount(dir.to_path_buf());
        mount(&["-o", "remount,bind,ro"]);
        guard
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// P70: `cai update --check` only reads. On a host whose `/run` cannot be written (a read-only
/// `/run`, or a user who may not create the update lock) it still answers 100 (updates
/// available) or 0, never 1 because it could not take the live lock.
#[test]
fn p70_update_check_answers_with_a_read_only_run() {
    support::require_root();
    let host = TestHost::new();
    host.fakes.add("systemctl", "exit 0");
    set_sysbox(&host, OLD_SYSBOX);
    publish(&host, TARGET_SYSBOX, None);
    let before = files(&host);
    let run = host.root().join("run");
    let _ro = ReadOnlyMount::over(&run);
    assert!(
        std::fs::create_dir(run.join("probe")).is_err(),
        "{} is still writable",
        run.display()
    );
    let (code, stdout, stderr) = host.run(&["update", "--check"]);
    assert_eq!(code, 100, "{stdout}{stderr}");
    assert!(stdout.contains("sysbox:"), "{stdout}");
    assert!(!stdout.contains("dry run"), "{stdout}");
    // A lock file left by an earlier update (mode 0644, not writable here) is only read.
    drop(_ro);
    std::fs::create_dir_all(run.join("containai")).unwrap();
    std::fs::write(run.join("containai/update.lock"), "1\n").unwrap();
    let _ro = ReadOnlyMount::over(&run);
    let (code, stdout, stderr) = host.run(&["update", "--check"]);
    assert_eq!(code, 100, "{stdout}{stderr}");
    // Nothing was written anywhere under the root.
    assert_eq!(files(&host), before);
}

/// update.rhai reads its options from `cai update` (OPTS): under `cai run`, flags after `--`
/// would be ignored and a check would become an update, so it refuses them and changes nothing.
#[test]
fn flags_after_run_dashes_are_refused_not_ignored() {
    let host = TestHost::new();
    let before = host.snapshot_files();
    for flag in ["--check", "--resume", "--stop-containers"] {
        let (code, _, stderr) = host.run(&["run", "update", "--", flag]);
        assert_eq!(code, 1, "{flag}: {stderr}");
        assert!(
            stderr.contains("update.rhai takes its options from cai update"),
            "{flag}: {stderr}"
        );
        assert!(
            stderr.contains("help: cai update --check"),
            "{flag}: {stderr}"
        );
    }
    assert_eq!(host.snapshot_files(), before);
}

/// Without systemd as init, `cai update --dry-run` shows the whole plan (what would be fetched,
/// stopped, installed and restarted) before the reason the live run refuses, with the live run's
/// exit code (1).
#[test]
fn a_dry_run_without_systemd_shows_the_whole_plan_then_refuses_like_the_live_run() {
    let f = fixture(None);
    std::fs::remove_dir_all(f.host.root().join("run/systemd")).unwrap();
    let (live, _, _) = f.host.run(&["update", "--stop-containers"]);
    let (code, stdout, stderr) = f.host.run(&["update", "--stop-containers", "--dry-run"]);
    assert_eq!(code, live, "{stdout}{stderr}");
    assert_eq!(code, 1, "{stdout}{stderr}");
    for planned in ["would update sysbox:", "would restart"] {
        assert!(stderr.contains(planned), "{planned}: {stderr}");
    }
    let reason = stderr
        .find("cai update needs systemd as init")
        .expect(&stderr);
    assert!(
        stderr.find("would update sysbox:").unwrap() < reason,
        "{stderr}"
    );
    assert!(stdout.contains("containai-docker.service"), "{stdout}");
    assert_eq!(f.engine.state("agent-1"), "running");
}

/// A refused update says why in its `--json` document too: `error` carries the reason with the
/// blocking containers by name, and `refusal` the message, the fix and the containers apart; a
/// person reads `error: …` and `help: …` (never `error: help: …`), and the exit code is 2.
#[test]
fn a_refused_update_puts_its_reason_and_the_blocking_containers_into_the_json_error() {
    let f = fixture(None);
    let (code, stdout, stderr) = f.host.run(&["update", "--dry-run", "--json"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["exit_code"], 2, "{stdout}");
    let error = doc["error"].as_str().expect(&stdout);
    assert!(error.contains("containers are running: agent-1"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");
    assert_eq!(doc["refusal"]["containers"][0], "agent-1", "{stdout}");
    assert!(
        doc["refusal"]["help"]
            .as_str()
            .is_some_and(|h| h.starts_with("cai update --stop-containers")),
        "{stdout}"
    );

    let (code, _, stderr) = f.host.run(&["update"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: containers are running: agent-1;"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("help: cai update --stop-containers")),
        "{stderr}"
    );
    assert!(!stderr.contains("error: help:"), "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
}

/// Without systemd as init, `cai update --dry-run --json` carries the whole plan and the reason
/// the live run refuses (its `error`, with the fix in `refusal.help`), and the live run's exit
/// code (1); a person reads `help: …`, never `error: help: …`.
#[test]
fn a_dry_run_without_systemd_puts_the_reason_into_the_json_error() {
    let f = fixture(None);
    std::fs::remove_dir_all(f.host.root().join("run/systemd")).unwrap();
    let (code, stdout, stderr) =
        f.host
            .run(&["update", "--stop-containers", "--dry-run", "--json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["exit_code"], 1, "{stdout}");
    let error = doc["error"].as_str().expect(&stdout);
    assert!(
        error.contains("cai update needs systemd as init"),
        "{error}"
    );
    assert_eq!(
        doc["refusal"]["help"], "run cai update on a host booted with systemd",
        "{stdout}"
    );
    assert!(
        doc["plan"].as_array().is_some_and(|p| !p.is_empty()),
        "{stdout}"
    );

    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == "help: run cai update on a host booted with systemd"),
        "{stderr}"
    );
    assert!(!stderr.contains("error: help:"), "{stderr}");
}

/// A rollback step that fails (here systemd refuses `reset-failed` before the engine's restart)
/// is named in the account, and the steps after it still run: the recorded container runs again,
/// the record goes, and the run ends with exit 1 because the rollback is incomplete.
#[test]
fn a_failing_rollback_step_is_named_and_the_agents_still_come_back() {
    let f = fixture(None);
    // The package holds the old build: the health gate fails and the update rolls back.
    publish(&f.host, OLD_SYSBOX, None);
    f.host.fakes.add(
        "systemctl",
        "case \"$*\" in *reset-failed*) echo 'Failed to reset failed state' >&2; exit 1 ;; esac; exit 0",
    );
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("rolling back"), "{stderr}");
    assert!(
        stderr.contains("the rollback's engine step failed: systemctl"),
        "{stderr}"
    );
    assert!(stderr.contains("running again: agent-1"), "{stderr}");
    assert!(
        !stderr.contains("every agent runs again on the previous engine"),
        "an incomplete rollback must not say it is complete: {stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");
    let state = f.host.root().join("var/lib/containai/update-state.json");
    assert!(!state.exists(), "{stderr}");
}
