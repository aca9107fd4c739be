//! One `cai` run against a [`TestHost`], built up the way just's `tests/test.rs` builds a test:
//! global options, the command's arguments or a script file to run with its own arguments, and
//! the environment; stdin is `/dev/null`. [`Run::run`] returns the exit code, stdout and stderr. It starts from
//! [`TestHost::cai`], so the root, HOME, PATH of fakes and the misleading engine variables are
//! always those of the host.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use super::{TestHost, decode};

#[must_use = "a Run does nothing until .run()"]
pub struct Run<'a> {
    host: &'a TestHost,
    config: Option<PathBuf>,
    args: Vec<OsString>,
    script: Option<PathBuf>,
    script_args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl<'a> Run<'a> {
    /// `cai` with no arguments yet.
    pub fn new(host: &'a TestHost) -> Self {
        Self {
            host,
            config: None,
            args: Vec::new(),
            script: None,
            script_args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `cai run [ARGS] FILE [-- SCRIPT_ARGS]`, where FILE is a script file `name` holding `text`
    /// (written by [`TestHost::script`]); [`Run::args`] then go before the file (`--dry-run`,
    /// `--json`), [`Run::script_args`] after `--`.
    pub fn script(host: &'a TestHost, name: &str, text: &str) -> Self {
        let mut run = Self::new(host);
        run.script = Some(host.script(name, text));
        run
    }

    /// `--config FILE` before the command.
    pub fn config(mut self, file: impl Into<PathBuf>) -> Self {
        self.config = Some(file.into());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The script's own arguments, after `--`.
    pub fn script_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.script_args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs `cai` to its end: (exit code, stdout, stderr).
    pub fn run(self) -> (i32, String, String) {
        let mut cmd = self.host.cai();
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        match &self.script {
            Some(script) => {
                cmd.arg("run").args(&self.args).arg(script);
                if !self.script_args.is_empty() {
                    cmd.arg("--").args(&self.script_args);
                }
            }
            None => {
                cmd.args(&self.args);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        decode(cmd.output().expect("run cai"))
    }
}
