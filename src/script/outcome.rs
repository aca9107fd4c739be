//! How a script ended, as it says it: nothing, its own exit code, or one of the outcomes whose
//! exit code `cai` documents (refused, updates available). The script names the outcome; the
//! code is decided in [`crate::error::exit_code`], beside every other exit code. It must never
//! read a value that is not an outcome as success: `exit("failed")` is an error, not 0.

use rhai::Dynamic;

/// A finished script's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The script ended without a value (`()`).
    Done,
    /// `exit(n)` or a last value `n`: the script's own exit code, 0..=255.
    Code(u8),
    /// `exit(run::refused())`: the flow refused to act and changed nothing (running containers
    /// and no consent to stop them, say).
    Refused,
    /// `exit(run::updates_available())`: a check found updates to apply.
    UpdatesAvailable,
}

impl Outcome {
    /// Whether the script ended as a success, exit code 0 (`error::exit_code` decides the others).
    pub fn succeeded(self) -> bool {
        matches!(self, Outcome::Done | Outcome::Code(0))
    }

    /// Reads a script's value: `()`, an integer 0..=255, or an outcome a `run::` primitive made.
    /// Anything else is refused rather than read as success.
    pub fn from_value(value: Dynamic) -> Result<Outcome, String> {
        if value.is_unit() {
            return Ok(Outcome::Done);
        }
        if let Some(outcome) = value.clone().try_cast::<Outcome>() {
            return Ok(outcome);
        }
        let Ok(code) = value.as_int() else {
            return Err(format!(
                "script result ({}) is not an exit code (expected an integer 0..=255 or nothing)\nhelp: the last statement's value is the result; end the script with `0`, `()` or `exit(N)`",
                value.type_name()
            ));
        };
        u8::try_from(code)
            .map(Outcome::Code)
            .map_err(|_| format!("exit code {code} is outside 0..=255"))
    }
}
