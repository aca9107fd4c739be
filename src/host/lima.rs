//! The Lima VM that carries the engine on macOS, as `limactl list --format json` describes it:
//! whether it exists and runs, and its architecture. Read-only: it runs `limactl list` on this
//! machine and never starts, stops or creates the VM. The JSON is parsed, never scraped as text,
//! and the instance is matched by its exact name. A limactl that is missing or fails says nothing
//! about the VM, so it is `unreachable`, never "stopped" or "not found" [P30].

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use serde::Deserialize;

use super::command::{CommandError, Machine};
use crate::term::quoted;

/// `limactl list` answers from files on this machine; 30 s covers a slow disk.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// What `limactl list` says about the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    /// No instance of that name.
    NotFound,
    Stopped {
        arch: String,
    },
    Running {
        arch: String,
    },
    /// limactl is missing, failed, printed something that is not its JSON, or reports a status
    /// other than running or stopped (`Broken`); the reason is for messages.
    Unreachable {
        reason: String,
    },
}

impl VmState {
    /// `not-found`, `stopped`, `running` or `unreachable`, as scripts see it.
    pub fn as_str(&self) -> &'static str {
        match self {
            VmState::NotFound => "not-found",
            VmState::Stopped { .. } => "stopped",
            VmState::Running { .. } => "running",
            VmState::Unreachable { .. } => "unreachable",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimaError {
    #[error(
        "the Lima VM {vm} does not exist\nhelp: limactl start --name={vm} <template>, then run cai again"
    )]
    NotFound { vm: String },
    #[error("cannot ask limactl about the Lima VM {vm}: {reason}\nhelp: limactl list")]
    Unreachable { vm: String, reason: String },
}

/// One line of `limactl list --format json`; other fields are ignored.
#[derive(Debug, Deserialize)]
struct Instance {
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    arch: String,
}

/// Asks `limactl list --format json` (found on `path`, run on this machine) about the VM `vm`.
pub fn state(path: Option<&OsStr>, vm: &str) -> VmState {
    let args = [
        OsString::from("list"),
        OsString::from("--format"),
        OsString::from("json"),
    ];
    let out = match Machine::Local.run(path, "limactl", &args, None, false, LIST_TIMEOUT) {
        Ok(out) => out,
        Err(e) => return unreachable(&e),
    };
    if !out.success() {
        let reason = out
            .checked()
            .err()
            .map_or_else(String::new, |e| e.to_string());
        return VmState::Unreachable { reason };
    }
    parse_list(&out.stdout, vm)
}

/// The VM's Debian architecture (`amd64`, `arm64`) from the same listing, whether it runs or not.
pub fn arch(path: Option<&OsStr>, vm: &str) -> Result<String, LimaError> {
    match state(path, vm) {
        VmState::Running { arch } | VmState::Stopped { arch } => Ok(arch),
        VmState::NotFound => Err(LimaError::NotFound { vm: vm.to_string() }),
        VmState::Unreachable { reason } => Err(LimaError::Unreachable {
            vm: vm.to_string(),
            reason,
        }),
    }
}

fn unreachable(e: &CommandError) -> VmState {
    VmState::Unreachable {
        reason: e.to_string(),
    }
}

/// Reads limactl's listing: one JSON object per line (older releases print one array).
fn parse_list(stdout: &str, vm: &str) -> VmState {
    let text = stdout.trim();
    let instances: Result<Vec<Instance>, serde_json::Error> = if text.starts_with('[') {
        serde_json::from_str(text)
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect()
    };
    let instances = match instances {
        Ok(instances) => instances,
        Err(e) => {
            return VmState::Unreachable {
                reason: format!(
                    "limactl list --format json printed something that is not its JSON: {e}"
                ),
            };
        }
    };
    let Some(found) = instances.into_iter().find(|i| i.name == vm) else {
        return VmState::NotFound;
    };
    let arch = deb_arch(&found.arch);
    match found.status.as_str() {
        "Running" => VmState::Running { arch },
        "Stopped" => VmState::Stopped { arch },
        other => VmState::Unreachable {
            reason: format!("limactl reports the status {}", quoted(other)),
        },
    }
}

/// Lima names architectures as the kernel does; `.deb` files use the Debian names.
fn deb_arch(machine: &str) -> String {
    match machine {
        "x86_64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limactl_listings() {
        let running = r#"{"name":"default","status":"Stopped","arch":"x86_64"}
{"name":"containai-docker","status":"Running","arch":"aarch64","cpus":4}"#;
        let cases = [
            (
                running,
                VmState::Running {
                    arch: "arm64".into(),
                },
            ),
            (
                r#"[{"name":"containai-docker","status":"Stopped","arch":"x86_64"}]"#,
                VmState::Stopped {
                    arch: "amd64".into(),
                },
            ),
            ("", VmState::NotFound),
            (
                r#"{"name":"containai-docker-old","status":"Running","arch":"x86_64"}"#,
                VmState::NotFound,
            ),
        ];
        for (listing, want) in cases {
            assert_eq!(parse_list(listing, "containai-docker"), want, "{listing}");
        }
        for broken in [
            "NAME STATUS\ncontainai-docker Running",
            r#"{"name":"containai-docker","status":"Broken","arch":"x86_64"}"#,
        ] {
            assert_eq!(
                parse_list(broken, "containai-docker").as_str(),
                "unreachable",
                "{broken}"
            );
        }
    }
}
