//! Consent to stop containers, through the real binary in a real pseudo-terminal against the
//! private dockerd: only the typed `--stop-containers` flag, or a person's yes to the dedicated
//! question that names the containers (`prompt::confirm_stop`), lets an update record and stop
//! them. A yes to any other question never does [P74].

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::{Dockerd, TestHost};

/// A host with its engine, one running managed container `agent-1`, and a site `update.rhai`.
struct Fixture {
    host: TestHost,
    engine: Dockerd,
}

impl Fixture {
    fn new(site_update: &str) -> Self {
        let host = TestHost::new();
        host.fakes.add("systemctl", "exit 0");
        let engine = Dockerd::start(&host);
        engine.run_agent("agent-1");
        let site = host.root().join("etc/containai/scripts/update.rhai");
        std::fs::write(
            &site,
            format!("//! version: 9.0.0\n//! api: 1.5\n{site_update}\n0\n"),
        )
        .unwrap();
        std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o644)).unwrap();
        Fixture { host, engine }
    }

    /// `cai ARGS` in a pseudo-terminal: waits for the `[y/N]` question containing `question`,
    /// answers `answer`, and returns the exit code and everything printed.
    fn answer(&self, args: &[&str], question: &str, answer: &str) -> (i32, String) {
        let mut cmd: Command = self.host.cai_tty();
        cmd.args(args).env("TERM", "dumb");
        let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn cai in a PTY");
        let asked = p
            .exp_string("[y/N] ")
            .unwrap_or_else(|e| panic!("no question was asked: {e}"));
        assert!(asked.contains(question), "{asked}");
        p.send_line(answer).unwrap();
        let rest = p
            .exp_eof()
            .unwrap_or_else(|e| panic!("cai did not end: {e}"));
        let code = match p.process().wait().unwrap() {
            rexpect::process::WaitStatus::Exited(_, code) => code,
            other => panic!("cai ended with {other:?}"),
        };
        (code, format!("{asked}[y/N] {answer}\n{rest}"))
    }

    fn record_exists(&self) -> bool {
        self.host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists()
    }
}

/// The site script's steps after its question: record the running managed containers, then
/// stop them (under the lock, so only recorded ones may stop).
const RECORD_AND_STOP: &str = r#"let running = containers::list_managed(false);
update::record("stopping", running.map(|c| #{ id: c.id, name: c.name }));
containers::stop(running.map(|c| c.id), 2);
print("stopped");"#;

/// P74: a yes to a question about something else is no consent to stop containers: the record
/// is refused, nothing stops, and the error says how to agree.
#[test]
fn p74_a_yes_to_an_unrelated_prompt_never_consents_to_stopping_containers() {
    let f = Fixture::new(&format!(
        "update::lock();\nif prompt::confirm(\"show the release notes first?\") {{ print(\"notes\"); }}\n{RECORD_AND_STOP}"
    ));
    let (code, out) = f.answer(&["update"], "show the release notes first?", "y");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refusing to record containers for stopping"),
        "{out}"
    );
    assert!(out.contains("help: cai update --stop-containers"), "{out}");
    assert!(!out.contains("stopped"), "{out}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(!f.record_exists());
}

/// The dedicated question names the containers; a person's yes to it is consent, a no is not,
/// and without a terminal (or with --yes alone) it is never asked and answers no.
#[test]
fn confirm_stop_names_the_containers_and_only_a_persons_yes_consents() {
    let f = Fixture::new(&format!(
        "update::lock();\nlet running = containers::list_managed(false);\nif !prompt::confirm_stop(running) {{ log::error(\"not agreed\"); exit(2); }}\n{RECORD_AND_STOP}"
    ));
    let (code, out) = f.answer(&["update"], "stop 1 container(s) (agent-1)", "n");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not agreed"), "{out}");
    assert_eq!(f.engine.state("agent-1"), "running");

    // No terminal, --yes: never asked, never agreed.
    let (code, _, stderr) = f.host.run(&["update", "--yes"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not agreed"), "{stderr}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert!(!f.record_exists());

    let (code, out) = f.answer(&["update"], "stop 1 container(s) (agent-1)", "y");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(f.engine.state("agent-1"), "exited");
    assert!(f.record_exists());
}

/// A yes to the question that named `agent-1` agrees to stop `agent-1` only: recording another
/// container as well is refused, and nothing stops [P74].
#[test]
fn p74_a_yes_to_confirm_stop_covers_only_the_containers_it_named() {
    let f = Fixture::new(&format!(
        "update::lock();\nlet running = containers::list_managed(false);\nif !prompt::confirm_stop(running.filter(|c| c.name == \"agent-1\")) {{ exit(2); }}\n{RECORD_AND_STOP}"
    ));
    f.engine.run_agent("agent-2");
    let (code, out) = f.answer(&["update"], "stop 1 container(s) (agent-1)", "y");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "refusing to record agent-2 for stopping: the operator agreed to stop only agent-1"
        ),
        "{out}"
    );
    assert!(!out.contains("stopped"), "{out}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert_eq!(f.engine.state("agent-2"), "running");
    assert!(!f.record_exists());
}
