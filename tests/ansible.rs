//! The Ansible collection (`contrib/ansible`, `containai.cai`) and the `--json` schemas it relies
//! on, with real components: real `cai --json` outputs validated against `docs/schemas/` by
//! python3-jsonschema; the collection built with `ansible-galaxy collection build`, installed into
//! a temporary collections path and run by `ansible-playbook -c local -i localhost,` against a
//! private dockerd, the host under `--root` (`cai_root`) and the release target from a site config
//! (`cai_config`) that points at `file://` artifacts under the root, as tests/update.rs does;
//! `ansible-doc` renders every module and `python3 -m py_compile` accepts them.
//!
//! A missing `ansible-core` or `python3-jsonschema` fails the test with the command that installs
//! it; nothing is skipped.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::{Dockerd, TestHost};

const OLD_SYSBOX: &str = "0.6.7+containai.20251201";
const TARGET_SYSBOX: &str = "0.6.7+containai.20260127";
const TARGET_DOCKERD: &str = "28.2.2";
const DEB: &str = "sysbox-ce_0.6.7+containai.20260127.linux_amd64.deb";
const BUNDLE: &str = "docker-28.2.2.tgz";
const ANSIBLE_HINT: &str =
    "sudo ./scripts/test.sh (or: apt-get install ansible-core python3-jsonschema)";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A program the Ansible tests need: fails (never skips) with the install hint when missing.
fn need(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{program} is required for this test but is not installed; install with: {ANSIBLE_HINT}")
        })
}

/// The system's python3, which Debian's python3-jsonschema and ansible-core use (and which the
/// plays name as `ansible_python_interpreter`).
fn python3() -> PathBuf {
    let path = PathBuf::from("/usr/bin/python3");
    assert!(
        path.is_file(),
        "/usr/bin/python3 is required for this test but is not installed; install with: {ANSIBLE_HINT}"
    );
    path
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

// --- the update fixture (as in tests/update.rs) ------------------------------------------------

/// A sysbox package built with the real `dpkg-deb` whose `sysbox-runc` reports `installs`.
fn package_deb(version: &str, installs: &str) -> Vec<u8> {
    support::fake_sysbox_deb(
        "sysbox-ce",
        version,
        containai::plan::platform::deb_arch(),
        installs,
    )
}

struct Fixture {
    host: TestHost,
    engine: Dockerd,
    /// The site config with the release target, passed as `--config` (`cai_config`).
    config: PathBuf,
}

/// A host with the old sysbox installed, the target's package and dockerd bundle in a mirror
/// under the root, and the managed container `agent-1` running.
fn fixture() -> Fixture {
    use std::os::unix::fs::PermissionsExt;
    let host = TestHost::new();
    host.fakes.add("systemctl", "exit 0");
    let bin = host.root().join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let runc = bin.join("sysbox-runc");
    std::fs::write(
        &runc,
        format!("#!/bin/sh\necho 'sysbox-runc version {OLD_SYSBOX}'\n"),
    )
    .unwrap();
    std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&runc, host.fakes.dir().join("sysbox-runc")).unwrap();
    host.fakes.add(
        "dpkg",
        r#"root=; deb=
for a; do case "$a" in --root=*) root="${a#--root=}" ;; esac; deb="$a"; done
[ -n "$root" ] || { echo "fake dpkg: refusing to unpack without --root" >&2; exit 2; }
exec dpkg-deb -x "$deb" "$root""#,
    );
    let mirror = host.root().join("srv/mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    let deb = package_deb(TARGET_SYSBOX, TARGET_SYSBOX);
    std::fs::write(mirror.join(DEB), &deb).unwrap();
    let stage = tempfile::tempdir().unwrap();
    support::dockerd_bundle(
        &stage.path().join("b.tgz"),
        &["dockerd"],
        TARGET_DOCKERD,
        |_| {},
    );
    let bundle = std::fs::read(stage.path().join("b.tgz")).unwrap();
    std::fs::write(mirror.join(BUNDLE), &bundle).unwrap();
    let config = host.root().join("etc/containai/site.toml");
    std::fs::write(
        &config,
        format!(
            "sysbox_url = \"file:///srv/mirror/{DEB}\"\nsysbox_version = \"{TARGET_SYSBOX}\"\nsysbox_tag = \"sysbox-build-20260127-10\"\nsysbox_sha256 = \"{}\"\ndockerd_url = \"file:///srv/mirror/{BUNDLE}\"\ndockerd_version = \"{TARGET_DOCKERD}\"\ndockerd_sha256 = \"{}\"\nstop_timeout_secs = 2\n",
            sha256(&deb),
            sha256(&bundle)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let engine = Dockerd::start(&host);
    engine.run_agent("agent-1");
    Fixture {
        host,
        engine,
        config,
    }
}

impl Fixture {
    /// `cai --root ROOT --config SITE ARGS`: (exit code, stdout, stderr).
    fn cai(&self, args: &[&str]) -> (i32, String, String) {
        support::Run::new(&self.host)
            .config(&self.config)
            .args(args)
            .run()
    }

    /// `cai ... --json`: the exit code and the one document on stdout.
    fn cai_json(&self, args: &[&str]) -> (i32, Value) {
        let (code, stdout, stderr) = self.cai(args);
        let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("cai {args:?} printed no JSON document ({e}): {stdout}{stderr}")
        });
        (code, doc)
    }

    /// A digest of every file under the root an update may change (the engine's own state and
    /// logs aside).
    fn digest(&self) -> BTreeMap<String, String> {
        let mut files = self.host.snapshot_files();
        files.retain(|k, _| {
            !k.ends_with("dockerd.log")
                && !k.ends_with("dockerd.err")
                && !k.contains("docker-client")
        });
        files
    }
}

// --- JSON Schemas --------------------------------------------------------------------------------

/// Validates `doc` against `docs/schemas/NAME.schema.json` with python3-jsonschema (the other
/// schemas of the directory resolve its `$ref`s); Err(the validator's message) when invalid.
fn validate(name: &str, doc: &Value) -> Result<(), String> {
    const CHECK: &str = r#"
import json, pathlib, sys, warnings
warnings.simplefilter("ignore")
try:
    import jsonschema
except ImportError:
    print("MISSING python3-jsonschema"); sys.exit(3)
d = pathlib.Path(sys.argv[1])
store = {}
for p in d.glob("*.schema.json"):
    store[p.resolve().as_uri()] = json.loads(p.read_text())
path = (d / (sys.argv[2] + ".schema.json")).resolve()
schema = store[path.as_uri()]
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
resolver = jsonschema.RefResolver(base_uri=path.as_uri(), referrer=schema, store=store)
errors = sorted(cls(schema, resolver=resolver).iter_errors(json.load(sys.stdin)), key=lambda e: list(e.absolute_path))
for e in errors:
    print("%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(document)", e.message))
sys.exit(1 if errors else 0)
"#;
    let mut child = Command::new(python3())
        .arg("-c")
        .arg(CHECK)
        .arg(repo().join("docs/schemas"))
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(doc.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(text),
        Some(3) => panic!(
            "python3-jsonschema is required for this test but is not installed; install with: {ANSIBLE_HINT}"
        ),
        _ => panic!("the schema check of {name} itself failed: {text}"),
    }
}

fn assert_valid(name: &str, doc: &Value) {
    if let Err(e) = validate(name, doc) {
        panic!("not a valid {name} document:\n{e}\n{doc:#}");
    }
}

/// The values under `key` in a document's reports.
fn reports<'a>(doc: &'a Value, key: &str) -> Vec<&'a Value> {
    doc["reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.get(key))
        .collect()
}

#[test]
fn every_json_document_carries_its_schema_and_matches_it() {
    let f = fixture();

    let (code, doc) = f.cai_json(&["doctor", "--json"]);
    assert!(code == 0 || code == 1, "{doc:#}");
    assert_eq!(doc["schema"], 1, "{doc:#}");
    assert_valid("doctor", &doc);
    // The schema is strict: a field it does not describe is a change of shape.
    let mut changed = doc.clone();
    changed["reports"][0]["checks"][0]["detail"] = json!("new");
    let err = validate("doctor", &changed).expect_err("an undescribed field passed");
    assert!(err.contains("detail"), "{err}");
    let mut changed = doc.clone();
    changed["schema"] = json!(2);
    assert!(validate("doctor", &changed).is_err(), "schema 2 passed");

    let (code, doc) = f.cai_json(&["doctor", "--list-checks", "--json"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_valid("doctor", &doc);

    let (code, doc) = f.cai_json(&["doctor", "--repair", "--all", "--dry-run", "--json"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_valid("repair", &doc);
    assert_eq!(reports(&doc, "repair").len(), 1, "{doc:#}");

    // Refused: agent-1 runs.
    let before = f.digest();
    let (code, doc) = f.cai_json(&["update", "--json"]);
    assert_eq!(code, 2, "{doc:#}");
    assert_valid("update", &doc);
    assert_eq!(doc["refusal"]["containers"], json!(["agent-1"]), "{doc:#}");
    assert_eq!(
        reports(&doc, "update")[0]["refused"],
        "containers are running"
    );
    assert_eq!(f.digest(), before);

    let (code, doc) = f.cai_json(&["update", "--check", "--json"]);
    assert_eq!(code, 100, "{doc:#}");
    assert_valid("update", &doc);

    let (code, doc) = f.cai_json(&["update", "--dry-run", "--stop-containers", "--json"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_valid("update", &doc);
    let plan = reports(&doc, "update")[0];
    assert_eq!(plan["containers"]["managed"], json!(["agent-1"]), "{doc:#}");
    assert_eq!(f.digest(), before);

    let (code, doc) = f.cai_json(&["update", "--stop-containers", "--json"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["mode"], "live");
    assert!(!doc["journal"].as_array().unwrap().is_empty(), "{doc:#}");
    assert_valid("update", &doc);
    assert_eq!(f.engine.state("agent-1"), "running");

    // What a rollback would do now: its account, as a failed update reports it.
    let (code, doc) = f.cai_json(&[
        "update",
        "--rollback",
        "--stop-containers",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, 0, "{doc:#}");
    assert_valid("update", &doc);
    assert_eq!(reports(&doc, "rollback").len(), 1, "{doc:#}");

    // Current now: no plan is reported.
    let (code, doc) = f.cai_json(&["update", "--json"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_valid("update", &doc);
    assert!(reports(&doc, "update").is_empty(), "{doc:#}");

    // A repair that walks a volume, with a file owned by nobody in it.
    run_agent_with_a_file_of_nobody(&f);
    let (code, doc) = f.cai_json(&["doctor", "--repair", "--all", "--dry-run", "--json"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_valid("repair", &doc);
    let repair = reports(&doc, "repair")[0];
    assert_eq!(repair["summary"]["repaired"], 1, "{doc:#}");
    let volumes: Vec<&Value> = repair["containers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["volumes"].as_array().unwrap())
        .collect();
    assert_eq!(volumes.len(), 1, "{doc:#}");
    assert_eq!(volumes[0]["destination"], "/data", "{doc:#}");
}

/// Starts managed container agent-2 with volume agent-2-data, in which /data/f is owned by
/// nobody (65534), what the ownership repair changes.
fn run_agent_with_a_file_of_nobody(f: &Fixture) {
    f.engine.run_with(
        "agent-2",
        &["containai.managed=true"],
        &["-v", "agent-2-data:/data"],
        support::TEST_IMAGE,
        &[
            "sh",
            "-c",
            "touch /data/f && chown 65534:65534 /data/f && exec sleep 600",
        ],
    );
}

// --- Ansible -------------------------------------------------------------------------------------

/// The collection built from `contrib/ansible` with `ansible-galaxy collection build` and
/// installed from its tarball into a temporary collections path (removed on drop).
struct Collection(tempfile::TempDir);

impl Collection {
    fn install() -> Self {
        let galaxy = need("ansible-galaxy");
        let dir = tempfile::Builder::new()
            .prefix("cai-ansible")
            .tempdir()
            .unwrap();
        let out = Command::new(&galaxy)
            .args(["collection", "build", "--output-path"])
            .arg(dir.path())
            .arg(repo().join("contrib/ansible"))
            .env("HOME", dir.path())
            .output()
            .expect("run ansible-galaxy");
        let tarball = dir.path().join("containai-cai-0.1.0.tar.gz");
        assert!(
            out.status.success() && tarball.is_file(),
            "ansible-galaxy collection build: {out:?}"
        );
        let out = Command::new(&galaxy)
            .args(["collection", "install", "-p"])
            .arg(dir.path().join("collections"))
            .arg(&tarball)
            .env("HOME", dir.path())
            .output()
            .expect("run ansible-galaxy");
        assert!(
            out.status.success(),
            "ansible-galaxy collection install: {out:?}"
        );
        Self(dir)
    }

    fn path(&self) -> PathBuf {
        self.0.path().join("collections")
    }
}

/// An Ansible command with the installed collection and this host's PATH (the fakes first), so
/// the modules' `cai` sees what `cai` sees in the other tests.
fn ansible(host: &TestHost, collection: &Collection, program: &str) -> Command {
    let mut cmd = Command::new(need(program));
    cmd.env("ANSIBLE_COLLECTIONS_PATH", collection.path())
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_LOCAL_TEMP", host.home.path().join(".ansible/tmp"))
        .env("ANSIBLE_REMOTE_TEMP", host.home.path().join(".ansible/tmp"))
        .env("HOME", host.home.path())
        .env("PATH", host.fakes.path_env())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .stdin(Stdio::null());
    for var in ["CAI_SYSBOX_URL", "CAI_SYSBOX_VERSION", "CAI_SYSBOX_TAG"] {
        cmd.env_remove(var);
    }
    cmd
}

/// What one `ansible-playbook` run ended with.
struct Played {
    code: i32,
    /// The recap's counters for localhost (ok, changed, failed, ...).
    recap: BTreeMap<String, u64>,
    /// Each task's registered result, by its register name.
    results: Value,
    output: String,
}

impl Fixture {
    /// Runs a play of `tasks` (module name, arguments, register name) on localhost with
    /// `ansible-playbook -c local -i localhost,` (and `extra` flags such as `--check`); every
    /// module gets `cai_path`, `cai_root` and `cai_config`. The registered results are written
    /// to a file by an `always` step, failed tasks' too.
    fn play(&self, c: &Collection, tasks: &[(&str, Value, &str)], extra: &[&str]) -> Played {
        let dir = tempfile::tempdir_in(self.host.home.path()).unwrap();
        let out = dir.path().join("results.json");
        let names: Vec<&str> = tasks.iter().map(|t| t.2).collect();
        let mut block = Vec::new();
        for (module, args, register) in tasks {
            let mut args = args.clone();
            args["cai_path"] = json!(support::cai_bin());
            args["cai_root"] = json!(self.host.root());
            args["cai_config"] = json!(self.config);
            block.push(json!({ "name": register, *module: args, "register": register }));
        }
        let dump = names
            .iter()
            .map(|n| format!("'{n}': ({n} | default(None))"))
            .collect::<Vec<_>>()
            .join(", ");
        let playbook = json!([{
            "hosts": "localhost",
            "gather_facts": false,
            "tasks": [{
                "block": block,
                "always": [{
                    "ansible.builtin.copy": { "content": format!("{{{{ {{{dump}}} | to_json }}}}"), "dest": out },
                    "check_mode": false,
                    "changed_when": false,
                }],
            }],
        }]);
        let path = dir.path().join("play.yml");
        std::fs::write(&path, playbook.to_string()).unwrap();
        let run = ansible(&self.host, c, "ansible-playbook")
            .args(["-c", "local", "-i", "localhost,"])
            .args(["-e", "ansible_python_interpreter=/usr/bin/python3"])
            .args(extra)
            .arg(&path)
            .output()
            .expect("run ansible-playbook");
        let output = String::from_utf8_lossy(&run.stdout).into_owned()
            + String::from_utf8_lossy(&run.stderr).as_ref();
        let results = std::fs::read_to_string(&out)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| panic!("the play wrote no results: {output}"));
        let line = output
            .lines()
            .rev()
            .find(|l| l.starts_with("localhost") && l.contains("ok="))
            .unwrap_or_else(|| panic!("no PLAY RECAP: {output}"));
        let recap = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
            .collect();
        Played {
            code: run.status.code().unwrap_or(-1),
            recap,
            results,
            output,
        }
    }
}

impl Played {
    /// What to show when an assertion fails: every task's `msg` and the recap.
    fn why(&self) -> String {
        let msgs: Vec<String> = self
            .results
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}: {}", v["msg"]))
                    .collect()
            })
            .unwrap_or_default();
        let all = self.results.to_string();
        format!(
            "{}\nrecap: {:?}\n{}",
            msgs.join("\n"),
            self.recap,
            &all[..all.len().min(3000)]
        )
    }

    fn count(&self, key: &str) -> u64 {
        self.recap.get(key).copied().unwrap_or(0)
    }
}

#[test]
fn check_mode_changes_nothing_a_real_update_changes_and_a_second_run_is_ok() {
    let c = Collection::install();
    let f = fixture();
    let before = f.digest();
    let states = f.engine.states();
    let update = json!({ "state": "latest", "stop_containers": true });

    let p = f.play(
        &c,
        &[("containai.cai.update", update.clone(), "plan")],
        &["--check", "--diff"],
    );
    assert_eq!(p.code, 0, "{}", p.why());
    assert_eq!(p.count("changed"), 1, "{}", p.why());
    let plan = &p.results["plan"];
    assert_eq!(plan["changed"], true, "{plan:#}");
    assert_eq!(plan["containers_stopped"], json!(["agent-1"]), "{plan:#}");
    assert_eq!(plan["versions"]["before"]["sysbox"], OLD_SYSBOX, "{plan:#}");
    assert_eq!(
        plan["versions"]["after"]["sysbox"], TARGET_SYSBOX,
        "{plan:#}"
    );
    let components: Vec<&str> = plan["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        components,
        ["unit", "config", "dockerd", "sysbox"],
        "{plan:#}"
    );
    // --diff shows the engine unit and daemon.json as they would be written.
    assert!(
        p.output.contains("containai-docker.service") && p.output.contains("default-runtime"),
        "{}",
        p.output
    );
    assert_eq!(f.digest(), before, "check mode changed the host");
    assert_eq!(f.engine.states(), states);

    let p = f.play(&c, &[("containai.cai.update", update.clone(), "done")], &[]);
    assert_eq!(p.code, 0, "{}", p.why());
    assert_eq!(p.count("changed"), 1, "{}", p.why());
    let done = &p.results["done"];
    assert_eq!(done["containers_stopped"], json!(["agent-1"]), "{done:#}");
    assert_eq!(done["containers_restarted"], json!(["agent-1"]), "{done:#}");
    assert_eq!(done["versions"]["before"]["sysbox"], OLD_SYSBOX, "{done:#}");
    assert_eq!(
        done["versions"]["after"],
        json!({ "sysbox": TARGET_SYSBOX, "dockerd": TARGET_DOCKERD }),
        "{done:#}"
    );
    assert_eq!(f.engine.state("agent-1"), "running");
    assert_ne!(f.digest(), before);

    // The same play again: nothing to do, the agents untouched.
    let after = f.digest();
    let p = f.play(&c, &[("containai.cai.update", update, "again")], &[]);
    assert_eq!(p.code, 0, "{}", p.why());
    assert_eq!(p.count("changed"), 0, "{}", p.why());
    assert_eq!(p.count("ok"), 2, "{}", p.why());
    assert_eq!(p.results["again"]["updates"], json!([]));
    assert_eq!(p.results["again"]["containers_stopped"], json!([]));
    assert_eq!(f.digest(), after);
    assert_eq!(f.engine.state("agent-1"), "running");
}

#[test]
fn a_refusal_fails_the_task_naming_the_container_and_doctor_and_facts_match_cai() {
    let c = Collection::install();
    let f = fixture();
    let before = f.digest();

    let p = f.play(
        &c,
        &[(
            "containai.cai.update",
            json!({ "state": "latest" }),
            "refused",
        )],
        &[],
    );
    assert_eq!(p.code, 2, "{}", p.why());
    assert_eq!(p.count("failed"), 1, "{}", p.why());
    let refused = &p.results["refused"];
    assert_eq!(refused["failed"], true, "{refused:#}");
    assert_eq!(refused["changed"], false, "{refused:#}");
    assert!(
        refused["msg"].as_str().unwrap().contains("agent-1"),
        "{refused:#}"
    );
    assert_eq!(refused["containers"], json!(["agent-1"]), "{refused:#}");
    assert_eq!(refused["rc"], 2, "{refused:#}");
    assert_eq!(f.engine.state("agent-1"), "running");
    assert_eq!(f.digest(), before);

    // The report as cai prints it; the module tolerates its errors so it returns them as data.
    let (_, doc) = f.cai_json(&["doctor", "--json"]);
    let checks = doc["reports"][0]["checks"].clone();
    let errors: Vec<Value> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "error")
        .map(|c| c["id"].clone())
        .collect();
    let p = f.play(
        &c,
        &[
            (
                "containai.cai.doctor",
                json!({ "tolerate": errors }),
                "doctor",
            ),
            ("containai.cai.facts", json!({}), "facts"),
        ],
        &[],
    );
    assert_eq!(p.code, 0, "{}", p.why());
    assert_eq!(p.count("changed"), 0, "{}", p.why());
    let doctor = &p.results["doctor"];
    assert_eq!(doctor["checks"], checks, "{doctor:#}");
    assert_eq!(doctor["errors"], json!(errors), "{doctor:#}");
    let facts = &p.results["facts"]["ansible_facts"]["containai"];
    assert_eq!(facts["platform"], "linux", "{facts:#}");
    assert_eq!(facts["versions"]["sysbox"], OLD_SYSBOX, "{facts:#}");
    assert_eq!(
        facts["target"],
        json!({ "sysbox": TARGET_SYSBOX, "dockerd": TARGET_DOCKERD }),
        "{facts:#}"
    );
    assert_eq!(facts["engine"]["reachable"], true, "{facts:#}");
    let names: Vec<&str> = facts["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent-1"], "{facts:#}");
    assert_eq!(facts["running"], json!(["agent-1"]), "{facts:#}");

    // An error the play does not tolerate fails the doctor task, naming the check: without
    // sysbox-runc, sysbox.installed is an error (and --check runs only that one).
    std::fs::remove_file(f.host.fakes.dir().join("sysbox-runc")).unwrap();
    let p = f.play(
        &c,
        &[(
            "containai.cai.doctor",
            json!({ "checks": ["sysbox.installed"] }),
            "strict",
        )],
        &[],
    );
    assert_eq!(p.code, 2, "{}", p.why());
    let strict = &p.results["strict"];
    assert!(
        strict["msg"]
            .as_str()
            .unwrap()
            .starts_with("cai doctor: sysbox.installed: "),
        "{strict:#}"
    );
    assert_eq!(strict["errors"], json!(["sysbox.installed"]), "{strict:#}");
    assert_eq!(strict["checks"].as_array().unwrap().len(), 1, "{strict:#}");
    assert_eq!(f.digest(), before);

    // The ownership repair: check mode shows it and changes nothing, a real run repairs, a
    // second run is ok.
    run_agent_with_a_file_of_nobody(&f);
    let owner = || {
        f.engine
            .docker(&["exec", "agent-2", "stat", "-c", "%u", "/data/f"])
    };
    let repair = json!({ "repair": "all", "checks": ["volumes.ownership"] });
    let p = f.play(
        &c,
        &[("containai.cai.doctor", repair.clone(), "would")],
        &["--check"],
    );
    assert_eq!(p.code, 0, "{}", p.why());
    assert_eq!(p.count("changed"), 1, "{}", p.why());
    assert_eq!(p.results["would"]["repair"]["dry_run"], true, "{}", p.why());
    assert_eq!(owner(), "65534");
    assert_eq!(f.digest(), before, "check mode wrote the journal");
    let p = f.play(
        &c,
        &[("containai.cai.doctor", repair.clone(), "repaired")],
        &[],
    );
    assert_eq!(p.code, 0, "{}", p.why());
    assert_eq!(p.count("changed"), 1, "{}", p.why());
    // The owner the repair chose for agent-2's volumes, as it reported it.
    let target = p.results["repaired"]["repair"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["container"] == "agent-2")
        .map(|c| c["target"]["uid"].to_string())
        .unwrap_or_else(|| panic!("{}", p.why()));
    assert_eq!(owner(), target);
    assert_ne!(target, "65534");
    assert_eq!(
        p.results["repaired"]["checks"][0]["status"],
        "ok",
        "{}",
        p.why()
    );
    let p = f.play(&c, &[("containai.cai.doctor", repair, "again")], &[]);
    assert_eq!(p.code, 0, "{}", p.why());
    assert_eq!(p.count("changed"), 0, "{}", p.why());
}

#[test]
fn ansible_doc_renders_every_module_and_they_compile() {
    let c = Collection::install();
    let host = TestHost::new();
    let modules = repo().join("contrib/ansible/plugins/modules");
    let mut names: Vec<String> = std::fs::read_dir(&modules)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".py").map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names, ["doctor", "facts", "update"]);
    for name in &names {
        let out = ansible(&host, &c, "ansible-doc")
            .arg(format!("containai.cai.{name}"))
            .output()
            .expect("run ansible-doc");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "ansible-doc containai.cai.{name}: {out:?}"
        );
        for section in ["OPTIONS", "EXAMPLES", "RETURN VALUES", "cai_root"] {
            assert!(text.contains(section), "{name}: no {section} in {text}");
        }
    }
    let mut files: Vec<PathBuf> = names
        .iter()
        .map(|n| modules.join(format!("{n}.py")))
        .collect();
    files.push(repo().join("contrib/ansible/plugins/module_utils/cai.py"));
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(python3())
        .args(["-m", "py_compile"])
        .args(&files)
        .env("PYTHONPYCACHEPREFIX", cache.path())
        .output()
        .expect("run python3");
    assert!(out.status.success(), "py_compile: {out:?}");
    // The example playbook and the role parse, and every module they name resolves.
    let out = ansible(&host, &c, "ansible-playbook")
        .args(["--syntax-check", "-i", "localhost,"])
        .arg(repo().join("contrib/ansible/playbooks/rolling-update.yml"))
        .output()
        .expect("run ansible-playbook");
    assert!(out.status.success(), "rolling-update.yml: {out:?}");
}

/// Runs `playbook` (YAML or JSON text) on localhost; (exit code, recap line, output).
fn run_playbook(host: &TestHost, c: &Collection, playbook: &str) -> (i32, String, String) {
    let path = host.home.path().join("play.yml");
    std::fs::write(&path, playbook).unwrap();
    let out = ansible(host, c, "ansible-playbook")
        .args(["-c", "local", "-i", "localhost,"])
        .args(["-e", "ansible_python_interpreter=/usr/bin/python3"])
        .arg(&path)
        .output()
        .expect("run ansible-playbook");
    let output = String::from_utf8_lossy(&out.stdout).into_owned()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    let recap = output
        .lines()
        .rev()
        .find(|l| l.starts_with("localhost") && l.contains("ok="))
        .unwrap_or_default()
        .to_string();
    (out.status.code().unwrap_or(-1), recap, output)
}

#[test]
fn the_host_role_installs_cai_from_an_archive_verified_against_sha256sums() {
    use std::os::unix::fs::PermissionsExt;
    let c = Collection::install();
    let host = TestHost::new();
    let rel = host.home.path().join("release");
    let stage = rel.join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    let binary = "#!/bin/sh\necho cai 9.9.9\n";
    std::fs::write(stage.join("cai"), binary).unwrap();
    std::fs::set_permissions(stage.join("cai"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let archive = rel.join("cai-9.9.9-linux.tar.gz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&stage)
        .arg("-czf")
        .arg(&archive)
        .arg("cai")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&archive).unwrap();
    // A second archive that SHA256SUMS names with another checksum.
    std::fs::copy(&archive, rel.join("cai-9.9.8-linux.tar.gz")).unwrap();
    std::fs::write(
        rel.join("SHA256SUMS"),
        format!(
            "{}  cai-9.9.9-linux.tar.gz\n{}  cai-9.9.8-linux.tar.gz\n",
            sha256(&bytes),
            "0".repeat(64)
        ),
    )
    .unwrap();
    let play = |version: &str, dir: &Path| {
        json!([{
            "hosts": "localhost",
            "gather_facts": false,
            "roles": [{
                "role": "containai.cai.host",
                "cai_install_dir": dir,
                "cai_download_dir": dir.join("download"),
                "cai_archive_url": format!("file://{}/cai-{version}-linux.tar.gz", rel.display()),
                "cai_sha256sums_url": format!("file://{}/SHA256SUMS", rel.display()),
            }],
        }])
        .to_string()
    };
    let bin = host.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let (code, recap, output) = run_playbook(&host, &c, &play("9.9.9", &bin));
    assert_eq!(code, 0, "{output}");
    assert!(!recap.contains("changed=0"), "{recap}");
    assert_eq!(std::fs::read_to_string(bin.join("cai")).unwrap(), binary);
    let mode = std::fs::metadata(bin.join("cai"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // Again: nothing to do.
    let (code, recap, output) = run_playbook(&host, &c, &play("9.9.9", &bin));
    assert_eq!(code, 0, "{output}");
    assert!(recap.contains("changed=0"), "{recap}");

    // A checksum that does not match: the task fails and nothing is installed.
    let other = host.home.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (code, _, output) = run_playbook(&host, &c, &play("9.9.8", &other));
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("did not match"), "{output}");
    assert!(!other.join("cai").exists());
    // An archive SHA256SUMS does not name: refused before any download.
    let (code, _, output) = run_playbook(&host, &c, &play("9.9.7", &other));
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("has no sha256 for cai-9.9.7-linux.tar.gz"),
        "{output}"
    );
    assert!(!other.join("cai").exists());
}
