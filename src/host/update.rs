//! What keeps an update safe across processes and crashes, whatever the update script does:
//!
//! - the **update lock**, an advisory `flock` on `/run/containai/update.lock` (under `--root`),
//!   held by a live run until the process ends, so two updates never proceed at once; a second
//!   one is refused at once with the holder's PID. A dry run only looks: it never creates the
//!   file and never holds the lock.
//! - the **update state**, `/var/lib/containai/update-state.json`, naming the containers an
//!   update is about to stop (by full ID and name) and the phase. It is written atomically
//!   (temporary file, fsync, rename) before the first container stops, so a run killed between
//!   stopping and restarting leaves a record that the next run finds and restarts from. Every
//!   entry is resolved with the engine before it is written ([`resolve`]): the full ID and the
//!   current name, and an entry whose ID and name disagree is refused. The record only grows: a
//!   new record is the union with what is on disk, and an entry leaves it only through
//!   [`check_clearable`]. While a run holds the lock it may stop only containers the state names,
//!   by the full ID recorded for them ([`check_stoppable`]), and once it has recorded containers
//!   it downloads nothing more ([`check_fetchable`]). Recording containers takes the operator's
//!   consent ([`check_consent`]): `--stop-containers` or a person's yes. The record is cleared
//!   only once its containers run again or are gone, or with `--no-restart`, and only once every
//!   install of this run was verified by the core ([`super::installs::check_verified`]).
//!
//! Every file goes through the root-anchored layer; recording and clearing the state take an
//! [`Approval`] from the effect gate.

use std::cell::RefCell;
use std::io::{Read, Seek, Write};
use std::path::Path;

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::docker::{DockerError, EngineContainer};
use super::fs::FsError;
use super::installs::{self, Component};
use super::{Host, StopConsent, dockerd, sysbox};
use crate::effects::Approval;
use crate::plan::version::parse_version;

pub const LOCK_FILE: &str = "/run/containai/update.lock";
pub const STATE_FILE: &str = "/var/lib/containai/update-state.json";

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(
        "another cai update is running (pid {pid}); nothing was changed\nhelp: wait for it to finish, then run the command again"
    )]
    Held { pid: String },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Unverified(#[from] super::installs::Unverified),
    #[error(transparent)]
    List(#[from] super::docker::ListError),
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "refusing to stop {ids} during an update: they are not in the update state, and a crash would leave them stopped with nobody to start them\nhelp: record them first with update::record(phase, containers)"
    )]
    Unrecorded { ids: String },
    #[error(
        "refusing to stop {refs} during an update by name or short ID: an update stops a container only by the full ID it recorded for it\nhelp: containers::stop(update::state().containers.map(|c| c.id))"
    )]
    NotByRecordedId { refs: String },
    #[error(
        "cannot record container {name} ({id}) for stopping: {reason}; nothing was recorded\nhelp: record what containers::list(false) returns: #{{id: c.id, name: c.name}}"
    )]
    Unresolved {
        id: String,
        name: String,
        reason: String,
    },
    #[error(
        "refusing to record {id} as {name}: that ID belongs to container {actual} on the engine; nothing was recorded\nhelp: record what containers::list(false) returns: #{{id: c.id, name: c.name}}"
    )]
    Mismatch {
        id: String,
        name: String,
        actual: String,
    },
    #[error(
        "refusing to record containers for stopping: an update stops containers only with --stop-containers or a person's yes to the question that names them (--yes and --force never agree to it); nothing was changed\nhelp: cai update --stop-containers"
    )]
    NoConsent,
    #[error(
        "refusing to record {0} for stopping: the operator agreed to stop only {1}; nothing was changed\nhelp: ask again with prompt::confirm_stop naming every container, or run cai update --stop-containers"
    )]
    NotAgreed(String, String),
    #[error(
        "refusing to clear the update state: {0} recorded as stopped by an update, and not running again; the record is kept\nhelp: start them (cai system resume), or pass --no-restart to leave them stopped"
    )]
    NotRestarted(String),
    #[error(
        "refusing to download during an update after containers were recorded for stopping: every artifact is fetched and verified before any container stops\nhelp: fetch every artifact before update::record"
    )]
    FetchAfterStop,
    #[error(
        "the update state file {path} is malformed: {reason}; nothing was changed\nhelp: inspect it with `cat {path}`; once the containers it lists are running again, remove it with `rm {path}`"
    )]
    Malformed { path: String, reason: String },
}

/// A rollback in progress, as the update state records it (see `host::rollback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackProgress {
    /// The rollback set (a run id under `/var/lib/containai/rollback`).
    pub set: String,
    /// The phase about to start.
    pub phase: String,
    /// Why the rollback happens.
    pub reason: String,
}

/// A container an update stops and must start again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stopped {
    pub id: String,
    pub name: String,
}

/// What an interrupted update left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateState {
    /// Where the update was, e.g. `stopping` or `installing`.
    pub phase: String,
    pub containers: Vec<Stopped>,
    /// The run that wrote it (the journal's run id).
    pub run: String,
    /// A rollback in progress: the phase it is about to start, written before each phase, so a
    /// crash during it is finished by `cai system resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackProgress>,
}

/// The lock a live run holds until the process ends.
#[derive(Default)]
pub struct LockSlot {
    held: RefCell<Option<std::fs::File>>,
}

/// Takes the update lock (live) or checks that nobody holds it (dry run). Idempotent: a run
/// that holds it already succeeds again. Returns this process's PID.
pub fn lock(host: &Host) -> Result<u32, UpdateError> {
    let pid = std::process::id();
    if host.update_lock.held.borrow().is_some() {
        return Ok(pid);
    }
    let path = Path::new(LOCK_FILE);
    let shown = host.root().display_path(path).display().to_string();
    let live = !host.gate.is_dry_run();
    let Some(mut file) = host.root().open_lock(path, live)? else {
        return Ok(pid);
    };
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            // The PID is for the message only; an unreadable one still refuses.
            let _ = file
                .rewind()
                .and_then(|()| file.read_to_string(&mut holder));
            let holder = holder.trim();
            return Err(UpdateError::Held {
                pid: if holder.is_empty() {
                    "unknown".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(e) => {
            return Err(UpdateError::Lock {
                path: shown,
                source: e.into(),
            });
        }
    }
    if live {
        let io = |source| UpdateError::Lock {
            path: shown.clone(),
            source,
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{pid}").map_err(io)?;
        *host.update_lock.held.borrow_mut() = Some(file);
    }
    // A dry run lets go at once (the file closes here): it only wanted to know.
    Ok(pid)
}

/// Whether this run holds the update lock.
pub fn holds_lock(host: &Host) -> bool {
    host.update_lock.held.borrow().is_some()
}

/// While this run holds the update lock, it stops only containers its update state names, and
/// only by the full ID recorded for each: a container an update stops is always recorded first,
/// whatever the script does, and a name (which another container can take between the check and
/// the stop) never stands for a recorded container.
pub fn check_stoppable(host: &Host, ids: &[String]) -> Result<(), UpdateError> {
    if host.update_lock.held.borrow().is_none() {
        return Ok(());
    }
    let recorded = read_state(host)?.map(|s| s.containers).unwrap_or_default();
    // A name or short ID of a recorded container: it is recorded, but not named the safe way.
    let (by_other_ref, unrecorded): (Vec<&String>, Vec<&String>) = ids
        .iter()
        .filter(|id| !recorded.iter().any(|c| &c.id == *id))
        .partition(|r| {
            recorded
                .iter()
                .any(|c| &c.name == *r || (r.len() >= 4 && c.id.starts_with(r.as_str())))
        });
    if !unrecorded.is_empty() {
        return Err(UpdateError::Unrecorded {
            ids: join(&unrecorded),
        });
    }
    if !by_other_ref.is_empty() {
        return Err(UpdateError::NotByRecordedId {
            refs: join(&by_other_ref),
        });
    }
    Ok(())
}

/// Before an action that restarts the engine (which stops every container on it): every running
/// container, labelled or not, must be in the record by its full ID.
pub fn check_all_recorded(host: &Host, running: &[EngineContainer]) -> Result<(), UpdateError> {
    if host.update_lock.held.borrow().is_none() {
        return Ok(());
    }
    let recorded = read_state(host)?.map(|s| s.containers).unwrap_or_default();
    let unrecorded: Vec<String> = running
        .iter()
        .filter(|c| !recorded.iter().any(|r| r.id == c.id))
        .map(|c| {
            let shown = if c.name.is_empty() { &c.id } else { &c.name };
            if c.managed_by.is_some() {
                shown.clone()
            } else {
                format!("{shown} (not managed by ContainAI)")
            }
        })
        .collect();
    if unrecorded.is_empty() {
        Ok(())
    } else {
        Err(UpdateError::Unrecorded {
            ids: unrecorded.join(", "),
        })
    }
}

/// Before restarting or stopping the engine (or sysbox, which takes the engine with it) while
/// this run holds the update lock: that stops every running container on the engine, labelled or
/// not, so each must be recorded by its full ID. Touches the engine socket and `systemctl`.
///
/// Passing it, the run is about to change the engine: from then on its record clears only after
/// the health gate ([`health`]) passed.
pub fn check_engine_stop(host: &Host) -> Result<(), UpdateError> {
    if !holds_lock(host) {
        return Ok(());
    }
    let running = super::docker::list_checked(host, false)?;
    check_all_recorded(host, &running)?;
    super::installs::engine_restarted(host);
    Ok(())
}

fn join(refs: &[&String]) -> String {
    refs.iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// While this run holds the update lock, it downloads nothing once it has recorded containers to
/// stop: a slow or failing download must never keep agents stopped.
pub fn check_fetchable(host: &Host) -> Result<(), UpdateError> {
    if host.update_lock.held.borrow().is_none() {
        return Ok(());
    }
    match read_state(host)? {
        Some(state) if state.run == host.gate.run_id() && !state.containers.is_empty() => {
            Err(UpdateError::FetchAfterStop)
        }
        _ => Ok(()),
    }
}

/// Recording containers is the step before stopping them, so it needs the operator's consent
/// ([`Host::stop_consent`]) to stop each of them; recording none needs none. A yes to
/// `prompt::confirm_stop` covers exactly the containers it named [P74].
pub fn check_consent(host: &Host, new: &[Stopped]) -> Result<(), UpdateError> {
    if new.is_empty() {
        return Ok(());
    }
    match &*host.stop_consent.borrow() {
        StopConsent::Any => Ok(()),
        StopConsent::None => Err(UpdateError::NoConsent),
        StopConsent::Named(agreed) => {
            let others: Vec<&str> = new
                .iter()
                .filter(|s| !agreed.contains(&s.name))
                .map(|s| s.name.as_str())
                .collect();
            if others.is_empty() {
                Ok(())
            } else {
                let agreed: Vec<&str> = agreed.iter().map(String::as_str).collect();
                Err(UpdateError::NotAgreed(others.join(", "), agreed.join(", ")))
            }
        }
    }
}

/// The state an interrupted update left, if any.
pub fn read_state(host: &Host) -> Result<Option<UpdateState>, UpdateError> {
    let path = Path::new(STATE_FILE);
    let Some(text) = host.root().read_to_string(path)? else {
        return Ok(None);
    };
    let malformed = |reason: String| UpdateError::Malformed {
        path: host.root().display_path(path).display().to_string(),
        reason,
    };
    let state: UpdateState = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    // `record` writes full IDs and engine names. A record an earlier `cai` let a script write may
    // hold a short ID (its name then decides whether the container is gone); anything that is not
    // a container reference at all was edited or torn, and acting on it would start or keep the
    // wrong container.
    for (n, c) in state.containers.iter().enumerate() {
        if super::docker::validate_ref(&c.id).is_err() {
            return Err(malformed(format!(
                "container {} has id {:?}, not a container ID",
                n + 1,
                c.id
            )));
        }
        if super::docker::validate_ref(&c.name).is_err() {
            return Err(malformed(format!(
                "container {} has name {:?}, not a container name",
                n + 1,
                c.name
            )));
        }
    }
    Ok(Some(state))
}

/// Entries checked against the engine: each is the full ID and current name of a container that
/// exists. Only [`resolve`] makes one, so nothing else reaches the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved(Vec<Stopped>);

impl Resolved {
    pub fn containers(&self) -> &[Stopped] {
        &self.0
    }
}

/// Resolves what a script asks to record with the engine (reads only; every mode): `id` must be
/// the ID, full or a prefix, of an existing container whose current name is `name`. A made-up ID,
/// a name as the ID, or an ID and a name of two different containers is refused, so the record
/// never names a container other than the one that is stopped, and "gone" can be decided from
/// it later.
pub fn resolve(host: &Host, entries: &[Stopped]) -> Result<Resolved, UpdateError> {
    let mut out: Vec<Stopped> = Vec::with_capacity(entries.len());
    for entry in entries {
        let unresolved = |reason: String| UpdateError::Unresolved {
            id: entry.id.clone(),
            name: entry.name.clone(),
            reason,
        };
        let found = match host.docker().inspect(&entry.id) {
            Ok(found) => found,
            Err(DockerError::NotFound(_) | DockerError::InvalidRef(_)) => {
                return Err(unresolved(
                    "no container has that ID on the containai-docker engine".into(),
                ));
            }
            Err(e) => return Err(unresolved(first_line(&e.to_string()))),
        };
        // The engine also resolves names: the ID given must be (a prefix of) the one found.
        if !found.id.starts_with(entry.id.as_str()) {
            return Err(unresolved(format!(
                "that is not a container ID (it names container {})",
                found.name
            )));
        }
        if found.name != entry.name {
            return Err(UpdateError::Mismatch {
                id: entry.id.clone(),
                name: entry.name.clone(),
                actual: found.name,
            });
        }
        if !out.iter().any(|c| c.id == found.id) {
            out.push(Stopped {
                id: found.id,
                name: found.name,
            });
        }
    }
    Ok(Resolved(out))
}

/// The record as it will be written: what is on disk, then each new container not already in it.
/// The record only grows while the lock is held; entries leave it only through [`clear`].
fn union(on_disk: Option<UpdateState>, phase: &str, run: &str, new: &Resolved) -> UpdateState {
    let (mut containers, rollback) = on_disk
        .map(|s| (s.containers, s.rollback))
        .unwrap_or_default();
    for c in new.containers() {
        if !containers.iter().any(|old| old.id == c.id) {
            containers.push(c.clone());
        }
    }
    UpdateState {
        phase: phase.to_string(),
        containers,
        run: run.to_string(),
        rollback,
    }
}

/// Records the containers about to be stopped, durably, before the first one stops: the union of
/// the record on disk and `new`, so a later call (with fewer containers, or none) never makes the
/// record forget a stopped one. The run takes the update lock here itself if its script did not:
/// two runs must never record and stop containers at once, whatever an overriding script calls.
pub fn record(_: Approval, host: &Host, phase: &str, new: &Resolved) -> Result<(), UpdateError> {
    check_consent(host, new.containers())?;
    lock(host)?;
    // Read under the lock: nobody else writes it now.
    let state = union(read_state(host)?, phase, host.gate.run_id(), new);
    write_state(host, &state)
}

fn write_state(host: &Host, state: &UpdateState) -> Result<(), UpdateError> {
    let mut text = serde_json::to_string_pretty(state).map_err(|e| UpdateError::Malformed {
        path: STATE_FILE.into(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    host.root()
        .write_atomic(Path::new(STATE_FILE), text.as_bytes(), 0o600)?;
    Ok(())
}

/// Writes the phase a rollback is about to start into the state (created, naming no container,
/// when there is none), durably, before the phase starts. The containers it names stay.
pub fn record_rollback(
    _: Approval,
    host: &Host,
    progress: RollbackProgress,
) -> Result<(), UpdateError> {
    lock(host)?;
    let mut state = read_state(host)?.unwrap_or_else(|| UpdateState {
        phase: "rollback".into(),
        containers: Vec::new(),
        run: host.gate.run_id().to_string(),
        rollback: None,
    });
    state.phase = "rollback".into();
    state.rollback = Some(progress);
    write_state(host, &state)
}

/// Removes the state once a rollback brought every container it names back (or they are gone):
/// the rollback is its own verification (the versions it restored are checked), so this run's
/// installs, which it undid, are not asked about.
pub fn clear_after_rollback(_: Approval, host: &Host) -> Result<(), UpdateError> {
    lock(host)?;
    check_clearable(host)?;
    host.root().remove(Path::new(STATE_FILE))?;
    Ok(())
}

/// Removes the state once its containers run again (or the operator chose not to restart them)
/// and every install of this run was verified; under the update lock, like [`record`], so it
/// never removes another run's record.
pub fn clear(_: Approval, host: &Host) -> Result<(), UpdateError> {
    lock(host)?;
    // Every install of this run verified by the core first, whatever the script checked.
    super::installs::check_verified(host)?;
    check_clearable(host)?;
    host.root().remove(Path::new(STATE_FILE))?;
    Ok(())
}

/// The record may go once every container it names runs again or is gone, or when the operator
/// chose to leave them stopped (`--no-restart`): a record cleared while its containers are still
/// stopped would leave nobody to start them. A container whose state cannot be read counts as not
/// running.
pub fn check_clearable(host: &Host) -> Result<(), UpdateError> {
    if host.no_restart.get() {
        return Ok(());
    }
    let Some(state) = read_state(host)? else {
        return Ok(());
    };
    let stopped: Vec<String> = state
        .containers
        .iter()
        .filter(|c| !matches!(standing(host, c), Standing::Running | Standing::Gone))
        .map(|c| c.name.clone())
        .collect();
    if stopped.is_empty() {
        Ok(())
    } else {
        Err(UpdateError::NotRestarted(stopped.join(", ")))
    }
}

/// Where a recorded container stands now.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    Running,
    Stopped,
    /// Removed: it can never need starting again.
    Gone,
    /// The engine could not tell.
    Unknown,
}

/// "Gone" means the recorded ID is not found **and** no container has the recorded name, or the
/// name now belongs to another ID (the container was removed and another made under its name).
/// An entry whose ID is not a full engine ID was never resolved (an earlier cai let scripts
/// record anything): its ID proves nothing, so the name alone decides.
fn standing(host: &Host, c: &Stopped) -> Standing {
    let docker = host.docker();
    let of = |d: &super::docker::ContainerDetails| {
        if d.running {
            Standing::Running
        } else {
            Standing::Stopped
        }
    };
    if is_full_id(&c.id) {
        match docker.inspect(&c.id) {
            Ok(d) if d.id == c.id => return of(&d),
            Ok(_) | Err(DockerError::NotFound(_)) => {}
            Err(_) => return Standing::Unknown,
        }
    }
    match docker.inspect(&c.name) {
        Err(DockerError::NotFound(_) | DockerError::InvalidRef(_)) => Standing::Gone,
        Ok(d) if is_full_id(&c.id) && d.id != c.id => Standing::Gone,
        Ok(d) => of(&d),
        Err(_) => Standing::Unknown,
    }
}

/// A full engine container ID: 64 lowercase hex digits.
fn is_full_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// Checks every install of this run against the release target where the engine runs (inside
/// the Lima VM on macOS): sysbox by `sysbox-runc --version` (the full version, a Debian revision
/// ignored), dockerd by `/opt/containai/bin/dockerd --version`. Marks each verified or failed and
/// returns the failures, one line each (`sysbox is X, expected Y`); none when this run installed
/// nothing. Runs the installed binaries only; changes no file.
pub fn verify(host: &Host) -> Vec<String> {
    let mut failures = Vec::new();
    for component in installs::components(host) {
        let outcome = check(host, component);
        if let Err(why) = &outcome {
            failures.push(why.clone());
        }
        installs::settle(host, component, outcome);
    }
    failures
}

/// How long the health gate waits for the engine to answer after its restart.
pub const HEALTH_WAIT_SECS: i64 = 120;

/// What the health gate after an engine restart found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// Every check passed and every recorded container runs again (or the run has
    /// `--no-restart`).
    pub ok: bool,
    /// What failed, one line each.
    pub failures: Vec<String>,
    /// The recorded containers it started (names).
    pub started: Vec<String>,
}

impl crate::effects::FailedMembers for Health {
    fn failed_members(&self) -> Option<String> {
        (!self.ok).then(|| self.failures.join("; "))
    }
}

/// The health gate after the engine restart, in the core so no script can skip it: the engine
/// answers within `wait_secs`, `docker info` names `sysbox-runc` as the default runtime, every
/// install of this run reports the release target's full version ([`verify`]), and every
/// container the update recorded starts again (unless `--no-restart`). Containers are started
/// only once the engine passed the rest: on a broken engine they wait for the rollback. The
/// outcome is kept for this run: the record clears only after it passed
/// ([`super::installs::check_verified`]).
pub fn health(approval: Approval, host: &Host, wait_secs: i64) -> Result<Health, UpdateError> {
    let mut out = Health::default();
    let answered = matches!(super::docker::wait_engine(host, wait_secs), Ok(Ok(true)));
    if answered {
        match host.docker().default_runtime() {
            Ok(runtime) if runtime == "sysbox-runc" => {}
            Ok(runtime) => out.failures.push(format!(
                "the engine's default runtime is {}, expected sysbox-runc",
                if runtime.is_empty() {
                    "not set"
                } else {
                    &runtime
                }
            )),
            Err(e) => out.failures.push(format!(
                "cannot read the engine's default runtime: {}",
                first_line(&e.to_string())
            )),
        }
    } else {
        out.failures.push(format!(
            "the engine did not answer within {wait_secs} s after its restart"
        ));
    }
    out.failures.extend(verify(host));
    if out.failures.is_empty() && !host.no_restart.get() {
        let recorded = read_state(host)?.map(|s| s.containers).unwrap_or_default();
        if !recorded.is_empty() {
            let ids: Vec<String> = recorded.iter().map(|c| c.id.clone()).collect();
            let report = host.docker().start(approval, &ids);
            let name_of = |id: &str| {
                recorded
                    .iter()
                    .find(|c| c.id == id)
                    .map_or_else(|| id.to_string(), |c| c.name.clone())
            };
            match report {
                Ok(report) => {
                    for f in &report.failed {
                        out.failures.push(format!(
                            "container {} did not start on the new engine: {}",
                            name_of(&f.id),
                            first_line(&f.error)
                        ));
                    }
                    out.started = report.done.iter().map(|id| name_of(id)).collect();
                }
                Err(e) => out.failures.push(format!(
                    "cannot start the recorded containers: {}",
                    first_line(&e.to_string())
                )),
            }
            // Started is not enough: each must still run (a runtime can fail just after).
            for c in &recorded {
                if standing(host, c) == Standing::Stopped
                    && !out.failures.iter().any(|f| f.contains(&c.name))
                {
                    out.failures.push(format!(
                        "container {} is not running on the new engine",
                        c.name
                    ));
                }
            }
        }
    }
    out.ok = out.failures.is_empty();
    super::installs::settle_health(
        host,
        if out.ok {
            Ok(())
        } else {
            Err(out.failures.join("; "))
        },
    );
    Ok(out)
}

/// Whether what is installed of `component` now is the release target, and why not.
fn check(host: &Host, component: Component) -> Result<(), String> {
    let target = host
        .release()
        .map_err(|e| format!("{} cannot be checked: {e}", component.name()))?;
    match component {
        Component::Sysbox => {
            let want = &target.sysbox.version;
            let bare = parse_version(want).map_err(|e| format!("sysbox cannot be checked: {e}"))?;
            match sysbox::installed_version(host) {
                Ok(Some(found)) if found.without_revision() == bare.without_revision() => Ok(()),
                Ok(Some(found)) => Err(format!("sysbox is {}, expected {want}", found.full)),
                Ok(None) => Err(format!("sysbox is not installed, expected {want}")),
                Err(e) => Err(format!("sysbox cannot be checked: {e}")),
            }
        }
        Component::Dockerd => {
            let want = &target.dockerd.version;
            match dockerd::installed(host) {
                Ok(Some(found)) if &found == want => Ok(()),
                Ok(Some(found)) => Err(format!("dockerd is {found}, expected {want}")),
                Ok(None) => Err(format!("dockerd is not installed, expected {want}")),
                Err(e) => Err(format!("dockerd cannot be checked: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, name: &str) -> Stopped {
        Stopped {
            id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn the_record_only_grows() {
        let on_disk = || {
            Some(UpdateState {
                phase: "stopping".into(),
                containers: vec![entry("a", "agent-1"), entry("b", "agent-2")],
                run: "r1".into(),
                rollback: None,
            })
        };
        let cases = [
            // Nothing new: what is on disk stays.
            (vec![], vec!["a", "b"]),
            // Fewer than on disk: still all of them.
            (vec![entry("b", "agent-2")], vec!["a", "b"]),
            // More: appended once, in order.
            (
                vec![entry("c", "agent-3"), entry("a", "agent-1")],
                vec!["a", "b", "c"],
            ),
        ];
        for (new, want) in cases {
            let state = union(on_disk(), "installing", "r2", &Resolved(new.clone()));
            let ids: Vec<&str> = state.containers.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, want, "{new:?}");
            assert_eq!(state.phase, "installing");
            assert_eq!(state.run, "r2");
        }
        let fresh = union(
            None,
            "stopping",
            "r",
            &Resolved(vec![entry("a", "agent-1")]),
        );
        assert_eq!(fresh.containers, vec![entry("a", "agent-1")]);
    }

    #[test]
    fn full_ids_are_64_lowercase_hex_digits() {
        let full = "0123456789abcdef".repeat(4);
        assert!(is_full_id(&full));
        for not in [
            "",
            "0123456789ab",
            "agent-1",
            &full.to_uppercase(),
            &format!("{full}0"),
            &format!("{}g", &full[..63]),
        ] {
            assert!(!is_full_id(not), "{not}");
        }
    }
}
