//! Side effects, one file per family. [`Host`] is the one handle that carries everything ambient:
//! the `--root` prefix, config, platform, the terminal, `PATH`, the execution target (this
//! machine or the Lima VM), the engine client with its runtime and the effect gate. Nothing here
//! reads global state behind the handle's back (in particular, no `DOCKER_HOST`).

pub mod command;
pub mod docker;
pub mod packages;
pub mod platform;
pub mod state;
pub mod sysbox;
pub mod systemd;
pub mod trust;

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::config::Config;
use crate::effects::{Gate, JournalSink, Mode};
use command::{CommandError, CommandOutput, Target};
use platform::Platform;

/// Default engine socket on Linux and WSL2.
pub const LINUX_SOCKET: &str = "/var/run/containai-docker.sock";
/// Where live actions are journalled (under `--root`).
pub const JOURNAL_FILE: &str = "/var/lib/containai/actions.jsonl";
/// The Lima VM that runs the engine on macOS.
pub const LIMA_VM: &str = "containai-docker";

/// Facts probed once at start-up.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub root: PathBuf,
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
}

pub struct Host {
    root: PathBuf,
    pub config: Config,
    pub platform: Platform,
    pub yes: bool,
    pub verbose: bool,
    pub interactive: bool,
    pub home: Option<PathBuf>,
    /// Who invoked `cai` (the `sudo` user, if any), for files kept in their home.
    pub owners: state::Owners,
    pub gate: Gate,
    /// Reports (e.g. doctor checks) collected for the one JSON document of a `--json` run.
    pub reports: std::cell::RefCell<Vec<serde_json::Value>>,
    /// Set by Ctrl-C; scripts stop at their next operation.
    pub interrupted: Arc<AtomicBool>,
    docker: docker::Client,
    target: Target,
    path: Option<OsString>,
}

impl Host {
    pub fn new(options: HostOptions) -> anyhow::Result<Self> {
        let root = options.root;
        let platform = options.config.platform.unwrap_or_else(|| {
            platform::detect(&under_root(&root, Path::new("/proc/sys/kernel/osrelease")))
        });
        let socket = match (&options.config.socket, platform) {
            (Some(socket), _) => under_root(&root, socket),
            (None, Platform::Macos) => options
                .home
                .clone()
                .unwrap_or_default()
                .join(".lima/containai-docker/sock/docker.sock"),
            (None, _) => under_root(&root, Path::new(LINUX_SOCKET)),
        };
        // Always known: a REPL that switches to live mode journals from then on. The gate writes
        // to it only for actions it performs.
        let journal = under_root(&root, Path::new(JOURNAL_FILE));
        let target = match platform {
            Platform::Macos => Target::Lima {
                vm: LIMA_VM.to_string(),
            },
            Platform::Linux | Platform::Wsl2 => Target::Local,
        };
        Ok(Self {
            docker: docker::Client::new(socket)?,
            gate: Gate::new(options.mode, Some(journal_sink(journal))),
            target,
            path: options.path,
            owners: options.owners,
            root,
            config: options.config,
            platform,
            yes: options.yes,
            verbose: options.verbose,
            interactive: options.interactive,
            home: options.home,
            interrupted: Arc::new(AtomicBool::new(false)),
            reports: std::cell::RefCell::new(Vec::new()),
        })
    }

    /// The `containai-docker` engine client.
    pub fn docker(&self) -> &docker::Client {
        &self.docker
    }

    /// Where programs run: this machine, or the Lima VM on macOS.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs a program on the execution target with an argument vector and a timeout.
    pub fn run(
        &self,
        program: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<CommandOutput, CommandError> {
        self.target
            .run(self.path.as_deref(), program, args, false, timeout)
    }

    /// Like [`Host::run`] for programs that need root inside the Lima VM (`sudo -n` there).
    pub fn run_as_root(
        &self,
        program: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<CommandOutput, CommandError> {
        self.target
            .run(self.path.as_deref(), program, args, true, timeout)
    }

    /// `--root=DIR` for programs that understand it, when `--root` is not `/`.
    pub fn root_args(&self) -> Vec<String> {
        if self.root == Path::new("/") {
            Vec::new()
        } else {
            vec![format!("--root={}", self.root.display())]
        }
    }

    /// Whether an executable `name` is on this host's `PATH`; names with a slash never are.
    pub fn has_program(&self, name: &str) -> bool {
        command::find_program(self.path.as_deref(), name).is_some()
    }

    /// Asks a yes/no question on the terminal. `--yes` answers yes; without a terminal the answer
    /// is no, so unattended runs never proceed on a question nobody saw.
    pub fn confirm(&self, question: &str) -> bool {
        if self.yes {
            return true;
        }
        if !self.interactive || !std::io::stdin().is_terminal() {
            return false;
        }
        eprint!("{question} [y/N] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves an absolute host path under `--root`.
    pub fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        under_root(&self.root, absolute.as_ref())
    }

    pub fn data_root(&self) -> PathBuf {
        self.path(&self.config.data_root)
    }
}

/// Appends journal lines durably: created 0600 on first use, never through a symlink, synced
/// before the gate acts.
fn journal_sink(path: PathBuf) -> JournalSink {
    Box::new(move |line: &[u8]| {
        use std::os::unix::fs::OpenOptionsExt;
        let append = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&path)?;
            file.write_all(line)?;
            file.sync_data()
        };
        append().map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    })
}

/// Joins an absolute path under a root the way `dpkg --root` does; `..` components are dropped so
/// the result cannot leave the root.
pub fn under_root(root: &Path, absolute: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for component in absolute.components() {
        if let Component::Normal(part) = component {
            out.push(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_root_without_escaping() {
        let root = Path::new("/tmp/r");
        assert_eq!(
            under_root(root, Path::new("/etc/x")),
            PathBuf::from("/tmp/r/etc/x")
        );
        assert_eq!(
            under_root(root, Path::new("/../../etc/x")),
            PathBuf::from("/tmp/r/etc/x")
        );
        assert_eq!(
            under_root(Path::new("/"), Path::new("/var/run/a.sock")),
            PathBuf::from("/var/run/a.sock")
        );
    }
}
