//! The release target and the sysbox update decision through the real binary: what
//! `release::target()` reports from the bundled manifest, config and `CAI_SYSBOX_*`, how a bad
//! override is refused, and what `cai doctor`'s `sysbox.target` check makes of each installed
//! sysbox. No engine is needed: `sysbox-runc` is a fake on `PATH`.

mod support;

use std::process::Command;

use containai::plan::platform::deb_arch;
use support::TestHost;

const GH: &str = "https://github.com/novotnyllc/ContainAI/releases/download";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Asks for the target three times: the host resolves it once per run [P26], so whatever it
/// warns about is said once.
const TARGET_SCRIPT: &str = "//! version: 1.0.0\n//! api: 1.2\nlet t = release::target();\nif release::target() != t || release::target() != t { exit(3); }\nreport::data(t);\n";

fn first_line(stderr: &str) -> &str {
    stderr.lines().next().unwrap_or("")
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect()
}

/// `cai run --json` of a script printing the release target; (target, stderr).
fn target_of(host: &TestHost, cmd: &mut Command) -> (serde_json::Value, String) {
    let script = host.script("target.rhai", TARGET_SCRIPT);
    let out = cmd
        .args(["run", "--json"])
        .arg(&script)
        .output()
        .expect("run cai");
    let (code, stdout, stderr) = support::decode(out);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    (doc["reports"][0].clone(), stderr)
}

fn write_config(host: &TestHost, text: &str) {
    std::fs::write(host.root().join("etc/containai/config.toml"), text).unwrap();
}

fn docker_machine() -> &'static str {
    match deb_arch() {
        "arm64" => "aarch64",
        _ => "x86_64",
    }
}

#[test]
fn the_bundled_target_is_reported_for_this_architecture() {
    let host = TestHost::new();
    let (t, stderr) = target_of(&host, &mut host.cai());
    let arch = deb_arch();
    assert_eq!(t["arch"], arch);
    let url = format!(
        "{GH}/sysbox-build-20260127-10/sysbox-ce_0.6.7+containai.20260127.linux_{arch}.deb"
    );
    assert_eq!(
        t["sysbox"],
        serde_json::json!({
            "tag": "sysbox-build-20260127-10",
            "version": "0.6.7+containai.20260127",
            "semver": "0.6.7",
            "url": url,
            // A build from source: nothing pinned, and GitHub publishes no checksum file.
            "sha256": null,
            "sha256_url": null,
            "source": "bundled",
            "sha256_key": "sysbox_sha256",
        })
    );
    let docker = format!(
        "https://download.docker.com/linux/static/stable/{}/docker-28.2.2.tgz",
        docker_machine()
    );
    assert_eq!(t["dockerd"]["version"], "28.2.2");
    assert_eq!(t["dockerd"]["url"], docker.as_str());
    assert_eq!(t["dockerd"]["source"], "bundled");
    assert!(warnings(&stderr).is_empty(), "{stderr}");
}

#[test]
fn a_config_override_without_sha256_is_verified_against_the_checksum_file() {
    let host = TestHost::new();
    let mirror = "https://mirror.example/sysbox/sysbox-ce_0.6.8+containai.20260301.deb";
    write_config(
        &host,
        &format!(
            "sysbox_url = \"{mirror}\"\nsysbox_version = \"0.6.8+containai.20260301\"\nsysbox_tag = \"sysbox-build-20260301-1\"\ndockerd_version = \"28.3.0\"\ndockerd_sha256 = \"{SHA}\"\n"
        ),
    );
    let (t, stderr) = target_of(&host, &mut host.cai());
    assert_eq!(
        t["sysbox"],
        serde_json::json!({
            "tag": "sysbox-build-20260301-1",
            "version": "0.6.8+containai.20260301",
            "semver": "0.6.8",
            "url": mirror,
            "sha256": null,
            "sha256_url": format!("{mirror}.sha256"),
            "source": "config",
            "sha256_key": "sysbox_sha256",
        })
    );
    assert_eq!(t["dockerd"]["version"], "28.3.0");
    assert_eq!(
        t["dockerd"]["url"],
        format!(
            "https://download.docker.com/linux/static/stable/{}/docker-28.3.0.tgz",
            docker_machine()
        )
    );
    assert_eq!(t["dockerd"]["sha256"], SHA);
    assert_eq!(t["dockerd"]["sha256_url"], serde_json::Value::Null);
    assert_eq!(t["dockerd"]["source"], "config");
    assert!(warnings(&stderr).is_empty(), "{stderr}");
}

#[test]
fn the_environment_wins_over_config_and_the_manifest() {
    let host = TestHost::new();
    write_config(
        &host,
        &format!(
            "sysbox_url = \"https://mirror.example/s.deb\"\nsysbox_sha256 = \"{SHA}\"\nsysbox_version = \"0.6.8+containai.20260301\"\nsysbox_tag = \"b-1\"\n"
        ),
    );
    let (t, stderr) = target_of(
        &host,
        host.cai()
            .env("CAI_SYSBOX_VERSION", "0.6.9+containai.20260401")
            .env("CAI_SYSBOX_TAG", "sysbox-build-20260401-2"),
    );
    let arch = deb_arch();
    // Derived from the manifest's template; config's URL and checksum describe another build.
    let url =
        format!("{GH}/sysbox-build-20260401-2/sysbox-ce_0.6.9+containai.20260401.linux_{arch}.deb");
    assert_eq!(t["sysbox"]["source"], "env");
    assert_eq!(t["sysbox"]["url"], url.as_str());
    assert_eq!(t["sysbox"]["version"], "0.6.9+containai.20260401");
    assert_eq!(t["sysbox"]["tag"], "sysbox-build-20260401-2");
    assert_eq!(t["sysbox"]["sha256"], serde_json::Value::Null);
    assert_eq!(t["sysbox"]["sha256_url"], format!("{url}.sha256"));
    // The environment's artifact is pinned in the environment: config's pin describes another.
    assert_eq!(t["sysbox"]["sha256_key"], "CAI_SYSBOX_SHA256");
    assert!(warnings(&stderr).is_empty(), "{stderr}");

    let (t, _) = target_of(
        &host,
        host.cai()
            .env("CAI_SYSBOX_URL", "file:///srv/mirror/sysbox.deb"),
    );
    assert_eq!(t["sysbox"]["source"], "env");
    assert_eq!(t["sysbox"]["url"], "file:///srv/mirror/sysbox.deb");
    assert_eq!(t["sysbox"]["version"], "0.6.7+containai.20260127");
    assert_eq!(
        t["sysbox"]["sha256_url"],
        "file:///srv/mirror/sysbox.deb.sha256"
    );

    // CAI_SYSBOX_SHA256 pins it, as an http:// URL needs [P67].
    let (t, _) = target_of(
        &host,
        host.cai()
            .env("CAI_SYSBOX_URL", "http://mirror.example/s.deb")
            .env("CAI_SYSBOX_SHA256", SHA),
    );
    assert_eq!(t["sysbox"]["source"], "env");
    assert_eq!(t["sysbox"]["sha256"], SHA);
    assert_eq!(t["sysbox"]["sha256_url"], serde_json::Value::Null);

    // An empty variable is unset: config applies again.
    let (t, _) = target_of(&host, host.cai().env("CAI_SYSBOX_URL", ""));
    assert_eq!(t["sysbox"]["source"], "config");
    assert_eq!(t["sysbox"]["sha256"], SHA);
}

/// P26: the target is resolved once per run, so a lone version warns exactly once although the
/// script asks for the target three times.
#[test]
fn a_lone_version_or_tag_warns_in_one_line_once_per_run() {
    let host = TestHost::new();
    let (t, stderr) = target_of(
        &host,
        host.cai()
            .env("CAI_SYSBOX_VERSION", "0.6.9+containai.20260401"),
    );
    assert_eq!(
        warnings(&stderr),
        [
            "warning: CAI_SYSBOX_VERSION = 0.6.9+containai.20260401 is set without CAI_SYSBOX_TAG, so the bundled tag sysbox-build-20260127-10 goes with it and the pair may name no release; set both"
        ],
        "{stderr}"
    );
    assert_eq!(t["sysbox"]["tag"], "sysbox-build-20260127-10");
    assert_eq!(t["sysbox"]["version"], "0.6.9+containai.20260401");

    write_config(&host, "sysbox_tag = \"sysbox-build-20260401-2\"\n");
    let (t, stderr) = target_of(&host, &mut host.cai());
    let w = warnings(&stderr);
    assert_eq!(w.len(), 1, "{stderr}");
    assert!(
        w[0].starts_with("warning: config sysbox_tag = sysbox-build-20260401-2 is set without config sysbox_version"),
        "{stderr}"
    );
    assert_eq!(t["sysbox"]["version"], "0.6.7+containai.20260127");
}

#[test]
fn a_malformed_override_is_one_clear_line_and_exit_1_changing_nothing() {
    let host = TestHost::new();
    host.fakes
        .add_standard("sysbox-runc version 0.6.7+containai.20260127");
    let before = host.snapshot_files();
    let config = host.root().join("etc/containai/config.toml");
    let shown = config.display().to_string();
    for (text, want) in [
        (
            "sysbox_sha256 = \"not-hex\"\n",
            format!(
                "error: invalid sysbox_sha256 in config {shown}: \"not-hex\" is not a sha256 (64 hexadecimal digits)"
            ),
        ),
        (
            "sysbox_url = \"ftp://mirror.example/sysbox.deb\"\n",
            format!(
                "error: invalid sysbox_url in config {shown}: \"ftp://mirror.example/sysbox.deb\" is not an https://, http:// or file:// URL"
            ),
        ),
        (
            "dockerd_sha256 = \"abc\"\n",
            format!("error: invalid dockerd_sha256 in config {shown}: \"abc\""),
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        for args in [&["doctor"][..], &["scripts", "api"]] {
            let (code, _, stderr) = host.run(args);
            assert_eq!(code, 1, "{text}: {stderr}");
            assert!(first_line(&stderr).starts_with(&want), "{text}: {stderr}");
            assert!(stderr.contains("help: fix or remove"), "{stderr}");
        }
    }
    std::fs::remove_file(&config).unwrap();

    for (var, value, want) in [
        (
            "CAI_SYSBOX_URL",
            "ftp://mirror.example/sysbox.deb",
            "error: invalid CAI_SYSBOX_URL: \"ftp://mirror.example/sysbox.deb\" is not an https://, http:// or file:// URL",
        ),
        (
            "CAI_SYSBOX_VERSION",
            "0.6.8",
            "error: invalid CAI_SYSBOX_VERSION: \"0.6.8\" is not a ContainAI build",
        ),
        (
            "CAI_SYSBOX_TAG",
            "../x",
            "error: invalid CAI_SYSBOX_TAG: \"../x\" is not a release tag",
        ),
        // The fetch's own URL and sha256 rules, applied when the variable is read.
        (
            "CAI_SYSBOX_URL",
            "file:///srv/a%ZZ.deb?x",
            "error: invalid CAI_SYSBOX_URL: \"file:///srv/a%ZZ.deb?x\" has a query or fragment",
        ),
        (
            "CAI_SYSBOX_URL",
            "file:///srv/a%ZZ.deb",
            "error: invalid CAI_SYSBOX_URL: \"file:///srv/a%ZZ.deb\" has a bad %-escape",
        ),
        (
            "CAI_SYSBOX_SHA256",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "error: invalid CAI_SYSBOX_SHA256: \"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\" is not a sha256 (64 hexadecimal digits): it has 71 characters, not all of them hex digits",
        ),
    ] {
        let out = host.cai().env(var, value).arg("doctor").output().unwrap();
        let (code, stdout, stderr) = support::decode(out);
        assert_eq!(code, 1, "{var}: {stderr}");
        assert!(first_line(&stderr).starts_with(want), "{var}: {stderr}");
        assert!(
            stderr.contains(&format!("help: fix or unset {var}")),
            "{stderr}"
        );
        assert!(stdout.is_empty(), "{stdout}");
    }
    assert!(host.fakes.log().is_empty(), "{}", host.fakes.log());
    assert_eq!(host.snapshot_files(), before);
}

/// `sysbox::decide` through a script: the three shapes `installed` can take and a bad target.
#[test]
fn decide_takes_what_installed_version_returns_or_its_error() {
    let host = TestHost::new();
    host.fakes
        .add_standard("sysbox-runc version 0.6.7+containai.20251201");
    let script = host.script(
        "decide.rhai",
        "//! version: 1.0.0\n//! api: 1.2\n\
         let target = release::target().sysbox.version;\n\
         report::data(sysbox::decide(sysbox::installed_version(), target));\n\
         report::data(sysbox::decide((), target));\n\
         report::data(sysbox::decide(#{ error: \"sysbox-runc timed out\" }, target));\n",
    );
    let (code, stdout, stderr) = host.run(&["run", "--json", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let r = &doc["reports"];
    assert_eq!(r[0]["action"], "rebuild", "{doc}");
    assert_eq!(r[0]["needed"], true);
    assert_eq!(
        r[0]["reason"],
        "sysbox 0.6.7+containai.20251201 is build 20251201 of 0.6.7; the target is build 20260127 of the same version"
    );
    assert_eq!(r[1]["action"], "install");
    assert_eq!(r[1]["needed"], true);
    assert_eq!(r[2]["action"], "check-failed");
    assert_eq!(r[2]["needed"], serde_json::Value::Null);
    assert_eq!(
        r[2]["reason"],
        "cannot tell whether sysbox needs updating: sysbox-runc timed out"
    );

    for (call, want) in [
        (
            "sysbox::decide((), \"0.6.7\")",
            "sysbox::decide: target \"0.6.7\" is not a ContainAI build",
        ),
        (
            "sysbox::decide(\"0.6.6\", \"0.6.7+containai.20260127\")",
            "sysbox::decide: installed must be ()",
        ),
        (
            "sysbox::decide(#{}, \"0.6.7+containai.20260127\")",
            "the map has no string `full` or `error`",
        ),
    ] {
        let script = host.script(
            "bad.rhai",
            &format!("//! version: 1.0.0\n//! api: 1.2\n{call};\n"),
        );
        let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
        assert_eq!(code, 1, "{call}: {stderr}");
        assert!(first_line(&stderr).contains(want), "{call}: {stderr}");
    }
}

/// The doctor's `sysbox.target` record for one `sysbox-runc --version` output (None: no
/// sysbox-runc on PATH at all).
fn doctor_target_check(version_output: Option<&str>, wsl2: bool) -> serde_json::Value {
    let host = TestHost::new();
    let mut cmd = host.cai();
    match version_output {
        Some(output) => host.fakes.add_standard(output),
        None => {
            host.fakes.add("systemctl", "exit 0");
            // Only the fakes, so a sysbox-runc installed on this machine cannot answer.
            cmd.env("PATH", host.fakes.dir());
        }
    }
    if wsl2 {
        std::fs::create_dir_all(host.root().join("proc/sys/kernel")).unwrap();
        std::fs::write(
            host.root().join("proc/sys/kernel/osrelease"),
            "5.15.167.4-microsoft-standard-WSL2\n",
        )
        .unwrap();
    }
    let out = cmd.args(["doctor", "--json"]).output().unwrap();
    let (_, stdout, stderr) = support::decode(out);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    doc["reports"][0]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == "sysbox.target")
        .cloned()
        .unwrap_or_else(|| panic!("no sysbox.target check in {doc}"))
}

#[test]
fn doctor_compares_the_installed_sysbox_with_the_target() {
    let multi = |v: &str| {
        format!(
            "sysbox-runc\n\tedition: \tCommunity Edition (CE)\n\tversion: \t{v}\n\tcommit: \tabc"
        )
    };
    // (sysbox-runc --version output, status, summary contains, remediation contains)
    let cases: Vec<(Option<String>, &str, &str, &str)> = vec![
        (
            Some("sysbox-runc version 0.6.7+containai.20251201".into()),
            "warn",
            "is build 20251201 of 0.6.7; the target is build 20260127",
            "cai update --dry-run",
        ),
        (
            Some(multi("0.6.7+containai.20260127")),
            "ok",
            "sysbox 0.6.7+containai.20260127 is the target 0.6.7+containai.20260127",
            "",
        ),
        (
            Some("sysbox-runc version 0.6.7+containai.20260127-1".into()),
            "ok",
            "is the target",
            "",
        ),
        (
            Some("sysbox-runc version 0.6.6".into()),
            "warn",
            "sysbox 0.6.6 is an upstream build; the target is the ContainAI build 0.6.7+containai.20260127",
            "cai update --dry-run",
        ),
        // Kept, never downgraded [P31]; still a warning, since it is not the ContainAI build.
        (
            Some(multi("0.7.0")),
            "warn",
            "upstream sysbox 0.7.0 is newer than the target 0.6.7+containai.20260127; cai never downgrades",
            "cai never downgrades sysbox",
        ),
        // P11/P20/P21: output that is not a version is `unknown`, never `ok`.
        (
            Some("sysbox-runc: something went wrong".into()),
            "unknown",
            "cannot tell whether sysbox needs updating: cannot find a version",
            "sysbox-runc --version",
        ),
        (
            None,
            "error",
            "sysbox is not installed; the target is 0.6.7+containai.20260127",
            "cai update --dry-run",
        ),
    ];
    for (output, status, summary, remediation) in cases {
        let check = doctor_target_check(output.as_deref(), false);
        assert_eq!(check["status"], status, "{output:?}: {check}");
        assert_eq!(check["category"], "sysbox", "{check}");
        let got = check["summary"].as_str().unwrap();
        assert!(got.contains(summary), "{output:?}: {check}");
        let got = check["remediation"].as_str().unwrap();
        if remediation.is_empty() {
            assert_eq!(got, "", "{check}");
        } else {
            assert!(got.contains(remediation), "{output:?}: {check}");
        }
    }
}

/// P19: on WSL2 an installed but outdated sysbox is an update like anywhere else, never "present,
/// so nothing to do".
#[test]
fn wsl2_with_an_outdated_sysbox_needs_an_update() {
    let check = doctor_target_check(Some("sysbox-runc version 0.6.6+containai.20251201"), true);
    assert_eq!(check["status"], "warn", "{check}");
    assert_eq!(
        check["summary"],
        "sysbox 0.6.6+containai.20251201 is older than the target 0.6.7+containai.20260127"
    );
    assert_eq!(check["remediation"], "cai update --dry-run");
}

/// A build from source (this one: `stdlib/release.toml` has empty `sha256` fields) cannot verify
/// the bundled artifacts. `--check` warns, a dry run refuses like the live run, naming each
/// artifact, its URL and the key that pins it, and nothing on the host changes; `cai doctor`'s
/// `release.checksums` says the same. Pinned in config, every one of them goes quiet.
#[test]
fn a_source_build_names_each_unpinned_artifact_and_the_key_that_pins_it() {
    let host = TestHost::new();
    // No engine, and its unit inactive: nothing runs that the update would have to stop.
    host.fakes.add("systemctl", "echo inactive; exit 3");
    host.fakes.add(
        "sysbox-runc",
        "printf 'sysbox-runc\\n\\tedition: \\tCommunity Edition (CE)\\n\\tversion: \\t0.6.7\\n'",
    );
    let (t, _) = target_of(&host, &mut host.cai());
    let unpinned: Vec<(&str, &str)> = t["unpinned"]
        .as_array()
        .expect("unpinned is a list")
        .iter()
        .map(|a| {
            (
                a["component"].as_str().unwrap(),
                a["sha256_key"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        unpinned,
        [("sysbox", "sysbox_sha256"), ("dockerd", "dockerd_sha256")]
    );
    let docker_url = t["dockerd"]["url"].as_str().unwrap().to_string();

    let before = host.snapshot_files();
    let (code, stdout, stderr) = host.run(&["update", "--check"]);
    assert_eq!(code, 100, "{stdout}\n{stderr}");
    assert!(stdout.contains("dockerd: none -> 28.2.2"), "{stdout}");
    assert!(
        stderr.contains(
            "warning: dockerd docker-28.2.2.tgz has no pinned sha256 in this cai (a build from source)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: pin it: set dockerd_sha256 in /etc/containai/config.toml"),
        "{stderr}"
    );
    assert!(stderr.contains(&docker_url), "{stderr}");

    let (code, stdout, stderr) = host.run(&["update", "--dry-run"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error: cannot verify ")
            && stderr.contains("docker-28.2.2.tgz: no sha256 is pinned (this cai was built from source); nothing was changed"),
        "{stderr}"
    );
    assert!(stderr.contains("help: set "), "{stderr}");
    assert!(stderr.contains("dockerd_sha256"), "{stderr}");
    assert_eq!(
        host.snapshot_files(),
        before,
        "the dry run changed the host"
    );

    let check = doctor_check(&host, "release.checksums");
    assert_eq!(check["status"], "warn", "{check}");
    let summary = check["summary"].as_str().unwrap();
    assert!(summary.contains(&docker_url), "{summary}");
    assert!(
        check["remediation"]
            .as_str()
            .unwrap()
            .contains("set sysbox_sha256 and dockerd_sha256 in /etc/containai/config.toml"),
        "{check}"
    );

    // Pinned in config (the URLs stay the manifest's): nothing to warn about.
    write_config(
        &host,
        &format!("sysbox_sha256 = \"{SHA}\"\ndockerd_sha256 = \"{SHA}\"\n"),
    );
    let (t, _) = target_of(&host, &mut host.cai());
    assert_eq!(t["unpinned"], serde_json::json!([]));
    assert_eq!(t["dockerd"]["url"], docker_url.as_str());
    let (code, _, stderr) = host.run(&["update", "--check"]);
    assert_eq!(code, 100, "{stderr}");
    assert!(!stderr.contains("no pinned sha256"), "{stderr}");
    let check = doctor_check(&host, "release.checksums");
    assert_eq!(check["status"], "ok", "{check}");
    assert_eq!(
        check["summary"],
        "sysbox pinned (config), dockerd pinned (config)"
    );
}

/// With agents running and consent to stop them, a source build's update still refuses before
/// any container is stopped or recorded: the running agent is untouched.
#[test]
fn an_unpinned_update_refuses_before_any_container_stops() {
    support::require_root();
    let host = TestHost::new();
    host.fakes
        .add_standard("sysbox-runc\n\tedition: \tCommunity Edition (CE)\n\tversion: \t0.6.7\n");
    let engine = support::Dockerd::start(&host);
    engine.run_agent("agent-1");
    let (code, stdout, stderr) = host.run(&["--yes", "update", "--stop-containers"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot verify ") && stderr.contains("dockerd_sha256"),
        "{stderr}"
    );
    assert_eq!(engine.state("agent-1"), "running");
    assert!(
        !host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists(),
        "a record of stopped containers was written"
    );
}

fn doctor_check(host: &TestHost, id: &str) -> serde_json::Value {
    let (_, stdout, stderr) = host.run(&["doctor", "--json", "--check", id]);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    doc["reports"][0]["checks"][0].clone()
}
