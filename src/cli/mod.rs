//! Command-line interface: clap structs and one thin adapter per command.
//!
//! Arguments are handled in two stages: first only what the user typed is checked (clap), then the
//! machine is probed once (terminal, home, `PATH`, config, platform) into a [`Host`]. Every
//! failure reaches [`main`] as one [`Error`], whose [`Error::code`] is the exit status; commands
//! return their own code otherwise. Output that could not be written because stdout was closed is
//! reported there too, once the command has finished. Nothing here decides policy.

pub mod packaging;
mod scripts;
mod shell;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{Config, ConfigError, SITE_CONFIG};
use crate::effects::Mode;
use crate::error::{self as exit, Error};
use crate::host::fs::{Root, trusted};
use crate::host::state::Owners;
use crate::host::trust::Trust;
use crate::host::{Host, HostOptions};
use crate::plan::release;
use crate::render;
use crate::script;
use crate::script::catalog::{Catalog, Script};
use crate::script::sandbox::limits;
use crate::term;

/// The heading of the options every subcommand takes.
const GLOBAL: &str = "Global options";

#[derive(Debug, Parser)]
#[command(
    name = "cai",
    version = env!("CAI_VERSION"),
    about = "Keeps ContainAI hosts safe to update and repair",
    long_about = None,
    propagate_version = true,
    after_help = "Exit codes: 0 success, 1 failure or bad input, 2 refused (nothing changed), 100 updates available (cai update --check), 125 cai shell/exec failed itself, 130 interrupted.\nMore: `cai COMMAND --help`, `cai man`."
)]
pub struct Cli {
    /// Resolve every absolute host path (config, units, data root, socket) under DIR
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub root: Option<PathBuf>,
    /// Read this config file after /etc/containai/config.toml and ~/.config/containai/config.toml
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Answer yes to every confirmation
    #[arg(long, short = 'y', global = true, help_heading = GLOBAL)]
    pub yes: bool,
    /// Print more detail (log::verbose lines)
    #[arg(long, short = 'v', global = true, help_heading = GLOBAL)]
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
    /// Print shell completions (see docs/setup-guide.md for where each shell reads them)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `cai man | man -l -`
    Man,
    /// Bring sysbox, the dockerd bundle and the engine unit to the pinned target (runs update.rhai)
    #[command(after_help = UPDATE_HELP)]
    Update(UpdateArgs),
    /// Health report of this host (runs doctor.rhai)
    #[command(after_help = DOCTOR_HELP)]
    Doctor(DoctorArgs),
    /// Interactive login shell in a managed container, always with a PTY; exits with the shell's
    /// status (125: cai itself failed)
    Shell(shell::ShellArgs),
    /// Run a command in a managed container, every argument byte for byte; exits with its status
    /// (125: cai itself failed)
    Exec(shell::ExecArgs),
    /// What the engine's systemd unit runs, and the units cai manages
    #[command(subcommand)]
    System(SystemCommand),
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
    /// Name, version, source and sha256 of every script and unit template (units/NAME); an
    /// override older than the bundled script it shadows is marked
    List {
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the effective text of a script, or of a unit template as `units/NAME`
    Show {
        /// A catalog script (update, doctor, lib/common, ...), a .rhai file, or units/NAME
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Compile and check the API version without running; render and check unit templates
    /// (NAME.service files); every catalog script and template when no FILE
    Check {
        /// .rhai scripts and NAME.service unit templates to check (default: the whole catalog)
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List the primitives scripts can call
    Api {
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
}

/// Also `OPTS` of update.rhai, with `resume` added (see [`update_opts`]).
#[derive(Debug, Default, Args, serde::Serialize)]
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
    /// Only tell whether updates are available (exit 100 when they are); reads only, takes no lock
    #[arg(long)]
    pub check: bool,
    /// Print the plan or result as JSON
    #[arg(long)]
    pub json: bool,
    /// Do not restart the containers that were stopped
    #[arg(long)]
    pub no_restart: bool,
    /// Restore what the last update replaced (bundle, unit, daemon.json, sysbox package) and
    /// restart the engine and the containers; with --dry-run, show the plan
    #[arg(long, conflicts_with_all = ["check", "require_rollback"])]
    pub rollback: bool,
    /// Refuse to update, before anything stops, when something could not be rolled back (e.g.
    /// the installed sysbox's package is not cached)
    #[arg(long)]
    pub require_rollback: bool,
}

/// Also `OPTS` of doctor.rhai and repair.rhai.
#[derive(Debug, Args, serde::Serialize)]
pub struct DoctorArgs {
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// With --repair: report what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print every check id with a one-line description
    #[arg(long, conflicts_with_all = ["check", "repair"])]
    pub list_checks: bool,
    /// Run only these checks (ids from --list-checks)
    #[arg(long, value_name = "ID", num_args = 1..)]
    pub check: Vec<String>,
    /// Repair file ownership (65534) inside managed volumes; needs --container NAME or --all
    #[arg(long, conflicts_with = "check")]
    pub repair: bool,
    /// With --repair: the labelled container whose volumes to repair
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// With --repair: every container labelled containai.managed=true, running or stopped
    #[arg(long)]
    pub all: bool,
    /// How the volume walk enters directories (tests exercise the fallback with it)
    #[arg(long, value_enum, hide = true, value_name = "RESOLVER")]
    #[serde(skip)]
    pub walk_resolver: Option<WalkResolver>,
}

/// `--walk-resolver`: both are equally strict; `fallback` is what runs without `openat2`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum WalkResolver {
    Auto,
    Fallback,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Stop every running managed container concurrently (the engine unit's stop hook; runs
    /// stop-containers.rhai); exits 0 at once when the engine socket is gone
    StopContainers {
        /// Seconds each container gets to shut down before it is killed (default: config
        /// stop_timeout_secs)
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: Option<u64>,
        /// Print what would be stopped and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Start the containers an interrupted `cai update` stopped, and forget them (runs update.rhai
    /// with --resume)
    Resume {
        /// Print what would be started and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Print each unit cai manages and the engine's daemon.json exactly as they would be written
    /// (or only NAME)
    Unit {
        /// A unit name, e.g. containai-docker.service, or daemon.json
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PackagingCommand {
    /// Patch every deb/*/control under DIR to depend on fuse3 instead of fuse
    PatchControl {
        /// The unpacked sysbox release
        dir: PathBuf,
    },
}

/// Whether the command line names `shell` or `exec` as its subcommand (the first argument that
/// is neither an option nor the value of `--root`/`--config`).
fn remote_command(args: &[OsString]) -> bool {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.to_str() {
            Some("--root" | "--config") => {
                rest.next();
            }
            Some(a) if a.starts_with('-') => {}
            Some("shell" | "exec") => return true,
            _ => return false,
        }
    }
    false
}

/// `cai exec [OPTIONS] CONTAINER CMD...` typed without `--` (clap found CMD unexpected): the same
/// command line with `--` after the container, for the `help:` line.
fn exec_without_separator(args: &[OsString], e: &clap::Error) -> Option<String> {
    if e.kind() != clap::error::ErrorKind::UnknownArgument || args.iter().any(|a| a == "--") {
        return None;
    }
    // An unknown option may be a typo of one of exec's own: clap's message says both.
    let unexpected = e.get(clap::error::ContextKind::InvalidArg)?.to_string();
    if unexpected.starts_with('-') {
        return None;
    }
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let exec = words.iter().position(|w| w == "exec")?;
    if !remote_command(args) {
        return None;
    }
    // The container is the first word after `exec` that is neither an option nor its value.
    let mut i = exec + 1;
    let mut container = None;
    while i < words.len() {
        match words[i].as_str() {
            "-e" | "--env" => i += 1,
            w if w.starts_with('-') => {}
            _ => {
                container = Some(i);
                break;
            }
        }
        i += 1;
    }
    let container = container?;
    if container + 1 >= words.len() {
        return None;
    }
    let mut typed: Vec<String> = words[..=container].to_vec();
    typed.push("--".into());
    typed.extend_from_slice(&words[container + 1..]);
    let shown: Vec<String> = typed
        .into_iter()
        .map(|w| term::shell_word(w.into()))
        .collect();
    Some(format!("cai {}", shown.join(" ")))
}

/// Parses arguments, runs the command, prints any error and returns the exit code.
pub fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if !e.use_stderr() {
                exit::OK
            } else if remote_command(&args) {
                // `cai shell` / `cai exec` keep their own failures apart from the remote
                // command's codes: nothing ran remotely.
                exit::REMOTE_FAILURE
            } else {
                exit::FAILURE
            };
            if let Some(typed) = exec_without_separator(&args, &e) {
                // The docker habit: `cai exec NAME ls` means `cai exec NAME -- ls`.
                let first = e
                    .get(clap::error::ContextKind::InvalidArg)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                term::err(&format!(
                    "error: unexpected argument {} for cai exec: the command goes after `--`\nhelp: {typed}",
                    term::quoted(&first)
                ));
                return code;
            }
            // clap's own rendering already says what is wrong and how to get help.
            let _ = e.print();
            return code;
        }
    };
    let read_only = read_only(&cli.command);
    let json_mode = json_mode(&cli.command);
    let code = match on_script_stack(move || dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(mode) = json_mode.filter(|_| !term::stdout_used()) {
                // Refused before its script ran (root, lock, config): tools reading stdout
                // still get one document, with the reason.
                let message = term::operator(&e.to_string()).into_owned();
                let error = message.split("\nhelp: ").next().unwrap_or_default();
                term::out(&render::run_json(&render::RunDocument {
                    mode,
                    plan: &[],
                    journal: &[],
                    reports: &[],
                    result: &serde_json::Value::Null,
                    exit_code: e.code(),
                    error: Some(error),
                    refusal: None,
                }));
            }
            term::err(&format!(
                "error: {}",
                term::text(&term::operator(&e.to_string()))
            ));
            e.code()
        }
    };
    if term::stdout_lost() && !read_only {
        // The command ran to its end; only its output is incomplete. A command that only reads
        // ends quietly instead, as `cai doctor | head -1` expects: its reader has what it wanted.
        term::err("error: standard output was closed before all output was written");
        if code == exit::OK {
            return exit::FAILURE;
        }
    }
    code
}

/// The mode of the one JSON document a `--json` command prints, when it was asked for one.
fn json_mode(command: &Command) -> Option<Mode> {
    let (json, dry_run) = match command {
        Command::Run(args) => (args.json, args.dry_run),
        Command::Update(args) => (args.json, args.dry_run || args.check),
        Command::Doctor(args) => (args.json && !args.list_checks, args.dry_run),
        _ => (false, false),
    };
    json.then(|| mode(dry_run))
}

/// Whether the command is one of cai's own reports (a health report, a plan, a listing): when
/// its reader goes away early (`cai doctor | head -1`) it ends quietly. A live flow keeps going
/// and says that its output was cut short; so does `cai run`, whose script's output may be the
/// data its caller wanted whole.
fn read_only(command: &Command) -> bool {
    match command {
        Command::Scripts(_) | Command::Completions { .. } | Command::Man => true,
        Command::Run(_) => false,
        Command::Update(args) => args.dry_run || args.check,
        Command::Doctor(args) => !args.repair || args.dry_run,
        Command::System(SystemCommand::StopContainers { dry_run, .. })
        | Command::System(SystemCommand::Resume { dry_run }) => *dry_run,
        Command::System(SystemCommand::Unit { .. }) => true,
        Command::Repl | Command::Shell(_) | Command::Exec(_) | Command::Packaging(_) => false,
    }
}

/// Runs a command on a thread whose stack fits the deepest value the sandbox lets a script
/// build ([`limits::STACK_BYTES`]); the main thread's stack is a few MiB.
fn on_script_stack(
    command: impl FnOnce() -> Result<u8, Error> + Send + 'static,
) -> Result<u8, Error> {
    let thread = std::thread::Builder::new()
        .name("cai".into())
        .stack_size(limits::STACK_BYTES)
        .spawn(command)
        .map_err(|e| {
            Error::Input(format!(
                "cannot start a thread with a {} MiB stack for scripts: {e}",
                limits::STACK_BYTES / (1024 * 1024)
            ))
        })?;
    match thread.join() {
        Ok(result) => result,
        // The panic message is already on stderr; keep the exit status of a panic.
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    match &cli.command {
        Command::Completions { shell } => {
            // Into memory first: the generator panics when its writer fails.
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "cai", &mut text);
            term::out_raw(&String::from_utf8_lossy(&text));
            Ok(exit::OK)
        }
        Command::Man => {
            // Into memory first, like completions.
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut text)
                .map_err(|e| Error::Input(format!("cannot render the manual page: {e}")))?;
            term::out_raw(&String::from_utf8_lossy(&text));
            Ok(exit::OK)
        }
        Command::Packaging(PackagingCommand::PatchControl { dir }) => {
            let code = packaging::patch_control(dir).map_err(Error::from)?;
            Ok(u8::try_from(code).unwrap_or(exit::FAILURE))
        }
        Command::Scripts(cmd) => {
            let ctx = Ctx::probe(&cli, Mode::DryRun)?;
            scripts::run(&ctx, cmd)
        }
        Command::Run(args) => {
            let ctx = Ctx::probe(&cli, mode(args.dry_run))?;
            let script = ctx.script_for(&args.script)?;
            ctx.run_script(&script, args.args.clone(), script::Opts::new(), args.json)
        }
        Command::Update(args) => {
            // `--check` only reads [P70]: it runs under the dry-run gate, so whatever the
            // script asks nothing changes, and it never takes the live lock (a read-only
            // `/run` or a user still gets 0 or 100).
            let ctx = Ctx::probe(&cli, mode(args.dry_run || args.check))?;
            if !args.dry_run && !args.check {
                ctx.require_root("cai update", "it installs packages and restarts the engine")?;
            }
            if !args.check {
                ctx.take_update_lock()?;
            }
            let script = ctx.catalog.resolve("update")?;
            let flags = [
                (args.stop_containers, "--stop-containers"),
                (args.force, "--force"),
                (args.check, "--check"),
                (args.no_restart, "--no-restart"),
                (args.rollback, "--rollback"),
                (args.require_rollback, "--require-rollback"),
            ];
            let plan = if args.check && !args.dry_run {
                ShowPlan::WhenNotEmpty
            } else {
                ShowPlan::Always
            };
            let opts = update_opts(args, false);
            ctx.run_script_showing(&script, flag_args(&flags), opts, args.json, plan)
        }
        Command::Doctor(args) => doctor(&cli, args),
        Command::System(SystemCommand::StopContainers { timeout, dry_run }) => {
            let ctx = Ctx::probe(&cli, mode(*dry_run))?;
            let script = ctx.catalog.resolve("stop-containers")?;
            let args = timeout.iter().map(ToString::to_string).collect();
            let opts = script::opts(&serde_json::json!({ "timeout": timeout, "dry_run": dry_run }));
            ctx.run_script(&script, args, opts, false)
        }
        Command::System(SystemCommand::Resume { dry_run }) => {
            let ctx = Ctx::probe(&cli, mode(*dry_run))?;
            if !dry_run {
                ctx.require_root(
                    "cai system resume",
                    "it takes the update lock and starts the engine and the containers an update stopped",
                )?;
            }
            ctx.take_update_lock()?;
            let script = ctx.catalog.resolve("update")?;
            let args = UpdateArgs {
                dry_run: *dry_run,
                ..UpdateArgs::default()
            };
            let opts = update_opts(&args, true);
            ctx.run_script(&script, vec!["--resume".into()], opts, false)
        }
        Command::System(SystemCommand::Unit { name }) => {
            let ctx = Ctx::probe(&cli, Mode::DryRun)?;
            system_unit(&ctx, name.as_deref())
        }
        Command::Shell(args) => shell::shell(&cli, args),
        Command::Exec(args) => shell::exec(&cli, args),
        Command::Repl => {
            let ctx = Ctx::probe(&cli, Mode::DryRun)?;
            ctx.install_interrupt_handler();
            script::repl::run(&ctx.host, &ctx.catalog)?;
            Ok(exit::OK)
        }
    }
}

/// `cai doctor`: the health report (doctor.rhai), or with `--repair` the ownership repair
/// (repair.rhai). What was typed is checked before the machine is probed; only whether repair
/// exists on this platform needs the probe [P41, P42].
fn doctor(cli: &Cli, args: &DoctorArgs) -> Result<u8, Error> {
    use crate::plan::repair::{Selection, Typed, selection};
    let typed = Typed {
        repair: args.repair,
        container: args.container.clone(),
        all: args.all,
        dry_run: args.dry_run,
    };
    if !typed.repair {
        selection(&typed, false).map_err(Error::Input)?;
    }
    let ctx = Ctx::probe(cli, mode(args.dry_run))?;
    if let Some(resolver) = args.walk_resolver {
        ctx.host.walk_resolver.set(match resolver {
            WalkResolver::Auto => crate::host::volumes::Resolver::Auto,
            WalkResolver::Fallback => crate::host::volumes::Resolver::Fallback,
        });
    }
    let macos = ctx.host.platform == crate::plan::platform::Platform::Macos;
    let Some(chosen) = selection(&typed, macos).map_err(Error::Input)? else {
        let script = ctx.catalog.resolve("doctor")?;
        let mut script_args: Vec<String> = args
            .check
            .iter()
            .map(|id| format!("--check={id}"))
            .collect();
        if args.list_checks {
            script_args.push("--list-checks".into());
        }
        return ctx.run_script(&script, script_args, doctor_opts(args), args.json);
    };
    let script_args = match chosen {
        Selection::All => vec!["--all".to_string()],
        Selection::Container(name) => vec!["--container".to_string(), name],
        Selection::Unsupported => Vec::new(),
    };
    if !args.dry_run {
        ctx.require_root(
            "cai doctor --repair",
            "it changes the owner of files in managed volumes",
        )?;
    }
    let script = ctx.catalog.resolve("repair")?;
    ctx.run_script(&script, script_args, doctor_opts(args), args.json)
}

/// Examples and exit codes at the end of `cai update --help`.
const UPDATE_HELP: &str = "\
Examples:
  cai update --check                  # exit 100 when updates are available, 0 when current
  cai update --dry-run                # the whole plan; nothing changes
  sudo cai update --stop-containers   # stop running agents, update, start them again
  cai update --dry-run --json         # the plan, or why it would refuse, as one JSON document

Exit codes:
  0    up to date, or the update finished
  1    failure or bad input (the error line says which; --json has it as `error`)
  2    refused: containers are running and no --stop-containers; nothing was changed
  100  --check: updates are available
  130  interrupted (Ctrl-C)";

/// Examples and exit codes at the end of `cai doctor --help`.
const DOCTOR_HELP: &str = "\
Examples:
  cai doctor                                  # every check, with a help: line for each problem
  cai doctor --check engine.socket --json     # one check, as JSON
  cai doctor --list-checks                    # every check id and what fixes it
  sudo cai doctor --repair --all --dry-run    # what an ownership repair would change

Exit codes:
  0    no check is `error` (or the repair finished)
  1    a check is `error`, a repair failed, or bad input (--json has the reason as `error`)
  130  interrupted (Ctrl-C)";

/// `OPTS` of doctor.rhai and repair.rhai: `cai doctor`'s flags, and `as_root` (whether this
/// process runs as root, so the report can say which checks were partial).
fn doctor_opts(args: &DoctorArgs) -> script::Opts {
    let mut opts = script::opts(args);
    opts.insert(
        "as_root".into(),
        rustix::process::geteuid().is_root().into(),
    );
    opts
}

/// `OPTS` of update.rhai: `cai update`'s flags, and `resume` (true for `cai system resume`:
/// only restart what an interrupted update stopped).
fn update_opts(args: &UpdateArgs, resume: bool) -> script::Opts {
    let mut opts = script::opts(args);
    opts.insert("resume".into(), resume.into());
    opts
}

/// Prints the rendered units and the engine's daemon configuration: one as it would be written,
/// byte for byte; several with a `==> NAME <==` line before each, as `tail` does.
fn system_unit(ctx: &Ctx, name: Option<&str>) -> Result<u8, Error> {
    let daemon_config = || -> Result<String, Error> {
        let values = ctx
            .host
            .config
            .engine_values()
            .map_err(|e| Error::Input(e.to_string()))?;
        Ok(crate::plan::daemon::render(&values))
    };
    if name == Some(DAEMON_CONFIG_NAME) {
        term::out_raw(&daemon_config()?);
        return Ok(exit::OK);
    }
    let units = match name {
        Some(name) => vec![ctx.catalog.unit_template(name)?],
        None => ctx
            .catalog
            .unit_templates()
            .into_iter()
            .map(|(_, unit)| unit)
            .collect::<Result<Vec<_>, _>>()?,
    };
    let several = units.len() > 1 || name.is_none();
    for unit in units {
        let text = unit.render(&ctx.host.config)?;
        if several {
            term::out(&format!("==> {} <==", unit.name));
        }
        term::out_raw(&text);
    }
    if name.is_none() {
        term::out(&format!("==> {DAEMON_CONFIG_NAME} <=="));
        term::out_raw(&daemon_config()?);
    }
    Ok(exit::OK)
}

/// How `cai system unit` names the engine's daemon configuration.
const DAEMON_CONFIG_NAME: &str = "daemon.json";

/// When a run under the dry-run gate prints its plan: always for `--dry-run`; for
/// `cai update --check`, which runs under that gate only to stay read-only, only when a script
/// asked for a change (which then shows it was not made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShowPlan {
    Always,
    WhenNotEmpty,
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

/// Reads the layered config through the trust rules: [`SITE_CONFIG`] under `--root` and the
/// user's file are optional (absent files are skipped); `explicit` (from `--config`) must exist.
/// Config decides which socket and data root a root process acts on, so nobody but root or the
/// invoking user may have written any of them.
fn read_config(
    trust: &Trust,
    root: &Root,
    user: Option<&Path>,
    explicit: Option<&Path>,
) -> Result<Config, Error> {
    let mut layers = Vec::new();
    let site = Path::new(SITE_CONFIG);
    if let Some(text) = root.read_trusted(trust, site)? {
        layers.push((root.display_path(site), text));
    }
    if let Some(path) = user {
        if let Some(text) = trusted::read(trust, path)? {
            layers.push((path.to_path_buf(), text));
        }
    }
    if let Some(path) = explicit {
        match trusted::read(trust, path)? {
            Some(text) => layers.push((path.to_path_buf(), text)),
            None => return Err(ConfigError::Missing(path.to_path_buf()).into()),
        }
    }
    Ok(Config::from_layers(
        layers
            .iter()
            .map(|(path, text)| (path.clone(), text.as_str())),
    )?)
}

/// Everything a command needs after the machine was probed.
pub(crate) struct Ctx {
    pub host: Rc<Host>,
    pub catalog: Rc<Catalog>,
}

impl Ctx {
    fn probe(cli: &Cli, mode: Mode) -> Result<Ctx, Error> {
        // Opened once; every file under it is reached through this descriptor.
        let root = Arc::new(Root::open(cli.root.as_deref().unwrap_or(Path::new("/")))?);
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let user_config = home
            .as_ref()
            .map(|h| h.join(".config/containai/config.toml"));
        let sudo_id = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        let trust = Trust::new(sudo_id("SUDO_UID"));
        let config = read_config(&trust, &root, user_config.as_deref(), cli.config.as_deref())?;
        let catalog = Catalog::new(
            root.clone(),
            home.as_ref().map(|h| h.join(".config/containai/scripts")),
            trust.clone(),
        );
        let host = Host::new(HostOptions {
            root,
            trust,
            config,
            mode,
            yes: cli.yes,
            verbose: cli.verbose,
            interactive: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
            home,
            path: std::env::var_os("PATH"),
            owners: Owners::probe(sudo_id("SUDO_UID"), sudo_id("SUDO_GID")),
            // Read here once; the host checks them and resolves the release target with them.
            release_env: release::EnvVars {
                sysbox_url: std::env::var_os(release::ENV_SYSBOX_URL),
                sysbox_version: std::env::var_os(release::ENV_SYSBOX_VERSION),
                sysbox_tag: std::env::var_os(release::ENV_SYSBOX_TAG),
                sysbox_sha256: std::env::var_os(release::ENV_SYSBOX_SHA256),
            },
            runtime_dir: std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        })?;
        Ok(Ctx {
            host: Rc::new(host),
            catalog: Rc::new(catalog),
        })
    }

    /// Refuses a live command that changes the machine when not run as root, in one line, before
    /// it touches anything. On macOS the changes happen inside the Lima VM (through `sudo -n`
    /// there), so the Mac user need not be root.
    fn require_root(&self, command: &str, why: &str) -> Result<(), Error> {
        if self.host.platform == crate::plan::platform::Platform::Macos
            || rustix::process::geteuid().is_root()
        {
            return Ok(());
        }
        Err(Error::Input(format!(
            "{command} needs root ({why})\nhelp: {}",
            term::as_root_again()
        )))
    }

    /// Takes the update lock before the update script runs (a dry run only checks it), so the
    /// core's update rules (only recorded containers stop, nothing is fetched after the record,
    /// the record is cleared only once its containers run) hold whatever the script calls.
    fn take_update_lock(&self) -> Result<(), Error> {
        crate::host::update::lock(&self.host)
            .map(|_| ())
            .map_err(|e| Error::Input(e.to_string()))
    }

    /// A `.rhai` path runs that file; a bare name runs the effective catalog script.
    fn script_for(&self, arg: &str) -> Result<Script, Error> {
        let path = Path::new(arg);
        if arg.ends_with(".rhai") || arg.contains('/') {
            if path.exists() {
                return Ok(self.catalog.load_file(path)?);
            }
            if let Some(name) = arg.strip_suffix(".rhai").filter(|n| !n.contains('/')) {
                // `cai run update.rhai` outside stdlib/ means the catalog's update script.
                if let Ok(script) = self.catalog.resolve(name) {
                    let version = script
                        .header()
                        .map(|h| format!(" {}", h.version))
                        .unwrap_or_default();
                    let from = match &script.path {
                        Some(path) => {
                            format!("{}{version}, {}", script.source.as_str(), path.display())
                        }
                        None => format!("{}{version}", script.source.as_str()),
                    };
                    term::err(&format!(
                        "note: no file {}; running catalog script {name} ({})",
                        term::line(&Path::new(".").join(path).display().to_string()),
                        term::line(&from)
                    ));
                    return Ok(script);
                }
            }
            return Err(Error::Input(format!(
                "script file {arg} does not exist\nhelp: check the path, or `cai scripts list` for catalog scripts"
            )));
        }
        Ok(self.catalog.resolve(arg)?)
    }

    /// Ctrl-C once: the script stops at its next operation. Twice: leave as soon as the action
    /// in progress (if any) has finished and its outcome is journalled.
    fn install_interrupt_handler(&self) {
        let flag: Arc<AtomicBool> = self.host.interrupted.clone();
        let in_flight = self.host.gate.in_flight();
        let result = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                let performing = match in_flight.try_lock() {
                    Err(std::sync::TryLockError::WouldBlock) => true,
                    Ok(_) | Err(std::sync::TryLockError::Poisoned(_)) => false,
                };
                if performing {
                    term::err(
                        "\ninterrupted again: waiting for the action in progress to finish and be journalled",
                    );
                }
                // Held by the gate from an action's intent to its outcome entry.
                let _done = in_flight.lock();
                term::err("\ninterrupted again: exiting now");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
            term::err(
                "\ninterrupt: stopping the script after the current step (Ctrl-C again to exit once the action in progress is done)",
            );
        });
        if let Err(e) = result {
            term::err(&format!("warning: cannot install the Ctrl-C handler: {e}"));
        }
    }

    fn run_script(
        &self,
        script: &Script,
        args: Vec<String>,
        opts: script::Opts,
        json: bool,
    ) -> Result<u8, Error> {
        self.run_script_showing(script, args, opts, json, ShowPlan::Always)
    }

    fn run_script_showing(
        &self,
        script: &Script,
        args: Vec<String>,
        opts: script::Opts,
        json: bool,
        show: ShowPlan,
    ) -> Result<u8, Error> {
        self.install_interrupt_handler();
        term::take_script_errors();
        let outcome =
            script::run(&self.host, &self.catalog, script, args, opts, json).map_err(Error::from);
        let gate = &self.host.gate;
        let logged = term::take_script_errors();
        if json {
            // Tools reading stdout get one document whether the script finished or failed.
            let (result, exit_code, error) = match &outcome {
                Ok(finished) => {
                    let code = exit::exit_code(finished.outcome);
                    // `result` is the script's value: null for `()`, else the code it ended with.
                    let value = match finished.outcome {
                        script::Outcome::Done => serde_json::Value::Null,
                        _ => serde_json::Value::from(code),
                    };
                    // A refusal's reason is the document's error, as a failure's is; a script
                    // that failed without `run::refuse` has the error lines it logged, or at
                    // least which script ended with which code.
                    let reason = match &finished.refusal {
                        Some(r) => Some(r.message.clone()),
                        None if code == exit::OK
                            || finished.outcome == script::Outcome::UpdatesAvailable =>
                        {
                            None
                        }
                        None if logged.is_empty() => Some(format!(
                            "{} ended with exit code {code}",
                            script.display_name()
                        )),
                        None => Some(logged.join("; ")),
                    };
                    (value, code, reason)
                }
                Err(e) => (
                    serde_json::Value::Null,
                    e.code(),
                    Some(term::operator(&e.to_string()).into_owned()),
                ),
            };
            let refusal = outcome
                .as_ref()
                .ok()
                .and_then(|f| f.refusal.as_ref())
                .map(|r| serde_json::to_value(r).unwrap_or_default());
            let doc = render::RunDocument {
                mode: gate.mode(),
                plan: &gate.plan(),
                journal: &gate.journal(),
                reports: &self.host.reports.borrow(),
                result: &result,
                exit_code,
                error: error.as_deref(),
                refusal: refusal.as_ref(),
            };
            term::out(&render::run_json(&doc));
        } else if gate.is_dry_run() && (show == ShowPlan::Always || !gate.plan().is_empty()) {
            let end = match &outcome {
                Ok(finished) => match exit::exit_code(finished.outcome) {
                    0 => render::PlanEnd::Complete,
                    code => render::PlanEnd::Exited(code),
                },
                Err(_) => render::PlanEnd::Failed,
            };
            term::out(&render::plan_human(&gate.plan(), end));
        } else if outcome.is_err() && !gate.journal().is_empty() {
            // A live run that failed part-way: say exactly what it had already done.
            term::err(&render::journal_human(&gate.journal()));
        }
        Ok(exit::exit_code(outcome?.outcome))
    }
}

#[cfg(test)]
mod tests {
    use rhai::Dynamic;

    use super::*;

    fn parsed(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("cai").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    /// `OPTS` as a script reads it: every key to its value, shown as Rhai shows it.
    fn shown(opts: &script::Opts) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = opts
            .iter()
            .map(|(k, v)| (k.to_string(), format!("{v:?}")))
            .collect();
        out.sort();
        out
    }

    fn want(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        out.sort();
        out
    }

    /// `--help` and the manual page describe every subcommand and every argument.
    #[test]
    fn every_subcommand_and_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && !arg.is_hide_set() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "cai", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:?}");
    }

    /// Scripts get what clap typed, one key per option, never a string to parse again.
    #[test]
    fn opts_are_the_typed_options_of_each_command() {
        let Command::Update(args) = parsed(&["update", "--check", "--no-restart"]) else {
            panic!("not update");
        };
        assert_eq!(
            shown(&update_opts(&args, false)),
            want(&[
                ("check", "true"),
                ("dry_run", "false"),
                ("force", "false"),
                ("json", "false"),
                ("no_restart", "true"),
                ("require_rollback", "false"),
                ("resume", "false"),
                ("rollback", "false"),
                ("stop_containers", "false"),
            ])
        );
        let resume = update_opts(&UpdateArgs::default(), true);
        assert_eq!(resume["resume"].as_bool(), Ok(true));
        assert_eq!(resume["stop_containers"].as_bool(), Ok(false));

        let Command::Doctor(args) = parsed(&["doctor", "--repair", "--container", "box"]) else {
            panic!("not doctor");
        };
        let opts = script::opts(&args);
        assert_eq!(opts["container"].clone().into_string().unwrap(), "box");
        assert_eq!(opts["all"].as_bool(), Ok(false));
        assert_eq!(opts["repair"].as_bool(), Ok(true));
        assert!(!opts.contains_key("walk_resolver"));

        let Command::Doctor(args) = parsed(&["doctor", "--check", "a", "b"]) else {
            panic!("not doctor");
        };
        let opts = script::opts(&args);
        assert!(opts["container"].is_unit());
        let ids: Vec<String> = opts["check"]
            .clone()
            .into_array()
            .unwrap()
            .into_iter()
            .map(Dynamic::cast::<String>)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
