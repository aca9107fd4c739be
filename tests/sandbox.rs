//! The script sandbox and catalog, end to end through the real binary: what a script cannot do,
//! how errors point at the source, API versions, and vetting of overrides.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::{Run, TestHost};

const HEADER: &str = "//! version: 1.0.0\n//! api: 1\n";

fn run_text(host: &TestHost, body: &str) -> (i32, String, String) {
    Run::script(host, "t.rhai", &format!("{HEADER}{body}")).run()
}

#[test]
fn import_serves_module_names_only() {
    let host = TestHost::new();
    for (body, expect) in [
        (
            "import \"/etc/passwd\" as p;",
            "invalid module name \"/etc/passwd\"",
        ),
        ("import \"../x\" as x;", "invalid module name \"../x\""),
        (
            "import \"lib/../../etc/passwd\" as x;",
            "invalid module name",
        ),
        (
            "import \"lib/no_such_module\" as x;",
            "no script named \"lib/no_such_module\"",
        ),
        (
            "import \"update\" as x;",
            "only modules under lib/ can be imported",
        ),
    ] {
        let (code, _, stderr) = run_text(&host, body);
        assert_eq!(code, 1, "{body}: {stderr}");
        assert!(stderr.contains(expect), "{body}: {stderr}");
        assert!(
            stderr.contains("t.rhai:3:"),
            "{body}: no location in {stderr}"
        );
    }
    // The bundled shared module resolves.
    let (code, stdout, stderr) = run_text(
        &host,
        "import \"lib/common\" as c;\nprint(c::names([#{name: \"a\", id: \"1\"}]));",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().next(), Some("[\"a\"]"));
}

#[test]
fn eval_is_disabled() {
    let host = TestHost::new();
    let (code, _, stderr) = run_text(&host, "let x = eval(\"1 + 1\");");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("t.rhai:3:9") && stderr.contains("eval"),
        "{stderr}"
    );
}

#[test]
fn runaway_loop_stops_on_the_wall_clock_budget() {
    let host = TestHost::new();
    std::fs::write(
        host.root().join("etc/containai/config.toml"),
        "script_timeout_secs = 1\n",
    )
    .unwrap();
    let start = Instant::now();
    let (code, _, stderr) = run_text(&host, "loop {}");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("wall-clock budget of 1 s"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn unbounded_string_growth_is_stopped() {
    let host = TestHost::new();
    let (code, _, stderr) = run_text(&host, "let s = \"x\";\nloop { s += s; }");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("exceeds the sandbox limit"), "{stderr}");
    assert!(stderr.contains("t.rhai:4:"), "{stderr}");
}

#[test]
fn runaway_recursion_is_stopped() {
    let host = TestHost::new();
    let (code, _, stderr) = run_text(&host, "fn f(n) { f(n + 1) }\nf(0);");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("call depth limit"), "{stderr}");
}

#[test]
fn ctrl_c_stops_a_running_script() {
    use std::io::BufRead;
    let host = TestHost::new();
    let script = host.script(
        "spin.rhai",
        &format!("{HEADER}print(\"spinning\");\nloop {{}}"),
    );
    let mut child = host.spawn_run(&script);
    // Interrupt only once the script is running, so the handler is surely installed.
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "spinning\n");
    support::interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("script interrupted by Ctrl-C"), "{stderr}");
}

#[test]
fn errors_show_file_line_column_source_and_caret() {
    let host = TestHost::new();
    let (code, _, stderr) = run_text(&host, "let a = 1;\nlet b = no_such_fn(a);\n");
    assert_eq!(code, 1);
    let path = host.home.path().join("scripts/t.rhai");
    let expected = format!(
        "error: {}:4:9: function not found: no_such_fn (i64)\n  |\n4 | let b = no_such_fn(a);\n  |         ^",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    let (code, _, stderr) = run_text(&host, "let a = ;\n");
    assert_eq!(code, 1);
    assert!(stderr.contains(":3:9: syntax error"), "{stderr}");

    let (code, _, stderr) = run_text(&host, "throw \"custom failure\";\n");
    assert_eq!(code, 1);
    assert!(
        stderr.contains(":3:1:") && stderr.contains("custom failure"),
        "{stderr}"
    );
}

#[test]
fn scripts_declare_version_and_api_and_unsupported_api_is_refused() {
    let host = TestHost::new();
    let future = host.script(
        "future.rhai",
        "//! version: 2.0.0\n//! api: 2\nprint(\"ran\");\n",
    );
    let (code, stdout, stderr) = host.run(&["run", future.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(!stdout.contains("ran"));
    assert!(
        stderr.contains(&format!(
            "needs primitive API ^2 but this cai provides API {}",
            containai::script::api::API_VERSION
        )),
        "{stderr}"
    );
    let (code, _, stderr) = host.run(&["scripts", "check", future.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("needs primitive API ^2"), "{stderr}");

    // An api line is checked even when the version line is missing.
    let future = host.script("future-bare.rhai", "//! api: 2\nprint(\"ran\");\n");
    let (code, stdout, stderr) = host.run(&["run", future.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(!stdout.contains("ran"));
    assert!(stderr.contains("needs primitive API ^2"), "{stderr}");
}

#[test]
fn a_headerless_file_runs_against_the_current_api_with_a_note() {
    let host = TestHost::new();
    let bare = host.script("bare.rhai", "print(\"hi\");\n");
    let note = format!(
        "note: {} declares no version or api, so it runs against API {} (add `//! version: 1.0.0` and `//! api: 1` to pin it)\n",
        bare.display(),
        containai::script::api::API_VERSION
    );
    let (code, stdout, stderr) = host.run(&["run", bare.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "hi\n");
    assert_eq!(stderr, note);

    // The note stays off stdout, which carries only the JSON document.
    let (code, stdout, stderr) = host.run(&["run", "--json", bare.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["exit_code"], 0);
    assert!(stderr.contains(&note), "{stderr}");

    let (code, stdout, stderr) = host.run(&["scripts", "check", bare.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("ok     "), "{stdout}");
    let api = containai::script::api::API_VERSION;
    assert!(stdout.contains(&format!("(file, api ^{api})")), "{stdout}");
    assert_eq!(stderr, note);

    // Half a header runs too, and the note names the missing line.
    let half = host.script("half.rhai", "//! version: 1.0.0\nprint(\"half\");\n");
    let (code, stdout, stderr) = host.run(&["run", half.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "half\n");
    assert!(
        stderr.contains(&format!(
            "declares no api, so it runs against API {api} (add `//! api: 1`"
        )),
        "{stderr}"
    );

    // A full header gets no note.
    let (code, _, stderr) = run_text(&host, "print(\"pinned\");");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("note:"), "{stderr}");
}

/// Overrides and modules are looked up by name, so only their header says what they were
/// written for: the leniency for files named on the command line does not extend to them.
#[test]
fn headerless_overrides_and_modules_are_still_refused() {
    let host = TestHost::new();
    let site = host.root().join("etc/containai/scripts/doctor.rhai");
    std::fs::write(&site, "print(\"site doctor\");\n").unwrap();
    std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stdout, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    assert!(!stdout.contains("site doctor"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{}: the script declares no version",
            site.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("help: start the script with"), "{stderr}");
    let (code, _, stderr) = host.run(&["scripts", "check"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("declares no version"), "{stderr}");
    std::fs::remove_file(&site).unwrap();

    let lib = host.root().join("etc/containai/scripts/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(lib.join("bare.rhai"), "fn hi() { \"hi\" }\n").unwrap();
    let importer = host.script(
        "importer.rhai",
        "import \"lib/bare\" as b;\nprint(b::hi());\n",
    );
    let (code, stdout, stderr) = host.run(&["run", importer.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(!stdout.contains("hi"), "{stdout}");
    assert!(
        stderr.contains("import \"lib/bare\" refused") && stderr.contains("declares no version"),
        "{stderr}"
    );
    let (code, _, stderr) = host.run(&["scripts", "check", importer.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("lib/bare.rhai: the script declares no version"),
        "{stderr}"
    );
}

#[test]
fn world_writable_or_foreign_overrides_are_refused() {
    let host = TestHost::new();
    let site = host.root().join("etc/containai/scripts/doctor.rhai");
    std::fs::write(&site, format!("{HEADER}print(\"site doctor\");\n")).unwrap();
    std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, stdout, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    assert!(!stdout.contains("site doctor"));
    assert!(stderr.contains("group- or world-writable"), "{stderr}");

    std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o644)).unwrap();
    rustix::fs::chown(&site, Some(rustix::fs::Uid::from_raw(4242)), None).unwrap();
    let (code, _, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("owned by uid 4242"), "{stderr}");

    // The user who ran sudo counts as the invoking user.
    let (code, stdout, stderr) = Run::new(&host).arg("doctor").env("SUDO_UID", "4242").run();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("site doctor"), "{stdout}");

    // Owned by root and not writable by others: the override runs instead of the bundled script.
    rustix::fs::chown(&site, Some(rustix::fs::Uid::ROOT), None).unwrap();
    let (code, stdout, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("site doctor"), "{stdout}");
    let (_, list, _) = host.run(&["scripts", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("doctor") && l.contains(" site ")),
        "{list}"
    );
    let (_, show, _) = host.run(&["scripts", "show", "doctor"]);
    assert!(show.contains("site doctor"));

    // A symlink is never followed, even to a well-owned file.
    let target = host.home.path().join("real-detect.rhai");
    std::fs::write(&target, format!("{HEADER}print(\"linked\");\n")).unwrap();
    std::os::unix::fs::symlink(
        &target,
        host.root().join("etc/containai/scripts/detect.rhai"),
    )
    .unwrap();
    let (code, stdout, stderr) = host.run(&["run", "detect"]);
    assert_eq!(code, 1);
    assert!(!stdout.contains("linked"));
    assert!(stderr.contains("it is a symlink"), "{stderr}");

    // A writable directory makes even a well-owned file untrustworthy.
    std::fs::set_permissions(
        host.root().join("etc/containai/scripts"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let (code, _, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("the directory is group- or world-writable"),
        "{stderr}"
    );

    // So does a writable directory higher up.
    for (dir, mode) in [("etc/containai/scripts", 0o755), ("etc", 0o777)] {
        std::fs::set_permissions(host.root().join(dir), std::fs::Permissions::from_mode(mode))
            .unwrap();
    }
    let (code, _, stderr) = host.run(&["doctor"]);
    assert_eq!(code, 1);
    let etc = host.root().join("etc");
    let expected = format!("refusing {}: the directory is group-", etc.display());
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn user_overrides_are_ignored_when_running_as_root() {
    support::require_root();
    let host = TestHost::new();
    let user_dir = host.home.path().join(".config/containai/scripts");
    std::fs::create_dir_all(&user_dir).unwrap();
    std::fs::write(
        user_dir.join("detect.rhai"),
        format!("{HEADER}print(\"user detect\");\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = host.run(&["run", "detect"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("user detect"), "{stdout}");
    assert!(stdout.contains("platform"), "{stdout}");
}

#[test]
fn every_bundled_script_compiles_and_lists_with_sha256() {
    let host = TestHost::new();
    let (code, stdout, stderr) = host.run(&["scripts", "check"]);
    assert_eq!(code, 0, "{stderr}");
    for name in ["update", "doctor", "repair", "detect", "lib/common"] {
        assert!(
            stdout.contains(&format!("ok     {name}.rhai")),
            "{name}: {stdout}"
        );
    }
    let (code, stdout, _) = host.run(&["scripts", "list"]);
    assert_eq!(code, 0);
    let update = stdout.lines().find(|l| l.starts_with("update ")).unwrap();
    let fields: Vec<&str> = update.split_whitespace().collect();
    assert_eq!(fields[2], "bundled");
    assert_eq!(fields[3].len(), 64);
    assert!(fields[3].bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn check_follows_imports_and_covers_site_overrides() {
    let host = TestHost::new();
    let bad_import = host.script(
        "imports.rhai",
        &format!("{HEADER}import \"lib/nope\" as n;\n"),
    );
    let (code, _, stderr) = host.run(&["scripts", "check", bad_import.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("imports.rhai:3:1: import \"lib/nope\": no script named"),
        "{stderr}"
    );

    // A broken site copy of a shared module fails the check of every script, and of itself.
    let lib = host.root().join("etc/containai/scripts/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        lib.join("common.rhai"),
        format!("{HEADER}fn names(list) {{ list.map(|c| c.name) \n"),
    )
    .unwrap();
    let (code, stdout, stderr) = host.run(&["scripts", "check"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("common.rhai:4:"), "{stderr}");
    assert!(!stdout.contains("ok     lib/common"), "{stdout}");
    assert!(!stdout.contains("ok     doctor"), "{stdout}");
}

#[test]
fn import_cycles_are_refused_not_a_stack_overflow() {
    let host = TestHost::new();
    let lib = host.root().join("etc/containai/scripts/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        lib.join("a.rhai"),
        format!("{HEADER}import \"lib/b\" as b;\n"),
    )
    .unwrap();
    std::fs::write(
        lib.join("b.rhai"),
        format!("{HEADER}import \"lib/a\" as a;\n"),
    )
    .unwrap();
    let (code, _, stderr) = run_text(&host, "import \"lib/a\" as a;");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("import cycle: lib/a -> lib/b -> lib/a"),
        "{stderr}"
    );
}

/// A `--config` file that gives scripts a wall-clock budget of `secs`.
fn budget_config(host: &TestHost, secs: u64) -> std::path::PathBuf {
    let path = host.home.path().join("budget.toml");
    std::fs::write(&path, format!("script_timeout_secs = {secs}\n")).unwrap();
    path
}

/// A site module `lib/NAME` with `body` after the header.
fn site_module(host: &TestHost, name: &str, body: &str) {
    let lib = host.root().join("etc/containai/scripts/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(lib.join(format!("{name}.rhai")), format!("{HEADER}{body}")).unwrap();
}

#[test]
fn sleep_cannot_outwait_the_wall_clock_budget() {
    let host = TestHost::new();
    let config = budget_config(&host, 2);
    for call in ["sleep(30);", "sleep(1e300);"] {
        let start = Instant::now();
        let (code, stdout, stderr) = Run::script(
            &host,
            "t.rhai",
            &format!("{HEADER}{call}\nprint(\"after\");\n"),
        )
        .config(&config)
        .run();
        assert_eq!(code, 1, "{call}: {stderr}");
        assert!(
            stderr.contains("t.rhai:3:1: script stopped: it ran past its wall-clock budget of 2 s"),
            "{call}: {stderr}"
        );
        assert!(!stdout.contains("after"), "{call}: {stdout}");
        assert!(start.elapsed() < Duration::from_secs(10), "{call}");
    }
    for (call, expect) in [
        ("sleep(-1);", "sleep: -1 is not a number of seconds"),
        ("sleep(0.0 / 0.0);", "sleep: NaN is not a number of seconds"),
    ] {
        let (code, _, stderr) = run_text(&host, call);
        assert_eq!(code, 1, "{call}: {stderr}");
        assert!(stderr.contains(expect), "{call}: {stderr}");
        assert!(!stderr.contains("panicked"), "{call}: {stderr}");
    }
    let (code, stdout, stderr) = run_text(&host, "sleep(0.1);\nsleep(0);\nprint(\"slept\");");
    assert_eq!((code, stdout.as_str()), (0, "slept\n"), "{stderr}");
}

#[test]
fn ctrl_c_stops_a_sleeping_script() {
    use std::io::BufRead;
    let host = TestHost::new();
    let script = host.script(
        "nap.rhai",
        &format!("{HEADER}print(\"sleeping\");\nsleep(60);\n"),
    );
    let mut child = host
        .cai()
        .args(["run", script.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "sleeping\n");
    let start = Instant::now();
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("script interrupted by Ctrl-C"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn oversized_scripts_are_refused_before_compiling() {
    let host = TestHost::new();
    let functions: String = (0..300_000)
        .map(|i| format!("fn f{i}() {{ {i} }}\n"))
        .collect();
    let big = host.script("big.rhai", &format!("{HEADER}{functions}"));
    let start = Instant::now();
    for args in [vec!["run"], vec!["scripts", "check"]] {
        let mut args = args;
        args.push(big.to_str().unwrap());
        let (code, _, stderr) = host.run(&args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("big.rhai: script is ")
                && stderr.contains("over the sandbox limit of 1048576 bytes (1 MiB)"),
            "{args:?}: {stderr}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(20));

    // Small enough, but more functions than the limit.
    let functions: String = (0..2000)
        .map(|i| format!("fn f{i}() {{ {i} }}\n"))
        .collect();
    let (code, _, stderr) = run_text(&host, &functions);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("t.rhai:1027:1: the script defines more than 1024 functions"),
        "{stderr}"
    );

    // An imported module is held to the same limit.
    site_module(&host, "big", &"// padding\n".repeat(100_000));
    let (code, stdout, stderr) = run_text(&host, "import \"lib/big\" as b;\nprint(\"after\");");
    assert_eq!(code, 1, "{stderr}");
    assert!(!stdout.contains("after"));
    assert!(
        stderr.contains("import \"lib/big\" refused: ")
            && stderr.contains("over the sandbox limit of 1048576 bytes"),
        "{stderr}"
    );
}

#[test]
fn exit_at_the_top_of_an_imported_module_ends_the_run() {
    let host = TestHost::new();
    site_module(&host, "x", "exit(3);\nfn unused() { 1 }\n");
    site_module(&host, "y", "import \"lib/x\" as x;\nexport const Y = 1;\n");
    site_module(&host, "z", "fn quit() { exit(4); }\n");
    for (body, expect) in [
        ("import \"lib/x\" as x;\nprint(\"after\");", 3),
        // Through a module that imports it.
        ("import \"lib/y\" as y;\nprint(\"after\");", 3),
        // From an import inside a function.
        (
            "fn f() { import \"lib/x\" as x; print(\"inner\"); }\nf();\nprint(\"after\");",
            3,
        ),
        // From a module's function.
        ("import \"lib/z\" as z;\nz::quit();\nprint(\"after\");", 4),
    ] {
        let (code, stdout, stderr) = run_text(&host, body);
        assert_eq!(code, expect, "{body}: {stderr}");
        assert_eq!(stdout, "", "{body}");
    }
}

#[test]
fn printing_to_a_closed_pipe_is_one_error_not_a_panic() {
    let host = TestHost::new();
    // More than a pipe buffer holds, so the writes fail whenever the reader goes away.
    let script = host.script(
        "chatty.rhai",
        &format!(
            "{HEADER}let s = \"x\"; for i in 0..10 {{ s += s; }}\nfor i in 0..200 {{ print(s); }}\nlog::info(\"still running\");\n"
        ),
    );
    for extra in [None, Some("--dry-run"), Some("--json")] {
        let mut cmd = host.cai();
        cmd.args(["run", script.to_str().unwrap()]);
        cmd.args(extra);
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
        // The run went on to its end, then said once what was lost.
        assert!(
            stderr.contains("info: still running"),
            "{extra:?}: {stderr}"
        );
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.starts_with("error: "))
                .collect::<Vec<_>>(),
            ["error: standard output was closed before all output was written"],
            "{extra:?}: {stderr}"
        );
    }
}

#[test]
fn control_characters_and_bidi_overrides_are_escaped_on_the_terminal() {
    let host = TestHost::new();
    let body = r#"let evil = "ok\x1b[2K\r\u202eevil";
print(evil);
debug(evil);
log::info(evil);
log::warn(evil);
containers::exec("agent-1", [evil]);
report::checks([#{id: evil, category: "c", status: "warn", summary: evil, remediation: evil}]);
report::data(#{s: evil});
throw evil + "\n" + evil;
"#;
    let evil = "ok\x1b[2K\r\u{202e}evil";
    let script = host.script("t.rhai", &format!("{HEADER}{body}"));
    let path = script.to_str().unwrap();

    let (code, stdout, stderr) = host.run(&["run", "--dry-run", path]);
    assert_eq!(code, 1, "{stderr}");
    for stream in [&stdout, &stderr] {
        assert!(!stream.contains(['\x1b', '\r', '\u{202e}']), "{stream:?}");
    }
    let shown = r"ok\x1b[2K\r\u{202e}evil";
    assert!(stdout.contains(&format!("{shown}\n")), "{stdout}");
    // Names are checked against the engine's grammar, so free text reaches a plan only in the
    // details of an action.
    let planned = stdout
        .lines()
        .find(|l| l.contains("containers.exec"))
        .unwrap_or_else(|| panic!("no planned exec in {stdout}"));
    assert!(
        planned.contains("agent-1") && planned.contains("argv="),
        "{planned}"
    );
    assert!(
        stdout.contains(&format!("warn     {shown} {shown}")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("help: {shown}")), "{stdout}");
    assert!(stderr.contains(&format!("info: {shown}\n")), "{stderr}");
    assert!(stderr.contains(&format!("warning: {shown}\n")), "{stderr}");
    // A thrown message keeps its line breaks.
    assert!(
        stderr.contains(&format!(
            "error: {}:11:1: {shown}\n{shown}\n",
            script.display()
        )),
        "{stderr}"
    );

    // JSON carries the exact strings; stdout still has no raw escape or override.
    let (code, stdout, stderr) = host.run(&["run", "--dry-run", "--json", path]);
    assert_eq!(code, 1, "{stderr}");
    assert!(!stdout.contains(['\x1b', '\r', '\u{202e}']), "{stdout}");
    assert!(!stderr.contains(['\x1b', '\r', '\u{202e}']), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["plan"][0]["details"]["argv"][0], evil);
    assert_eq!(doc["reports"][0]["checks"][0]["summary"], evil);
    assert_eq!(doc["reports"][1]["s"], evil);
}

/// Every refusal of a too deeply nested value is tested against a small limit in
/// `script::tests`; here the binary refuses a value just past the default limit of 64 levels.
#[test]
fn deeply_nested_values_error_cleanly_instead_of_overflowing_the_stack() {
    let host = TestHost::new();
    let build =
        "let a = [];\nfor i in 0..70 { a = [a]; }\nlet m = #{};\nfor i in 0..70 { m = #{x: m}; }\n";
    for (line, expect) in [
        (
            "print(a);",
            "print: arrays and maps nested more than 64 levels deep cannot be shown",
        ),
        (
            "m != m",
            "!=: arrays and maps nested more than 64 levels deep cannot be compared",
        ),
        (
            "print(`${a}`);",
            "script stopped: arrays and maps nested more than 64 levels deep cannot be turned into text",
        ),
        ("throw m;", "throw: arrays and maps nested"),
    ] {
        let (code, _, stderr) = run_text(&host, &format!("{build}{line}"));
        assert_eq!(code, 1, "{line}: {stderr}");
        assert!(stderr.contains(expect), "{line}: {stderr}");
        assert!(stderr.contains("t.rhai:"), "{line}: {stderr}");
    }
    let script = host.script("t.rhai", &format!("{HEADER}{build}report::data(a);"));
    let (code, stdout, stderr) = host.run(&["run", "--json", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("report::data: arrays and maps nested")),
        "{stdout}"
    );
}

/// Rhai clones, drops and measures values by recursion: a value 10,000 levels deep needs more
/// stack than a main thread has, and the thread a command runs on has enough.
#[test]
fn a_value_nested_ten_thousand_levels_deep_is_built_copied_and_dropped() {
    let host = TestHost::new();
    let (code, stdout, stderr) = run_text(
        &host,
        "let a = [];\nfor i in 0..10000 { a = [take(a)]; }\nlet b = a;\nprint(\"built\");",
    );
    assert_eq!((code, stdout.as_str()), (0, "built\n"), "{stderr}");
}

#[test]
fn curried_function_pointers_are_refused() {
    let host = TestHost::new();
    for body in [
        "let f = Fn(\"x\");\nfor i in 0..40 { f = f.curry(f); }",
        "let f = Fn(\"x\");\nfor i in 0..40 { f = curry(f, f); }",
    ] {
        let start = Instant::now();
        let (code, _, stderr) = run_text(&host, body);
        assert_eq!(code, 1, "{body}: {stderr}");
        assert!(
            stderr.contains("syntax error: `curry` is disabled in the sandbox"),
            "{body}: {stderr}"
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn closures_capturing_variables_are_refused_not_a_stack_overflow() {
    let host = TestHost::new();
    // Each closure shares the one before; dropping the chain recursed once per link.
    let (code, _, stderr) = run_text(
        &host,
        "let a = 0;\nfor i in 0..100000 { let b = a; a = || b; }\na = 0;",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "t.rhai:4:40: closures cannot use variables of the code around them; this one uses `b`"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("help: use a `for` loop"), "{stderr}");
    // Closures that use only their parameters work as before.
    let (code, stdout, stderr) = run_text(&host, "print([1, 2, 3].filter(|x| x > 1));");
    assert_eq!((code, stdout.as_str()), (0, "[2, 3]\n"), "{stderr}");
}

#[test]
fn script_results_that_are_not_exit_codes_fail() {
    let host = TestHost::new();
    for (body, kind) in [
        ("exit(\"x\");", "string"),
        ("1.5", "f64"),
        ("true", "bool"),
        ("#{a: 1}", "map"),
        ("[0]", "array"),
    ] {
        let (code, _, stderr) = run_text(&host, body);
        assert_eq!(code, 1, "{body}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "t.rhai: script result ({kind}) is not an exit code (expected an integer 0..=255 or nothing)"
            )),
            "{body}: {stderr}"
        );
    }
    for (body, expect) in [("()", 0), ("exit(7);", 7), ("exit();", 0), ("255", 255)] {
        let (code, _, stderr) = run_text(&host, body);
        assert_eq!(code, expect, "{body}: {stderr}");
    }
    // detect hands its facts to the JSON document instead of returning them.
    let (code, stdout, stderr) = host.run(&["run", "detect", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["result"], serde_json::Value::Null);
    assert!(doc["reports"][0]["platform"].is_string(), "{stdout}");
}

/// P71: a native wait honours the script's wall-clock budget. `containers::wait_engine(20)`
/// with no engine and a budget of 2 s ends with the budget's error at about 2 s, not after 20 s.
#[test]
fn p71_waiting_for_the_engine_cannot_outwait_the_budget() {
    let host = TestHost::new();
    let config = budget_config(&host, 2);
    let script = host.script(
        "t.rhai",
        &format!("{HEADER}let up = containers::wait_engine(20);\nprint(`after ${{up}}`);\n"),
    );
    let start = Instant::now();
    let (code, stdout, stderr) = Run::new(&host)
        .config(&config)
        .arg("run")
        .arg(&script)
        .run();
    let elapsed = start.elapsed();
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("t.rhai:3:22: script stopped: it ran past its wall-clock budget of 2 s"),
        "{stderr}"
    );
    assert!(!stdout.contains("after"), "{stdout}");
    // A bound on a hang, not a timing goal: the wait asked for 20 s.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

/// P71: Ctrl-C ends a native wait at once, as it ends `sleep`.
#[test]
fn p71_ctrl_c_stops_a_wait_for_the_engine() {
    use std::io::BufRead;
    let host = TestHost::new();
    let script = host.script(
        "wait.rhai",
        &format!("{HEADER}print(\"waiting\");\ncontainers::wait_engine(60);\nprint(\"after\");\n"),
    );
    let mut child = host.spawn_run(&script);
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "waiting\n");
    let start = Instant::now();
    support::interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("script interrupted by Ctrl-C"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// P72: a script's memory is bounded as a whole, not only value by value. Each call frame holds
/// its own 2 MiB string, within every size limit, and together they would take over 120 MiB;
/// with `script_memory_mb = 32` the script stops with one error and exit 1.
#[test]
fn p72_a_script_that_grows_past_its_memory_limit_is_stopped() {
    let host = TestHost::new();
    let config = host.home.path().join("memory.toml");
    std::fs::write(&config, "script_memory_mb = 32\n").unwrap();
    let grow = |frames: u32| {
        format!(
            "{HEADER}fn hold(n) {{\n  let s = \"x\";\n  for k in 0..21 {{ s += s; }}\n  s += n;\n  if n > 0 {{ hold(n - 1) }} else {{ s.len() }}\n}}\nhold({frames});\nprint(\"done\");\n"
        )
    };
    let (code, stdout, stderr) = Run::script(&host, "grow.rhai", &grow(60))
        .config(&config)
        .run();
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("grow.rhai:9:1: script exceeded its memory limit of 32 MiB"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: raise script_memory_mb in the config"),
        "{stderr}"
    );
    assert!(!stdout.contains("done"), "{stdout}");
    // Within the limit the same script runs to its end.
    let (code, stdout, stderr) = Run::script(&host, "grow.rhai", &grow(3))
        .config(&config)
        .run();
    assert_eq!((code, stdout.as_str()), (0, "done\n"), "{stderr}");
}
