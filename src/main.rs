//! Entry point of `cai`: parses the command line, runs it through the library, prints the error
//! chain and maps the outcome to a documented exit code. No behaviour lives here.

use std::process::ExitCode;

/// Counts live heap bytes so a script's memory can be bounded [P72].
#[global_allocator]
static ALLOCATOR: containai::script::memory::Counting = containai::script::memory::Counting;

fn main() -> ExitCode {
    let code = containai::main_with_args(std::env::args_os());
    ExitCode::from(code)
}
