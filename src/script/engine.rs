//! The one engine factory. It starts from `Engine::new_raw()` plus the standard package, sets
//! every limit, disables `eval`, installs a module resolver that serves only catalog modules (no
//! file-system resolution), stops runaway scripts on a wall-clock budget or Ctrl-C, and registers
//! the primitives. Optimization stays at `Simple`: `Full` would run registered functions at
//! compile time, outside the effect gate's view of the run.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rhai::module_resolvers::ModuleResolver;
use rhai::packages::{Package, StandardPackage};
use rhai::{Engine, EvalAltResult, Module, OptimizationLevel, Position, Scope, Shared};

use super::bind;
use super::catalog::{Catalog, validate_name};
use crate::host::Host;

/// Sandbox limits. Generous for real flows, small enough that a runaway script fails fast.
pub mod limits {
    pub const OPERATIONS: u64 = 50_000_000;
    pub const CALL_LEVELS: usize = 64;
    pub const EXPR_DEPTH: usize = 64;
    pub const FN_EXPR_DEPTH: usize = 32;
    pub const STRING_SIZE: usize = 4 * 1024 * 1024;
    pub const ARRAY_SIZE: usize = 100_000;
    pub const MAP_SIZE: usize = 100_000;
    pub const MODULES: usize = 64;
}

/// Token values an `on_progress` stop carries, so error rendering can say why.
pub const STOP_TIMEOUT: &str = "cai:timeout";
pub const STOP_INTERRUPT: &str = "cai:interrupt";

/// Per-run state the engine's callbacks read.
#[derive(Clone)]
pub struct Budget {
    started: Rc<Cell<Instant>>,
    limit: Duration,
}

impl Budget {
    pub fn new(limit: Duration) -> Self {
        Self {
            started: Rc::new(Cell::new(Instant::now())),
            limit,
        }
    }

    /// Restarts the clock (each REPL entry gets its own budget).
    pub fn restart(&self) {
        self.started.set(Instant::now());
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }
}

/// What the factory needs besides the host.
pub struct EngineOptions {
    pub args: Vec<String>,
    pub json: bool,
    pub budget: Budget,
}

/// Builds the sandboxed engine; returns it with the documentation of every primitive it has.
pub fn build(
    host: &Rc<Host>,
    catalog: &Rc<Catalog>,
    options: EngineOptions,
) -> (Engine, Vec<bind::Primitive>) {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine.set_optimization_level(OptimizationLevel::Simple);

    engine.set_max_operations(limits::OPERATIONS);
    engine.set_max_call_levels(limits::CALL_LEVELS);
    engine.set_max_expr_depths(limits::EXPR_DEPTH, limits::FN_EXPR_DEPTH);
    engine.set_max_string_size(limits::STRING_SIZE);
    engine.set_max_array_size(limits::ARRAY_SIZE);
    engine.set_max_map_size(limits::MAP_SIZE);
    engine.set_max_modules(limits::MODULES);
    engine.set_strict_variables(true);
    engine.disable_symbol("eval");

    engine.set_module_resolver(CatalogResolver {
        catalog: catalog.clone(),
        cache: RefCell::new(HashMap::new()),
        loading: RefCell::new(Vec::new()),
    });

    let json = options.json;
    engine.on_print(move |text| {
        // With --json, stdout carries only the JSON document.
        if json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    });
    engine.on_debug(|text, source, pos| {
        let at = match (source, pos.line()) {
            (Some(src), Some(line)) => format!("{src}:{line}: "),
            _ => String::new(),
        };
        eprintln!("debug: {at}{text}");
    });

    let budget = options.budget.clone();
    let interrupted = host.interrupted.clone();
    engine.on_progress(move |ops| {
        // Checking the clock every 1024 operations keeps the overhead negligible.
        if ops % 1024 != 0 {
            return None;
        }
        if interrupted.load(Ordering::SeqCst) {
            return Some(STOP_INTERRUPT.into());
        }
        if budget.started.get().elapsed() > budget.limit {
            return Some(STOP_TIMEOUT.into());
        }
        None
    });

    let primitives = bind::install(
        &mut engine,
        host,
        catalog,
        &Rc::new(options.args),
        options.json,
    );
    (engine, primitives)
}

/// Serves `import "name"` from the catalog only (user, site, bundled), with the same vetting and
/// API check as top-level scripts.
struct CatalogResolver {
    catalog: Rc<Catalog>,
    cache: RefCell<HashMap<String, Shared<Module>>>,
    /// Modules being evaluated right now, outermost first: an import of one of them is a cycle,
    /// which would otherwise recurse until the stack overflows.
    loading: RefCell<Vec<String>>,
}

impl ModuleResolver for CatalogResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let refuse = |message: String| -> Box<EvalAltResult> {
            // A runtime error, not ErrorModuleNotFound: the engine would replace the latter's
            // text with the bare module name and lose the reason.
            Box::new(EvalAltResult::ErrorRuntime(
                format!("import {path:?} refused: {message}").into(),
                pos,
            ))
        };
        validate_name(path).map_err(|e| refuse(e.to_string()))?;
        if !path.starts_with("lib/") {
            // A top-level script runs its whole flow when evaluated; only modules are importable.
            return Err(refuse(
                "only modules under lib/ can be imported, not top-level scripts".into(),
            ));
        }
        if let Some(module) = self.cache.borrow().get(path) {
            return Ok(module.clone());
        }
        let script = self
            .catalog
            .resolve(path)
            .map_err(|e| refuse(first_line(&e.to_string())))?;
        script
            .check_api()
            .map_err(|e| refuse(first_line(&e.to_string())))?;
        let mut ast = engine.compile(&script.text).map_err(|e| {
            Box::new(EvalAltResult::ErrorInModule(
                path.to_string(),
                Box::new(e.into()),
                pos,
            ))
        })?;
        ast.set_source(script.display_name());
        if self.loading.borrow().iter().any(|m| m == path) {
            let chain = self.loading.borrow().join(" -> ");
            return Err(refuse(format!("import cycle: {chain} -> {path}")));
        }
        self.loading.borrow_mut().push(path.to_string());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine);
        self.loading.borrow_mut().pop();
        let module =
            module.map_err(|e| Box::new(EvalAltResult::ErrorInModule(path.to_string(), e, pos)))?;
        let module: Shared<Module> = module.into();
        self.cache
            .borrow_mut()
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}
