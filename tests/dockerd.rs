//! The dockerd bundle: unpacked beside the active version, links switched atomically, the old
//! version kept, and hostile tarballs refused without touching `/opt/containai`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::{Run, TestHost};

const HEADER: &str = "//! version: 1.0.0\n//! api: 1\n";

/// A gzipped tarball in the artifact cache, built with the real `tar` from `entries` under a
/// staging directory; `prepare` may add links or odd entries before packing.
fn bundle(host: &TestHost, file: &str, version: &str, prepare: impl FnOnce(&Path)) -> PathBuf {
    let cache = host.root().join("var/cache/containai");
    std::fs::create_dir_all(&cache).unwrap();
    for dir in ["var", "var/cache", "var/cache/containai"] {
        std::fs::set_permissions(
            host.root().join(dir),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let out = cache.join(file);
    support::dockerd_bundle(&out, &["dockerd", "docker", "containerd"], version, prepare);
    out
}

fn install(host: &TestHost, file: &str, version: &str, dry_run: bool) -> (i32, String, String) {
    let text = format!(
        "{HEADER}dockerd::install(\"/var/cache/containai/{file}\", \"{version}\");\nprint(`${{dockerd::installed()}}`);\n0\n"
    );
    let dry_run = if dry_run { &["--dry-run"][..] } else { &[] };
    Run::script(host, "install.rhai", &text).args(dry_run).run()
}

#[test]
fn a_bundle_is_installed_beside_the_old_one_and_the_links_switch() {
    let host = TestHost::new();
    let opt = host.root().join("opt/containai");
    bundle(&host, "docker-28.2.2.tgz", "28.2.2", |_| {});

    // A dry run plans the install and writes nothing.
    let before = host.snapshot_files();
    let (code, stdout, stderr) = install(&host, "docker-28.2.2.tgz", "28.2.2", true);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("dockerd.install"), "{stdout}");
    assert_eq!(host.snapshot_files(), before);

    let (code, stdout, stderr) = install(&host, "docker-28.2.2.tgz", "28.2.2", false);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "28.2.2\n");
    assert_eq!(
        std::fs::read_link(opt.join("bin/dockerd")).unwrap(),
        Path::new("../docker/28.2.2/dockerd")
    );
    assert_eq!(
        std::fs::read_to_string(opt.join("VERSION")).unwrap(),
        "28.2.2\n"
    );
    let out = Command::new(opt.join("bin/dockerd")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "dockerd 28.2.2\n");

    // A newer bundle while a reader keeps resolving the links: never a dangling one.
    bundle(&host, "docker-28.3.0.tgz", "28.3.0", |_| {});
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let links: Vec<PathBuf> = ["dockerd", "docker", "containerd"]
            .iter()
            .map(|n| opt.join("bin").join(n))
            .collect();
        std::thread::spawn(move || {
            let mut checks = 0_u64;
            while !done.load(Ordering::SeqCst) {
                for link in &links {
                    let meta = std::fs::metadata(link);
                    assert!(
                        meta.is_ok_and(|m| m.is_file()),
                        "{} dangled",
                        link.display()
                    );
                    checks += 1;
                }
            }
            checks
        })
    };
    let (code, stdout, stderr) = install(&host, "docker-28.3.0.tgz", "28.3.0", false);
    done.store(true, Ordering::SeqCst);
    let checks = reader.join().expect("a link dangled during the switch");
    assert!(checks > 0);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "28.3.0\n");
    for name in ["dockerd", "docker", "containerd"] {
        assert_eq!(
            std::fs::read_link(opt.join("bin").join(name)).unwrap(),
            Path::new("../docker/28.3.0").join(name)
        );
    }
    // The previous version stays for a rollback; no staging directory is left.
    assert!(opt.join("docker/28.2.2/dockerd").is_file());
    let left: Vec<String> = std::fs::read_dir(opt.join("docker"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn hostile_or_misplaced_bundles_are_refused_and_nothing_changes() {
    let host = TestHost::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_path_buf();
    type Prepare = Box<dyn FnOnce(&Path)>;
    let cases: Vec<(&str, Prepare, &str)> = vec![
        (
            "link.tgz",
            Box::new(move |stage: &Path| {
                std::os::unix::fs::symlink(&target, stage.join("docker/evil")).unwrap();
            }),
            "not a regular file",
        ),
        (
            "nested.tgz",
            Box::new(|stage: &Path| {
                std::fs::create_dir(stage.join("docker/sub")).unwrap();
                std::fs::write(stage.join("docker/sub/x"), "x").unwrap();
            }),
            "\"docker/sub/\" is not a regular file",
        ),
        (
            "nodockerd.tgz",
            Box::new(|stage: &Path| {
                std::fs::remove_file(stage.join("docker/dockerd")).unwrap();
            }),
            "it has no docker/dockerd",
        ),
    ];
    for (file, prepare, expect) in cases {
        bundle(&host, file, "1", prepare);
        let before = host.snapshot_files();
        let (code, _, stderr) = install(&host, file, "28.2.2", false);
        assert_eq!(code, 1, "{file}: {stderr}");
        assert!(stderr.contains(expect), "{file}: {stderr}");
        let after = host.snapshot_files();
        let changed: Vec<&String> = after
            .iter()
            // The journal records the failed attempt; that is the point of it.
            .filter(|(path, meta)| {
                before.get(*path) != Some(meta) && !path.contains("var/lib/containai")
            })
            .map(|(path, _)| path)
            .collect();
        // Only the (empty) versions directory may appear; no files, no links.
        assert!(
            changed.iter().all(|p| p.ends_with("opt/containai/docker")),
            "{file} changed {changed:?}"
        );
        assert!(!host.root().join("opt/containai/bin").exists(), "{file}");
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    for (bundle, version, expect) in [
        (
            "/tmp/docker.tgz",
            "28.2.2",
            "bundles are installed from /var/cache/containai",
        ),
        (
            "/var/cache/containai/docker-28.2.2.tgz",
            "../x",
            "invalid dockerd version",
        ),
        (
            "/var/cache/containai/absent.tgz",
            "28.2.2",
            "does not exist",
        ),
    ] {
        let script = host.script(
            "bad.rhai",
            &format!("{HEADER}dockerd::install(\"{bundle}\", \"{version}\");\n0\n"),
        );
        let (code, _, stderr) = host.run(&["run", script.to_str().unwrap()]);
        assert_eq!(code, 1, "{bundle}: {stderr}");
        assert!(stderr.contains(expect), "{bundle}: {stderr}");
    }
}

/// The engine unit starts dockerd with `--config-file` only, so the daemon configuration `cai`
/// renders must be one a real dockerd accepts (dockerd refuses unknown keys and keys that clash
/// with its flags) and must make sysbox-runc the default runtime. A real dockerd is started with
/// it; only the exec root and pid file are moved into the test's tree.
#[test]
fn the_rendered_daemon_config_starts_a_real_dockerd_with_sysbox_as_default_runtime() {
    support::require_root();
    let dockerd = support::require("dockerd");
    support::require("docker");
    let host = TestHost::new();
    let root = host.root();
    let socket = root.join("engine.sock");
    std::fs::write(
        root.join("etc/containai/config.toml"),
        format!(
            "socket = \"{}\"\ndata_root = \"{}\"\n",
            socket.display(),
            root.join("data").display()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = host.run(&["system", "unit", "daemon.json"]);
    assert_eq!(code, 0, "{stderr}");
    let mut config: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        config["hosts"][0],
        format!("unix://{}", socket.display()),
        "{stdout}"
    );
    config["exec-root"] = root.join("exec").display().to_string().into();
    config["pidfile"] = root.join("dockerd.pid").display().to_string().into();
    let file = root.join("daemon.json");
    std::fs::write(&file, config.to_string()).unwrap();

    let mut child = Command::new(dockerd)
        .arg(format!("--config-file={}", file.display()))
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(root.join("dockerd.err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let runtime = loop {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["info", "--format", "{{.DefaultRuntime}}"])
            .env_remove("DOCKER_CONTEXT")
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "dockerd refused the rendered configuration ({status}):\n{}",
                std::fs::read_to_string(root.join("dockerd.err")).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dockerd did not answer within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(runtime, "sysbox-runc");
}

/// The links under `/opt/containai/bin` and `VERSION`, as a reader finds them.
fn active(host: &TestHost) -> (Vec<(String, PathBuf)>, String) {
    let opt = host.root().join("opt/containai");
    let mut links: Vec<(String, PathBuf)> = std::fs::read_dir(opt.join("bin"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_link(e.path()).unwrap(),
            )
        })
        .collect();
    links.sort();
    (
        links,
        std::fs::read_to_string(opt.join("VERSION")).unwrap_or_default(),
    )
}

/// P73: the install runs the unpacked `dockerd --version` before any link switches: a bundle
/// whose binary is another version than the one asked for is refused in one line naming both,
/// and the active version (its links, `VERSION`, what `dockerd::installed()` says) stays.
#[test]
fn p73_a_bundle_whose_dockerd_reports_another_version_is_refused_and_the_links_stay() {
    let host = TestHost::new();
    let opt = host.root().join("opt/containai");
    bundle(&host, "docker-28.2.2.tgz", "28.2.2", |_| {});
    let (code, stdout, stderr) = install(&host, "docker-28.2.2.tgz", "28.2.2", false);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "28.2.2\n");
    let before = active(&host);

    // Named and announced as 28.3.0, but its dockerd is 28.1.0.
    bundle(&host, "docker-28.3.0.tgz", "28.1.0", |_| {});
    let (code, stdout, stderr) = install(&host, "docker-28.3.0.tgz", "28.3.0", false);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("its dockerd --version reports 28.1.0, expected 28.3.0"),
        "{stderr}"
    );
    assert_eq!(active(&host), before);
    assert!(!opt.join("docker/28.3.0").exists());
    let left: Vec<String> = std::fs::read_dir(opt.join("docker"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["28.2.2"], "a staging directory was left");
    let script = host.script(
        "installed.rhai",
        &format!("{HEADER}print(`${{dockerd::installed()}}`);\n0\n"),
    );
    let (code, stdout, stderr) = host.run(&["run", script.to_str().unwrap()]);
    assert_eq!((code, stdout.as_str()), (0, "28.2.2\n"), "{stderr}");
}

/// P73: `dockerd::installed()` is what the active binary (`/opt/containai/bin/dockerd
/// --version`) says, never what `cai` wrote to `VERSION`; output it cannot parse is an error,
/// never "not installed".
#[test]
fn p73_installed_reports_what_the_active_dockerd_says_not_the_version_file() {
    let host = TestHost::new();
    let opt = host.root().join("opt/containai");
    let script = host.script(
        "installed.rhai",
        &format!(
            "{HEADER}let v = dockerd::installed();\nprint(if v == () {{ \"none\" }} else {{ v }});\n0\n"
        ),
    );
    let installed = || host.run(&["run", script.to_str().unwrap()]);
    // Nothing installed; a VERSION file alone is no bundle.
    std::fs::write(opt.join("VERSION"), "28.2.2\n").unwrap();
    let (code, stdout, stderr) = installed();
    assert_eq!((code, stdout.as_str()), (0, "none\n"), "{stderr}");

    bundle(&host, "docker-28.2.2.tgz", "28.2.2", |_| {});
    let (code, _, stderr) = install(&host, "docker-28.2.2.tgz", "28.2.2", false);
    assert_eq!(code, 0, "{stderr}");
    // VERSION lies: the binary decides.
    std::fs::write(opt.join("VERSION"), "99.0.0\n").unwrap();
    let (code, stdout, stderr) = installed();
    assert_eq!((code, stdout.as_str()), (0, "28.2.2\n"), "{stderr}");

    // A binary whose output is not a version is an error naming it.
    let active = opt.join("docker/28.2.2/dockerd");
    std::fs::write(&active, "#!/bin/sh\necho 'dockerd: garbage'\n").unwrap();
    let (code, stdout, stderr) = installed();
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("dockerd: garbage"), "{stderr}");
}

/// P73: installing a version whose directory already exists keeps that directory (its binaries
/// may be running) and links to it, so its dockerd must report the version too; one that does
/// not is refused with the links untouched.
#[test]
fn p73_an_existing_version_directory_whose_dockerd_is_another_version_is_refused() {
    let host = TestHost::new();
    let opt = host.root().join("opt/containai");
    bundle(&host, "docker-28.2.2.tgz", "28.2.2", |_| {});
    bundle(&host, "docker-28.3.0.tgz", "28.3.0", |_| {});
    let (code, _, stderr) = install(&host, "docker-28.2.2.tgz", "28.2.2", false);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = install(&host, "docker-28.3.0.tgz", "28.3.0", false);
    assert_eq!(code, 0, "{stderr}");
    // Left by something else: 28.2.2's directory holds another dockerd.
    std::fs::write(
        opt.join("docker/28.2.2/dockerd"),
        "#!/bin/sh\necho 'Docker version 27.0.1, build 1234567'\n",
    )
    .unwrap();
    let before = active(&host);
    let (code, stdout, stderr) = install(&host, "docker-28.2.2.tgz", "28.2.2", false);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("docker/28.2.2: its dockerd --version reports 27.0.1, expected 28.2.2"),
        "{stderr}"
    );
    assert!(stderr.contains("help: move "), "{stderr}");
    assert_eq!(active(&host), before);
    assert_eq!(
        std::fs::read_link(opt.join("bin/dockerd")).unwrap(),
        Path::new("../docker/28.3.0/dockerd")
    );
}
