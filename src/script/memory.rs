//! The bound on a script's memory [P72]. The size limits of the sandbox count one string, array
//! or map at a time; values spread over many variables, call frames and modules are counted by
//! nobody, so a small script could grow `cai` to gigabytes. [`Counting`] wraps the system
//! allocator and keeps one atomic count of the bytes allocated and not yet freed; the engine's
//! operation callback compares it with the budget's limit (config `script_memory_mb`) at every
//! operation and stops the script with one error when it is over.
//!
//! The count is process-wide: it includes what `cai` itself holds, which is small and measured
//! as a baseline when the script's budget starts. Each thread gathers its own changes and adds
//! them to the shared count in steps of [`STEP`] bytes, so threads that allocate at once (the
//! volume walk uses every core) do not contend for one counter on every allocation; the count is
//! off by less than one step per thread, far below any limit. Only the `cai` binary installs the allocator;
//! without it (unit tests of the library) the count stays zero and no limit applies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

/// The system allocator, counting the bytes it has handed out and not taken back.
pub struct Counting;

/// Bytes allocated and not freed, as far as the threads have reported them. Signed: a thread
/// may report a free before another reports the allocation.
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// How far a thread's own count may drift before it is added to [`LIVE`].
const STEP: isize = 64 * 1024;

thread_local! {
    /// This thread's changes not yet added to [`LIVE`]. Const-initialized and without a
    /// destructor, so reading it never allocates.
    static PENDING: Cell<isize> = const { Cell::new(0) };
}

/// Counts `delta` bytes: on this thread until they add up to a step, then in [`LIVE`].
fn count(delta: isize) {
    let due = PENDING.try_with(|pending| {
        let now = pending.get() + delta;
        if now.abs() >= STEP {
            pending.set(0);
            now
        } else {
            pending.set(now);
            0
        }
    });
    // A thread being torn down has no local count left: report directly.
    let due = due.unwrap_or(delta);
    if due != 0 {
        LIVE.fetch_add(due, Ordering::Relaxed);
    }
}

fn size(bytes: usize) -> isize {
    isize::try_from(bytes).unwrap_or(isize::MAX)
}
/// The limit of the script running now, in MiB, for the error message.
static LIMIT_MIB: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counter is only arithmetic on the sizes of successful calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(size(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(size(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (so by `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        count(-size(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`; the caller upholds the rest.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(size(new_size) - size(layout.size()));
        }
        new
    }
}

/// Bytes allocated and not freed, when the counting allocator is installed.
pub fn live() -> Option<usize> {
    match LIVE.load(Ordering::Relaxed) {
        // Nothing reported yet: the counting allocator is not installed (or nothing reached a
        // step, which `cai` passes long before a script runs).
        0 => None,
        bytes => Some(usize::try_from(bytes).unwrap_or(0)),
    }
}

/// A script's allowance: `limit_mib` on top of what the process held when its budget started.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    ceiling: Option<usize>,
}

impl Allowance {
    pub fn new(limit_mib: u64) -> Self {
        LIMIT_MIB.store(limit_mib, Ordering::Relaxed);
        let bytes = usize::try_from(limit_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        Self {
            ceiling: live().map(|now| now.saturating_add(bytes)),
        }
    }

    /// Whether the process holds more than the allowance lets it.
    pub fn exceeded(&self) -> bool {
        matches!((self.ceiling, live()), (Some(ceiling), Some(now)) if now > ceiling)
    }
}

/// The limit in MiB of the script running now, as the error names it.
pub fn limit_mib() -> u64 {
    LIMIT_MIB.load(Ordering::Relaxed)
}
