//! The Rhai layer: engine factory, primitive bindings, script catalog, error rendering and the
//! REPL. [`run`] is the one way a script is executed: API check, compile, evaluate in the sandbox.

pub mod api;
pub mod bind;
pub mod catalog;
pub mod engine;
pub mod error;
pub mod guard;
pub mod memory;
pub mod outcome;
pub mod repl;
pub mod sandbox;

use std::rc::Rc;
use std::time::Duration;

use rhai::{Dynamic, Scope};

use crate::host::Host;
use crate::term::quoted;
use catalog::{Catalog, Header, Script};
use engine::EngineOptions;
use error::ScriptError;
use sandbox::{Budget, Limits};

pub use outcome::Outcome;

/// What a finished script returned: its outcome, whose exit code [`crate::error::exit_code`]
/// decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub outcome: Outcome,
    /// Why the script refused, when it ended with `exit(run::refuse(...))`.
    pub refusal: Option<crate::host::Refusal>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// Checks scripts without running anything: the API version, a compile, and every module each
/// imports by a literal name (resolved, checked the same way, compiled too). One engine serves
/// every script checked, since compiling never changes it.
pub struct Checker {
    engine: rhai::Engine,
    limits: Limits,
    catalog: Rc<Catalog>,
}

impl Checker {
    pub fn new(host: &Rc<Host>, catalog: &Rc<Catalog>) -> Self {
        let options = options(host, Vec::new(), false);
        let limits = options.limits;
        let (engine, _) = engine::build(host, catalog, options);
        Self {
            engine,
            limits,
            catalog: catalog.clone(),
        }
    }

    pub fn check(&self, script: &Script) -> Result<Header, RunError> {
        self.check_with_imports(script, &mut Imports::default())
    }
}

/// Modules seen while checking: `loading` is the chain being checked now (an import of one of
/// them is a cycle), `done` the ones already found good.
#[derive(Default)]
struct Imports {
    loading: Vec<String>,
    done: Vec<String>,
}

impl Checker {
    fn check_with_imports(
        &self,
        script: &Script,
        imports: &mut Imports,
    ) -> Result<Header, RunError> {
        let header = script.check_api()?;
        let file = script.display_name();
        let ast = engine::compile(
            &self.engine,
            &base_scope(Vec::new(), Opts::new()),
            &script.text,
        )
        .map_err(|e| error::from_compile(&e, &file, &script.text, &self.limits))?;
        for (name, pos) in literal_imports(&ast) {
            let located = |message: String| {
                RunError::Script(ScriptError {
                    message: error::located(&file, &script.text, pos, &message),
                    interrupted: false,
                })
            };
            if !name.starts_with("lib/") {
                return Err(located(format!(
                    "import {}: only modules under lib/ can be imported",
                    quoted(&name)
                )));
            }
            if imports.loading.contains(&name) {
                let chain = imports.loading.join(" -> ");
                return Err(located(format!("import cycle: {chain} -> {name}")));
            }
            if imports.done.contains(&name) {
                continue;
            }
            let module = self.catalog.resolve(&name).map_err(|e| {
                let reason = e.to_string();
                located(format!(
                    "import {}: {}",
                    quoted(&name),
                    reason.lines().next().unwrap_or("")
                ))
            })?;
            imports.loading.push(name.clone());
            self.check_with_imports(&module, imports)?;
            imports.loading.pop();
            imports.done.push(name);
        }
        Ok(header)
    }
}

/// `import "name"` statements whose name is a string literal, with their positions.
fn literal_imports(ast: &rhai::AST) -> Vec<(String, rhai::Position)> {
    let mut found = Vec::new();
    ast.walk(&mut |path: &[rhai::ASTNode]| {
        if let Some(rhai::ASTNode::Stmt(rhai::Stmt::Import(import, pos))) = path.last() {
            if let rhai::Expr::StringConstant(name, _) = &import.0 {
                found.push((name.to_string(), *pos));
            }
        }
        true
    });
    found
}

/// The argument by which an operator agrees that an update may stop managed containers.
pub const STOP_CONSENT_ARG: &str = "--stop-containers";
/// The argument by which an operator leaves the containers an update stopped stopped.
pub const NO_RESTART_ARG: &str = "--no-restart";

/// The options of the command that runs a script, as clap typed them: `OPTS` in the script
/// (empty for `cai run`, whose script reads `ARGS`).
pub type Opts = rhai::Map;

/// `OPTS` from a command's typed options: a flat struct of bools, strings, numbers, lists and
/// optional values, each field a key.
pub fn opts<T: serde::Serialize>(typed: &T) -> Opts {
    // Invariant: the option structs are plain structs, which always serialize to a map; a unit
    // test of each command's options checks it.
    rhai::serde::to_dynamic(typed)
        .ok()
        .and_then(|value| value.try_cast::<rhai::Map>())
        .unwrap_or_default()
}

/// Runs a script to completion in the host's mode (dry-run or live).
pub fn run(
    host: &Rc<Host>,
    catalog: &Rc<Catalog>,
    script: &Script,
    args: Vec<String>,
    opts: Opts,
    json: bool,
) -> Result<Finished, RunError> {
    let header = script.check_api()?;
    if let Some(note) = &header.note {
        // stderr: stdout may carry the --json document.
        crate::term::err(&format!("note: {}", crate::term::line(note)));
    }
    if args.iter().any(|a| a == STOP_CONSENT_ARG) {
        host.stop_consent.replace(crate::host::StopConsent::Any);
    }
    if args.iter().any(|a| a == NO_RESTART_ARG) {
        host.no_restart.set(true);
    }
    evaluate(host, catalog, script, options(host, args, json), opts)
}

/// Builds an engine with `engine_options`, compiles `script` and runs it with the command's
/// typed options in `OPTS`; errors quote the engine's limits.
fn evaluate(
    host: &Rc<Host>,
    catalog: &Rc<Catalog>,
    script: &Script,
    engine_options: EngineOptions,
    opts: Opts,
) -> Result<Finished, RunError> {
    let budget_secs = engine_options.budget.limit().as_secs();
    let limits = engine_options.limits;
    let mut scope = base_scope(engine_options.args.clone(), opts);
    let (engine, _) = engine::build(host, catalog, engine_options);
    let file = script.display_name();
    let mut ast = engine::compile(&engine, &scope, &script.text)
        .map_err(|e| error::from_compile(&e, &file, &script.text, &limits))?;
    ast.set_source(file.clone());
    host.refusal.take();
    let value = engine
        .eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
        .map_err(|e| error::from_eval(&e, &file, &script.text, budget_secs, &limits));
    let refusal = host.refusal.take();
    let mut finished = finish(value?).map_err(|message| {
        RunError::Script(ScriptError {
            message: format!("{file}: {message}"),
            interrupted: false,
        })
    })?;
    // Only a script that ended with its refusal carries it (one that refused and went on to
    // succeed does not).
    if !finished.outcome.succeeded() {
        finished.refusal = refusal;
    }
    Ok(finished)
}

/// The constants every script starts with: `ARGS`, the arguments after `--`, and `OPTS`, the
/// options of the command that runs it.
fn base_scope(args: Vec<String>, opts: Opts) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant(
        "ARGS",
        args.into_iter().map(Dynamic::from).collect::<rhai::Array>(),
    );
    scope.push_constant("OPTS", opts);
    scope
}

fn options(host: &Host, args: Vec<String>, json: bool) -> EngineOptions {
    EngineOptions {
        args,
        json,
        budget: Budget::new(Duration::from_secs(host.config.script_timeout_secs))
            .with_memory(host.config.script_memory_mb),
        limits: Limits::default(),
    }
}

/// Reads a script's value (the argument of `exit(...)` or its last expression) as its outcome.
pub fn finish(value: Dynamic) -> Result<Finished, String> {
    Outcome::from_value(value).map(|outcome| Finished {
        outcome,
        refusal: None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::effects::Mode;
    use crate::host::HostOptions;

    pub(crate) fn dry_run_host(root: PathBuf) -> Rc<Host> {
        Rc::new(Host::new(HostOptions::for_tests(&root, Mode::DryRun)).unwrap())
    }

    /// A dry-run engine over an empty root, with the primitives it registered.
    fn dry_run_engine(
        root: &std::path::Path,
    ) -> (Rc<Host>, Rc<Catalog>, rhai::Engine, Vec<bind::Primitive>) {
        let host = dry_run_host(root.to_path_buf());
        let catalog = Rc::new(Catalog::new(
            host.root().clone(),
            None,
            crate::host::trust::Trust::new(None),
        ));
        let (engine, primitives) =
            engine::build(&host, &catalog, options(&host, Vec::new(), false));
        (host, catalog, engine, primitives)
    }

    #[test]
    fn the_api_listing_is_what_the_engine_registered() {
        let root = tempfile::tempdir().unwrap();
        let (host, catalog, engine, primitives) = dry_run_engine(root.path());
        let listed: Vec<String> = bind::primitives(&host, &catalog)
            .iter()
            .map(bind::Primitive::path)
            .collect();
        let built: Vec<String> = primitives.iter().map(bind::Primitive::path).collect();
        assert_eq!(listed, built);
        // Every listed primitive resolves in a script (a misspelt registration would not).
        for p in &primitives {
            let probe = format!("{}::{}", p.module, p.name);
            let err = engine.compile(&probe).err();
            assert!(err.is_none(), "{probe}: {err:?}");
        }
    }

    #[test]
    fn every_documented_example_runs_in_a_dry_run_and_mutations_are_planned() {
        let root = tempfile::tempdir().unwrap();
        let (host, _, engine, primitives) = dry_run_engine(root.path());
        // Examples are what an operator types at the REPL, which may record containers to stop.
        host.stop_consent.replace(crate::host::StopConsent::Any);
        for p in &primitives {
            let before = host.gate.plan().len();
            engine
                .run(p.example)
                .unwrap_or_else(|e| panic!("{}: example {:?} failed: {e}", p.path(), p.example));
            let planned = host.gate.plan().len() - before;
            let kind = format!("{}.{}", p.module, p.name);
            if p.mutating && !p.example.starts_with("try") {
                assert_eq!(planned, 1, "{kind} did not record exactly one action");
                assert_eq!(host.gate.plan().last().unwrap().kind, kind);
            } else if !p.mutating {
                assert_eq!(planned, 0, "read-only {kind} recorded an action");
            }
        }
        // Nothing was written under the root.
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    /// Runs `body` as a script file `t.rhai` (full header) with `limits`; the error is what the
    /// operator would read.
    fn run_with_limits(limits: Limits, body: &str) -> Result<Finished, String> {
        let root = tempfile::tempdir().unwrap();
        let (host, catalog, _, _) = dry_run_engine(root.path());
        let script = Script {
            name: "t".into(),
            source: catalog::Origin::File,
            path: Some(PathBuf::from("t.rhai")),
            text: format!("//! version: 1.0.0\n//! api: 1\n{body}"),
        };
        let opts = EngineOptions {
            limits,
            ..options(&host, Vec::new(), false)
        };
        evaluate(&host, &catalog, &script, opts, Opts::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn every_command_runs_with_the_default_limits() {
        let root = tempfile::tempdir().unwrap();
        let host = dry_run_host(root.path().to_path_buf());
        assert_eq!(options(&host, Vec::new(), false).limits, Limits::default());
        let (_, _, engine, _) = dry_run_engine(root.path());
        assert_eq!(engine.max_operations(), sandbox::limits::OPERATIONS);
        assert_eq!(engine.max_call_levels(), sandbox::limits::CALL_LEVELS);
        assert_eq!(engine.max_string_size(), sandbox::limits::STRING_SIZE);
        assert_eq!(engine.max_array_size(), sandbox::limits::ARRAY_SIZE);
        assert_eq!(engine.max_map_size(), sandbox::limits::MAP_SIZE);
        assert_eq!(engine.max_functions(), sandbox::limits::FUNCTIONS);
    }

    #[test]
    fn a_runaway_loop_stops_on_the_operation_limit() {
        let limits = Limits {
            operations: 10_000,
            ..Limits::default()
        };
        let err = run_with_limits(limits, "let i = 0;\nloop { i += 1; }").unwrap_err();
        assert!(
            err.starts_with("t.rhai:4:")
                && err.contains("script stopped: it exceeded the limit of 10000 operations"),
            "{err}"
        );
        // Below the limit the same kind of loop ends normally.
        let done = run_with_limits(limits, "let i = 0;\nwhile i < 100 { i += 1; }").unwrap();
        assert_eq!(done.outcome, Outcome::Done);
    }

    #[test]
    fn too_many_functions_are_refused_at_the_engine_limit() {
        let limits = Limits {
            functions: 8,
            ..Limits::default()
        };
        let functions: String = (0..20).map(|i| format!("fn f{i}() {{ {i} }}\n")).collect();
        let err = run_with_limits(limits, &functions).unwrap_err();
        assert!(
            err.contains("t.rhai:11:1: the script defines more than 8 functions"),
            "{err}"
        );
    }

    /// The guards refuse values nested past the limit before any recursion through them; with a
    /// small limit a value 20 levels deep reaches every refusal.
    #[test]
    fn values_nested_past_the_limit_error_cleanly() {
        let limits = Limits {
            nesting: 8,
            ..Limits::default()
        };
        let build = "let a = [];\nfor i in 0..20 { a = [a]; }\nlet m = #{};\nfor i in 0..20 { m = #{x: m}; }\n";
        for (line, expect) in [
            (
                "print(a);",
                "print: arrays and maps nested more than 8 levels deep cannot be shown",
            ),
            (
                "debug(m);",
                "debug: arrays and maps nested more than 8 levels deep cannot be shown",
            ),
            (
                "a == a",
                "==: arrays and maps nested more than 8 levels deep cannot be compared",
            ),
            (
                "m != m",
                "!=: arrays and maps nested more than 8 levels deep cannot be compared",
            ),
            ("a in [a]", "==: arrays and maps nested"),
            ("[[1]].contains(a)", "==: arrays and maps nested"),
            ("[[1]].index_of(a)", "==: arrays and maps nested"),
            ("m.to_json()", "to_json: arrays and maps nested"),
            (
                "print(`${a}`);",
                "script stopped: arrays and maps nested more than 8 levels deep cannot be turned into text",
            ),
            (
                "let s = \"x\" + m;\n1",
                "script stopped: arrays and maps nested more than 8 levels deep cannot be turned into text",
            ),
            ("throw a;", "throw: arrays and maps nested more than 8"),
            ("exit(a);", "script result (array) is not an exit code"),
        ] {
            let err = run_with_limits(limits, &format!("{build}{line}")).unwrap_err();
            assert!(err.contains(expect), "{line}: {err}");
            assert!(err.contains("t.rhai:"), "{line}: {err}");
        }
        // At the limit everything works as usual.
        let shallow = "let a = [];\nfor i in 0..7 { a = [a]; }\nprint(a);\nlet same = a == a;\nlet t = `${a}`;";
        run_with_limits(limits, shallow).unwrap();
    }

    #[test]
    fn exit_codes_follow_the_script_value() {
        let outcome = |v: Dynamic| finish(v).unwrap().outcome;
        assert_eq!(outcome(Dynamic::UNIT), Outcome::Done);
        assert_eq!(outcome(Dynamic::from(2_i64)), Outcome::Code(2));
        assert_eq!(outcome(Dynamic::from(100_i64)), Outcome::Code(100));
        assert_eq!(outcome(Dynamic::from(Outcome::Refused)), Outcome::Refused);
        assert_eq!(
            outcome(Dynamic::from(Outcome::UpdatesAvailable)),
            Outcome::UpdatesAvailable
        );
        assert!(finish(Dynamic::from(256_i64)).is_err());
        assert!(finish(Dynamic::from(-1_i64)).is_err());
        for not_a_code in [
            Dynamic::from("text"),
            Dynamic::from(1.5_f64),
            Dynamic::TRUE,
            Dynamic::from_map(rhai::Map::new()),
            Dynamic::from_array(vec![Dynamic::from(1_i64)]),
        ] {
            let message = finish(not_a_code.clone()).unwrap_err();
            assert!(
                message.contains("is not an exit code"),
                "{not_a_code:?}: {message}"
            );
        }
    }
}
