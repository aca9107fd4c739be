//! `cai shell` and `cai exec` against a real `sshd` on loopback serving a real local user `agent`,
//! and real labelled containers on a private dockerd whose `containai.ssh-port` label points at
//! that sshd. PTY behaviour is checked through real pseudo-terminals, piped input through real
//! pipes. One engine, sshd and container serve the tests that only need a running container;
//! tests about which container is picked build their own engine.

mod support;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use support::sshd::{Sshd, free_port, keygen, kill};
use support::{Dockerd, TEST_IMAGE, TestHost};

const WORKSPACE: &str = "/home/agent/workspace";

/// A private engine with a test sshd, and a HOME whose key and known hosts fit it.
struct Fixture {
    host: TestHost,
    engine: Dockerd,
    sshd: Sshd,
    home: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let host = TestHost::new();
        let engine = Dockerd::start(&host);
        let sshd = Sshd::start();
        let home = sshd.home(&sshd.known_hosts());
        Fixture {
            host,
            engine,
            sshd,
            home,
        }
    }

    /// The engine, sshd and `agent-1` shared by the tests that need only a running container;
    /// torn down when the last test holding it is done.
    fn shared() -> Arc<Fixture> {
        static SHARED: Mutex<Weak<Fixture>> = Mutex::new(Weak::new());
        let mut slot = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = slot.upgrade() {
            return f;
        }
        let f = Arc::new(Fixture::new());
        f.add_agent("agent-1", f.sshd.port);
        *slot = Arc::downgrade(&f);
        f
    }

    /// A running managed container whose `containai.ssh-port` label is `port`.
    fn add_agent(&self, name: &str, port: u16) {
        let label = format!("containai.ssh-port={port}");
        self.engine.run(
            name,
            &["containai.managed=true", &label],
            TEST_IMAGE,
            &["sleep", "600"],
        );
    }

    /// `cai` with this fixture's HOME and runtime directory.
    fn cai(&self) -> Command {
        self.cai_home(self.home.path())
    }

    fn cai_home(&self, home: &Path) -> Command {
        let mut cmd = self.host.cai();
        cmd.env("HOME", home)
            .env("XDG_RUNTIME_DIR", home)
            .env_remove("SSH_AUTH_SOCK");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cai().args(args).output().expect("run cai")
    }

    /// Runs `cai` with `input` on a pipe as its stdin, closed after it; fails the test when `cai`
    /// does not end within 30 s.
    fn run_piped(&self, args: &[&str], input: &[u8]) -> Output {
        use std::os::unix::process::CommandExt;
        let mut child = self
            .cai()
            .args(args)
            // Its own process group, so a hang kills the ssh it started too (which holds the
            // output pipes) and the test fails instead of waiting forever.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        finish(child, Duration::from_secs(30))
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that `stdout` is `head` and then `<ARG>` on a line of its own for each argument, byte
/// for byte (what `printf '<%s>\n' ARGS...` prints).
fn assert_bracketed(stdout: &[u8], head: &[u8], args: &[OsString]) {
    let mut want = head.to_vec();
    for arg in args {
        want.extend_from_slice(b"<");
        want.extend_from_slice(arg.as_bytes());
        want.extend_from_slice(b">\n");
    }
    assert_eq!(
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(stdout, want);
}

/// A path in the workspace that no other test uses.
fn marker(name: &str) -> PathBuf {
    let path = Path::new(WORKSPACE).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Waits for a child, failing the test (and killing it) when it hangs.
fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            // The whole group when the child leads one (its ssh holds the pipes open).
            if let Some(group) =
                rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0))
            {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "cai did not terminate within {} s; stdout: {:?}; stderr: {:?}",
                limit.as_secs(),
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The P46/P49 list: spaces, both quotes, `$`, backticks, `;`, `&&`, newline, tab, a lone `'`,
/// a trailing backslash, `*`, an empty argument, non-ASCII and non-UTF-8 bytes.
fn hard_arguments() -> Vec<OsString> {
    [
        &b"two words"[..],
        b"double \" quote",
        b"single ' quote",
        b"'",
        b"$HOME ${HOME} $(id -u)",
        b"`id -u`",
        b"a;b",
        b"true && false",
        b"line\nbreak",
        b"tab\there",
        b"trailing backslash\\",
        b"*",
        b"",
        b"-n",
        b"%s",
        b"~",
        "caf\u{e9} \u{65e5}\u{672c}".as_bytes(),
        b"\xff\xfe\x80 non-utf8",
    ]
    .iter()
    .map(|a| OsString::from_vec(a.to_vec()))
    .collect()
}

/// P46, P49: `printf '<%s>\n' ARGS...` prints every argument exactly as it was given.
#[test]
fn regression_p46_p49_every_argument_arrives_byte_for_byte() {
    let f = Fixture::shared();
    let args = hard_arguments();
    let out = f
        .cai()
        .args(["exec", "agent-1", "--", "printf", "<%s>\\n"])
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_bracketed(&out.stdout, b"", &args);
    assert_eq!(stderr(&out), "");
}

/// P46, P49 for `-e NAME=VALUE`: every value arrives as given, and runs in the workspace.
#[test]
fn regression_p46_p49_env_values_arrive_byte_for_byte() {
    let f = Fixture::shared();
    let args = hard_arguments();
    let mut cmd = f.cai();
    cmd.arg("exec").arg("agent-1");
    for (i, value) in args.iter().enumerate() {
        let mut e = OsString::from(format!("V{i}="));
        e.push(value);
        cmd.arg("-e").arg(e);
    }
    let script = format!(
        "pwd; for i in $(seq 0 {}); do n=V$i; printf '<%s>\\n' \"${{!n}}\"; done",
        args.len() - 1
    );
    let out = cmd.args(["--", "bash", "-c", &script]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_bracketed(&out.stdout, format!("{WORKSPACE}\n").as_bytes(), &args);
}

/// Without a PTY, piped stdin passes unchanged (no echo, no CR) and its end is delivered.
#[test]
fn piped_stdin_passes_through_and_eof_ends_the_command() {
    let f = Fixture::shared();
    let out = f.run_piped(&["exec", "agent-1", "--", "cat"], b"a\nb\n");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, b"a\nb\n");
}

/// stdout and stderr stay apart, and the remote status is cai's status.
#[test]
fn stdout_and_stderr_stay_separate_and_the_status_passes_through() {
    let f = Fixture::shared();
    let out = f.run(&[
        "exec",
        "agent-1",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(code(&out), 7);
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    // No PTY without a terminal.
    let out = f.run(&["exec", "agent-1", "--", "tty"]);
    assert_eq!(stdout(&out), "not a tty\n");
    assert_eq!(code(&out), 1);
}

/// Output streams while the command runs, not when it ends.
#[test]
fn output_is_streamed_live() {
    let f = Fixture::shared();
    let mut child = f
        .cai()
        .args([
            "exec",
            "agent-1",
            "--",
            "sh",
            "-c",
            "echo first; sleep 2; echo second",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first line arrived only after the command ended"
    );
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "second\n");
    assert!(child.wait().unwrap().success());
}

/// P52: a remote `exit 255` is the command's status, and the command ran once.
#[test]
fn regression_p52_remote_255_is_passed_through_and_never_retried() {
    let f = Fixture::shared();
    let count = marker("count-255");
    let script = format!("echo ran >> '{}'; exit 255", count.display());
    let out = f.run(&["exec", "agent-1", "--", "sh", "-c", &script]);
    assert_eq!(code(&out), 255, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "ran\n");
    // The same through the script primitive.
    let rhai = f.host.script(
        "p52.rhai",
        &format!(
            "//! version: 1.0.0\n//! api: 1\nlet r = ssh::exec(\"agent-1\", [\"sh\", \"-c\", \"echo ran >> '{}'; exit 255\"], #{{}});\nprint(`code ${{r.exit_code}}`);\n",
            count.display()
        ),
    );
    let out = f.run(&["run", rhai.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("code 255") || stdout(&out).contains("code 255"));
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "ran\nran\n");
    let _ = std::fs::remove_file(count);
}

/// P44, P51: `cai shell` gets a PTY even with piped stdin, and exits with the shell's status.
#[test]
fn regression_p44_p51_shell_has_a_pty_with_piped_stdin_and_passes_the_exit_code() {
    let f = Fixture::shared();
    let out = f.run_piped(&["shell", "agent-1"], b"tty\nexit 3\n");
    assert!(stdout(&out).contains("/dev/pts/"), "{}", stdout(&out));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    // The end of piped input ends the shell, with its last command's status.
    for (input, want) in [(&b""[..], 0), (b"false\n", 1), (b"(exit 5)", 5)] {
        let out = f.run_piped(&["shell", "agent-1"], input);
        assert_eq!(code(&out), want, "{input:?}: {}", stderr(&out));
    }
    let out = f.run(&["shell", "agent-1"]);
    assert_eq!(code(&out), 0, "stdin /dev/null: {}", stderr(&out));
}

/// P44, P51 through a real terminal: the shell starts in the workspace, its status passes.
#[test]
fn regression_p51_shell_in_a_terminal_exits_with_the_shell_status() {
    let f = Fixture::shared();
    let mut cmd = f.cai_tty();
    cmd.args(["shell", "agent-1"]).env("TERM", "dumb");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn cai in a PTY");
    p.send_line("echo \"in:$(pwd):$(tty | cut -c1-9)\"")
        .unwrap();
    p.exp_string(&format!("in:{WORKSPACE}:/dev/pts/")).unwrap();
    p.send_line("exit 4").unwrap();
    p.exp_eof().unwrap();
    match p.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, code) => assert_eq!(code, 4),
        other => panic!("cai shell ended with {other:?}"),
    }
}

/// `cai exec` gets a PTY when stdin and stdout are terminals, none with `--no-tty`.
#[test]
fn exec_in_a_terminal_gets_a_pty_unless_told_otherwise() {
    let f = Fixture::shared();
    for (flags, want) in [(&[][..], "/dev/pts/"), (&["--no-tty"][..], "not a tty")] {
        let mut cmd = f.cai_tty();
        cmd.arg("exec").args(flags).args(["agent-1", "--", "tty"]);
        let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn cai in a PTY");
        p.exp_string(want).unwrap();
        p.exp_eof().unwrap();
    }
}

/// P45, P47, P48: a detached start is confirmed (PID alive, or the early status), quickly.
#[test]
fn regression_p45_p47_p48_detached_starts_are_confirmed() {
    let f = Fixture::shared();
    let started = Instant::now();
    let out = f.run(&["exec", "--detach", "agent-1", "--", "sleep", "30"]);
    let took = started.elapsed();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A detach that waited for the job would take its 30 s.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let text = stdout(&out);
    let pid: i32 = text
        .split("pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no PID in {text:?}"));
    // The job survived the SSH session, and it is the command that was asked for.
    std::thread::sleep(Duration::from_millis(300));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the detached job runs");
    assert_eq!(cmdline, b"sleep\x0030\x00");
    kill(pid);

    let out = f.run(&["exec", "--detach", "agent-1", "--", "no-such-command"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    assert!(stderr(&out).contains("127"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("started"), "{}", stdout(&out));

    let out = f.run(&["exec", "--detach", "agent-1", "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("status 0"), "{}", stdout(&out));
    // `-e` values reach a detached command too; its early status is cai's status.
    let check = "test \"$X\" = \"a 'b'\" || exit 9";
    let out = f.run(&[
        "exec", "--detach", "-e", "X=a 'b'", "agent-1", "--", "sh", "-c", check,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = f.run(&[
        "exec", "--detach", "-e", "X=other", "agent-1", "--", "sh", "-c", check,
    ]);
    assert_eq!(code(&out), 9, "{}", stderr(&out));

    // The primitive answers the same way.
    let rhai = f.host.script(
        "detach.rhai",
        "//! version: 1.0.0\n//! api: 1\nlet a = ssh::spawn_detached(\"agent-1\", [\"sleep\", \"30\"]);\nlet b = ssh::spawn_detached(\"agent-1\", [\"no-such-command\"]);\nprint(`a ${a.running} ${a.pid} b ${b.running} ${b.exit_code}`);\n",
    );
    let out = f.run(&["run", rhai.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let line = text
        .lines()
        .find(|l| l.starts_with("a "))
        .unwrap_or_else(|| panic!("{text}"));
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        (words[1], words[3], words[4], words[5]),
        ("true", "b", "false", "127"),
        "{line}"
    );
    let pid: i32 = words[2].parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    kill(pid);
}

/// The script primitive: argv and env byte for byte, output collected; a dry run contacts
/// nothing and plans the call.
#[test]
fn ssh_exec_primitive_runs_live_and_is_planned_in_a_dry_run() {
    let f = Fixture::shared();
    let touched = marker("primitive");
    let rhai = f.host.script(
        "exec.rhai",
        &format!(
            "//! version: 1.0.0\n//! api: 1\nlet r = ssh::exec(\"agent-1\", [\"sh\", \"-c\", \"touch '{}'; printf '<%s>' \\\"$X\\\" \\\"$1\\\"; echo e >&2; exit 4\", \"sh\", \"a 'b' $c\"], #{{X: \"x \\\"y\\\"\"}});\nprint(`${{r.exit_code}}|${{r.stdout}}|${{r.stderr}}`);\n",
            touched.display()
        ),
    );
    let out = f.run(&["run", "--dry-run", "--json", rhai.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!touched.exists(), "a dry run ran the command");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["plan"][0]["kind"], "ssh.exec");
    assert_eq!(doc["plan"][0]["details"]["env"][0], "X");

    let out = f.run(&["run", rhai.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("4|<x \"y\"><a 'b' $c>|e\n"), "{text}");
    assert!(touched.exists());
    let _ = std::fs::remove_file(touched);
}

/// cai's own failures exit 125 with three distinct messages, and run nothing.
#[test]
fn not_found_unreachable_and_wrong_host_key_exit_125_with_distinct_messages() {
    let f = Fixture::shared();
    let touched = marker("never");
    let touch = ["--", "touch", touched.to_str().unwrap()];

    let out = f
        .cai()
        .args(["exec", "no-such-agent"])
        .args(touch)
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    let not_found = stderr(&out);
    assert!(
        not_found.contains("container no-such-agent not found"),
        "{not_found}"
    );
    assert!(
        not_found.contains("agent-1"),
        "the help lists the managed containers: {not_found}"
    );

    // A labelled container whose port has no SSH server.
    let dead = free_port();
    f.add_agent(&format!("down-{}", std::process::id()), dead);
    let out = f
        .cai()
        .args(["exec", &format!("down-{}", std::process::id())])
        .args(touch)
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    let unreachable = stderr(&out);
    assert!(unreachable.contains("cannot connect"), "{unreachable}");
    assert!(unreachable.contains("after 3 tries"), "{unreachable}");

    // The known host key for this port is another one.
    let other = tempfile::tempdir().unwrap();
    keygen(&other.path().join("k"));
    let other_key = std::fs::read_to_string(other.path().join("k.pub")).unwrap();
    let mut words = other_key.split_whitespace();
    let wrong = f.sshd.home(&format!(
        "[127.0.0.1]:{} {} {}\n",
        f.sshd.port,
        words.next().unwrap(),
        words.next().unwrap()
    ));
    let out = f
        .cai_home(wrong.path())
        .args(["exec", "agent-1"])
        .args(touch)
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    let changed = stderr(&out);
    assert!(changed.contains("host key"), "{changed}");
    assert!(changed.contains("has changed"), "{changed}");
    assert!(changed.contains("ssh-keygen -f"), "{changed}");

    // No key at all.
    let keyless = f.sshd.home(&f.sshd.known_hosts());
    std::fs::remove_file(keyless.path().join(".config/containai/id_containai")).unwrap();
    let out = f
        .cai_home(keyless.path())
        .args(["exec", "agent-1"])
        .args(touch)
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    let missing = stderr(&out);
    assert!(missing.contains("missing SSH key"), "{missing}");

    let messages = [&not_found, &unreachable, &changed, &missing];
    for (i, a) in messages.iter().enumerate() {
        for b in &messages[i + 1..] {
            assert_ne!(a.lines().next(), b.lines().next());
        }
    }
    assert!(!touched.exists(), "a failed connection ran the command");
}

/// P53: only an entry for exactly `[127.0.0.1]:PORT` is trusted; a neighbouring port or the
/// bare address with the right key is not enough.
#[test]
fn regression_p53_known_hosts_entries_must_match_host_and_port_exactly() {
    let f = Fixture::shared();
    let key = f.sshd.host_key_line();
    let port = f.sshd.port;
    let near = f.sshd.home(&format!(
        "[127.0.0.1]:{port}0 {key}\n[127.0.0.1]:{} {key}\n127.0.0.1 {key}\n[127.0.0.10]:{port} {key}\n",
        port / 10
    ));
    let touched = marker("p53");
    let out = f
        .cai_home(near.path())
        .args(["exec", "agent-1", "--", "touch", touched.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "no SSH host key for container agent-1 ([127.0.0.1]:{port})"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!touched.exists());
}

/// The bad-input list: one clear line each, exit 125 or the usage code, nothing run remotely.
#[test]
fn bad_input_is_refused_before_anything_runs() {
    let f = Fixture::shared();
    let touched = marker("bad-input");
    let t = touched.to_str().unwrap();
    f.engine.run(
        &format!("badport-{}", std::process::id()),
        &["containai.managed=true", "containai.ssh-port=twenty-two"],
        TEST_IMAGE,
        &["sleep", "600"],
    );
    let badport = format!("badport-{}", std::process::id());
    let cases: [(Vec<&str>, i32, &str); 6] = [
        (
            vec!["exec", "-e", "NOVALUE", "agent-1", "--", "touch", t],
            125,
            "expected NAME=VALUE",
        ),
        (
            vec!["exec", "-e", "1BAD=x", "agent-1", "--", "touch", t],
            125,
            "not a valid environment variable name",
        ),
        (
            vec!["exec", "-e", "A-B=x", "agent-1", "--", "touch", t],
            125,
            "not a valid environment variable name",
        ),
        (vec!["exec", "agent-1", "-x", "touch", t], 125, "'-- -x'"),
        (
            vec!["exec", "--tty", "agent-1", "--", "touch", t],
            125,
            "--tty needs a terminal",
        ),
        (
            vec!["exec", &badport, "--", "touch", t],
            125,
            "not a port number",
        ),
    ];
    for (args, want, says) in cases {
        let out = f.run(&args);
        assert_eq!(code(&out), want, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
    // An unlabelled container is refused.
    let plain = format!("plain-{}", std::process::id());
    f.engine.run(&plain, &[], TEST_IMAGE, &["sleep", "600"]);
    let out = f.run(&["exec", &plain, "--", "touch", t]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("not managed"), "{}", stderr(&out));
    assert!(!touched.exists(), "bad input ran the command");
}

/// Selection: the only running managed container; an error listing two; a stopped one is
/// started and reached.
#[test]
fn container_selection_picks_the_only_running_one_and_starts_a_stopped_one() {
    let f = Fixture::new();
    f.add_agent("solo", f.sshd.port);
    // Not candidates: an unlabelled running container and a stopped managed one (whose port
    // has no server, so picking it would fail).
    f.engine.run("plain", &[], TEST_IMAGE, &["sleep", "600"]);
    f.add_agent("dormant", free_port());
    f.engine.docker(&["stop", "-t", "0", "dormant"]);

    let out = f.run(&["exec", "--", "sh", "-c", "echo picked"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "picked\n");
    let out = f.run(&["exec", "--", "sh", "-c", "echo picked"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    f.add_agent("second", f.sshd.port);
    let out = f.run(&["exec", "--", "true"]);
    assert_eq!(code(&out), 125);
    let text = stderr(&out);
    assert!(
        text.contains("2 managed containers are running: second, solo"),
        "{text}"
    );
    let out = f.run(&["shell"]);
    assert_eq!(code(&out), 125);

    f.engine.docker(&["stop", "-t", "0", "solo"]);
    let out = f.run(&["exec", "solo", "--", "sh", "-c", "echo reached"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "reached\n");
    assert!(stderr(&out).contains("started"), "{}", stderr(&out));
    assert_eq!(f.engine.state("solo"), "running");
}

/// The control socket directory must be private; cai refuses one that is not.
#[test]
fn a_shared_control_directory_is_refused() {
    let f = Fixture::shared();
    let home = f.sshd.home(&f.sshd.known_hosts());
    let dir = home.path().join("containai-ssh");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = f
        .cai_home(home.path())
        .args(["exec", "agent-1", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("mode 0700"), "{}", stderr(&out));
}

impl Fixture {
    fn cai_tty(&self) -> Command {
        let mut cmd = self.host.cai_tty();
        cmd.env("HOME", self.home.path())
            .env("XDG_RUNTIME_DIR", self.home.path())
            .env_remove("SSH_AUTH_SOCK");
        cmd
    }
}

/// P69: the end of piped input reaches `cai shell` as the terminal's end of file, not as a
/// command typed into whatever reads the terminal last. With `cat > FILE` as the last command,
/// `cat` gets its end of file, the shell then ends, and the file holds exactly the piped lines.
#[test]
fn p69_piped_shell_ends_when_last_command_reads_the_terminal() {
    let f = Fixture::shared();
    let file = marker("p69");
    let input = format!("cat > '{}'\nfirst line\nsecond line\n", file.display());
    let out = f.run_piped(&["shell", "agent-1"], input.as_bytes());
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let written = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; stdout: {}; stderr: {}",
            file.display(),
            stdout(&out),
            stderr(&out)
        )
    });
    assert_eq!(written, "first line\nsecond line\n");
    // A prompt as the last command reads the end of file too, and the shell still ends.
    let out = f.run_piped(
        &["shell", "agent-1"],
        b"read -r answer; echo \"status $?\"\n",
    );
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("status 1"), "{}", stdout(&out));
    let _ = std::fs::remove_file(file);
}

/// Whether a live control master greets at `path` (the multiplexing hello, as `ssh` sees it).
fn master_greets(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut hello = [0_u8; 12];
    stream.read_exact(&mut hello).is_ok() && hello[4..8] == [0, 0, 0, 1]
}

/// Ends the control master at `path`.
fn stop_master(path: &Path) {
    let status = Command::new("ssh")
        .args(["-F", "/dev/null", "-o"])
        .arg(format!("ControlPath={}", path.display()))
        .args(["-O", "exit", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ssh -O exit");
}

/// A control socket that nobody answers on (a master that died and left it), or a file in its
/// place, is removed and a new master takes its place: the command runs, and the next one finds
/// a live master there.
#[test]
fn a_stale_master_socket_is_replaced() {
    let f = Fixture::shared();
    let home = f.sshd.home(&f.sshd.known_hosts());
    let dir = home.path().join("containai-ssh");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = dir.join(format!("master-{}", f.sshd.port));
    let exec = || {
        f.cai_home(home.path())
            .args(["exec", "agent-1", "--", "echo", "reached"])
            .output()
            .unwrap()
    };

    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(!master_greets(&socket), "the socket is stale");
    let out = exec();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "reached\n");
    assert!(master_greets(&socket), "a new master listens in its place");
    // The next command reuses it.
    let out = exec();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(master_greets(&socket));
    stop_master(&socket);

    std::fs::write(&socket, "not a socket").unwrap();
    let out = exec();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "reached\n");
    assert!(master_greets(&socket), "a new master listens in its place");
    stop_master(&socket);
}

/// A proxy in front of the engine's socket that counts the HTTP requests passing through it.
struct CountingProxy {
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingProxy {
    fn start(listen: &Path, engine: &Path) -> Self {
        use std::io::{Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = UnixListener::bind(listen).unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let engine = engine.to_path_buf();
        // Ends with the test process; each connection ends when either side closes.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut server = UnixStream::connect(&engine).unwrap();
                let (mut client_back, mut server_back) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_back, &mut client_back);
                    let _ = client_back.shutdown(std::net::Shutdown::Write);
                });
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut buf = [0_u8; 65536];
                    loop {
                        let n = match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        // Every request carries exactly one request line.
                        let lines = buf[..n]
                            .windows(11)
                            .filter(|w| w.starts_with(b" HTTP/1.") && w.ends_with(b"\r\n"))
                            .count();
                        counted.fetch_add(lines, Ordering::SeqCst);
                        if server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingProxy { requests }
    }

    fn take(&self) -> usize {
        self.requests.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

/// `cai exec NAME` asks the engine once: one request resolves the container (no version
/// negotiation before it), and the connection is checked without a second `ssh`.
#[test]
fn exec_resolves_the_container_in_one_engine_request() {
    let f = Fixture::shared();
    let proxy_socket = f.host.root().join("var/run/counting.sock");
    let proxy = CountingProxy::start(&proxy_socket, &f.host.socket());
    let config = f.home.path().join("counting.toml");
    std::fs::write(&config, "socket = \"/var/run/counting.sock\"\n").unwrap();
    let exec = |name: &str| {
        f.cai()
            .arg("--config")
            .arg(&config)
            .args(["exec", name, "--", "echo", "reached"])
            .output()
            .unwrap()
    };
    // The first one may make the connection; count the next.
    let out = exec("agent-1");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    proxy.take();
    let out = exec("agent-1");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "reached\n");
    assert_eq!(proxy.take(), 1, "engine requests of one cai exec");
    // A container the engine does not have is told as before, through the engine client.
    let out = exec("nosuch");
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("container nosuch not found on the containai-docker engine"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&proxy_socket).unwrap();
}
