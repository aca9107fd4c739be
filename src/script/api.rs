//! The primitive API as scripts see it: one table that `cai scripts api`, the REPL's completion
//! and the registration check all read, so the listing cannot drift from what is registered.

use serde::Serialize;

/// The primitive API version this `cai` provides. Scripts declare a requirement (`//! api: 1`).
pub const API_VERSION: semver::Version = semver::Version::new(1, 1, 0);

#[derive(Debug, Clone, Serialize)]
pub struct Primitive {
    pub module: &'static str,
    pub name: &'static str,
    pub signature: &'static str,
    pub mutating: bool,
    pub doc: &'static str,
    /// A call that works in a dry run; the test suite runs every one of them.
    #[serde(skip)]
    pub example: &'static str,
}

impl Primitive {
    pub fn path(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }
}

const fn read(
    module: &'static str,
    name: &'static str,
    signature: &'static str,
    doc: &'static str,
    example: &'static str,
) -> Primitive {
    Primitive {
        module,
        name,
        signature,
        mutating: false,
        doc,
        example,
    }
}

const fn write(
    module: &'static str,
    name: &'static str,
    signature: &'static str,
    doc: &'static str,
    example: &'static str,
) -> Primitive {
    Primitive {
        module,
        name,
        signature,
        mutating: true,
        doc,
        example,
    }
}

pub const PRIMITIVES: &[Primitive] = &[
    read(
        "run",
        "args",
        "run::args() -> array",
        "arguments given after `--` on the command line",
        "run::args()",
    ),
    read(
        "run",
        "dry_run",
        "run::dry_run() -> bool",
        "true when mutating primitives only record a plan",
        "run::dry_run()",
    ),
    read(
        "run",
        "json",
        "run::json() -> bool",
        "true when the caller asked for JSON output",
        "run::json()",
    ),
    read(
        "run",
        "yes",
        "run::yes() -> bool",
        "true when --yes answers every confirmation",
        "run::yes()",
    ),
    read(
        "run",
        "plan",
        "run::plan() -> array",
        "the actions recorded so far in this dry run",
        "run::plan()",
    ),
    read(
        "platform",
        "detect",
        "platform::detect() -> string",
        "\"linux\", \"wsl2\" or \"macos\" (config `platform` overrides)",
        "platform::detect()",
    ),
    read(
        "platform",
        "arch",
        "platform::arch() -> string",
        "Debian architecture of this machine (amd64, arm64)",
        "platform::arch()",
    ),
    read(
        "platform",
        "has_program",
        "platform::has_program(name: string) -> bool",
        "true when an executable NAME is on PATH",
        "platform::has_program(\"sh\")",
    ),
    read(
        "report",
        "checks",
        "report::checks(records: array) -> int",
        "prints check records (id, category, status, summary, remediation) as text or JSON; returns the number of errors",
        "report::checks([])",
    ),
    read(
        "report",
        "data",
        "report::data(value: any)",
        "adds VALUE to the reports of the --json document; does nothing without --json",
        "report::data(#{})",
    ),
    read(
        "prompt",
        "confirm",
        "prompt::confirm(question: string) -> bool",
        "asks yes/no on the terminal; false without a TTY, true with --yes",
        "prompt::confirm(\"continue?\")",
    ),
    read(
        "log",
        "info",
        "log::info(message: string)",
        "prints an informational line on stderr",
        "log::info(\"hello\")",
    ),
    read(
        "log",
        "warn",
        "log::warn(message: string)",
        "prints a warning line on stderr",
        "log::warn(\"careful\")",
    ),
    read(
        "log",
        "error",
        "log::error(message: string)",
        "prints an error line on stderr (does not stop the script)",
        "log::error(\"oops\")",
    ),
    read(
        "log",
        "verbose",
        "log::verbose(message: string)",
        "prints a line on stderr with --verbose only",
        "log::verbose(\"detail\")",
    ),
    read(
        "containers",
        "engine_status",
        "containers::engine_status() -> map",
        "engine socket path, whether it exists and answers, engine version",
        "containers::engine_status()",
    ),
    read(
        "containers",
        "list_managed",
        "containers::list_managed(all: bool) -> array",
        "managed containers (label or legacy image); all=false lists running ones; fails when the engine does not answer",
        "containers::list_managed(true)",
    ),
    read(
        "containers",
        "inspect",
        "containers::inspect(name: string) -> map",
        "user, state, labels and mounts of one container",
        "try { containers::inspect(\"cai-example\") } catch { () }",
    ),
    read(
        "containers",
        "query",
        "containers::query(name: string, argv: array) -> map",
        "runs a read-only inspection program (id, getent, stat, cat, ls, test, uname) in a running container; exit_code, stdout, stderr",
        "try { containers::query(\"cai-example\", [\"id\", \"-u\"]) } catch { () }",
    ),
    write(
        "containers",
        "exec",
        "containers::exec(name: string, argv: array) -> map",
        "runs a program in a running container (no shell); exit_code, stdout, stderr",
        "containers::exec(\"cai-example\", [\"touch\", \"/tmp/x\"])",
    ),
    write(
        "containers",
        "stop",
        "containers::stop(ids: array, timeout_secs: int) -> map",
        "stops a set concurrently; done (incl. already stopped), gone, failed",
        "containers::stop([\"cai-example\"], 100)",
    ),
    write(
        "containers",
        "start",
        "containers::start(ids: array) -> map",
        "starts a set concurrently; done, gone, failed",
        "containers::start([\"cai-example\"])",
    ),
    read(
        "sysbox",
        "installed_version",
        "sysbox::installed_version() -> map or ()",
        "version read from `sysbox-runc --version` (full, semver, containai_build); () when not installed",
        "try { sysbox::installed_version() } catch { () }",
    ),
    read(
        "units",
        "read",
        "units::read(name: string) -> string or ()",
        "text of a unit file in /etc/systemd/system, () when absent",
        "units::read(\"containai-docker.service\")",
    ),
    write(
        "units",
        "write",
        "units::write(name: string, text: string) -> bool",
        "writes a unit file in /etc/systemd/system atomically; true when the text changed",
        "units::write(\"containai-example.service\", \"[Unit]\\n\")",
    ),
    write(
        "units",
        "daemon_reload",
        "units::daemon_reload()",
        "systemctl daemon-reload",
        "units::daemon_reload()",
    ),
    write(
        "units",
        "restart",
        "units::restart(name: string)",
        "systemctl restart NAME",
        "units::restart(\"containai-example.service\")",
    ),
    write(
        "packages",
        "install_deb",
        "packages::install_deb(path: string)",
        "installs an existing .deb file with dpkg -i (path resolved under --root)",
        "try { packages::install_deb(\"/var/cache/containai/x.deb\") } catch { () }",
    ),
];

/// Looks a primitive up by module and name.
pub fn find(module: &str, name: &str) -> Option<&'static Primitive> {
    PRIMITIVES
        .iter()
        .find(|p| p.module == module && p.name == name)
}
