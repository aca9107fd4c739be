//! `ssh::` bindings over [`crate::host::ssh`]: run a command in a running managed container over
//! SSH, attached and collected, or detached and confirmed. Both pass the effect gate (a dry run
//! records them and contacts nothing). The container must be named and running; a script starts
//! it with `containers::start` first. Arguments and environment values reach the remote process
//! byte for byte; environment names are checked before anything is planned.

use std::time::Duration;

use rhai::{Array, Map};
use serde_json::json;

use super::{Answer, Doc, Effect, Registrar, strings};
use crate::effects::Action;
use crate::host::Host;
use crate::host::docker::{self, ExecOutput};
use crate::host::ssh;
use crate::plan::shell::{self, Detached, EnvVar, Remote};

/// A script's remote command gets ten minutes.
const EXEC_TIMEOUT: Duration = Duration::from_secs(600);

pub fn register(reg: &mut Registrar) {
    reg.gated(
        Doc {
            signature: "ssh::exec(container: string, argv: array, env: map) -> map",
            doc: "runs argv under bash -lc in the workspace of a running managed container over SSH, with env exported, no PTY and stdin closed; exit_code, stdout, stderr",
            example: "ssh::exec(\"cai-example\", [\"printf\", \"%s\\n\", \"a b\"], #{LANG: \"C.UTF-8\"})",
        }
        .returns(
            &[
                ("exit_code", "int", "the remote program's exit status (255 is its own, never ssh's)"),
                ("stdout", "string", "its standard output"),
                ("stderr", "string", "its standard error"),
            ],
            r#"#{exit_code: 0, stdout: "a b\n", stderr: ""}"#,
        ),
        |h: &Host, name: &str, argv: Array, env: Map| -> Answer<Effect<ExecOutput>> {
            let (argv, env) = checked("ssh::exec", name, argv, &env)?;
            let remote = shell::remote_command(Remote::Exec, &env, &os(&argv));
            // Values may be secrets: the plan and journal record only the names.
            let names: Vec<&str> = env.iter().map(|v| v.name.as_str()).collect();
            let action = Action::new("ssh.exec", name, json!({ "argv": argv, "env": names }));
            // The remote command gets what is left of the script's budget at most [P71].
            let limits = h.wait_limits();
            limits.check()?;
            let (name, timeout) = (name.to_string(), limits.cap(EXEC_TIMEOUT));
            let effect = Effect::act(action, ExecOutput::default, move |h, ok| {
                ssh::exec(ok, h, &name, &remote, timeout)
            });
            Ok(effect.cut_by(limits))
        },
    );

    reg.gated(
        Doc {
            signature: "ssh::spawn_detached(container: string, argv: array) -> map",
            doc: "starts argv in the background in a running managed container over SSH and confirms it; pid and running, or the early exit_code; log is its output file",
            example: "ssh::spawn_detached(\"cai-example\", [\"sleep\", \"30\"])",
        }
        .returns(
            &[
                ("pid", "int", "the job's PID while it runs; 0 once it ended"),
                ("running", "bool", "whether it still ran when confirmed"),
                ("exit_code", "int", "its exit status when it already ended; -1 while it runs"),
                ("log", "string", "the file in the container that holds its stdout and stderr"),
            ],
            r#"#{pid: 312, running: true, exit_code: -1, log: "/tmp/cai-detached.3Xk2/output"}"#,
        ),
        |_: &Host, name: &str, argv: Array| -> Answer<Effect<Detached>> {
            let (argv, _) = checked("ssh::spawn_detached", name, argv, &Map::new())?;
            let remote = shell::remote_command(Remote::Detach, &[], &os(&argv));
            let action = Action::new("ssh.spawn_detached", name, json!({ "argv": argv }));
            let predicted = || Detached {
                pid: 0,
                running: true,
                exit_code: -1,
                log: String::new(),
            };
            let name = name.to_string();
            Ok(Effect::act(action, predicted, move |h, ok| {
                ssh::spawn_detached(ok, h, &name, &remote)
            }))
        },
    );
}

/// The container name, argv and env of a call, checked before anything is planned.
fn checked(
    what: &str,
    name: &str,
    argv: Array,
    env: &Map,
) -> Result<(Vec<String>, Vec<EnvVar>), String> {
    docker::validate_ref(name).map_err(|e| format!("{what}: {e}"))?;
    let argv = strings(what, argv)?;
    shell::check_argv(&argv).map_err(|e| format!("{what}: {e}"))?;
    let mut vars = Vec::new();
    for (key, value) in env {
        let type_name = value.type_name();
        let value = value.clone().into_string().map_err(|_| {
            format!("{what}: env value of {key} must be a string, found {type_name}")
        })?;
        vars.push(shell::env_var(key, &value).map_err(|e| format!("{what}: {e}"))?);
    }
    Ok((argv, vars))
}

fn os(argv: &[String]) -> Vec<std::ffi::OsString> {
    argv.iter().map(Into::into).collect()
}
