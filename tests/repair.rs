//! `cai doctor --repair` against a real private dockerd and real volumes, as root: which volumes
//! are repaired, the target owner and where it came from, dry runs, and each safety rule of the
//! walk (SPEC 5.3) as its own test, the swap race included.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Dockerd, TEST_IMAGE, TestHost};

const NOBODY: u32 = 65534;

/// A host with its engine and one running labelled container `box` with volume `vol` at /data.
struct Fixture {
    host: TestHost,
    engine: Dockerd,
}

impl Fixture {
    fn new() -> Self {
        let host = TestHost::new();
        let engine = Dockerd::start(&host);
        Fixture { host, engine }
    }

    fn with_box() -> Self {
        let f = Self::new();
        f.labelled("box", &["-v", "vol:/data"]);
        f
    }

    /// A running container labelled containai.managed=true.
    fn labelled(&self, name: &str, extra: &[&str]) {
        self.container(true, name, true, extra);
    }

    /// A container of the busybox image running `sleep 600` (`docker run -d`), or only created
    /// (stopped), labelled containai.managed=true or not, with `extra` docker options.
    fn container(&self, running: bool, name: &str, labelled: bool, extra: &[&str]) {
        let mut args = if running {
            vec!["run", "-d"]
        } else {
            vec!["create"]
        };
        args.extend_from_slice(&["--network", "none", "--name", name]);
        if labelled {
            args.extend_from_slice(&["--label", "containai.managed=true"]);
        }
        args.extend_from_slice(extra);
        args.extend_from_slice(&[TEST_IMAGE, "sleep", "600"]);
        self.engine.docker(&args);
    }

    fn volume(&self, name: &str) -> PathBuf {
        self.host
            .root()
            .join("var/lib/containai-docker/volumes")
            .join(name)
            .join("_data")
    }

    fn repair(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["doctor", "--repair"];
        all.extend_from_slice(args);
        self.host.run(&all)
    }
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid())
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Writes a file owned by `uid:gid`.
fn file(path: &Path, uid: u32, gid: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"x").unwrap();
    chown(path, uid, gid);
}

fn dir(path: &Path, uid: u32, gid: u32) {
    std::fs::create_dir_all(path).unwrap();
    chown(path, uid, gid);
}

/// Owner and content of every entry under `dir`, never following a symlink.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.is_file() {
                format!("{:?}", std::fs::read(&p).unwrap())
            } else if m.file_type().is_symlink() {
                format!("-> {:?}", std::fs::read_link(&p).unwrap())
            } else {
                String::new()
            };
            out.insert(
                p.clone(),
                format!("{}:{} {:o} {what}", m.uid(), m.gid(), m.mode()),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

fn mount(args: &[&str]) {
    let status = Command::new("mount").args(args).status().expect("mount");
    assert!(status.success(), "mount {args:?} failed");
}

/// Unmounts when dropped, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A small tmpfs mounted on `at`, unmounted when the guard drops.
fn mount_tmpfs(at: &Path) -> Mounted {
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "cai-test",
        at.to_str().unwrap(),
    ]);
    Mounted(at.to_path_buf())
}

#[test]
fn all_repairs_every_managed_volume_running_and_stopped_and_nothing_else() {
    let f = Fixture::new();
    let bind = f.host.home.path().join("bind-src");
    dir(&bind, NOBODY, NOBODY);
    file(&bind.join("f"), NOBODY, NOBODY);
    f.labelled(
        "running",
        &[
            "-v",
            "v-run:/data",
            "-v",
            &format!("{}:/bind", bind.display()),
        ],
    );
    f.container(false, "stopped", true, &["-v", "v-stop:/data"]);
    f.container(true, "other", false, &["-v", "v-other:/data"]);
    let run = f.volume("v-run");
    file(&run.join("both"), NOBODY, NOBODY);
    file(&run.join("uid-only"), NOBODY, 0);
    file(&run.join("gid-only"), 0, NOBODY);
    file(&run.join("sub/deeper/f"), NOBODY, NOBODY);
    dir(&run.join("sub"), NOBODY, NOBODY);
    symlink("both", run.join("link")).unwrap();
    chown(&run.join("link"), NOBODY, NOBODY);
    file(&run.join("mine"), 1000, 1000);
    file(&run.join("someone-else"), 1500, 1500);
    let stop = f.volume("v-stop");
    file(&stop.join("f"), NOBODY, NOBODY);
    let other = f.volume("v-other");
    file(&other.join("f"), NOBODY, NOBODY);

    let (code, stdout, stderr) = f.repair(&["--all"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("running: target owner 1000:1000 (from user agent inside the container"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stopped: target owner 1000:1000"),
        "{stdout}"
    );
    assert!(stderr.contains("stopped is stopped"), "{stderr}");
    assert_eq!(owner(&run.join("both")), (1000, 1000));
    assert_eq!(owner(&run.join("uid-only")), (1000, 0));
    assert_eq!(owner(&run.join("gid-only")), (0, 1000));
    assert_eq!(owner(&run.join("sub")), (1000, 1000));
    assert_eq!(owner(&run.join("sub/deeper/f")), (1000, 1000));
    assert_eq!(owner(&run.join("link")), (1000, 1000));
    assert_eq!(owner(&run.join("someone-else")), (1500, 1500));
    assert_eq!(owner(&stop.join("f")), (1000, 1000));
    // P43: the bind mount and the unlabelled container's volume are not touched.
    assert_eq!(owner(&bind.join("f")), (NOBODY, NOBODY));
    assert_eq!(owner(&bind), (NOBODY, NOBODY));
    assert_eq!(owner(&other.join("f")), (NOBODY, NOBODY));
    assert!(!stdout.contains("v-other"), "{stdout}");
    assert!(
        stdout.contains("2 volume(s) checked: 0 ok, 2 repaired, 0 failed"),
        "{stdout}"
    );

    // Idempotent: a second run finds nothing to change.
    let (code, stdout, stderr) = f.repair(&["--all"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("0 owned by 65534, 0 changed"), "{stdout}");
    assert!(
        stdout.contains("2 volume(s) checked: 2 ok, 0 repaired, 0 failed"),
        "{stdout}"
    );
}

#[test]
fn dry_run_changes_nothing_and_reports_what_would_change_with_the_target() {
    let f = Fixture::with_box();
    let vol = f.volume("vol");
    file(&vol.join("a"), NOBODY, NOBODY);
    file(&vol.join("d/b"), NOBODY, 1000);
    let before_root = f.host.snapshot_files();
    let before = tree(&vol);

    let (code, stdout, stderr) = f.repair(&["--container", "box", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tree(&vol), before);
    assert_eq!(f.host.snapshot_files(), before_root);
    assert!(
        stdout.contains("box: target owner 1000:1000 (from user agent inside the container"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 owned by 65534, 2 would change"),
        "{stdout}"
    );
    assert!(stdout.contains("1 would be repaired"), "{stdout}");

    let (code, stdout, _) = f.repair(&["--container", "box", "--dry-run", "--json"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    let repair = &doc["reports"][0]["repair"];
    let volume = &repair["containers"][0]["volumes"][0];
    assert_eq!(volume["volume"], "vol", "{doc}");
    assert_eq!(volume["changed"], 2, "{doc}");
    assert_eq!(volume["dry_run"], true, "{doc}");
    assert_eq!(repair["containers"][0]["target"]["uid"], 1000, "{doc}");
    assert_eq!(tree(&vol), before);
}

#[test]
fn p34_stopped_container_gets_1000_with_a_warning_and_a_numeric_user_is_used() {
    let f = Fixture::new();
    f.container(
        false,
        "numeric",
        true,
        &["--user", "1234:2345", "-v", "vnum:/data"],
    );
    f.container(false, "asleep", true, &["-v", "vstop:/data"]);
    file(&f.volume("vnum").join("f"), NOBODY, NOBODY);
    file(&f.volume("vstop").join("f"), NOBODY, NOBODY);

    let (code, stdout, stderr) = f.repair(&["--container", "numeric"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("numeric: target owner 1234:2345 (from Config.User 1234:2345)"),
        "{stdout}"
    );
    assert_eq!(owner(&f.volume("vnum").join("f")), (1234, 2345));

    let (code, stdout, stderr) = f.repair(&["--container", "asleep"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("asleep: target owner 1000:1000 (from default for a stopped container)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("warning:") && stderr.contains("asleep is stopped"),
        "{stderr}"
    );
    assert_eq!(owner(&f.volume("vstop").join("f")), (1000, 1000));
}

/// P32: a user name is resolved by the container's passwd database, never by the host's.
#[test]
fn p32_named_user_is_resolved_inside_the_container() {
    let f = Fixture::new();
    f.container(
        false,
        "named",
        true,
        &["--user", "worker", "-v", "vnamed:/data"],
    );
    let passwd = f.host.home.path().join("passwd");
    std::fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\nworker:x:2345:3456::/tmp:/bin/sh\n",
    )
    .unwrap();
    f.engine
        .docker(&["cp", &passwd.display().to_string(), "named:/etc/passwd"]);
    f.engine.docker(&["start", "named"]);
    file(&f.volume("vnamed").join("f"), NOBODY, NOBODY);

    let (code, stdout, stderr) = f.repair(&["--container", "named"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "named: target owner 2345:3456 (from Config.User worker, resolved inside the container"
        ),
        "{stdout}"
    );
    assert_eq!(owner(&f.volume("vnamed").join("f")), (2345, 3456));
}

#[test]
fn symlink_to_a_file_outside_is_changed_itself_and_the_outside_file_is_not() {
    let f = Fixture::with_box();
    let outside = f.host.home.path().join("outside");
    file(&outside.join("secret"), NOBODY, NOBODY);
    dir(&outside.join("d"), NOBODY, NOBODY);
    file(&outside.join("d/f"), NOBODY, NOBODY);
    let vol = f.volume("vol");
    symlink(outside.join("secret"), vol.join("to-file")).unwrap();
    symlink(outside.join("d"), vol.join("to-dir")).unwrap();
    chown(&vol.join("to-file"), NOBODY, NOBODY);

    let (code, stdout, stderr) = f.repair(&["--container", "box"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(owner(&outside.join("secret")), (NOBODY, NOBODY));
    assert_eq!(owner(&outside.join("d")), (NOBODY, NOBODY));
    assert_eq!(owner(&outside.join("d/f")), (NOBODY, NOBODY));
    assert_eq!(owner(&vol.join("to-file")), (1000, 1000));
}

#[test]
fn tmpfs_mounted_inside_the_volume_is_not_crossed() {
    let f = Fixture::with_box();
    let vol = f.volume("vol");
    let mnt = vol.join("mnt");
    dir(&mnt, 0, 0);
    let _guard = mount_tmpfs(&mnt);
    chown(&mnt, NOBODY, NOBODY);
    file(&mnt.join("f"), NOBODY, NOBODY);
    file(&vol.join("g"), NOBODY, NOBODY);

    let (code, stdout, stderr) = f.repair(&["--container", "box"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(owner(&mnt), (NOBODY, NOBODY));
    assert_eq!(owner(&mnt.join("f")), (NOBODY, NOBODY));
    assert_eq!(owner(&vol.join("g")), (1000, 1000));
    assert!(stdout.contains("mount point"), "{stdout}");
}

#[test]
fn same_filesystem_bind_mounts_inside_the_volume_are_not_crossed() {
    let f = Fixture::with_box();
    let vol = f.volume("vol");
    // On the volume's own file system, so the device numbers match.
    let outside = f.host.root().join("var/lib/containai-docker/outside");
    dir(&outside, NOBODY, NOBODY);
    file(&outside.join("f"), NOBODY, NOBODY);
    file(&outside.join("single"), NOBODY, NOBODY);
    let target = vol.join("bound");
    dir(&target, 0, 0);
    mount(&[
        "--bind",
        outside.to_str().unwrap(),
        target.to_str().unwrap(),
    ]);
    let _dir_guard = Mounted(target.clone());
    let file_target = vol.join("bound-file");
    file(&file_target, 0, 0);
    mount(&[
        "--bind",
        outside.join("single").to_str().unwrap(),
        file_target.to_str().unwrap(),
    ]);
    let _file_guard = Mounted(file_target.clone());

    for resolver in ["auto", "fallback"] {
        let (code, stdout, stderr) = f.repair(&["--container", "box", "--walk-resolver", resolver]);
        assert_eq!(code, 0, "{resolver}: {stdout}\n{stderr}");
        assert_eq!(owner(&outside), (NOBODY, NOBODY), "{resolver}");
        assert_eq!(owner(&outside.join("f")), (NOBODY, NOBODY), "{resolver}");
        assert_eq!(
            owner(&outside.join("single")),
            (NOBODY, NOBODY),
            "{resolver}"
        );
        assert!(stdout.contains("mount point"), "{resolver}: {stdout}");
    }
}

#[test]
fn hard_link_to_an_outside_file_is_skipped_and_reported() {
    let f = Fixture::with_box();
    let vol = f.volume("vol");
    let outside = f.host.root().join("var/lib/containai-docker/outside-file");
    file(&outside, NOBODY, NOBODY);
    std::fs::hard_link(&outside, vol.join("linked")).unwrap();
    file(&vol.join("plain"), NOBODY, NOBODY);

    let (code, stdout, stderr) = f.repair(&["--container", "box"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(owner(&outside), (NOBODY, NOBODY));
    assert_eq!(owner(&vol.join("plain")), (1000, 1000));
    assert!(stdout.contains("1 skipped (1 hard link"), "{stdout}");
    assert!(stdout.contains(": linked"), "{stdout}");
}

/// P35: names with a newline and with bytes that are not UTF-8 are repaired like any other.
#[test]
fn p35_newline_and_invalid_utf8_names_are_repaired() {
    let f = Fixture::with_box();
    let vol = f.volume("vol");
    let newline = vol.join("two\nlines");
    let invalid = vol.join(OsStr::from_bytes(b"bad-\xff\xfe"));
    file(&newline, NOBODY, NOBODY);
    dir(&invalid, NOBODY, NOBODY);
    file(&invalid.join(OsStr::from_bytes(b"in\xc3")), NOBODY, NOBODY);

    let (code, stdout, stderr) = f.repair(&["--container", "box"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(owner(&newline), (1000, 1000));
    assert_eq!(owner(&invalid), (1000, 1000));
    assert_eq!(
        owner(&invalid.join(OsStr::from_bytes(b"in\xc3"))),
        (1000, 1000)
    );
    assert!(stdout.contains("3 owned by 65534, 3 changed"), "{stdout}");
}

/// Removes a `d/d/d/...` chain under a directory when dropped, one level at a time: the
/// temporary root's own recursive removal would overflow the test's stack on it.
struct Chain(PathBuf);

impl Drop for Chain {
    fn drop(&mut self) {
        let top = self.0.join("d");
        let tmp = self.0.join("d.next");
        while top.is_dir() {
            if std::fs::rename(top.join("d"), &tmp).is_err() {
                let _ = std::fs::remove_dir_all(&top);
                break;
            }
            let _ = std::fs::remove_dir(&top);
            let _ = std::fs::rename(&tmp, &top);
        }
    }
}

#[test]
fn a_20000_deep_chain_is_repaired_without_overflowing_the_stack() {
    let f = Fixture::with_box();
    let vol = f.volume("vol");
    let _chain = Chain(vol.clone());
    // Built with *at calls: the path is far longer than PATH_MAX.
    let depth = 20_000;
    let mut fd = rustix::fs::open(
        &vol,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let owner_of = |fd: &std::os::fd::OwnedFd| rustix::fs::fstat(fd).unwrap().st_uid;
    let mut fds_to_check = Vec::new();
    for i in 0..depth {
        rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        let next = rustix::fs::openat(
            &fd,
            "d",
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        rustix::fs::fchown(
            &next,
            Some(rustix::fs::Uid::from_raw(NOBODY)),
            Some(rustix::fs::Gid::from_raw(NOBODY)),
        )
        .unwrap();
        if i % 5000 == 0 {
            fds_to_check.push(next.try_clone().unwrap());
        }
        fd = next;
    }
    fds_to_check.push(fd);

    let (code, stdout, stderr) = f.repair(&["--container", "box"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{depth} owned by 65534, {depth} changed")),
        "{stdout}"
    );
    for fd in &fds_to_check {
        assert_eq!(owner_of(fd), 1000);
    }
}

#[test]
fn the_openat2_fallback_repairs_the_same_and_crosses_nothing() {
    let f = Fixture::with_box();
    let vol = f.volume("vol");
    let outside = f.host.home.path().join("outside");
    dir(&outside, NOBODY, NOBODY);
    file(&outside.join("f"), NOBODY, NOBODY);
    symlink(&outside, vol.join("escape")).unwrap();
    file(&vol.join("a/b/c"), NOBODY, NOBODY);
    dir(&vol.join("a"), NOBODY, NOBODY);
    let mnt = vol.join("mnt");
    dir(&mnt, 0, 0);
    let _guard = mount_tmpfs(&mnt);
    file(&mnt.join("f"), NOBODY, NOBODY);

    let (code, stdout, stderr) = f.host.run(&[
        "doctor",
        "--repair",
        "--container",
        "box",
        "--walk-resolver",
        "fallback",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let volume = &doc["reports"][0]["repair"]["containers"][0]["volumes"][0];
    assert_eq!(volume["resolver"], "fallback", "{doc}");
    assert_eq!(owner(&vol.join("a/b/c")), (1000, 1000));
    assert_eq!(owner(&vol.join("a")), (1000, 1000));
    assert_eq!(owner(&outside.join("f")), (NOBODY, NOBODY));
    assert_eq!(owner(&mnt.join("f")), (NOBODY, NOBODY));
    assert_eq!(
        volume["skipped_by_reason"].as_object().unwrap().len(),
        1,
        "{doc}"
    );
}

/// An attacker inside the volume keeps swapping a directory for a symlink to a directory outside
/// while the repair runs; whatever the timing, nothing outside changes owner.
#[test]
fn swap_race_never_changes_anything_outside_the_volume() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let f = Fixture::with_box();
    let vol = f.volume("vol");
    let outside = f.host.root().join("var/lib/containai-docker/outside");
    dir(&outside, NOBODY, NOBODY);
    for i in 0..50 {
        file(&outside.join(format!("f{i}")), NOBODY, NOBODY);
    }
    dir(&outside.join("sub"), NOBODY, NOBODY);
    file(&outside.join("sub/g"), NOBODY, NOBODY);
    let outside_before = tree(&outside);

    // Enough entries that the walk takes a while, so the swaps land during it.
    let real = vol.join("swap");
    for i in 0..2000 {
        file(&real.join(format!("f{i}")), NOBODY, NOBODY);
    }
    file(&real.join("sub/g"), NOBODY, NOBODY);
    let link = vol.join("swap.link");
    symlink(&outside, &link).unwrap();
    for round in 0..16 {
        let resolver = if round % 2 == 0 { "auto" } else { "fallback" };
        // Put back what the attacker may have left half-swapped, and break the ownership again.
        if !real.is_dir()
            || std::fs::symlink_metadata(&real)
                .unwrap()
                .file_type()
                .is_symlink()
        {
            let _ = std::fs::rename(&real, &link);
            std::fs::rename(vol.join("swap.real"), &real).unwrap();
        }
        if !link.exists() {
            let _ = std::fs::rename(vol.join("swap.real"), &real);
        }
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&real)
            .status()
            .unwrap();
        assert!(status.success());

        let stop = Arc::new(AtomicBool::new(false));
        let attacker = {
            let stop = stop.clone();
            let vol = vol.clone();
            std::thread::spawn(move || {
                let swap = vol.join("swap");
                let held = vol.join("swap.real");
                let link = vol.join("swap.link");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Directory out, symlink in; then back.
                    if std::fs::rename(&swap, &held).is_ok() {
                        let _ = std::fs::rename(&link, &swap);
                        std::thread::yield_now();
                        let _ = std::fs::rename(&swap, &link);
                        let _ = std::fs::rename(&held, &swap);
                    }
                    n += 1;
                }
                n
            })
        };
        let (code, stdout, stderr) = f.repair(&["--container", "box", "--walk-resolver", resolver]);
        stop.store(true, Ordering::Relaxed);
        let swaps = attacker.join().unwrap();
        assert!(swaps > 0, "the attacker never ran");
        assert!(code == 0 || code == 1, "round {round}: {stdout}\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(
            tree(&outside),
            outside_before,
            "round {round} ({resolver}): {stdout}"
        );
    }
}

#[test]
fn p39_summary_counts_checked_ok_repaired_and_failed_separately() {
    let f = Fixture::new();
    f.labelled("box", &["-v", "healthy:/a", "-v", "broken:/b"]);
    file(&f.volume("healthy").join("f"), 1000, 1000);
    file(&f.volume("broken").join("f"), NOBODY, NOBODY);
    let (code, stdout, stderr) = f.repair(&["--all"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("2 volume(s) checked: 1 ok, 1 repaired, 0 failed"),
        "{stdout}"
    );
}

/// P40: the scan runs with the privilege of the repair, so a directory nobody may read is still
/// counted, and repaired.
#[test]
fn p40_unreadable_directories_are_scanned_with_the_repair_privilege() {
    let f = Fixture::with_box();
    let vol = f.volume("vol");
    let locked = vol.join("locked");
    file(&locked.join("f"), NOBODY, NOBODY);
    dir(&locked, NOBODY, NOBODY);
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let (code, stdout, _) = f.repair(&["--container", "box", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("2 owned by 65534, 2 would change"),
        "{stdout}"
    );
    let (code, _, _) = f.repair(&["--container", "box"]);
    assert_eq!(code, 0);
    assert_eq!(owner(&locked.join("f")), (1000, 1000));
}

#[test]
fn bad_input_is_one_clear_line_and_changes_nothing() {
    let f = Fixture::new();
    f.container(true, "plain", false, &["-v", "pv:/data"]);
    file(&f.volume("pv").join("f"), NOBODY, NOBODY);
    let (code, _, stderr) = f.repair(&["--container", "nosuch"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot repair container nosuch"),
        "{stderr}"
    );
    let (code, _, stderr) = f.repair(&["--container", "plain"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("not labelled containai.managed=true"),
        "{stderr}"
    );
    assert_eq!(owner(&f.volume("pv").join("f")), (NOBODY, NOBODY));

    // A script cannot name a path, or a volume that no labelled container uses.
    let script = f.host.script(
        "evil.rhai",
        r#"volumes::chown(run::args()[0], #{uid: 65534, gid: 65534}, #{uid: 0, gid: 0});"#,
    );
    for name in ["../pv", "pv/_data", "..", "pv"] {
        let (code, _, stderr) = f.host.run(&["run", script.to_str().unwrap(), "--", name]);
        assert_eq!(code, 1, "{name}: {stderr}");
        let want = if name == "pv" {
            "not attached to a container labelled"
        } else {
            "invalid volume name"
        };
        assert!(stderr.contains(want), "{name}: {stderr}");
    }
    assert_eq!(owner(&f.volume("pv").join("f")), (NOBODY, NOBODY));

    // A volume directory replaced by a symlink is refused.
    f.labelled("box", &["-v", "vol:/data"]);
    let vol = f.volume("vol");
    let elsewhere = f.host.home.path().join("elsewhere");
    file(&elsewhere.join("f"), NOBODY, NOBODY);
    std::fs::remove_dir_all(&vol).unwrap();
    symlink(&elsewhere, &vol).unwrap();
    let (code, stdout, stderr) = f.repair(&["--container", "box"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("is a symlink"), "{stderr}");
    assert!(stdout.contains("1 failed"), "{stdout}");
    assert_eq!(owner(&elsewhere.join("f")), (NOBODY, NOBODY));
}

#[test]
fn a_missing_data_root_is_one_clear_line() {
    let f = Fixture::with_box();
    std::fs::write(
        f.host.root().join("etc/containai/config.toml"),
        "data_root = \"/nonexistent/data\"\n",
    )
    .unwrap();
    let (code, _, stderr) = f.repair(&["--all"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("data root /") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

/// P42: the usage-error matrix, end to end (exit 1, the message says what to add).
#[test]
fn p42_usage_errors_say_what_to_add() {
    let host = TestHost::new();
    for (args, want) in [
        (&["doctor", "--all"][..], "--all only works with --repair"),
        (
            &["doctor", "--container", "x"][..],
            "--container only works with --repair",
        ),
        (
            &["doctor", "--dry-run"][..],
            "--dry-run only works with --repair",
        ),
        (&["doctor", "--repair"][..], "add --container NAME or --all"),
        (
            &["doctor", "--repair", "--all", "--container", "x"][..],
            "cannot be used together",
        ),
        (
            &["doctor", "--repair", "--container="][..],
            "--container needs a container name",
        ),
    ] {
        let (code, stdout, stderr) = host.run(args);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(stderr.contains("help: cai doctor"), "{args:?}: {stderr}");
    }
}

/// P41: on macOS the repair says it is not supported and exits 0, with or without a target.
#[test]
fn p41_macos_repair_is_not_supported_and_exits_0() {
    let host = TestHost::new();
    std::fs::write(
        host.root().join("etc/containai/config.toml"),
        "platform = \"macos\"\n",
    )
    .unwrap();
    for args in [
        &["doctor", "--repair"][..],
        &["doctor", "--repair", "--all"][..],
    ] {
        let (code, stdout, stderr) = host.run(args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stdout.contains("repair not supported on macOS"), "{stdout}");
    }
}

/// A container whose own files show the broken ownership too: the repair says to recreate it.
#[test]
fn rootfs_taint_warns_to_recreate_the_container() {
    let f = Fixture::with_box();
    let usr = f.host.home.path().join("usr");
    file(&usr.join("bin/sudo"), 1000, 1000);
    f.engine
        .docker(&["cp", "-a", &usr.display().to_string(), "box:/"]);
    f.engine
        .docker(&["exec", "box", "chown", "65534:65534", "/etc"]);
    let (code, stdout, stderr) = f.repair(&["--container", "box", "--dry-run"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("/usr/bin/sudo is owned by uid 1000, not root"),
        "{stderr}"
    );
    assert!(stderr.contains("/etc is owned by 65534:65534"), "{stderr}");
    assert!(stderr.contains("recreate the container"), "{stderr}");

    // A healthy container gets no such warning.
    f.engine
        .docker(&["exec", "box", "chown", "0:0", "/etc", "/usr/bin/sudo"]);
    let (_, _, stderr) = f.repair(&["--container", "box", "--dry-run"]);
    assert!(!stderr.contains("recreate"), "{stderr}");
}

/// `volumes::scan` counts owners per uid and per gid and what is owned by 65534, and changes
/// nothing; `volumes::managed` lists named volumes of labelled containers only.
#[test]
fn scan_gives_an_ownership_histogram_and_managed_lists_only_labelled_volumes() {
    let f = Fixture::with_box();
    f.container(true, "plain", false, &["-v", "pv:/data"]);
    let vol = f.volume("vol");
    file(&vol.join("a"), NOBODY, NOBODY);
    file(&vol.join("b"), 1000, NOBODY);
    file(&vol.join("c"), 1000, 1000);
    let script = f.host.script(
        "scan.rhai",
        r#"let r = volumes::scan("vol");
print(`scanned=${r.scanned} matched=${r.matched} u65534=${r.uids["65534"]} u1000=${r.uids["1000"]} g65534=${r.gids["65534"]} g1000=${r.gids["1000"]}`);
for v in volumes::managed() { print(`managed ${v.volume} ${v.container} ${v.destination} ${v.running}`); }
"#,
    );
    let (code, stdout, stderr) = f.host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // The volume's top directory (root-owned) counts too.
    assert!(
        stdout.contains("scanned=4 matched=2 u65534=1 u1000=2 g65534=2 g1000=1"),
        "{stdout}"
    );
    assert!(stdout.contains("managed vol box /data true"), "{stdout}");
    assert!(!stdout.contains("managed pv"), "{stdout}");
    assert_eq!(owner(&vol.join("a")), (NOBODY, NOBODY));
}

/// P65: a `local` volume whose options bind a host directory (`type=none`, `o=bind`,
/// `device=DIR`) keeps its data outside the volumes directory: the repair skips it, says why,
/// and neither the dry run nor the repair touches the host directory behind it.
#[test]
fn p65_bind_backed_local_volume_is_skipped() {
    let f = Fixture::new();
    let outside = f.host.home.path().join("host-dir");
    dir(&outside, NOBODY, NOBODY);
    file(&outside.join("f"), NOBODY, NOBODY);
    let device = format!("device={}", outside.display());
    f.engine.docker(&[
        "volume",
        "create",
        "--driver",
        "local",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        &device,
        "bound",
    ]);
    f.labelled("box", &["-v", "bound:/data", "-v", "plain:/plain"]);
    file(&f.volume("plain").join("f"), NOBODY, NOBODY);
    let before = tree(&outside);

    let (code, stdout, stderr) = f.repair(&["--all", "--dry-run"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("volume bound (/data): skipped (its options carry type, o, device"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("volume bound (/data): 2 scanned"),
        "{stdout}"
    );

    let (code, stdout, stderr) = f.repair(&["--all"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(tree(&outside), before, "{stdout}");
    assert_eq!(owner(&outside), (NOBODY, NOBODY));
    assert_eq!(owner(&f.volume("plain").join("f")), (1000, 1000));
    assert!(stdout.contains("volume bound (/data): skipped"), "{stdout}");
    assert!(
        stdout.contains("1 volume(s) checked: 0 ok, 1 repaired, 0 failed, 1 skipped"),
        "{stdout}"
    );

    // The core refuses it too, whatever a script asks.
    let script = f.host.script(
        "evil.rhai",
        r#"let r = volumes::chown("bound", #{uid: 65534, gid: 65534}, #{uid: 0, gid: 0});
print(`skip=${r.skip} changed=${r.changed}`);
let s = volumes::scan("bound");
print(`scan skip=${s.skip} scanned=${s.scanned}`);"#,
    );
    let (code, stdout, stderr) = f.host.run(&["run", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("skip=its options carry"), "{stdout}");
    assert!(stdout.contains("changed=0"), "{stdout}");
    assert!(stdout.contains("scan skip=its options carry"), "{stdout}");
    assert_eq!(tree(&outside), before, "{stdout}");
}

/// P65: whatever mounted it, a mount on a volume's `_data` is never crossed: the volume is
/// skipped with the reason, by either resolver.
#[test]
fn p65_a_mount_over_a_volume_data_directory_is_not_crossed() {
    let f = Fixture::with_box();
    let outside = f.host.root().join("var/lib/containai-docker/outside");
    dir(&outside, NOBODY, NOBODY);
    file(&outside.join("f"), NOBODY, NOBODY);
    let data = f.volume("vol");
    mount(&["--bind", outside.to_str().unwrap(), data.to_str().unwrap()]);
    let _guard = Mounted(data.clone());
    let before = tree(&outside);

    for resolver in ["auto", "fallback"] {
        let (code, stdout, stderr) = f.repair(&["--container", "box", "--walk-resolver", resolver]);
        assert_eq!(code, 0, "{resolver}: {stdout}\n{stderr}");
        assert_eq!(owner(&outside), (NOBODY, NOBODY), "{resolver}: {stdout}");
        assert_eq!(tree(&outside), before, "{resolver}: {stdout}");
        assert!(
            stdout.contains("volume vol (/data): skipped (") && stdout.contains("is a mount point"),
            "{resolver}: {stdout}"
        );
    }
}

/// P66: a volume also attached to a container without the label holds that container's files
/// too: the repair leaves it alone and names the container, by --all and by --container.
#[test]
fn p66_volume_shared_with_an_unmanaged_container_is_skipped() {
    let f = Fixture::with_box();
    f.container(false, "stranger", false, &["-v", "vol:/theirs"]);
    f.labelled("solo", &["-v", "own:/data"]);
    let vol = f.volume("vol");
    file(&vol.join("f"), NOBODY, NOBODY);
    file(&f.volume("own").join("f"), NOBODY, NOBODY);

    for args in [&["--all"][..], &["--container", "box"][..]] {
        let (code, stdout, stderr) = f.repair(args);
        assert_eq!(code, 0, "{args:?}: {stdout}\n{stderr}");
        assert_eq!(
            owner(&vol.join("f")),
            (NOBODY, NOBODY),
            "{args:?}: {stdout}"
        );
        assert!(
            stdout
                .contains("volume vol (/data): skipped (shared with unmanaged container stranger)"),
            "{args:?}: {stdout}"
        );
    }
    assert_eq!(owner(&f.volume("own").join("f")), (1000, 1000));
}

/// P75: stopped containers and their volumes exist while the engine is down, so "no container
/// is labelled" would be a lie: the repair says the engine is not running and how to start it.
#[test]
fn p75_repair_with_the_engine_down_fails_and_says_how_to_start_it() {
    let mut f = Fixture::new();
    f.container(false, "asleep", true, &["-v", "vstop:/data"]);
    file(&f.volume("vstop").join("f"), NOBODY, NOBODY);
    f.engine.kill();
    std::fs::remove_file(f.host.socket()).unwrap();
    // The engine unit is inactive: for running containers that means "none", not for all.
    f.host
        .fakes
        .add("systemctl", r#"[ "$1" = is-active ] && exit 3; exit 0"#);
    // The unit is installed, so starting it is the advice (without it: `cai update`).
    std::fs::write(
        f.host
            .root()
            .join("etc/systemd/system/containai-docker.service"),
        "[Unit]\n",
    )
    .unwrap();

    for args in [&["--all"][..], &["--container", "asleep"][..]] {
        let (code, stdout, stderr) = f.repair(args);
        assert_eq!(code, 1, "{args:?}: {stdout}\n{stderr}");
        assert!(!stdout.contains("nothing to repair"), "{args:?}: {stdout}");
        assert!(
            stderr.contains("the containai-docker engine is not running"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("help: systemctl start containai-docker"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(owner(&f.volume("vstop").join("f")), (NOBODY, NOBODY));
}
