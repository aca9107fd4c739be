//! Rollback of an update: what an update replaces is kept before the first change, and restored
//! when the update fails after the agents were stopped (or when the operator asks, `cai update
//! --rollback`), as rustup undoes a failed component install and an image-based host boots the
//! previous deployment.
//!
//! **Keeping.** Before an update changes anything, [`keep`] writes a *rollback set*,
//! `/var/lib/containai/rollback/<run id>/`: the engine unit file and `daemon.json` as they were,
//! the previous sysbox package as `sysbox.deb` when the cache holds the package of the installed
//! version, and `manifest.json` (written last: a set without one is incomplete and never used)
//! naming the dockerd bundle version the links pointed at (its directory stays under
//! `/opt/containai/docker/`) and the sysbox version. What cannot be restored is known before
//! anything stops ([`plan`]), so `--require-rollback` can refuse in time.
//!
//! **Restoring.** [`run`] restores a set in phases: `links` (the bundle links back to the kept
//! version), `files` (unit and `daemon.json`, then `daemon-reload`), `sysbox` (the kept package,
//! with the engine stopped first), `engine` (its start-limit count reset, then restarted, then
//! waited for) and `containers` (every recorded container started). Each phase is written to the
//! update state before it starts ([`super::update::record_rollback`]), so a crash during the
//! rollback leaves a record that `cai system resume` finishes from that phase; every phase can
//! run again. The record of stopped containers clears only once all of them run again.
//!
//! **Pruning.** [`prune`] keeps the newest two sets and the bundle versions the active links and
//! the newest set name; everything older goes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::docker::DockerError;
use super::dockerd::{self, CACHE_DIR, DockerdError};
use super::fs::FsError;
use super::packages::{self, PackageError};
use super::systemd::{self, ENGINE_UNIT, UnitError};
use super::update::{self, RollbackProgress as Progress, UpdateError};
use super::{Host, sysbox};
use crate::effects::Approval;
use crate::plan::release::PackageIdentity;

pub const ROLLBACK_DIR: &str = "/var/lib/containai/rollback";
const MANIFEST: &str = "manifest.json";
const UNIT_COPY: &str = "containai-docker.service";
const CONFIG_COPY: &str = "daemon.json";
const SYSBOX_COPY: &str = "sysbox.deb";
/// The phases of a rollback, in order.
pub const PHASES: [&str; 5] = ["links", "files", "sysbox", "engine", "containers"];
/// How many rollback sets (and so previous bundle versions) are kept.
const KEEP_SETS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(
        "nothing to roll back to: no update kept a rollback set under {ROLLBACK_DIR} (or the last one was restored already)\nhelp: cai update keeps one before it changes anything; cai doctor shows what runs now"
    )]
    NoSet,
    #[error(
        "cannot roll back: this run changed the engine without keeping a rollback set first (update::keep() before the first change), and an older set would restore what ran before an earlier update\nhelp: cai doctor shows what runs now; cai update installs the release target again"
    )]
    NotKept,
    #[error(
        "the rollback set {dir} is unusable: {reason}\nhelp: inspect it; cai update installs the release target again"
    )]
    BadSet { dir: String, reason: String },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Dockerd(#[from] DockerdError),
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    File(#[from] super::files::FileError),
}

/// What a rollback set holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The run that kept it.
    pub run: String,
    /// When, in seconds since the epoch.
    pub created: u64,
    /// The dockerd version the links pointed at, or none.
    pub dockerd: Option<String>,
    /// Whether the engine unit file existed (and is kept).
    pub unit: bool,
    /// Whether `daemon.json` existed (and is kept).
    pub config: bool,
    /// The sysbox version installed, or none.
    pub sysbox: Option<String>,
    /// Whether its package is kept (`sysbox.deb`).
    pub sysbox_deb: bool,
    /// A rollback restored this set already.
    #[serde(default)]
    pub restored: bool,
}

/// What an update would keep, read before anything changes.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub dockerd: Option<String>,
    pub unit: bool,
    pub config: bool,
    pub sysbox: Option<String>,
    /// The cached package of the installed sysbox, when there is one.
    pub sysbox_package: Option<String>,
    /// What a rollback could not restore, one line each
    /// (`sysbox 0.6.6 cannot be restored: its package is not cached`).
    pub missing: Vec<String>,
}

/// What a rollback did, for the operator.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Account {
    /// Why it happened.
    pub reason: String,
    /// The rollback set restored.
    pub set: String,
    /// What it put back, one line each.
    pub restored: Vec<String>,
    /// What it could not put back, one line each.
    pub missing: Vec<String>,
    /// The versions running now.
    pub sysbox: Option<String>,
    pub dockerd: Option<String>,
    /// Recorded containers running again, and those that are not.
    pub running: Vec<String>,
    pub not_running: Vec<String>,
    /// Every kept version runs again and every recorded container runs.
    pub complete: bool,
}

impl crate::effects::FailedMembers for Account {
    fn failed_members(&self) -> Option<String> {
        (!self.complete).then(|| {
            let mut why = self.missing.clone();
            if !self.not_running.is_empty() {
                why.push(format!("not running: {}", self.not_running.join(", ")));
            }
            why.join("; ")
        })
    }
}

fn set_dir(run: &str) -> PathBuf {
    Path::new(ROLLBACK_DIR).join(run)
}

/// Reads what is installed now and whether it could be restored. Reads only (the cache's
/// packages are checked as an install would check them); every mode.
pub fn plan(host: &Host) -> Result<Plan, RollbackError> {
    let dockerd = dockerd::installed(host)?;
    let unit = systemd::read(host, ENGINE_UNIT)?.is_some();
    let config = dockerd::read_config(host)?.is_some();
    let sysbox = sysbox::installed_version(host)
        .ok()
        .flatten()
        .map(|v| v.full);
    let mut missing = Vec::new();
    let sysbox_package = match &sysbox {
        Some(version) => {
            let found = cached_package(host, version);
            if found.is_none() {
                missing.push(format!(
                    "sysbox {version} cannot be restored: its package is not cached in {CACHE_DIR}"
                ));
            }
            found.map(|p| p.display().to_string())
        }
        None => None,
    };
    Ok(Plan {
        dockerd,
        unit,
        config,
        sysbox,
        sysbox_package,
        missing,
    })
}

/// The `.deb` in the artifact cache whose control file names sysbox-ce at `version` for the
/// engine's architecture (a Debian revision ignored), checked by the install's own rules.
fn cached_package(host: &Host, version: &str) -> Option<PathBuf> {
    let arch = host.release().ok()?.arch.as_str().to_string();
    let expected = PackageIdentity {
        name: "sysbox-ce".into(),
        version: version.to_string(),
        architecture: arch,
    };
    let mut names = host.root().list_dir(Path::new(CACHE_DIR)).ok()??;
    names.sort();
    names
        .into_iter()
        .map(|n| Path::new(CACHE_DIR).join(n))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .find(|p| matches!(packages::check_deb(host, p, &expected), Ok(Some(_))))
}

/// Writes this run's rollback set from `plan` (what [`plan`] read): the unit, `daemon.json`,
/// the cached package, then the manifest. Returns the manifest.
pub fn keep(_: Approval, host: &Host, plan: &Plan) -> Result<Manifest, RollbackError> {
    let run = host.gate.run_id().to_string();
    let dir = set_dir(&run);
    let root = host.root();
    root.make_dir_all(&dir)?;
    // What the manifest claims is what was copied here, read now.
    let unit = match systemd::read(host, ENGINE_UNIT)? {
        Some(text) => {
            root.write_atomic(&dir.join(UNIT_COPY), text.as_bytes(), 0o644)?;
            true
        }
        None => false,
    };
    let config = match dockerd::read_config(host)? {
        Some(text) => {
            root.write_atomic(&dir.join(CONFIG_COPY), text.as_bytes(), 0o644)?;
            true
        }
        None => false,
    };
    let mut sysbox_deb = false;
    if let Some(package) = &plan.sysbox_package {
        let verified = packages::verify_deb(host, Path::new(package))?;
        let bytes = std::fs::read(&verified.path).map_err(|e| RollbackError::BadSet {
            dir: root.display_path(&dir).display().to_string(),
            reason: format!("cannot copy {package}: {e}"),
        })?;
        root.write_atomic(&dir.join(SYSBOX_COPY), &bytes, 0o644)?;
        sysbox_deb = true;
    }
    let manifest = Manifest {
        run,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        dockerd: plan.dockerd.clone(),
        unit,
        config,
        sysbox: plan.sysbox.clone(),
        sysbox_deb,
        restored: false,
    };
    write_manifest(host, &manifest)?;
    Ok(manifest)
}

fn write_manifest(host: &Host, manifest: &Manifest) -> Result<(), RollbackError> {
    let mut text = serde_json::to_string_pretty(manifest).expect("a manifest serializes");
    text.push('\n');
    host.root().write_atomic(
        &set_dir(&manifest.run).join(MANIFEST),
        text.as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// The manifest of the set `run`, or why it cannot be used.
pub fn load(host: &Host, run: &str) -> Result<Manifest, RollbackError> {
    let dir = set_dir(run);
    let bad = |reason: String| RollbackError::BadSet {
        dir: host.root().display_path(&dir).display().to_string(),
        reason,
    };
    let text = host
        .root()
        .read_to_string(&dir.join(MANIFEST))?
        .ok_or_else(|| bad("it has no manifest.json (it was never completed)".into()))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if manifest.run != run {
        return Err(bad(format!("its manifest names run {}", manifest.run)));
    }
    Ok(manifest)
}

/// Every complete set, newest first.
pub fn sets(host: &Host) -> Result<Vec<Manifest>, RollbackError> {
    let names = host
        .root()
        .list_dir(Path::new(ROLLBACK_DIR))?
        .unwrap_or_default();
    let mut out: Vec<Manifest> = names
        .iter()
        .filter_map(|n| load(host, &n.to_string_lossy()).ok())
        .collect();
    out.sort_by(|a, b| (b.created, &b.run).cmp(&(a.created, &a.run)));
    Ok(out)
}

/// The set a rollback now restores: the one a rollback in progress names; else the one this run
/// kept; else the one the interrupted update that left the record kept; else, when this run has
/// not changed the engine (`cai update --rollback`), the newest set not restored yet. A run that changed the engine without keeping a set has nothing to go back
/// to: an older set would restore what ran before an earlier update.
pub fn current(host: &Host) -> Result<Manifest, RollbackError> {
    let state = update::read_state(host)?;
    if let Some(progress) = state.as_ref().and_then(|s| s.rollback.as_ref()) {
        return load(host, &progress.set);
    }
    let sets = sets(host)?;
    if let Some(own) = sets.iter().find(|m| m.run == host.gate.run_id()) {
        return Ok(own.clone());
    }
    // An update that died after it kept its set and stopped the agents: what it may have half
    // replaced is restored from the set it kept.
    if let Some(interrupted) = state
        .as_ref()
        .and_then(|s| sets.iter().find(|m| m.run == s.run && !m.restored))
    {
        return Ok(interrupted.clone());
    }
    if super::installs::needs_health(host) {
        return Err(RollbackError::NotKept);
    }
    sets.into_iter()
        .next()
        .filter(|m| !m.restored)
        .ok_or(RollbackError::NoSet)
}

/// Restores the current set ([`current`]) for `reason`, from the phase a rollback in progress
/// reached (a crashed one is finished), and starts every recorded container. The record clears
/// once they all run; the account says what was restored, what runs now and what does not.
pub fn run(approval: Approval, host: &Host, reason: &str) -> Result<Account, RollbackError> {
    let in_progress = update::read_state(host)?.and_then(|s| s.rollback);
    let manifest = current(host)?;
    let reason = in_progress
        .as_ref()
        .map_or_else(|| reason.to_string(), |p| p.reason.clone());
    let first = in_progress
        .as_ref()
        .and_then(|p| PHASES.iter().position(|x| *x == p.phase))
        .unwrap_or(0);
    let dir = set_dir(&manifest.run);
    let mut account = Account {
        reason: reason.clone(),
        set: host.root().display_path(&dir).display().to_string(),
        ..Account::default()
    };
    for phase in &PHASES[first..] {
        update::record_rollback(
            approval.again(),
            host,
            Progress {
                set: manifest.run.clone(),
                phase: (*phase).to_string(),
                reason: reason.clone(),
            },
        )?;
        // A phase that fails is named in the account and the next ones still run: the engine
        // and the agents come back on whatever could be restored, never left down for a retry
        // of the same failing step.
        let done = match *phase {
            "links" => restore_links(&approval, host, &manifest, &mut account),
            "files" => restore_files(&approval, host, &manifest, &dir, &mut account),
            "sysbox" => restore_sysbox(&approval, host, &manifest, &dir, &mut account),
            "engine" => restart_engine(&approval, host),
            _ => start_recorded(&approval, host),
        };
        if let Err(e) = done {
            account.missing.push(format!(
                "the rollback's {phase} step failed: {}",
                e.to_string().lines().next().unwrap_or_default()
            ));
        }
    }
    // What runs now, read back from the binaries and the engine.
    account.dockerd = dockerd::installed(host).ok().flatten();
    account.sysbox = sysbox::installed_version(host)
        .ok()
        .flatten()
        .map(|v| v.full);
    if let (Some(kept), Some(now)) = (&manifest.dockerd, &account.dockerd)
        && kept != now
    {
        account
            .missing
            .push(format!("dockerd is {now}, expected the kept {kept}"));
    }
    if manifest.sysbox_deb
        && let Some(kept) = &manifest.sysbox
        && !same_sysbox(account.sysbox.as_deref(), kept)
    {
        account.missing.push(format!(
            "sysbox is {}, expected the kept {kept}",
            account.sysbox.as_deref().unwrap_or("not installed")
        ));
    }
    let recorded = update::read_state(host)?
        .map(|s| s.containers)
        .unwrap_or_default();
    for c in &recorded {
        match host.docker().inspect(&c.id) {
            Ok(d) if d.running => account.running.push(c.name.clone()),
            Err(DockerError::NotFound(_)) => {}
            _ if host.no_restart.get() => {}
            _ => account.not_running.push(c.name.clone()),
        }
    }
    account.complete = account.missing.is_empty() && account.not_running.is_empty();
    let mut restored = manifest.clone();
    restored.restored = true;
    write_manifest(host, &restored)?;
    if account.not_running.is_empty() {
        update::clear_after_rollback(approval.again(), host)?;
    }
    Ok(account)
}

/// What [`run`] would restore, read only (a dry run's plan): the current set, each piece it
/// would put back, what it could not, and the recorded containers it would start.
pub fn preview(host: &Host, reason: &str) -> Result<Account, RollbackError> {
    let manifest = match current(host) {
        // A dry run kept nothing: what it would restore is the set this run would have kept.
        Err(RollbackError::NoSet | RollbackError::NotKept) if host.gate.is_dry_run() => {
            let plan = plan(host)?;
            Manifest {
                run: host.gate.run_id().to_string(),
                created: 0,
                dockerd: plan.dockerd,
                unit: plan.unit,
                config: plan.config,
                sysbox: plan.sysbox,
                sysbox_deb: plan.sysbox_package.is_some(),
                restored: false,
            }
        }
        other => other?,
    };
    let mut account = Account {
        reason: reason.to_string(),
        set: host
            .root()
            .display_path(&set_dir(&manifest.run))
            .display()
            .to_string(),
        dockerd: manifest.dockerd.clone(),
        sysbox: manifest.sysbox.clone(),
        complete: true,
        ..Account::default()
    };
    if let Some(v) = &manifest.dockerd {
        account.restored.push(format!("dockerd {v}"));
    }
    if manifest.unit {
        account.restored.push(ENGINE_UNIT.to_string());
    }
    if manifest.config {
        account.restored.push("daemon.json".into());
    }
    if let Some(v) = &manifest.sysbox {
        if manifest.sysbox_deb {
            account.restored.push(format!("sysbox {v}"));
        } else {
            account.missing.push(format!(
                "sysbox {v} cannot be restored: its package was not cached"
            ));
        }
    }
    account.running = update::read_state(host)?
        .map(|s| s.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    Ok(account)
}

fn same_sysbox(now: Option<&str>, kept: &str) -> bool {
    use crate::plan::version::parse_version;
    match (now.map(parse_version), parse_version(kept)) {
        (Some(Ok(now)), Ok(kept)) => now.without_revision() == kept.without_revision(),
        _ => false,
    }
}

fn restore_links(
    approval: &Approval,
    host: &Host,
    manifest: &Manifest,
    account: &mut Account,
) -> Result<(), RollbackError> {
    let Some(kept) = &manifest.dockerd else {
        return Ok(());
    };
    if dockerd::installed(host).ok().flatten().as_ref() != Some(kept) {
        dockerd::activate(approval.again(), host, kept)?;
        account.restored.push(format!("dockerd {kept}"));
    }
    Ok(())
}

fn restore_files(
    approval: &Approval,
    host: &Host,
    manifest: &Manifest,
    dir: &Path,
    account: &mut Account,
) -> Result<(), RollbackError> {
    let root = host.root();
    let copy = |name: &str| -> Result<String, RollbackError> {
        root.read_to_string(&dir.join(name))?
            .ok_or_else(|| RollbackError::BadSet {
                dir: root.display_path(dir).display().to_string(),
                reason: format!("{name} is missing"),
            })
    };
    if manifest.unit {
        let text = copy(UNIT_COPY)?;
        if systemd::read(host, ENGINE_UNIT)?.as_deref() != Some(&text) {
            systemd::write(approval.again(), host, ENGINE_UNIT, &text)?;
            account.restored.push(ENGINE_UNIT.to_string());
        }
    }
    if manifest.config {
        let text = copy(CONFIG_COPY)?;
        if dockerd::read_config(host)?.as_deref() != Some(&text) {
            dockerd::write_config(approval.again(), host, &text)?;
            account.restored.push("daemon.json".into());
        }
    }
    if systemd::running(host)? {
        systemd::daemon_reload(approval.again(), host)?;
    }
    Ok(())
}

fn restore_sysbox(
    approval: &Approval,
    host: &Host,
    manifest: &Manifest,
    dir: &Path,
    account: &mut Account,
) -> Result<(), RollbackError> {
    let Some(kept) = &manifest.sysbox else {
        return Ok(());
    };
    let now = sysbox::installed_version(host)
        .ok()
        .flatten()
        .map(|v| v.full);
    if same_sysbox(now.as_deref(), kept) {
        return Ok(());
    }
    if !manifest.sysbox_deb {
        account.missing.push(format!(
            "sysbox {kept} cannot be restored: its package was not cached"
        ));
        return Ok(());
    }
    // The package's scripts restart sysbox and with it the engine: stopped first, it starts once,
    // in the next phase.
    systemd::stop(approval.again(), host, ENGINE_UNIT)?;
    let deb = packages::verify_deb(host, &dir.join(SYSBOX_COPY))?;
    packages::install_deb(approval.again(), host, &deb)?;
    account.restored.push(format!("sysbox {kept}"));
    Ok(())
}

fn restart_engine(approval: &Approval, host: &Host) -> Result<(), RollbackError> {
    if !systemd::running(host)? {
        return Ok(());
    }
    // The failed update's restarts count against the unit's start limit: the rollback's own
    // start must not be refused by them.
    systemd::reset_failed(approval.again(), host, ENGINE_UNIT)?;
    systemd::restart(approval.again(), host, ENGINE_UNIT)?;
    // Answering or not, the next phase tells by what starts; the account says what runs.
    let _ = super::docker::wait_engine(host, update::HEALTH_WAIT_SECS);
    Ok(())
}

fn start_recorded(approval: &Approval, host: &Host) -> Result<(), RollbackError> {
    // `--no-restart`: the operator chose to leave them stopped, on either engine.
    if host.no_restart.get() {
        return Ok(());
    }
    let ids: Vec<String> = update::read_state(host)?
        .map(|s| s.containers.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    // Resumed here after the engine step, the engine may still be down.
    if !ids.is_empty() && !host.docker().status().reachable {
        restart_engine(approval, host)?;
    }
    if !ids.is_empty() {
        // Failures are read back per container for the account.
        let _ = host.docker().start(approval.again(), &ids);
    }
    Ok(())
}

/// Removes this run's set when the run changed nothing (it stopped and restarted the agents
/// only): restoring it would restore what runs, and hide the set of the update before. Best
/// effort.
pub fn discard_own(_: Approval, host: &Host) {
    let run = host.gate.run_id();
    if load(host, run).is_err() {
        return;
    }
    let _ = host.root().remove(&set_dir(run).join(MANIFEST));
    if let Ok(sets) = host.root().open_dir(Path::new(ROLLBACK_DIR)) {
        dockerd::remove_tree(&sets, run);
    }
}

/// What pruning would remove: rollback sets beyond the newest [`KEEP_SETS`], and bundle
/// versions neither active nor named by a kept set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pruned {
    pub sets: Vec<String>,
    pub bundles: Vec<String>,
}

pub fn prunable(host: &Host) -> Result<Pruned, RollbackError> {
    let sets = sets(host)?;
    // No bundle is pruned unless the active one is known: an active version that cannot be read
    // must never look unused.
    let bundles = match dockerd::installed(host) {
        Ok(Some(active)) => {
            let keep: Vec<String> = sets
                .iter()
                .take(KEEP_SETS - 1)
                .filter_map(|m| m.dockerd.clone())
                .chain([active])
                .collect();
            dockerd::versions(host)?
                .into_iter()
                .filter(|v| !keep.contains(v))
                .collect()
        }
        _ => Vec::new(),
    };
    // Sets beyond the newest two, and directories without a manifest (a keep that never
    // finished) other than this run's.
    let complete: Vec<&str> = sets.iter().map(|m| m.run.as_str()).collect();
    let mut old: Vec<String> = sets.iter().skip(KEEP_SETS).map(|m| m.run.clone()).collect();
    for name in host
        .root()
        .list_dir(Path::new(ROLLBACK_DIR))?
        .unwrap_or_default()
    {
        let name = name.to_string_lossy().into_owned();
        if !complete.contains(&name.as_str())
            && name != host.gate.run_id()
            && !name.starts_with('.')
        {
            old.push(name);
        }
    }
    old.sort();
    Ok(Pruned { sets: old, bundles })
}

/// Removes what [`prunable`] names.
pub fn prune(approval: Approval, host: &Host, what: &Pruned) -> Result<(), RollbackError> {
    for version in &what.bundles {
        dockerd::remove_version(approval.again(), host, version)?;
    }
    if what.sets.is_empty() {
        return Ok(());
    }
    let root = host.root();
    let sets = root.open_dir(Path::new(ROLLBACK_DIR))?;
    for run in &what.sets {
        // The manifest first: a set without one is never used, whatever is left of it.
        root.remove(&set_dir(run).join(MANIFEST))?;
        dockerd::remove_tree(&sets, run);
    }
    Ok(())
}

impl crate::effects::FailedMembers for Pruned {}
impl crate::effects::FailedMembers for Plan {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Mode;
    use crate::host::HostOptions;

    fn manifest(run: &str, created: u64, dockerd: &str) -> Manifest {
        Manifest {
            run: run.into(),
            created,
            dockerd: Some(dockerd.into()),
            unit: true,
            config: true,
            sysbox: Some("0.6.7+containai.1".into()),
            sysbox_deb: false,
            restored: false,
        }
    }

    /// Sets are read newest first; only complete ones (with a manifest naming their own run)
    /// count; pruning keeps the newest two sets and the bundle the newest set names, and removes
    /// the rest, files and directories.
    #[test]
    fn pruning_keeps_the_newest_two_sets_and_the_previous_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(HostOptions::for_tests(dir.path(), Mode::Live)).unwrap();
        for (m, extra) in [
            (manifest("r1", 100, "1.0.0"), true),
            (manifest("r3", 300, "3.0.0"), false),
            (manifest("r2", 200, "2.0.0"), false),
        ] {
            write_manifest(&host, &m).unwrap();
            if extra {
                let unit = dir
                    .path()
                    .join(format!("var/lib/containai/rollback/{}", m.run));
                std::fs::write(unit.join(UNIT_COPY), "[Unit]\n").unwrap();
            }
        }
        // Incomplete (no manifest) and foreign (a manifest of another run): never used.
        std::fs::create_dir_all(dir.path().join("var/lib/containai/rollback/r9")).unwrap();
        let copied = dir.path().join("var/lib/containai/rollback/r8");
        std::fs::create_dir_all(&copied).unwrap();
        std::fs::copy(
            dir.path()
                .join("var/lib/containai/rollback/r3/manifest.json"),
            copied.join(MANIFEST),
        )
        .unwrap();
        for v in ["1.0.0", "2.0.0", "3.0.0", ".4.0.0.cai-new-1"] {
            std::fs::create_dir_all(dir.path().join("opt/containai/docker").join(v)).unwrap();
        }

        let runs: Vec<String> = sets(&host).unwrap().into_iter().map(|m| m.run).collect();
        assert_eq!(runs, ["r3", "r2", "r1"]);
        assert_eq!(current(&host).unwrap().run, "r3");

        // No bundle is pruned while the active version cannot be read.
        assert!(prunable(&host).unwrap().bundles.is_empty());
        // Active 4.0.0 (what its dockerd reports), the newest set names 3.0.0: both stay.
        use std::os::unix::fs::PermissionsExt;
        let active = dir.path().join("opt/containai/docker/4.0.0");
        std::fs::create_dir_all(&active).unwrap();
        std::fs::write(
            active.join("dockerd"),
            "#!/bin/sh\necho 'Docker version 4.0.0, build cai'\n",
        )
        .unwrap();
        std::fs::set_permissions(
            active.join("dockerd"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("opt/containai/bin")).unwrap();
        std::os::unix::fs::symlink(
            "../docker/4.0.0/dockerd",
            dir.path().join("opt/containai/bin/dockerd"),
        )
        .unwrap();
        let what = prunable(&host).unwrap();
        // r1 is beyond the newest two; r8 and r9 never completed.
        assert_eq!(what.sets, ["r1", "r8", "r9"]);
        assert_eq!(what.bundles, ["1.0.0", "2.0.0"]);
        host.gate
            .apply(
                crate::effects::Action::new("update.prune", ROLLBACK_DIR, serde_json::json!({})),
                || (),
                |ok| prune(ok, &host, &what).map_err(|e| e.to_string()),
            )
            .unwrap();
        let left = |sub: &str| {
            let mut names: Vec<String> = std::fs::read_dir(dir.path().join(sub))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(left("var/lib/containai/rollback"), ["r2", "r3"]);
        assert_eq!(
            left("opt/containai/docker"),
            [".4.0.0.cai-new-1", "3.0.0", "4.0.0"]
        );
        // Whoever asks, the active bundle is never removed.
        let refused = host.gate.apply(
            crate::effects::Action::new("test.remove", "4.0.0", serde_json::json!({})),
            || (),
            |ok| dockerd::remove_version(ok, &host, "4.0.0").map_err(|e| e.to_string()),
        );
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("it is the active version"),
            "the active bundle was removable"
        );
        assert!(active.join("dockerd").exists());

        // Restored, the newest set is not offered again.
        let mut restored = manifest("r3", 300, "3.0.0");
        restored.restored = true;
        write_manifest(&host, &restored).unwrap();
        assert!(matches!(current(&host), Err(RollbackError::NoSet)));

        // A run that changed the engine restores only its own set, never an older one.
        write_manifest(&host, &manifest("r2", 200, "2.0.0")).unwrap();
        crate::host::installs::engine_restarted(&host);
        assert!(matches!(current(&host), Err(RollbackError::NotKept)));
        let own = manifest(host.gate.run_id(), 50, "5.0.0");
        write_manifest(&host, &own).unwrap();
        assert_eq!(current(&host).unwrap(), own);
    }
}
