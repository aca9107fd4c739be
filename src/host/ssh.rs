//! SSH into managed containers with the system OpenSSH client: which container, on which port,
//! with which options, and how a connection failure differs from the remote command's own exit
//! status.
//!
//! Every option is set on the command line and `-F /dev/null` keeps `~/.ssh/config` and
//! `/etc/ssh/ssh_config` out; the user's agent is not asked (`IdentityAgent=none`). The identity
//! and known-hosts files are `cai`'s own under `~/.config/containai/`, and `ssh` matches the
//! known-hosts entry for exactly `[127.0.0.1]:port` (`HostKeyAlias`; without it, ssh also takes a
//! bare `127.0.0.1` entry, which another port's server wrote) [P53].
//!
//! A connection is made first, as a control master under the user's runtime directory (or a
//! private 0700 directory in `/tmp`): retried with backoff while nothing answers, classified when
//! it fails (host key changed or unknown, key refused, unreachable). The command then runs once
//! over that connection, so an exit status of 255 is the remote command's own and is passed
//! through, never retried [P52]. Later commands reuse the master, which makes repeated execs
//! cheaper than fresh connections.
//!
//! This module never decides what runs remotely ([`crate::plan::shell`] builds that string) and
//! never prints: the CLI and the script bindings report.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Host;
use super::command::{self, Ended};
use super::docker::{self, DockerError, ExecOutput};
use crate::effects::{Action, Approval};
use crate::plan::containers::{ManagedBy, SSH_PORT_LABEL};
use crate::plan::shell::{
    self, ConnectFailure, Detached, HOST, USER, classify_connect, known_host_listed,
    known_hosts_pattern,
};

/// The identity `cai` logs in with, under the user's home.
pub const KEY: &str = ".config/containai/id_containai";
/// The known hosts `cai` trusts, under the user's home.
pub const KNOWN_HOSTS: &str = ".config/containai/known_hosts";
/// Seconds `ssh` waits for the TCP connection.
const CONNECT_TIMEOUT_SECS: u64 = 5;
/// How long an idle control master stays for the next command.
const PERSIST_SECS: u64 = 60;
/// The whole of one connection attempt (TCP, key exchange, authentication).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries of a connection to a running container, and the pause before each retry.
const TRIES: u32 = 3;
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(1000)];
/// How long a container that was just started gets for its SSH server to answer.
const STARTED_BUDGET: Duration = Duration::from_secs(30);
/// A detached start: the connection is up, so this covers the remote program's half second.
const DETACH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the end of a piped shell's input is told again while the shell still runs (each
/// end-of-file character is read once); a long last command queues at most a few hundred.
const EOF_REPEAT_FIRST: Duration = Duration::from_millis(100);
const EOF_REPEAT_MAX: Duration = Duration::from_secs(1);
/// Output a script may hold from one remote command.
const MAX_OUTPUT: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Container(String),
    #[error(transparent)]
    Engine(#[from] DockerError),
    #[error(
        "no home directory (HOME is not set), so the SSH key ~/{KEY} cannot be found\nhelp: run cai with HOME set to the home that holds ~/.config/containai"
    )]
    NoHome,
    #[error(
        "missing SSH key {0}\nhelp: restore the ContainAI key there, or create one with `ssh-keygen -t ed25519 -N '' -f {0}` and add {0}.pub to the container's authorized keys"
    )]
    MissingKey(PathBuf),
    #[error("ssh is not installed (not found on PATH)\nhelp: apt-get install openssh-client")]
    NoClient,
    #[error("cannot use {path} for SSH: {reason}")]
    Path { path: PathBuf, reason: String },
    #[error(
        "the SSH host key of container {name} at {pattern} has changed: it does not match {known_hosts}\nhelp: if the container was recreated, remove the old key with `ssh-keygen -f {known_hosts} -R '{pattern}'` and add the new one; otherwise do not connect and find out who answers on port {port}"
    )]
    HostKeyChanged {
        name: String,
        pattern: String,
        port: u16,
        known_hosts: PathBuf,
    },
    #[error(
        "no SSH host key for container {name} ({pattern}) in {known_hosts}{listed}\nhelp: add the container's host key as a line `{pattern} <key>` to {known_hosts} (ContainAI writes it when it creates the container)"
    )]
    HostKeyUnknown {
        name: String,
        pattern: String,
        known_hosts: PathBuf,
        /// Why ssh still refused a listed host (a hashed or malformed line, say).
        listed: String,
    },
    #[error(
        "container {name} refused the SSH key {key} for user {USER} on port {port}\nhelp: add {key}.pub to /home/{USER}/.ssh/authorized_keys in the container"
    )]
    AuthRefused {
        name: String,
        port: u16,
        key: PathBuf,
    },
    #[error(
        "cannot connect to container {name} over SSH at {HOST}:{port} after {tries} tries{detail}\nhelp: check that the container's SSH server runs and listens on port {port} (its containai.ssh-port label); see docs/troubleshooting.md, \"cannot connect\""
    )]
    Unreachable {
        name: String,
        port: u16,
        tries: u32,
        detail: String,
    },
    #[error("cannot run ssh: {0}")]
    Spawn(std::io::Error),
    #[error("ssh {what} did not finish within {secs} s and was stopped")]
    Timeout { what: String, secs: u64 },
    #[error("{what}: output exceeds {limit} bytes")]
    OutputTooLarge { what: String, limit: usize },
    #[error(
        "the detached start in {name} gave no answer (remote status {status}){detail}\nhelp: the workspace /home/{USER}/workspace must exist and be writable by {USER}"
    )]
    NoDetachAnswer {
        name: String,
        status: String,
        detail: String,
    },
}

impl From<shell::ArgError> for SshError {
    fn from(e: shell::ArgError) -> Self {
        SshError::Input(e.to_string())
    }
}

/// A managed container to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub port: u16,
    pub running: bool,
}

/// Picks the container: the one named, else the only running managed one. A named container
/// must be managed and carry a numeric `containai.ssh-port` label.
pub fn select(host: &Host, name: Option<&str>) -> Result<Target, SshError> {
    let docker = host.docker();
    let Some(name) = name else {
        let all = docker.list_managed(true)?.ok_or_else(|| {
            SshError::Container(format!(
                "the containai-docker engine socket {} does not exist, so no container runs\nhelp: systemctl start containai-docker.service (on a host without the engine unit yet, cai update installs it and starts the engine)",
                docker.socket().display()
            ))
        })?;
        let running: Vec<_> = all.iter().filter(|c| c.running).collect();
        return match running.as_slice() {
            [one] => target_of(&one.name, &one.labels, Some(one.managed_by), one.running),
            [] if all.is_empty() => Err(SshError::Container(
                "no managed container exists on the containai-docker engine\nhelp: create one with ContainAI, then run this again".into(),
            )),
            [] => Err(SshError::Container(format!(
                "no managed container is running; stopped: {}\nhelp: name one to start it, e.g. `cai shell {}`",
                names(all.iter().map(|c| c.name.as_str())),
                all[0].name
            ))),
            several => Err(SshError::Container(format!(
                "{} managed containers are running: {}\nhelp: name one, e.g. `cai shell {}`",
                several.len(),
                names(several.iter().map(|c| c.name.as_str())),
                several[0].name
            ))),
        };
    };
    docker::validate_ref(name)?;
    if let Some(target) = inspect_once(host, name) {
        return target;
    }
    match docker.inspect(name) {
        Ok(c) => target_of(&c.name, &c.labels, c.managed_by, c.running),
        Err(DockerError::NotFound(_)) => {
            let managed = docker
                .list_managed(true)?
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>();
            let help = if managed.is_empty() {
                "there is no managed container on this engine".to_string()
            } else {
                format!(
                    "managed containers: {}",
                    names(managed.iter().map(String::as_str))
                )
            };
            Err(SshError::Container(format!(
                "container {name} not found on the containai-docker engine\nhelp: {help}"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// A named container resolved in one engine request, for the latency of `cai exec`
/// ([`super::docker::Client::inspect_unnegotiated`]). `None` unless the engine answered with the
/// container, so that [`select`] asks again through the negotiating client and every failure (no
/// socket, permission, not found, an engine that does not serve the fixed API version) reads as
/// everywhere else.
fn inspect_once(host: &Host, name: &str) -> Option<Result<Target, SshError>> {
    let c = host.docker().inspect_unnegotiated(name).ok()?;
    Some(target_of(&c.name, &c.labels, c.managed_by, c.running))
}

fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    list.collect::<Vec<_>>().join(", ")
}

fn target_of(
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
    managed_by: Option<ManagedBy>,
    running: bool,
) -> Result<Target, SshError> {
    if managed_by.is_none() {
        return Err(SshError::Container(format!(
            "container {name} is not managed by ContainAI (no containai.managed=true label), so cai does not connect to it"
        )));
    }
    let Some(label) = labels.get(SSH_PORT_LABEL) else {
        return Err(SshError::Container(format!(
            "container {name} has no {SSH_PORT_LABEL} label, so cai cannot tell where its SSH server listens\nhelp: recreate the container with ContainAI"
        )));
    };
    let port = shell::parse_port(label).ok_or_else(|| {
        SshError::Container(format!(
            "container {name}: label {SSH_PORT_LABEL} is {label:?}, not a port number (1-65535)\nhelp: recreate the container with ContainAI"
        ))
    })?;
    Ok(Target {
        name: name.to_string(),
        port,
        running,
    })
}

/// Starts a stopped container through the effect gate.
pub fn start(host: &Host, target: &Target) -> Result<(), SshError> {
    let ids = vec![target.name.clone()];
    let action = Action::new("containers.start", &target.name, json!({ "ids": ids }));
    let report = host
        .gate
        .apply(action, docker::SetReport::default, |ok| {
            host.docker().start(ok, &ids)
        })
        .map_err(|e| SshError::Container(format!("cannot start container {}: {e}", target.name)))?;
    if let Some(failed) = report.failed.first() {
        return Err(SshError::Container(format!(
            "cannot start container {}: {}",
            target.name, failed.error
        )));
    }
    Ok(())
}

/// How patient a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// A running container: [`TRIES`] tries with backoff.
    Running,
    /// A container that was just started: its SSH server gets [`STARTED_BUDGET`] to come up.
    JustStarted,
}

/// An SSH connection to one container, made and checked; commands run over it.
pub struct Session {
    ssh: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    control_dir: PathBuf,
    name: String,
    port: u16,
}

impl Session {
    /// Connects to `target` (or finds the connection a previous command left), retrying while
    /// nothing answers.
    pub fn connect(host: &Host, target: &Target, patience: Patience) -> Result<Self, SshError> {
        let home = host.home.as_deref().ok_or(SshError::NoHome)?;
        let key = home.join(KEY);
        if !key.is_file() {
            return Err(SshError::MissingKey(key));
        }
        let ssh = command::find_program(host.path_env(), "ssh").ok_or(SshError::NoClient)?;
        let session = Session {
            ssh,
            key,
            known_hosts: home.join(KNOWN_HOSTS),
            control_dir: control_dir(host.runtime_dir.as_deref())?,
            name: target.name.clone(),
            port: target.port,
        };
        session.ensure_master(patience)?;
        Ok(session)
    }

    /// The options of every `ssh` call; `ControlMaster` is added by the caller.
    fn options(&self) -> Result<Vec<OsString>, SshError> {
        let mut args: Vec<OsString> = vec!["-F".into(), "/dev/null".into()];
        let mut opt = |text: String| {
            args.push("-o".into());
            args.push(text.into());
        };
        opt(format!("IdentityFile={}", ssh_path(&self.key)?));
        opt("IdentitiesOnly=yes".into());
        opt("IdentityAgent=none".into());
        opt(format!(
            "UserKnownHostsFile={}",
            ssh_path(&self.known_hosts)?
        ));
        opt("GlobalKnownHostsFile=/dev/null".into());
        opt("StrictHostKeyChecking=yes".into());
        // The key is looked up as exactly `[127.0.0.1]:port`: without the alias, ssh also
        // accepts an entry for the bare address, which belongs to another port [P53].
        opt(format!(
            "HostKeyAlias={}",
            known_hosts_pattern(HOST, self.port)
        ));
        opt("CheckHostIP=no".into());
        opt("UpdateHostKeys=no".into());
        opt("VerifyHostKeyDNS=no".into());
        opt("BatchMode=yes".into());
        opt("PasswordAuthentication=no".into());
        opt("KbdInteractiveAuthentication=no".into());
        opt("PubkeyAuthentication=yes".into());
        opt("LogLevel=ERROR".into());
        opt(format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"));
        opt("ServerAliveInterval=15".into());
        opt("ServerAliveCountMax=4".into());
        opt("ForwardAgent=no".into());
        opt("ForwardX11=no".into());
        opt("ClearAllForwardings=yes".into());
        opt("EscapeChar=none".into());
        opt(format!("ControlPath={}", ssh_path(&self.control_path())?));
        opt(format!("User={USER}"));
        opt(format!("Port={}", self.port));
        Ok(args)
    }

    fn command(&self, control: &str) -> Result<Command, SshError> {
        let mut cmd = Command::new(&self.ssh);
        cmd.args(self.options()?).args(["-o", control]);
        Ok(cmd)
    }

    /// A master is there, or one is started (under a lock, so concurrent commands start one).
    fn ensure_master(&self, patience: Patience) -> Result<(), SshError> {
        let lock = File::options()
            .create(true)
            .append(true)
            .open(self.control_dir.join(format!("lock-{}", self.port)))
            .map_err(|e| self.path_error(&self.control_dir, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| self.path_error(&self.control_dir, e.into()))?;
        let deadline = Instant::now() + STARTED_BUDGET;
        let mut tries = 0;
        let mut pause = Duration::from_millis(250);
        loop {
            if self.master_alive()? {
                return Ok(());
            }
            tries += 1;
            let stderr = match self.start_master()? {
                None => return Ok(()),
                Some(stderr) => stderr,
            };
            let detail = first_lines(&stderr);
            match classify_connect(&stderr) {
                ConnectFailure::HostKeyChanged => {
                    return Err(SshError::HostKeyChanged {
                        name: self.name.clone(),
                        pattern: known_hosts_pattern(HOST, self.port),
                        port: self.port,
                        known_hosts: self.known_hosts.clone(),
                    });
                }
                ConnectFailure::HostKeyUnknown => {
                    let text = std::fs::read_to_string(&self.known_hosts).unwrap_or_default();
                    let listed = if known_host_listed(&text, HOST, self.port) {
                        format!(" that ssh accepts ({detail})")
                    } else {
                        String::new()
                    };
                    return Err(SshError::HostKeyUnknown {
                        name: self.name.clone(),
                        pattern: known_hosts_pattern(HOST, self.port),
                        known_hosts: self.known_hosts.clone(),
                        listed,
                    });
                }
                ConnectFailure::AuthRefused => {
                    return Err(SshError::AuthRefused {
                        name: self.name.clone(),
                        port: self.port,
                        key: self.key.clone(),
                    });
                }
                ConnectFailure::Transient => {}
            }
            let wait = match patience {
                Patience::Running if tries < TRIES => Some(BACKOFF[(tries - 1) as usize]),
                Patience::JustStarted if Instant::now() + pause < deadline => {
                    let now = pause;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    Some(now)
                }
                _ => None,
            };
            match wait {
                Some(wait) => std::thread::sleep(wait),
                None => {
                    return Err(SshError::Unreachable {
                        name: self.name.clone(),
                        port: self.port,
                        tries,
                        detail: if detail.is_empty() {
                            String::new()
                        } else {
                            format!(": {detail}")
                        },
                    });
                }
            }
        }
    }

    /// The control socket of this container's master: named by port, so `cai` finds it without
    /// asking `ssh` (which `%C` would need).
    fn control_path(&self) -> PathBuf {
        control_path(&self.control_dir, self.port)
    }

    /// A master for this container answers on its socket: it greets a new client with the
    /// multiplexing hello, as `ssh -O check` would see, without a second process. A socket
    /// nobody listens on (the master died and left it) is removed, so the next master can
    /// take its place; ssh would otherwise start one without multiplexing.
    fn master_alive(&self) -> Result<bool, SshError> {
        let path = self.control_path();
        match master_greets(&path) {
            Master::Alive => Ok(true),
            Master::Absent => Ok(false),
            Master::Stale => {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.path_error(&path, e)),
                }
                Ok(false)
            }
        }
    }

    /// Starts a master that stays in the background; `None` once it is up, else ssh's stderr.
    /// Its stderr goes to an unnamed file, not a pipe: the master keeps it after the parent
    /// exits, and a pipe would never see its end.
    fn start_master(&self) -> Result<Option<String>, SshError> {
        let mut errors = tempfile::tempfile().map_err(SshError::Spawn)?;
        let mut child = self
            .command("ControlMaster=yes")?
            .args(["-o", &format!("ControlPersist={PERSIST_SECS}")])
            .args(["-N", "-f", HOST])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(errors.try_clone().map_err(SshError::Spawn)?)
            .spawn()
            .map_err(SshError::Spawn)?;
        let status = wait_timeout(&mut child, ATTEMPT_TIMEOUT, "connection")?;
        if status.success() {
            return Ok(None);
        }
        let mut text = String::new();
        errors.rewind().map_err(SshError::Spawn)?;
        let _ = errors.read_to_string(&mut text);
        if text.trim().is_empty() {
            text = format!("ssh {}", describe(status));
        }
        Ok(Some(text))
    }

    fn path_error(&self, path: &Path, e: std::io::Error) -> SshError {
        SshError::Path {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }

    /// Runs `remote` with the caller's stdin, stdout and stderr: a PTY (`-tt`) when `tty`, else
    /// none (`-T`) and the three streams stay apart. `ssh` takes this process's place (nothing
    /// is left to do once it runs, and a process less is as fast as `ssh` alone), so its exit
    /// status is the command's, as it is passed through; this returns only when `ssh` cannot
    /// be started.
    pub fn attached(&self, tty: bool, remote: &OsStr) -> Result<u8, SshError> {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        // What this process buffered is written before ssh replaces it.
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let error = self
            .command("ControlMaster=no")?
            .arg(if tty { "-tt" } else { "-T" })
            .arg(HOST)
            .arg(remote)
            .exec();
        Err(SshError::Spawn(error))
    }

    /// Runs the login shell with a PTY (`-tt`) while stdin is not a terminal (`cai shell` fed
    /// by a pipe or `/dev/null`); `remote` is the [`shell::Remote::PipedShell`] program, which
    /// keeps the remote terminal in canonical mode. `ssh` gets a local terminal
    /// ([`super::pty`]) as stdin, so the remote PTY starts with its modes, and stdin is copied
    /// into it once `ssh` has taken it over. A PTY session ignores the end of ssh's input, so
    /// the end of stdin becomes the terminal's end-of-file character at the start of a line
    /// [P69]: the remote line discipline hands it to whoever reads the terminal as an end of
    /// file, never as data. On a pipe an end of file stays; on a terminal each one is read once,
    /// by the last command (`cat > file`, a prompt) and then by the shell, so it is sent again,
    /// less and less often, until the shell is gone. The shell ends with the status of its last
    /// command, as at the end of piped input.
    pub fn shell_from_pipe(&self, remote: &OsStr) -> Result<u8, SshError> {
        use std::io::Write;
        let super::pty::LocalPty {
            controller,
            terminal,
        } = super::pty::open().map_err(SshError::Spawn)?;
        // The terminal goes to ssh alone (this copy closes with the command), so it hangs up
        // when ssh ends.
        let mut child = self
            .command("ControlMaster=no")?
            .args(["-tt", HOST])
            .arg(remote)
            .stdin(Stdio::from(terminal))
            .spawn()
            .map_err(SshError::Spawn)?;
        // Not joined: it may block on a stdin that never ends after the shell is gone, and it
        // ends with the process once the shell is.
        std::thread::spawn(move || {
            if !super::pty::wait_taken_over(&controller, ATTEMPT_TIMEOUT) {
                return;
            }
            let mut sink = File::from(controller);
            let mut input = std::io::stdin().lock();
            let mut buf = [0_u8; 8192];
            let mut last = b'\n';
            loop {
                match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        last = buf[n - 1];
                        if sink.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            // Mid-line, the character would only end the line; a newline first.
            if last != b'\n' && sink.write_all(b"\n").is_err() {
                return;
            }
            let mut pause = EOF_REPEAT_FIRST;
            // Ends when ssh is gone and the terminal hangs up.
            while sink.write_all(&[shell::VEOF]).is_ok() {
                std::thread::sleep(pause);
                pause = (pause * 2).min(EOF_REPEAT_MAX);
            }
        });
        let status = child.wait().map_err(SshError::Spawn)?;
        Ok(exit_code(status))
    }

    /// Runs `remote` without a PTY, stdin closed, and collects its output.
    pub fn captured(&self, remote: &OsStr, timeout: Duration) -> Result<ExecOutput, SshError> {
        let mut args = self.options()?;
        args.extend(["-o", "ControlMaster=no", "-T", HOST].map(OsString::from));
        args.push(remote.to_os_string());
        let out = command::run(&self.ssh, &args, None, timeout).map_err(|e| match e {
            command::CommandError::Timeout { secs, .. } => SshError::Timeout {
                what: format!("in {}", self.name),
                secs,
            },
            other => SshError::Spawn(std::io::Error::other(other.to_string())),
        })?;
        if out.stdout.len() + out.stderr.len() > MAX_OUTPUT {
            return Err(SshError::OutputTooLarge {
                what: format!("ssh in {}", self.name),
                limit: MAX_OUTPUT,
            });
        }
        Ok(ExecOutput {
            exit_code: match out.ended {
                Ended::Code(code) => i64::from(code),
                Ended::Signal(signal) => 128 + i64::from(signal),
            },
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// Starts `remote` (a [`shell::Remote::Detach`] program) and reads its answer; the remote
    /// stderr (the start of the job's log when it failed at once) is returned with it.
    pub fn detached(&self, remote: &OsStr) -> Result<(Detached, String), SshError> {
        let out = self.captured(remote, DETACH_TIMEOUT)?;
        match shell::parse_detached(&out.stdout) {
            Some(answer) => Ok((answer, out.stderr)),
            None => Err(SshError::NoDetachAnswer {
                name: self.name.clone(),
                status: out.exit_code.to_string(),
                detail: if out.stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", first_lines(&out.stderr))
                },
            }),
        }
    }
}

/// Runs a command in a running managed container for a script, after the gate approved it.
pub fn exec(
    _: Approval,
    host: &Host,
    name: &str,
    remote: &OsStr,
    timeout: Duration,
) -> Result<ExecOutput, SshError> {
    let session = Session::connect(host, &running(host, name)?, Patience::Running)?;
    session.captured(remote, timeout)
}

/// Starts a detached command in a running managed container for a script, after the gate
/// approved it.
pub fn spawn_detached(
    _: Approval,
    host: &Host,
    name: &str,
    remote: &OsStr,
) -> Result<Detached, SshError> {
    let session = Session::connect(host, &running(host, name)?, Patience::Running)?;
    Ok(session.detached(remote)?.0)
}

/// A script names its container and starts it itself (`containers::start`) if needed.
fn running(host: &Host, name: &str) -> Result<Target, SshError> {
    let target = select(host, Some(name))?;
    if !target.running {
        return Err(SshError::Container(format!(
            "container {name} is not running\nhelp: start it first with containers::start([\"{name}\"])"
        )));
    }
    Ok(target)
}

/// The control socket of the master for the container whose SSH server listens on `port`.
pub fn control_path(control_dir: &Path, port: u16) -> PathBuf {
    control_dir.join(format!("master-{port}"))
}

/// What is at a control socket's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Master {
    /// A master accepted the connection and said hello.
    Alive,
    /// Nothing there.
    Absent,
    /// A file nobody answers on (a master that died), or one that does not speak the
    /// protocol: in the way of a new master.
    Stale,
}

/// How long a live master has to greet a new client; it answers at once unless it is dying.
const GREETING_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to a control socket and reads the master's hello (`u32` length, `u32`
/// `MUX_MSG_HELLO` = 1, `u32` protocol version), then hangs up; the master forgets the client.
fn master_greets(path: &Path) -> Master {
    use std::os::unix::net::UnixStream;
    match std::fs::symlink_metadata(path) {
        Err(_) => return Master::Absent,
        Ok(meta) if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            return Master::Stale;
        }
        Ok(_) => {}
    }
    let Ok(mut stream) = UnixStream::connect(path) else {
        return Master::Stale;
    };
    if stream.set_read_timeout(Some(GREETING_TIMEOUT)).is_err() {
        return Master::Stale;
    }
    let mut hello = [0_u8; 12];
    if stream.read_exact(&mut hello).is_err() {
        return Master::Stale;
    }
    let length = u32::from_be_bytes([hello[0], hello[1], hello[2], hello[3]]);
    let kind = u32::from_be_bytes([hello[4], hello[5], hello[6], hello[7]]);
    if length >= 8 && kind == MUX_MSG_HELLO {
        Master::Alive
    } else {
        Master::Stale
    }
}

/// The first message of OpenSSH's multiplexing protocol (PROTOCOL.mux).
const MUX_MSG_HELLO: u32 = 1;

/// The directory of control sockets: `$XDG_RUNTIME_DIR/containai-ssh`, else
/// `/tmp/cai-ssh-UID`. Either must be a directory of this user's with mode 0700 (never a
/// symlink), since whoever can reach a socket can run commands in the container.
fn control_dir(runtime: Option<&Path>) -> Result<PathBuf, SshError> {
    let uid = rustix::process::geteuid().as_raw();
    let dir = match runtime {
        Some(runtime) if runtime.is_absolute() => runtime.join("containai-ssh"),
        _ => PathBuf::from(format!("/tmp/cai-ssh-{uid}")),
    };
    let refuse = |reason: String| SshError::Path {
        path: dir.clone(),
        reason,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refuse(e.to_string())),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    if meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "it must be a directory of uid {uid} with mode 0700 (it is uid {}, mode {:o})\nhelp: remove it; cai creates it again",
            meta.uid(),
            meta.permissions().mode() & 0o7777
        )));
    }
    Ok(dir)
}

/// A path as an `ssh -o` value: `%` doubled (ssh expands `%` tokens in these options), in
/// double quotes when it has a space.
fn ssh_path(path: &Path) -> Result<String, SshError> {
    let bad = |reason: &str| SshError::Path {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(path.as_os_str().as_bytes())
        .map_err(|_| bad("ssh options cannot carry a path that is not UTF-8"))?;
    if text.contains('"') || text.contains('\n') {
        return Err(bad(
            "ssh options cannot carry a path with a double quote or a newline",
        ));
    }
    let text = text.replace('%', "%%");
    Ok(if text.contains(' ') || text.contains('\t') {
        format!("\"{text}\"")
    } else {
        text
    })
}

fn wait_timeout(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> Result<ExitStatus, SshError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(SshError::Spawn)? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SshError::Timeout {
                what: what.to_string(),
                secs: limit.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The exit status `cai` passes on: the remote code, or 128 + the signal that ended ssh.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(255),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 255,
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".into(),
    }
}

/// The first lines of ssh's stderr, for a one-line detail.
fn first_lines(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
        .take(2)
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_written_for_ssh_options() {
        assert_eq!(ssh_path(Path::new("/h/.config/k")).unwrap(), "/h/.config/k");
        assert_eq!(ssh_path(Path::new("/h/100%/k")).unwrap(), "/h/100%%/k");
        assert_eq!(ssh_path(Path::new("/my home/k")).unwrap(), "\"/my home/k\"");
        assert!(ssh_path(Path::new("/a\"b")).is_err());
        assert!(ssh_path(Path::new(OsStr::from_bytes(b"/\xff"))).is_err());
    }

    #[test]
    fn the_control_directory_must_be_private() {
        let runtime = tempfile::tempdir().unwrap();
        let dir = control_dir(Some(runtime.path())).unwrap();
        assert_eq!(dir, runtime.path().join("containai-ssh"));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(control_dir(Some(runtime.path())).is_err());
        std::fs::remove_dir(&dir).unwrap();
        std::os::unix::fs::symlink(runtime.path(), &dir).unwrap();
        assert!(control_dir(Some(runtime.path())).is_err());
    }

    /// A live master greets; a socket left by a dead one, a file that is not a socket, and a
    /// listener that says something else are in the way; nothing is nothing.
    #[test]
    fn a_master_is_alive_only_when_it_greets() {
        use std::io::Write;
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let path = control_path(dir.path(), 2222);
        assert_eq!(path, dir.path().join("master-2222"));
        assert_eq!(master_greets(&path), Master::Absent);
        drop(UnixListener::bind(&path).unwrap());
        assert_eq!(
            master_greets(&path),
            Master::Stale,
            "a dead master's socket"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "x").unwrap();
        assert_eq!(master_greets(&path), Master::Stale, "not a socket");
        std::fs::remove_file(&path).unwrap();
        for (answer, want) in [
            ([0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 4], Master::Alive),
            ([0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 4], Master::Stale),
        ] {
            let listener = UnixListener::bind(&path).unwrap();
            let server = std::thread::spawn(move || {
                let (mut client, _) = listener.accept().unwrap();
                client.write_all(&answer).unwrap();
            });
            assert_eq!(master_greets(&path), want);
            server.join().unwrap();
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn exit_codes_pass_through() {
        for code in [0, 1, 3, 127, 255] {
            assert_eq!(exit_code(ExitStatus::from_raw(code << 8)), code as u8);
        }
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
