//! The one place `cai` writes to its terminal streams, and the escaping of text shown to a human
//! there.
//!
//! Writes never panic. Rust ignores SIGPIPE, so a reader that went away (`cai run x | head -1`)
//! shows up as an EPIPE error on the next write; it is remembered here and turned into one error
//! line and exit code 1 by the CLI at the end, so a live flow is never cut off between stopping
//! and restarting containers because nobody reads its output any more. A lost stderr has nowhere
//! to be reported and changes nothing.
//!
//! Text that scripts, containers or the engine control is escaped before it reaches a terminal:
//! control characters and Unicode bidirectional controls could otherwise erase lines, recolour
//! the screen or reorder what the operator reads. JSON output is not escaped here; it stays exact.
//!
//! Progress lines ([`Progress`]: a download's bytes, a volume walk's entries) are drawn here too,
//! on stderr and only when it is a terminal, so a pipe or a log never receives cursor movement.

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed. A process-wide flag because stdout itself is process-wide
/// and the Ctrl-C handler writes from its own thread.
static STDOUT_LOST: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to stdout.
pub fn out(text: &str) {
    write_stdout(text, true);
}

/// Writes `text` to stdout as it is, without adding a newline.
pub fn out_raw(text: &str) {
    write_stdout(text, false);
}

/// Writes `text` and a newline to stderr.
pub fn err(text: &str) {
    write_stderr(text, true);
}

/// Writes `text` to stderr without a newline (a prompt waiting for an answer on the same line).
pub fn err_raw(text: &str) {
    write_stderr(text, false);
}

/// Set once anything was written (or tried) to stdout.
static STDOUT_USED: AtomicBool = AtomicBool::new(false);

/// True once anything was written to stdout (or a write was tried): a `--json` run that failed
/// before printing its document prints one then.
pub fn stdout_used() -> bool {
    STDOUT_USED.load(Ordering::SeqCst)
}

/// True once some output meant for stdout could not be written.
pub fn stdout_lost() -> bool {
    STDOUT_LOST.load(Ordering::SeqCst)
}

fn write_stdout(text: &str, newline: bool) {
    STDOUT_USED.store(true, Ordering::SeqCst);
    // After the first failure every later write would fail the same way.
    if stdout_lost() {
        return;
    }
    if write_to(&mut std::io::stdout().lock(), text, newline).is_err() {
        STDOUT_LOST.store(true, Ordering::SeqCst);
    }
}

fn write_stderr(text: &str, newline: bool) {
    let _ = write_to(&mut std::io::stderr().lock(), text, newline);
}

fn write_to(stream: &mut dyn Write, text: &str, newline: bool) -> std::io::Result<()> {
    stream.write_all(text.as_bytes())?;
    if newline {
        stream.write_all(b"\n")?;
    }
    // Flushed at once, so a failure is seen by the write that caused it.
    stream.flush()
}

/// The `log::error` lines the running script printed, in order, and its `help:` lines: a
/// script that ends with a failure code without `run::refuse` has them as its `--json`
/// document's error. Process-wide like the stream they went to.
static SCRIPT_ERRORS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Prints a script's error line: `error: message`, or `help: …` for a line that is advice
/// (`log::error("help: …")`, or the part after `; help: `), never `error: help: …`. The error
/// part is kept for [`take_script_errors`].
pub fn script_error(message: &str) {
    let (error, help) = match message.strip_prefix("help: ") {
        Some(help) => ("", Some(help)),
        None => match message.split_once("; help: ") {
            Some((error, help)) => (error, Some(help)),
            None => (message, None),
        },
    };
    if !error.is_empty() {
        let error = operator(error);
        err(&format!("error: {}", text(&error)));
        if let Ok(mut errors) = SCRIPT_ERRORS.lock() {
            errors.push(error.trim().to_string());
        }
    }
    if let Some(help) = help {
        err(&format!("help: {}", text(&operator(help))));
    }
}

/// The error lines [`script_error`] printed since the last call, emptied.
pub fn take_script_errors() -> Vec<String> {
    SCRIPT_ERRORS
        .lock()
        .map(|mut errors| std::mem::take(&mut *errors))
        .unwrap_or_default()
}

/// Operator text without the `(os error N)` the standard library appends to a system error:
/// the words before it (`No such file or directory`) already say what the system said.
pub fn operator(text: &str) -> Cow<'_, str> {
    if !text.contains("(os error ") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        let tail = &rest[at + " (os error ".len()..];
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &tail[digits + 1..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Escapes a one-line field (a target, an id, a summary): every control character, line breaks
/// included, and every bidirectional control.
pub fn line(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// Escapes text that may span lines (script output, error messages): like [`line`], but line
/// breaks and tabs stay, since neither can move the cursor back over what was written.
pub fn text(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, multiline: bool) -> Cow<'_, str> {
    if !text.chars().any(|c| needs_escape(c, multiline)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c, multiline) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0'..='\x1f' | '\x7f' => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            _ => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char, multiline: bool) -> bool {
    match c {
        '\n' | '\t' => !multiline,
        // C0 controls, DEL and C1 controls (a lone U+009B is a CSI on some terminals).
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => true,
        _ => is_bidi_control(c),
    }
}

/// The Unicode bidirectional formatting characters that can make text display in another order
/// than it is read: the marks, embeddings, overrides and isolates.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// A value named in operator text (a script, a container, a path, a version someone typed), in
/// double quotes with Rust's string escapes: an empty value, spaces at its ends, a quote, a line
/// break, a terminal control or a bidirectional control inside it shows for what it is
/// (`no script named "a b"`). Messages quote values with this, not with `{:?}` of their own.
pub fn quoted(value: impl AsRef<std::ffi::OsStr>) -> String {
    // `OsStr`'s Debug is `str`'s for UTF-8 text, and shows other bytes as `\xNN`.
    format!("{:?}", value.as_ref())
}

/// This very command again under `sudo`, as a `help:` line gives it (`sudo cai update
/// --stop-containers`): what the operator typed, quoted for a shell where needed.
pub fn as_root_again() -> String {
    let typed: Vec<String> = std::env::args_os().skip(1).map(shell_word).collect();
    if typed.is_empty() {
        "sudo cai".into()
    } else {
        format!("sudo cai {}", typed.join(" "))
    }
}

/// An argument as a shell takes it back: bare when it is plain, else in single quotes.
pub fn shell_word(arg: std::ffi::OsString) -> String {
    let arg = arg.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./=:,@+-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// What a [`Progress`] line counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Bytes of a transfer, with the total when it is known (a bar with a rate and an ETA).
    Bytes(Option<u64>),
    /// Entries of a walk, total unknown (a spinner with a rate).
    Entries,
}

impl Count {
    fn template(self) -> &'static str {
        match self {
            Count::Bytes(Some(_)) => "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            Count::Bytes(None) => "{msg} {spinner} {bytes} {bytes_per_sec}",
            Count::Entries => "{msg} {spinner} {pos} entries {per_sec}",
        }
    }
}

/// One progress line on stderr (a download, a volume walk), cleared from the terminal however
/// the work ends, since it is dropped then. A line is cursor movement: it is shown only to a
/// person watching a terminal, never written into a pipe or a log.
#[derive(Debug)]
pub struct Progress(indicatif::ProgressBar);

impl Progress {
    /// A progress line labelled `label` (escaped here), or `None` when stderr is not a terminal.
    pub fn start(label: &str, count: Count) -> Option<Progress> {
        use std::io::IsTerminal;
        std::io::stderr()
            .is_terminal()
            .then(|| Progress::drawn_to(label, count, progress_target()))
    }

    fn drawn_to(label: &str, count: Count, target: indicatif::ProgressDrawTarget) -> Progress {
        let total = match count {
            Count::Bytes(total) => total,
            Count::Entries => None,
        };
        let bar = indicatif::ProgressBar::with_draw_target(total, target);
        // The templates are constants (a test parses each); the default style is a fine
        // fallback all the same.
        if let Ok(style) = indicatif::ProgressStyle::with_template(count.template()) {
            bar.set_style(style);
        }
        bar.set_message(line(label).into_owned());
        Progress(bar)
    }

    /// Counts `n` more.
    pub fn add(&self, n: u64) {
        self.0.inc(n);
    }

    /// Sets the count (a walk that keeps its own counter).
    pub fn set(&self, n: u64) {
        self.0.set_position(n);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Where a progress bar draws: stderr, written through this module like every other line, so
/// `indicatif` never holds a second handle on the terminal. [`Progress`] draws only when stderr
/// is a terminal; piped output never carries cursor movements.
fn progress_target() -> indicatif::ProgressDrawTarget {
    indicatif::ProgressDrawTarget::term_like(Box::new(ProgressTerm))
}

/// The terminal operations `indicatif` needs, as ANSI sequences on stderr.
#[derive(Debug)]
struct ProgressTerm;

impl indicatif::TermLike for ProgressTerm {
    fn width(&self) -> u16 {
        // 80 columns when the size cannot be read: a bar drawn too narrow is harmless.
        rustix::termios::tcgetwinsize(std::io::stderr())
            .map(|size| size.ws_col)
            .ok()
            .filter(|&cols| cols > 0)
            .unwrap_or(80)
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        move_cursor(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        move_cursor(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        move_cursor(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        move_cursor(n, 'D')
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        write_stderr(s, true);
        Ok(())
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        write_stderr(s, false);
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        write_stderr("\r\x1b[2K", false);
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        // Every write is flushed as it is made.
        Ok(())
    }
}

fn move_cursor(n: usize, direction: char) -> std::io::Result<()> {
    if n > 0 {
        write_stderr(&format!("\x1b[{n}{direction}"), false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_show_their_edges_and_controls_escaped() {
        for (value, shown) in [
            ("web-1", "\"web-1\""),
            ("", "\"\""),
            (" a b ", "\" a b \""),
            ("say \"hi\"\\", "\"say \\\"hi\\\"\\\\\""),
            ("a\nb\x1b[2K", "\"a\\nb\\u{1b}[2K\""),
            ("rtl \u{202e}x \u{9b}", "\"rtl \\u{202e}x \\u{9b}\""),
        ] {
            assert_eq!(quoted(value), shown, "{value:?}");
            assert!(
                !quoted(value)
                    .chars()
                    .any(|c| c.is_control() || is_bidi_control(c))
            );
        }
        assert_eq!(quoted(std::path::Path::new("/etc/x y")), "\"/etc/x y\"");
        let bytes = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"a\xffb");
        assert_eq!(quoted(bytes), "\"a\\xFFb\"");
    }

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        let cases = [
            ("plain text", "plain text", "plain text"),
            ("a\x1b[2K\rb", "a\\x1b[2K\\rb", "a\\x1b[2K\\rb"),
            ("two\nlines\tx", "two\\nlines\\tx", "two\nlines\tx"),
            ("rtl \u{202e}txt", "rtl \\u{202e}txt", "rtl \\u{202e}txt"),
            (
                "\u{2066}\u{2069}\u{200f}",
                "\\u{2066}\\u{2069}\\u{200f}",
                "\\u{2066}\\u{2069}\\u{200f}",
            ),
            (
                "del\x7f c1\u{9b}",
                "del\\x7f c1\\u{9b}",
                "del\\x7f c1\\u{9b}",
            ),
            ("\0", "\\x00", "\\x00"),
            ("é ✓ 日本", "é ✓ 日本", "é ✓ 日本"),
        ];
        for (input, one_line, multi_line) in cases {
            assert_eq!(line(input), one_line, "{input:?}");
            assert_eq!(text(input), multi_line, "{input:?}");
        }
    }

    #[test]
    fn progress_lines_count_and_escape_their_label() {
        for count in [Count::Bytes(Some(10)), Count::Bytes(None), Count::Entries] {
            assert!(
                indicatif::ProgressStyle::with_template(count.template()).is_ok(),
                "{count:?}"
            );
        }
        let hidden = indicatif::ProgressDrawTarget::hidden;
        let bytes = Progress::drawn_to("x\x1b[2K.deb", Count::Bytes(Some(10)), hidden());
        bytes.add(3);
        bytes.add(4);
        assert_eq!(bytes.0.position(), 7);
        assert_eq!(bytes.0.length(), Some(10));
        assert_eq!(bytes.0.message(), "x\\x1b[2K.deb");
        let entries = Progress::drawn_to("volume v", Count::Entries, hidden());
        entries.set(42);
        assert_eq!(entries.0.position(), 42);
        assert_eq!(entries.0.length(), None);
        let bar = entries.0.clone();
        drop(entries);
        assert!(bar.is_finished(), "dropping a line clears it");
    }

    #[test]
    fn escaping_twice_changes_nothing_more() {
        let once = line("x\x1b\u{202e}\n").into_owned();
        assert_eq!(line(&once), once);
    }

    #[test]
    fn the_sudo_help_line_quotes_only_what_a_shell_would_split() {
        let word = |a: &str| shell_word(std::ffi::OsString::from(a));
        assert_eq!(word("--root"), "--root");
        assert_eq!(word("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
        assert_eq!(word("a b"), "'a b'");
        assert_eq!(word("it's"), r"'it'\''s'");
        assert_eq!(word(""), "''");
    }

    #[test]
    fn operator_text_drops_os_error_numbers_only() {
        assert_eq!(
            operator("cannot open /x: No such file or directory (os error 2)"),
            "cannot open /x: No such file or directory"
        );
        assert_eq!(
            operator("a: Permission denied (os error 13); b: x (os error 2)"),
            "a: Permission denied; b: x"
        );
        assert_eq!(
            operator("keep (os error x) and (os error 5"),
            "keep (os error x) and (os error 5"
        );
        assert_eq!(operator("plain"), "plain");
    }
}
