//! Test harness shared by the integration tests: a fake host under a temporary `--root`, a
//! private `dockerd` serving it, a busybox image built from Debian's `busybox-static`, and fake
//! executables on `PATH` for programs that cannot run here (systemctl, dpkg, sysbox-runc,
//! limactl). Every missing component fails the test with the command that installs it.

#![allow(dead_code)]

pub mod nspawn;
mod run;
pub mod sshd;

pub use run::Run;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str = "sudo ./scripts/test.sh (or: apt-get install docker.io busybox-static openssh-server systemd dpkg-dev python3)";
pub const TEST_IMAGE: &str = "cai-test:busybox";

/// A script that installs every unit named in its arguments and prints whether each changed.
pub const INSTALL_UNITS: &str = r#"//! version: 1.0.0
//! api: 1.1
for name in run::args() {
    let changed = units::install(name);
    print(`${name} changed ${changed}`);
}
"#;

/// The `cai` binary under test.
pub fn cai_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cai")
}

/// Fails (never skips) when a required program is missing.
pub fn require(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{program} is required for this test but is not installed; install with: {INSTALL_HINT}"
        )
    })
}

pub fn require_root() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test needs root (a private dockerd, chown); run the suite with: {INSTALL_HINT}"
    );
}

/// A fake host: a temporary root with the ContainAI layout, a temporary HOME and a directory of
/// fake executables placed first on PATH.
pub struct TestHost {
    pub root: tempfile::TempDir,
    pub home: tempfile::TempDir,
    /// `$TMPDIR` and `$XDG_RUNTIME_DIR` of every cai this host runs, outside the root (private
    /// copies must never be inside the tree cai manages), removed with the host: a cai a test
    /// kills leaves nothing, and no control-socket lock outlives the test.
    tmp: tempfile::TempDir,
    pub fakes: Fakes,
    /// The engines started for this root, stopped before the root is unmounted and removed
    /// (a test's fields may drop the host before its engine).
    engines: std::sync::Mutex<Vec<Engine>>,
}

impl TestHost {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("cai-root")
            .tempdir()
            .expect("temp root");
        for dir in [
            "etc/containai/scripts",
            "etc/containai/units",
            "etc/systemd/system",
            "var/run",
            "var/lib/containai-docker",
            "opt/containai",
            // A host booted with systemd, as `cai update` requires.
            "run/systemd/system",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).expect("root layout");
        }
        // The overrides directory must pass the catalog's ownership check.
        for dir in [
            "etc",
            "etc/containai",
            "etc/containai/scripts",
            "etc/containai/units",
        ] {
            std::fs::set_permissions(
                root.path().join(dir),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        let home = tempfile::Builder::new()
            .prefix("cai-home")
            .tempdir()
            .expect("temp home");
        let tmp = tempfile::Builder::new()
            .prefix("cai-tmp")
            .tempdir()
            .expect("temp dir for cai");
        Self {
            root,
            home,
            tmp,
            fakes: Fakes::new(),
            engines: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.root().join("var/run/containai-docker.sock")
    }

    /// A `cai --root ROOT` command with HOME and PATH set for this host; engine-selecting
    /// environment variables point somewhere wrong on purpose, since cai must ignore them.
    pub fn cai(&self) -> Command {
        let mut cmd = self.cai_tty();
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Like [`TestHost::cai`] but leaves stdio alone, for a pseudo-terminal to take over.
    pub fn cai_tty(&self) -> Command {
        let mut cmd = Command::new(cai_bin());
        // cai's own temporary files (private package copies) under the test's root, so that a
        // cai a test kills leaves nothing behind once the root is removed.
        cmd.arg("--root")
            .arg(self.root())
            .env("TMPDIR", self.tmp.path())
            // SSH control sockets and their locks too (a test may set its own).
            .env("XDG_RUNTIME_DIR", self.tmp.path())
            .env("HOME", self.home.path())
            .env("PATH", self.fakes.path_env())
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("DOCKER_CONTEXT", "cai-test-stale-context");
        // Release-target overrides come only from the test that sets them.
        for var in ["CAI_SYSBOX_URL", "CAI_SYSBOX_VERSION", "CAI_SYSBOX_TAG"] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Writes a script file (mode 0644) under the root's tmp and returns its path.
    pub fn script(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.home.path().join("scripts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    /// Starts `cai run SCRIPT` with stdout and stderr piped, for tests that signal it.
    pub fn spawn_run(&self, script: &Path) -> Child {
        self.cai()
            .arg("run")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cai")
    }

    /// Runs `cai` with args and returns (exit code, stdout, stderr); [`Run`] for more.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        Run::new(self).args(args).run()
    }

    /// Runs `cai --root ROOT ARGS` as uid and gid 65534 with no supplementary groups (through
    /// `setpriv`), HOME the root, stdin null; the root is made 0755 so that user reaches it.
    pub fn run_as_nobody(&self, args: &[&str]) -> (i32, String, String) {
        std::fs::set_permissions(self.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new(require("setpriv"))
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(cai_bin())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("HOME", self.root())
            .env("PATH", self.fakes.path_env())
            .stdin(Stdio::null())
            .output()
            .expect("run cai through setpriv");
        decode(out)
    }

    /// Every file under the root except the engine's own state, with what identifies its
    /// content and metadata.
    pub fn snapshot_files(&self) -> BTreeMap<String, String> {
        let skip = [
            self.root().join("var/lib/containai-docker"),
            self.root().join("run"),
            self.root().join("var/run"),
        ];
        let mut out = BTreeMap::new();
        walk(self.root(), &skip, &mut out);
        out
    }
}

impl Drop for TestHost {
    /// Stops this root's engines, unmounts everything still mounted under the root (the
    /// engine's own mounts, bind mounts and tmpfs a test planted) and checks that nothing is
    /// left: a mount left behind outlives the test and pins the deleted directory.
    fn drop(&mut self) {
        let engines = std::mem::take(
            &mut *self
                .engines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for engine in engines {
            engine.stop();
        }
        let left = unmount_under(self.root());
        if !std::thread::panicking() {
            assert!(
                left.is_empty(),
                "still mounted under {} after teardown: {left:?}",
                self.root().display()
            );
        }
    }
}

/// Mount points at or under `root`, from `/proc/self/mountinfo` (the test shares its mount
/// namespace with the engines it starts).
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_path(field)))
        .filter(|p| p.starts_with(root))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in a path as `\ooo` octal escapes.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let code = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(code) = code {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount at or under `root`, deepest first, and returns what is still mounted
/// there afterwards (nothing, when teardown worked).
pub fn unmount_under(root: &Path) -> Vec<PathBuf> {
    for _ in 0..5 {
        let mut mounts = mounts_under(root);
        if mounts.is_empty() {
            break;
        }
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        mounts.dedup();
        for mount in mounts {
            let _ = Command::new("umount")
                .arg("--lazy")
                .arg(&mount)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    mounts_under(root)
}

fn walk(dir: &Path, skip: &[PathBuf], out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if skip.contains(&path) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            format!("file {} {:x}", bytes.len(), checksum(&bytes))
        } else if meta.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(&path).unwrap().display())
        } else {
            "dir".to_string()
        };
        out.insert(
            path.display().to_string(),
            format!(
                "{content} mode={:o} uid={} gid={}",
                meta.mode(),
                meta.uid(),
                meta.gid()
            ),
        );
        if meta.is_dir() {
            walk(&path, skip, out);
        }
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    // FNV-1a: enough to tell contents apart in a snapshot.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Writes a dockerd static bundle to `out`: a gzipped tarball of `docker/NAME` executables that
/// print `NAME VERSION`, packed with the real `tar`; `dockerd --version` (and `docker --version`)
/// answer as the real ones do: `Docker version VERSION, build e6534b4`. `prepare` may add or
/// remove entries in the staging directory (which holds `docker/`) before it is packed.
pub fn dockerd_bundle(out: &Path, names: &[&str], version: &str, prepare: impl FnOnce(&Path)) {
    let stage = tempfile::tempdir().expect("staging dir");
    let docker = stage.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    for name in names {
        let path = docker.join(name);
        let answer = if matches!(*name, "dockerd" | "docker") {
            format!(
                "[ \"$1\" = --version ] && {{ echo 'Docker version {version}, build e6534b4'; exit 0; }}\n"
            )
        } else {
            String::new()
        };
        std::fs::write(&path, format!("#!/bin/sh\n{answer}echo {name} {version}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    prepare(stage.path());
    let status = Command::new("tar")
        .arg("-C")
        .arg(stage.path())
        .arg("-czf")
        .arg(out)
        .arg("docker")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of the bundle failed");
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Sends SIGINT, as Ctrl-C on a terminal does (to `cai` alone, not its children).
pub fn interrupt(child: &Child) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid"))
        .expect("a child pid is positive");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("send SIGINT");
}

pub fn decode(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Fake executables that log their argv to one file and print canned output.
pub struct Fakes {
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Fakes {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cai-fakes")
            .tempdir()
            .expect("fakes dir");
        let log = dir.path().join("calls.log");
        Self { dir, log }
    }

    /// Installs `name`: logs `name [arg]...` and then runs `body` (sh).
    pub fn add(&self, name: &str, body: &str) {
        let path = self.dir.path().join(name);
        let script = format!(
            "#!/bin/sh\n{{ printf '%s' '{name}'; for a in \"$@\"; do printf ' [%s]' \"$a\"; done; echo; }} >> '{}'\n{body}\n",
            self.log.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The standard set: systemctl and dpkg succeed silently; sysbox-runc prints `version`.
    pub fn add_standard(&self, sysbox_version_output: &str) {
        self.add("systemctl", "exit 0");
        self.add("dpkg", "exit 0");
        self.add("limactl", "exit 0");
        self.add(
            "sysbox-runc",
            &format!("cat <<'CAI_EOF'\n{sysbox_version_output}\nCAI_EOF"),
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_env(&self) -> OsString {
        let mut paths = vec![self.dir.path().to_path_buf()];
        if let Some(path) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(paths).unwrap()
    }
}

/// A private dockerd serving `<root>/var/run/containai-docker.sock` with its data under the root.
pub struct Dockerd {
    engine: Engine,
    socket: PathBuf,
    log: PathBuf,
}

/// A private dockerd process, shared by its [`Dockerd`] and the [`TestHost`] whose root it
/// serves: whichever drops first stops it, then everything it mounted is unmounted.
#[derive(Clone)]
struct Engine(std::sync::Arc<EngineState>);

struct EngineState {
    child: std::sync::Mutex<Option<Child>>,
    socket: PathBuf,
    /// The docker CLI's configuration directory.
    client: PathBuf,
    root: PathBuf,
}

impl Engine {
    fn child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.0
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes the containers, stops dockerd (SIGTERM, then SIGKILL after 20 s), ends what it
    /// left running for this root (a SIGKILLed dockerd leaves containerd), and unmounts what
    /// it mounted under the root (its data root, overlays, network namespaces). Idempotent.
    fn stop(&self) {
        if let Some(mut child) = self.child().take() {
            // Kill containers first: some tests run PID-1 programs that ignore SIGTERM.
            if let Ok(ids) = docker_cli(&self.0.socket, &self.0.client, &["ps", "-aq"]) {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids);
                    let _ = docker_cli(&self.0.socket, &self.0.client, &args);
                }
            }
            if let Some(pid) =
                rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_processes_of(&self.0.root);
        unmount_under(&self.0.root);
    }
}

/// SIGKILLs every process whose command line names a path under `root`: what an engine of that
/// root left behind (containerd, shims). Only test roots are ever passed here.
fn kill_processes_of(root: &Path) {
    let needle = format!("{}/", root.display());
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if pid != me && String::from_utf8_lossy(&cmdline).contains(&needle) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Runs a docker CLI command against the engine at `socket`; stdout, or stderr on failure.
fn docker_cli(socket: &Path, client: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(args)
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CONFIG", client)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Dockerd {
    pub fn start(host: &TestHost) -> Self {
        require_root();
        let dockerd = require("dockerd");
        require("docker");
        let root = host.root();
        let socket = host.socket();
        let log = root.join("dockerd.log");
        let child = Command::new(dockerd)
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(root.join("var/lib/containai-docker"))
            .arg("--exec-root")
            .arg(root.join("run/docker"))
            .arg("--pidfile")
            .arg(root.join("run/dockerd.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--shutdown-timeout=1",
                // As the engine's daemon.json has it, so the update's health gate finds sysbox-runc
                // as the default runtime (here a name for runc: sysbox itself cannot run here).
                "--add-runtime",
                "sysbox-runc=runc",
                "--default-runtime",
                "sysbox-runc",
            ])
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(root.join("dockerd.err")).unwrap())
            .spawn()
            .expect("spawn dockerd");
        let shared = Engine(std::sync::Arc::new(EngineState {
            child: std::sync::Mutex::new(Some(child)),
            socket: socket.clone(),
            client: log.with_file_name("docker-client"),
            root: root.to_path_buf(),
        }));
        host.engines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(shared.clone());
        let engine = Dockerd {
            engine: shared,
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if engine
                .try_docker(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "private dockerd did not come up within 60 s; its log:\n{}",
                std::fs::read_to_string(root.join("dockerd.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        engine.docker(&[
            "import",
            "--change",
            "ENV PATH=/bin",
            &busybox_image_tar().display().to_string(),
            TEST_IMAGE,
        ]);
        engine
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// SIGKILLs the engine: its socket file stays behind with nobody answering on it.
    pub fn kill(&mut self) {
        // Out of the slot: once reaped, its PID may belong to another process.
        let mut child = self.engine.child().take().expect("dockerd runs");
        child.kill().expect("SIGKILL dockerd");
        child.wait().expect("reap dockerd");
    }

    fn try_docker(&self, args: &[&str]) -> Result<String, String> {
        docker_cli(
            &self.socket,
            &self.log.with_file_name("docker-client"),
            args,
        )
    }

    /// Runs a docker CLI command against this engine; panics with its stderr on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        self.try_docker(args)
            .unwrap_or_else(|e| panic!("docker {} failed: {e}", args.join(" ")))
    }

    /// Starts a container (`--network none`) and returns its ID.
    pub fn run(&self, name: &str, labels: &[&str], image: &str, cmd: &[&str]) -> String {
        self.run_with(name, labels, &[], image, cmd)
    }

    /// Like [`Dockerd::run`], with more `docker run` options (e.g. `-v vol:/data`).
    pub fn run_with(
        &self,
        name: &str,
        labels: &[&str],
        options: &[&str],
        image: &str,
        cmd: &[&str],
    ) -> String {
        let mut args = vec!["run", "-d", "--network", "none", "--name", name];
        for label in labels {
            args.push("--label");
            args.push(label);
        }
        args.extend_from_slice(options);
        args.push(image);
        args.extend_from_slice(cmd);
        self.docker(&args)
    }

    /// True when `docker exec NAME ARGV` exits non-zero.
    pub fn try_exec_fails(&self, name: &str, argv: &[&str]) -> bool {
        let mut args = vec!["exec", name];
        args.extend_from_slice(argv);
        self.try_docker(&args).is_err()
    }

    /// Starts a labelled managed container whose PID 1 (`sleep`) ignores SIGTERM, like a
    /// container running systemd that takes its time; returns its ID.
    pub fn run_agent(&self, name: &str) -> String {
        self.run(
            name,
            &["containai.managed=true"],
            TEST_IMAGE,
            &["sleep", "600"],
        )
    }

    /// Container state (`running`, `exited`, ...).
    pub fn state(&self, name: &str) -> String {
        self.docker(&["inspect", "--format", "{{.State.Status}}", name])
    }

    /// Name and state of every container, for before/after comparisons.
    pub fn states(&self) -> String {
        self.docker(&["ps", "-a", "--format", "{{.Names}} {{.State}}"])
            .lines()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.engine.stop();
    }
}

/// A tar of a busybox root file system for `docker import`, built once per test process (no
/// registry is reachable, so the image is made here).
fn busybox_image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("busybox-static is required; install with: {INSTALL_HINT}"));
        // Inside the target directory, so nothing is left in /tmp; one directory per process
        // because test binaries run concurrently.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cai-test-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "home/agent"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
        for link in [
            "sh", "id", "sleep", "ls", "cat", "chown", "stat", "touch", "echo", "test", "uname",
            "whoami", "readlink", "rm", "true",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(link)).unwrap();
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nagent:x:1000:\n").unwrap();
        let tar = dir.join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(status.success(), "tar of the test image failed");
        tar
    })
}

/// Python's `http.server`, answering on 127.0.0.1 only, with each answered request logged as
/// `METHOD PATH STATUS` (one line, written before the body is sent).
const HTTP_SERVER: &str = r#"
import functools, http.server, sys

class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def log_request(self, code="-", size="-"):
        sys.stderr.write("%s %s %s\n" % (self.command, self.path, getattr(code, "value", code)))
        sys.stderr.flush()

handler = functools.partial(Handler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A loopback HTTP server serving fixture files from a temporary directory (the real thing for
/// artifact fetches: `python3 -m http.server`'s handler on a free port of 127.0.0.1), with the
/// requests it answered. Stopped when dropped.
pub struct HttpServer {
    child: Child,
    files: tempfile::TempDir,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
    port: u16,
}

impl HttpServer {
    pub fn start() -> Self {
        let python = require("python3");
        let files = tempfile::Builder::new()
            .prefix("cai-http")
            .tempdir()
            .expect("served dir");
        let log_dir = tempfile::Builder::new()
            .prefix("cai-http-log")
            .tempdir()
            .expect("log dir");
        let log = log_dir.path().join("requests.log");
        let mut child = Command::new(python)
            .arg("-u")
            .arg("-c")
            .arg(HTTP_SERVER)
            .arg(files.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 ({e}); install with: {INSTALL_HINT}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the server's port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "the python3 HTTP server did not start: {}\nhelp: {INSTALL_HINT}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Self {
            child,
            files,
            log,
            _log_dir: log_dir,
            port,
        }
    }

    /// Serves `bytes` at `/NAME` and returns its URL.
    pub fn put(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.files.path().join(name), bytes).unwrap();
        self.url(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// `METHOD PATH STATUS` for every request answered so far.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A package named `package` at `version` (Debian revision `-0`) for `arch`, depending on fuse3,
/// whose `sysbox-runc --version` reports `installs` in sysbox's multi-line format: what the
/// update and collection tests publish as the release's sysbox.
pub fn fake_sysbox_deb(package: &str, version: &str, arch: &str, installs: &str) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt;
    let stage = tempfile::tempdir().unwrap();
    let pkg = stage.path().join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/bin")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: {package}\nVersion: {version}-0\nArchitecture: {arch}\nMaintainer: ContainAI <containai@example.invalid>\nDepends: fuse3\nDescription: a stand-in for sysbox in the cai tests\n"
        ),
    )
    .unwrap();
    let runc = pkg.join("usr/bin/sysbox-runc");
    std::fs::write(
        &runc,
        format!(
            "#!/bin/sh\nprintf 'sysbox-runc\\n\\tedition: \\tCommunity Edition (CE)\\n\\tversion: \\t{installs}\\n\\tcommit: \\tabc\\n'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = stage.path().join("sysbox.deb");
    let status = std::process::Command::new(require("dpkg-deb"))
        .args(["--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "dpkg-deb --build failed");
    std::fs::read(out).unwrap()
}
