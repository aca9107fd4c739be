//! The Rhai layer: engine factory, primitive bindings, script catalog, error rendering and the
//! REPL. [`run`] is the one way a script is executed: API check, compile, evaluate in the sandbox.

pub mod api;
pub mod bind;
pub mod catalog;
pub mod engine;
pub mod error;
pub mod repl;

use std::rc::Rc;
use std::time::Duration;

use rhai::{Dynamic, Scope};

use crate::host::Host;
use catalog::{Catalog, Header, Script};
use engine::{Budget, EngineOptions};
use error::ScriptError;

/// What a finished script returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The script's value (the argument of `exit(...)` or its last expression) as JSON.
    pub value: serde_json::Value,
    pub exit_code: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error(transparent)]
    Script(#[from] ScriptError),
}

impl RunError {
    pub fn interrupted(&self) -> bool {
        matches!(self, RunError::Script(e) if e.interrupted)
    }
}

/// Checks the API version and compiles without running anything.
pub fn check(host: &Rc<Host>, catalog: &Rc<Catalog>, script: &Script) -> Result<Header, RunError> {
    let header = script.check_api()?;
    let (engine, _) = engine::build(host, catalog, options(host, Vec::new(), false));
    engine
        .compile(&script.text)
        .map_err(|e| error::from_parse(&e, &script.display_name(), &script.text))?;
    Ok(header)
}

/// Runs a script to completion in the host's mode (dry-run or live).
pub fn run(
    host: &Rc<Host>,
    catalog: &Rc<Catalog>,
    script: &Script,
    args: Vec<String>,
    json: bool,
) -> Result<Finished, RunError> {
    script.check_api()?;
    let opts = options(host, args.clone(), json);
    let budget_secs = opts.budget.limit().as_secs();
    let (engine, _) = engine::build(host, catalog, opts);
    let file = script.display_name();
    let mut ast = engine
        .compile(&script.text)
        .map_err(|e| error::from_parse(&e, &file, &script.text))?;
    ast.set_source(file.clone());
    let mut scope = Scope::new();
    scope.push_constant(
        "ARGS",
        args.into_iter().map(Dynamic::from).collect::<rhai::Array>(),
    );
    let value = engine
        .eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
        .map_err(|e| error::from_eval(&e, &file, &script.text, budget_secs))?;
    finish(value).map_err(|message| {
        RunError::Script(ScriptError {
            message: format!("{file}: {message}"),
            interrupted: false,
        })
    })
}

fn options(host: &Host, args: Vec<String>, json: bool) -> EngineOptions {
    EngineOptions {
        args,
        json,
        budget: Budget::new(Duration::from_secs(host.config.script_timeout_secs)),
    }
}

/// Maps a script's value to an exit code: `()` is 0, an integer is the code itself.
pub fn finish(value: Dynamic) -> Result<Finished, String> {
    let exit_code = if value.is_unit() {
        0
    } else if let Ok(code) = value.as_int() {
        u8::try_from(code).map_err(|_| format!("exit code {code} is outside 0..=255"))?
    } else {
        0
    };
    let value =
        rhai::serde::from_dynamic::<serde_json::Value>(&value).unwrap_or(serde_json::Value::Null);
    Ok(Finished { value, exit_code })
}
