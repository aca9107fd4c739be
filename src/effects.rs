//! The effect gate: the only path from a script to a side effect.
//!
//! A mutating primitive describes what it wants to do as an [`Action`] and hands the gate two
//! closures: one that predicts the result and one that performs the action. In dry-run the gate
//! records the action in the plan and returns the prediction; in live mode it journals first and
//! acts second (write-ahead): an intent entry, durable before anything happens, then the action,
//! then its outcome. An action whose intent cannot be journalled is refused, so nothing is ever
//! performed that was not recorded. Functions in [`crate::host`] that change the machine take an
//! [`Approval`], which only this module can create, so no code path (and no script) can reach a
//! side effect without passing the gate.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// Proof that the gate let an action through in live mode. Its field is private to this module.
#[derive(Debug)]
pub struct Approval {
    _private: (),
}

impl Approval {
    /// The same approval for the next step of one approved action made of several steps (a
    /// rollback restores links, files, a package and the engine under one journal entry). Only
    /// a holder of an approval can have another.
    pub fn again(&self) -> Approval {
        Approval { _private: () }
    }
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

/// A result that can carry failed members (a set where some containers failed), so the journal
/// records it as failed even though the call as a whole returned.
pub trait FailedMembers {
    fn failed_members(&self) -> Option<String> {
        None
    }
}

impl FailedMembers for () {}
impl FailedMembers for bool {}
impl FailedMembers for i64 {}
impl FailedMembers for crate::plan::shell::Detached {}

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

/// Where journal lines go. `append` returns only once the line is durable (written and synced).
pub type JournalSink = Box<dyn Fn(&[u8]) -> std::io::Result<()>>;

/// Why the gate did not hand back the action's result.
#[derive(Debug)]
pub enum GateError<E> {
    /// The intent could not be journalled, so the action was not performed.
    Journal(std::io::Error),
    /// The action was performed (and journalled) and failed.
    Action(E),
}

impl<E: std::fmt::Display> std::fmt::Display for GateError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateError::Journal(e) => write!(
                f,
                "refusing to act: cannot write the journal: {e}; nothing was changed"
            ),
            GateError::Action(e) => e.fmt(f),
        }
    }
}

/// Records planned actions (dry-run) or journals and performs them (live).
pub struct Gate {
    mode: Cell<Mode>,
    plan: RefCell<Vec<Action>>,
    journal: RefCell<Vec<JournalEntry>>,
    /// Where live entries are written ahead; `None` keeps them in memory only (unit tests).
    sink: Option<JournalSink>,
    /// Ties the intent and outcome lines of one run together in the journal file.
    run_id: String,
    seq: Cell<u64>,
    /// Held from an action's intent to its outcome, so an impatient second Ctrl-C waits for the
    /// action in progress and its outcome entry instead of leaving the journal half written.
    in_flight: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("mode", &self.mode.get())
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// One line of the journal file: the intent of an action, or its outcome.
#[derive(Serialize)]
struct JournalLine<'a> {
    run: &'a str,
    seq: u64,
    phase: &'static str,
    unix_time: u64,
    #[serde(flatten)]
    body: serde_json::Value,
}

impl Gate {
    pub fn new(mode: Mode, sink: Option<JournalSink>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            mode: Cell::new(mode),
            plan: RefCell::new(Vec::new()),
            journal: RefCell::new(Vec::new()),
            sink,
            run_id: format!("{:x}-{:x}", now.as_nanos(), std::process::id()),
            seq: Cell::new(0),
            in_flight: Arc::new(Mutex::new(())),
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

    /// The identifier of this run's lines in the journal file.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// A lock that is held while an action is being performed; whoever takes it waits for the
    /// action in progress and its journal entry.
    pub fn in_flight(&self) -> Arc<Mutex<()>> {
        self.in_flight.clone()
    }

    /// Passes one action through the gate.
    pub fn apply<T, E>(
        &self,
        action: Action,
        predict: impl FnOnce() -> T,
        perform: impl FnOnce(Approval) -> Result<T, E>,
    ) -> Result<T, GateError<E>>
    where
        T: FailedMembers,
        E: std::fmt::Display,
    {
        if self.is_dry_run() {
            self.plan.borrow_mut().push(action);
            return Ok(predict());
        }
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let in_flight = self.in_flight.clone();
        let _performing = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        let intent = serde_json::to_value(&action).unwrap_or_default();
        self.write_line(seq, "intent", intent)
            .map_err(GateError::Journal)?;
        let result = perform(Approval { _private: () });
        let error = match &result {
            Ok(value) => value.failed_members(),
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
        let outcome = serde_json::json!({ "outcome": entry.outcome, "error": entry.error });
        if let Err(e) = self.write_line(seq, "outcome", outcome) {
            // The action already happened; failing now would hide that. The intent line says it
            // was attempted, and the operator learns that its outcome is missing.
            crate::term::err(&format!(
                "warning: cannot journal the outcome of {} {}: {e}",
                crate::term::line(&entry.action.kind),
                crate::term::line(&entry.action.target)
            ));
        }
        self.journal.borrow_mut().push(entry);
        result.map_err(GateError::Action)
    }

    pub fn plan(&self) -> Vec<Action> {
        self.plan.borrow().clone()
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        self.journal.borrow().clone()
    }

    fn write_line(
        &self,
        seq: u64,
        phase: &'static str,
        body: serde_json::Value,
    ) -> std::io::Result<()> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = JournalLine {
            run: &self.run_id,
            seq,
            phase,
            unix_time,
            body,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        sink(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::rc::Rc;

    /// A sink that keeps lines in memory, or fails every write.
    fn memory_sink(fail: bool) -> (JournalSink, Rc<RefCell<Vec<String>>>) {
        let lines = Rc::new(RefCell::new(Vec::new()));
        let kept = lines.clone();
        let sink: JournalSink = Box::new(move |bytes: &[u8]| {
            if fail {
                return Err(std::io::Error::other("disk full"));
            }
            kept.borrow_mut()
                .push(String::from_utf8_lossy(bytes).into_owned());
            Ok(())
        });
        (sink, lines)
    }

    #[test]
    fn dry_run_records_and_predicts_without_performing() {
        let gate = Gate::new(Mode::DryRun, None);
        let performed = Cell::new(false);
        let out: Result<i64, GateError<String>> = gate.apply(
            Action::new("units.restart", "x.service", json!({})),
            || 7,
            |_| {
                performed.set(true);
                Ok(1)
            },
        );
        assert_eq!(out.ok(), Some(7));
        assert!(!performed.get());
        assert_eq!(gate.plan().len(), 1);
        assert!(gate.journal().is_empty());
    }

    #[test]
    fn live_journals_the_intent_before_acting_and_the_outcome_after() {
        let (sink, lines) = memory_sink(false);
        let gate = Gate::new(Mode::Live, Some(sink));
        let seen_before_acting = Cell::new(0);
        let ok: Result<i64, GateError<String>> = gate.apply(
            Action::new("a.b", "t", json!({"n": 1})),
            || 0,
            |_| {
                seen_before_acting.set(lines.borrow().len());
                Ok(5)
            },
        );
        let err: Result<i64, GateError<String>> = gate.apply(
            Action::new("a.c", "t", json!({})),
            || 0,
            |_| Err("boom".into()),
        );
        assert_eq!(ok.ok(), Some(5));
        assert_eq!(err.err().map(|e| e.to_string()).as_deref(), Some("boom"));
        assert_eq!(
            seen_before_acting.get(),
            1,
            "the intent was not written first"
        );
        let journal = gate.journal();
        assert_eq!(journal[0].outcome, Outcome::Done);
        assert_eq!(journal[1].error.as_deref(), Some("boom"));
        assert!(gate.plan().is_empty());
        let lines: Vec<serde_json::Value> = lines
            .borrow()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let phases: Vec<(&str, u64)> = lines
            .iter()
            .map(|l| (l["phase"].as_str().unwrap(), l["seq"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            phases,
            [("intent", 1), ("outcome", 1), ("intent", 2), ("outcome", 2)]
        );
        assert!(lines.iter().all(|l| l["run"] == gate.run_id()));
        assert_eq!(lines[0]["kind"], "a.b");
        assert_eq!(lines[3]["outcome"], "failed");
        assert_eq!(lines[3]["error"], "boom");
    }

    #[test]
    fn an_action_whose_intent_cannot_be_journalled_is_refused() {
        let (sink, _) = memory_sink(true);
        let gate = Gate::new(Mode::Live, Some(sink));
        let performed = Cell::new(false);
        let out: Result<(), GateError<String>> = gate.apply(
            Action::new("units.restart", "x.service", json!({})),
            || (),
            |_| {
                performed.set(true);
                Ok(())
            },
        );
        assert!(!performed.get());
        let message = out.err().unwrap().to_string();
        assert!(
            message.contains("refusing to act: cannot write the journal"),
            "{message}"
        );
        assert!(gate.journal().is_empty());
    }
}
