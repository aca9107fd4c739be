//! Turns Rhai errors into operator-facing messages: `file:line:column: message`, then the source
//! line and a caret under the column. Sandbox stops (budget, Ctrl-C, limits) get plain words.

use rhai::{EvalAltResult, ParseError, Position};

use super::engine::{STOP_INTERRUPT, STOP_TIMEOUT};

/// Why a script run ended in an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub message: String,
    pub interrupted: bool,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScriptError {}

pub fn from_parse(err: &ParseError, file: &str, source: &str) -> ScriptError {
    ScriptError {
        message: located(
            file,
            source,
            err.position(),
            &format!(
                "syntax error: {}",
                lowercase_first(&err.err_type().to_string())
            ),
        ),
        interrupted: false,
    }
}

pub fn from_eval(err: &EvalAltResult, file: &str, source: &str, budget_secs: u64) -> ScriptError {
    from_eval_in(err, file, source, budget_secs, &|_| true)
}

/// Like [`from_eval`] for text that defines only some of the functions it calls (a REPL entry):
/// `defined_here` tells which function names the text itself defines.
pub fn from_eval_in(
    err: &EvalAltResult,
    file: &str,
    source: &str,
    budget_secs: u64,
    defined_here: &dyn Fn(&str) -> bool,
) -> ScriptError {
    // The innermost error carries the real message. Its position is the precise one only while
    // the error stays in this file's text; once it comes from an imported module or a function
    // defined elsewhere (an earlier REPL entry), point at the deepest call site in this file.
    let inner = err.unwrap_inner();
    let in_module = has_module_layer(err);
    let pos = if in_module {
        err.position()
    } else {
        position_in(err, file, defined_here)
    };
    let mut interrupted = false;
    let message = match inner {
        EvalAltResult::ErrorTerminated(token, _) => {
            let token = token.clone().into_string().unwrap_or_default();
            if token == STOP_INTERRUPT {
                interrupted = true;
                "script interrupted by Ctrl-C".to_string()
            } else if token == STOP_TIMEOUT {
                format!(
                    "script stopped: it ran past its wall-clock budget of {budget_secs} s (config script_timeout_secs)"
                )
            } else {
                "script terminated".to_string()
            }
        }
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "script stopped: it exceeded the limit of {} operations (a runaway loop?)",
            super::engine::limits::OPERATIONS
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            format!("script stopped: {what} exceeds the sandbox limit")
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            "script stopped: call depth limit reached (runaway recursion?)".into()
        }
        EvalAltResult::ErrorRuntime(value, _) if value.is_string() => value.to_string(),
        other => {
            let mut text = without_position(other);
            if in_module {
                if let Some(name) = module_name(err) {
                    text = format!("in module {name:?}: {text}");
                }
            }
            text
        }
    };
    ScriptError {
        message: located(file, source, pos, &message),
        interrupted,
    }
}

/// The deepest position that still refers to `file`'s text.
fn position_in(err: &EvalAltResult, file: &str, defined_here: &dyn Fn(&str) -> bool) -> Position {
    match err {
        EvalAltResult::ErrorInFunctionCall(name, source, inner, pos) => {
            if (!source.is_empty() && source != file) || !defined_here(name) {
                return *pos;
            }
            let deeper = position_in(inner, file, defined_here);
            if deeper.is_none() { *pos } else { deeper }
        }
        other => other.position(),
    }
}

fn has_module_layer(err: &EvalAltResult) -> bool {
    module_name(err).is_some()
}

fn module_name(err: &EvalAltResult) -> Option<String> {
    match err {
        EvalAltResult::ErrorInModule(name, ..) => Some(name.clone()),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => module_name(inner),
        _ => None,
    }
}

fn without_position(err: &EvalAltResult) -> String {
    let text = err.to_string();
    let suffix = format!(" ({})", err.position());
    match text.strip_suffix(&suffix) {
        Some(head) if !err.position().is_none() => head.to_string(),
        _ => text,
    }
}

/// Messages start lowercase like every other `cai` error; acronyms ("API") stay as they are.
fn lowercase_first(message: &str) -> String {
    let mut chars = message.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => first
            .to_lowercase()
            .chain(message.chars().skip(1))
            .collect(),
        _ => message.to_string(),
    }
}

/// `file:line:col: message` plus the source line and a caret.
pub fn located(file: &str, source: &str, pos: Position, message: &str) -> String {
    let message = lowercase_first(message);
    let (Some(line), col) = (pos.line(), pos.position().unwrap_or(1)) else {
        return format!("{file}: {message}");
    };
    let mut out = format!("{file}:{line}:{col}: {message}");
    if let Some(text) = source.lines().nth(line - 1) {
        let gutter = line.to_string().len();
        let caret_pad: String = text
            .chars()
            .take(col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            "\n{:gutter$} |\n{line} | {text}\n{:gutter$} | {caret_pad}^",
            "", ""
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_points_at_the_column() {
        let src = "let a = 1;\nlet b = foo(a);\n";
        let msg = located("x.rhai", src, Position::new(2, 9), "function not found");
        assert_eq!(
            msg,
            "x.rhai:2:9: function not found\n  |\n2 | let b = foo(a);\n  |         ^"
        );
        assert_eq!(
            located("x.rhai", src, Position::NONE, "boom"),
            "x.rhai: boom"
        );
    }
}
