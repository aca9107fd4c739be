//! Side effects, one file per family. [`Host`] is the one handle that carries everything ambient:
//! the `--root` tree, config, platform, the terminal, `PATH`, the engine's machine (this one
//! or the Lima VM), the release target resolved once per run, the engine client with its runtime
//! and the effect gate. Nothing here reads global state behind the handle's back (in particular,
//! no `DOCKER_HOST` and no `CAI_SYSBOX_*`), and nothing here joins a path under the root: files
//! under `--root` are reached only through [`fs::Root`], and files that live wherever the engine
//! runs (units, packages) only through [`files`], which picks the root-anchored layer or the Lima
//! VM.

pub mod artifacts;
pub mod command;
pub mod docker;
pub mod dockerd;
pub mod files;
pub mod fs;
pub mod installs;
pub mod lima;
pub mod packages;
pub mod pty;
pub mod rollback;
pub mod ssh;
pub mod state;
pub mod sysbox;
pub mod systemd;
pub mod trust;
pub mod update;
pub mod volumes;
pub mod wait;

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::config::Config;
use crate::effects::{Gate, JournalSink, Mode};
use crate::plan::platform::{self, Platform};
use crate::plan::release::{self, Arch, Manifest, ReleaseError};
use command::{CommandError, CommandOutput, Machine};
use fs::Root;
use trust::Trust;

pub use crate::plan::layout::LINUX_SOCKET;
/// Default engine socket on macOS, under the user's home (and `--root`).
pub const MACOS_SOCKET: &str = ".lima/containai-docker/sock/docker.sock";
/// Kernel release, read for platform detection (under `--root`).
pub const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
/// Where live actions are journalled (under `--root`).
pub const JOURNAL_FILE: &str = "/var/lib/containai/actions.jsonl";
/// The Lima VM that runs the engine on macOS.
pub const LIMA_VM: &str = "containai-docker";

/// Facts probed once at start-up.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub root: Arc<Root>,
    /// Who may own the files `cai` trusts (site config, scripts, packages).
    pub trust: Trust,
    pub config: Config,
    pub mode: Mode,
    pub yes: bool,
    pub verbose: bool,
    /// stdin and stdout are terminals, so prompts can be asked.
    pub interactive: bool,
    pub home: Option<PathBuf>,
    /// The `PATH` programs are looked up in.
    pub path: Option<OsString>,
    /// Who invoked `cai`, for files kept in their home.
    pub owners: state::Owners,
    /// `CAI_SYSBOX_*` as the CLI read them; checked here, never read again.
    pub release_env: release::EnvVars,
    /// `XDG_RUNTIME_DIR`, where SSH control sockets live.
    pub runtime_dir: Option<PathBuf>,
}

#[cfg(test)]
impl HostOptions {
    /// A host over `root` with the default config, no terminal, no home and this process's `PATH`.
    pub fn for_tests(root: &Path, mode: Mode) -> Self {
        Self {
            root: Arc::new(Root::open(root).expect("test root")),
            trust: Trust::new(None),
            config: Config::default(),
            mode,
            yes: false,
            verbose: false,
            interactive: false,
            home: None,
            path: std::env::var_os("PATH"),
            owners: state::Owners::probe(None, None),
            release_env: crate::plan::release::EnvVars::default(),
            runtime_dir: None,
        }
    }
}

pub struct Host {
    root: Arc<Root>,
    pub trust: Trust,
    pub config: Config,
    pub platform: Platform,
    pub yes: bool,
    pub verbose: bool,
    pub interactive: bool,
    pub home: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`, where SSH control sockets live.
    pub runtime_dir: Option<PathBuf>,
    /// Who invoked `cai` (the `sudo` user, if any), for files kept in their home.
    pub owners: state::Owners,
    pub gate: Gate,
    /// Reports (e.g. doctor checks) collected for the one JSON document of a `--json` run.
    pub reports: std::cell::RefCell<Vec<serde_json::Value>>,
    /// The refusal the running script gave with `run::refuse`, read when it has finished.
    pub refusal: std::cell::RefCell<Option<Refusal>>,
    /// Set by Ctrl-C; scripts stop at their next operation.
    pub interrupted: Arc<AtomicBool>,
    /// The running script's wall-clock budget, which native waits honour [P71].
    pub script_clock: wait::ScriptClock,
    /// The update lock, once a live run took it; held until the process ends.
    pub update_lock: update::LockSlot,
    /// This run's installs, each pending until the core verified it; clearing the update
    /// record waits for them.
    pub installs: installs::Installs,
    /// What the operator agreed to stop for an update: any container when the run was given
    /// `--stop-containers` (or in the REPL, where a person types every call), exactly the
    /// containers named when a person answered yes to [`Host::confirm_stop`]. A yes to any other
    /// question, `--yes` and `--force` never grant it.
    pub stop_consent: std::cell::RefCell<StopConsent>,
    /// The operator chose to leave the containers an update stops stopped (`--no-restart`).
    pub no_restart: std::cell::Cell<bool>,
    /// How the volume walk enters directories; tests select the fallback (`cai doctor
    /// --walk-resolver fallback`), which is as strict, to exercise it on kernels with `openat2`.
    pub walk_resolver: std::cell::Cell<volumes::Resolver>,
    docker: docker::Client,
    machine: Machine,
    path: Option<OsString>,
    /// `CAI_SYSBOX_*`, checked at start-up, for resolving the release target.
    release_env: release::SysboxOverride,
    /// What this run updates to, resolved once [P26]; an error (an architecture the manifest has
    /// no artifacts for, a Lima VM that cannot be asked) is kept for the primitives that need the
    /// target to report. Resolved on first use: most commands never need it, and on macOS it asks
    /// limactl for the VM's architecture.
    release: std::cell::OnceCell<Result<release::UpdateTarget, TargetError>>,
}

/// Why this run's release target is not known.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Lima(#[from] lima::LimaError),
}

/// Why a flow refused, as `run::refuse` said it: `--json` documents carry it as their `error`
/// (and `refusal`), and a person reads it as `error: …` and `help: …` on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Refusal {
    pub message: String,
    pub help: Option<String>,
    /// The containers that block the flow, by name.
    pub containers: Vec<String>,
    /// The exit code, when it is not the documented refusal's (2): a failure the script
    /// explains, such as a host without systemd (1).
    #[serde(skip)]
    pub code: Option<u8>,
}

/// What the operator agreed to stop in this run (see [`Host::stop_consent`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StopConsent {
    /// Nothing: recording containers to stop is refused.
    #[default]
    None,
    /// Any container: `--stop-containers` was typed, or a person drives the REPL.
    Any,
    /// Exactly these containers, by name: a person's yes to the question that named them.
    Named(std::collections::BTreeSet<String>),
}

impl Host {
    pub fn new(options: HostOptions) -> anyhow::Result<Self> {
        let root = options.root;
        let platform = options.config.platform.unwrap_or_else(|| {
            // An unreadable release file reads as plain Linux, as on a machine without one.
            let release = root
                .read_to_string(Path::new(OSRELEASE))
                .ok()
                .flatten()
                .unwrap_or_default();
            platform::detect(&release)
        });
        // Every default is an absolute host path and resolves under `--root`, macOS's too.
        let socket = match (&options.config.socket, platform) {
            (Some(socket), _) => socket.clone(),
            (None, Platform::Macos) => options.home.clone().unwrap_or_default().join(MACOS_SOCKET),
            (None, _) => PathBuf::from(LINUX_SOCKET),
        };
        let docker = docker::Client::new(root.display_path(&socket), root.anchor(&socket))?;
        // A malformed CAI_SYSBOX_* stops every command, as a malformed config does: it is what
        // the operator typed, and guessing around it could install something else.
        let release_env = options.release_env.parse()?;
        // Always known: a REPL that switches to live mode journals from then on. The gate writes
        // to it only for actions it performs, appending through the root-anchored layer, which
        // refuses a symlinked journal instead of following it.
        let machine = match platform {
            Platform::Macos => Machine::Lima {
                vm: LIMA_VM.to_string(),
            },
            Platform::Linux | Platform::Wsl2 => Machine::Local,
        };
        Ok(Self {
            docker,
            gate: Gate::new(options.mode, Some(journal_sink(root.clone()))),
            machine,
            path: options.path,
            owners: options.owners,
            root,
            trust: options.trust,
            config: options.config,
            platform,
            yes: options.yes,
            verbose: options.verbose,
            interactive: options.interactive,
            home: options.home,
            runtime_dir: options.runtime_dir,
            interrupted: Arc::new(AtomicBool::new(false)),
            script_clock: wait::ScriptClock::default(),
            reports: std::cell::RefCell::new(Vec::new()),
            refusal: std::cell::RefCell::new(None),
            update_lock: update::LockSlot::default(),
            installs: installs::Installs::default(),
            stop_consent: std::cell::RefCell::default(),
            no_restart: std::cell::Cell::new(false),
            walk_resolver: std::cell::Cell::default(),
            release_env,
            release: std::cell::OnceCell::new(),
        })
    }

    /// The release target of this run (bundled manifest, config and environment overrides) for
    /// the architecture the engine runs on: this machine's, or the Lima VM's on macOS [P27].
    pub fn release(&self) -> Result<&release::UpdateTarget, &TargetError> {
        self.release
            .get_or_init(|| {
                let arch = self.engine_arch().map_err(TargetError::from)?;
                resolve_release(
                    Arch::from_deb(&arch),
                    &self.config.release,
                    &self.release_env,
                )
            })
            .as_ref()
    }

    /// What `limactl list` says about the engine's VM, or `None` where the engine runs on this
    /// machine (Linux, WSL2).
    pub fn lima_state(&self) -> Option<lima::VmState> {
        match &self.machine {
            Machine::Local => None,
            Machine::Lima { vm } => Some(lima::state(self.path.as_deref(), vm)),
        }
    }

    /// The Debian architecture the engine runs on: this machine's, or the Lima VM's as limactl
    /// reports it (never assumed from the Mac's) [P27].
    pub fn engine_arch(&self) -> Result<String, lima::LimaError> {
        match &self.machine {
            Machine::Local => Ok(platform::deb_arch().to_string()),
            Machine::Lima { vm } => lima::arch(self.path.as_deref(), vm),
        }
    }

    /// The `containai-docker` engine client.
    /// What ends a native wait early: Ctrl-C and the running script's budget [P71].
    pub fn wait_limits(&self) -> wait::Limits {
        wait::Limits {
            until: self.script_clock.deadline(),
            interrupted: self.interrupted.clone(),
        }
    }

    pub fn docker(&self) -> &docker::Client {
        &self.docker
    }

    /// Where programs run: this machine, or the Lima VM on macOS.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Runs a program on the engine's machine with an argument vector and a timeout, feeding it
    /// `stdin` when given (closed otherwise); `as_root` matters inside the Lima VM, where the shell
    /// user is not root (`sudo -n` there).
    pub fn run(
        &self,
        program: &str,
        args: &[OsString],
        stdin: Option<&[u8]>,
        as_root: AsRoot,
        timeout: Duration,
    ) -> Result<CommandOutput, CommandError> {
        let as_root = as_root == AsRoot::Yes;
        self.machine
            .run(self.path.as_deref(), program, args, stdin, as_root, timeout)
    }

    /// `--root=<canonical root>` for programs that take it (systemctl, dpkg) when they run on this
    /// machine; nothing inside the Lima VM, whose files are not under the Mac's `--root`.
    pub fn program_root_arg(&self) -> Option<OsString> {
        match self.machine {
            Machine::Local => self.root.program_arg(),
            Machine::Lima { .. } => None,
        }
    }

    /// The `PATH` programs are looked up in.
    pub fn path_env(&self) -> Option<&std::ffi::OsStr> {
        self.path.as_deref()
    }

    /// Whether an executable `name` is on this host's `PATH`; names with a slash never are.
    pub fn has_program(&self, name: &str) -> bool {
        command::find_program(self.path.as_deref(), name).is_some()
    }

    /// Asks a yes/no question on the terminal. `--yes` answers yes; without a terminal the answer
    /// is no, so unattended runs never proceed on a question nobody saw. The answer is only the
    /// answer to this question: it never agrees to stopping containers, whatever the question
    /// said; only `--stop-containers` or [`Host::confirm_stop`] do [P74].
    pub fn confirm(&self, question: &str) -> bool {
        if self.yes {
            return true;
        }
        self.ask(question)
    }

    /// Asks the person at the terminal whether to stop these containers (by name) for the
    /// update; a yes is the operator's consent to record and stop containers in this run
    /// ([`Host::stop_consent`]). The question is worded here, not by a script, so what is agreed
    /// to is what was asked. `--yes` and `--force` never answer it, and without a terminal the
    /// answer is no.
    pub fn confirm_stop(&self, names: &[String]) -> bool {
        if names.is_empty() {
            return false;
        }
        let then = if self.no_restart.get() {
            "and leave them stopped (--no-restart)"
        } else {
            "and restart them afterwards"
        };
        let question = format!(
            "stop {} container(s) ({}) for the update {then}?",
            names.len(),
            names.join(", ")
        );
        let yes = self.ask(&question);
        if yes {
            let mut consent = self.stop_consent.borrow_mut();
            match &mut *consent {
                StopConsent::Any => {}
                StopConsent::Named(agreed) => agreed.extend(names.iter().cloned()),
                StopConsent::None => {
                    *consent = StopConsent::Named(names.iter().cloned().collect());
                }
            }
        }
        yes
    }

    /// The question on stderr and a person's answer from the terminal; no without one, said in
    /// one line, so a refusal that follows is not a mystery.
    fn ask(&self, question: &str) -> bool {
        if !self.interactive || !std::io::stdin().is_terminal() {
            crate::term::err(&format!(
                "info: no terminal to ask \"{}\"; the answer is no",
                crate::term::line(question)
            ));
            return false;
        }
        crate::term::err_raw(&format!("{} [y/N] ", crate::term::line(question)));
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    }

    /// The `--root` tree; every file under it is reached through this.
    pub fn root(&self) -> &Arc<Root> {
        &self.root
    }

    /// The engine data root as a host path; reach it with [`Host::root`].
    pub fn data_root(&self) -> &Path {
        &self.config.data_root
    }
}

/// Whether a program needs root on the engine's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsRoot {
    Yes,
    No,
}

/// Resolves the release target for the engine's architecture, printing each warning once.
fn resolve_release(
    arch: Result<Arch, ReleaseError>,
    config: &release::Overrides,
    env: &release::SysboxOverride,
) -> Result<release::UpdateTarget, TargetError> {
    let manifest = Manifest::bundled()?;
    let arch = arch?;
    let resolution = release::resolve(&manifest, arch, config, env)?;
    for warning in &resolution.warnings {
        crate::term::err(&format!("warning: {}", crate::term::line(warning)));
    }
    Ok(resolution.target)
}

/// Appends journal lines durably through the root-anchored layer: created 0600 on first use,
/// never through a symlink, synced before the gate acts.
fn journal_sink(root: Arc<Root>) -> JournalSink {
    Box::new(move |line: &[u8]| root.append(Path::new(JOURNAL_FILE), line))
}
