//! Entry point of `cai`: parses the command line, runs it through the library, prints the error
//! chain and maps the outcome to a documented exit code. No behaviour lives here.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = containai::main_with_args(std::env::args_os());
    ExitCode::from(code)
}
