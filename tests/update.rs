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

/// A sysbox package built with the real `dpkg-deb`, whose `sysbox-runc` prints `version` in the
/// multi-line format.
fn sysbox_deb(version: &str) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt;
    let stage = tempfile::tempdir().unwrap();
    let pkg = stage.path().join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/bin")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: sysbox-ce\nVersion: {version}-0\nArchitecture: amd64\nMaintainer: ContainAI <containai@example.invalid>\nDepends: fuse3\nDescription: sysbox for the update tests\n"
        ),
    )
    .unwrap();
    let runc = pkg.join("usr/bin/sysbox-runc");
    std::fs::write(
        &runc,
        format!(
            "#!/bin/sh\nprintf 'sysbox-runc\\n\\tedition: \\tCommunity Edition (CE)\\n\\tversion: \\t{version}\\n\\tcommit: \\tabc\\n'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = stage.path().join("sysbox.deb");
    let status = std::process::Command::new(support::require("dpkg-deb"))
        .args(["--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "dpkg-deb --build failed");
    std::fs::read(out).unwrap()
}

/// Publishes the release target in the root's mirror: a sysbox package that installs `installs`
/// and the dockerd bundle, with their sha256 in the site config (`deb_sha` replaces the package's).
fn publish(host: &TestHost, installs: &str, deb_sha: Option<&str>) {
    let mirror = host.root().join("srv/mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    let deb = sysbox_deb(installs);
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
        stderr.contains("managed containers are running: [\"agent-1\"]"),
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
        "containers.start",
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
    assert!(at("units.restart") < at("containers.start"), "{kinds:?}");

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
fn a_wrong_installed_version_fails_verification_and_the_next_run_resumes() {
    let f = fixture(None);
    // The package holds the old build again [P24].
    publish(&f.host, OLD_SYSBOX, None);
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "verification failed: sysbox is {OLD_SYSBOX}, expected {TARGET_SYSBOX}"
        )),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "exited");
    let state = f.host.root().join("var/lib/containai/update-state.json");
    assert!(state.is_file(), "the stopped containers must stay recorded");

    // The next run restarts exactly the recorded containers before anything else.
    publish(&f.host, TARGET_SYSBOX, None);
    let (code, _, stderr) = f.host.run(&["update", "--stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("an interrupted update stopped [\"agent-1\"]"),
        "{stderr}"
    );
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
        "update::lock();\nupdate::record(\"stopping\", [#{id: \"unknown\", name: \"agent-1\"}]);\ncontainers::stop([\"agent-1\"], 2);\n0\n",
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

    // With --stop-containers and recorded first (by name here), the same stop goes ahead.
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
            "update::lock();\nupdate::record(\"stopping\", [#{{id: \"x\", name: \"agent-1\"}}]);\nartifacts::fetch(#{{name: \"{DEB}\", url: \"file:///srv/mirror/{DEB}\", sha256: \"{}\", config_key: \"sysbox_sha256\"}});\n0\n",
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

    // The next run, even one that then refuses, first starts exactly the recorded containers.
    set_sysbox(&f.host, OLD_SYSBOX);
    let (code, _, stderr) = f.host.run(&["update"]);
    assert!(
        stderr.contains("an interrupted update stopped [\"agent-1\"]; starting them again"),
        "{stderr}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");
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
        stderr.contains("--no-restart: leaving [\"agent-1\"] stopped"),
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
fn a_read_only_opt_fails_the_install_and_keeps_the_containers_recorded() {
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
    // Stopped, but recorded: the next run (or `cai system resume`) starts it again.
    assert_eq!(f.engine.state("agent-1"), "exited");
    let (code, _, stderr) = f.host.run(&["system", "resume"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
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
