//! `sysbox::` bindings over [`crate::host::sysbox`] and the update decision in
//! [`crate::plan::version`]. Read-only.

use rhai::{Dynamic, Map};
use serde::Serialize;

use super::{Doc, Registrar};
use crate::host::{Host, sysbox};
use crate::plan::release;
use crate::plan::version::{self, SysboxVersion};

pub fn register(reg: &mut Registrar) {
    reg.reads(
        Doc {
            signature: "sysbox::installed_version() -> map or ()",
            doc: "version read from `sysbox-runc --version` (full, semver, containai_build); () when not installed",
            example: "try { sysbox::installed_version() } catch { () }",
        }
        .returns(
            &[
                ("full", "string", "as printed, e.g. 0.6.7+containai.20260127 (a Debian revision kept)"),
                ("semver", "string", "the X.Y.Z part"),
                ("containai_build", "string or ()", "the build after +containai.; () for a build that is not ContainAI's"),
            ],
            r#"#{full: "0.6.7+containai.20260127", semver: "0.6.7", containai_build: "20260127"}"#,
        ),
        |h: &Host| sysbox::installed_version(h),
    );

    reg.reads(
        Doc {
            signature: "sysbox::status() -> map",
            doc: "sysbox against the release target, read once: installed (what installed_version returns), error (why the version check failed, or ()), target (full version, or ()), target_error, decision (what decide returns; () only without a target)",
            example: "sysbox::status()",
        }
        .returns(
            &[
                ("installed", "map or ()", "what installed_version returns; () when not installed or the check failed"),
                ("error", "string or ()", "why the version check failed; () when it did not"),
                ("target", "string or ()", "the release target's full version; () when it cannot be worked out"),
                ("target_error", "string or ()", "why there is no target; () when there is one"),
                ("decision", "map or ()", "what decide returns; () only without a target"),
            ],
            r#"#{installed: (), error: (), target: "0.6.7+containai.20260127", target_error: (), decision: #{action: "install", needed: true, reason: "sysbox is not installed; the target is 0.6.7+containai.20260127"}}"#,
        ),
        |h: &Host| Ok::<_, std::convert::Infallible>(sysbox::status(h)),
    );

    reg.reads(
        Doc {
            signature: "sysbox::decide(installed: map or (), target: string) -> map",
            doc: "update decision for INSTALLED (what installed_version returned, or #{error: reason} when it threw) against the TARGET version: action, needed (() when the check failed), reason",
            example: "sysbox::decide((), \"0.6.7+containai.20260127\")",
        }
        .returns(
            &[
                ("action", "string", "install, update, rebuild, replace-upstream, up-to-date, keep-newer or check-failed"),
                ("needed", "bool or ()", "whether the update installs sysbox; () when the check failed"),
                ("reason", "string", "one line that says why"),
            ],
            r#"#{action: "install", needed: true, reason: "sysbox is not installed; the target is 0.6.7+containai.20260127"}"#,
        ),
        |_: &Host, installed: Dynamic, target: &str| {
            let target = release::sysbox_version(target)
                .map_err(|e| format!("sysbox::decide: target {e}"))?;
            let installed = installed_arg(installed)?;
            let decision = version::decide(
                installed.as_ref().map(Option::as_ref).map_err(String::as_str),
                &target,
            );
            Ok::<_, String>(DecisionValue {
                action: decision.action(),
                needed: decision.needed(),
                reason: decision.reason().to_string(),
            })
        },
    );
}

/// What a script sees of a decision; `needed` is `()` when nobody can tell.
#[derive(Serialize)]
struct DecisionValue {
    action: &'static str,
    needed: Option<bool>,
    reason: String,
}

/// Reads the `installed` argument: `()` (not installed), the map `installed_version` returns (its
/// `full` version is parsed again rather than trusting the other keys), or `#{error: reason}`
/// for a check that failed.
fn installed_arg(installed: Dynamic) -> Result<Result<Option<SysboxVersion>, String>, String> {
    if installed.is_unit() {
        return Ok(Ok(None));
    }
    let wrong = |what: String| {
        format!(
            "sysbox::decide: installed must be (), the map sysbox::installed_version() returns, or #{{error: reason}}; {what}"
        )
    };
    let type_name = installed.type_name();
    let Some(map) = installed.try_cast::<Map>() else {
        return Err(wrong(format!("found {type_name}")));
    };
    if let Some(error) = map.get("error") {
        let reason = error
            .clone()
            .into_string()
            .unwrap_or_else(|_| error.to_string());
        return Ok(Err(reason));
    }
    let full = map
        .get("full")
        .and_then(|v| v.clone().into_string().ok())
        .ok_or_else(|| wrong("the map has no string `full` or `error`".into()))?;
    version::parse_version(&full)
        .map(|v| Ok(Some(v)))
        .map_err(|e| wrong(e.to_string()))
}
