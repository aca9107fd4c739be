//! `run::` bindings: facts about this run (arguments, mode, output format, the plan so far), and
//! the typed outcomes a script ends with when the exit code is a documented one
//! ([`crate::error::exit_code`] decides it).

use std::rc::Rc;

use rhai::{Dynamic, Map};

use super::{Doc, Registrar};
use crate::host::{Host, Refusal};
use crate::script::outcome::Outcome;
use crate::term;

/// Prints the refusal for a person and keeps it on the host for the run's result.
fn refuse(host: &Host, refusal: Refusal) -> Dynamic {
    term::err(&format!("error: {}", term::text(&refusal.message)));
    if let Some(help) = &refusal.help {
        term::err(&format!("help: {}", term::text(help)));
    }
    let outcome = refusal.code.map_or(Outcome::Refused, Outcome::Code);
    host.refusal.replace(Some(refusal));
    Dynamic::from(outcome)
}

fn refusal_from_map(map: &Map) -> Result<Refusal, String> {
    let text = |key: &str| -> Result<Option<String>, String> {
        match map.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => v
                .clone()
                .into_string()
                .map(Some)
                .map_err(|t| format!("run::refuse: `{key}` must be a string, not {t}")),
        }
    };
    let message = text("message")?.ok_or("run::refuse: the map needs a `message` string")?;
    let containers = match map.get("containers") {
        None => Vec::new(),
        Some(v) if v.is_unit() => Vec::new(),
        Some(v) => v
            .clone()
            .into_typed_array::<rhai::ImmutableString>()
            .map_err(|_| "run::refuse: `containers` must be an array of names".to_string())?
            .into_iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let code = match map.get("code") {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) => Some(
            v.as_int()
                .ok()
                .and_then(|c| u8::try_from(c).ok())
                .filter(|c| *c != 0)
                .ok_or("run::refuse: `code` must be an exit code 1..=255")?,
        ),
    };
    Ok(Refusal {
        message,
        help: text("help")?,
        containers,
        code,
    })
}

pub fn register(reg: &mut Registrar, args: &Rc<Vec<String>>, json: bool) {
    let a = args.clone();
    reg.reads(
        Doc {
            signature: "run::args() -> array",
            doc: "arguments given after `--` on the command line",
            example: "run::args()",
        },
        move |_: &Host| Ok::<_, String>(a.to_vec()),
    );
    reg.reads(
        Doc {
            signature: "run::dry_run() -> bool",
            doc: "true when mutating primitives only record a plan",
            example: "run::dry_run()",
        },
        |h: &Host| Ok::<_, String>(h.gate.is_dry_run()),
    );
    reg.reads(
        Doc {
            signature: "run::json() -> bool",
            doc: "true when the caller asked for JSON output",
            example: "run::json()",
        },
        move |_: &Host| Ok::<_, String>(json),
    );
    reg.reads(
        Doc {
            signature: "run::yes() -> bool",
            doc: "true when --yes answers every confirmation",
            example: "run::yes()",
        },
        |h: &Host| Ok::<_, String>(h.yes),
    );
    reg.reads(
        Doc {
            signature: "run::plan() -> array of map",
            doc: "the actions recorded so far in this dry run",
            example: "run::plan()",
        }
        .returns(
            &[
                ("kind", "string", "family and verb, e.g. containers.stop"),
                ("target", "string", "what it acts on, as the plan line names it"),
                ("details", "map", "the action's arguments"),
            ],
            r#"#{kind: "containers.stop", target: "agent-1 (4f2c9b0e1d7a)", details: #{ids: ["agent-1"], timeout_secs: 100}}"#,
        ),
        |h: &Host| Ok::<_, String>(h.gate.plan()),
    );
    reg.reads(
        Doc {
            signature: "run::refused() -> outcome",
            doc: "the outcome of a flow that refused to act and changed nothing; exit(run::refused()) ends the script with the documented exit code (2)",
            example: "run::refused()",
        },
        |_: &Host| Ok::<_, String>(Dynamic::from(Outcome::Refused)),
    );
    reg.run_state(
        Doc {
            signature: "run::refuse(message: string, help: string) -> outcome",
            doc: "the outcome of a flow that refused to act and changed nothing, with its reason: prints `error: message` and `help: help`, and --json documents carry them as their error; exit(run::refuse(...)) ends the script with the documented exit code (2). The map form takes message (string), help (string, optional) and containers (the names that block the flow, optional; in the --json refusal) and code (an exit code 1..=255 instead of 2, optional, for a failure the script explains)",
            example: "run::refuse(\"containers are running; nothing was changed\", \"cai update --stop-containers\")",
        },
        |h: &Host, message: &str, help: &str| {
            Ok::<_, String>(refuse(
                h,
                Refusal {
                message: message.to_string(),
                help: (!help.is_empty()).then(|| help.to_string()),
                containers: Vec::new(),
                code: None,
            }))
        },
    );
    reg.overload(
        "run::refuse(refusal: map) -> outcome",
        |h: &Host, map: Map| refusal_from_map(&map).map(|r| refuse(h, r)),
    );
    reg.reads(
        Doc {
            signature: "run::updates_available() -> outcome",
            doc: "the outcome of a check that found updates; exit(run::updates_available()) ends the script with the documented exit code (100)",
            example: "run::updates_available()",
        },
        |_: &Host| Ok::<_, String>(Dynamic::from(Outcome::UpdatesAvailable)),
    );
}
