//! The primitive reference against what primitives really return, through the real binary: the
//! fields `cai scripts api --json` documents for each returned map are exactly the keys of a
//! real call's value (on an empty host, and against a private dockerd with a managed container);
//! a call that matches no signature names the signatures; docs/scripting.md carries the
//! reference as `cai scripts api` prints it.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use support::{Dockerd, TEST_IMAGE, TestHost};

/// Documented fields of every primitive that returns a map, by path; and every overload.
fn documented(host: &TestHost) -> (BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let (code, stdout, stderr) = host.run(&["scripts", "api", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).expect("cai scripts api --json is JSON");
    let mut fields = BTreeMap::new();
    let mut overloads = Vec::new();
    for p in doc["primitives"].as_array().expect("primitives") {
        let path = format!(
            "{}::{}",
            p["module"].as_str().unwrap(),
            p["name"].as_str().unwrap()
        );
        for o in p["overloads"].as_array().expect("overloads") {
            overloads.push(o.as_str().unwrap().to_string());
        }
        let names: BTreeSet<String> = p["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| {
                for key in ["name", "type", "doc"] {
                    assert!(
                        f[key].as_str().is_some_and(|s| !s.is_empty()),
                        "{path}: field without {key}: {f}"
                    );
                }
                f["name"].as_str().unwrap().to_string()
            })
            .collect();
        if !names.is_empty() {
            assert!(
                p["returns_example"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("#{")),
                "{path}: no example of the returned map"
            );
            fields.insert(path, names);
        }
    }
    (fields, overloads)
}

/// Runs `calls` (Rhai expressions, each a primitive call) in one script and returns each value
/// from the `--json` document.
fn values(host: &TestHost, calls: &[&str]) -> Vec<Value> {
    let body: String = calls
        .iter()
        .map(|call| format!("report::data(#{{ v: {call} }});\n"))
        .collect();
    let script = host.script(
        "values.rhai",
        &format!("//! version: 1.0.0\n//! api: 1\n{body}"),
    );
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let doc: Value = serde_json::from_str(&stdout).expect("--json document");
    doc["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .map(|r| r["v"].clone())
        .collect()
}

/// Every map in `value` (the value itself, or each element of an array) has exactly the
/// documented fields; returns how many maps were compared.
fn check(call: &str, value: &Value, fields: &BTreeMap<String, BTreeSet<String>>) -> usize {
    let path = call.split('(').next().unwrap();
    let want = fields
        .get(path)
        .unwrap_or_else(|| panic!("{path} returns maps but documents no fields"));
    let maps: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    };
    for map in &maps {
        let keys: BTreeSet<String> = map
            .as_object()
            .unwrap_or_else(|| panic!("{call} returned {map}, not a map"))
            .keys()
            .cloned()
            .collect();
        assert_eq!(&keys, want, "{call}: real keys against documented fields");
    }
    maps.len()
}

#[test]
fn documented_fields_are_what_reads_return_without_an_engine() {
    let host = TestHost::new();
    let (fields, overloads) = documented(&host);
    assert!(
        overloads.contains(&"volumes::scan(name: string) -> map".to_string()),
        "{overloads:?}"
    );
    assert!(overloads.contains(&"containers::stop(ids: array) -> map".to_string()));
    let calls = [
        "containers::engine_status()",
        "release::target()",
        "sysbox::status()",
        "sysbox::decide((), release::target().sysbox.version)",
        "sysbox::decide(#{error: \"no sysbox-runc\"}, release::target().sysbox.version)",
        "dockerd::config_state()",
        "units::state(\"containai-docker.service\")",
        "update::rollback_plan()",
    ];
    let got = values(&host, &calls);
    assert_eq!(got.len(), calls.len());
    for (call, value) in calls.iter().zip(&got) {
        assert_eq!(check(call, value, &fields), 1, "{call}: {value}");
    }
    // The nested decision is the map decide documents.
    let status = &got[2];
    let decision: BTreeSet<String> = status["decision"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(&decision, &fields["sysbox::decide"]);
}

#[test]
fn documented_fields_are_what_reads_return_from_a_real_engine() {
    let host = TestHost::new();
    let engine = Dockerd::start(&host);
    engine.run_with(
        "agent-1",
        &["containai.managed=true", "containai.ssh-port=2222"],
        &["-v", "agent-1-home:/data"],
        TEST_IMAGE,
        &["sleep", "600"],
    );
    engine.run("other", &[], TEST_IMAGE, &["sleep", "600"]);
    let (fields, _) = documented(&host);
    let calls = [
        "containers::list_managed(true)",
        "containers::list_managed(false)",
        "containers::list(true)",
        "containers::inspect(\"agent-1\")",
        "containers::query(\"agent-1\", [\"id\", \"-u\"])",
        "containers::user_ids(\"agent-1\", \"1000\")",
        "volumes::managed()",
        "volumes::scan(\"agent-1-home\")",
        "containers::start([\"agent-1\"])",
    ];
    let got = values(&host, &calls);
    let compared: Vec<usize> = calls
        .iter()
        .zip(&got)
        .map(|(call, value)| check(call, value, &fields))
        .collect();
    // Every call returned something to compare: one managed container, two in all.
    assert_eq!(compared, [1, 1, 2, 1, 1, 1, 1, 1, 1], "{got:?}");
    assert_eq!(got[0][0]["name"], "agent-1");
    assert_eq!(got[0][0]["ssh_port"], "2222");
    assert_eq!(got[0][0]["managed_by"], "label");
}

#[test]
fn a_call_with_wrong_argument_types_names_the_signatures() {
    let host = TestHost::new();
    let script = host.script(
        "wrong.rhai",
        "//! version: 1.0.0\n//! api: 1\ncontainers::stop(\"agent-1\", 10);\n",
    );
    let (code, _, stderr) = host.run(&["run", "--dry-run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("wrong.rhai:3:13: containers::stop cannot be called with (string, int)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "\nhelp: call it as containers::stop(ids: array, timeout_secs: int) or containers::stop(ids: array)\n"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("ImmutableString"), "{stderr}");

    let script = host.script(
        "unknown.rhai",
        "//! version: 1.0.0\n//! api: 1\nvolumes::sacn(\"v\");\n",
    );
    let (code, _, stderr) = host.run(&["run", "--dry-run", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("volumes:: has no primitive sacn"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: volumes:: has chown, managed, protected_hardlinks, scan;"),
        "{stderr}"
    );
}

/// docs/scripting.md carries the reference exactly as `cai scripts api` prints it, between its
/// markers.
#[test]
fn the_docs_carry_the_reference_cai_scripts_api_prints() {
    let host = TestHost::new();
    let (code, stdout, stderr) = host.run(&["scripts", "api"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("\n          volumes::scan(name: string) -> map\n"),
        "the overload is listed under its primitive"
    );
    assert!(stdout.contains("\n          each map has:\n            id          string"));
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scripting.md")).unwrap();
    let start =
        "<!-- reference: the output of `cai scripts api`; tests/api.rs checks it -->\n```text\n";
    let begin = page.find(start).expect("the reference's start marker") + start.len();
    let len = page[begin..].find("```\n").expect("the reference's end");
    assert!(
        page[begin..begin + len] == stdout,
        "docs/scripting.md's reference is not what `cai scripts api` prints; paste its output there"
    );
}
