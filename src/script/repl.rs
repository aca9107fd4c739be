//! `cai repl`: an interactive session on the same sandboxed engine that runs the flows. It starts
//! in dry-run, keeps function definitions and variables between entries, continues input over
//! several lines while a statement is incomplete, completes primitive names, and keeps history in
//! `~/.local/state/containai/repl_history`. `:live` switches to live mode with a warning.

use std::borrow::Cow;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rhai::{AST, Dynamic, Engine, ParseErrorType, Scope};
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};

use super::catalog::Catalog;
use super::engine::{self, EngineOptions};
use super::sandbox::{Budget, Limits};
use super::{error, guard};
use crate::effects::Mode;
use crate::host::Host;
use crate::host::state::StateFile;
use crate::render;
use crate::term;

pub const HISTORY_FILE: &str = ".local/state/containai/repl_history";

const HELP: &str = "\
commands:
  :plan      show the actions recorded so far in this dry run
  :live      switch to live mode: mutating primitives change this host
  :dry-run   switch back to dry-run mode
  :api       list the primitives
  :help      this text
  :quit      leave (Ctrl-D works too)
Rhai statements run as typed; input continues over several lines while a statement is incomplete.";

/// Editor helper: syntax-aware continuation and completion of primitive names.
struct ReplHelper {
    checker: Engine,
    names: Vec<String>,
}

impl Helper for ReplHelper {}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.trim_start().starts_with(':') || is_complete(&self.checker, input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = word_start(line, pos);
        let word = &line[start..pos];
        let candidates = self
            .names
            .iter()
            .filter(|n| n.starts_with(word))
            .map(|n| Pair {
                display: n.clone(),
                replacement: n.clone(),
            })
            .collect();
        Ok((start, candidates))
    }
}

/// Byte index where the primitive name under the cursor starts; always a char boundary.
fn word_start(line: &str, pos: usize) -> usize {
    let pos = pos.min(line.len());
    let head = line.get(..pos).unwrap_or(line);
    head.char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == ':'))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

/// Input is incomplete when the parser ran out of text: it wanted more tokens at the very end.
pub fn is_complete(checker: &Engine, input: &str) -> bool {
    let Err(err) = checker.compile(input) else {
        return true;
    };
    let at_end = match err.position().line() {
        None => true,
        Some(line) => line >= input.lines().count().max(1),
    };
    let wants_more = matches!(
        err.err_type(),
        ParseErrorType::UnexpectedEOF
            | ParseErrorType::MissingToken(..)
            | ParseErrorType::MissingSymbol(..)
    ) || matches!(err.err_type(), ParseErrorType::BadInput(lex) if lex.to_string().contains("Open string"));
    !(at_end && wants_more && input.lines().last().is_some_and(|l| !l.trim().is_empty()))
}

fn prompt(mode: Mode) -> &'static str {
    match mode {
        Mode::DryRun => "cai[dry-run]> ",
        Mode::Live => "cai[live]> ",
    }
}

/// Runs the REPL until `:quit` or end of input.
pub fn run(host: &Rc<Host>, catalog: &Rc<Catalog>) -> anyhow::Result<()> {
    // A person types every call here, as deliberately as an answer to a prompt.
    host.stop_consent.replace(crate::host::StopConsent::Any);
    let budget = Budget::new(Duration::from_secs(host.config.script_timeout_secs))
        .with_memory(host.config.script_memory_mb);
    let (engine, primitives) = engine::build(
        host,
        catalog,
        EngineOptions {
            args: Vec::new(),
            json: false,
            budget: budget.clone(),
            limits: Limits::default(),
        },
    );
    let mut checker = Engine::new_raw();
    checker.disable_symbol("eval");
    let mut names: Vec<String> = primitives
        .iter()
        .map(|p| format!("{}(", p.path()))
        .collect();
    names.sort();
    names.dedup();
    names.extend([":plan", ":live", ":dry-run", ":api", ":help", ":quit"].map(String::from));

    let mut editor: Editor<ReplHelper, DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(ReplHelper { checker, names }));
    let mut history = open_history(host);
    if let Some(file) = history.as_mut() {
        match file.read() {
            Ok(text) => {
                for entry in parse_history(&text) {
                    editor.add_history_entry(entry)?;
                }
            }
            Err(e) => term::err(&format!("warning: cannot read the REPL history: {e}")),
        }
    }

    term::err("cai repl: dry-run mode, mutating primitives only record a plan; :help for commands");
    let mut scope = Scope::new();
    let mut functions = AST::empty();
    let mut entries = 0_usize;
    loop {
        let line = match editor.readline(prompt(host.gate.mode())) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let input = line.trim();
        if input.is_empty() {
            continue;
        }
        editor.add_history_entry(line.as_str())?;
        save_history(&editor, history.as_mut());
        match input {
            ":quit" | ":q" | ":exit" => break,
            ":help" => term::out(HELP),
            ":plan" => {
                term::out(&render::plan_human(
                    &host.gate.plan(),
                    render::PlanEnd::Complete,
                ));
                let journal = host.gate.journal();
                if !journal.is_empty() {
                    term::out(&render::journal_human(&journal));
                }
            }
            ":api" => {
                for p in &primitives {
                    term::out(&format!(
                        "{:<8} {}",
                        if p.mutating { "mutating" } else { "read" },
                        p.signature
                    ));
                }
            }
            ":live" => {
                host.gate.set_mode(Mode::Live);
                term::err(
                    "warning: live mode: mutating primitives now change this host (stop containers, write units, install packages); :dry-run switches back",
                );
            }
            ":dry-run" => {
                host.gate.set_mode(Mode::DryRun);
                term::err("dry-run mode: mutating primitives only record a plan");
            }
            other if other.starts_with(':') => term::err(&format!(
                "error: unknown command {}; :help lists commands",
                term::line(other)
            )),
            _ => {
                budget.restart();
                host.interrupted.store(false, Ordering::SeqCst);
                entries += 1;
                eval_entry(
                    &engine,
                    &mut scope,
                    &mut functions,
                    &line,
                    entries,
                    budget.limit().as_secs(),
                );
            }
        }
    }
    save_history(&editor, history.as_mut());
    Ok(())
}

/// The history file, when it can be kept safely (see [`crate::host::state`]); otherwise the
/// session runs without one and says why once.
fn open_history(host: &Host) -> Option<StateFile> {
    let home = host.home.as_ref()?;
    match StateFile::open(home, Path::new(HISTORY_FILE), host.owners) {
        Ok(file) => Some(file),
        Err(e) => {
            term::err(&format!(
                "warning: no REPL history this session: {}",
                term::line(&e.to_string())
            ));
            None
        }
    }
}

/// One entry per line; a backslash and a newline inside an entry are escaped (`\\`, `\n`).
/// A `#V2` first line, as older history files have, is skipped.
fn parse_history(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(i, line)| !(line.is_empty() || (*i == 0 && *line == "#V2")))
        .map(|(_, line)| {
            let mut entry = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    entry.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => entry.push('\n'),
                    Some(other) => entry.push(other),
                    None => entry.push('\\'),
                }
            }
            entry
        })
        .collect()
}

fn format_history(entries: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for entry in entries {
        out.push_str(&entry.replace('\\', "\\\\").replace('\n', "\\n"));
        out.push('\n');
    }
    out
}

fn save_history(editor: &Editor<ReplHelper, DefaultHistory>, file: Option<&mut StateFile>) {
    let Some(file) = file else { return };
    let text = format_history(editor.history().iter().cloned());
    if let Err(e) = file.rewrite(&text) {
        term::err(&format!("warning: cannot save the REPL history: {e}"));
    }
}

/// Compiles one entry, keeps its function definitions for later entries, and prints its value.
///
/// Each entry is labelled `repl#N`; an error inside a function defined by an earlier entry points
/// at the call in this entry, not at unrelated text.
fn eval_entry(
    engine: &Engine,
    scope: &mut Scope,
    functions: &mut AST,
    input: &str,
    entry: usize,
    budget_secs: u64,
) {
    let label = format!("repl#{entry}");
    // The engine's: `run` builds it with the defaults.
    let limits = Limits::default();
    let ast = match engine::compile(engine, scope, input) {
        Ok(ast) => ast,
        Err(e) => {
            term::err(&format!(
                "error: {}",
                error::from_compile(&e, &label, input, &limits)
            ));
            return;
        }
    };
    let defined: Vec<String> = ast.iter_functions().map(|f| f.name.to_string()).collect();
    *functions = functions.merge(&ast.clone_functions_only());
    let runnable = functions.merge(&ast);
    match engine.eval_ast_with_scope::<Dynamic>(scope, &runnable) {
        Ok(value) if value.is_unit() => {}
        // Debug formatting recurses once per level of nesting.
        Ok(value) if guard::depth_within(&value, limits.nesting) > limits.nesting => term::err(
            &format!("error: {}", guard::nested_too_deep("shown", limits.nesting)),
        ),
        Ok(value) => term::out(&format!("=> {}", term::text(&format!("{value:?}")))),
        Err(e) => term::err(&format!(
            "error: {}",
            error::from_eval_in(&e, &label, input, budget_secs, &limits, &|name| {
                defined.iter().any(|d| d == name)
            })
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_word_starts_on_char_boundaries() {
        assert_eq!(word_start("containers::li", 14), 0);
        assert_eq!(word_start("let x = run::a", 14), 8);
        assert_eq!(word_start("é", 2), 2);
        assert_eq!(word_start("\"é\" + units::r", 15), 7);
    }

    #[test]
    fn history_entries_survive_newlines_and_backslashes() {
        let entries = vec![
            "fn f(a) {\n  a }".to_string(),
            "print(\"a\\\\nb\")".to_string(),
            ":live".to_string(),
        ];
        let text = format_history(entries.clone().into_iter());
        assert_eq!(text.lines().count(), 3, "{text}");
        assert_eq!(parse_history(&text), entries);
        assert_eq!(parse_history("#V2\nadd(1, 2)\n"), ["add(1, 2)"]);
    }

    #[test]
    fn incomplete_input_is_detected() {
        let engine = Engine::new_raw();
        for complete in [
            "1 + 2",
            "fn f(a) { a }",
            "let x = [1, 2];",
            "print(\"a\")",
            "let x = ;",
        ] {
            assert!(is_complete(&engine, complete), "{complete}");
        }
        for incomplete in [
            "fn f(a) {",
            "let x = [1,",
            "if true {\n  1",
            "let s = \"abc",
        ] {
            assert!(!is_complete(&engine, incomplete), "{incomplete}");
        }
    }
}
