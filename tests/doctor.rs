//! `cai doctor` as a report: the check catalog (`--list-checks`), `--check ID...`, the JSON
//! records, the volume checks against a real private dockerd, and the check table in
//! `docs/troubleshooting.md`, which must be exactly what `--list-checks` prints.

mod support;

use std::os::unix::fs::MetadataExt;

use support::{Dockerd, TEST_IMAGE, TestHost};

/// (id, category, about, fix) of every check, as `cai doctor --list-checks --json` gives them.
fn catalog(host: &TestHost) -> Vec<(String, String, String, String)> {
    let (code, stdout, stderr) = host.run(&["doctor", "--list-checks", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    doc["reports"][0]["checks"]
        .as_array()
        .expect("a checks array")
        .iter()
        .map(|c| {
            let field = |k: &str| {
                c[k].as_str()
                    .unwrap_or_else(|| panic!("{k} in {c}"))
                    .to_string()
            };
            (field("id"), field("category"), field("about"), field("fix"))
        })
        .collect()
}

const TABLE_START: &str =
    "<!-- doctor-checks: generated from `cai doctor --list-checks`; tests/doctor.rs checks it -->";
const TABLE_END: &str = "<!-- end of doctor-checks -->";

/// The docs table for a catalog, as the docs must contain it.
fn table(catalog: &[(String, String, String, String)]) -> String {
    let mut out =
        String::from("| check | category | what it checks | what to do |\n|---|---|---|---|\n");
    for (id, category, about, fix) in catalog {
        out.push_str(&format!("| `{id}` | {category} | {about} | {fix} |\n"));
    }
    out
}

#[test]
fn the_docs_list_every_check_exactly_as_list_checks_prints_it() {
    let host = TestHost::new();
    let want = table(&catalog(&host));
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/troubleshooting.md"),
    )
    .unwrap();
    let start = page
        .find(TABLE_START)
        .unwrap_or_else(|| panic!("docs/troubleshooting.md lacks the line {TABLE_START}"))
        + TABLE_START.len();
    let end = page[start..]
        .find(TABLE_END)
        .unwrap_or_else(|| panic!("docs/troubleshooting.md lacks the line {TABLE_END}"))
        + start;
    assert_eq!(
        page[start..end].trim(),
        want.trim(),
        "the check table in docs/troubleshooting.md is not what `cai doctor --list-checks` prints; replace it with:\n\n{want}"
    );
}

#[test]
fn list_checks_names_every_id_the_report_emits_and_json_records_have_id_and_status() {
    let host = TestHost::new();
    host.fakes
        .add_standard("sysbox-runc version 0.6.7+containai.20260127");
    let engine = Dockerd::start(&host);
    engine.docker(&["tag", TEST_IMAGE, "containai:latest"]);
    engine.run("legacy", &[], "containai:latest", &["sleep", "600"]);
    engine.run_with(
        "box",
        &["containai.managed=true"],
        &["-v", "vol:/data"],
        TEST_IMAGE,
        &["sleep", "600"],
    );
    let ids: Vec<String> = catalog(&host).into_iter().map(|c| c.0).collect();

    let (code, stdout, stderr) = host.run(&["doctor", "--json"]);
    assert!(code == 0 || code == 1, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("doctor --json parses");
    let records = doc["reports"][0]["checks"].as_array().expect("checks");
    let mut seen = Vec::new();
    for r in records {
        let id = r["id"].as_str().expect("every record has an id");
        let status = r["status"].as_str().expect("every record has a status");
        assert!(
            ["ok", "warn", "error", "skip", "unknown"].contains(&status),
            "{r}"
        );
        assert!(
            ids.contains(&id.to_string()),
            "{id} is not in --list-checks"
        );
        seen.push(id.to_string());
    }
    // With an engine, a legacy and a labelled container, every Linux check reports.
    for id in &ids {
        assert!(seen.contains(id), "{id} did not report: {records:?}");
    }
}

#[test]
fn volumes_ownership_warns_with_the_dry_run_command_and_check_runs_only_those() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    engine.run_with(
        "box",
        &["containai.managed=true"],
        &["-v", "vol:/data"],
        TEST_IMAGE,
        &["sleep", "600"],
    );
    let vol = host
        .root()
        .join("var/lib/containai-docker/volumes/vol/_data");
    let file = vol.join("f");
    std::fs::write(&file, "x").unwrap();
    std::os::unix::fs::lchown(&file, Some(65534), Some(65534)).unwrap();
    std::fs::create_dir_all(host.root().join("proc/sys/fs")).unwrap();
    std::fs::write(host.root().join("proc/sys/fs/protected_hardlinks"), "0\n").unwrap();

    let (code, stdout, stderr) = host.run(&[
        "doctor",
        "--check",
        "volumes.ownership",
        "fs.protected_hardlinks",
        "volumes.managed",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(stdout.contains("warn     volumes.ownership"), "{stdout}");
    assert!(
        stdout.contains("in 1 volume(s): vol (1 of 2 entries)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("cai doctor --repair --all --dry-run"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warn     fs.protected_hardlinks fs.protected_hardlinks = 0"),
        "{stdout}"
    );
    assert!(stdout.contains("ok       volumes.managed"), "{stdout}");
    assert!(!stdout.contains("sysbox"), "{stdout}");
    // The report only looks.
    assert_eq!(std::fs::symlink_metadata(&file).unwrap().uid(), 65534);

    let (code, _, stderr) = host.run(&["doctor", "--check", "no.such"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown check id no.such"), "{stderr}");
    assert!(stderr.contains("cai doctor --list-checks"), "{stderr}");
}
