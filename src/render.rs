//! Human and JSON output of a run: the plan a dry run recorded, or the journal of a live run.
//! Both renderings come from the same [`crate::effects`] records.
//!
//! Every field of the human rendering is escaped for the terminal ([`term::line`]): targets,
//! details and check records carry names that scripts and containers chose. JSON keeps every
//! string exact; only the characters a terminal would act on are written as `\u` escapes.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::effects::{Action, JournalEntry, Mode};
use crate::term;

/// How a dry run ended, for the first line of its plan: a run that failed or exited non-zero
/// planned only what came before that point, so it never reads as "no changes planned" [P76].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanEnd {
    /// The script ran to its end with exit code 0: the plan is complete.
    Complete,
    /// The script stopped with an error (shown after the plan).
    Failed,
    /// The script ended with this non-zero exit code.
    Exited(u8),
}

/// The human rendering of a dry-run plan.
pub fn plan_human(plan: &[Action], end: PlanEnd) -> String {
    let count = match plan.len() {
        0 => "no changes planned".to_string(),
        1 => "1 planned action".to_string(),
        n => format!("{n} planned actions"),
    };
    let mut out = match end {
        PlanEnd::Complete => format!("dry run: {count}; nothing was changed"),
        PlanEnd::Failed => format!(
            "dry run failed (see the error): {count} before it stopped, so the plan is incomplete; nothing was changed"
        ),
        PlanEnd::Exited(code) => format!(
            "dry run ended with exit code {code}: {count} before it ended, so the plan is incomplete; nothing was changed"
        ),
    };
    for (i, action) in plan.iter().enumerate() {
        out.push_str(&format!(
            "\n  {:>2}. {:<22} {}",
            i + 1,
            term::line(&action.kind),
            term::line(&action.target)
        ));
        if let Some(details) = details_text(&action.details) {
            out.push_str(&format!("  ({details})"));
        }
        out.push_str(&diff_lines(&action.details));
    }
    out
}

/// A unit diff (`details.diff`) one line per line, indented under its action.
fn diff_lines(details: &serde_json::Value) -> String {
    let Some(diff) = details.get("diff").and_then(serde_json::Value::as_str) else {
        return String::new();
    };
    diff.lines()
        .map(|line| format!("\n        {line}"))
        .collect()
}

/// The human rendering of what a live run performed.
pub fn journal_human(journal: &[JournalEntry]) -> String {
    let mut out = format!(
        "live: {} action{} performed",
        journal.len(),
        if journal.len() == 1 { "" } else { "s" }
    );
    for (i, entry) in journal.iter().enumerate() {
        let outcome = match (&entry.outcome, &entry.error) {
            (crate::effects::Outcome::Done, _) => "done".to_string(),
            // A failure can quote a program's stderr, framed over several lines.
            (crate::effects::Outcome::Failed, Some(e)) => {
                format!("failed: {}", term::text(&term::operator(e)))
            }
            (crate::effects::Outcome::Failed, None) => "failed".to_string(),
        };
        out.push_str(&format!(
            "\n  {:>2}. {:<22} {}  [{outcome}]",
            i + 1,
            term::line(&entry.action.kind),
            term::line(&entry.action.target)
        ));
    }
    out
}

fn details_text(details: &serde_json::Value) -> Option<String> {
    let map = details.as_object()?;
    let parts: Vec<String> = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "ids" | "diff"))
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{}={}", term::line(k), term::line(s)),
            other => format!("{}={}", term::line(k), term::line(&other.to_string())),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Everything a `--json` run prints: one document, also when the script failed.
pub struct RunDocument<'a> {
    pub mode: Mode,
    pub plan: &'a [Action],
    pub journal: &'a [JournalEntry],
    pub reports: &'a [serde_json::Value],
    pub result: &'a serde_json::Value,
    pub exit_code: u8,
    /// Why the script failed, when it did.
    pub error: Option<&'a str>,
    /// A refusal's message, help and blocking containers (`run::refuse`), when the flow refused.
    pub refusal: Option<&'a serde_json::Value>,
}

/// The version of the `--json` document's shape (docs/schemas/); raised with every change of it.
pub const JSON_SCHEMA: u32 = 1;

/// The JSON document printed by `cai run --json`.
pub fn run_json(doc: &RunDocument<'_>) -> String {
    let doc = json!({
        "schema": JSON_SCHEMA,
        "mode": doc.mode,
        "reports": doc.reports,
        "plan": doc.plan,
        "journal": doc.journal,
        "result": doc.result,
        "exit_code": doc.exit_code,
        "error": doc.error,
        "refusal": doc.refusal,
    });
    terminal_safe_json(&serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_string()))
}

/// Writes C1 and bidirectional control characters as `\uXXXX` escapes (serde_json leaves them
/// raw). Outside strings JSON text has only ASCII, so every such character is inside a string,
/// where the escape stands for exactly the same character.
fn terminal_safe_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) || term::is_bidi_control(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Status of one health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Error,
    Skip,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Error => "error",
            Status::Skip => "skip",
            Status::Unknown => "unknown",
        }
    }
}

/// One health check record; human and JSON output are both rendered from these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRecord {
    pub id: String,
    pub category: String,
    pub status: Status,
    pub summary: String,
    #[serde(default)]
    pub remediation: String,
}

pub fn checks_human(records: &[CheckRecord]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&format!(
            "{:<8} {:<22} {}\n",
            r.status.as_str(),
            term::line(&r.id),
            term::line(&term::operator(&r.summary))
        ));
        for line in r.remediation.lines().filter(|l| !l.trim().is_empty()) {
            out.push_str(&format!(
                "{:<8} {:<22} help: {}\n",
                "",
                "",
                term::line(&term::operator(line))
            ));
        }
    }
    let count = |s: Status| records.iter().filter(|r| r.status == s).count();
    out.push_str(&format!(
        "{} checks: {} ok, {} warn, {} error, {} unknown, {} skipped",
        records.len(),
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Error),
        count(Status::Unknown),
        count(Status::Skip)
    ));
    out
}

pub fn checks_value(records: &[CheckRecord]) -> serde_json::Value {
    let count = |s: Status| records.iter().filter(|r| r.status == s).count();
    json!({
        "checks": records,
        "summary": {
            "ok": count(Status::Ok),
            "warn": count(Status::Warn),
            "error": count(Status::Error),
            "unknown": count(Status::Unknown),
            "skip": count(Status::Skip),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_lists_every_action_with_details() {
        let plan = vec![
            Action::new(
                "containers.stop",
                "a b",
                json!({"ids": ["a", "b"], "timeout_secs": 100}),
            ),
            Action::new("units.daemon_reload", "systemd", json!({})),
        ];
        let text = plan_human(&plan, PlanEnd::Complete);
        assert!(
            text.starts_with("dry run: 2 planned actions; nothing was changed"),
            "{text}"
        );
        assert!(
            text.contains("containers.stop") && text.contains("timeout_secs=100"),
            "{text}"
        );
        assert!(!text.contains("ids="), "{text}");
        assert!(plan_human(&[], PlanEnd::Complete).contains("no changes"));
        // [P76] A run that stopped early never reads as a complete, empty plan.
        for (end, first) in [
            (
                PlanEnd::Complete,
                "dry run: no changes planned; nothing was changed",
            ),
            (
                PlanEnd::Failed,
                "dry run failed (see the error): no changes planned before it stopped, so the plan is incomplete; nothing was changed",
            ),
            (
                PlanEnd::Exited(2),
                "dry run ended with exit code 2: no changes planned before it ended, so the plan is incomplete; nothing was changed",
            ),
        ] {
            assert_eq!(plan_human(&[], end), first);
        }

        let unit = Action::new(
            "units.install",
            "/etc/systemd/system/containai-docker.service",
            json!({"replaces": true, "diff": "--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n"}),
        );
        let text = plan_human(&[unit], PlanEnd::Complete);
        assert!(text.contains("(replaces=true)"), "{text}");
        assert!(!text.contains("diff="), "{text}");
        assert!(
            text.ends_with(
                "\n        --- a\n        +++ b\n        @@ -1 +1 @@\n        -old\n        +new"
            ),
            "{text}"
        );
    }

    #[test]
    fn human_output_escapes_what_a_terminal_would_act_on() {
        let hostile = "x\x1b[2K\r\u{202e}y\nz";
        let plan = vec![Action::new(
            "containers.stop",
            hostile,
            json!({"ids": ["a"], "note": hostile, "n": [hostile]}),
        )];
        let records = vec![CheckRecord {
            id: hostile.into(),
            category: "c".into(),
            status: Status::Warn,
            summary: hostile.into(),
            remediation: hostile.into(),
        }];
        for text in [plan_human(&plan, PlanEnd::Complete), checks_human(&records)] {
            assert!(!text.contains(['\x1b', '\r', '\u{202e}']), "{text:?}");
            assert!(text.contains("x\\x1b[2K\\r\\u{202e}y"), "{text:?}");
        }
        let doc = RunDocument {
            mode: Mode::DryRun,
            plan: &plan,
            journal: &[],
            reports: &[json!({"s": "\u{202e}\u{9b}"})],
            result: &serde_json::Value::Null,
            exit_code: 0,
            error: None,
            refusal: None,
        };
        let text = run_json(&doc);
        assert!(!text.contains(['\x1b', '\u{202e}', '\u{9b}']), "{text}");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["plan"][0]["target"], hostile);
        assert_eq!(parsed["reports"][0]["s"], "\u{202e}\u{9b}");
    }
}
