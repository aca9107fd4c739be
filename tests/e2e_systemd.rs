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
    assert_eq!(m.ok("systemctl is-active containai-docker").trim(), "active");
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
    assert!(m.ok("dpkg-query -W -f '${Status}' sysbox-ce").contains("installed"));
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
