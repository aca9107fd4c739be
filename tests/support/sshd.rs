//! A real `sshd` for tests: on a free loopback port, with a generated host key, serving the
//! local user `agent` (created when missing) to one generated client key, and a HOME for `cai`
//! holding that key as `~/.config/containai/id_containai` with a known-hosts file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::INSTALL_HINT;

const SSHD: &str = "/usr/sbin/sshd";

/// Creates the local user `agent` (home `/home/agent`, a workspace) once per machine; a lock
/// keeps concurrent test binaries from racing `useradd`.
pub fn ensure_agent_user() {
    const SETUP: &str = r#"set -e
id -u agent >/dev/null 2>&1 || useradd -m -s /bin/bash -p '*' agent
# A password field of '!' locks the account, and sshd without PAM refuses locked accounts.
if grep -q '^agent:!' /etc/shadow; then usermod -p '*' agent; fi
mkdir -p /home/agent/workspace
chown agent:agent /home/agent/workspace
mkdir -p /run/sshd
chmod 0755 /run/sshd
"#;
    super::require_root();
    super::require("useradd");
    let out = Command::new("flock")
        .args(["/run/lock/cai-test-agent.lock", "sh", "-c", SETUP])
        .output()
        .expect("run flock (util-linux)");
    assert!(
        out.status.success(),
        "cannot set up the user agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn keygen(path: &Path) {
    let out = Command::new(super::require("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cai-test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real sshd on a free loopback port with a generated host key, letting `agent` in with one
/// generated client key.
pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Sshd {
    pub fn start() -> Self {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is required for this test but is not installed; install with: {INSTALL_HINT}"
        );
        super::require("ssh");
        ensure_agent_user();
        let dir = tempfile::Builder::new()
            .prefix("cai-sshd")
            .tempdir()
            .unwrap();
        // sshd reads the authorized keys as the user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(dir.path().join("client_key.pub"), &authorized).unwrap();
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile none\n\
                     AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nAllowUsers agent\nPrintMotd no\nPrintLastLog no\n\
                     LogLevel INFO\n",
                    d = dir.path().display()
                ),
            )
            .unwrap();
            let log = dir.path().join("sshd.log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("spawn sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd { child, dir, port };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("sshd did not start; its log:\n{last}");
    }

    pub fn host_key_line(&self) -> String {
        let public = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let mut words = public.split_whitespace();
        format!("{} {}", words.next().unwrap(), words.next().unwrap())
    }

    /// A HOME for `cai` with `~/.config/containai/id_containai` and a known-hosts file.
    pub fn home(&self, known_hosts: &str) -> tempfile::TempDir {
        let home = tempfile::Builder::new()
            .prefix("cai-home")
            .tempdir()
            .unwrap();
        self.install(home.path(), known_hosts);
        home
    }

    /// Writes the client key and `known_hosts` under `home/.config/containai/`.
    pub fn install(&self, home: &Path, known_hosts: &str) {
        let config = home.join(".config/containai");
        std::fs::create_dir_all(&config).unwrap();
        let key = config.join("id_containai");
        std::fs::copy(self.dir.path().join("client_key"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(config.join("known_hosts"), known_hosts).unwrap();
    }

    pub fn known_hosts(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, self.host_key_line())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // The per-connection processes outlive the listener; they end the control masters'
        // connections when they go.
        let pid = i32::try_from(self.child.id()).unwrap();
        for child in descendants(pid) {
            kill(child);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn kill(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Every process below `root`, from /proc.
fn descendants(root: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses; the fields after the last `)` don't.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}
