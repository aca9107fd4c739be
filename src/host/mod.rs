//! Side effects, one file per family. [`Host`] is the one handle that carries everything ambient:
//! the `--root` prefix, config, platform, terminal facts, the async runtime, the engine client and
//! the effect gate. Nothing here reads global state behind the handle's back (in particular, no
//! `DOCKER_HOST`).

pub mod command;
pub mod docker;
pub mod platform;
pub mod sysbox;
pub mod systemd;
pub mod trust;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::config::Config;
use crate::effects::{Gate, Mode};
use platform::Platform;

/// Default engine socket on Linux and WSL2.
pub const LINUX_SOCKET: &str = "/var/run/containai-docker.sock";
/// Where live actions are journalled (under `--root`).
pub const JOURNAL_FILE: &str = "/var/lib/containai/actions.jsonl";

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
}

pub struct Host {
    root: PathBuf,
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
}

impl Host {
    pub fn new(options: HostOptions) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
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
        let journal = Some(under_root(&root, Path::new(JOURNAL_FILE)));
        Ok(Self {
            engine: docker::Engine::new(socket),
            gate: Gate::new(options.mode, journal),
            root,
            config: options.config,
            platform,
            yes: options.yes,
            verbose: options.verbose,
            interactive: options.interactive,
            home: options.home,
            interrupted: Arc::new(AtomicBool::new(false)),
            reports: std::cell::RefCell::new(Vec::new()),
            rt,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves an absolute host path under `--root`.
    pub fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        under_root(&self.root, absolute.as_ref())
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    pub fn data_root(&self) -> PathBuf {
        self.path(&self.config.data_root)
    }
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
