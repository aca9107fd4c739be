//! Registration of the primitives as Rhai modules (`containers::`, `units::`, ...), one file per
//! host family. A registration carries everything scripts and operators learn about a primitive
//! (signature, read-only or mutating, one-line doc, an example that works in a dry run), so
//! `cai scripts api`, REPL completion and the tests all read the registrations themselves; there
//! is no second table to drift. Bindings convert between Rhai values and typed Rust values and
//! route every mutating call through the effect gate with [`gated`]; they hold no policy.

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
mod run;
mod ssh;
mod sysbox;
mod units;
mod update;
mod volumes;

use std::collections::BTreeMap;
use std::rc::Rc;

use rhai::{
    Dynamic, Engine, EvalAltResult, FuncRegistration, Module, NativeCallContext, RhaiNativeFunc,
    Variant,
};
use serde::Serialize;

use super::catalog::Catalog;
use crate::effects::{Action, Approval, FailedMembers};
use crate::host::Host;

/// One primitive as `cai scripts api` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Primitive {
    pub module: String,
    pub name: String,
    pub signature: &'static str,
    pub mutating: bool,
    pub doc: &'static str,
    /// A call that works in a dry run; the test suite runs every one of them.
    #[serde(skip)]
    pub example: &'static str,
}

impl Primitive {
    pub fn path(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }
}

/// What a registration says about its primitive besides the function itself.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    /// `module::name(arg: type, ...) -> type`; module and name are read from it.
    pub signature: &'static str,
    /// One line, no trailing period: what it does and what it returns.
    pub doc: &'static str,
    /// A call that works in a dry run on an empty host.
    pub example: &'static str,
}

/// A registration that cannot be listed truthfully.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistrationError {
    #[error("primitive {signature:?}: the signature must start with module::name(")]
    Signature { signature: String },
    #[error("primitive {path}: {problem}")]
    Doc { path: String, problem: &'static str },
    #[error("primitive {path} is registered twice; use an overload for a second signature")]
    Duplicate { path: String },
    #[error("overload of {path} has no documented registration")]
    Orphan { path: String },
}

/// The documentation of every primitive, and the Rhai module of each family.
pub type Registered = (Vec<Primitive>, BTreeMap<String, Module>);

/// Collects functions per module together with their documentation.
#[derive(Default)]
pub struct Registrar {
    modules: BTreeMap<String, Module>,
    primitives: Vec<Primitive>,
    errors: Vec<RegistrationError>,
}

impl Registrar {
    /// Registers a primitive that only reads.
    pub fn read<A: 'static, const N: usize, const X: bool, R, F>(&mut self, doc: Doc, func: F)
    where
        R: Variant + Clone,
        F: RhaiNativeFunc<A, N, X, R, true> + 'static,
    {
        self.register(doc, false, func);
    }

    /// Registers a primitive that changes the machine; its function must go through [`gated`].
    pub fn mutating<A: 'static, const N: usize, const X: bool, R, F>(&mut self, doc: Doc, func: F)
    where
        R: Variant + Clone,
        F: RhaiNativeFunc<A, N, X, R, true> + 'static,
    {
        self.register(doc, true, func);
    }

    /// A second signature of a primitive already registered (e.g. an optional argument left out);
    /// it shares the documented registration's doc and kind.
    pub fn overload<A: 'static, const N: usize, const X: bool, R, F>(
        &mut self,
        signature: &'static str,
        func: F,
    ) where
        R: Variant + Clone,
        F: RhaiNativeFunc<A, N, X, R, true> + 'static,
    {
        let Some((module, name)) = split_signature(signature) else {
            self.errors.push(RegistrationError::Signature {
                signature: signature.to_string(),
            });
            return;
        };
        if !self
            .primitives
            .iter()
            .any(|p| p.module == module && p.name == name)
        {
            self.errors.push(RegistrationError::Orphan {
                path: format!("{module}::{name}"),
            });
            return;
        }
        self.set(&module, &name, func);
    }

    fn register<A: 'static, const N: usize, const X: bool, R, F>(
        &mut self,
        doc: Doc,
        mutating: bool,
        func: F,
    ) where
        R: Variant + Clone,
        F: RhaiNativeFunc<A, N, X, R, true> + 'static,
    {
        let Some((module, name)) = split_signature(doc.signature) else {
            self.errors.push(RegistrationError::Signature {
                signature: doc.signature.to_string(),
            });
            return;
        };
        let path = format!("{module}::{name}");
        if let Some(problem) = doc_problem(&doc) {
            self.errors.push(RegistrationError::Doc { path, problem });
            return;
        }
        if self.primitives.iter().any(|p| p.path() == path) {
            self.errors.push(RegistrationError::Duplicate { path });
            return;
        }
        self.set(&module, &name, func);
        self.primitives.push(Primitive {
            module,
            name,
            signature: doc.signature,
            mutating,
            doc: doc.doc,
            example: doc.example,
        });
    }

    fn set<A: 'static, const N: usize, const X: bool, R, F>(
        &mut self,
        module: &str,
        name: &str,
        func: F,
    ) where
        R: Variant + Clone,
        F: RhaiNativeFunc<A, N, X, R, true> + 'static,
    {
        // Volatile: a primitive's answer depends on the machine, so the optimizer must never
        // evaluate it at compile time.
        FuncRegistration::new(name.to_string())
            .in_internal_namespace()
            .with_volatility(true)
            .set_into_module(self.modules.entry(module.to_string()).or_default(), func);
    }

    /// The documented primitives, or every registration that could not be documented.
    pub fn finish(self) -> Result<Registered, Vec<RegistrationError>> {
        if self.errors.is_empty() {
            Ok((self.primitives, self.modules))
        } else {
            Err(self.errors)
        }
    }
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

/// Registers every primitive family; the documentation of each comes back with the modules.
/// The catalog serves the unit templates `units::` renders.
fn register_families(
    host: &Rc<Host>,
    catalog: &Rc<Catalog>,
    args: &Rc<Vec<String>>,
    json: bool,
) -> Registrar {
    let mut reg = Registrar::default();
    run::register(&mut reg, host, args, json);
    platform::register(&mut reg, host);
    lima::register(&mut reg, host);
    report::register(&mut reg, host, json);
    prompt::register(&mut reg, host);
    log::register(&mut reg, host);
    containers::register(&mut reg, host);
    sysbox::register(&mut reg, host);
    release::register(&mut reg, host);
    units::register(&mut reg, host, catalog);
    packages::register(&mut reg, host);
    artifacts::register(&mut reg, host);
    dockerd::register(&mut reg, host);
    update::register(&mut reg, host);
    ssh::register(&mut reg, host);
    volumes::register(&mut reg, host);
    reg
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
pub(crate) fn cut_short(
    ctx: &NativeCallContext,
    cut: crate::host::wait::Cut,
) -> Box<EvalAltResult> {
    let token = match cut {
        crate::host::wait::Cut::Budget => crate::script::sandbox::STOP_TIMEOUT,
        crate::host::wait::Cut::Interrupted => crate::script::sandbox::STOP_INTERRUPT,
    };
    crate::script::sandbox::Stop::error(token, ctx.call_position())
}

pub(crate) fn to_dynamic<T: serde::Serialize>(value: &T) -> Res<Dynamic> {
    rhai::serde::to_dynamic(value)
}

/// Passes one action through the effect gate and hands the script the result (the prediction in
/// a dry run); a failure points at the call in the script.
pub(crate) fn gated<T, E>(
    ctx: &NativeCallContext,
    host: &Host,
    action: Action,
    predict: impl FnOnce() -> T,
    perform: impl FnOnce(Approval) -> Result<T, E>,
) -> Res<Dynamic>
where
    T: FailedMembers + Serialize,
    E: std::fmt::Display,
{
    let value = host
        .gate
        .apply(action, predict, perform)
        .map_err(|e| fail_at(ctx, e))?;
    to_dynamic(&value)
}

/// Reads an array of strings, naming the primitive when an element is not a string.
pub(crate) fn strings(ctx: &NativeCallContext, what: &str, array: rhai::Array) -> Res<Vec<String>> {
    array
        .into_iter()
        .map(|v| {
            let type_name = v.type_name();
            v.into_string().map_err(|_| {
                fail_at(
                    ctx,
                    format!("{what}: expected an array of strings, found {type_name}"),
                )
            })
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

    #[test]
    fn a_primitive_without_a_doc_is_refused() {
        let mut reg = Registrar::default();
        reg.read(GOOD, || Ok(true));
        reg.read(
            Doc {
                signature: "demo::silent() -> bool",
                doc: "",
                example: "demo::silent()",
            },
            || Ok(true),
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
            let mut reg = Registrar::default();
            reg.read(doc, || Ok(true));
            let errors = reg.finish().expect_err("must fail");
            assert!(errors[0].to_string().contains(want), "{errors:?}");
        }
        let mut reg = Registrar::default();
        reg.read(GOOD, || Ok(true));
        reg.read(GOOD, || Ok(false));
        reg.overload("demo::other(x: int) -> bool", |_: i64| Ok(true));
        let errors = reg.finish().expect_err("must fail");
        assert!(matches!(errors[0], RegistrationError::Duplicate { .. }));
        assert!(matches!(errors[1], RegistrationError::Orphan { .. }));
        let mut reg = Registrar::default();
        reg.read(GOOD, || Ok(true));
        reg.overload("demo::ping(x: int) -> bool", |_: i64| Ok(true));
        let (primitives, modules) = reg.finish().expect("valid");
        assert_eq!(primitives.len(), 1);
        assert_eq!(primitives[0].path(), "demo::ping");
        assert!(modules.contains_key("demo"));
    }
}
