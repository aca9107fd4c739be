//! The container family: talks to the `containai-docker` engine socket directly with bollard.
//!
//! It never goes through a docker context and never reads `DOCKER_HOST` or `DOCKER_CONTEXT`: the
//! socket path comes from the [`Host`](super::Host) alone. Listing is fail-closed: a socket that
//! exists but does not answer is an error, never an empty list, because "no containers" is the
//! answer that lets an update proceed. Every call has a timeout. Stopping and starting take an
//! [`Approval`] from the effect gate.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    ListContainersOptions, StartContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::runtime::Runtime;

use super::Host;
use super::fs::{Anchored, FsError};
use crate::effects::Approval;
use crate::plan::containers::{ManagedBy, SSH_PORT_LABEL, classify};
use crate::plan::identity;

/// Programs that only read, so running them inside a container needs no gate.
pub const QUERY_PROGRAMS: [&str; 9] = [
    "id", "getent", "stat", "cat", "ls", "test", "uname", "readlink", "whoami",
];
/// Output a command inside a container may return: as much as a script may hold in one string.
const MAX_EXEC_OUTPUT: usize = 4 * 1024 * 1024;
/// Timeout for list, inspect and other quick API calls.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time granted to a stop beyond the container's own stop timeout (the kill and cleanup).
const STOP_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the engine at {socket}: {reason}\nhelp: check the engine with `systemctl status containai-docker`"
    )]
    Unreachable { socket: PathBuf, reason: String },
    #[error(
        "permission denied on {socket}: the containai-docker engine socket is open to root only\nhelp: {}",
        crate::term::as_root_again()
    )]
    SocketDenied { socket: PathBuf },
    #[error(
        "cannot reach the engine at {socket}: it is not a socket but {kind}\nhelp: look at it with `ls -l {socket}`; remove it, then `systemctl restart containai-docker`"
    )]
    NotASocket { socket: PathBuf, kind: &'static str },
    #[error(
        "cannot reach the engine at {socket}: nothing listens on it (connection refused), so the engine is not running\nhelp: systemctl restart containai-docker"
    )]
    NoListener { socket: PathBuf },
    #[error(
        "the containai-docker engine is not running: {socket} does not exist, and containers (stopped ones too) cannot be listed without it\nhelp: systemctl start containai-docker (cai update installs the engine unit first when it is missing)"
    )]
    EngineDown { socket: PathBuf },
    #[error("container {0} not found on the containai-docker engine")]
    NotFound(String),
    #[error("engine call {what} failed: {message}")]
    Api { what: String, message: String },
    #[error(
        "{program:?} is not a read-only inspection program (allowed: {allowed})",
        allowed = QUERY_PROGRAMS.join(", ")
    )]
    NotReadOnly { program: String },
    #[error("{what}: output exceeds {limit} bytes and was cut off")]
    OutputTooLarge { what: String, limit: usize },
    #[error("the command to run is empty")]
    EmptyCommand,
    #[error("engine call {what} did not answer within {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error(
        "invalid container name or id {0:?}: expected a name like agent-1 ([a-zA-Z0-9][a-zA-Z0-9_.-]*) or a hex id"
    )]
    InvalidRef(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
    #[error("{what}: timeout {secs} s is outside 1..={MAX_TIMEOUT_SECS}")]
    TimeoutRange { what: String, secs: i64 },
}

/// Checks a container name or id against the engine's grammar before it reaches a request: the
/// client library splices it into the URL path, where `/`, `..`, `?` or `&` would change which
/// endpoint is called (a read could become a mutation the gate never saw).
pub fn validate_ref(name: &str) -> Result<(), DockerError> {
    let bytes = name.as_bytes();
    let valid = match bytes.first() {
        Some(first) if first.is_ascii_alphanumeric() => bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
        _ => false,
    };
    // Engine names are at most 253 bytes in practice; anything longer is not a container.
    if valid && name.len() <= 253 {
        Ok(())
    } else {
        Err(DockerError::InvalidRef(name.to_string()))
    }
}

/// One container as scripts see it in lists.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub running: bool,
    pub managed_by: ManagedBy,
    pub ssh_port: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Any container on the engine, managed by ContainAI or not, with its mounts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EngineContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub running: bool,
    /// `None`: neither labelled nor a legacy ContainAI image.
    pub managed_by: Option<ManagedBy>,
    pub labels: BTreeMap<String, String>,
    pub mounts: Vec<MountInfo>,
}

impl EngineContainer {
    /// The container as managed lists show it, when it is managed.
    pub fn into_managed(self) -> Option<ContainerInfo> {
        let managed_by = self.managed_by?;
        Some(ContainerInfo {
            ssh_port: self.labels.get(SSH_PORT_LABEL).cloned(),
            id: self.id,
            name: self.name,
            image: self.image,
            state: self.state,
            running: self.running,
            managed_by,
            labels: self.labels,
        })
    }
}

/// A named volume as the engine describes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    /// The options it was created with (`--opt type=none --opt o=bind --opt device=DIR`, ...).
    pub options: BTreeMap<String, String>,
}

/// A container's details for decisions (user, mounts, state).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContainerDetails {
    pub id: String,
    pub name: String,
    pub image: String,
    pub user: String,
    pub state: String,
    pub running: bool,
    pub pid: i64,
    /// When it last stopped, as the engine reports it (RFC 3339, UTC); "" when never.
    pub finished_at: String,
    pub exit_code: i64,
    pub managed_by: Option<ManagedBy>,
    pub labels: BTreeMap<String, String>,
    pub mounts: Vec<MountInfo>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MountInfo {
    /// `volume`, `bind`, `tmpfs`, ...
    pub kind: String,
    pub name: String,
    pub source: String,
    pub destination: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// What happened to each container of a set.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct SetReport {
    /// Reached the wanted state, including those already in it.
    pub done: Vec<String>,
    /// Removed before we got to them; for a stop this also counts as stopped.
    pub gone: Vec<String>,
    pub failed: Vec<SetFailure>,
}

impl crate::effects::FailedMembers for SetReport {
    fn failed_members(&self) -> Option<String> {
        (!self.failed.is_empty()).then(|| {
            self.failed
                .iter()
                .map(|f| format!("{}: {}", f.id, f.error))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// A command's own exit status is its result, not a failure of the action.
impl crate::effects::FailedMembers for ExecOutput {}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SetFailure {
    pub id: String,
    pub error: String,
}

/// Whether the engine socket is there and answering.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EngineStatus {
    pub socket: String,
    pub present: bool,
    pub reachable: bool,
    pub version: String,
    pub api_version: String,
    pub error: String,
    /// What to do about `error` (its `help:` line without the prefix), or empty.
    pub help: String,
}

/// A lazily connected client of the `containai-docker` engine, bound to one socket and carrying
/// the async runtime its calls block on.
pub struct Client {
    /// The socket as a host path under `--root`, for messages.
    socket: PathBuf,
    /// Where `connect()` goes: the socket's directory resolved inside the root and held open, or
    /// why that was refused (then the engine is unreachable, never looked up elsewhere).
    connect: Result<Anchored, String>,
    client: std::cell::OnceCell<Docker>,
    rt: Runtime,
}

impl Client {
    pub fn new(socket: PathBuf, connect: Result<Anchored, FsError>) -> Result<Self, DockerError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DockerError::Runtime(e.to_string()))?;
        Ok(Self {
            socket,
            connect: connect.map_err(|e| first_line(&e.to_string())),
            client: std::cell::OnceCell::new(),
            rt,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> DockerError {
        DockerError::Unreachable {
            socket: self.socket.clone(),
            reason: reason.to_string(),
        }
    }

    /// Why the engine cannot be reached, as the system says it, once the client failed: a
    /// regular file (or anything else) at the socket path, a socket nobody listens on, one this
    /// user may not open, or none at all. One plain `connect()`, closed at once; `None` when
    /// the socket accepts it (then the client's own error is the one to show).
    fn diagnose(&self) -> Option<DockerError> {
        use std::os::unix::fs::FileTypeExt;
        let path = self.connect_path().ok()?;
        let socket = self.socket.clone();
        let kind = match std::fs::symlink_metadata(path) {
            Ok(m) => m.file_type(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some(self.unreachable("the socket does not exist"));
            }
            Err(_) => return None,
        };
        if !kind.is_socket() {
            let kind = if kind.is_file() {
                "a regular file"
            } else if kind.is_dir() {
                "a directory"
            } else if kind.is_symlink() {
                "a symlink"
            } else {
                "another kind of file"
            };
            return Some(DockerError::NotASocket { socket, kind });
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => None,
            Err(e) => match e.kind() {
                std::io::ErrorKind::PermissionDenied => Some(DockerError::SocketDenied { socket }),
                std::io::ErrorKind::ConnectionRefused => Some(DockerError::NoListener { socket }),
                std::io::ErrorKind::NotFound => Some(self.unreachable("the socket does not exist")),
                _ => Some(self.unreachable(e)),
            },
        }
    }

    /// The path `connect()` takes to reach the socket (anchored under the root).
    fn connect_path(&self) -> Result<&Path, DockerError> {
        self.connect
            .as_ref()
            .map(Anchored::path)
            .map_err(|reason| self.unreachable(reason))
    }

    /// Whether anything exists at the socket path. Only "not found" counts as absent: a path
    /// that cannot be checked (permissions, a loop, a refused symlink) is an error, because
    /// "absent" is the answer that means no container can be running.
    pub fn socket_present(&self) -> Result<bool, DockerError> {
        match std::fs::symlink_metadata(self.connect_path()?) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.unreachable(format!("cannot check the socket path: {e}"))),
        }
    }

    fn client(&self) -> Result<&Docker, DockerError> {
        let rt = &self.rt;
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        if !self.socket_present()? {
            return Err(self.unreachable("the socket does not exist"));
        }
        let path = self.connect_path()?.to_string_lossy().into_owned();
        // Long client timeout: per-call timeouts below are the ones that matter, and a stop with a
        // 100 s container timeout must not be cut short by the transport.
        // On failure the socket is probed once to say why in the system's words; a working
        // engine costs no extra connection.
        let failed = |e: BollardError| self.diagnose().unwrap_or_else(|| self.unreachable(e));
        let docker =
            Docker::connect_with_unix(&path, 3600, bollard::API_DEFAULT_VERSION).map_err(failed)?;
        let docker = rt
            .block_on(async { tokio::time::timeout(API_TIMEOUT, docker.negotiate_version()).await })
            .map_err(|_| self.unreachable("no answer within 30 s"))?
            .map_err(failed)?;
        Ok(self.client.get_or_init(|| docker))
    }

    /// Waits until the engine answers on its socket (after a restart), asking every 250 ms for
    /// at most `timeout`; Ctrl-C or the script's budget in `limits` ends it early [P71].
    pub fn wait_answering(
        &self,
        timeout: Duration,
        limits: &super::wait::Limits,
    ) -> Result<bool, super::wait::Cut> {
        limits
            .poll(timeout, Duration::from_millis(250), || {
                self.status().reachable.then_some(())
            })
            .map(|up| up.is_some())
    }

    pub fn status(&self) -> EngineStatus {
        let rt = &self.rt;
        let mut status = EngineStatus {
            socket: self.socket.display().to_string(),
            present: true,
            reachable: false,
            version: String::new(),
            api_version: String::new(),
            error: String::new(),
            help: String::new(),
        };
        match self.socket_present() {
            Ok(true) => {}
            Ok(false) => {
                status.present = false;
                status.error = "the socket does not exist".into();
                return status;
            }
            Err(e) => {
                (status.error, status.help) = error_and_help(&e.to_string());
                return status;
            }
        }
        let result = self.client().and_then(|docker| {
            timed(rt, "version", API_TIMEOUT, docker.version()).map_err(|e| self.unreachable(e))
        });
        match result {
            Ok(version) => {
                status.reachable = true;
                status.version = version.version.unwrap_or_default();
                status.api_version = version.api_version.unwrap_or_default();
            }
            Err(e) => (status.error, status.help) = error_and_help(&e.to_string()),
        }
        status
    }

    /// The engine's default runtime, as `docker info` reports it (`sysbox-runc` on a ContainAI
    /// engine).
    pub fn default_runtime(&self) -> Result<String, DockerError> {
        let docker = self.client()?;
        let info = timed(&self.rt, "info", API_TIMEOUT, docker.info())?;
        Ok(info.default_runtime.unwrap_or_default())
    }

    /// Every container on the engine, labelled or not, sorted by name. `all` includes stopped
    /// ones. `Ok(None)` means the socket does not exist, as for [`Client::list_managed`]; any
    /// failure once the socket exists is an error.
    pub fn list(&self, all: bool) -> Result<Option<Vec<EngineContainer>>, DockerError> {
        let rt = &self.rt;
        if !self.socket_present()? {
            return Ok(None);
        }
        let docker = self.client()?;
        let options = ListContainersOptions {
            all,
            ..Default::default()
        };
        let list = timed(
            rt,
            "list containers",
            API_TIMEOUT,
            docker.list_containers(Some(options)),
        )
        .map_err(|e| self.unreachable(e))?;
        let mut out: Vec<EngineContainer> = list.into_iter().map(engine_container).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(out))
    }

    /// Managed containers (labelled and legacy). `all` includes stopped ones.
    ///
    /// `Ok(None)` means the socket does not exist, so no container can be running on this engine;
    /// any failure once the socket exists is an error.
    pub fn list_managed(&self, all: bool) -> Result<Option<Vec<ContainerInfo>>, DockerError> {
        Ok(self.list(all)?.map(|list| {
            list.into_iter()
                .filter_map(EngineContainer::into_managed)
                .collect()
        }))
    }

    /// Every container on the engine, running or stopped, managed or not, sorted by name.
    ///
    /// Stopped containers and their volumes exist whether the engine runs or not, so an absent
    /// socket is [`DockerError::EngineDown`], never an empty list [P75].
    pub fn list_all(&self) -> Result<Vec<EngineContainer>, DockerError> {
        self.list(true)?.ok_or_else(|| DockerError::EngineDown {
            socket: self.socket.clone(),
        })
    }

    /// A named volume's driver and options.
    pub fn inspect_volume(&self, name: &str) -> Result<VolumeInfo, DockerError> {
        validate_ref(name)?;
        let rt = &self.rt;
        let docker = self.client()?;
        let v = timed(
            rt,
            "inspect volume",
            API_TIMEOUT,
            docker.inspect_volume(name),
        )
        .map_err(|e| not_found_or(name, "inspect volume", e))?;
        Ok(VolumeInfo {
            name: v.name,
            driver: v.driver,
            options: v.options.into_iter().collect(),
        })
    }

    pub fn inspect(&self, name: &str) -> Result<ContainerDetails, DockerError> {
        self.inspect_with(self.client()?, name)
    }

    /// [`Client::inspect`] in one engine request, for latency-bound callers (`cai exec`): the
    /// client speaks [`FIXED_API`] instead of first asking the engine which version it serves.
    /// An engine that does not serve it answers with an error, and the caller asks again through
    /// [`Client::inspect`].
    pub fn inspect_unnegotiated(&self, name: &str) -> Result<ContainerDetails, DockerError> {
        let path = self.connect_path()?.to_string_lossy().into_owned();
        let docker = Docker::connect_with_unix(&path, API_TIMEOUT.as_secs(), &FIXED_API)
            .map_err(|e| self.unreachable(e))?;
        self.inspect_with(&docker, name)
    }

    fn inspect_with(&self, docker: &Docker, name: &str) -> Result<ContainerDetails, DockerError> {
        validate_ref(name)?;
        let rt = &self.rt;
        let c = timed(
            rt,
            "inspect",
            API_TIMEOUT,
            docker.inspect_container(name, None),
        )
        .map_err(|e| not_found_or(name, "inspect", e))?;
        let config = c.config.unwrap_or_default();
        let labels: HashMap<String, String> = config.labels.unwrap_or_default();
        let image = config.image.unwrap_or_default();
        let state = c.state.unwrap_or_default();
        let mounts = c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| MountInfo {
                kind: enum_text(&m.typ),
                name: m.name.unwrap_or_default(),
                source: m.source.unwrap_or_default(),
                destination: m.destination.unwrap_or_default(),
            })
            .collect();
        Ok(ContainerDetails {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            managed_by: classify(&labels, &image),
            image,
            user: config.user.unwrap_or_default(),
            state: enum_text(&state.status),
            running: state.running.unwrap_or(false),
            pid: state.pid.unwrap_or(0),
            finished_at: state.finished_at.unwrap_or_default(),
            exit_code: state.exit_code.unwrap_or(0),
            labels: labels.into_iter().collect(),
            mounts,
        })
    }

    /// Runs a read-only inspection program (see [`QUERY_PROGRAMS`]) inside a running container.
    pub fn query(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DockerError> {
        match argv.first() {
            Some(program) if QUERY_PROGRAMS.contains(&program.as_str()) => {
                self.run_exec(name, argv, timeout)
            }
            Some(program) => Err(DockerError::NotReadOnly {
                program: program.clone(),
            }),
            None => Err(DockerError::EmptyCommand),
        }
    }

    /// The owner container `name`'s files should have when its `Config.User` is `user`, decided
    /// by [`identity::owner`] from inspect (running or not) and read-only `id` / `getent group`
    /// runs inside it; a failed lookup is only a lookup that found nothing.
    pub fn user_ids(
        &self,
        name: &str,
        user: &str,
        timeout: Duration,
    ) -> Result<identity::Owner, DockerError> {
        let details = self.inspect(name)?;
        let mut inside = Lookups {
            client: self,
            name: &details.name,
            timeout,
        };
        Ok(identity::owner(
            &details.name,
            user,
            details.running,
            &mut inside,
        ))
    }

    /// Signs that container `name`'s own root file system is damaged ([`identity::taint`]), from
    /// one `stat` run inside it; none for a stopped container or a `stat` that cannot run.
    pub fn root_taint(&self, name: &str, timeout: Duration) -> Result<Vec<String>, DockerError> {
        if !self.inspect(name)?.running {
            return Ok(Vec::new());
        }
        let argv: Vec<String> = identity::TAINT_STAT
            .iter()
            .map(ToString::to_string)
            .collect();
        Ok(self
            .query(name, &argv, timeout)
            .map(|out| identity::taint(&out.stdout))
            .unwrap_or_default())
    }

    /// Runs any program inside a running container; it may change the container.
    pub fn exec(
        &self,
        _: Approval,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DockerError> {
        if argv.is_empty() {
            return Err(DockerError::EmptyCommand);
        }
        self.run_exec(name, argv, timeout)
    }

    /// Runs `argv` inside a running container without a shell and collects its output.
    fn run_exec(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DockerError> {
        validate_ref(name)?;
        let rt = &self.rt;
        let docker = self.client()?;
        let what = format!("exec {}", argv.first().map(String::as_str).unwrap_or(""));
        let run = async {
            let created = docker
                .create_exec(
                    name,
                    CreateExecOptions {
                        cmd: Some(argv.to_vec()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await?;
            // Bytes are collected whole and decoded once, so a character split across two
            // chunks survives; a container that floods its output is cut off, not buffered.
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let mut too_large = false;
            if let StartExecResults::Attached { mut output, .. } =
                docker.start_exec(&created.id, None).await?
            {
                while let Some(chunk) = output.next().await {
                    match chunk? {
                        bollard::container::LogOutput::StdErr { message } => {
                            stderr.extend_from_slice(&message);
                        }
                        other => stdout.extend_from_slice(&other.into_bytes()),
                    }
                    if stdout.len() + stderr.len() > MAX_EXEC_OUTPUT {
                        too_large = true;
                        break;
                    }
                }
            }
            let exit_code = if too_large {
                -1
            } else {
                docker
                    .inspect_exec(&created.id)
                    .await?
                    .exit_code
                    .unwrap_or(-1)
            };
            let out = ExecOutput {
                exit_code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            };
            Ok::<_, BollardError>((out, too_large))
        };
        let (out, too_large) =
            timed(rt, &what, timeout, run).map_err(|e| not_found_or(name, &what, e))?;
        if too_large {
            return Err(DockerError::OutputTooLarge {
                what,
                limit: MAX_EXEC_OUTPUT,
            });
        }
        Ok(out)
    }

    /// Stops every container of the set at once; each gets `timeout` to shut down before the
    /// engine kills it. A container that exited or disappeared meanwhile counts as stopped.
    pub fn stop(
        &self,
        _: Approval,
        ids: &[String],
        timeout: Duration,
    ) -> Result<SetReport, DockerError> {
        validate_refs(ids)?;
        let rt = &self.rt;
        let docker = self.client()?;
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let limit = timeout + STOP_GRACE;
        let jobs = ids.iter().map(|id| async move {
            let options = StopContainerOptions {
                t: Some(secs),
                ..Default::default()
            };
            let result =
                tokio::time::timeout(limit, docker.stop_container(id, Some(options))).await;
            (id.clone(), result)
        });
        let results = rt.block_on(futures_util::future::join_all(jobs));
        Ok(collect_set(results, limit))
    }

    /// Starts every container of the set at once.
    pub fn start(&self, _: Approval, ids: &[String]) -> Result<SetReport, DockerError> {
        validate_refs(ids)?;
        let rt = &self.rt;
        let docker = self.client()?;
        let jobs = ids.iter().map(|id| async move {
            let result = tokio::time::timeout(
                API_TIMEOUT,
                docker.start_container(id, None::<StartContainerOptions>),
            )
            .await;
            (id.clone(), result)
        });
        let results = rt.block_on(futures_util::future::join_all(jobs));
        Ok(collect_set(results, API_TIMEOUT))
    }
}

/// The lookups [`identity::owner`] asks of one running container: read-only programs, each
/// `None` unless it ran, exited 0 and printed what was expected.
struct Lookups<'a> {
    client: &'a Client,
    name: &'a str,
    timeout: Duration,
}

impl Lookups<'_> {
    fn run(&self, argv: &[&str]) -> Option<String> {
        let argv: Vec<String> = argv.iter().map(ToString::to_string).collect();
        let out = self.client.query(self.name, &argv, self.timeout).ok()?;
        (out.exit_code == 0).then_some(out.stdout)
    }
}

impl identity::Inside for Lookups<'_> {
    fn id(&mut self, user: Option<&str>) -> Option<identity::Ids> {
        let out = match user {
            Some(user) => self.run(&["id", user]),
            None => self.run(&["id"]),
        };
        identity::parse_id(&out?)
    }

    fn group(&mut self, group: &str) -> Option<u64> {
        identity::parse_getent_group(&self.run(&["getent", "group", group])?)
    }
}

fn engine_container(c: ContainerSummary) -> EngineContainer {
    let labels = c.labels.unwrap_or_default();
    let image = c.image.unwrap_or_default();
    let state = enum_text(&c.state);
    EngineContainer {
        id: c.id.unwrap_or_default(),
        name: c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        managed_by: classify(&labels, &image),
        image,
        running: state == "running",
        state,
        labels: labels.into_iter().collect(),
        mounts: c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| MountInfo {
                kind: enum_text(&m.typ),
                name: m.name.unwrap_or_default(),
                source: m.source.unwrap_or_default(),
                destination: m.destination.unwrap_or_default(),
            })
            .collect(),
    }
}

fn validate_refs(ids: &[String]) -> Result<(), DockerError> {
    ids.iter().try_for_each(|id| validate_ref(id))
}

type TimedResult = Result<Result<(), BollardError>, tokio::time::error::Elapsed>;

fn collect_set(results: Vec<(String, TimedResult)>, limit: Duration) -> SetReport {
    let mut report = SetReport::default();
    for (id, result) in results {
        match result {
            // The engine answers 304 for "already in that state"; bollard maps it to Ok.
            Ok(Ok(())) => report.done.push(id),
            Ok(Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            })) => report.gone.push(id),
            Ok(Err(e)) => report.failed.push(SetFailure {
                id,
                error: first_line(&e.to_string()),
            }),
            Err(_) => report.failed.push(SetFailure {
                id,
                error: format!("no answer within {} s", limit.as_secs()),
            }),
        }
    }
    report
}

fn timed<T, F>(rt: &Runtime, what: &str, limit: Duration, fut: F) -> Result<T, DockerError>
where
    F: std::future::Future<Output = Result<T, BollardError>>,
{
    match rt.block_on(async { tokio::time::timeout(limit, fut).await }) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(api_error(what, e)),
        Err(_) => Err(DockerError::Timeout {
            what: what.to_string(),
            secs: limit.as_secs(),
        }),
    }
}

fn api_error(what: &str, e: BollardError) -> DockerError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => DockerError::NotFound(message),
        other => DockerError::Api {
            what: what.to_string(),
            message: first_line(&other.to_string()),
        },
    }
}

fn not_found_or(name: &str, _what: &str, e: DockerError) -> DockerError {
    match e {
        DockerError::NotFound(_) => DockerError::NotFound(name.to_string()),
        other => other,
    }
}

/// The engine's enums serialize to their wire names (`running`, `volume`, ...).
fn enum_text<T: Serialize>(value: &Option<T>) -> String {
    value
        .as_ref()
        .and_then(|v| serde_json::to_value(v).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// An error's first line, and the text of its `help:` line if it has one.
fn error_and_help(text: &str) -> (String, String) {
    let help = text
        .lines()
        .find_map(|l| l.strip_prefix("help: "))
        .unwrap_or("");
    (first_line(text), help.to_string())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// Why the engine's containers could not be listed. "No containers" is the answer that lets an
/// update proceed, so every doubt is one of these, never an empty list [P3, P5].
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Engine(#[from] DockerError),
    #[error("cannot verify running container state: {0}")]
    Unverified(DockerError),
    #[error("cannot verify running container state: {unit} is active but {socket} does not exist")]
    ActiveWithoutSocket { unit: &'static str, socket: String },
    #[error(
        "cannot verify running container state: {socket} does not exist and the state of {unit} is unknown: {source}"
    )]
    UnitUnknown {
        unit: &'static str,
        socket: String,
        source: Box<super::systemd::UnitError>,
    },
    #[error(
        "cannot list stopped containers: the engine is not running ({socket} does not exist)\nhelp: systemctl start {unit}"
    )]
    StoppedWhileDown { unit: &'static str, socket: String },
    #[error("cannot read when {unit} last started: {source}")]
    LastStart {
        unit: &'static str,
        source: Box<super::systemd::UnitError>,
    },
}

/// The managed containers, fail-closed: the engine answers, or its socket is absent and the engine
/// is known to be down. A socket deleted under a live engine, or an engine unit whose state nobody
/// can read, is "cannot verify", never "no containers" [P3, P5]. With `all`, a down engine is an
/// error too: stopped containers outlive it [P75]. Touches the engine socket and `systemctl`.
pub fn list_managed_checked(host: &Host, all: bool) -> Result<Vec<ContainerInfo>, ListError> {
    let docker = host.docker();
    if all {
        return Ok(docker
            .list_all()?
            .into_iter()
            .filter_map(EngineContainer::into_managed)
            .collect());
    }
    match docker.list_managed(all).map_err(ListError::Unverified)? {
        Some(list) => Ok(list),
        None => engine_known_down(host).map(|()| Vec::new()),
    }
}

/// Every container on the engine, labelled or not, fail-closed like [`list_managed_checked`].
/// With the engine down no container runs, but stopped ones still exist: listing all of them is
/// then an error.
pub fn list_checked(host: &Host, all: bool) -> Result<Vec<EngineContainer>, ListError> {
    if let Some(list) = host.docker().list(all).map_err(ListError::Unverified)? {
        return Ok(list);
    }
    engine_known_down(host)?;
    if all {
        return Err(ListError::StoppedWhileDown {
            unit: super::systemd::ENGINE_UNIT,
            socket: host.docker().status().socket,
        });
    }
    Ok(Vec::new())
}

/// The engine socket is absent: fine only while the engine unit is known to be inactive.
fn engine_known_down(host: &Host) -> Result<(), ListError> {
    let unit = super::systemd::ENGINE_UNIT;
    let socket = host.docker().status().socket;
    match super::systemd::engine_down(host) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ListError::ActiveWithoutSocket { unit, socket }),
        Err(source) => Err(ListError::UnitUnknown {
            unit,
            socket,
            source: Box::new(source),
        }),
    }
}

/// A managed container the engine stopped while it last started.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoppedAtStart {
    pub id: String,
    pub name: String,
    pub finished_at: String,
    pub exit_code: i64,
}

/// The managed containers the engine stopped while it last started (it came up after a dockerd
/// that died without its stop hook, and nothing starts them again); `None` when the engine unit
/// never started in this boot. Touches `systemctl` and the engine socket.
pub fn stopped_at_engine_start(host: &Host) -> Result<Option<Vec<StoppedAtStart>>, ListError> {
    let unit = super::systemd::ENGINE_UNIT;
    let start = super::systemd::last_start(host, unit).map_err(|source| ListError::LastStart {
        unit,
        source: Box::new(source),
    })?;
    let Some(start) = start else {
        return Ok(None);
    };
    let mut stopped = Vec::new();
    for c in list_managed_checked(host, true)? {
        if c.running {
            continue;
        }
        // Removed since the listing: nothing to start.
        let Ok(details) = host.docker().inspect(&c.id) else {
            continue;
        };
        if !details.running
            && crate::plan::containers::stopped_at_start(&details.finished_at, start)
        {
            stopped.push(StoppedAtStart {
                id: details.id,
                name: details.name,
                finished_at: details.finished_at,
                exit_code: details.exit_code,
            });
        }
    }
    Ok(Some(stopped))
}

/// A timeout a script gave in seconds, within 1 s..=1 h: a wait above an hour is a typo, not a
/// plan.
pub fn timeout_secs(what: &str, secs: i64) -> Result<Duration, DockerError> {
    if (1..=MAX_TIMEOUT_SECS).contains(&secs) {
        Ok(Duration::from_secs(secs.unsigned_abs()))
    } else {
        Err(DockerError::TimeoutRange {
            what: what.to_string(),
            secs,
        })
    }
}

/// The engine API version [`Client::inspect_unnegotiated`] speaks: Docker 20.10's, served by every
/// engine a ContainAI release targets (newer engines keep serving older versions).
const FIXED_API: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// The longest stop or wait timeout a script may ask for.
pub const MAX_TIMEOUT_SECS: i64 = 3600;

/// Waits until the engine answers on its socket, at most `secs` (1..=3600) seconds; Ctrl-C or
/// the script's budget ends the wait early [P71]. Touches the engine socket.
pub fn wait_engine(host: &Host, secs: i64) -> Result<Result<bool, super::wait::Cut>, DockerError> {
    let timeout = timeout_secs("containers::wait_engine", secs)?;
    Ok(host.docker().wait_answering(timeout, &host.wait_limits()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_follow_the_engine_grammar() {
        for ok in ["agent-1", "a", "A.b_c-d", "0123abcdef", "cai-example"] {
            assert!(validate_ref(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "_x",
            "a/b",
            "../../volumes/x",
            "x?force=true",
            "x&t=0",
            "x/stop",
            "a b",
            "a\nb",
            "é",
            "x#y",
            "x%2Fy",
        ] {
            assert!(validate_ref(bad).is_err(), "{bad}");
        }
        assert!(validate_ref(&"a".repeat(254)).is_err());
    }
}
