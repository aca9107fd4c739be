//! The sandbox's limits and what stops a running script early: the size and depth limits the
//! engine factory sets, the wall-clock [`Budget`] of a run, and [`Stop`], which the operation
//! callback and the guards that wait or measure read to end a script on Ctrl-C, on the budget, or
//! on a stop a guard requested, with the `STOP_*` token that says why.
//!
//! A leaf: it names no other part of the crate but the memory count it reads, so the engine, its guards, the bindings and the
//! error rendering all read the same limits without importing each other.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rhai::{EvalAltResult, Position};

/// Sandbox limits, the defaults of [`Limits`]. Generous for real flows, small enough that a runaway script fails fast.
pub mod limits {
    pub const OPERATIONS: u64 = 50_000_000;
    pub const CALL_LEVELS: usize = 64;
    pub const EXPR_DEPTH: usize = 64;
    pub const FN_EXPR_DEPTH: usize = 32;
    pub const STRING_SIZE: usize = 4 * 1024 * 1024;
    pub const ARRAY_SIZE: usize = 100_000;
    pub const MAP_SIZE: usize = 100_000;
    pub const MODULES: usize = 64;
    /// Bytes of one script or module text. Checked before the parser sees the text, since
    /// compiling is not covered by the wall-clock budget; the bundled flows are a few KiB.
    pub const SCRIPT_BYTES: usize = 1024 * 1024;
    /// Functions, closures included, that one script or module text may define.
    pub const FUNCTIONS: usize = 1024;
    /// Levels of arrays and maps inside each other that a value may have when it is shown,
    /// compared or converted: each level costs a native call on the stack.
    pub const NESTING: usize = 64;
    /// Stack of the thread that runs a command. A value can be nested as deep as the size limits
    /// allow (`ARRAY_SIZE + MAP_SIZE` levels), and Rhai clones, drops and measures values by
    /// recursion; a debug build needs up to 2.5 KiB a level for maps, a release build far less.
    /// Only the pages a run touches are committed.
    pub const STACK_BYTES: usize = 512 * 1024 * 1024;
}

/// The limits one engine enforces; [`Limits::default`] holds the [`limits`] consts, which every
/// command runs with. Tests build engines with small ones to reach a limit in a few operations.
/// [`limits::SCRIPT_BYTES`] and [`limits::STACK_BYTES`] stay consts: they bound the text before an
/// engine sees it and the thread it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub operations: u64,
    pub call_levels: usize,
    pub expr_depth: usize,
    pub fn_expr_depth: usize,
    pub string_size: usize,
    pub array_size: usize,
    pub map_size: usize,
    pub modules: usize,
    pub functions: usize,
    pub nesting: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            operations: limits::OPERATIONS,
            call_levels: limits::CALL_LEVELS,
            expr_depth: limits::EXPR_DEPTH,
            fn_expr_depth: limits::FN_EXPR_DEPTH,
            string_size: limits::STRING_SIZE,
            array_size: limits::ARRAY_SIZE,
            map_size: limits::MAP_SIZE,
            modules: limits::MODULES,
            functions: limits::FUNCTIONS,
            nesting: limits::NESTING,
        }
    }
}

/// Token values an `on_progress` stop carries, so error rendering can say why.
pub const STOP_TIMEOUT: &str = "cai:timeout";
pub const STOP_INTERRUPT: &str = "cai:interrupt";
/// A value too deeply nested was turned into text where an error could not be raised.
pub const STOP_NESTING: &str = "cai:nesting";
/// The process holds more memory than the script's allowance [P72].
pub const STOP_MEMORY: &str = "cai:memory";

/// Per-run state the engine's callbacks read.
#[derive(Clone)]
pub struct Budget {
    started: Rc<Cell<Instant>>,
    limit: Duration,
    /// A stop requested by a guard that had to return a value instead of an error; the next
    /// operation raises it.
    pending: Rc<Cell<Option<&'static str>>>,
    /// The memory the script may take; none until [`Budget::with_memory`].
    memory: Option<super::memory::Allowance>,
}

impl Budget {
    pub fn new(limit: Duration) -> Self {
        Self {
            started: Rc::new(Cell::new(Instant::now())),
            limit,
            pending: Rc::new(Cell::new(None)),
            memory: None,
        }
    }

    /// Bounds the memory of the script to `limit_mib` MiB over what the process holds now
    /// [P72] (config `script_memory_mb`).
    #[must_use]
    pub fn with_memory(mut self, limit_mib: u64) -> Self {
        self.memory = Some(super::memory::Allowance::new(limit_mib));
        self
    }

    /// When this run's clock started, shared so native waits read the same clock [P71].
    pub fn clock(&self) -> Rc<Cell<Instant>> {
        self.started.clone()
    }

    /// Restarts the clock (each REPL entry gets its own budget) and forgets a pending stop.
    pub fn restart(&self) {
        self.started.set(Instant::now());
        self.pending.set(None);
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }
}

/// Everything that stops a running script early: Ctrl-C, the wall-clock budget, or a stop a
/// guard requested. Read by the operation callback and by native functions that wait.
#[derive(Clone)]
pub struct Stop {
    budget: Budget,
    interrupted: Arc<AtomicBool>,
}

impl Stop {
    /// Stops on Ctrl-C (`interrupted`) and on `budget`.
    pub fn new(budget: Budget, interrupted: Arc<AtomicBool>) -> Self {
        Self {
            budget,
            interrupted,
        }
    }

    /// Why the script must stop now, if it must. The clock is read only when `clock` is set,
    /// so the callback can sample it; the flags are checked every time.
    pub fn reason(&self, clock: bool) -> Option<&'static str> {
        if self.interrupted.load(Ordering::SeqCst) {
            return Some(STOP_INTERRUPT);
        }
        if let Some(token) = self.budget.pending.get() {
            return Some(token);
        }
        // One atomic load: cheap enough for every operation, and an operation adds at most a
        // few MiB (the string and array limits), so the count is never far past the limit.
        if self.budget.memory.is_some_and(|m| m.exceeded()) {
            return Some(STOP_MEMORY);
        }
        if clock && self.budget.started.get().elapsed() > self.budget.limit {
            return Some(STOP_TIMEOUT);
        }
        None
    }

    /// Asks for a stop at the next operation.
    pub fn request(&self, token: &'static str) {
        self.budget.pending.set(Some(token));
    }

    /// The error that ends the script, the same one the operation callback raises.
    pub fn error(token: &'static str, pos: Position) -> Box<EvalAltResult> {
        Box::new(EvalAltResult::ErrorTerminated(token.into(), pos))
    }
}
