//! The effect gate: the only path from a script to a side effect.
//!
//! A mutating primitive describes what it wants to do as an [`Action`] and hands the gate two
//! closures: one that predicts the result and one that performs the action. In dry-run the gate
//! records the action in the plan and returns the prediction; in live mode it performs the action
//! and appends it to the journal. Functions in [`crate::host`] that change the machine take an
//! [`Approval`], which only this module can create, so no code path (and no script) can reach a
//! side effect without passing the gate.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

/// Proof that the gate let an action through in live mode. Its field is private to this module.
#[derive(Debug)]
pub struct Approval {
    _private: (),
}

/// One side effect, described before it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// Primitive family and verb, e.g. `containers.stop`.
    pub kind: String,
    /// What it acts on, e.g. container names or a unit file path.
    pub target: String,
    /// Everything else that shapes the action (timeouts, sizes, arguments).
    pub details: serde_json::Value,
}

impl Action {
    pub fn new(kind: &str, target: impl Into<String>, details: serde_json::Value) -> Self {
        Self {
            kind: kind.to_string(),
            target: target.into(),
            details,
        }
    }
}

/// A result that can carry a partial failure (a set where some members failed), so the journal
/// records it as failed even though the call as a whole returned.
pub trait Partial {
    fn partial_failure(&self) -> Option<String> {
        None
    }
}

impl Partial for () {}
impl Partial for bool {}
impl Partial for i64 {}

/// How a journal entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    #[serde(flatten)]
    pub action: Action,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    DryRun,
    Live,
}

/// Records planned actions (dry-run) or performed ones (live).
#[derive(Debug)]
pub struct Gate {
    mode: Cell<Mode>,
    plan: RefCell<Vec<Action>>,
    journal: RefCell<Vec<JournalEntry>>,
    /// Where live entries are appended as JSON lines; `None` keeps them in memory only.
    journal_file: Option<PathBuf>,
}

impl Gate {
    pub fn new(mode: Mode, journal_file: Option<PathBuf>) -> Self {
        Self {
            mode: Cell::new(mode),
            plan: RefCell::new(Vec::new()),
            journal: RefCell::new(Vec::new()),
            journal_file,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode.get()
    }

    pub fn is_dry_run(&self) -> bool {
        self.mode.get() == Mode::DryRun
    }

    /// Switches mode (the REPL's `:live`). The plan so far is kept.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.set(mode);
    }

    /// Passes one action through the gate.
    pub fn apply<T, E>(
        &self,
        action: Action,
        predict: impl FnOnce() -> T,
        perform: impl FnOnce(Approval) -> Result<T, E>,
    ) -> Result<T, E>
    where
        T: Partial,
        E: std::fmt::Display,
    {
        if self.is_dry_run() {
            self.plan.borrow_mut().push(action);
            return Ok(predict());
        }
        let result = perform(Approval { _private: () });
        let error = match &result {
            Ok(value) => value.partial_failure(),
            Err(e) => Some(e.to_string()),
        };
        let entry = JournalEntry {
            action,
            outcome: if error.is_none() {
                Outcome::Done
            } else {
                Outcome::Failed
            },
            error,
        };
        self.append_journal_file(&entry);
        self.journal.borrow_mut().push(entry);
        result
    }

    pub fn plan(&self) -> Vec<Action> {
        self.plan.borrow().clone()
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        self.journal.borrow().clone()
    }

    /// The journal file is an audit trail; failing to write it must not undo or hide the action
    /// that already happened, so the failure is reported on stderr instead.
    fn append_journal_file(&self, entry: &JournalEntry) {
        let Some(path) = &self.journal_file else {
            return;
        };
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
            writeln!(file, "{line}")
        };
        if let Err(e) = write() {
            crate::term::err(&format!(
                "warning: cannot append to journal {}: {e}",
                path.display()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dry_run_records_and_predicts_without_performing() {
        let gate = Gate::new(Mode::DryRun, None);
        let performed = Cell::new(false);
        let out: Result<i64, String> = gate.apply(
            Action::new("units.restart", "x.service", json!({})),
            || 7,
            |_| {
                performed.set(true);
                Ok(1)
            },
        );
        assert_eq!(out, Ok(7));
        assert!(!performed.get());
        assert_eq!(gate.plan().len(), 1);
        assert!(gate.journal().is_empty());
    }

    #[test]
    fn live_performs_and_journals_failures_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("j/actions.jsonl");
        let gate = Gate::new(Mode::Live, Some(file.clone()));
        let ok: Result<i64, String> =
            gate.apply(Action::new("a.b", "t", json!({"n": 1})), || 0, |_| Ok(5));
        let err: Result<i64, String> = gate.apply(
            Action::new("a.c", "t", json!({})),
            || 0,
            |_| Err("boom".into()),
        );
        assert_eq!(ok, Ok(5));
        assert_eq!(err, Err("boom".to_string()));
        let journal = gate.journal();
        assert_eq!(journal[0].outcome, Outcome::Done);
        assert_eq!(journal[1].error.as_deref(), Some("boom"));
        assert!(gate.plan().is_empty());
        let text = std::fs::read_to_string(file).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("\"kind\":\"a.c\"") && text.contains("\"outcome\":\"failed\""));
    }
}
