//! The effect gate, end to end: a script that calls every mutating primitive changes nothing on
//! the host in a dry run (files under the root, container states, fake-command logs), and its
//! plan lists every call. The same script run live does change the host, which shows the
//! comparison can fail.

mod support;

use std::collections::BTreeSet;

use support::{Dockerd, TestHost};

const EVERY_MUTATION: &str = r#"//! version: 1.0.0
//! api: 1.2
let out = containers::exec("agent-1", ["touch", "/tmp/was-here"]);
print(`exec predicted exit ${out.exit_code}`);
let stopped = containers::stop(["agent-1"], 5);
print(`stop predicted ${stopped.done}`);
let started = containers::start(["agent-2"]);
print(`start predicted ${started.done}`);
let changed = units::install("containai-docker.service");
print(`unit changed ${changed}`);
units::daemon_reload();
units::enable("containai-docker.service");
units::restart("containai-docker.service");
units::stop("containai-docker.service");
packages::install_deb("/var/cache/containai/sysbox.deb");
let fetched = artifacts::fetch(#{name: "tool.tgz", url: "file:///srv/mirror/tool.tgz", sha256: "@SHA256@", config_key: "dockerd_sha256"});
print(`fetch predicted ${fetched.bytes} bytes`);
dockerd::install("/var/cache/containai/docker-28.2.2.tgz", "28.2.2");
print(`config changed ${dockerd::install_config()}`);
// The record names a container by what the engine says (agent-2 runs again once started).
let a2 = containers::inspect("agent-2");
update::record("stopping", [#{id: a2.id, name: a2.name}]);
// The record clears only once the core's health gate passed, on an engine restarted after what
// this run installed.
units::restart("containai-docker.service");
let health = update::health();
if !health.ok { throw `${health.failures}`; }
update::clear();
let pruned = update::prune();
print(`prune predicted ${pruned.bundles.len()} bundles`);
// What is installed now is kept, and a rollback to that set (nothing differs, so it restores
// nothing) runs through every phase.
let kept = update::keep();
print(`keep predicted sysbox ${kept.sysbox}`);
let back = update::rollback("the gate's test");
print(`rollback predicted complete ${back.complete}`);
// agent-1 has no SSH port label, so the live run's calls fail; the dry run plans them.
try { ssh::exec("agent-1", ["touch", "/tmp/ssh-was-here"], #{}); } catch {}
try { ssh::spawn_detached("agent-1", ["sleep", "30"]); } catch {}
let repaired = volumes::chown("vol", #{uid: 65534, gid: 65534}, #{uid: 1000, gid: 1000});
print(`chown predicted ${repaired.changed} changed`);
print(`dry run ${run::dry_run()}`);
"#;

/// What `artifacts::fetch` copies from the mirror under the root in the live run.
const MIRRORED: &[u8] = b"a mirrored release artifact\n";

struct Fixture {
    host: TestHost,
    engine: Dockerd,
    script: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let host = TestHost::new();
    host.fakes
        .add_standard("sysbox-runc version 0.6.7+containai.20260127");
    let engine = Dockerd::start(&host);
    engine.run_agent("agent-1");
    engine.run_agent("agent-2");
    engine.docker(&["stop", "-t", "0", "agent-2"]);
    engine.docker(&[
        "create",
        "--name",
        "agent-3",
        "--label",
        "containai.managed=true",
        "-v",
        "vol:/data",
        support::TEST_IMAGE,
        "sleep",
        "600",
    ]);
    let broken = host
        .root()
        .join("var/lib/containai-docker/volumes/vol/_data/f");
    std::fs::write(&broken, "x").unwrap();
    std::os::unix::fs::lchown(&broken, Some(65534), Some(65534)).unwrap();
    std::fs::write(
        host.root()
            .join("etc/systemd/system/containai-docker.service"),
        "[Unit]\nDescription=old\n",
    )
    .unwrap();
    std::fs::create_dir_all(host.root().join("var/cache/containai")).unwrap();
    std::fs::write(
        host.root().join("var/cache/containai/sysbox.deb"),
        "not really a deb",
    )
    .unwrap();
    support::dockerd_bundle(
        &host.root().join("var/cache/containai/docker-28.2.2.tgz"),
        &["dockerd"],
        "28.2.2",
        |_| {},
    );
    std::fs::create_dir_all(host.root().join("srv/mirror")).unwrap();
    std::fs::write(host.root().join("srv/mirror/tool.tgz"), MIRRORED).unwrap();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(MIRRORED));
    let script = host.script("every.rhai", &EVERY_MUTATION.replace("@SHA256@", &sha256));
    Fixture {
        host,
        engine,
        script,
    }
}

/// The owner of the file the fixture broke inside volume `vol`.
fn owner(host: &TestHost) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(
        host.root()
            .join("var/lib/containai-docker/volumes/vol/_data/f"),
    )
    .unwrap()
    .uid()
}

fn mutating_primitives(host: &TestHost) -> BTreeSet<String> {
    let (code, stdout, stderr) = host.run(&["scripts", "api", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    doc["primitives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["mutating"] == true)
        .map(|p| {
            format!(
                "{}.{}",
                p["module"].as_str().unwrap(),
                p["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn dry_run_of_every_mutating_primitive_changes_nothing_and_plans_every_call() {
    let f = fixture();
    let files_before = f.host.snapshot_files();
    let states_before = f.engine.states();
    let log_before = f.host.fakes.log();

    let (code, stdout, stderr) = f.host.run(&[
        "run",
        "--dry-run",
        "--json",
        f.script.to_str().unwrap(),
        "--",
        "--stop-containers",
    ]);
    assert_eq!(code, 0, "{stderr}");

    assert_eq!(
        f.host.snapshot_files(),
        files_before,
        "files under the root changed in a dry run"
    );
    assert_eq!(
        f.engine.states(),
        states_before,
        "container states changed in a dry run"
    );
    // Reading the installed sysbox version (what a rollback set would name) is a read.
    let changing = |log: String| -> String {
        log.lines()
            .filter(|l| *l != "sysbox-runc [--version]")
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        changing(f.host.fakes.log()),
        changing(log_before),
        "a fake command ran in a dry run"
    );
    assert!(
        f.engine
            .try_exec_fails("agent-1", &["test", "-e", "/tmp/was-here"]),
        "containers::exec ran inside the container in a dry run"
    );

    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["mode"], "dry-run");
    assert_eq!(doc["journal"].as_array().unwrap().len(), 0);
    let plan = doc["plan"].as_array().unwrap();
    let kinds: BTreeSet<String> = plan
        .iter()
        .map(|a| a["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        mutating_primitives(&f.host),
        "the plan must list every mutating primitive"
    );
    assert_eq!(plan.len(), 22);
    // Predicted results reach the script; print goes to stderr under --json.
    assert!(stderr.contains("stop predicted [\"agent-1\"]"), "{stderr}");
    assert!(stderr.contains("unit changed true"), "{stderr}");
    assert!(stderr.contains("dry run true"), "{stderr}");
    assert!(stderr.contains("chown predicted 1 changed"), "{stderr}");
    assert_eq!(
        owner(&f.host),
        65534,
        "volumes::chown changed a file in a dry run"
    );
    assert!(stderr.contains("fetch predicted 0 bytes"), "{stderr}");
    // The unit's action carries the diff from the file on disk to the rendered unit.
    let install = plan
        .iter()
        .find(|a| a["kind"] == "units.install")
        .expect("units.install planned");
    let diff = install["details"]["diff"].as_str().unwrap();
    assert!(diff.contains("\n-Description=old\n"), "{diff}");
    assert!(
        diff.contains("\n+ExecStart=/opt/containai/bin/dockerd "),
        "{diff}"
    );

    // The human rendering lists every call too.
    let (code, stdout, stderr) = f.host.run(&[
        "run",
        "--dry-run",
        f.script.to_str().unwrap(),
        "--",
        "--stop-containers",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("dry run: 22 planned actions; nothing was changed"),
        "{stdout}"
    );
    for kind in mutating_primitives(&f.host) {
        assert!(stdout.contains(&kind), "{kind} missing from {stdout}");
    }
    assert!(stdout.contains("\n        -Description=old\n"), "{stdout}");
    assert_eq!(f.host.snapshot_files(), files_before);
}

#[test]
fn the_same_script_live_changes_the_host_and_is_journalled() {
    let f = fixture();
    let files_before = f.host.snapshot_files();
    let (code, _, stderr) =
        f.host
            .run(&["run", f.script.to_str().unwrap(), "--", "--stop-containers"]);
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(f.host.snapshot_files(), files_before);
    assert_eq!(f.engine.state("agent-1"), "exited");
    assert_eq!(f.engine.state("agent-2"), "running");
    assert_eq!(owner(&f.host), 1000, "the live run must repair the volume");
    assert_eq!(
        std::fs::read(f.host.root().join("var/cache/containai/tool.tgz")).unwrap(),
        MIRRORED,
        "the live run must fetch the artifact into the cache"
    );
    let unit = std::fs::read_to_string(
        f.host
            .root()
            .join("etc/systemd/system/containai-docker.service"),
    )
    .unwrap();
    let bundled = containai::script::catalog::BUNDLED_UNITS
        .iter()
        .find(|(name, _)| *name == "containai-docker.service")
        .unwrap()
        .1;
    let values = containai::plan::unit::UnitValues::engine(
        std::path::Path::new(containai::plan::layout::LINUX_SOCKET),
        std::path::Path::new(containai::plan::layout::DEFAULT_DATA_ROOT),
        100,
    )
    .unwrap();
    let expected = containai::plan::unit::render("t", bundled, &values).unwrap();
    assert_eq!(unit, expected, "the live run must write the rendered unit");
    // The bundle is unpacked and linked; the record was written and cleared again.
    assert_eq!(
        std::fs::read_link(f.host.root().join("opt/containai/bin/dockerd")).unwrap(),
        std::path::Path::new("../docker/28.2.2/dockerd")
    );
    assert!(
        !f.host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists()
    );
    // With --root, systemctl and dpkg are told the root too, so they never act on the
    // running machine by mistake.
    let log = f.host.fakes.log();
    let root = format!("[--root={}]", f.host.root().display());
    for call in [
        format!("systemctl {root} [daemon-reload]"),
        format!("systemctl {root} [enable] [containai-docker.service]"),
        format!("systemctl {root} [restart] [containai-docker.service]"),
        format!("dpkg {root} [-i] ["),
    ] {
        assert!(log.contains(&call), "{call} missing from {log}");
    }
    // dpkg installs a verified private copy, never the path the script named.
    let original = f.host.root().join("var/cache/containai/sysbox.deb");
    assert!(
        !log.contains(&format!("[{}]", original.display())),
        "dpkg was given the original: {log}"
    );
    // Write-ahead: every action has its intent line before its outcome line, one run id.
    let journal =
        std::fs::read_to_string(f.host.root().join("var/lib/containai/actions.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let phases: Vec<String> = lines
        .iter()
        .map(|l| format!("{}{}", l["phase"].as_str().unwrap(), l["seq"]))
        .collect();
    let expected: Vec<String> = (1..=22)
        .flat_map(|n| [format!("intent{n}"), format!("outcome{n}")])
        .collect();
    assert_eq!(phases, expected, "{journal}");
    assert!(
        lines.iter().all(|l| l["run"] == lines[0]["run"]),
        "{journal}"
    );
}

/// [P76] A dry run that fails, or ends with a non-zero exit code, planned only what came before
/// that point: its plan says so, and never ends in "no changes planned" as if it were complete.
#[test]
fn p76_a_failed_dry_run_never_reads_as_a_complete_empty_plan() {
    let host = TestHost::new();
    let dir = tempfile::tempdir().unwrap();
    for (body, code, first) in [
        (
            "throw \"boom\";\n",
            1,
            "dry run failed (see the error): no changes planned before it stopped, so the plan is incomplete; nothing was changed",
        ),
        (
            "units::daemon_reload();\nexit(2);\n",
            2,
            "dry run ended with exit code 2: 1 planned action before it ended, so the plan is incomplete; nothing was changed",
        ),
        ("0\n", 0, "dry run: no changes planned; nothing was changed"),
    ] {
        let script = dir.path().join("p76.rhai");
        std::fs::write(&script, format!("//! version: 1.0.0\n//! api: 1\n{body}")).unwrap();
        let before = host.snapshot_files();
        let (got, stdout, stderr) = host.run(&["run", script.to_str().unwrap(), "--dry-run"]);
        assert_eq!(got, code, "{stdout}{stderr}");
        assert_eq!(stdout.lines().next(), Some(first), "{stdout}{stderr}");
        assert!(
            !stdout.contains("; no changes planned; nothing"),
            "{stdout}"
        );
        assert_eq!(host.snapshot_files(), before);
    }
}
