//! Registration of the primitives as Rhai modules (`containers::`, `units::`, ...), one file per
//! host family. A registration carries everything scripts and operators learn about a primitive
//! (signature, read-only or mutating, one-line doc, an example that works in a dry run), so
//! `cai scripts api`, REPL completion and the tests all read the registrations themselves; there
//! is no second table to drift. Bindings convert between Rhai values and typed Rust values and
//! call [`crate::host`]; they hold no policy.
//!
//! The registration verb says what a primitive is: [`Registrar::reads`] (only reads the machine or
//! this run's facts), [`Registrar::run_state`] (changes only this run's own state: its lock, its
//! output, the operator's answers) and [`Registrar::gated`] (changes the machine). A gated
//! primitive's function returns the [`Effect`] it would have, and the registrar passes it through
//! the effect gate, so "mutating" means "gated" by construction. Every function takes the host
//! and the script's values and returns `Result<T: Serialize, E>`; the registrar converts the
//! value and turns the error into a script error at the call. The signature string is checked
//! against the function's parameter types when it is registered.

mod artifacts;
mod containers;
mod dockerd;
mod lima;
mod log;
mod packages;
mod platform;
mod prompt;
mod release;
mod report;
pub mod run;
mod ssh;
mod sysbox;
mod units;
mod update;
mod volumes;

use std::any::TypeId;
use std::collections::BTreeMap;
use std::rc::Rc;

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Map, Module,
    NativeCallContext, Variant,
};
use serde::Serialize;

use super::catalog::Catalog;
use crate::effects::{Action, Approval, FailedMembers};
use crate::host::Host;
use crate::host::wait::{Cut, Limits};

/// One primitive as `cai scripts api` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Primitive {
    pub module: String,
    pub name: String,
    pub signature: &'static str,
    /// The other signatures of the same primitive (an optional argument left out).
    pub overloads: Vec<&'static str>,
    /// Registered with [`Registrar::gated`]: every call passes the effect gate.
    pub mutating: bool,
    pub doc: &'static str,
    /// The fields of the map it returns (of each map, for an array of maps); empty when it
    /// returns no map.
    pub fields: Vec<FieldDoc>,
    /// A value it returns, as a Rhai literal; empty when it returns no map.
    pub returns_example: &'static str,
    /// A call that works in a dry run; the test suite runs every one of them.
    #[serde(skip)]
    pub example: &'static str,
}

/// One field of a returned map, as `cai scripts api --json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDoc {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub doc: &'static str,
}

impl Primitive {
    pub fn path(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }

    /// The primitive as `cai scripts api` prints it: kind, signature and doc on one line, then
    /// its other signatures, the fields of the map it returns and an example of that map.
    pub fn describe(&self) -> String {
        let kind = if self.mutating {
            "mutating"
        } else {
            "read-only"
        };
        let mut out = format!("{kind:<9} {:<62} {}", self.signature, self.doc);
        let indent = " ".repeat(10);
        for overload in &self.overloads {
            out.push_str(&format!("\n{indent}{overload}"));
        }
        if !self.fields.is_empty() {
            let each = if return_type(self.signature).starts_with("array") {
                "each map has"
            } else {
                "the map has"
            };
            out.push_str(&format!("\n{indent}{each}:"));
            let name_width = self.fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
            let type_width = self.fields.iter().map(|f| f.ty.len()).max().unwrap_or(0);
            for f in &self.fields {
                out.push_str(&format!(
                    "\n{indent}  {:<name_width$}  {:<type_width$}  {}",
                    f.name, f.ty, f.doc
                ));
            }
            out.push_str(&format!("\n{indent}e.g. {}", self.returns_example));
        }
        out
    }
}

/// What a registration says about its primitive besides the function itself.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    /// `module::name(arg: type, ...) -> type`; module and name are read from it, and the argument
    /// types are checked against the function's.
    pub signature: &'static str,
    /// One line, no trailing period: what it does and what it returns.
    pub doc: &'static str,
    /// A call that works in a dry run on an empty host.
    pub example: &'static str,
}

/// One field of a map a primitive returns: name, Rhai type (`string`, `int`, `bool`, `array`,
/// `map`, `string or ()`, ...), meaning.
pub type Field = (&'static str, &'static str, &'static str);

/// What a primitive that returns a map (or an array of maps) says about it: every field, and a
/// value it returns as a Rhai literal whose keys are exactly the fields.
#[derive(Debug, Clone, Copy)]
pub struct Returns {
    pub fields: &'static [Field],
    pub example: &'static str,
}

/// A registration's documentation: the [`Doc`], and for a primitive that returns a map, what is
/// in it. A primitive whose signature returns `map` (or `array of map`) without
/// [`Doc::returns`] is refused, so the reference cannot leave a map undocumented.
#[derive(Debug, Clone, Copy)]
pub struct Documented {
    doc: Doc,
    returns: Option<Returns>,
}

impl Doc {
    /// The fields of the map this primitive returns (of each element, for `array of map`) and
    /// an example of the value.
    pub const fn returns(self, fields: &'static [Field], example: &'static str) -> Documented {
        Documented {
            doc: self,
            returns: Some(Returns { fields, example }),
        }
    }
}

impl From<Doc> for Documented {
    fn from(doc: Doc) -> Self {
        Documented { doc, returns: None }
    }
}

/// A registration that cannot be listed truthfully.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistrationError {
    #[error("primitive {signature:?}: the signature must start with module::name(")]
    Signature { signature: String },
    #[error(
        "primitive {signature:?}: the signature's arguments ({declared}) are not the function's ({actual})"
    )]
    Arguments {
        signature: String,
        declared: String,
        actual: String,
    },
    #[error("primitive {path}: {problem}")]
    Doc { path: String, problem: &'static str },
    #[error("primitive {path} is registered twice; use an overload for a second signature")]
    Duplicate { path: String },
    #[error("overload of {path} has no documented registration")]
    Orphan { path: String },
    #[error("overload of {path} is registered as another kind than its documented registration")]
    OverloadKind { path: String },
}

/// The documentation of every primitive, and the Rhai module of each family.
pub type Registered = (Vec<Primitive>, BTreeMap<String, Module>);

/// What a primitive does, as its registration verb says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reads,
    RunState,
    Gated,
}

/// Why a primitive failed, as the script sees it: a message at the call, or a wait cut short by
/// Ctrl-C or the script's budget, which ends the script like the operation callback does [P71].
/// Any displayable error converts into one, so a primitive's function uses `?` freely.
#[derive(Debug)]
pub enum Failure {
    Message(String),
    Cut(Cut),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Message(e.to_string())
    }
}

impl From<Cut> for Failure {
    fn from(cut: Cut) -> Self {
        Failure::Cut(cut)
    }
}

impl Failure {
    fn at(self, ctx: &NativeCallContext) -> Box<EvalAltResult> {
        match self {
            Failure::Message(message) => fail_at(ctx, message),
            Failure::Cut(cut) => cut_short(ctx, cut),
        }
    }
}

/// What a primitive's function returns: a value for the script, or why it failed.
pub type Answer<T> = Result<T, Failure>;

type Predict<T> = Box<dyn FnOnce() -> T>;
type Perform<T> = Box<dyn FnOnce(&Host, Approval) -> Result<T, String>>;

/// What a gated primitive would change: one action for the effect gate, or nothing to change.
pub enum Effect<T> {
    /// Nothing to change (a unit already current, a volume the core leaves alone): the value is
    /// the answer in every mode, and nothing is planned or journalled.
    Unchanged(T),
    /// One action: recorded in the plan with `predict`'s value in a dry run; journalled and
    /// performed otherwise.
    Act {
        action: Action,
        predict: Predict<T>,
        perform: Perform<T>,
        /// A wait that ends when the script's budget does: a failure after it was cut short is
        /// the cut, not the action's error.
        limits: Option<Limits>,
    },
}

impl<T> Effect<T> {
    /// One action, its prediction for a dry run, and how to perform it with the gate's approval.
    pub fn act<E: std::fmt::Display>(
        action: Action,
        predict: impl FnOnce() -> T + 'static,
        perform: impl FnOnce(&Host, Approval) -> Result<T, E> + 'static,
    ) -> Self {
        Effect::Act {
            action,
            predict: Box::new(predict),
            perform: Box::new(move |host, ok| perform(host, ok).map_err(|e| e.to_string())),
            limits: None,
        }
    }

    /// A failure of the action after `limits` ran out is the cut that caused it.
    #[must_use]
    pub fn cut_by(mut self, new: Limits) -> Self {
        if let Effect::Act { limits, .. } = &mut self {
            *limits = Some(new);
        }
        self
    }
}

/// A primitive's Rust function: `Fn(&Host, A, B, ...) -> R`, where each argument is a Rhai value
/// type (`&str`, `i64`, `bool`, `Array`, `Map`, `Dynamic`). Implemented for up to four arguments.
pub trait Native<Args, R>: 'static {
    /// The argument types, for the signature check.
    fn param_types() -> Vec<TypeId>;
    /// Sets the function into `module`, each call answered by `answer`.
    fn set(
        self,
        host: Rc<Host>,
        answer: fn(&NativeCallContext, &Host, R) -> Res<Dynamic>,
        registration: FuncRegistration,
        module: &mut Module,
    );
}

macro_rules! native {
    ($($arg:ident),*) => {
        impl<Func, R: 'static, $($arg: Variant + Clone),*> Native<($($arg,)*), R> for Func
        where
            Func: Fn(&Host, $($arg),*) -> R + 'static,
        {
            fn param_types() -> Vec<TypeId> {
                vec![$(TypeId::of::<$arg>()),*]
            }

            #[allow(non_snake_case)]
            fn set(
                self,
                host: Rc<Host>,
                answer: fn(&NativeCallContext, &Host, R) -> Res<Dynamic>,
                registration: FuncRegistration,
                module: &mut Module,
            ) {
                registration.set_into_module(
                    module,
                    move |ctx: NativeCallContext, $($arg: $arg),*| -> Res<Dynamic> {
                        answer(&ctx, &host, self(&host, $($arg),*))
                    },
                );
            }
        }
    };
}

native!();
native!(A);
native!(A, B);
native!(A, B, C);
native!(A, B, C, D);

/// A read or run-state primitive's value, converted for the script.
fn answer<T: Serialize + 'static, E: Into<Failure>>(
    ctx: &NativeCallContext,
    _: &Host,
    result: Result<T, E>,
) -> Res<Dynamic> {
    to_script(result.map_err(|e| e.into().at(ctx))?)
}

/// A value for the script: a `Dynamic` as it is (it may hold a custom type such as an
/// [`Outcome`](crate::script::Outcome), which has no serde form), anything else through serde.
fn to_script<T: Serialize + 'static>(value: T) -> Res<Dynamic> {
    let value: Box<dyn std::any::Any> = Box::new(value);
    match value.downcast::<Dynamic>() {
        Ok(dynamic) => Ok(*dynamic),
        Err(other) => match other.downcast::<T>() {
            Ok(value) => to_dynamic(&*value),
            // Invariant: the box holds a T, and a T that is not a Dynamic stays one.
            Err(_) => unreachable!("a boxed value keeps its type"),
        },
    }
}

/// A gated primitive's effect, passed through the gate; the script gets the result (the
/// prediction in a dry run), and a failure points at the call.
fn answer_gated<T: Serialize + FailedMembers + 'static, E: Into<Failure>>(
    ctx: &NativeCallContext,
    host: &Host,
    result: Result<Effect<T>, E>,
) -> Res<Dynamic> {
    match result.map_err(|e| e.into().at(ctx))? {
        Effect::Unchanged(value) => to_dynamic(&value),
        Effect::Act {
            action,
            predict,
            perform,
            limits,
        } => {
            let value = host
                .gate
                .apply(action, predict, |ok| perform(host, ok))
                .map_err(|e| match limits.map(|l| l.check()) {
                    Some(Err(cut)) => cut_short(ctx, cut),
                    _ => fail_at(ctx, e),
                })?;
            to_dynamic(&value)
        }
    }
}

/// Collects functions per module together with their documentation.
pub struct Registrar {
    host: Rc<Host>,
    modules: BTreeMap<String, Module>,
    primitives: Vec<(Primitive, Kind)>,
    errors: Vec<RegistrationError>,
}

impl Registrar {
    /// A registrar whose primitives act on `host`.
    pub fn new(host: &Rc<Host>) -> Self {
        Self {
            host: host.clone(),
            modules: BTreeMap::new(),
            primitives: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Registers a primitive that only reads the machine or this run's facts.
    pub fn reads<Args, T, E, F>(&mut self, doc: impl Into<Documented>, func: F)
    where
        F: Native<Args, Result<T, E>>,
        T: Serialize + 'static,
        E: Into<Failure> + 'static,
    {
        self.register(doc.into(), Kind::Reads, func, answer::<T, E>);
    }

    /// Registers a primitive that changes only this run's own state (the update lock it holds,
    /// its output, the operator's answers), never what a dry run plans.
    pub fn run_state<Args, T, E, F>(&mut self, doc: impl Into<Documented>, func: F)
    where
        F: Native<Args, Result<T, E>>,
        T: Serialize + 'static,
        E: Into<Failure> + 'static,
    {
        self.register(doc.into(), Kind::RunState, func, answer::<T, E>);
    }

    /// Registers a primitive that changes the machine: its function returns the [`Effect`] it
    /// would have, and every call passes it through the effect gate.
    pub fn gated<Args, T, E, F>(&mut self, doc: impl Into<Documented>, func: F)
    where
        F: Native<Args, Result<Effect<T>, E>>,
        T: Serialize + FailedMembers + 'static,
        E: Into<Failure> + 'static,
    {
        self.register(doc.into(), Kind::Gated, func, answer_gated::<T, E>);
    }

    /// A second signature of a read or run-state primitive already registered (an optional
    /// argument left out); it shares the documented registration's doc and kind.
    pub fn overload<Args, T, E, F>(&mut self, signature: &'static str, func: F)
    where
        F: Native<Args, Result<T, E>>,
        T: Serialize + 'static,
        E: Into<Failure> + 'static,
    {
        self.add_overload(signature, false, func, answer::<T, E>);
    }

    /// A second signature of a gated primitive already registered.
    pub fn overload_gated<Args, T, E, F>(&mut self, signature: &'static str, func: F)
    where
        F: Native<Args, Result<Effect<T>, E>>,
        T: Serialize + FailedMembers + 'static,
        E: Into<Failure> + 'static,
    {
        self.add_overload(signature, true, func, answer_gated::<T, E>);
    }

    fn add_overload<Args, R, F: Native<Args, R>>(
        &mut self,
        signature: &'static str,
        gated: bool,
        func: F,
        answer: fn(&NativeCallContext, &Host, R) -> Res<Dynamic>,
    ) {
        let Some((module, name)) = self.checked_signature::<Args, R, F>(signature) else {
            return;
        };
        let path = format!("{module}::{name}");
        let Some((primitive, kind)) = self.primitives.iter_mut().find(|(p, _)| p.path() == path)
        else {
            self.errors.push(RegistrationError::Orphan { path });
            return;
        };
        if (*kind == Kind::Gated) != gated {
            self.errors.push(RegistrationError::OverloadKind { path });
            return;
        }
        if returns_map(signature) != returns_map(primitive.signature) {
            self.errors.push(RegistrationError::Doc {
                path,
                problem: "an overload must return what its documented registration returns",
            });
            return;
        }
        primitive.overloads.push(signature);
        self.set(&module, &name, func, answer);
    }

    fn register<Args, R, F: Native<Args, R>>(
        &mut self,
        Documented { doc, returns }: Documented,
        kind: Kind,
        func: F,
        answer: fn(&NativeCallContext, &Host, R) -> Res<Dynamic>,
    ) {
        let Some((module, name)) = self.checked_signature::<Args, R, F>(doc.signature) else {
            return;
        };
        let path = format!("{module}::{name}");
        if let Some(problem) = doc_problem(&doc).or_else(|| returns_problem(&doc, returns)) {
            self.errors.push(RegistrationError::Doc { path, problem });
            return;
        }
        if self.primitives.iter().any(|(p, _)| p.path() == path) {
            self.errors.push(RegistrationError::Duplicate { path });
            return;
        }
        self.set(&module, &name, func, answer);
        self.primitives.push((
            Primitive {
                module,
                name,
                signature: doc.signature,
                overloads: Vec::new(),
                mutating: kind == Kind::Gated,
                doc: doc.doc,
                fields: returns
                    .map(|r| {
                        r.fields
                            .iter()
                            .map(|&(name, ty, doc)| FieldDoc { name, ty, doc })
                            .collect()
                    })
                    .unwrap_or_default(),
                returns_example: returns.map_or("", |r| r.example),
                example: doc.example,
            },
            kind,
        ));
    }

    /// Module and name of a signature whose arguments are the function's, or `None` with the
    /// error recorded.
    fn checked_signature<Args, R, F: Native<Args, R>>(
        &mut self,
        signature: &'static str,
    ) -> Option<(String, String)> {
        let Some((module, name)) = split_signature(signature) else {
            self.errors.push(RegistrationError::Signature {
                signature: signature.to_string(),
            });
            return None;
        };
        let declared = declared_arguments(signature);
        let actual: Vec<&str> = F::param_types().into_iter().map(rhai_type).collect();
        let fits = declared.len() == actual.len()
            && declared
                .iter()
                .zip(&actual)
                .all(|(d, a)| *a == "any" || d == a);
        if !fits {
            self.errors.push(RegistrationError::Arguments {
                signature: signature.to_string(),
                declared: declared.join(", "),
                actual: actual.join(", "),
            });
            return None;
        }
        Some((module, name))
    }

    fn set<Args, R, F: Native<Args, R>>(
        &mut self,
        module: &str,
        name: &str,
        func: F,
        answer: fn(&NativeCallContext, &Host, R) -> Res<Dynamic>,
    ) {
        // Volatile: a primitive's answer depends on the machine, so the optimizer must never
        // evaluate it at compile time.
        let registration = FuncRegistration::new(name.to_string())
            .in_internal_namespace()
            .with_volatility(true);
        let module = self.modules.entry(module.to_string()).or_default();
        func.set(self.host.clone(), answer, registration, module);
    }

    /// The documented primitives, or every registration that could not be documented.
    pub fn finish(self) -> Result<Registered, Vec<RegistrationError>> {
        if self.errors.is_empty() {
            let primitives = self.primitives.into_iter().map(|(p, _)| p).collect();
            Ok((primitives, self.modules))
        } else {
            Err(self.errors)
        }
    }
}

/// The Rhai type name of an argument type, as signatures spell it; "any" for a `Dynamic`, which
/// takes every declared type (`map or ()`, say).
fn rhai_type(id: TypeId) -> &'static str {
    if id == TypeId::of::<&str>()
        || id == TypeId::of::<ImmutableString>()
        || id == TypeId::of::<String>()
    {
        "string"
    } else if id == TypeId::of::<i64>() {
        "int"
    } else if id == TypeId::of::<bool>() {
        "bool"
    } else if id == TypeId::of::<f64>() {
        "float"
    } else if id == TypeId::of::<Array>() {
        "array"
    } else if id == TypeId::of::<Map>() {
        "map"
    } else if id == TypeId::of::<Dynamic>() {
        "any"
    } else {
        "an unlisted type"
    }
}

/// The types of a signature's arguments: `a: string, b: map or ()` is `["string", "map or ()"]`.
fn declared_arguments(signature: &str) -> Vec<String> {
    let after = signature.split_once('(').map_or("", |(_, rest)| rest);
    // `()` inside a type (`map or ()`) is part of it, not the end of the list.
    let mut depth = 0_usize;
    let end = after
        .char_indices()
        .find(|&(_, c)| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' if depth == 0 => true,
            ')' => {
                depth -= 1;
                false
            }
            _ => false,
        })
        .map_or(after.len(), |(i, _)| i);
    let inner = after[..end].trim();
    if inner.is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|arg| {
            arg.split_once(':')
                .map_or(arg, |(_, ty)| ty)
                .trim()
                .to_string()
        })
        .collect()
}

/// `module::name(` at the start of a signature.
fn split_signature(signature: &str) -> Option<(String, String)> {
    let (path, _) = signature.split_once('(')?;
    let (module, name) = path.split_once("::")?;
    let ident = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    (ident(module) && ident(name)).then(|| (module.to_string(), name.to_string()))
}

fn doc_problem(doc: &Doc) -> Option<&'static str> {
    let text = doc.doc.trim();
    if text.is_empty() {
        Some("has no doc; every primitive needs a one-line doc")
    } else if text.contains('\n') {
        Some("its doc must be one line")
    } else if text.ends_with('.') {
        Some("its doc must not end with a period")
    } else if doc.example.trim().is_empty() {
        Some("has no example that runs in a dry run")
    } else {
        None
    }
}

/// The return type of a signature (after `->`), "" when it returns nothing.
fn return_type(signature: &str) -> &str {
    signature.rsplit_once("->").map_or("", |(_, ty)| ty.trim())
}

/// Whether a signature returns a map or an array of maps (`map`, `map or ()`, `array of map`).
fn returns_map(signature: &str) -> bool {
    return_type(signature)
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| word == "map")
}

/// A primitive that returns a map must say what is in it, and only such a primitive does.
fn returns_problem(doc: &Doc, returns: Option<Returns>) -> Option<&'static str> {
    match returns {
        None if returns_map(doc.signature) => Some(
            "returns a map but documents no fields; add .returns(&[(name, type, meaning), ...], example)",
        ),
        Some(_) if !returns_map(doc.signature) => {
            Some("documents fields but its signature returns no map")
        }
        Some(r) if r.fields.is_empty() || r.example.trim().is_empty() => {
            Some("documents a returned map without fields or an example value")
        }
        Some(r)
            if r.fields
                .iter()
                .any(|(n, t, d)| n.is_empty() || t.is_empty() || d.is_empty()) =>
        {
            Some("every returned field needs a name, a type and a meaning")
        }
        _ => None,
    }
}

/// Registers every primitive family; the documentation of each comes back with the modules.
/// The catalog serves the unit templates `units::` renders.
fn register_families(
    host: &Rc<Host>,
    catalog: &Rc<Catalog>,
    args: &Rc<Vec<String>>,
    json: bool,
) -> Registrar {
    let mut reg = Registrar::new(host);
    run::register(&mut reg, args, json);
    platform::register(&mut reg);
    lima::register(&mut reg);
    report::register(&mut reg, json);
    prompt::register(&mut reg);
    log::register(&mut reg);
    containers::register(&mut reg);
    sysbox::register(&mut reg);
    release::register(&mut reg);
    units::register(&mut reg, catalog);
    packages::register(&mut reg);
    artifacts::register(&mut reg);
    dockerd::register(&mut reg);
    update::register(&mut reg);
    ssh::register(&mut reg);
    volumes::register(&mut reg);
    reg
}

/// Every primitive's signatures (the documented one, then its overloads) by path, for the
/// message of a call that matches none of them. The registrations are fixed at build time, so
/// the first [`install`] fills it for the whole process.
static SIGNATURES: std::sync::OnceLock<BTreeMap<String, Vec<&'static str>>> =
    std::sync::OnceLock::new();

/// Every primitive's signatures by path, once an engine was built.
pub fn signatures() -> Option<&'static BTreeMap<String, Vec<&'static str>>> {
    SIGNATURES.get()
}

/// Installs every primitive on `engine` and returns their documentation.
pub fn install(
    engine: &mut Engine,
    host: &Rc<Host>,
    catalog: &Rc<Catalog>,
    args: &Rc<Vec<String>>,
    json: bool,
) -> Vec<Primitive> {
    // Invariant: the registrations are fixed at build time and a unit test finishes them, so an
    // error here is a programming mistake caught by `cargo test`, never an operator's problem.
    let (primitives, modules) = register_families(host, catalog, args, json)
        .finish()
        .unwrap_or_else(|errors| panic!("undocumented primitives: {errors:?}"));
    for (name, module) in modules {
        engine.register_static_module(name, module.into());
    }
    SIGNATURES.get_or_init(|| {
        primitives
            .iter()
            .map(|p| {
                let all = std::iter::once(p.signature)
                    .chain(p.overloads.iter().copied())
                    .collect();
                (p.path(), all)
            })
            .collect()
    });
    primitives
}

/// The documentation of every primitive, as `cai scripts api` prints it.
pub fn primitives(host: &Rc<Host>, catalog: &Rc<Catalog>) -> Vec<Primitive> {
    match register_families(host, catalog, &Rc::new(Vec::new()), false).finish() {
        Ok((primitives, _)) => primitives,
        Err(errors) => panic!("undocumented primitives: {errors:?}"),
    }
}

pub(crate) type Res<T> = Result<T, Box<EvalAltResult>>;

/// Turns any displayable error into a script runtime error at the primitive's call site (the
/// engine does not fill in positions for namespaced native calls on its own).
pub(crate) fn fail_at(ctx: &NativeCallContext, e: impl std::fmt::Display) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        e.to_string().into(),
        ctx.call_position(),
    ))
}

/// The error that ends the script when a native wait was cut short, the same one the operation
/// callback raises for Ctrl-C and the wall-clock budget [P71].
pub(crate) fn cut_short(ctx: &NativeCallContext, cut: Cut) -> Box<EvalAltResult> {
    let token = match cut {
        Cut::Budget => crate::script::sandbox::STOP_TIMEOUT,
        Cut::Interrupted => crate::script::sandbox::STOP_INTERRUPT,
    };
    crate::script::sandbox::Stop::error(token, ctx.call_position())
}

pub(crate) fn to_dynamic<T: serde::Serialize>(value: &T) -> Res<Dynamic> {
    rhai::serde::to_dynamic(value)
}

/// Reads an array of strings, naming the primitive when an element is not a string.
pub(crate) fn strings(what: &str, array: rhai::Array) -> Result<Vec<String>, String> {
    array
        .into_iter()
        .map(|v| {
            let type_name = v.type_name();
            v.into_string()
                .map_err(|_| format!("{what}: expected an array of strings, found {type_name}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: Doc = Doc {
        signature: "demo::ping() -> bool",
        doc: "answers true",
        example: "demo::ping()",
    };

    fn registrar() -> (tempfile::TempDir, Registrar) {
        let root = tempfile::tempdir().unwrap();
        let host = crate::script::tests::dry_run_host(root.path().to_path_buf());
        let reg = Registrar::new(&host);
        (root, reg)
    }

    fn ping(_: &Host) -> Result<bool, String> {
        Ok(true)
    }

    #[test]
    fn a_primitive_without_a_doc_is_refused() {
        let (_root, mut reg) = registrar();
        reg.reads(GOOD, ping);
        reg.reads(
            Doc {
                signature: "demo::silent() -> bool",
                doc: "",
                example: "demo::silent()",
            },
            ping,
        );
        let errors = reg
            .finish()
            .expect_err("an undocumented primitive must fail");
        assert_eq!(
            errors,
            vec![RegistrationError::Doc {
                path: "demo::silent".into(),
                problem: "has no doc; every primitive needs a one-line doc",
            }]
        );
    }

    #[test]
    fn registrations_are_checked() {
        let cases: [(Doc, &str); 4] = [
            (
                Doc {
                    signature: "ping() -> bool",
                    ..GOOD
                },
                "must start with module::name(",
            ),
            (
                Doc {
                    doc: "two\nlines",
                    ..GOOD
                },
                "one line",
            ),
            (
                Doc {
                    doc: "ends with a period.",
                    ..GOOD
                },
                "period",
            ),
            (
                Doc {
                    example: "",
                    ..GOOD
                },
                "no example",
            ),
        ];
        for (doc, want) in cases {
            let (_root, mut reg) = registrar();
            reg.reads(doc, ping);
            let errors = reg.finish().expect_err("must fail");
            assert!(errors[0].to_string().contains(want), "{errors:?}");
        }
        let (_root, mut reg) = registrar();
        reg.reads(GOOD, ping);
        reg.reads(GOOD, ping);
        reg.overload("demo::other(x: int) -> bool", |_: &Host, _: i64| {
            Ok::<_, String>(true)
        });
        let errors = reg.finish().expect_err("must fail");
        assert!(matches!(errors[0], RegistrationError::Duplicate { .. }));
        assert!(matches!(errors[1], RegistrationError::Orphan { .. }));
        let (_root, mut reg) = registrar();
        reg.reads(GOOD, ping);
        reg.overload("demo::ping(x: int) -> bool", |_: &Host, _: i64| {
            Ok::<_, String>(true)
        });
        let (primitives, modules) = reg.finish().expect("valid");
        assert_eq!(primitives.len(), 1);
        assert_eq!(primitives[0].path(), "demo::ping");
        assert!(modules.contains_key("demo"));
    }

    #[test]
    fn a_signature_that_is_not_the_functions_is_refused() {
        let good = |signature| Doc { signature, ..GOOD };
        let (_root, mut reg) = registrar();
        // Fits: types in order, `any` for a Dynamic, `()` inside a type and in the return type.
        reg.reads(
            good("demo::a(name: string, n: int, on: bool, xs: array, m: map) -> string or ()"),
            |_: &Host, _: &str, _: i64, _: bool, _: Array| Ok::<_, String>(()),
        );
        reg.reads(
            good("demo::b(installed: map or (), target: string) -> string or ()"),
            |_: &Host, _: Dynamic, _: &str| Ok::<_, String>(()),
        );
        let errors = reg.finish().expect_err("five declared, four taken");
        assert_eq!(
            errors,
            vec![RegistrationError::Arguments {
                signature:
                    "demo::a(name: string, n: int, on: bool, xs: array, m: map) -> string or ()"
                        .into(),
                declared: "string, int, bool, array, map".into(),
                actual: "string, int, bool, array".into(),
            }]
        );
        let (_root, mut reg) = registrar();
        reg.reads(good("demo::a(name: string) -> bool"), |_: &Host, _: i64| {
            Ok::<_, String>(true)
        });
        reg.reads(good("demo::b() -> bool"), |_: &Host, _: bool| {
            Ok::<_, String>(true)
        });
        reg.reads(
            good("demo::c(x: int, y: string)"),
            |_: &Host, _: &str, _: i64| Ok::<_, String>(()),
        );
        reg.reads(GOOD, ping);
        reg.overload("demo::ping(x: map) -> bool", |_: &Host, _: Array| {
            Ok::<_, String>(true)
        });
        let errors = reg.finish().expect_err("every mismatch is refused");
        let refused: Vec<&str> = errors
            .iter()
            .map(|e| match e {
                RegistrationError::Arguments { signature, .. } => signature.as_str(),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(
            refused,
            [
                "demo::a(name: string) -> bool",
                "demo::b() -> bool",
                "demo::c(x: int, y: string)",
                "demo::ping(x: map) -> bool",
            ]
        );
    }

    #[test]
    fn an_overload_keeps_the_kind_of_its_primitive() {
        let (_root, mut reg) = registrar();
        reg.reads(GOOD, ping);
        reg.overload_gated("demo::ping(x: int) -> bool", |_: &Host, _: i64| {
            let action = Action::new("demo.ping", "x", serde_json::json!({}));
            Ok::<_, String>(Effect::act(action, || true, |_, _| Ok::<_, String>(true)))
        });
        let errors = reg.finish().expect_err("a gated overload of a read");
        assert!(matches!(errors[0], RegistrationError::OverloadKind { .. }));
    }

    #[test]
    fn a_returned_map_must_be_documented() {
        let (_root, mut reg) = registrar();
        let map = |_: &Host| Ok::<_, String>(std::collections::BTreeMap::<String, i64>::new());
        reg.reads(
            Doc {
                signature: "demo::m() -> map",
                ..GOOD
            },
            map,
        );
        reg.reads(
            Doc {
                signature: "demo::l() -> array of map or ()",
                ..GOOD
            },
            map,
        );
        reg.reads(GOOD.returns(&[("a", "int", "a number")], "#{a: 1}"), ping);
        reg.reads(
            Doc {
                signature: "demo::e() -> map",
                ..GOOD
            }
            .returns(&[], "#{}"),
            map,
        );
        let errors = reg.finish().expect_err("every case is refused");
        let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("demo::m: returns a map but documents no fields"));
        assert!(problems[1].contains("demo::l: returns a map but documents no fields"));
        assert!(
            problems[2].contains("demo::ping: documents fields but its signature returns no map")
        );
        assert!(problems[3].contains("demo::e: documents a returned map without fields"));

        let (_root, mut reg) = registrar();
        let doc = Doc {
            signature: "demo::m(x: int) -> map",
            ..GOOD
        };
        reg.reads(
            doc.returns(&[("a", "int", "a number")], "#{a: 1}"),
            |_: &Host, _: i64| Ok::<_, String>(std::collections::BTreeMap::<String, i64>::new()),
        );
        reg.overload("demo::m() -> map", map);
        reg.overload("demo::m(x: bool) -> int", |_: &Host, _: bool| {
            Ok::<_, String>(1)
        });
        let errors = reg
            .finish()
            .expect_err("an overload returns what its primitive does");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let (_root, mut reg) = registrar();
        reg.reads(
            doc.returns(&[("a", "int", "a number")], "#{a: 1}"),
            |_: &Host, _: i64| Ok::<_, String>(std::collections::BTreeMap::<String, i64>::new()),
        );
        reg.overload("demo::m() -> map", map);
        let (primitives, _) = reg.finish().unwrap();
        assert_eq!(primitives[0].overloads, ["demo::m() -> map"]);
        assert_eq!(
            primitives[0].fields,
            [FieldDoc {
                name: "a",
                ty: "int",
                doc: "a number"
            }]
        );
    }

    /// Whether a value is of a documented type (`string`, `int`, `map or ()`, ...).
    fn of_type(value: &Dynamic, ty: &str) -> bool {
        ty.split(" or ").any(|t| match t.trim() {
            "()" => value.is_unit(),
            "string" => value.is_string(),
            "int" => value.is_int(),
            "bool" => value.is_bool(),
            "map" => value.is_map(),
            "array" => value.is_array(),
            other => panic!("undocumented type {other:?}"),
        })
    }

    /// Every documented example of a returned value is a map (an array of maps) whose keys are
    /// exactly the documented fields, each of its documented type; and every primitive whose
    /// signature returns a map has fields and such an example.
    #[test]
    fn every_returned_map_is_documented_with_a_matching_example() {
        let root = tempfile::tempdir().unwrap();
        let host = crate::script::tests::dry_run_host(root.path().to_path_buf());
        let catalog = Rc::new(Catalog::new(
            host.root().clone(),
            None,
            crate::host::trust::Trust::new(None),
        ));
        let engine = Engine::new();
        let mut documented = 0;
        for p in primitives(&host, &catalog) {
            assert_eq!(
                returns_map(p.signature),
                !p.fields.is_empty(),
                "{}",
                p.path()
            );
            if p.fields.is_empty() {
                continue;
            }
            documented += 1;
            let value: Dynamic = engine
                .eval(p.returns_example)
                .unwrap_or_else(|e| panic!("{}: example does not parse: {e}", p.path()));
            let map = value
                .try_cast::<Map>()
                .unwrap_or_else(|| panic!("{}: the example is not a map", p.path()));
            let keys: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
            let mut fields: Vec<&str> = p.fields.iter().map(|f| f.name).collect();
            fields.sort_unstable();
            assert_eq!(
                keys,
                fields,
                "{}: example keys are not the fields",
                p.path()
            );
            for f in &p.fields {
                assert!(
                    of_type(&map[f.name], f.ty),
                    "{}: example's {} is not a {}",
                    p.path(),
                    f.name,
                    f.ty
                );
            }
        }
        assert!(documented >= 20, "only {documented} maps documented");
    }

    /// "Mutating" means "gated" by construction: a gated primitive's call plans one action in a
    /// dry run (even one registered here, outside every family), and a read plans none.
    #[test]
    fn a_gated_primitive_passes_the_gate() {
        let root = tempfile::tempdir().unwrap();
        let host = crate::script::tests::dry_run_host(root.path().to_path_buf());
        let mut reg = Registrar::new(&host);
        reg.gated(
            Doc {
                signature: "demo::touch(name: string) -> bool",
                doc: "pretends to touch NAME",
                example: "demo::touch(\"x\")",
            },
            |_: &Host, name: &str| {
                let action = Action::new("demo.touch", name, serde_json::json!({}));
                Ok::<_, String>(Effect::act(
                    action,
                    || false,
                    |_, _| -> Result<bool, String> { panic!("a dry run never performs") },
                ))
            },
        );
        reg.reads(GOOD, ping);
        let (primitives, modules) = reg.finish().unwrap();
        assert!(primitives[0].mutating && !primitives[1].mutating);
        let mut engine = rhai::Engine::new_raw();
        for (name, module) in modules {
            engine.register_static_module(name, module.into());
        }
        let touched: bool = engine.eval("demo::touch(\"x\")").unwrap();
        assert!(!touched, "the prediction is the answer in a dry run");
        assert!(engine.eval::<bool>("demo::ping()").unwrap());
        let plan = host.gate.plan();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].kind, "demo.touch");
    }
}
