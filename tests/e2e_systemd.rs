//! The update and its recovery end to end, under a real systemd (PID 1 of a machine booted with
//! systemd-nspawn), real `dpkg -i`, real dockerd and the unit `cai update` installs: nothing here
//! is faked except sysbox itself (a package whose `sysbox-runc` runs `runc`). Each test boots a
//! machine of its own (under a second) and asserts at the end that it left nothing on the host.
//! Needs root, systemd-container and mmdebstrap (`sudo ./scripts/test.sh` installs them); the
//! tree is built once and cached under /var/tmp/cai-e2e.

mod support;

use std::time::{Duration, Instant};

use support::nspawn::{Machine, Root, SYSBOX_NEW, SYSBOX_OLD};

const ENGINE: &str = "containai-docker.service";

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    eprintln!("e2e: {what} took {:.1?}", started.elapsed());
    out
}

/// Test 1: on a fresh host, `cai update` installs the unit, daemon.json, the bundle and the
/// package; the engine is active and runs containers under sysbox-runc by default.
#[test]
fn fresh_install_runs_the_engine_with_sysbox_as_default_runtime() {
    let m = Machine::boot();
    timed("fresh install", || m.install(SYSBOX_OLD));
    assert_eq!(
        m.ok("systemctl is-active containai-docker").trim(),
        "active"
    );
    // The files cai wrote are the ones it renders.
    assert_eq!(
        m.ok(&format!("cat /etc/systemd/system/{ENGINE}")),
        m.ok(&format!("cai system unit {ENGINE}"))
    );
    assert_eq!(
        m.ok("cat /etc/containai/docker/daemon.json"),
        m.ok("cai system unit daemon.json")
    );
    assert_eq!(
        m.docker("info --format '{{.DefaultRuntime}}'"),
        "sysbox-runc"
    );
    assert_eq!(
        m.ok("sysbox-runc --version | sed -n 's/^[[:space:]]*version:[[:space:]]*//p'")
            .trim(),
        SYSBOX_OLD
    );
    let version = m.ok("cat /opt/containai/VERSION");
    assert_eq!(
        m.ok("readlink /opt/containai/bin/dockerd").trim(),
        format!("../docker/{}/dockerd", version.trim())
    );
    assert!(
        m.ok("dpkg-query -W -f '${Status}' sysbox-ce")
            .contains("installed")
    );
    // A second run finds nothing to do.
    let again = m.sh("cai update");
    assert!(again.ok(), "{again}");
    assert!(
        again.stderr.contains("up to date") || again.stdout.contains("up to date"),
        "{again}"
    );
    m.finish();
}

/// Test 6: the unit `cai update` installed passes systemd's own verifier inside the machine.
#[test]
fn installed_unit_passes_systemd_analyze_verify() {
    let m = Machine::boot();
    m.install(SYSBOX_OLD);
    let out = m.sh(&format!(
        "systemd-analyze verify /etc/systemd/system/{ENGINE} 2>&1"
    ));
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout, "", "systemd-analyze verify printed: {out}");
    m.finish();
}

/// How many times the engine unit's stop hook reported stopping `n` containers in this boot.
fn hook_stops(m: &Machine, n: usize) -> usize {
    m.sh(&format!("journalctl -b -u {ENGINE} -o cat --no-pager"))
        .stdout
        .lines()
        .filter(|l| l.contains(&format!("stopped {n} managed container(s)")))
        .count()
}

/// Test 2: the unit `cai update` installed stops the managed containers through its hook, while
/// dockerd still answers, on `systemctl restart` and on a restart of sysbox-mgr (`PartOf=`).
#[test]
fn installed_unit_stops_containers_through_the_hook_on_restart_and_on_sysbox_restart() {
    let m = Machine::boot();
    m.install(SYSBOX_OLD);
    m.run_agent("a1");
    m.run_agent("a2");

    let pid = m.prop(ENGINE, "MainPID");
    timed("systemctl restart containai-docker (2 agents)", || {
        m.ok(&format!("systemctl restart {ENGINE}"))
    });
    assert_eq!(m.prop(ENGINE, "ActiveState"), "active");
    assert_ne!(m.prop(ENGINE, "MainPID"), pid, "the engine did not restart");
    // 143: SIGTERM through docker-init, as `docker stop` from the hook sends it.
    assert_eq!(m.state("a1"), "exited 143");
    assert_eq!(m.state("a2"), "exited 143");
    assert_eq!(
        hook_stops(&m, 2),
        1,
        "the hook did not stop both containers: {}",
        m.journal(Some(ENGINE))
    );

    m.docker("start a1 a2");
    let invocation = m.prop(ENGINE, "InvocationID");
    timed("systemctl restart sysbox-mgr (2 agents)", || {
        m.ok("systemctl restart sysbox-mgr.service")
    });
    assert!(
        m.wait_for(Duration::from_secs(60), |m| {
            m.prop(ENGINE, "ActiveState") == "active"
                && m.prop(ENGINE, "InvocationID") != invocation
        }),
        "a restart of sysbox-mgr did not restart the engine: {}",
        m.journal(Some(ENGINE))
    );
    assert_eq!(m.state("a1"), "exited 143");
    assert_eq!(m.state("a2"), "exited 143");
    assert_eq!(hook_stops(&m, 2), 2, "{}", m.journal(Some(ENGINE)));
    m.finish();
}

/// How many times systemd started the engine in this boot.
fn engine_starts(m: &Machine) -> usize {
    m.sh(&format!(
        "journalctl -b _PID=1 -u {ENGINE} -o cat --no-pager"
    ))
    .stdout
    .lines()
    .filter(|l| l.starts_with("Starting "))
    .count()
}

/// What `cai update` recorded as stopped, or "" when there is no record.
fn record(m: &Machine) -> String {
    m.sh("cat /var/lib/containai/update-state.json 2>/dev/null")
        .stdout
}

/// Test 4: an update to a newer sysbox build with agents running is refused without
/// --stop-containers, and with it stops them, installs the package with real `dpkg -i`, restarts
/// the engine and starts the agents again; the record is cleared.
#[test]
fn update_with_stop_containers_installs_the_package_and_brings_the_agents_back() {
    let m = Machine::boot();
    m.install(SYSBOX_OLD);
    let a1 = m.run_agent("a1");
    let a2 = m.run_agent("a2");
    m.target(SYSBOX_NEW);

    let refused = m.sh("cai update");
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains("a1") && refused.stderr.contains("a2"),
        "{refused}"
    );
    assert_eq!(m.state("a1"), "running 0");

    let started = m.docker("inspect -f '{{.State.StartedAt}}' a1");
    let starts_before = engine_starts(&m);
    let out = timed("cai update --stop-containers (2 agents)", || {
        m.sh("cai update --stop-containers")
    });
    assert!(out.ok(), "{out}\n{}", m.journal(None));
    // The package's scripts restart sysbox; the engine, stopped before, starts once after.
    assert_eq!(
        engine_starts(&m) - starts_before,
        1,
        "{}",
        m.journal(Some(ENGINE))
    );
    assert_eq!(
        m.ok("dpkg-query -W -f '${Version}' sysbox-ce").trim(),
        format!("{SYSBOX_NEW}-0")
    );
    assert!(m.ok("sysbox-runc --version").contains(SYSBOX_NEW));
    assert_eq!(m.prop(ENGINE, "ActiveState"), "active");
    for (name, id) in [("a1", &a1), ("a2", &a2)] {
        assert_eq!(m.state(name), "running 0", "{out}");
        assert_eq!(&m.docker(&format!("inspect -f '{{{{.Id}}}}' {name}")), id);
    }
    assert_ne!(m.docker("inspect -f '{{.State.StartedAt}}' a1"), started);
    assert_eq!(record(&m), "", "the record was not cleared");
    m.finish();
}

/// Starts `cai update --stop-containers` towards SYSBOX_NEW with the package's postinst held,
/// waits until dpkg is in the postinst (the containers stopped and recorded), SIGKILLs cai and
/// lets dpkg finish. Returns once dpkg is gone.
fn kill_cai_in_postinst(m: &Machine) {
    m.ok("mkdir -p /run/cai-e2e && : > /run/cai-e2e/hold-postinst");
    let mut update = m.spawn("exec cai update --stop-containers");
    let in_postinst = m.wait_for(Duration::from_secs(120), |m| {
        m.sh("test -e /run/cai-e2e/in-postinst").ok()
    });
    if !in_postinst {
        let _ = update.kill();
        let out = update.wait_with_output().expect("reap cai");
        panic!(
            "dpkg never reached the postinst: {out:?}\n{}",
            m.journal(None)
        );
    }
    let rec = record(m);
    // The engine is stopped before the package is installed, so that it starts once.
    let engine = m.sh(&format!("systemctl is-active {ENGINE}")).stdout;
    if !(rec.contains("a1") && rec.contains("a2") && engine.trim() != "active") {
        m.ok("rm -f /run/cai-e2e/hold-postinst");
        panic!("in the postinst: record {rec:?}, engine {engine:?}");
    }
    m.ok("kill -KILL $(pidof cai)");
    let status = update.wait().expect("reap nsenter");
    assert!(!status.success(), "cai was not killed: {status:?}");
    m.ok("rm /run/cai-e2e/hold-postinst");
    assert!(
        m.wait_for(Duration::from_secs(120), |m| !m.sh("pidof dpkg").ok()),
        "dpkg did not finish after cai was killed"
    );
}

/// Test 5: `cai` killed (SIGKILL) after the agents stopped and before they were restarted; then
/// `cai system resume` starts exactly the recorded ones and clears the record.
#[test]
fn resume_after_cai_was_killed_mid_update_starts_exactly_the_recorded_containers() {
    let m = Machine::boot();
    m.install(SYSBOX_OLD);
    m.run_agent("a1");
    m.run_agent("a2");
    // Stopped before the update: resume must leave it stopped.
    m.run_agent("idle");
    m.docker("stop idle");
    m.target(SYSBOX_NEW);

    kill_cai_in_postinst(&m);
    let out = timed("cai system resume", || m.sh("cai system resume"));
    assert!(out.ok(), "{out}\n{}", m.journal(None));
    assert_eq!(m.state("a1"), "running 0", "{out}");
    assert_eq!(m.state("a2"), "running 0", "{out}");
    assert!(m.state("idle").starts_with("exited"), "{out}");
    assert_eq!(record(&m), "");
    m.finish();
}

/// Test 5, reboot variant: the same interrupted update, then the machine powered off and booted
/// again (the record and the engine's data root survive): `cai system resume` still brings back
/// the recorded containers.
#[test]
fn resume_after_a_reboot_mid_update_starts_the_recorded_containers() {
    let mut m = Machine::boot_with(Root::Persistent);
    m.install(SYSBOX_OLD);
    m.run_agent("a1");
    m.run_agent("a2");
    m.target(SYSBOX_NEW);

    kill_cai_in_postinst(&m);
    timed("reboot", || m.reboot());
    let rec = record(&m);
    assert!(
        rec.contains("a1") && rec.contains("a2"),
        "record after reboot: {rec:?}"
    );
    let out = timed("cai system resume after reboot", || {
        m.sh("cai system resume")
    });
    assert!(out.ok(), "{out}\n{}", m.journal(None));
    assert_eq!(m.state("a1"), "running 0", "{out}");
    assert_eq!(m.state("a2"), "running 0", "{out}");
    assert_eq!(record(&m), "");
    m.finish();
}

/// The unit `cai update` installs is enabled: after a reboot the engine runs again without anyone
/// starting it (an engine that stays down after a reboot leaves every agent down).
#[test]
fn the_engine_cai_installed_starts_at_boot() {
    let mut m = Machine::boot_with(Root::Persistent);
    m.install(SYSBOX_OLD);
    assert_eq!(
        m.ok(&format!("systemctl is-enabled {ENGINE}")).trim(),
        "enabled"
    );
    timed("reboot", || m.reboot());
    assert!(
        m.wait_for(Duration::from_secs(30), |m| m.prop(ENGINE, "ActiveState")
            == "active"),
        "the engine did not start at boot:\n{}",
        m.journal(Some(ENGINE))
    );
    m.finish();
}

/// Test 3 [P77]: the unit allows 3 starts in 60 s and every start counts (only a daemon-reload,
/// which the sysbox package's scripts run, forgets them). After the install and two restarts (the
/// package's scripts, an earlier attempt), an update of the dockerd bundle restarts the engine a
/// fourth time within the minute: systemd refuses that start, and `cai` still completes.
#[test]
fn regression_p77_update_completes_when_the_engine_hit_its_start_limit() {
    let m = Machine::boot();
    m.install(SYSBOX_OLD);
    m.run_agent("a1");
    m.ok(&format!(
        "systemctl restart {ENGINE} && systemctl restart {ENGINE}"
    ));
    m.docker("start a1");
    // The same binaries as a newer bundle version: an update that only restarts the engine.
    m.target_with(SYSBOX_OLD, Some("99.0.0"));

    let out = timed("cai update --stop-containers after 3 starts", || {
        m.sh("cai update --stop-containers")
    });
    let systemd = m
        .sh("journalctl -b _PID=1 -o short-precise --no-pager | grep -E 'containai-docker|sysbox'")
        .stdout;
    assert!(out.ok(), "{out}\n{systemd}");
    assert!(
        systemd.contains("Start request repeated too quickly"),
        "the engine never hit its start limit, so this test proves nothing:\n{systemd}"
    );
    assert_eq!(m.ok("cat /opt/containai/VERSION").trim(), "99.0.0");
    assert_eq!(m.prop(ENGINE, "ActiveState"), "active");
    assert_eq!(m.state("a1"), "running 0", "{out}");
    assert_eq!(record(&m), "");
    m.finish();
}

/// When dockerd dies without its stop hook (SIGKILL), systemd restarts it and the new dockerd
/// stops the old containers itself while it starts; nothing starts them again. `cai doctor`
/// names them and prints the command that does.
#[test]
fn doctor_reports_the_containers_the_engine_stopped_when_it_last_started() {
    let m = Machine::boot();
    m.install(SYSBOX_OLD);
    m.run_agent("a1");
    m.run_agent("a2");
    m.run_agent("idle");
    m.docker("stop idle");
    let check = |m: &Machine| {
        let out = m.sh("cai doctor --json --check containers.stopped_at_start");
        let doc: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json: {e}: {out}"));
        doc["reports"][0]["checks"][0].clone()
    };
    assert_eq!(check(&m)["status"], "ok", "{}", check(&m));

    let pid = m.prop(ENGINE, "MainPID");
    m.ok(&format!("kill -KILL {pid}"));
    let back = m.wait_for(Duration::from_secs(60), |m| {
        m.prop(ENGINE, "ActiveState") == "active"
            && m.prop(ENGINE, "MainPID") != pid
            && m.sh(&format!(
                "docker -H unix://{} version",
                support::nspawn::SOCKET
            ))
            .ok()
    });
    assert!(
        back,
        "the engine did not come back: {}",
        m.journal(Some(ENGINE))
    );
    assert!(m.state("a1").starts_with("exited"), "{}", m.state("a1"));

    let found = check(&m);
    assert_eq!(found["status"], "warn", "{found}");
    let summary = found["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("a1") && summary.contains("a2"), "{found}");
    assert!(!summary.contains("idle"), "{found}");
    let remediation = found["remediation"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let start = remediation.split(';').next().unwrap_or_default();
    assert!(start.starts_with("docker --host unix://"), "{found}");
    m.ok(start);
    assert_eq!(m.state("a1"), "running 0");
    assert_eq!(m.state("a2"), "running 0");
    m.finish();
}
