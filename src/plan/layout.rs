//! The host layout (SPEC section 1): where a ContainAI host keeps its config, engine socket and
//! data. Plain constants, shared by the layers that read them; every one is an absolute host path
//! that resolves under `--root`.

/// The site config file.
pub const SITE_CONFIG: &str = "/etc/containai/config.toml";
/// The engine socket on Linux and WSL2 (and inside the Lima VM).
pub const LINUX_SOCKET: &str = "/var/run/containai-docker.sock";
/// The engine data root; volumes live at `<data-root>/volumes/<name>/_data`.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/containai-docker";
/// The engine's daemon configuration, handed to dockerd with `--config-file` (inside the Lima VM
/// on macOS).
pub const DAEMON_CONFIG: &str = "/etc/containai/docker/daemon.json";
