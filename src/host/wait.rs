//! What ends a native wait early besides its own timeout: Ctrl-C and the wall-clock budget of
//! the script that asked for it [P71]. A primitive that waits (for the engine's socket, for a
//! container's SSH server) reads [`Limits`] from the host and polls in short slices, so a
//! `containers::wait_engine(20)` under a 2 s budget ends at about 2 s with the budget's error,
//! and Ctrl-C ends it at once.
//!
//! Actions already handed to the engine (a container stop with its 100 s timeout) are not cut
//! short here: stopping a container more brutally than its timeout allows, or leaving an action
//! without its outcome in the journal, is worse than finishing it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why a wait stopped before its own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The script's wall-clock budget ran out.
    Budget,
    /// Ctrl-C.
    Interrupted,
}

/// The running script's clock, shared with the engine that keeps it (a REPL restarts it for
/// each entry). No clock: no script runs, and only Ctrl-C ends a wait early.
#[derive(Default)]
pub struct ScriptClock {
    clock: RefCell<Option<(Rc<Cell<Instant>>, Duration)>>,
}

impl ScriptClock {
    /// Follows the budget of the script about to run: it started at `started` (which the
    /// engine may move) and may run `limit`.
    pub fn follow(&self, started: Rc<Cell<Instant>>, limit: Duration) {
        *self.clock.borrow_mut() = Some((started, limit));
    }

    /// When the running script's budget ends, if one runs.
    pub fn deadline(&self) -> Option<Instant> {
        let clock = self.clock.borrow();
        let (started, limit) = clock.as_ref()?;
        started.get().checked_add(*limit)
    }
}

/// The script's remaining budget and the Ctrl-C flag, read once when a wait starts.
#[derive(Debug, Clone)]
pub struct Limits {
    pub until: Option<Instant>,
    pub interrupted: Arc<AtomicBool>,
}

/// How long a wait sleeps between two looks at its condition, Ctrl-C and the clock.
const SLICE: Duration = Duration::from_millis(50);

impl Limits {
    /// Limits that only Ctrl-C ends (no script budget).
    pub fn interrupt_only(interrupted: Arc<AtomicBool>) -> Self {
        Self {
            until: None,
            interrupted,
        }
    }

    /// Whether the wait must stop now.
    pub fn check(&self) -> Result<(), Cut> {
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(Cut::Interrupted);
        }
        match self.until {
            Some(until) if Instant::now() >= until => Err(Cut::Budget),
            _ => Ok(()),
        }
    }

    /// The smaller of `timeout` and what is left of the budget.
    pub fn cap(&self, timeout: Duration) -> Duration {
        match self.until {
            Some(until) => timeout.min(until.saturating_duration_since(Instant::now())),
            None => timeout,
        }
    }

    /// Sleeps `pause` in slices, ending early with the reason when Ctrl-C is pressed or the
    /// budget runs out.
    pub fn sleep(&self, pause: Duration) -> Result<(), Cut> {
        let end = Instant::now() + pause;
        loop {
            self.check()?;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(SLICE));
        }
    }

    /// Asks `ready` until it answers, every `every`, for at most `timeout`: `Ok(Some(answer))`,
    /// `Ok(None)` when the timeout passed, or why the wait was cut short.
    pub fn poll<T>(
        &self,
        timeout: Duration,
        every: Duration,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Result<Option<T>, Cut> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check()?;
            if let Some(answer) = ready() {
                return Ok(Some(answer));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.sleep(left.min(every))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_on_its_timeout_the_budget_or_ctrl_c() {
        let flag = Arc::new(AtomicBool::new(false));
        let free = Limits::interrupt_only(flag.clone());
        let mut asked = 0;
        let answer = free.poll(Duration::from_secs(5), Duration::from_millis(1), || {
            asked += 1;
            (asked == 3).then_some("up")
        });
        assert_eq!(answer, Ok(Some("up")));
        assert_eq!(
            free.poll(
                Duration::from_millis(20),
                Duration::from_millis(5),
                || None::<()>
            ),
            Ok(None)
        );

        let clock = ScriptClock::default();
        assert_eq!(clock.deadline(), None);
        let started = Rc::new(Cell::new(Instant::now()));
        clock.follow(started.clone(), Duration::from_millis(60));
        let budget = Limits {
            until: clock.deadline(),
            interrupted: flag.clone(),
        };
        assert!(budget.cap(Duration::from_secs(20)) <= Duration::from_millis(60));
        let began = Instant::now();
        assert_eq!(
            budget.poll(
                Duration::from_secs(20),
                Duration::from_millis(250),
                || None::<()>
            ),
            Err(Cut::Budget)
        );
        assert!(began.elapsed() < Duration::from_secs(2));

        flag.store(true, Ordering::SeqCst);
        assert_eq!(free.sleep(Duration::from_secs(20)), Err(Cut::Interrupted));
    }
}
