//! The one engine factory. It starts from `Engine::new_raw()` plus the standard package, sets
//! every limit, disables `eval` and `curry`, installs a module resolver that serves only catalog
//! modules (no file-system resolution), stops runaway scripts on a wall-clock budget or Ctrl-C,
//! replaces the standard functions that would escape those limits ([`super::guard`]), and
//! registers the primitives. Every script and module text is compiled through [`compile`].
//! Optimization stays at `Simple`: `Full` would run registered functions at compile time,
//! outside the effect gate's view of the run.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use rhai::module_resolvers::ModuleResolver;
use rhai::packages::{Package, StandardPackage};
use rhai::{
    AST, Dynamic, Engine, EvalAltResult, FuncRegistration, Module, OptimizationLevel, ParseError,
    Position, Scope, Shared,
};

use super::catalog::{Catalog, validate_name};
use super::sandbox::{Budget, Limits, Stop, limits};
use super::{bind, guard};
use crate::host::Host;
use crate::term::quoted;

/// Keyword functions no script can use. `eval` would run text nobody vetted; `curry` appends to
/// a function pointer's hidden argument list, which no size limit counts (`f = f.curry(f)`
/// doubles the memory at every step).
pub const DISABLED: &[&str] = &["eval", "curry"];

/// What the factory needs besides the host.
pub struct EngineOptions {
    pub args: Vec<String>,
    pub json: bool,
    pub budget: Budget,
    /// [`Limits::default`] for every command.
    pub limits: Limits,
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

    let limits = options.limits;
    engine.set_max_operations(limits.operations);
    engine.set_max_call_levels(limits.call_levels);
    engine.set_max_expr_depths(limits.expr_depth, limits.fn_expr_depth);
    engine.set_max_string_size(limits.string_size);
    engine.set_max_array_size(limits.array_size);
    engine.set_max_map_size(limits.map_size);
    engine.set_max_modules(limits.modules);
    engine.set_max_functions(limits.functions);
    engine.set_strict_variables(true);
    for symbol in DISABLED {
        engine.disable_symbol(*symbol);
    }

    // `exit()` at the top level of a module only ends that module's evaluation, which Rhai
    // returns as a value; remembering it lets the resolver end the whole run instead.
    let exited: Rc<RefCell<Option<Dynamic>>> = Rc::new(RefCell::new(None));
    let seen = exited.clone();
    FuncRegistration::new("exit")
        .with_volatility(true)
        .register_into_engine(&mut engine, move || -> Result<(), Box<EvalAltResult>> {
            *seen.borrow_mut() = Some(Dynamic::UNIT);
            Err(Box::new(EvalAltResult::Exit(Dynamic::UNIT, Position::NONE)))
        });
    let seen = exited.clone();
    FuncRegistration::new("exit")
        .with_volatility(true)
        .register_into_engine(
            &mut engine,
            move |value: Dynamic| -> Result<(), Box<EvalAltResult>> {
                *seen.borrow_mut() = Some(value.clone());
                Err(Box::new(EvalAltResult::Exit(value, Position::NONE)))
            },
        );

    engine.set_module_resolver(CatalogResolver {
        catalog: catalog.clone(),
        cache: RefCell::new(HashMap::new()),
        loading: RefCell::new(Vec::new()),
        exited,
    });

    let json = options.json;
    engine.on_print(move |text| {
        // With --json, stdout carries only the JSON document.
        let text = crate::term::text(text);
        if json {
            crate::term::err(&text);
        } else {
            crate::term::out(&text);
        }
    });
    engine.on_debug(|text, source, pos| {
        let at = match (source, pos.line()) {
            (Some(src), Some(line)) => format!("{src}:{line}: "),
            _ => String::new(),
        };
        crate::term::err(&crate::term::text(&format!("debug: {at}{text}")));
    });

    // Native waits read the same clock [P71].
    host.script_clock
        .follow(options.budget.clock(), options.budget.limit());
    let stop = Stop::new(options.budget.clone(), host.interrupted.clone());
    let progress = stop.clone();
    engine.on_progress(move |ops| {
        // Reading the clock every 1024 operations keeps the overhead negligible; Ctrl-C and a
        // guard's stop are flags, checked at every operation.
        progress.reason(ops % 1024 == 0).map(Dynamic::from)
    });
    guard::register(&mut engine, &stop, limits.nesting);

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
    /// Set by `exit()`, wherever it is called.
    exited: Rc<RefCell<Option<Dynamic>>>,
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
                format!("import {} refused: {message}", quoted(path)).into(),
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
        let mut ast = match compile(engine, &Scope::new(), &script.text) {
            Ok(ast) => ast,
            Err(Refusal::Parse(e)) => {
                return Err(Box::new(EvalAltResult::ErrorInModule(
                    path.to_string(),
                    Box::new(e.into()),
                    pos,
                )));
            }
            Err(other) => return Err(refuse(format!("{}: {other}", script.display_name()))),
        };
        ast.set_source(script.display_name());
        if self.loading.borrow().iter().any(|m| m == path) {
            let chain = self.loading.borrow().join(" -> ");
            return Err(refuse(format!("import cycle: {chain} -> {path}")));
        }
        self.loading.borrow_mut().push(path.to_string());
        self.exited.borrow_mut().take();
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine);
        self.loading.borrow_mut().pop();
        if let Some(value) = self.exited.borrow().clone() {
            // Left set, so a module importing this one is ended the same way.
            return Err(Box::new(EvalAltResult::Exit(value, pos)));
        }
        let module =
            module.map_err(|e| Box::new(EvalAltResult::ErrorInModule(path.to_string(), e, pos)))?;
        let module: Shared<Module> = module.into();
        self.cache
            .borrow_mut()
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}

/// Why a script or module text was not compiled.
#[derive(Debug)]
pub enum Refusal {
    /// Larger than [`limits::SCRIPT_BYTES`]; the parser never saw it.
    TooLarge(usize),
    Parse(ParseError),
    /// A closure uses a variable of the code around it.
    Capture {
        name: String,
        pos: Position,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooLarge(bytes) => write!(
                f,
                "script is {bytes} bytes, over the sandbox limit of {} bytes (1 MiB)",
                limits::SCRIPT_BYTES
            ),
            Refusal::Parse(e) => write!(f, "{e}"),
            Refusal::Capture { name, .. } => write!(
                f,
                "closures cannot use variables of the code around them; this one uses `{name}`"
            ),
        }
    }
}

/// Compiles script or module text in the sandbox. Text over [`limits::SCRIPT_BYTES`] is refused
/// before parsing. Closures that capture variables are refused after: a captured variable is
/// shared, and a chain of closures each capturing the one before is invisible to the size
/// limits and is dropped by recursion, so a one-line loop could overflow the stack.
pub fn compile(engine: &Engine, scope: &Scope, text: &str) -> Result<AST, Refusal> {
    if text.len() > limits::SCRIPT_BYTES {
        return Err(Refusal::TooLarge(text.len()));
    }
    let ast = engine
        .compile_with_scope(scope, text)
        .map_err(Refusal::Parse)?;
    let mut capture = None;
    ast.walk(&mut |path: &[rhai::ASTNode]| {
        if let Some(rhai::ASTNode::Stmt(rhai::Stmt::Share(vars))) = path.last() {
            if let Some((var, _)) = vars.first() {
                capture = Some((var.name.to_string(), var.pos));
                return false;
            }
        }
        true
    });
    match capture {
        Some((name, pos)) => Err(Refusal::Capture { name, pos }),
        None => Ok(ast),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}
