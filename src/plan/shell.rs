//! What `cai shell` and `cai exec` send to a container, decided without touching the machine: the
//! one command string the remote login shell runs, the quoting that keeps every argument and
//! environment value byte for byte [P46, P49], `-e NAME=VALUE` parsing, the answer of a detached
//! start [P45, P47, P48], and what an `ssh` failure means.
//!
//! The remote side receives a single string that the user's login shell runs with `-c`. Every
//! byte that came from the operator travels in that string as one single-quoted word, and only
//! once: the fixed `bash -lc` program reads them as positional parameters (`"$@"`), so nothing is
//! ever quoted twice and nothing is spliced into code. Environment names are checked against the
//! shell's grammar before they reach code; their values travel as positional parameters too.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The directory commands run in, inside the container.
pub const WORKSPACE: &str = "/home/agent/workspace";
/// The user `cai` logs in as.
pub const USER: &str = "agent";
/// Where containers publish their SSH server.
pub const HOST: &str = "127.0.0.1";
/// The terminal's end-of-file character (`VEOF`, Ctrl-D) as a PTY has it by default: at the
/// start of a line, in canonical mode, the line discipline hands the reader an end of file.
pub const VEOF: u8 = 0x04;
/// First word of the line a detached start prints on stdout.
pub const DETACH_MARKER: &str = "cai-detach";

/// Quotes `arg` as one word for a POSIX shell: wrapped in single quotes, within which every byte
/// but `'` is literal, and each `'` written as `'\''`. Works on bytes, so non-UTF-8 arguments
/// pass unchanged; the empty argument becomes `''`.
pub fn quote(arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arg.len() + 2);
    out.push(b'\'');
    for &b in arg {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// Why an argument cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("-e {0:?}: expected NAME=VALUE\nhelp: write -e {0}=VALUE (an empty value is -e {0}=)")]
    NoEquals(String),
    #[error(
        "-e {0:?}: {1:?} is not a valid environment variable name (letters, digits and _, not starting with a digit)"
    )]
    BadName(String, String),
    #[error("{what} contains a NUL byte, which no process argument can carry")]
    Nul { what: String },
    #[error("the command to run is empty\nhelp: cai exec [CONTAINER] -- COMMAND [ARGS...]")]
    EmptyCommand,
}

/// One `-e NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: OsString,
}

/// Whether `name` is a shell variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses `NAME=VALUE`; the value is everything after the first `=`, bytes included.
pub fn parse_env(arg: &OsStr) -> Result<EnvVar, ArgError> {
    let bytes = arg.as_bytes();
    let shown = || arg.to_string_lossy().into_owned();
    let Some(at) = bytes.iter().position(|&b| b == b'=') else {
        return Err(ArgError::NoEquals(shown()));
    };
    let name = String::from_utf8_lossy(&bytes[..at]).into_owned();
    if !valid_env_name(&name) {
        return Err(ArgError::BadName(shown(), name));
    }
    Ok(EnvVar {
        name,
        value: OsString::from_vec(bytes[at + 1..].to_vec()),
    })
}

/// A checked environment variable from a script (`ssh::exec`'s map).
pub fn env_var(name: &str, value: &str) -> Result<EnvVar, ArgError> {
    if !valid_env_name(name) {
        return Err(ArgError::BadName(
            format!("{name}={value}"),
            name.to_string(),
        ));
    }
    if value.contains('\0') {
        return Err(ArgError::Nul {
            what: format!("the value of {name}"),
        });
    }
    Ok(EnvVar {
        name: name.to_string(),
        value: value.into(),
    })
}

/// Checks a command from a script: not empty, no NUL byte.
pub fn check_argv(argv: &[String]) -> Result<(), ArgError> {
    if argv.is_empty() {
        return Err(ArgError::EmptyCommand);
    }
    match argv.iter().position(|a| a.contains('\0')) {
        Some(i) => Err(ArgError::Nul {
            what: format!("argument {i}"),
        }),
        None => Ok(()),
    }
}

/// What runs remotely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// `cai shell`: an interactive login shell in the workspace.
    Shell,
    /// `cai shell` fed by a pipe: the same shell without line editing, so the terminal stays in
    /// canonical mode and its line discipline turns each end-of-file character ([`VEOF`]) into
    /// an end of file for whoever reads it, the last command or the shell [P69].
    PipedShell,
    /// `cai exec`: the command, attached.
    Exec,
    /// `cai exec --detach`: the command started in the background and confirmed.
    Detach,
}

/// Exports the `-e` values (positional parameters `$1..$n`) and drops them from `"$@"`. Names
/// were checked by [`valid_env_name`], so they can stand in code.
fn exports(env: &[EnvVar]) -> String {
    let mut text = String::new();
    for (i, var) in env.iter().enumerate() {
        text.push_str(&format!("export {}=\"${{{}}}\"\n", var.name, i + 1));
    }
    if !env.is_empty() {
        text.push_str(&format!("shift {}\n", env.len()));
    }
    text
}

/// The `bash -lc` program of an attached command: into the workspace, export, run the argv.
fn exec_program(env: &[EnvVar]) -> String {
    format!("cd {WORKSPACE} || exit 1\n{}exec \"$@\"", exports(env))
}

/// The `bash -lc` program of a detached start. The job gets its own session (`setsid` where the
/// container has it), ignores SIGHUP, reads `/dev/null` and writes a log file, so it holds
/// nothing of the SSH session and survives it [P45]. Then the start is confirmed within half a
/// second: the job still runs (its PID, checked with `kill -0`, which fails once bash has reaped
/// an exited child) or it already ended (its status from `wait`) [P47, P48]. One line on stdout
/// says which; an early failure also copies the start of the log to stderr.
fn detach_program(env: &[EnvVar]) -> String {
    format!(
        r#"cd {WORKSPACE} || exit 1
{exports}dir="$HOME/.cache/containai/detached"
mkdir -p "$dir" || exit 1
log="$dir/$(date +%Y%m%d-%H%M%S)-$$.log"
if command -v setsid >/dev/null 2>&1; then set -- setsid nohup "$@"; else set -- nohup "$@"; fi
"$@" </dev/null >"$log" 2>&1 &
pid=$!
i=0
while [ "$i" -lt 10 ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"; status=$?
    [ "$status" -eq 0 ] || head -c 2000 "$log" >&2
    printf '{DETACH_MARKER} exit %s %s\n' "$status" "$log"
    exit 0
  fi
  sleep 0.05
  i=$((i + 1))
done
printf '{DETACH_MARKER} pid %s %s\n' "$pid" "$log""#,
        exports = exports(env)
    )
}

/// The one string the remote login shell runs with `-c`. `argv` and `env` are empty for
/// [`Remote::Shell`].
pub fn remote_command(kind: Remote, env: &[EnvVar], argv: &[OsString]) -> OsString {
    let program = match kind {
        // Always opens: a missing workspace leaves the shell in the home directory.
        Remote::Shell => return OsString::from(format!("cd {WORKSPACE} || cd; exec bash -l")),
        // Readline would switch the terminal out of canonical mode while it reads a line, and
        // an end-of-file character arriving then is a plain byte (or, queued before, a NUL).
        Remote::PipedShell => {
            return OsString::from(format!(
                "cd {WORKSPACE} || cd; exec bash --login --noediting"
            ));
        }
        Remote::Exec => exec_program(env),
        Remote::Detach => detach_program(env),
    };
    let mut line = b"exec bash -lc ".to_vec();
    line.extend(quote(program.as_bytes()));
    // `$0` of the program, so its own messages read `bash: ...`.
    line.extend_from_slice(b" bash");
    for word in env
        .iter()
        .map(|v| v.value.as_bytes())
        .chain(argv.iter().map(|a| a.as_bytes()))
    {
        line.push(b' ');
        line.extend(quote(word));
    }
    OsString::from_vec(line)
}

/// How a detached start ended, from the line the remote side printed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Detached {
    /// The job's PID while it runs; 0 once it ended.
    pub pid: i64,
    pub running: bool,
    /// The job's exit status when it already ended; -1 while it runs.
    pub exit_code: i64,
    /// The job's stdout and stderr, in the container.
    pub log: String,
}

/// Reads the marker line of a detached start from the remote stdout; `None` when there is none
/// (the program did not get that far).
pub fn parse_detached(stdout: &str) -> Option<Detached> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with(DETACH_MARKER))?;
    let mut words = line.splitn(4, ' ');
    let (_, kind, number, log) = (words.next()?, words.next()?, words.next()?, words.next()?);
    let number: i64 = number.parse().ok()?;
    match kind {
        "pid" if number > 0 => Some(Detached {
            pid: number,
            running: true,
            exit_code: -1,
            log: log.to_string(),
        }),
        "exit" if (0..=255).contains(&number) => Some(Detached {
            pid: 0,
            running: false,
            exit_code: number,
            log: log.to_string(),
        }),
        _ => None,
    }
}

/// What a failed SSH connection attempt means, from `ssh`'s own stderr (`LogLevel=ERROR`, no
/// remote command ran, so every line is the client's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The known-hosts file has another key for `[127.0.0.1]:port`.
    HostKeyChanged,
    /// The known-hosts file has no key for `[127.0.0.1]:port`.
    HostKeyUnknown,
    /// The server refused the key.
    AuthRefused,
    /// Nothing answered, or the connection dropped: worth another try.
    Transient,
}

pub fn classify_connect(stderr: &str) -> ConnectFailure {
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("has changed and you have requested strict checking")
    {
        ConnectFailure::HostKeyChanged
    } else if stderr.contains("host key is known for")
        || stderr.contains("Host key verification failed")
    {
        ConnectFailure::HostKeyUnknown
    } else if stderr.contains("Permission denied")
        || stderr.contains("Too many authentication failures")
    {
        ConnectFailure::AuthRefused
    } else {
        ConnectFailure::Transient
    }
}

/// The known-hosts pattern of a host and port as `ssh` writes it: `[host]:port`, or the bare host
/// for port 22.
pub fn known_hosts_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Whether a known-hosts file has a plain (unhashed) entry for exactly `[host]:port`: one of the
/// comma-separated patterns of a line's host field equals it [P53]. A substring (`[127.0.0.1]:22`
/// inside `[127.0.0.1]:2222`) or another port never counts. Used only to word a refusal; `ssh`
/// itself decides whether a key is accepted.
pub fn known_host_listed(known_hosts: &str, host: &str, port: u16) -> bool {
    let want = known_hosts_pattern(host, port);
    known_hosts.lines().any(|line| {
        let line = line.trim_start();
        if line.starts_with('#') {
            return false;
        }
        let mut fields = line.split_whitespace();
        let mut hosts = fields.next().unwrap_or("");
        // A marker (`@cert-authority`, `@revoked`) comes before the host field.
        if hosts.starts_with('@') {
            hosts = fields.next().unwrap_or("");
        }
        hosts.split(',').any(|p| p == want)
    })
}

/// The port in a container's `containai.ssh-port` label.
pub fn parse_port(label: &str) -> Option<u16> {
    let label = label.trim();
    if label.is_empty() || !label.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    label.parse::<u16>().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The P46/P49 list: every argument must arrive as itself.
    pub(crate) fn hard_arguments() -> Vec<Vec<u8>> {
        [
            &b"two words"[..],
            b"double \" quote",
            b"single ' quote",
            b"'",
            b"''",
            b"$HOME ${HOME} $(id) $((1+1))",
            b"`id`",
            b"a;b",
            b"a && b || c",
            b"line\nbreak",
            b"tab\there",
            b"trailing backslash\\",
            b"\\",
            b"*",
            b"?[a]",
            b"",
            b"~",
            b"-n",
            b"--",
            b"#not a comment",
            b"!event",
            b"a|b>c<d&",
            "caf\u{e9} \u{65e5}\u{672c} \u{1f600}".as_bytes(),
            b"\xff\xfe non-utf8 \x80",
            b"\r",
            b" leading and trailing ",
            b"%s %n",
        ]
        .iter()
        .map(|a| a.to_vec())
        .collect()
    }

    /// Reads one quoted word back the way a POSIX shell does (single quotes and `\'` between
    /// them only, which is all [`quote`] writes).
    fn unquote(word: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut in_quotes = false;
        let mut bytes = word.iter();
        while let Some(&b) = bytes.next() {
            match (in_quotes, b) {
                (true, b'\'') => in_quotes = false,
                (true, b) => out.push(b),
                (false, b'\'') => in_quotes = true,
                (false, b'\\') => out.push(*bytes.next().expect("escaped byte")),
                (false, b) => panic!("unquoted byte {b:?} in {word:?}"),
            }
        }
        assert!(!in_quotes, "unclosed quote in {word:?}");
        out
    }

    #[test]
    fn quoting_round_trips_every_hard_argument() {
        for arg in hard_arguments() {
            let quoted = quote(&arg);
            assert_eq!(unquote(&quoted), arg, "{:?}", String::from_utf8_lossy(&arg));
            // Nothing outside quotes but the `\'` escape.
            assert!(quoted.starts_with(b"'") && quoted.ends_with(b"'"));
        }
        assert_eq!(quote(b""), b"''");
        assert_eq!(quote(b"it's"), b"'it'\\''s'");
    }

    #[test]
    fn quoting_round_trips_through_a_real_shell() {
        // One `sh -c` per case, as sshd runs the remote command: printf each argument between
        // markers and compare the bytes.
        let args = hard_arguments();
        let mut line = b"printf '<%s>' ".to_vec();
        for arg in &args {
            line.extend(quote(arg));
            line.push(b' ');
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(OsStr::from_bytes(&line))
            .output()
            .expect("run sh");
        let mut want = Vec::new();
        for arg in &args {
            want.push(b'<');
            want.extend_from_slice(arg);
            want.push(b'>');
        }
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(out.stdout, want);
    }

    #[test]
    fn the_remote_command_keeps_argv_and_env_byte_for_byte() {
        let args: Vec<OsString> = hard_arguments()
            .into_iter()
            .map(OsString::from_vec)
            .collect();
        let env = vec![
            parse_env(OsStr::new("A=x y 'z' $HOME")).unwrap(),
            parse_env(OsStr::from_bytes(b"B=\xff\n")).unwrap(),
        ];
        let mut argv = vec![OsString::from("sh"), OsString::from("-c")];
        argv.push(OsString::from(
            "printf '<%s>' \"$A\" \"$B\"; shift 0; for a in \"$@\"; do printf '[%s]' \"$a\"; done",
        ));
        argv.push(OsString::from("sh"));
        argv.extend(args.iter().cloned());
        let line = remote_command(Remote::Exec, &env, &argv);
        assert!(
            line.as_bytes()
                .starts_with(b"exec bash -lc 'cd /home/agent/workspace || exit 1\n")
        );
        // Run it here: the same bytes with the workspace replaced by a directory that exists.
        let mut bytes = line.as_bytes().to_vec();
        let from = b"cd /home/agent/workspace";
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        bytes.splice(at..at + from.len(), b"cd /".iter().copied());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(OsStr::from_bytes(&bytes))
            .env_remove("A")
            .env_remove("B")
            .output()
            .expect("run sh");
        let mut want = b"<x y 'z' $HOME><\xff\n>".to_vec();
        for arg in hard_arguments() {
            want.push(b'[');
            want.extend_from_slice(&arg);
            want.push(b']');
        }
        assert_eq!(
            out.stdout,
            want,
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn env_arguments_are_checked() {
        let ok = parse_env(OsStr::new("NAME=a=b")).unwrap();
        assert_eq!(
            (ok.name.as_str(), ok.value.as_os_str()),
            ("NAME", OsStr::new("a=b"))
        );
        assert_eq!(parse_env(OsStr::new("_X=")).unwrap().value, OsString::new());
        assert!(matches!(
            parse_env(OsStr::new("NAME")),
            Err(ArgError::NoEquals(_))
        ));
        for bad in ["=x", "1A=x", "A-B=x", "A B=x", "é=x", "A$=x", "A;B=x"] {
            assert!(
                matches!(parse_env(OsStr::new(bad)), Err(ArgError::BadName(..))),
                "{bad}"
            );
        }
        assert!(env_var("OK", "a\0b").is_err());
        assert!(env_var("1X", "v").is_err());
        assert!(check_argv(&[]).is_err());
        assert!(check_argv(&["a\0".into()]).is_err());
        assert!(check_argv(&["true".into()]).is_ok());
    }

    #[test]
    fn detached_answers_are_read_from_the_marker_line() {
        let running = parse_detached("motd\ncai-detach pid 42 /home/agent/x y.log\n").unwrap();
        assert_eq!(
            running,
            Detached {
                pid: 42,
                running: true,
                exit_code: -1,
                log: "/home/agent/x y.log".into()
            }
        );
        let ended = parse_detached("cai-detach exit 127 /l\n").unwrap();
        assert_eq!((ended.running, ended.exit_code, ended.pid), (false, 127, 0));
        for bad in [
            "",
            "started in background\n",
            "cai-detach pid 0 /l",
            "cai-detach pid x /l",
            "cai-detach exit 300 /l",
            "cai-detach pid 12",
        ] {
            assert_eq!(parse_detached(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn connect_failures_are_told_apart() {
        let changed = "@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key for [127.0.0.1]:2299 has changed and you have requested strict checking.\nHost key verification failed.\n";
        let unknown = "No ED25519 host key is known for [127.0.0.1]:2299 and you have requested strict checking.\nHost key verification failed.\n";
        let cases = [
            (changed, ConnectFailure::HostKeyChanged),
            (unknown, ConnectFailure::HostKeyUnknown),
            (
                "agent@127.0.0.1: Permission denied (publickey).\n",
                ConnectFailure::AuthRefused,
            ),
            (
                "ssh: connect to host 127.0.0.1 port 2298: Connection refused\n",
                ConnectFailure::Transient,
            ),
            (
                "kex_exchange_identification: read: Connection reset by peer\n",
                ConnectFailure::Transient,
            ),
            ("", ConnectFailure::Transient),
        ];
        for (stderr, want) in cases {
            assert_eq!(classify_connect(stderr), want, "{stderr}");
        }
    }

    /// P53: an entry counts only for exactly `[127.0.0.1]:port`.
    #[test]
    fn regression_p53_known_hosts_match_the_exact_host_and_port() {
        let text = "[127.0.0.1]:22220 ssh-ed25519 AAAA1\n\
            127.0.0.1 ssh-ed25519 AAAA2\n\
            [127.0.0.1]:2222x ssh-ed25519 AAAA3\n\
            # [127.0.0.1]:2222 ssh-ed25519 commented\n\
            [127.0.0.10]:2222 ssh-ed25519 AAAA4\n\
            x[127.0.0.1]:2222 ssh-ed25519 AAAA5\n";
        assert!(!known_host_listed(text, HOST, 2222));
        assert!(known_host_listed(text, HOST, 22220));
        assert!(known_host_listed(text, HOST, 22));
        let listed = "other,[127.0.0.1]:2222 ssh-ed25519 AAAA\n";
        assert!(known_host_listed(listed, HOST, 2222));
        assert!(known_host_listed(
            "@revoked [127.0.0.1]:2222 ssh-ed25519 A\n",
            HOST,
            2222
        ));
        assert_eq!(known_hosts_pattern(HOST, 2222), "[127.0.0.1]:2222");
    }

    #[test]
    fn ports_come_from_the_label_as_numbers() {
        assert_eq!(parse_port("2222"), Some(2222));
        assert_eq!(parse_port(" 22 "), Some(22));
        for bad in [
            "", "0", "65536", "-1", "22a", "0x16", "twenty", "+22", "2 2",
        ] {
            assert_eq!(parse_port(bad), None, "{bad}");
        }
    }
}
