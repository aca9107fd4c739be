//! This run's installs: the commit guard of an update, as rustup's transaction records a change
//! before making it and commits only at the end. Each install primitive records its component
//! here before it changes anything ([`begin`], pending); only the core's own check marks it
//! verified (`update::verify`: what the installed binary itself reports equals the release target's
//! full version [P24, P73]). Clearing the record of stopped containers refuses while any install
//! of this run is not verified ([`check_verified`]), so a script that skips the verification, or
//! carries on past its failure, cannot clear it: the containers stay recorded for `cai system
//! resume` or the next `cai update`.
//!
//! Kept in memory for this process only: a later run (`cai system resume`) installed nothing
//! itself, and the next `cai update` compares versions again from the binaries. This module never
//! marks an install verified on a script's word.

use std::cell::RefCell;

use super::Host;

/// What an install primitive installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// A `.deb` through `packages::install_deb`: the one package `cai` installs is the release's
    /// sysbox.
    Sysbox,
    /// A bundle through `dockerd::install`.
    Dockerd,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::Sysbox => "sysbox",
            Component::Dockerd => "dockerd",
        }
    }
}

/// Where one install stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    /// Recorded before it was made; not checked since.
    Pending,
    /// The installed binary reports the target.
    Verified,
    /// The last check failed, with why.
    Failed(String),
}

/// This run's installs, in the order they were first made.
#[derive(Debug, Default)]
pub struct Installs {
    entries: RefCell<Vec<(Component, Check)>>,
    /// This run restarted (or stopped) the engine while holding the update lock.
    engine_restarted: std::cell::Cell<bool>,
    /// ... and did so after its last install, so the engine runs what was installed.
    restarted_since_install: std::cell::Cell<bool>,
    /// The outcome of the last health gate (`update::health`), when one ran.
    health: RefCell<Option<Result<(), String>>>,
}

/// An install of this run that was not verified, named by [`check_verified`].
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to clear the update state: {0}; the record of stopped containers is kept\nhelp: cai update retries the update (cai system resume starts the recorded containers without it)"
)]
pub struct Unverified(String);

/// Records that `component` is about to be installed, before anything changes: it is pending
/// until `update::verify` passes, so a failed or half-done install is never taken for a verified one.
/// Installing it again makes it pending again.
pub fn begin(host: &Host, component: Component) {
    // What the engine runs changes with this install: a gate passed before it says nothing.
    host.installs.restarted_since_install.set(false);
    *host.installs.health.borrow_mut() = None;
    let mut entries = host.installs.entries.borrow_mut();
    match entries.iter_mut().find(|(c, _)| *c == component) {
        Some(entry) => entry.1 = Check::Pending,
        None => entries.push((component, Check::Pending)),
    }
}

/// The components this run installed, in the order they were first installed.
pub fn components(host: &Host) -> Vec<Component> {
    host.installs
        .entries
        .borrow()
        .iter()
        .map(|(c, _)| *c)
        .collect()
}

/// Records the outcome of the core's own check of `component` (see `update::verify`): verified,
/// or failed with why. Only that check calls it.
pub fn settle(host: &Host, component: Component, outcome: Result<(), String>) {
    let check = match outcome {
        Ok(()) => Check::Verified,
        Err(why) => Check::Failed(why),
    };
    if let Some(entry) = host
        .installs
        .entries
        .borrow_mut()
        .iter_mut()
        .find(|(c, _)| *c == component)
    {
        entry.1 = check;
    }
}

/// Records that this run restarted or stopped the engine: from then on the record clears only
/// after a health gate passed.
pub fn engine_restarted(host: &Host) {
    host.installs.engine_restarted.set(true);
    host.installs.restarted_since_install.set(true);
    *host.installs.health.borrow_mut() = None;
}

/// Records the outcome of the core's health gate after the engine restart (`update::health`).
pub fn settle_health(host: &Host, outcome: Result<(), String>) {
    *host.installs.health.borrow_mut() = Some(outcome);
}

/// Whether this run must pass the health gate before its record clears: it installed something
/// or restarted the engine.
pub fn needs_health(host: &Host) -> bool {
    host.installs.engine_restarted.get() || !host.installs.entries.borrow().is_empty()
}

/// Every install of this run was verified by `update::verify` (trivially so when there was none),
/// and, when it installed anything or restarted the engine, the health gate passed after that;
/// otherwise what was not, each with why.
pub fn check_verified(host: &Host) -> Result<(), Unverified> {
    let entries = host.installs.entries.borrow();
    let mut open: Vec<String> = entries
        .iter()
        .filter_map(|(component, check)| match check {
            Check::Verified => None,
            Check::Pending => Some(format!(
                "this run installed {} and did not verify it (update::verify())",
                component.name()
            )),
            Check::Failed(why) => Some(format!(
                "this run installed {} and its verification failed: {why}",
                component.name()
            )),
        })
        .collect();
    let installed = !entries.is_empty();
    drop(entries);
    if installed && !host.installs.restarted_since_install.get() {
        open.push(
            "this run installed and did not restart the engine since, so the engine does not run what was installed (units::restart)".into(),
        );
    }
    if needs_health(host) {
        match &*host.installs.health.borrow() {
            Some(Ok(())) => {}
            Some(Err(why)) => open.push(format!(
                "the health check after the engine restart failed: {why}"
            )),
            None => open.push(
                "this run changed the engine and did not check its health (update::health())"
                    .into(),
            ),
        }
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(Unverified(open.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Mode;
    use crate::host::HostOptions;

    fn set(host: &Host, component: Component, check: Check) {
        let mut entries = host.installs.entries.borrow_mut();
        let entry = entries.iter_mut().find(|(c, _)| *c == component).unwrap();
        entry.1 = check;
    }

    /// The guard's states: nothing installed clears; an install is pending until verified, a
    /// failed check is named with its reason, and installing again makes it pending again.
    #[test]
    fn only_verified_installs_let_the_record_clear() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(HostOptions::for_tests(root.path(), Mode::Live)).unwrap();
        assert!(check_verified(&host).is_ok());
        assert!(
            components(&host).is_empty(),
            "nothing installed, nothing to check"
        );

        begin(&host, Component::Dockerd);
        begin(&host, Component::Sysbox);
        let err = check_verified(&host).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "refusing to clear the update state: this run installed dockerd and did not verify it (update::verify()); this run installed sysbox and did not verify it"
            ),
            "{err}"
        );
        assert!(err.contains("the record of stopped containers is kept\nhelp: cai update"));

        set(&host, Component::Dockerd, Check::Verified);
        set(
            &host,
            Component::Sysbox,
            Check::Failed("sysbox is 0.6.6, expected 0.6.7+containai.1".into()),
        );
        let err = check_verified(&host).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "refusing to clear the update state: this run installed sysbox and its verification failed: sysbox is 0.6.6, expected 0.6.7+containai.1;"
            ),
            "{err}"
        );
        assert!(!err.contains("dockerd"), "{err}");

        set(&host, Component::Sysbox, Check::Verified);
        // Verified installs still wait for the health gate after the engine restart.
        let err = check_verified(&host).unwrap_err().to_string();
        assert!(
            err.contains(
                "this run changed the engine and did not check its health (update::health())"
            ),
            "{err}"
        );
        // ... and for an engine restarted since the last install.
        assert!(err.contains("did not restart the engine since"), "{err}");
        engine_restarted(&host);
        settle_health(
            &host,
            Err("container a1 did not start on the new engine".into()),
        );
        let err = check_verified(&host).unwrap_err().to_string();
        assert!(
            err.contains(
                "the health check after the engine restart failed: container a1 did not start"
            ),
            "{err}"
        );
        settle_health(&host, Ok(()));
        assert!(check_verified(&host).is_ok());
        // A restart of the engine after the gate passed needs the gate again.
        engine_restarted(&host);
        assert!(check_verified(&host).is_err());
        settle_health(&host, Ok(()));
        // An install after the gate passed: pending, not restarted, not checked.
        begin(&host, Component::Dockerd);
        let err = check_verified(&host).unwrap_err().to_string();
        assert!(err.contains("installed dockerd"), "{err}");
        assert!(err.contains("did not restart the engine since"), "{err}");
        assert!(err.contains("did not check its health"), "{err}");
        assert_eq!(host.installs.entries.borrow().len(), 2);
    }
}
