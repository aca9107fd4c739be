//! Turns Rhai errors into operator-facing messages: `file:line:column: message`, then the source
//! line and a caret under the column. Sandbox stops (budget, Ctrl-C, limits) get plain words.
//! Messages and echoed source lines are escaped for the terminal ([`crate::term`]): both can
//! carry text a script chose.

use rhai::{EvalAltResult, ParseError, ParseErrorType, Position};

use super::engine::{DISABLED, Refusal};
use super::guard;
use super::sandbox::{Limits, STOP_INTERRUPT, STOP_MEMORY, STOP_NESTING, STOP_TIMEOUT};
use crate::term;

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

/// `limits` are the ones of the engine that parsed, so the message quotes the limit it hit.
pub fn from_parse(err: &ParseError, file: &str, source: &str, limits: &Limits) -> ScriptError {
    let message = match (err.err_type(), disabled_word_at(source, err.position())) {
        (ParseErrorType::TooManyFunctions, _) => format!(
            "the script defines more than {} functions and closures (sandbox limit)",
            limits.functions
        ),
        // The parser's own words depend on where the keyword stands (`f.curry(x)` reads as a
        // missing property name).
        (_, Some(word)) => format!("syntax error: `{word}` is disabled in the sandbox"),
        (other, None) => format!("syntax error: {}", lowercase_first(&other.to_string())),
    };
    ScriptError {
        message: located(file, source, err.position(), &message),
        interrupted: false,
    }
}

/// The disabled keyword ([`DISABLED`]) that starts at `pos` in `source`, if one does.
fn disabled_word_at(source: &str, pos: Position) -> Option<&'static str> {
    let line = source.lines().nth(pos.line()?.checked_sub(1)?)?;
    let word: String = line
        .chars()
        .skip(pos.position()?.saturating_sub(1))
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    DISABLED.iter().copied().find(|d| *d == word)
}

/// Why [`super::engine::compile`] refused a text.
pub fn from_compile(refusal: &Refusal, file: &str, source: &str, limits: &Limits) -> ScriptError {
    let message = match refusal {
        Refusal::Parse(err) => return from_parse(err, file, source, limits),
        Refusal::TooLarge(_) => located(file, source, Position::NONE, &refusal.to_string()),
        Refusal::Capture { pos, .. } => format!(
            "{}\nhelp: use a `for` loop where the code needs variables from around it",
            located(file, source, *pos, &refusal.to_string())
        ),
    };
    ScriptError {
        message,
        interrupted: false,
    }
}

/// `budget_secs` and `limits` are the run's, so the message quotes the limit it hit.
pub fn from_eval(
    err: &EvalAltResult,
    file: &str,
    source: &str,
    budget_secs: u64,
    limits: &Limits,
) -> ScriptError {
    from_eval_in(err, file, source, budget_secs, limits, &|_| true)
}

/// Like [`from_eval`] for text that defines only some of the functions it calls (a REPL entry):
/// `defined_here` tells which function names the text itself defines.
pub fn from_eval_in(
    err: &EvalAltResult,
    file: &str,
    source: &str,
    budget_secs: u64,
    limits: &Limits,
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
    // Printed after the source excerpt, as every `help:` line is.
    let mut help: Option<String> = None;
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
            } else if token == STOP_MEMORY {
                help = Some(
                    "raise script_memory_mb in the config if the flow legitimately needs more"
                        .into(),
                );
                format!(
                    "script exceeded its memory limit of {} MiB",
                    super::memory::limit_mib()
                )
            } else if token == STOP_NESTING {
                format!(
                    "script stopped: {}",
                    guard::nested_too_deep("turned into text", limits.nesting)
                )
            } else {
                "script terminated".to_string()
            }
        }
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "script stopped: it exceeded the limit of {} operations (a runaway loop?)",
            limits.operations
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            format!("script stopped: {what} exceeds the sandbox limit")
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            "script stopped: call depth limit reached (runaway recursion?)".into()
        }
        EvalAltResult::ErrorRuntime(value, _) if value.is_string() => value.to_string(),
        // Displaying the thrown value would recurse as deep as it is nested.
        EvalAltResult::ErrorRuntime(value, _)
            if guard::depth_within(value, limits.nesting) > limits.nesting =>
        {
            guard::too_deep_for("throw", "shown", limits.nesting)
        }
        EvalAltResult::ErrorFunctionNotFound(call, _)
            if let Some((text, how)) = super::bind::signatures()
                .and_then(|known| unmatched_primitive_call(call, known)) =>
        {
            help = Some(how);
            text
        }
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
    let mut message = located(file, source, pos, &message);
    if let Some(help) = help {
        message = format!("{message}\nhelp: {help}");
    }
    ScriptError {
        message,
        interrupted,
    }
}

/// A call of a primitive that matches none of its signatures, as Rhai names it
/// (`containers::stop (&str | ImmutableString | String, i64)`): what was passed, and a `help:`
/// line with every signature the primitive has; for a name its module does not have, the names
/// it has. `None` for any other function (a script's own, an imported module's).
pub fn unmatched_primitive_call(
    call: &str,
    known: &std::collections::BTreeMap<String, Vec<&'static str>>,
) -> Option<(String, String)> {
    let (path, rest) = call.split_once(" (")?;
    let (module, name) = path.split_once("::")?;
    let passed: Vec<&str> = rest
        .strip_suffix(')')?
        .split(", ")
        .filter(|t| !t.is_empty())
        .map(rhai_type_name)
        .collect();
    let passed = format!("({})", passed.join(", "));
    if let Some(signatures) = known.get(path) {
        return Some((
            format!("{path} cannot be called with {passed}"),
            format!(
                "call it as {}",
                signatures
                    .iter()
                    .map(|s| s.split_once(" ->").map_or(*s, |(call, _)| call))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ));
    }
    let prefix = format!("{module}::");
    let names: Vec<&str> = known
        .keys()
        .filter_map(|p| p.strip_prefix(&prefix))
        .collect();
    (!names.is_empty()).then(|| {
        (
            format!("{module}:: has no primitive {name}"),
            format!(
                "{module}:: has {}; `cai scripts api` documents them",
                names.join(", ")
            ),
        )
    })
}

/// A Rust type as Rhai reports an argument, in the words of `cai scripts api`.
fn rhai_type_name(rust: &str) -> &str {
    match rust.trim() {
        t if t.contains("String") || t.contains("&str") => "string",
        "i64" | "i32" | "INT" => "int",
        "f64" | "f32" | "FLOAT" => "float",
        "bool" => "bool",
        "char" => "char",
        "()" => "()",
        t if t.eq_ignore_ascii_case("map") || t.ends_with("Map") => "map",
        t if t.eq_ignore_ascii_case("array") || t.ends_with("Array") => "array",
        other => other,
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

/// `file:line:col: message` plus the source line and a caret, escaped for the terminal.
pub fn located(file: &str, source: &str, pos: Position, message: &str) -> String {
    let file = term::line(file);
    let message = lowercase_first(&term::text(message));
    let (Some(line), col) = (pos.line(), pos.position().unwrap_or(1)) else {
        return format!("{file}: {message}");
    };
    let mut out = format!("{file}:{line}:{col}: {message}");
    if let Some(raw) = source.lines().nth(line - 1) {
        let gutter = line.to_string().len();
        // The caret lines up with the escaped text: a character shown as `\x1b` takes four
        // columns, a tab stays a tab.
        let caret_pad: String = raw
            .chars()
            .take(col.saturating_sub(1))
            .flat_map(|c| {
                let (pad, width) = match c {
                    '\t' => ('\t', 1),
                    other => (
                        ' ',
                        term::line(other.encode_utf8(&mut [0; 4])).chars().count(),
                    ),
                };
                std::iter::repeat_n(pad, width)
            })
            .collect();
        let text = term::text(raw);
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
    fn a_call_that_matches_no_signature_lists_the_signatures() {
        let known: std::collections::BTreeMap<String, Vec<&'static str>> = [
            (
                "containers::stop".to_string(),
                vec![
                    "containers::stop(ids: array, timeout_secs: int) -> map",
                    "containers::stop(ids: array) -> map",
                ],
            ),
            (
                "containers::start".to_string(),
                vec!["containers::start(ids: array) -> map"],
            ),
        ]
        .into();
        assert_eq!(
            unmatched_primitive_call("containers::stop (&str | ImmutableString | String, i64)", &known),
            Some((
                "containers::stop cannot be called with (string, int)".into(),
                "call it as containers::stop(ids: array, timeout_secs: int) or containers::stop(ids: array)".into()
            ))
        );
        assert_eq!(
            unmatched_primitive_call("containers::start (map, f64, bool)", &known)
                .unwrap()
                .0,
            "containers::start cannot be called with (map, float, bool)"
        );
        assert_eq!(
            unmatched_primitive_call("containers::start ()", &known)
                .unwrap()
                .0,
            "containers::start cannot be called with ()"
        );
        assert_eq!(
            unmatched_primitive_call("containers::nosuch (i64)", &known),
            Some((
                "containers:: has no primitive nosuch".into(),
                "containers:: has start, stop; `cai scripts api` documents them".into()
            ))
        );
        assert_eq!(unmatched_primitive_call("helpers::f (i64)", &known), None);
        assert_eq!(unmatched_primitive_call("f (i64)", &known), None);
    }

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
