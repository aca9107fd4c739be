//! `containai` keeps ContainAI hosts safe to update and repair.
//!
//! Three layers: the CLI ([`cli`]) adapts flags into a run context, the engine ([`script`]) runs
//! versioned Rhai flows in a locked-down sandbox, and the primitives ([`host`]) do the work.
//! Every mutating primitive passes through the effect gate ([`effects`]), so a dry run is a
//! property of the core rather than a promise each script keeps. Pure decisions live in [`plan`].

pub mod cli;
pub mod config;
pub mod effects;
pub mod error;
pub mod host;
pub mod plan;
pub mod render;
pub mod script;
pub mod term;

/// Runs `cai` with the given arguments and returns the process exit code.
pub fn main_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    cli::main(args)
}
