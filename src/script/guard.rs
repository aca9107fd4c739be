//! Replacements for standard-package functions whose native code escapes the sandbox's limits.
//! Rhai looks a function up in the engine's own namespace before the packages, so what is
//! registered here is what every script and module calls.
//!
//! - `sleep` blocks in native code, where the operation callback never runs: here it waits in
//!   short slices and ends like any other statement on Ctrl-C or the wall-clock budget.
//! - Showing and comparing arrays and maps goes through the engine once per level of nesting; a
//!   value nested thousands of levels deep would overflow the stack. These measure the nesting
//!   first ([`depth_within`], the one check) and refuse more than the engine's nesting limit
//!   ([`super::sandbox::Limits::nesting`]).
//!
//! Nothing here is a primitive or holds policy; the output of every function matches the one it
//! replaces.

use std::time::{Duration, Instant};

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FLOAT, FUNC_TO_DEBUG, FuncRegistration, INT,
    ImmutableString, Map, NativeCallContext,
};

use super::sandbox::{STOP_NESTING, Stop, limits};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// How long `sleep` waits between two looks at Ctrl-C and the clock.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// Registers every replacement on `engine`; values nested more than `nesting` levels are refused.
pub fn register(engine: &mut Engine, stop: &Stop, nesting: usize) {
    let s = stop.clone();
    FuncRegistration::new("sleep")
        .with_volatility(true)
        .register_into_engine(engine, move |ctx: NativeCallContext, seconds: INT| {
            let whole = u64::try_from(seconds).map_err(|_| not_seconds(&ctx, seconds))?;
            sleep(&ctx, &s, Some(Duration::from_secs(whole)))
        });
    let s = stop.clone();
    FuncRegistration::new("sleep")
        .with_volatility(true)
        .register_into_engine(engine, move |ctx: NativeCallContext, seconds: FLOAT| {
            if seconds.is_nan() || seconds < 0.0 {
                return Err(not_seconds(&ctx, seconds));
            }
            // Too long for a Duration: wait until the budget or Ctrl-C ends the script.
            sleep(&ctx, &s, Duration::try_from_secs_f64(seconds).ok())
        });

    // `to_string` and `to_debug` also run where Rhai swallows their errors and falls back to
    // Rust's own recursive formatting (string interpolation, `+` on strings), so they cannot
    // refuse; they ask for a stop at the next operation instead.
    for name in ["to_string", "to_debug"] {
        let s = stop.clone();
        FuncRegistration::new(name).register_into_engine(
            engine,
            move |ctx: NativeCallContext, array: &mut Array| -> ImmutableString {
                if array_depth(array, 0, nesting) > nesting {
                    s.request(STOP_NESTING);
                    return "[...]".into();
                }
                show_array(&ctx, array).into()
            },
        );
        let s = stop.clone();
        FuncRegistration::new(name).register_into_engine(
            engine,
            move |ctx: NativeCallContext, map: &mut Map| -> ImmutableString {
                if map_depth(map, 0, nesting) > nesting {
                    s.request(STOP_NESTING);
                    return "#{...}".into();
                }
                show_map(&ctx, map).into()
            },
        );
    }
    for name in ["print", "debug"] {
        FuncRegistration::new(name).register_into_engine(
            engine,
            move |ctx: NativeCallContext, array: &mut Array| -> Res<ImmutableString> {
                refuse_deep(&ctx, name, "shown", array_depth(array, 0, nesting), nesting)?;
                Ok(show_array(&ctx, array).into())
            },
        );
        FuncRegistration::new(name).register_into_engine(
            engine,
            move |ctx: NativeCallContext, map: &mut Map| -> Res<ImmutableString> {
                refuse_deep(&ctx, name, "shown", map_depth(map, 0, nesting), nesting)?;
                Ok(show_map(&ctx, map).into())
            },
        );
    }

    for (name, equal) in [("==", true), ("!=", false)] {
        FuncRegistration::new(name).register_into_engine(
            engine,
            move |ctx: NativeCallContext, a: &mut Array, b: Array| -> Res<bool> {
                let depth = array_depth(a, 0, nesting).max(array_depth(&b, 0, nesting));
                refuse_deep(&ctx, name, "compared", depth, nesting)?;
                arrays_equal(&ctx, a, b).map(|same| same == equal)
            },
        );
        FuncRegistration::new(name).register_into_engine(
            engine,
            move |ctx: NativeCallContext, a: &mut Map, b: Map| -> Res<bool> {
                let depth = map_depth(a, 0, nesting).max(map_depth(&b, 0, nesting));
                refuse_deep(&ctx, name, "compared", depth, nesting)?;
                maps_equal(&ctx, a, b).map(|same| same == equal)
            },
        );
    }
    FuncRegistration::new("to_json").register_into_engine(
        engine,
        move |ctx: NativeCallContext, map: &mut Map| -> Res<String> {
            refuse_deep(
                &ctx,
                "to_json",
                "converted",
                map_depth(map, 0, nesting),
                nesting,
            )?;
            Ok(rhai::format_map_as_json(map))
        },
    );
}

/// Waits `wanted` (`None`: until stopped) in slices, stopping the script the way the operation
/// callback does when Ctrl-C was pressed or the budget ran out.
fn sleep(ctx: &NativeCallContext, stop: &Stop, wanted: Option<Duration>) -> Res<()> {
    let started = Instant::now();
    loop {
        if let Some(token) = stop.reason(true) {
            return Err(Stop::error(token, ctx.call_position()));
        }
        let slice = match wanted {
            Some(wanted) => match wanted.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => left.min(SLEEP_SLICE),
                _ => return Ok(()),
            },
            None => SLEEP_SLICE,
        };
        std::thread::sleep(slice);
    }
}

fn not_seconds(ctx: &NativeCallContext, seconds: impl std::fmt::Display) -> Box<EvalAltResult> {
    fail(
        ctx,
        format!("sleep: {seconds} is not a number of seconds (expected 0 or more)"),
    )
}

fn fail(ctx: &NativeCallContext, message: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        message.into(),
        ctx.call_position(),
    ))
}

/// The message for a value nested deeper than the default [`limits::NESTING`], for a
/// registration that is not given the engine's limits (`report::data`).
pub fn too_deep(what: &str, done: &str) -> String {
    too_deep_for(what, done, limits::NESTING)
}

/// The message for a value nested deeper than `nesting`; `what` names the function, `done` what
/// it would have done ("shown", "compared", "converted").
pub fn too_deep_for(what: &str, done: &str, nesting: usize) -> String {
    format!("{what}: {}", nested_too_deep(done, nesting))
}

pub fn nested_too_deep(done: &str, nesting: usize) -> String {
    format!(
        "arrays and maps nested more than {nesting} levels deep cannot be {done} (sandbox limit)"
    )
}

fn refuse_deep(
    ctx: &NativeCallContext,
    what: &str,
    done: &str,
    depth: usize,
    nesting: usize,
) -> Res<()> {
    if depth > nesting {
        Err(fail(ctx, too_deep_for(what, done, nesting)))
    } else {
        Ok(())
    }
}

/// [`depth_within`] the default [`limits::NESTING`], for a registration that is not given the
/// engine's limits (`report::data`).
pub fn nesting_depth(value: &Dynamic) -> usize {
    depth_within(value, limits::NESTING)
}

/// Levels of arrays and maps in `value`: 0 for a scalar, 1 for `[1, 2]`, 2 for `[[1]]`. The walk
/// stops one level past `nesting`, so it never recurses deeper than that however deep the value
/// goes: anything deeper measures `nesting + 1`.
pub fn depth_within(value: &Dynamic, nesting: usize) -> usize {
    depth(value, 0, nesting)
}

fn depth(value: &Dynamic, level: usize, nesting: usize) -> usize {
    if let Ok(array) = value.as_array_ref() {
        array_depth(&array, level, nesting)
    } else if let Ok(map) = value.as_map_ref() {
        map_depth(&map, level, nesting)
    } else {
        level
    }
}

fn array_depth(array: &Array, level: usize, nesting: usize) -> usize {
    children_depth(array.iter(), level, nesting)
}

fn map_depth(map: &Map, level: usize, nesting: usize) -> usize {
    children_depth(map.values(), level, nesting)
}

fn children_depth<'a>(
    children: impl Iterator<Item = &'a Dynamic>,
    level: usize,
    nesting: usize,
) -> usize {
    let level = level + 1;
    let mut deepest = level;
    if level > nesting {
        return deepest;
    }
    for child in children {
        deepest = deepest.max(depth(child, level, nesting));
        if deepest > nesting {
            break;
        }
    }
    deepest
}

/// `[a, b]` with each element as its `to_debug` shows it, like Rhai's own formatting; only
/// called once the nesting was measured, so the recursion through the engine is bounded.
fn show_array(ctx: &NativeCallContext, array: &mut Array) -> String {
    let items: Vec<String> = array.iter_mut().map(|item| element(ctx, item)).collect();
    format!("[{}]", items.join(", "))
}

/// `#{"key": value}`, like Rhai's own formatting.
fn show_map(ctx: &NativeCallContext, map: &mut Map) -> String {
    let items: Vec<String> = map
        .iter_mut()
        .map(|(key, value)| format!("{key:?}: {}", element(ctx, value)))
        .collect();
    format!("#{{{}}}", items.join(", "))
}

fn element(ctx: &NativeCallContext, item: &mut Dynamic) -> String {
    match ctx.call_native_fn_raw(FUNC_TO_DEBUG, true, &mut [item]) {
        Ok(text) if text.is_string() => text.to_string(),
        Ok(other) => ctx.engine().map_type_name(other.type_name()).to_string(),
        Err(_) => format!("{item:?}"),
    }
}

/// Rhai's array equality: same length, and `==` holds for each pair of elements; elements of
/// different types without an `==` between them are unequal.
fn arrays_equal(ctx: &NativeCallContext, a: &mut Array, mut b: Array) -> Res<bool> {
    if a.len() != b.len() {
        return Ok(false);
    }
    for (x, y) in a.iter_mut().zip(b.iter_mut()) {
        let same = match ctx.call_native_fn_raw("==", true, &mut [x, y]) {
            Ok(same) => same.as_bool().unwrap_or(false),
            Err(e) if x.type_id() != y.type_id() && is_missing_equals(&e) => false,
            Err(e) => return Err(e),
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_missing_equals(e: &EvalAltResult) -> bool {
    matches!(e, EvalAltResult::ErrorFunctionNotFound(signature, _) if signature.starts_with("=="))
}

/// Rhai's map equality: the same keys, and `==` holds for each pair of values.
fn maps_equal(ctx: &NativeCallContext, a: &mut Map, mut b: Map) -> Res<bool> {
    if a.len() != b.len() {
        return Ok(false);
    }
    for (key, x) in a.iter_mut() {
        let Some(y) = b.get_mut(key) else {
            return Ok(false);
        };
        let same = ctx.call_native_fn_raw("==", true, &mut [x, y])?;
        if !same.as_bool().unwrap_or(false) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> Dynamic {
        let mut value = Dynamic::from(1_i64);
        for i in 0..levels {
            value = if i % 2 == 0 {
                Dynamic::from_array(vec![value])
            } else {
                let mut map = Map::new();
                map.insert("x".into(), value);
                Dynamic::from_map(map)
            };
        }
        value
    }

    #[test]
    fn nesting_is_measured_without_following_it_all_the_way_down() {
        assert_eq!(nesting_depth(&Dynamic::from(1_i64)), 0);
        assert_eq!(nesting_depth(&Dynamic::from_array(Vec::new())), 1);
        assert_eq!(nesting_depth(&nested(3)), 3);
        assert_eq!(nesting_depth(&nested(limits::NESTING)), limits::NESTING);
        // Deeper than the limit reads as one past it; the walk stops there.
        assert_eq!(nesting_depth(&nested(300)), limits::NESTING + 1);
        let wide = Dynamic::from_array(vec![Dynamic::UNIT, nested(7), nested(2)]);
        assert_eq!(nesting_depth(&wide), 8);
        // A smaller limit stops the walk sooner.
        assert_eq!(depth_within(&nested(3), 4), 3);
        assert_eq!(depth_within(&nested(300), 4), 5);
        assert_eq!(depth_within(&wide, 4), 5);
    }
}
