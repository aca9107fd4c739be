//! Command-line interface: clap structs and one thin adapter per command.
//!
//! Arguments are handled in two stages: first only what the user typed is checked (clap), then the
//! machine is probed once (terminal, home, config, platform) into a [`Host`]. Every error reaches
//! [`main`] as one message and becomes exit code 1 (130 after Ctrl-C); commands return their own
//! code otherwise. Output that could not be written because stdout was closed is reported there
//! too, once the command has finished. Nothing here decides policy.

pub mod packaging;
mod scripts;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{Config, SITE_CONFIG};
use crate::effects::Mode;
use crate::exit;
use crate::host::trust::Trust;
use crate::host::{Host, HostOptions, under_root};
use crate::render;
use crate::script::catalog::{Catalog, SITE_DIR, Script};
use crate::script::engine::limits;
use crate::script::{self, RunError};
use crate::term;

#[derive(Debug, Parser)]
#[command(
    name = "cai",
    version,
    about = "Keeps ContainAI hosts safe to update and repair",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    /// Resolve every absolute host path (config, units, data root, socket) under DIR
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Read this config file after /etc/containai/config.toml and ~/.config/containai/config.toml
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Answer yes to every confirmation
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Print more detail (log::verbose lines)
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script file, or a catalog script by name
    Run(RunArgs),
    /// Interactive Rhai session on the primitives (starts in dry-run)
    Repl,
    /// Inspect the script catalog
    #[command(subcommand)]
    Scripts(ScriptsCommand),
    /// Print shell completions
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Bring sysbox, the dockerd bundle and the engine unit to the pinned target (runs update.rhai)
    Update(UpdateArgs),
    /// Health report of this host (runs doctor.rhai)
    Doctor(DoctorArgs),
    /// Packaging helpers used by scripts/build-sysbox.sh
    #[command(subcommand, hide = true)]
    Packaging(PackagingCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A path to a .rhai file, or the name of a catalog script (see `cai scripts list`)
    #[arg(value_name = "SCRIPT")]
    pub script: String,
    /// Record the actions the script would take and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan, journal and result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Arguments for the script, after `--`
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ScriptsCommand {
    /// Name, version, source and sha256 of every script
    List,
    /// Print the effective text of a script
    Show { name: String },
    /// Compile and check the API version without running (all catalog scripts when no FILE)
    Check { files: Vec<PathBuf> },
    /// List the primitives scripts can call
    Api {
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Print the complete plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Stop running managed containers for the update (and restart them afterwards)
    #[arg(long)]
    pub stop_containers: bool,
    /// Skip confirmation prompts (does not stop containers by itself)
    #[arg(long)]
    pub force: bool,
    /// Only tell whether updates are available (exit 100 when they are)
    #[arg(long)]
    pub check: bool,
    /// Print the plan or result as JSON
    #[arg(long)]
    pub json: bool,
    /// Do not restart the containers that were stopped
    #[arg(long)]
    pub no_restart: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Record planned actions instead of performing them
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum PackagingCommand {
    /// Patch every deb/*/control under DIR to depend on fuse3 instead of fuse
    PatchControl { dir: PathBuf },
}

/// Parses arguments, runs the command, prints any error and returns the exit code.
pub fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::FAILURE
            } else {
                exit::OK
            };
            // clap's own rendering already says what is wrong and how to get help.
            let _ = e.print();
            return code;
        }
    };
    let code = match on_script_stack(move || dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            let interrupted = e
                .downcast_ref::<RunError>()
                .is_some_and(RunError::interrupted);
            term::err(&format!("error: {}", term::text(&chain(&e))));
            if interrupted {
                exit::INTERRUPTED
            } else {
                exit::FAILURE
            }
        }
    };
    if term::stdout_lost() {
        // The command ran to its end; only its output is incomplete.
        term::err("error: standard output was closed before all output was written");
        if code == exit::OK {
            return exit::FAILURE;
        }
    }
    code
}

/// Runs a command on a thread whose stack fits the deepest value the sandbox lets a script
/// build ([`limits::STACK_BYTES`]); the main thread's stack is a few MiB.
fn on_script_stack(
    command: impl FnOnce() -> anyhow::Result<u8> + Send + 'static,
) -> anyhow::Result<u8> {
    let thread = std::thread::Builder::new()
        .name("cai".into())
        .stack_size(limits::STACK_BYTES)
        .spawn(command)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start a thread with a {} MiB stack for scripts: {e}",
                limits::STACK_BYTES / (1024 * 1024)
            )
        })?;
    match thread.join() {
        Ok(result) => result,
        // The panic message is already on stderr; keep the exit status of a panic.
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Completions { shell } => {
            // Into memory first: the generator panics when its writer fails.
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "cai", &mut text);
            term::out_raw(&String::from_utf8_lossy(&text));
            Ok(exit::OK)
        }
        Command::Packaging(PackagingCommand::PatchControl { dir }) => {
            let code = packaging::patch_control(dir)?;
            Ok(u8::try_from(code).unwrap_or(exit::FAILURE))
        }
        Command::Scripts(cmd) => {
            let ctx = Ctx::probe(&cli, Mode::DryRun)?;
            scripts::run(&ctx, cmd)
        }
        Command::Run(args) => {
            let ctx = Ctx::probe(&cli, mode(args.dry_run))?;
            let script = ctx.script_for(&args.script)?;
            ctx.run_script(&script, args.args.clone(), args.json)
        }
        Command::Update(args) => {
            let ctx = Ctx::probe(&cli, mode(args.dry_run))?;
            let script = ctx.catalog.resolve("update")?;
            let flags = [
                (args.stop_containers, "--stop-containers"),
                (args.force, "--force"),
                (args.check, "--check"),
                (args.no_restart, "--no-restart"),
            ];
            ctx.run_script(&script, flag_args(&flags), args.json)
        }
        Command::Doctor(args) => {
            let ctx = Ctx::probe(&cli, mode(args.dry_run))?;
            let script = ctx.catalog.resolve("doctor")?;
            ctx.run_script(&script, Vec::new(), args.json)
        }
        Command::Repl => {
            let ctx = Ctx::probe(&cli, Mode::DryRun)?;
            ctx.install_interrupt_handler();
            script::repl::run(&ctx.host, &ctx.catalog)
        }
    }
}

fn mode(dry_run: bool) -> Mode {
    if dry_run { Mode::DryRun } else { Mode::Live }
}

fn flag_args(flags: &[(bool, &str)]) -> Vec<String> {
    flags
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| (*f).to_string())
        .collect()
}

/// Everything a command needs after the machine was probed.
pub(crate) struct Ctx {
    pub host: Rc<Host>,
    pub catalog: Rc<Catalog>,
}

impl Ctx {
    fn probe(cli: &Cli, mode: Mode) -> anyhow::Result<Ctx> {
        let root = match &cli.root {
            Some(root) => {
                let is_dir = std::fs::metadata(root).map(|m| m.is_dir());
                match is_dir {
                    Ok(true) => root.clone(),
                    Ok(false) => anyhow::bail!(
                        "--root {} is not a directory\nhelp: pass the directory that holds the host tree",
                        root.display()
                    ),
                    Err(e) => anyhow::bail!(
                        "cannot use --root {}: {e}\nhelp: pass an existing directory",
                        root.display()
                    ),
                }
            }
            None => PathBuf::from("/"),
        };
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let user_config = home
            .as_ref()
            .map(|h| h.join(".config/containai/config.toml"));
        let trust = Trust::new(std::env::var("SUDO_UID").ok().and_then(|u| u.parse().ok()));
        let config = Config::load(
            &trust,
            &under_root(&root, Path::new(SITE_CONFIG)),
            user_config.as_deref(),
            cli.config.as_deref(),
        )?;
        let catalog = Catalog::new(
            under_root(&root, Path::new(SITE_DIR)),
            home.as_ref().map(|h| h.join(".config/containai/scripts")),
            trust.clone(),
        );
        let host = Host::new(HostOptions {
            root,
            config,
            mode,
            yes: cli.yes,
            verbose: cli.verbose,
            interactive: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
            home,
        })?;
        Ok(Ctx {
            host: Rc::new(host),
            catalog: Rc::new(catalog),
        })
    }

    /// A `.rhai` path runs that file; a bare name runs the effective catalog script.
    fn script_for(&self, arg: &str) -> anyhow::Result<Script> {
        let path = Path::new(arg);
        if arg.ends_with(".rhai") || arg.contains('/') {
            if path.exists() {
                return Ok(self.catalog.load_file(path)?);
            }
            if let Some(name) = arg.strip_suffix(".rhai").filter(|n| !n.contains('/')) {
                // `cai run update.rhai` outside stdlib/ means the catalog's update script.
                if let Ok(script) = self.catalog.resolve(name) {
                    return Ok(script);
                }
            }
            anyhow::bail!(
                "script file {arg} does not exist\nhelp: check the path, or `cai scripts list` for catalog scripts"
            );
        }
        Ok(self.catalog.resolve(arg)?)
    }

    /// Ctrl-C once: the script stops at its next operation. Twice: leave at once.
    fn install_interrupt_handler(&self) {
        let flag: Arc<AtomicBool> = self.host.interrupted.clone();
        let result = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                term::err("\ninterrupted again: exiting now");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
            term::err(
                "\ninterrupt: stopping the script after the current step (Ctrl-C again to exit now)",
            );
        });
        if let Err(e) = result {
            term::err(&format!("warning: cannot install the Ctrl-C handler: {e}"));
        }
    }

    fn run_script(&self, script: &Script, args: Vec<String>, json: bool) -> anyhow::Result<u8> {
        self.install_interrupt_handler();
        let outcome = script::run(&self.host, &self.catalog, script, args, json);
        let gate = &self.host.gate;
        if json {
            // Tools reading stdout get one document whether the script finished or failed.
            let (result, exit_code, error) = match &outcome {
                Ok(finished) => (finished.value.clone(), finished.exit_code, None),
                Err(e) => {
                    let code = if e.interrupted() {
                        exit::INTERRUPTED
                    } else {
                        exit::FAILURE
                    };
                    (serde_json::Value::Null, code, Some(e.to_string()))
                }
            };
            let doc = render::RunDocument {
                mode: gate.mode(),
                plan: &gate.plan(),
                journal: &gate.journal(),
                reports: &self.host.reports.borrow(),
                result: &result,
                exit_code,
                error: error.as_deref(),
            };
            term::out(&render::run_json(&doc));
        } else if gate.is_dry_run() {
            term::out(&render::plan_human(&gate.plan()));
        } else if outcome.is_err() && !gate.journal().is_empty() {
            // A live run that failed part-way: say exactly what it had already done.
            term::err(&render::journal_human(&gate.journal()));
        }
        Ok(outcome?.exit_code)
    }
}
