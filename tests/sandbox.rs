//! The script sandbox and catalog, end to end through the real binary: what a script cannot do,
//! how errors point at the source, API versions, and vetting of overrides.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::TestHost;

const HEADER: &str = "//! version: 1.0.0\n//! api: 1\n";

fn run_text(host: &TestHost, body: &str) -> (i32, String, String) {
    let script = host.script("t.rhai", &format!("{HEADER}{body}"));
    host.run(&["run", script.to_str().unwrap()])
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
fn runaway_loop_stops_on_the_operation_limit() {
    let host = TestHost::new();
    let (code, _, stderr) = run_text(&host, "let i = 0;\nloop { i += 1; }");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("limit of 50000000 operations"), "{stderr}");
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
    let out = host
        .cai()
        .arg("doctor")
        .env("SUDO_UID", "4242")
        .output()
        .unwrap();
    let (code, stdout, stderr) = support::decode(out);
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
