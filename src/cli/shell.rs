//! `cai shell` and `cai exec`: the adapters from flags to [`crate::host::ssh`].
//!
//! What the user typed is checked first (`-e` names, `--tty` without a terminal), before anything
//! is probed or contacted, and every failure of `cai`'s own ends with exit 125 so that it cannot
//! be mistaken for the remote command's status, which is passed through as it is [P51].

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::Args;

use super::{Cli, Ctx};
use crate::effects::Mode;
use crate::error::Error;
use crate::host::ssh::{self, Patience, Session, SshError};
use crate::plan::shell::{self, Remote};
use crate::term;

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The container (default: the only running managed container)
    #[arg(value_name = "CONTAINER")]
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The container (default: the only running managed container)
    #[arg(value_name = "CONTAINER")]
    pub container: Option<String>,
    /// Start the command in the background, confirm it started and print its PID
    #[arg(long, short = 'd', conflicts_with = "tty")]
    pub detach: bool,
    /// Give the command a pseudo-terminal (needs a terminal on stdin)
    #[arg(long, short = 't', conflicts_with = "no_tty")]
    pub tty: bool,
    /// Never give the command a pseudo-terminal
    #[arg(long, short = 'T')]
    pub no_tty: bool,
    /// Set NAME to VALUE for the command (repeatable)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE", value_parser = clap::value_parser!(OsString))]
    pub env: Vec<OsString>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "CMD", value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}

/// `cai shell`: a login shell with a PTY, always, whatever stdin is [P44].
pub fn shell(cli: &Cli, args: &ShellArgs) -> Result<u8, Error> {
    let session = connect(cli, args.container.as_deref())?;
    if std::io::stdin().is_terminal() {
        let remote = shell::remote_command(Remote::Shell, &[], &[]);
        Ok(session.attached(true, &remote)?)
    } else {
        let remote = shell::remote_command(Remote::PipedShell, &[], &[]);
        Ok(session.shell_from_pipe(&remote)?)
    }
}

/// `cai exec`: the command with its arguments byte for byte [P46, P49].
pub fn exec(cli: &Cli, args: &ExecArgs) -> Result<u8, Error> {
    let env = args
        .env
        .iter()
        .map(|e| shell::parse_env(e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SshError::from)?;
    if args.command.is_empty() {
        return Err(SshError::from(shell::ArgError::EmptyCommand).into());
    }
    let stdin_tty = std::io::stdin().is_terminal();
    if args.tty && !stdin_tty {
        return Err(SshError::Input(
            "--tty needs a terminal on stdin, and stdin is not one\nhelp: leave out --tty; without a terminal cai exec runs the command without a PTY".into(),
        )
        .into());
    }
    let tty = !args.detach
        && (args.tty || (!args.no_tty && stdin_tty && std::io::stdout().is_terminal()));
    let session = connect(cli, args.container.as_deref())?;
    if !args.detach {
        let remote = shell::remote_command(Remote::Exec, &env, &args.command);
        return Ok(session.attached(tty, &remote)?);
    }
    let remote = shell::remote_command(Remote::Detach, &env, &args.command);
    let (answer, stderr) = session.detached(&remote)?;
    if !stderr.is_empty() {
        term::err_raw(&term::text(&stderr));
    }
    let log = term::line(&answer.log);
    if answer.running {
        // Printed only now: the job was seen running after its start [P45].
        term::out(&format!("started, pid {} (output: {log})", answer.pid));
        return Ok(crate::error::OK);
    }
    if answer.exit_code == 0 {
        // A short job that already finished is a success, not a failed start [P47].
        term::out(&format!("finished at once with status 0 (output: {log})"));
        return Ok(crate::error::OK);
    }
    let hint = match answer.exit_code {
        127 => " (127: command not found in the container)",
        126 => " (126: found but not executable)",
        _ => "",
    };
    term::err(&format!(
        "error: the detached command exited at once with status {}{hint}; its output is in {log}",
        answer.exit_code
    ));
    Ok(u8::try_from(answer.exit_code).unwrap_or(crate::error::REMOTE_FAILURE))
}

/// Probes the machine, picks the container (starting it when it is stopped) and connects.
fn connect(cli: &Cli, name: Option<&str>) -> Result<Session, Error> {
    // Everything that stops cai here is cai's own failure: exit 125, never the usage code.
    let ctx = Ctx::probe(cli, Mode::Live).map_err(|e| SshError::Input(e.to_string()))?;
    let host = &ctx.host;
    let target = ssh::select(host, name)?;
    let patience = if target.running {
        Patience::Running
    } else {
        ssh::start(host, &target)?;
        term::err(&format!(
            "container {} was stopped; started it, waiting for its SSH server",
            term::line(&target.name)
        ));
        Patience::JustStarted
    };
    Ok(Session::connect(host, &target, patience)?)
}
