//! Registration of the primitives as Rhai modules (`containers::`, `units::`, ...), one file per
//! host family. Bindings convert between Rhai values and typed Rust values and route every
//! mutating call through the effect gate; they hold no policy of their own.

mod containers;
mod misc;
mod units;

use std::collections::BTreeMap;
use std::rc::Rc;

use rhai::{
    Dynamic, Engine, EvalAltResult, FuncRegistration, Module, NativeCallContext, RhaiNativeFunc,
    Variant,
};

use crate::host::Host;

/// Collects functions per module and remembers what was registered, so a test can compare it
/// with [`super::api::PRIMITIVES`].
#[derive(Default)]
pub struct Registrar {
    modules: BTreeMap<&'static str, Module>,
    registered: Vec<String>,
}

impl Registrar {
    pub fn add<A: 'static, const N: usize, const X: bool, R, F>(
        &mut self,
        module: &'static str,
        name: &'static str,
        func: F,
    ) where
        R: Variant + Clone,
        F: RhaiNativeFunc<A, N, X, R, true> + 'static,
    {
        // Volatile: a primitive's answer depends on the machine, so the optimizer must never
        // evaluate it at compile time.
        FuncRegistration::new(name)
            .in_internal_namespace()
            .with_volatility(true)
            .set_into_module(self.modules.entry(module).or_default(), func);
        let path = format!("{module}::{name}");
        if !self.registered.contains(&path) {
            self.registered.push(path);
        }
    }

    /// Every `module::name` registered (overloads counted once).
    pub fn registered(&self) -> &[String] {
        &self.registered
    }

    fn install(self, engine: &mut Engine) {
        for (name, module) in self.modules {
            engine.register_static_module(name, module.into());
        }
    }
}

/// Registers every primitive family on `engine`; returns the names registered.
pub fn register_all(
    engine: &mut Engine,
    host: &Rc<Host>,
    args: &Rc<Vec<String>>,
    json: bool,
) -> Vec<String> {
    let mut reg = Registrar::default();
    misc::register(&mut reg, host, args, json);
    containers::register(&mut reg, host);
    units::register(&mut reg, host);
    let names = reg.registered().to_vec();
    reg.install(engine);
    names
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

pub(crate) fn to_dynamic<T: serde::Serialize>(value: &T) -> Res<Dynamic> {
    rhai::serde::to_dynamic(value)
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
