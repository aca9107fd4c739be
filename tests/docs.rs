//! Documentation examples are tests: every fenced block in `README.md` and `docs/*.md` marked
//! runnable is run here through the real binary against the test harness (a private dockerd, fake
//! systemctl, dpkg and sysbox-runc, `--root` at a temporary host, a real sshd serving the managed
//! container `agent-1`), so an example cannot drift from what `cai` does.
//!
//! The marker is in the fence's info string. GitHub takes the first word as the language and
//! ignores the rest, so a marked block still renders as an ordinary shell block:
//!
//! - `sh runnable`: every line is a `cai` command that must exit 0 with no `error:` on stderr;
//! - `sh runnable exit=N`: every line must exit N (a documented failure, such as `cai update`
//!   while no release manifest is bundled);
//! - `rhai runnable file=NAME` (any language but `sh`): not run, saved as NAME for the commands
//!   of later blocks on the same page, in a directory of the page's own;
//! - `text runnable stderr` (any language but `sh`), right after an `sh runnable` block: an
//!   error the page quotes; every line of it must be a line of the stderr of that block's last
//!   command, exactly, so a quoted error cannot drift from what `cai` prints.
//!
//! Empty lines, lines starting with `#` and text after a ` #` are comments. Only plain `cai`
//! commands can be marked runnable (no other programs, pipes, redirections or variables), so what
//! a page shows is exactly what ran. Setup commands such as `sudo ./scripts/test.sh` or
//! `cargo install` stay unmarked. When no page has a runnable command the test fails instead of
//! passing: a marker that stopped matching must not look like a pass.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::{Dockerd, TestHost};

/// One marked block of a page.
#[derive(Debug, PartialEq)]
enum Block {
    /// `cai` commands and the exit code each must return.
    Commands { exit: i32, commands: Vec<Line> },
    /// A file the page's later commands use.
    File { name: String, text: String },
    /// Lines the stderr of the previous block's last command must have.
    Stderr { at: String, lines: Vec<String> },
}

/// One `cai` command: where it is, as written, and its arguments after `cai`.
#[derive(Debug, PartialEq)]
struct Line {
    at: String,
    text: String,
    args: Vec<String>,
}

/// `README.md` and every `docs/*.md`, as (path relative to the repository, text).
fn pages() -> Vec<(String, String)> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo.join("docs"))
        .expect("docs/ directory")
        .map(|e| PathBuf::from("docs").join(e.expect("docs/ entry").file_name()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(repo.join(&p))
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p.display().to_string(), text)
        })
        .collect()
}

/// An open fenced block: its backtick count, info string, first line, and the lines so far.
struct Fence {
    ticks: usize,
    info: String,
    start: usize,
    body: Vec<(usize, String)>,
}

/// The runnable blocks of one page, or every reason a marked block cannot run. A malformed
/// marker is an error, never a skipped block.
fn runnable_blocks(page: &str, text: &str) -> Result<Vec<Block>, Vec<String>> {
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut open: Option<Fence> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let ticks = trimmed.chars().take_while(|c| *c == '`').count();
        let rest = &trimmed[ticks..];
        match open.take() {
            // A backtick fence's info string has no backtick (CommonMark), so inline code such
            // as ```` ```sh runnable ```` at the start of a line opens nothing.
            None if ticks >= 3 && !rest.contains('`') => {
                open = Some(Fence {
                    ticks,
                    info: rest.trim().to_string(),
                    start: number,
                    body: Vec::new(),
                });
            }
            None => {}
            Some(fence) if ticks >= fence.ticks && rest.trim().is_empty() => {
                match block(
                    &format!("{page}:{}", fence.start),
                    page,
                    &fence.info,
                    fence.body,
                ) {
                    Ok(Some(b)) => blocks.push(b),
                    Ok(None) => {}
                    Err(e) => errors.extend(e),
                }
            }
            Some(mut fence) => {
                fence.body.push((number, line.to_string()));
                open = Some(fence);
            }
        }
    }
    if let Some(fence) = open {
        if fence.info.split_whitespace().any(|w| w == "runnable") {
            errors.push(format!(
                "{page}:{}: runnable block is never closed",
                fence.start
            ));
        }
    }
    if errors.is_empty() {
        Ok(blocks)
    } else {
        Err(errors)
    }
}

/// A closed fenced block: `None` when it is not marked runnable.
fn block(
    at: &str,
    page: &str,
    info: &str,
    body: Vec<(usize, String)>,
) -> Result<Option<Block>, Vec<String>> {
    let words: Vec<&str> = info.split_whitespace().collect();
    if !words.contains(&"runnable") {
        return Ok(None);
    }
    let fail = |reason: String| Err(vec![format!("{at}: {reason}")]);
    let (language, attributes) = match words.split_first() {
        Some((language, rest)) if *language != "runnable" => (*language, rest),
        _ => return fail("a runnable block names its language first (```sh runnable)".into()),
    };
    let mut exit = None;
    let mut file = None;
    let mut stderr = false;
    for attribute in attributes {
        if *attribute == "runnable" {
            continue;
        }
        if *attribute == "stderr" {
            stderr = true;
            continue;
        }
        if let Some(code) = attribute.strip_prefix("exit=") {
            match code.parse::<u8>() {
                Ok(code) => exit = Some(i32::from(code)),
                Err(_) => return fail(format!("{attribute}: the exit code must be 0..=255")),
            }
        } else if let Some(name) = attribute.strip_prefix("file=") {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return fail(format!("{attribute}: the file name must be a plain name"));
            }
            file = Some(name.to_string());
        } else {
            return fail(format!(
                "unknown attribute {attribute:?} (a runnable block takes exit=N, file=NAME or stderr)"
            ));
        }
    }
    if stderr {
        if language == "sh" || file.is_some() || exit.is_some() {
            return fail("a quoted stderr is a text block with no file= or exit=".into());
        }
        let lines: Vec<String> = body
            .into_iter()
            .map(|(_, l)| l)
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.is_empty() {
            return fail("a quoted stderr block is empty".into());
        }
        return Ok(Some(Block::Stderr {
            at: at.to_string(),
            lines,
        }));
    }
    match (language, file, exit) {
        ("sh", None, exit) => {
            let mut commands = Vec::new();
            let mut errors = Vec::new();
            for (number, text) in body {
                let at = format!("{page}:{number}");
                match command_args(&text) {
                    Ok(Some(args)) => commands.push(Line {
                        at,
                        text: text.trim().to_string(),
                        args,
                    }),
                    Ok(None) => {}
                    Err(reason) => errors.push(format!("{at}: {reason}")),
                }
            }
            if commands.is_empty() && errors.is_empty() {
                errors.push(format!("{at}: marked runnable but has no `cai` command"));
            }
            if errors.is_empty() {
                Ok(Some(Block::Commands {
                    exit: exit.unwrap_or(0),
                    commands,
                }))
            } else {
                Err(errors)
            }
        }
        ("sh", Some(_), _) => fail("an sh block is run, not saved: drop file=".into()),
        (_, Some(name), None) => {
            let text = body.into_iter().map(|(_, l)| l + "\n").collect();
            Ok(Some(Block::File { name, text }))
        }
        (_, Some(_), Some(_)) => fail("a saved file has no exit code: drop exit=".into()),
        (language, None, _) => fail(format!(
            "only sh blocks are run; a runnable {language} block needs file=NAME to be saved"
        )),
    }
}

/// The arguments after `cai` on one line; `None` for an empty or comment line.
fn command_args(line: &str) -> Result<Option<Vec<String>>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('$' | '`' | '\\') if c == '"' => {
                            return Err(plain_only("a quoted expansion"));
                        }
                        Some(other) => current.push(other),
                        None => return Err("the line has an unclosed quote".into()),
                    }
                }
            }
            '#' if word.is_none() => break,
            c if c.is_whitespace() => words.extend(word.take()),
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '\\' | '*' | '?' | '[' | ']'
            | '{' | '}' | '~' | '!' => return Err(plain_only(&format!("{c:?}"))),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    match words.split_first() {
        None => Ok(None),
        Some((program, args)) if program == "cai" => Ok(Some(args.to_vec())),
        Some((program, _)) => Err(format!(
            "`{program}` is not `cai`: only `cai` commands can be marked runnable; leave setup commands in an unmarked block"
        )),
    }
}

fn plain_only(what: &str) -> String {
    format!(
        "{what}: only plain `cai` commands can be marked runnable (no pipes, redirections, variables or globs)"
    )
}

#[test]
fn every_runnable_example_in_the_docs_runs() {
    let mut marked = Vec::new();
    let mut errors = Vec::new();
    for (page, text) in pages() {
        match runnable_blocks(&page, &text) {
            Ok(blocks) => marked.push((page, blocks)),
            Err(e) => errors.extend(e),
        }
    }
    assert!(
        errors.is_empty(),
        "malformed runnable blocks:\n{}",
        errors.join("\n")
    );
    let commands: usize = marked
        .iter()
        .flat_map(|(_, blocks)| blocks)
        .map(|b| match b {
            Block::Commands { commands, .. } => commands.len(),
            Block::File { .. } | Block::Stderr { .. } => 0,
        })
        .sum();
    assert!(
        commands > 0,
        "no runnable `cai` command found in README.md or docs/*.md; mark examples with ```sh runnable (see the top of tests/docs.rs)"
    );

    let host = TestHost::new();
    host.fakes
        .add_standard("sysbox-runc version 0.6.7+containai.20260127");
    host.fakes.add("fusermount3", "exit 0");
    let engine = Dockerd::start(&host);
    // `cai shell` and `cai exec` examples reach `agent-1` through a real sshd.
    let sshd = support::sshd::Sshd::start();
    sshd.install(host.home.path(), &sshd.known_hosts());
    let port_label = format!("containai.ssh-port={}", sshd.port);
    // Created stopped: pages run in order (README.md, then docs/*.md by name) and `cai update`
    // refuses while managed containers run, so only pages after docs/setup-guide.md may reach
    // it, and the first `cai exec agent-1` starts it.
    engine.docker(&[
        "create",
        "--network",
        "none",
        "--name",
        "agent-1",
        "--label",
        "containai.managed=true",
        "--label",
        &port_label,
        support::TEST_IMAGE,
        "sleep",
        "600",
    ]);

    let mut failures = Vec::new();
    let mut ran = 0;
    for (page, blocks) in &marked {
        // Relative paths in a page's commands resolve here, next to the page's saved files.
        let dir = host
            .home
            .path()
            .join("examples")
            .join(page.replace('/', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The stderr of the last command run on this page, for a quoted error that follows.
        let mut last_stderr: Option<String> = None;
        for block in blocks {
            match block {
                Block::Stderr { at, lines } => {
                    let Some(stderr) = last_stderr.take() else {
                        failures.push(format!(
                            "{at}: a quoted stderr must follow an `sh runnable` block"
                        ));
                        continue;
                    };
                    let missing: Vec<&String> = lines
                        .iter()
                        .filter(|l| !stderr.lines().any(|s| s == l.as_str()))
                        .collect();
                    if !missing.is_empty() {
                        failures.push(format!(
                            "{at}: the page quotes lines cai does not print: {missing:?}\n  stderr:\n{}",
                            framed(&stderr)
                        ));
                    }
                }
                Block::File { name, text } => {
                    last_stderr = None;
                    let path = dir.join(name);
                    std::fs::write(&path, text).unwrap();
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                        .unwrap();
                }
                Block::Commands { exit, commands } => {
                    for line in commands {
                        ran += 1;
                        let out = host
                            .cai()
                            .current_dir(&dir)
                            .args(&line.args)
                            .output()
                            .expect("run cai");
                        let (code, _, stderr) = support::decode(out);
                        last_stderr = Some(stderr.clone());
                        let mut wrong = Vec::new();
                        if code != *exit {
                            wrong.push(format!("exit {code}, the page says {exit}"));
                        }
                        if stderr.contains("panicked") {
                            wrong.push("it panicked".to_string());
                        }
                        if *exit == 0 && stderr.contains("error:") {
                            wrong.push("stderr has `error:`".to_string());
                        }
                        if !wrong.is_empty() {
                            failures.push(format!(
                                "{}: `{}`: {}\n  stderr:\n{}",
                                line.at,
                                line.text,
                                wrong.join(", "),
                                framed(&stderr)
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} documented commands failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A child's stderr, framed so it reads apart from the test's own lines.
fn framed(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn markers_are_read_from_the_fence_info_string() {
    let page = "intro\n\
        ```` ```sh runnable ```` in inline code opens nothing\n\
        ```sh\n\
        cai doctor\n\
        ```\n\
        ```sh runnable\n\
        # a comment\n\
        \n\
        cai doctor          # human\n\
        cai run my.rhai --dry-run -- 'a b' \"c d\"\n\
        ```\n\
        ```toml\n\
        ```sh runnable\n\
        ```\n\
        ````sh runnable exit=1\n\
        cai update --dry-run\n\
        ````\n\
        ```rhai runnable file=my.rhai\n\
        //! api: 1\n\
        ```\n\
        ```text runnable stderr\n\
        error: x\n\
        \n\
        help: y\n\
        ```\n";
    let blocks = runnable_blocks("p.md", page).unwrap();
    let line = |at: &str, text: &str, args: &[&str]| Line {
        at: at.into(),
        text: text.into(),
        args: args.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(
        blocks,
        [
            Block::Commands {
                exit: 0,
                commands: vec![
                    line("p.md:9", "cai doctor          # human", &["doctor"]),
                    line(
                        "p.md:10",
                        "cai run my.rhai --dry-run -- 'a b' \"c d\"",
                        &["run", "my.rhai", "--dry-run", "--", "a b", "c d"]
                    ),
                ],
            },
            Block::Commands {
                exit: 1,
                commands: vec![line(
                    "p.md:16",
                    "cai update --dry-run",
                    &["update", "--dry-run"]
                )],
            },
            Block::File {
                name: "my.rhai".into(),
                text: "//! api: 1\n".into(),
            },
            Block::Stderr {
                at: "p.md:21".into(),
                lines: vec!["error: x".into(), "help: y".into()],
            },
        ]
    );
}

#[test]
fn only_plain_cai_commands_can_be_marked_runnable() {
    for line in [
        "sudo ./scripts/test.sh",
        "cargo install --locked --path .",
        "cai scripts show doctor > /etc/containai/scripts/doctor.rhai",
        "cai doctor --json | jq .",
        "cai run $SCRIPT",
        "cai run \"$SCRIPT\"",
        "cai doctor && cai update",
        "cai run *.rhai",
        "cai run 'unclosed",
    ] {
        assert!(command_args(line).is_err(), "{line}");
    }
    assert_eq!(command_args("  # comment").unwrap(), None);
    assert_eq!(command_args("").unwrap(), None);
    assert_eq!(
        command_args("cai doctor --json   # for tools").unwrap(),
        Some(vec!["doctor".to_string(), "--json".to_string()])
    );
    assert!(
        command_args("sudo ./scripts/test.sh")
            .unwrap_err()
            .contains("only `cai` commands can be marked runnable")
    );
}

#[test]
fn malformed_markers_fail_instead_of_being_skipped() {
    for (page, expect) in [
        ("```sh runnable exit=one\ncai doctor\n```\n", "exit code"),
        ("```sh runnable exit=256\ncai doctor\n```\n", "exit code"),
        (
            "```sh runnable exits=1\ncai doctor\n```\n",
            "unknown attribute",
        ),
        ("```runnable\ncai doctor\n```\n", "names its language first"),
        ("```rhai runnable\nprint(1);\n```\n", "needs file=NAME"),
        ("```rhai runnable file=../x.rhai\n```\n", "plain name"),
        ("```sh runnable file=x.sh\ncai doctor\n```\n", "drop file="),
        ("```sh runnable\n# nothing\n```\n", "has no `cai` command"),
        (
            "```sh runnable\nsudo cai doctor\n```\n",
            "p.md:2: `sudo` is not `cai`",
        ),
        ("```sh runnable\ncai doctor\n", "never closed"),
        (
            "```sh runnable stderr\ncai doctor\n```\n",
            "no file= or exit=",
        ),
        ("```text runnable stderr\n\n```\n", "stderr block is empty"),
    ] {
        let errors = runnable_blocks("p.md", page).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains(expect)),
            "{page}: {errors:?}"
        );
    }
}
