//! The test harness leaves nothing mounted: a private dockerd mounts under its test root (its
//! data root bind-mounted onto itself, container overlays, network namespaces) and tests plant
//! bind mounts and tmpfs in volumes. Whatever drops first, the engine or its host, every mount
//! under the root is gone after teardown; a mount left behind outlives the test and pins the
//! deleted directory. This file reads `/proc/self/mountinfo` itself, so it checks the harness
//! rather than trusting it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Dockerd, TEST_IMAGE, TestHost};

/// Mount points at or under `root` (no test root has a space or a backslash in its path).
fn mounted_under(root: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(root))
        .collect()
}

/// What is left mounted under `root`; detached here so a failing run leaks nothing either.
fn left_behind(root: &Path) -> Vec<PathBuf> {
    let mut left = mounted_under(root);
    left.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mount in &left {
        let _ = Command::new("umount").arg("--lazy").arg(mount).status();
    }
    left
}

/// A running labelled container with a volume, and a bind mount planted inside the volume.
fn busy_engine(host: &TestHost) -> Dockerd {
    let engine = Dockerd::start(host);
    engine.run_with(
        "box",
        &["containai.managed=true"],
        &["-v", "vol:/data"],
        TEST_IMAGE,
        &["sleep", "600"],
    );
    let root = host.root();
    let source = root.join("planted-source");
    std::fs::create_dir_all(&source).unwrap();
    let target = root.join("var/lib/containai-docker/volumes/vol/_data/planted");
    std::fs::create_dir_all(&target).unwrap();
    let status = Command::new("mount")
        .arg("--bind")
        .arg(&source)
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "mount --bind failed");
    assert!(mounted_under(root).contains(&target));
    engine
}

#[test]
fn test_engines_leave_nothing_mounted_under_their_root() {
    // The engine dropped before its host.
    let host = TestHost::new();
    let root = host.root().to_path_buf();
    let engine = busy_engine(&host);
    drop(engine);
    drop(host);
    assert_eq!(
        left_behind(&root),
        Vec::<PathBuf>::new(),
        "engine, then host"
    );

    // The host dropped first, as in fixtures that declare the host before the engine.
    let host = TestHost::new();
    let root = host.root().to_path_buf();
    let engine = busy_engine(&host);
    drop(host);
    assert_eq!(
        left_behind(&root),
        Vec::<PathBuf>::new(),
        "host, then engine"
    );
    drop(engine);

    // A SIGKILLed engine cleans up nothing itself.
    let host = TestHost::new();
    let root = host.root().to_path_buf();
    let mut engine = Dockerd::start(&host);
    engine.kill();
    drop(engine);
    drop(host);
    assert_eq!(left_behind(&root), Vec::<PathBuf>::new(), "killed engine");
}
