//! A machine with a real systemd as PID 1, for the end-to-end tests of the update under systemd
//! and `dpkg -i`: a Debian tree built once by `scripts/lib/nspawn.sh` (mmdebstrap, cached under
//! `/var/tmp/cai-e2e/<key>` with the fixtures an update installs), booted with `systemd-nspawn -b`
//! over a throw-away overlay, the `cai` under test bound at `/usr/local/bin/cai`, commands run with
//! `nsenter`. Each machine is torn down when dropped, and [`Machine::finish`] asserts that nothing
//! is left: no process, mount, cgroup directory or run directory.
//!
//! Machines are booted one at a time (a process-wide lock): they share two cores with the rest of
//! the suite, and a boot takes under a second, so a test gets a machine of its own instead of
//! state left by another. The boot flags live in `scripts/lib/nspawn.sh` only (the benchmark uses
//! them too); this file owns the process, the waits and the teardown.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use sha2::Digest;

pub const NSPAWN_HINT: &str = "sudo ./scripts/test.sh (or: apt-get install --no-install-recommends systemd-container mmdebstrap)";
/// Where the machine's engine listens (the default `cai` renders into daemon.json).
pub const SOCKET: &str = "/var/run/containai-docker.sock";
/// Where the cached fixtures appear inside the machine (read-only).
pub const FIXTURES: &str = "/srv/cai-e2e";
pub const IMAGE: &str = "cai-test:busybox";
/// The sysbox builds in the fixtures (`NSPAWN_SYSBOX_VERSIONS` in scripts/lib/nspawn.sh).
pub const SYSBOX_OLD: &str = "0.6.7+containai.20260127";
pub const SYSBOX_NEW: &str = "0.6.7+containai.20260301";
const BASE: &str = "/var/tmp/cai-e2e";
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const PATH_INSIDE: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The cache directory (tree and fixtures), built once per process by the shell library.
pub fn cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        super::require_root();
        for program in ["systemd-nspawn", "mmdebstrap", "nsenter", "dpkg-deb"] {
            let found = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(program).is_file());
            assert!(
                found,
                "{program} is required for the systemd end-to-end tests but is not installed; install with: {NSPAWN_HINT}"
            );
        }
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(script())
            .arg("cache")
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        let (code, stdout, stderr) = super::decode(out);
        assert_eq!(
            code, 0,
            "building the machine's tree failed:\n{stderr}\nhelp: {NSPAWN_HINT}"
        );
        let dir = PathBuf::from(stdout.trim());
        eprintln!(
            "e2e: tree and fixtures at {} ({:.1?})",
            dir.display(),
            started.elapsed()
        );
        dir
    })
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lib/nspawn.sh")
}

/// One machine at a time in this process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a command inside the machine returned.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// How the machine's root is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `--volatile=overlay`: every write goes to a tmpfs and is gone at poweroff.
    Volatile,
    /// An overlay whose upper directory is on the host, so a second boot finds what the first
    /// one installed (for the reboot tests).
    Persistent,
}

pub struct Machine {
    pub name: String,
    run: PathBuf,
    cgroups: Vec<PathBuf>,
    nspawn: Option<Child>,
    init: u32,
    root: Root,
    merged_mounted: bool,
    /// `nsenter` processes started with [`Machine::spawn`], killed and reaped at teardown.
    spawned: std::cell::RefCell<Vec<u32>>,
    finished: bool,
    pub boot_time: Duration,
    created: Instant,
    _serial: MutexGuard<'static, ()>,
}

impl Machine {
    /// Boots a machine whose root is a throw-away overlay over the cached tree.
    pub fn boot() -> Machine {
        Machine::boot_with(Root::Volatile)
    }

    pub fn boot_with(root: Root) -> Machine {
        let cache = cache();
        let serial = serial();
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "cai-e2e-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let run = Path::new(BASE).join("runs").join(&name);
        for dir in ["data-root", "state", "upper", "work", "root"] {
            std::fs::create_dir_all(run.join(dir)).expect("machine run directory");
        }
        for dir in [&run, &run.join("state"), &run.join("data-root")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let cgroups = if statfs_is_cgroup2("/sys/fs/cgroup") {
            vec![Path::new("/sys/fs/cgroup").join(&name)]
        } else {
            ["systemd", "unified"]
                .iter()
                .map(|h| Path::new("/sys/fs/cgroup").join(h))
                .filter(|h| h.is_dir())
                .map(|h| h.join(&name))
                .collect()
        };
        let mut machine = Machine {
            name,
            run,
            cgroups,
            nspawn: None,
            init: 0,
            root,
            merged_mounted: false,
            spawned: std::cell::RefCell::new(Vec::new()),
            finished: false,
            boot_time: Duration::ZERO,
            created: Instant::now(),
            _serial: serial,
        };
        machine.start(cache);
        machine
    }

    fn start(&mut self, cache: &Path) {
        let started = Instant::now();
        for cg in &self.cgroups {
            std::fs::create_dir_all(cg).expect("machine cgroup");
        }
        let tree = cache.join("tree");
        let mut args: Vec<String> = Vec::new();
        match self.root {
            Root::Volatile => {
                args.push(format!("--directory={}", tree.display()));
                args.push("--volatile=overlay".into());
            }
            Root::Persistent => {
                let merged = self.run.join("root");
                let status = Command::new("mount")
                    .args(["-t", "overlay", "overlay", "-o"])
                    .arg(format!(
                        "lowerdir={},upperdir={},workdir={}",
                        tree.display(),
                        self.run.join("upper").display(),
                        self.run.join("work").display()
                    ))
                    .arg(&merged)
                    .status()
                    .expect("run mount");
                assert!(status.success(), "cannot mount the machine's overlay root");
                self.merged_mounted = true;
                args.push(format!("--directory={}", merged.display()));
            }
        }
        let bind = |host: &Path, inside: &str, ro: bool| {
            format!(
                "--bind{}={}:{inside}",
                if ro { "-ro" } else { "" },
                host.display()
            )
        };
        args.push(bind(
            Path::new(super::cai_bin()),
            "/usr/local/bin/cai",
            true,
        ));
        args.push(bind(&cache.join("fixtures"), FIXTURES, true));
        // overlay2 cannot sit on an overlayfs root; both survive a reboot of the machine.
        args.push(bind(
            &self.run.join("data-root"),
            "/var/lib/containai-docker",
            false,
        ));
        args.push(bind(&self.run.join("state"), "/var/lib/containai", false));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.join("nspawn.log"))
            .expect("nspawn log");
        let child = Command::new("bash")
            .arg(script())
            .arg("boot")
            .arg(&self.name)
            .args(&self.cgroups)
            .arg("--")
            .args(&args)
            .env("PATH", PATH_INSIDE)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn systemd-nspawn");
        let pid = child.id();
        self.nspawn = Some(child);

        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(init) = container_init(pid) {
                self.init = init;
                let state = self.sh("systemctl is-system-running 2>/dev/null");
                if matches!(state.stdout.trim(), "running" | "degraded") {
                    break;
                }
            }
            let exited = self
                .nspawn
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.run.join("nspawn.log")).unwrap_or_default();
                panic!(
                    "machine {} did not boot to running within {BOOT_TIMEOUT:?} (nspawn {exited:?}); its log:\n{log}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.boot_time = started.elapsed();
        eprintln!("e2e: {} booted in {:.1?}", self.name, self.boot_time);
    }

    /// Runs `script` with `sh -c` inside the machine (all its namespaces, a clean environment).
    pub fn sh(&self, script: &str) -> Out {
        let out = Command::new("nsenter")
            .arg("-t")
            .arg(self.init.to_string())
            .arg("-a")
            .args(["env", "-i"])
            .arg(format!("PATH={PATH_INSIDE}"))
            .args(["HOME=/root", "LANG=C.UTF-8", "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter");
        let (code, stdout, stderr) = super::decode(out);
        Out {
            code,
            stdout,
            stderr,
        }
    }

    /// Like [`Machine::sh`], and panics (with the output) unless it exits 0; returns stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.ok(), "in {}: `{script}` failed: {out}", self.name);
        out.stdout
    }

    /// Starts `script` inside the machine without waiting (`nsenter` is the child).
    pub fn spawn(&self, script: &str) -> Child {
        let child = Command::new("nsenter")
            .arg("-t")
            .arg(self.init.to_string())
            .arg("-a")
            .args(["env", "-i"])
            .arg(format!("PATH={PATH_INSIDE}"))
            .args(["HOME=/root", "LANG=C.UTF-8", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsenter");
        self.spawned.borrow_mut().push(child.id());
        child
    }

    /// `docker -H <engine socket> ARGS` inside the machine, panicking on failure; stdout trimmed.
    pub fn docker(&self, args: &str) -> String {
        self.ok(&format!("docker -H unix://{SOCKET} {args}"))
            .trim()
            .to_string()
    }

    /// A systemd property of a unit inside the machine.
    pub fn prop(&self, unit: &str, property: &str) -> String {
        self.ok(&format!("systemctl show -P {property} {unit}"))
            .trim()
            .to_string()
    }

    /// Polls `cond` every 100 ms for up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&Machine) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Points the release target at the fixtures: `sysbox` (one of the fixture builds) and the
    /// dockerd bundle made from Debian's docker.io, each with its sha256 pinned in
    /// `/etc/containai/config.toml`. Returns the bundle's version.
    pub fn target(&self, sysbox: &str) -> String {
        self.target_with(sysbox, None)
    }

    /// Like [`Machine::target`], with the dockerd bundle of version `dockerd_version` among the
    /// fixtures (`99.0.0`: the newer bundle, for an update that only replaces the bundle).
    pub fn target_with(&self, sysbox: &str, dockerd_version: Option<&str>) -> String {
        let fixtures = cache().join("fixtures");
        let bundle_version = std::fs::read_to_string(fixtures.join("docker.version"))
            .expect("docker.version in the fixtures")
            .trim()
            .to_string();
        let dockerd_version = dockerd_version.map_or(bundle_version.clone(), str::to_string);
        let arch = self.ok("dpkg --print-architecture").trim().to_string();
        let deb = format!("sysbox-ce_{sysbox}.linux_{arch}.deb");
        let tgz = format!("docker-{dockerd_version}.tgz");
        let config = format!(
            "sysbox_url = \"file://{FIXTURES}/{deb}\"\nsysbox_version = \"{sysbox}\"\nsysbox_sha256 = \"{}\"\n\
             dockerd_url = \"file://{FIXTURES}/{tgz}\"\ndockerd_version = \"{dockerd_version}\"\ndockerd_sha256 = \"{}\"\n",
            sha256_of(&fixtures.join(&deb)),
            sha256_of(&fixtures.join(&tgz)),
        );
        self.ok(&format!(
            "mkdir -p /etc/containai && chmod 0755 /etc/containai && cat > /etc/containai/config.toml <<'CAI_EOF'\n{config}CAI_EOF\nchmod 0644 /etc/containai/config.toml"
        ));
        dockerd_version
    }

    /// `cai update` from nothing to `sysbox`, then the busybox image imported: a ContainAI host.
    pub fn install(&self, sysbox: &str) {
        self.target(sysbox);
        let started = Instant::now();
        let out = self.sh("cai update");
        assert!(out.ok(), "fresh `cai update` failed: {out}");
        eprintln!("e2e: fresh cai update took {:.1?}", started.elapsed());
        self.docker(&format!(
            "import --change 'ENV PATH=/bin' {FIXTURES}/busybox.tar {IMAGE}"
        ));
    }

    /// Starts a managed container running `sleep` under docker's init (which forwards SIGTERM, so
    /// a clean stop exits 143); returns its full ID.
    pub fn run_agent(&self, name: &str) -> String {
        self.docker(&format!(
            "run -d --init --network none --label containai.managed=true --name {name} {IMAGE} sleep 1000"
        ))
    }

    /// The state and exit code of a container: `running 0`, `exited 143`, ...
    pub fn state(&self, name: &str) -> String {
        self.docker(&format!(
            "inspect -f '{{{{.State.Status}}}} {{{{.State.ExitCode}}}}' {name}"
        ))
    }

    /// The journal of this boot, for failure messages.
    pub fn journal(&self, unit: Option<&str>) -> String {
        let filter = unit.map(|u| format!(" -u {u}")).unwrap_or_default();
        self.sh(&format!(
            "journalctl -b --no-pager -o short-precise{filter} | tail -n 80"
        ))
        .stdout
    }

    /// Powers the machine off cleanly and boots it again on the same root (which must be
    /// [`Root::Persistent`] for anything installed to survive) and the same bound state.
    pub fn reboot(&mut self) {
        assert_eq!(
            self.root,
            Root::Persistent,
            "a reboot of a volatile machine loses every installed file"
        );
        self.poweroff();
        self.remove_cgroups();
        if self.merged_mounted {
            umount(&self.run.join("root"));
            self.merged_mounted = false;
        }
        self.start(cache());
    }

    fn poweroff(&mut self) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // nspawn turns SIGTERM into SIGRTMIN+3 for the machine's systemd: a clean poweroff.
            signal(child.id(), rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Ok(None) = child.try_wait() {
                // A machine that does not power off: SIGKILL its PID 1 first, which takes its
                // whole PID namespace down (nspawn alone would leave the machine running).
                eprintln!(
                    "e2e: {} did not power off within 20 s; killing it",
                    self.name
                );
                signal(self.init, rustix::process::Signal::KILL);
                std::thread::sleep(Duration::from_millis(500));
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }

    fn remove_cgroups(&self) {
        for cg in &self.cgroups {
            for _ in 0..50 {
                if !cg.exists() {
                    break;
                }
                // Deepest first; a directory with processes in it refuses, so try again.
                let _ = Command::new("find")
                    .arg(cg)
                    .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                    .stderr(Stdio::null())
                    .status();
                if cg.exists() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn teardown(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let started = Instant::now();
        self.poweroff();
        // An nsenter whose command died with the machine may be stopped (it mirrors its child's
        // SIGSTOP from the shutdown) and would wait forever: kill and reap it.
        for pid in self.spawned.borrow_mut().drain(..) {
            // Only while it is still this process's unreaped nsenter: a reaped PID may be reused.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ours = stat.contains("(nsenter)")
                && stat
                    .rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    == Some(std::process::id().to_string().as_str());
            if !ours {
                continue;
            }
            signal(pid, rustix::process::Signal::KILL);
            if let Some(pid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
        }
        self.remove_cgroups();
        if self.merged_mounted {
            umount(&self.run.join("root"));
            self.merged_mounted = false;
        }
        let _ = std::fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(&self.name));
        // A killed nspawn leaves its image lock behind; with no nspawn running it is stale.
        if !nspawn_running() {
            if let Ok(locks) = std::fs::read_dir("/run/systemd/nspawn/locks") {
                for lock in locks.flatten() {
                    let _ = std::fs::remove_file(lock.path());
                }
            }
        }
        // nspawn's own runtime directories, when empty: no host systemd owns them here, and
        // another machine that needs them creates them again.
        for dir in ["locks", "propagate", "unix-export", ""] {
            let _ = std::fs::remove_dir(Path::new("/run/systemd/nspawn").join(dir));
        }
        let _ = std::fs::remove_dir_all(&self.run);
        let runs = Path::new(BASE).join("runs");
        let _ = std::fs::remove_dir(&runs);
        eprintln!(
            "e2e: {} torn down in {:.1?} ({:.1?} from boot to gone)",
            self.name,
            started.elapsed(),
            self.created.elapsed()
        );
    }

    /// What is left of the machine on the host: processes naming it, mounts under its run
    /// directory or tree, its cgroup directories, its run directory.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains(&self.name) {
                    left.push(format!("process {pid}: {cmdline}"));
                }
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let run = self.run.display().to_string();
        for line in mountinfo.lines() {
            if line.contains(&run) || line.contains(&self.name) {
                left.push(format!("mount: {line}"));
            }
        }
        for cg in &self.cgroups {
            if cg.exists() {
                left.push(format!("cgroup directory {}", cg.display()));
            }
        }
        if self.run.exists() {
            left.push(format!("run directory {}", self.run.display()));
        }
        if Path::new("/run/systemd/nspawn/propagate")
            .join(&self.name)
            .exists()
        {
            left.push(format!("/run/systemd/nspawn/propagate/{}", self.name));
        }
        // With no machine running at all, nspawn's runtime directory is gone too.
        if !nspawn_running() && Path::new("/run/systemd/nspawn").exists() {
            left.push("/run/systemd/nspawn with no machine running".to_string());
        }
        left
    }

    /// Powers off and removes everything, and asserts that nothing is left on the host.
    pub fn finish(mut self) {
        self.teardown();
        let left = self.leftovers();
        assert!(
            left.is_empty(),
            "machine {} left behind:\n{}",
            self.name,
            left.join("\n")
        );
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if !self.finished {
            // A failed test: keep its evidence in the output, then clean up.
            if self.init != 0 && self.nspawn.is_some() {
                eprintln!("e2e: journal of {}:\n{}", self.name, self.journal(None));
            }
            self.teardown();
            let left = self.leftovers();
            if !left.is_empty() {
                eprintln!(
                    "e2e: machine {} left behind:\n{}",
                    self.name,
                    left.join("\n")
                );
            }
        }
    }
}

/// The machine's PID 1 as a host PID: nspawn's child (nspawn forks it into new namespaces).
fn container_init(nspawn: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|pid: &u32| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().contains("systemd"))
        })
}

/// Whether any systemd-nspawn runs on this host (this machine's or another's).
fn nspawn_running() -> bool {
    std::fs::read_dir("/proc").is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "systemd-nspawn")
        })
    })
}

fn statfs_is_cgroup2(path: &str) -> bool {
    Command::new("stat")
        .args(["-fc", "%T", path])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "cgroup2fs")
}

fn umount(path: &Path) {
    let status = Command::new("umount").arg(path).status();
    if !status.is_ok_and(|s| s.success()) {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

pub fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    hex::encode(sha2::Sha256::digest(&bytes))
}
