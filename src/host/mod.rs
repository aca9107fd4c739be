//! Side effects, one file per family. [`Host`] is the one handle that carries everything ambient:
//! the `--root` tree, config, platform, terminal facts, the async runtime, the engine client and
//! the effect gate. Nothing here reads global state behind the handle's back (in particular, no
//! `DOCKER_HOST`), and nothing here joins a path under the root: files under `--root` are reached
//! only through [`fs::Root`].

pub mod command;
pub mod docker;
pub mod fs;
pub mod packages;
pub mod platform;
pub mod sysbox;
pub mod systemd;
pub mod trust;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::config::Config;
use crate::effects::{Gate, Mode};
use fs::{Anchored, Root};
use platform::Platform;
use trust::Trust;

/// Default engine socket on Linux and WSL2.
pub const LINUX_SOCKET: &str = "/var/run/containai-docker.sock";
/// Default engine socket on macOS, under the user's home (and `--root`).
pub const MACOS_SOCKET: &str = ".lima/containai-docker/sock/docker.sock";
/// Kernel release, read for platform detection (under `--root`).
pub const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
/// Where live actions are journalled (under `--root`).
pub const JOURNAL_FILE: &str = "/var/lib/containai/actions.jsonl";

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
    pub gate: Gate,
    pub engine: docker::Engine,
    /// Reports (e.g. doctor checks) collected for the one JSON document of a `--json` run.
    pub reports: std::cell::RefCell<Vec<serde_json::Value>>,
    /// Set by Ctrl-C; scripts stop at their next operation.
    pub interrupted: Arc<AtomicBool>,
    rt: tokio::runtime::Runtime,
    /// Holds the journal's directory open: the gate's journal path goes through it.
    _journal: Anchored,
}

impl Host {
    pub fn new(options: HostOptions) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
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
        let engine = docker::Engine::new(root.display_path(&socket), root.anchor(&socket));
        // Always known: a REPL that switches to live mode journals from then on. The gate writes
        // to it only for actions it performs, through the journal's directory resolved inside the
        // root; a symlinked journal is refused here rather than followed later.
        let journal = root
            .anchor(Path::new(JOURNAL_FILE))
            .map_err(|e| anyhow::anyhow!("cannot use the journal: {e}"))?;
        Ok(Self {
            engine,
            gate: Gate::new(options.mode, Some(journal.path().to_path_buf())),
            root,
            trust: options.trust,
            config: options.config,
            platform,
            yes: options.yes,
            verbose: options.verbose,
            interactive: options.interactive,
            home: options.home,
            interrupted: Arc::new(AtomicBool::new(false)),
            reports: std::cell::RefCell::new(Vec::new()),
            rt,
            _journal: journal,
        })
    }

    /// The `--root` tree; every file under it is reached through this.
    pub fn root(&self) -> &Arc<Root> {
        &self.root
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The engine data root as a host path; reach it with [`Host::root`].
    pub fn data_root(&self) -> &Path {
        &self.config.data_root
    }
}
