//! Rollback of a failed update, end to end under a real systemd (PID 1 of a machine booted with
//! systemd-nspawn), real `dpkg -i` and real dockerd: the fixtures hold broken builds (a dockerd
//! bundle whose engine exits at once, a sysbox package whose postinst fails, one whose
//! `sysbox-runc` reports another build, one that refuses to run a marked container). Each test
//! boots its own machine and checks that the agents run again on the engine that ran before.
//! Needs root, systemd-container and mmdebstrap (`sudo ./scripts/test.sh` installs them).

mod support;

use std::time::Duration;

use support::nspawn::{Machine, SYSBOX_NEW, SYSBOX_OLD};

const ENGINE: &str = "containai-docker.service";
/// The broken builds among the fixtures (`NSPAWN_SYSBOX_BROKEN` and `NSPAWN_DEAD_DOCKERD` in
/// scripts/lib/nspawn.sh).
const SYSBOX_POSTINST_FAILS: &str = "0.6.7+containai.20260302";
const SYSBOX_MISREPORTS: &str = "0.6.7+containai.20260303";
const SYSBOX_MISREPORTED_AS: &str = "0.6.7+containai.20260399";
const SYSBOX_REFUSES_MARKED: &str = "0.6.7+containai.20260304";
const DOCKERD_DIES: &str = "99.0.1";

/// What `cai update --dry-run` must never change: every file `cai` manages (with link targets),
/// the package database's view of sysbox, the engine's state and each container's state.
fn digest(m: &Machine) -> String {
    m.ok(
        "{ find /etc/containai /etc/systemd/system /opt/containai /var/lib/containai /var/cache/containai \
           \\( -type f -o -type l \\) 2>/dev/null | grep -v actions.jsonl | sort | while read -r f; do \
             if [ -L \"$f\" ]; then echo \"$f -> $(readlink \"$f\")\"; else sha256sum \"$f\"; fi; done; \
           dpkg-query -W -f '${Version} ${Status}\\n' sysbox-ce; \
           systemctl is-active containai-docker.service; \
           docker -H unix:///var/run/containai-docker.sock ps -a --format '{{.Names}} {{.State}} {{.StartedAt}}'; \
           echo \"end: $?\"; \
         } 2>&1; true",
    )
}

/// Runs the dry run `command`, which must succeed and leave [`digest`] as it was; returns it.
fn dry_run_changes_nothing(m: &Machine, command: &str) -> support::nspawn::Out {
    let before = digest(m);
    let dry = m.sh(command);
    assert!(dry.ok(), "{dry}");
    assert_eq!(digest(m), before, "the dry run changed the host: {dry}");
    dry
}

/// What runs now: the sysbox build `sysbox-runc` reports and the active dockerd version.
fn versions(m: &Machine) -> (String, String) {
    let sysbox = m
        .ok("sysbox-runc --version | sed -n 's/^[[:space:]]*version:[[:space:]]*//p'")
        .trim()
        .to_string();
    let dockerd = m
        .ok("/opt/containai/bin/dockerd --version | sed 's/^Docker version \\([^,]*\\),.*/\\1/'")
        .trim()
        .to_string();
    (sysbox, dockerd)
}

/// What `cai update` recorded as stopped, or "" when there is no record.
fn record(m: &Machine) -> String {
    m.sh("cat /var/lib/containai/update-state.json 2>/dev/null")
        .stdout
}

/// A host on SYSBOX_OLD and the Debian bundle, with agents a1 and a2 running; returns what runs.
fn host_with_agents() -> (Machine, (String, String)) {
    let m = Machine::boot();
    m.install(SYSBOX_OLD);
    m.run_agent("a1");
    m.run_agent("a2");
    let before = versions(&m);
    assert_eq!(before.0, SYSBOX_OLD);
    (m, before)
}

/// After a failed update: exit 1, the account names `failure`, every agent runs again on the
/// versions that ran `before`, the engine is active and nothing is left recorded.
fn assert_rolled_back(
    m: &Machine,
    out: &support::nspawn::Out,
    failure: &str,
    before: &(String, String),
) {
    assert_eq!(out.code, 1, "{out}\n{}", m.journal(None));
    assert!(out.stderr.contains("the update failed"), "{out}");
    assert!(
        out.stderr.contains(failure),
        "the account does not name {failure:?}: {out}"
    );
    assert!(out.stderr.contains("rolling back"), "{out}");
    assert!(
        out.stderr
            .contains("every agent runs again on the previous engine"),
        "{out}\n{}",
        m.journal(Some(ENGINE))
    );
    assert_eq!(m.prop(ENGINE, "ActiveState"), "active");
    assert_eq!(&versions(m), before, "{out}");
    for name in ["a1", "a2"] {
        assert_eq!(m.state(name), "running 0", "{name}: {out}");
    }
    assert_eq!(record(m), "", "the record was not cleared: {out}");
    assert!(
        m.ok("dpkg-query -W -f '${Status}' sysbox-ce")
            .contains("install ok installed"),
        "{}",
        m.ok("dpkg-query -W -f '${Status}' sysbox-ce")
    );
}

/// A bundle whose dockerd exits at once: the engine fails to start, the update rolls the links
/// back and the agents run on the old engine. The engine had started three times within the
/// minute already, so systemd's start limit refuses starts during the update [P77]; the
/// rollback's own restart still brings the engine back. A dry run of the same update changes
/// nothing.
#[test]
fn a_dockerd_bundle_that_dies_at_once_rolls_back_to_the_old_engine() {
    let (m, before) = host_with_agents();
    m.target_with(SYSBOX_OLD, Some(DOCKERD_DIES));
    dry_run_changes_nothing(&m, "cai update --dry-run --stop-containers");

    m.ok(&format!(
        "systemctl restart {ENGINE} && systemctl restart {ENGINE}"
    ));
    m.docker("start a1 a2");
    let out = m.sh("cai update --stop-containers");
    assert_rolled_back(&m, &out, ENGINE, &before);
    assert_eq!(
        m.ok("readlink /opt/containai/bin/dockerd").trim(),
        format!("../docker/{}/dockerd", before.1)
    );
    let systemd = m
        .sh("journalctl -b _PID=1 -o short-precise --no-pager | grep containai-docker")
        .stdout;
    assert!(
        systemd.contains("Start request repeated too quickly"),
        "the engine never hit its start limit, so this test proves nothing:\n{systemd}"
    );
    m.finish();
}

/// A sysbox package whose postinst fails (a dpkg error): the kept package is installed again.
#[test]
fn a_sysbox_package_whose_postinst_fails_rolls_back() {
    let (m, before) = host_with_agents();
    m.target(SYSBOX_POSTINST_FAILS);
    dry_run_changes_nothing(&m, "cai update --dry-run --stop-containers");

    let out = m.sh("cai update --stop-containers");
    assert_rolled_back(&m, &out, "dpkg", &before);
    assert!(
        out.stderr
            .contains(&format!("restored sysbox {SYSBOX_OLD}")),
        "{out}"
    );
    assert_eq!(
        m.ok("dpkg-query -W -f '${Version}' sysbox-ce").trim(),
        format!("{SYSBOX_OLD}-0")
    );
    m.finish();
}

/// A package that installs cleanly but whose `sysbox-runc --version` reports another build: the
/// core's health gate refuses it and the update rolls back.
#[test]
fn a_sysbox_that_reports_another_build_rolls_back() {
    let (m, before) = host_with_agents();
    m.target(SYSBOX_MISREPORTS);
    dry_run_changes_nothing(&m, "cai update --dry-run --stop-containers");

    let out = m.sh("cai update --stop-containers");
    assert_rolled_back(
        &m,
        &out,
        &format!("sysbox is {SYSBOX_MISREPORTED_AS}, expected {SYSBOX_MISREPORTS}"),
        &before,
    );
    m.finish();
}

/// One agent that the new runtime refuses to start: the whole update rolls back, and both agents
/// run on the old engine.
#[test]
fn an_agent_that_does_not_start_on_the_new_engine_rolls_back_every_agent() {
    let m = Machine::boot();
    m.install(SYSBOX_OLD);
    m.run_agent("a1");
    m.docker(&format!(
        "run -d --init --network none -e CAI_E2E_REFUSE=1 --label containai.managed=true --name a2 {} sleep 1000",
        support::nspawn::IMAGE
    ));
    let before = versions(&m);
    m.target(SYSBOX_REFUSES_MARKED);
    dry_run_changes_nothing(&m, "cai update --dry-run --stop-containers");

    let out = m.sh("cai update --stop-containers");
    assert_rolled_back(
        &m,
        &out,
        "container a2 did not start on the new engine",
        &before,
    );
    m.finish();
}

/// `cai` SIGKILLed while the rollback reinstalls the kept package (its postinst held): the update
/// state names the rollback's phase, and `cai system resume` finishes the rollback.
#[test]
fn resume_finishes_a_rollback_that_was_killed() {
    let (m, before) = host_with_agents();
    m.target(SYSBOX_MISREPORTS);
    m.ok("mkdir -p /run/cai-e2e && : > /run/cai-e2e/hold-postinst");
    let mut update = m.spawn("exec cai update --stop-containers");
    let in_postinst = |m: &Machine| m.sh("test -e /run/cai-e2e/in-postinst").ok();
    let release = |m: &Machine| m.ok("rm -f /run/cai-e2e/hold-postinst");
    // The update's own install first: let it through, then hold the rollback's.
    if !m.wait_for(Duration::from_secs(120), in_postinst) {
        release(&m);
        let _ = update.kill();
        panic!(
            "dpkg never reached the update's postinst\n{}",
            m.journal(None)
        );
    }
    m.ok("rm -f /run/cai-e2e/hold-postinst; sleep 0.5; rm -f /run/cai-e2e/in-postinst; : > /run/cai-e2e/hold-postinst");
    if !m.wait_for(Duration::from_secs(120), in_postinst) {
        release(&m);
        let out = update.wait_with_output().expect("reap cai");
        panic!(
            "the rollback never reinstalled the kept package: {out:?}\n{}",
            m.journal(None)
        );
    }
    let rec = record(&m);
    if !(rec.contains("\"phase\": \"sysbox\"") && rec.contains("a1") && rec.contains("a2")) {
        release(&m);
        panic!("in the rollback's postinst, the record is {rec:?}");
    }
    m.ok("kill -KILL $(pidof cai)");
    let status = update.wait().expect("reap nsenter");
    assert!(!status.success(), "cai was not killed: {status:?}");
    release(&m);
    assert!(
        m.wait_for(Duration::from_secs(120), |m| !m.sh("pidof dpkg").ok()),
        "dpkg did not finish after cai was killed"
    );

    let out = m.sh("cai system resume");
    assert!(out.ok(), "{out}\n{}", m.journal(None));
    assert!(out.stderr.contains("interrupted rollback"), "{out}");
    assert_eq!(versions(&m), before, "{out}");
    for name in ["a1", "a2"] {
        assert_eq!(m.state(name), "running 0", "{name}: {out}");
    }
    assert_eq!(record(&m), "", "{out}");
    m.finish();
}

/// `cai update --rollback` after a good update restores the previous versions and restarts the
/// agents; without --stop-containers it refuses while they run, its dry run changes nothing, and
/// `--require-rollback` refuses an update whose sysbox package could not be restored.
#[test]
fn rollback_on_purpose_after_a_good_update() {
    let (m, before) = host_with_agents();
    m.target(SYSBOX_NEW);

    // The old package out of the cache: it could not be restored, and --require-rollback refuses
    // before anything stops.
    m.ok("mkdir -p /root/aside && mv /var/cache/containai/sysbox-ce_*.deb /root/aside/");
    let refused = m.sh("cai update --stop-containers --require-rollback");
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused.stderr.contains(&format!(
            "sysbox {SYSBOX_OLD} cannot be restored: its package is not cached"
        )),
        "{refused}"
    );
    assert_eq!(m.state("a1"), "running 0");
    assert_eq!(versions(&m), before);
    m.ok("mv /root/aside/*.deb /var/cache/containai/");

    let out = m.sh("cai update --stop-containers --require-rollback");
    assert!(out.ok(), "{out}\n{}", m.journal(None));
    assert_eq!(versions(&m).0, SYSBOX_NEW);

    let refused = m.sh("cai update --rollback");
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("a1"), "{refused}");

    let dry = dry_run_changes_nothing(&m, "cai update --rollback --dry-run --stop-containers");
    assert!(
        dry.stderr
            .contains(&format!("would restore sysbox {SYSBOX_OLD}")),
        "{dry}"
    );

    let out = m.sh("cai update --rollback --stop-containers");
    assert!(out.ok(), "{out}\n{}", m.journal(None));
    assert_eq!(versions(&m), before, "{out}");
    assert_eq!(
        m.ok("dpkg-query -W -f '${Version}' sysbox-ce").trim(),
        format!("{SYSBOX_OLD}-0")
    );
    for name in ["a1", "a2"] {
        assert_eq!(m.state(name), "running 0", "{name}: {out}");
    }
    assert_eq!(record(&m), "");
    // The set was restored: a second rollback has nothing to go back to.
    let again = m.sh("cai update --rollback --stop-containers");
    assert_eq!(again.code, 1, "{again}");
    assert!(again.stderr.contains("nothing to roll back to"), "{again}");
    m.finish();
}
