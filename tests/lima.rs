//! macOS: the engine, its unit files and dpkg live in the Lima VM `containai-docker`, so files
//! follow the execution target the way programs do. A fake `limactl` emulates the VM with a
//! directory of its own: `limactl shell --workdir / containai-docker -- [sudo -n] PROGRAM ARGS`
//! runs `test`, `cat`, `install`, `mv`, `dpkg`, `rm`, `systemctl` and the binaries under
//! `/opt/containai` (the dockerd bundle's `dockerd --version`) against that directory, and
//! `limactl copy SRC containai-docker:DST` copies into it, and `limactl list --format json` prints
//! the JSON lines a test chose (a running x86_64 VM unless it says otherwise). Each test checks that the VM's files
//! change and the Mac's `--root` does not, and that nothing under the Mac's root leaks into a
//! command run in the VM.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use support::{INSTALL_UNITS, Run, TestHost};

const ENGINE: &str = "containai-docker.service";
const UNIT_DIR: &str = "etc/systemd/system";

/// Prints the unit text `units::read` returns, or `absent`.
const READ: &str = r#"//! version: 1.0.0
//! api: 1.1
let text = units::read(run::args()[0]);
if type_of(text) == "()" { print("absent") } else { print(text) }
"#;

/// Prints the rendered unit.
const RENDER: &str = r#"//! version: 1.0.0
//! api: 1.1
print(units::render(run::args()[0]));
"#;

/// The fake VM: every path a program in it is given is taken under `$VM`. Anything it does not
/// expect exits 2 with a message, so a wrong argv fails the test with the command in the log.
const VM_SHELL: &str = r#"
case "$1" in
list)
    [ "$#" = 3 ] && [ "$2 $3" = "--format json" ] || { echo "limactl list: unexpected arguments" >&2; exit 2; }
    cat "$LIST"
    exit $?
    ;;
copy)
    [ "$#" = 3 ] || { echo "limactl copy: want SRC DST" >&2; exit 2; }
    case "$3" in containai-docker:/*) ;; *) echo "limactl copy: bad target $3" >&2; exit 2 ;; esac
    dst="${3#containai-docker:}"
    mkdir -p "$VM$(dirname "$dst")" && cp "$2" "$VM$dst"
    exit $?
    ;;
shell) ;;
*) echo "limactl: unexpected command $1" >&2; exit 2 ;;
esac
[ "$2 $3 $4 $5" = "--workdir / containai-docker --" ] || { echo "limactl shell: unexpected arguments" >&2; exit 2; }
shift 5
if [ "$1" = sudo ]; then
    [ "$2" = -n ] || { echo "sudo: a password is required" >&2; exit 1; }
    shift 2
fi
prog="$1"
shift
case "$prog" in
test)
    [ "$#" = 2 ] || exit 2
    case "$1" in -e) [ -e "$VM$2" ] ;; -d) [ -d "$VM$2" ] ;; *) exit 2 ;; esac
    exit $?
    ;;
sysbox-runc)
    [ "$*" = --version ] && [ -f "$VM/sysbox-version" ] || { echo "sh: 1: sysbox-runc: not found" >&2; exit 127; }
    exec cat "$VM/sysbox-version"
    ;;
cat) [ "$#" = 1 ] || exit 2; exec cat "$VM$1" ;;
install)
    [ "$#" = 5 ] && [ "$1 $2" = "-D -m" ] && [ "$4" = /dev/stdin ] || exit 2
    mkdir -p "$VM$(dirname "$5")" && cat > "$VM$5" && chmod "$3" "$VM$5"
    exit $?
    ;;
mv)
    [ "$#" = 3 ] || exit 2
    case "$1" in -f|-T|-Tf) exec mv "$1" "$VM$2" "$VM$3" ;; *) exit 2 ;; esac
    ;;
mkdir) [ "$#" = 2 ] && [ "$1" = -p ] || exit 2; exec mkdir -p "$VM$2" ;;
ls) [ "$#" = 2 ] && [ "$1" = -1 ] || exit 2; exec ls -1 "$VM$2" ;;
ln)
    [ "$#" = 3 ] && [ "$1" = -sfn ] || exit 2
    case "$2" in /*) echo "ln: an absolute target would point outside the VM's tree" >&2; exit 2 ;; esac
    exec ln -sfn "$2" "$VM$3"
    ;;
dpkg)
    [ "$#" = 2 ] && [ "$1" = -i ] || { echo "dpkg: unexpected arguments $*" >&2; exit 2; }
    cp "$VM$2" "$VM/installed.deb" && printf '%s' "$2" > "$VM/installed.path"
    exit $?
    ;;
rm) [ "$#" = 2 ] || exit 2; case "$1" in -f|-rf) exec rm "$1" "$VM$2" ;; *) exit 2 ;; esac ;;
systemctl)
    case "$1" in --root=*) echo "systemctl: $1 names nothing in the VM" >&2; exit 2 ;; esac
    exit 0
    ;;
/opt/containai/*)
    [ -x "$VM$prog" ] || { echo "sh: 1: $prog: not found" >&2; exit 127; }
    exec "$VM$prog" "$@"
    ;;
*) echo "sh: 1: $prog: not found" >&2; exit 127 ;;
esac
"#;

/// A Mac: `platform = "macos"` in the local config and a fake VM directory.
struct Mac {
    host: TestHost,
    vm: tempfile::TempDir,
    /// What `limactl list --format json` prints.
    list: tempfile::NamedTempFile,
}

/// One line of `limactl list --format json`.
fn instance(name: &str, status: &str, arch: &str) -> String {
    format!(
        r#"{{"name":"{name}","status":"{status}","dir":"/Users/me/.lima/{name}","arch":"{arch}","cpus":4}}"#
    )
}

impl Mac {
    fn new() -> Self {
        let host = TestHost::new();
        let vm = tempfile::Builder::new().prefix("cai-vm").tempdir().unwrap();
        std::fs::create_dir_all(vm.path().join(UNIT_DIR)).unwrap();
        std::fs::create_dir_all(vm.path().join("tmp")).unwrap();
        let list = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            list.path(),
            instance("containai-docker", "Running", "x86_64") + "\n",
        )
        .unwrap();
        host.fakes.add(
            "limactl",
            &format!(
                "VM='{}'\nLIST='{}'\n{VM_SHELL}",
                vm.path().display(),
                list.path().display()
            ),
        );
        // Programs that must run in the VM, never on the Mac; a call shows in the log. (`cat` and
        // `mv` stay real: the fake VM itself uses them.)
        for program in ["systemctl", "dpkg", "install"] {
            host.fakes
                .add(program, "echo 'ran on the Mac' >&2; exit 99");
        }
        write_mode(
            &host.root().join("etc/containai/config.toml"),
            "platform = \"macos\"\n",
            0o644,
        );
        Self { host, vm, list }
    }

    /// Makes `limactl list --format json` print these lines.
    fn set_list(&self, lines: &[String]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(self.list.path(), text).unwrap();
    }

    fn vm_file(&self, path: &str) -> PathBuf {
        self.vm.path().join(path.trim_start_matches('/'))
    }

    fn local_unit(&self) -> PathBuf {
        self.host.root().join(UNIT_DIR).join(ENGINE)
    }

    fn vm_unit(&self) -> PathBuf {
        self.vm_file(&format!("/{UNIT_DIR}/{ENGINE}"))
    }

    /// Every file in the fake VM with its contents and mode.
    fn vm_snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        snapshot(self.vm.path(), self.vm.path(), &mut out);
        out
    }

    /// Runs a script with ARGS; `extra` goes before the script (`--dry-run`, `--json`).
    fn run(&self, script: &str, extra: &[&str], args: &[&str]) -> (i32, String, String) {
        Run::script(&self.host, "lima.rhai", script)
            .args(extra)
            .script_args(args)
            .run()
    }

    /// The Mac's artifact cache, created with the modes the trust rules want (bundles are
    /// installed only from there).
    fn trusted_cache(&self) -> PathBuf {
        let cache = self.host.root().join("var/cache/containai");
        std::fs::create_dir_all(&cache).unwrap();
        for dir in ["var", "var/cache", "var/cache/containai"] {
            std::fs::set_permissions(
                self.host.root().join(dir),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        cache
    }

    /// Log lines of commands run inside the VM through `limactl shell`.
    fn vm_commands(&self) -> Vec<String> {
        let prefix = "limactl [shell] [--workdir] [/] [containai-docker] [--] ";
        self.host
            .fakes
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .collect()
    }

    /// Fails when any program other than limactl ran on the Mac.
    fn assert_nothing_ran_on_the_mac(&self) {
        let log = self.host.fakes.log();
        assert!(
            log.lines().all(|l| l.starts_with("limactl ")),
            "a program ran on the Mac:\n{log}"
        );
    }
}

fn snapshot(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let key = path.strip_prefix(base).unwrap().display().to_string();
        if meta.is_dir() {
            out.insert(key, "dir".into());
            snapshot(base, &path, out);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.insert(
                key,
                format!(
                    "{} mode={:o}",
                    String::from_utf8_lossy(&bytes),
                    meta.permissions().mode() & 0o7777
                ),
            );
        }
    }
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The `error:` line, which must say what is wrong on its own.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect()
}

#[test]
fn a_dry_run_install_diffs_against_the_vms_unit_and_changes_nothing() {
    let mac = Mac::new();
    write_mode(&mac.vm_unit(), "[Unit]\nDescription=old in the VM\n", 0o644);
    let local_before = mac.host.snapshot_files();
    let vm_before = mac.vm_snapshot();

    let (code, stdout, stderr) = mac.run(INSTALL_UNITS, &["--dry-run", "--json"], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("changed true"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let plan = doc["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 1, "{stdout}");
    let shown = format!("containai-docker:/{UNIT_DIR}/{ENGINE}");
    assert_eq!(plan[0]["kind"], "units.install");
    assert_eq!(plan[0]["target"], shown.as_str());
    assert_eq!(plan[0]["details"]["replaces"], true);
    let diff = plan[0]["details"]["diff"].as_str().unwrap();
    assert!(
        diff.starts_with(&format!("--- {shown}\n+++ {shown} (rendered)\n")),
        "{diff}"
    );
    assert!(diff.contains("\n-Description=old in the VM\n"), "{diff}");
    assert!(
        diff.contains("\n+ExecStart=/opt/containai/bin/dockerd "),
        "{diff}"
    );

    assert_eq!(
        mac.host.snapshot_files(),
        local_before,
        "the Mac's root changed"
    );
    assert_eq!(mac.vm_snapshot(), vm_before, "the VM changed in a dry run");
    let commands = mac.vm_commands();
    assert_eq!(
        commands,
        [
            format!("[test] [-e] [/{UNIT_DIR}/{ENGINE}]"),
            format!("[cat] [/{UNIT_DIR}/{ENGINE}]"),
        ],
        "a dry run only reads the VM"
    );
    mac.assert_nothing_ran_on_the_mac();
}

#[test]
fn a_live_install_writes_the_rendered_unit_into_the_vm_and_a_second_is_a_no_op() {
    let mac = Mac::new();
    let (code, rendered, stderr) = mac.run(RENDER, &[], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, stderr) = mac.run(INSTALL_UNITS, &[], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("changed true"), "{stdout}");
    // `print` adds the newline the rendered text already ends with.
    assert_eq!(
        format!("{}\n", std::fs::read_to_string(mac.vm_unit()).unwrap()),
        rendered
    );
    let mode = std::fs::metadata(mac.vm_unit())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    assert!(
        !mac.local_unit().exists(),
        "the unit was written on the Mac"
    );
    let staged = format!("/{UNIT_DIR}/{ENGINE}.cai-new");
    assert!(!mac.vm_file(&staged).exists(), "the staged unit was left");
    let commands = mac.vm_commands();
    for want in [
        format!("[sudo] [-n] [install] [-D] [-m] [0644] [/dev/stdin] [{staged}]"),
        format!("[sudo] [-n] [mv] [-f] [{staged}] [/{UNIT_DIR}/{ENGINE}]"),
    ] {
        assert!(commands.contains(&want), "{want} not in {commands:#?}");
    }
    assert!(
        !mac.host
            .fakes
            .log()
            .contains(mac.host.root().to_str().unwrap()),
        "the Mac's root reached the VM:\n{}",
        mac.host.fakes.log()
    );
    mac.assert_nothing_ran_on_the_mac();

    let vm_before = mac.vm_snapshot();
    let local_before = mac.host.snapshot_files();
    let (code, stdout, stderr) = mac.run(INSTALL_UNITS, &[], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("changed false"), "{stdout}");
    assert_eq!(mac.vm_snapshot(), vm_before);
    assert_eq!(mac.host.snapshot_files(), local_before);
    let writes = mac
        .vm_commands()
        .iter()
        .filter(|c| c.contains("[install]"))
        .count();
    assert_eq!(writes, 1, "an identical unit was written again");
}

#[test]
fn a_failed_move_in_the_vm_names_the_command_and_keeps_the_old_unit() {
    let mac = Mac::new();
    write_mode(&mac.vm_unit(), "[Unit]\nDescription=old in the VM\n", 0o644);
    mac.host.fakes.add(
        "limactl",
        &format!(
            "VM='{}'\nif [ \"$6 $7 $8\" = 'sudo -n mv' ]; then echo 'mv: cannot move' >&2; exit 1; fi\n{VM_SHELL}",
            mac.vm.path().display()
        ),
    );
    let (code, _, stderr) = mac.run(INSTALL_UNITS, &[], &[ENGINE]);
    assert_eq!(code, 1, "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!(
            "mv -f /{UNIT_DIR}/{ENGINE}.cai-new /{UNIT_DIR}/{ENGINE} (in the Lima VM containai-docker) exited with status 1"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("  | mv: cannot move"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(mac.vm_unit()).unwrap(),
        "[Unit]\nDescription=old in the VM\n"
    );
    assert!(
        !mac.vm_file(&format!("/{UNIT_DIR}/{ENGINE}.cai-new"))
            .exists(),
        "the staged unit was left"
    );
}

#[test]
fn units_read_returns_the_vms_text_not_the_macs() {
    let mac = Mac::new();
    write_mode(&mac.local_unit(), "[Unit]\nDescription=on the Mac\n", 0o644);
    write_mode(&mac.vm_unit(), "[Unit]\nDescription=in the VM\n", 0o644);
    let (code, stdout, stderr) = mac.run(READ, &[], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "[Unit]\nDescription=in the VM\n\n");

    std::fs::remove_file(mac.vm_unit()).unwrap();
    let (code, stdout, stderr) = mac.run(READ, &[], &[ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "absent\n", "the Mac's unit was read");
    mac.assert_nothing_ran_on_the_mac();
}

#[test]
fn systemctl_runs_in_the_vm_as_root_without_the_macs_root() {
    let mac = Mac::new();
    let (code, _, stderr) = mac.run(
        "//! version: 1.0.0\n//! api: 1.1\nunits::daemon_reload();\nunits::restart(\"containai-docker.service\");\n",
        &[],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        mac.vm_commands(),
        [
            "[sudo] [-n] [systemctl] [daemon-reload]",
            "[sudo] [-n] [systemctl] [restart] [containai-docker.service]",
        ]
    );
    assert!(
        !mac.host.fakes.log().contains("--root="),
        "{}",
        mac.host.fakes.log()
    );
    mac.assert_nothing_ran_on_the_mac();
}

#[test]
fn a_deb_is_copied_into_the_vm_and_installed_there_then_removed() {
    let mac = Mac::new();
    let cache = mac.host.root().join("var/cache/containai");
    std::fs::create_dir_all(&cache).unwrap();
    let original = cache.join("sysbox.deb");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&original, &bytes).unwrap();
    std::fs::set_permissions(&original, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));
    let in_vm = format!("/tmp/cai-{}.deb", &sha[..16]);
    let script = "//! version: 1.0.0\n//! api: 1\npackages::install_deb(run::args()[0]);\n";

    let (code, stdout, stderr) = mac.run(
        script,
        &["--dry-run", "--json"],
        &["/var/cache/containai/sysbox.deb"],
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["plan"][0]["kind"], "packages.install_deb");
    assert_eq!(doc["plan"][0]["details"]["sha256"], sha.as_str());
    assert_eq!(mac.host.fakes.log(), "", "a dry run reached the VM");

    let (code, _, stderr) = mac.run(script, &[], &["/var/cache/containai/sysbox.deb"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(mac.vm_file("/installed.path")).unwrap(),
        in_vm,
        "dpkg was not given the copy in the VM"
    );
    assert_eq!(std::fs::read(mac.vm_file("/installed.deb")).unwrap(), bytes);
    assert!(!mac.vm_file(&in_vm).exists(), "the copy in the VM was left");

    let log = mac.host.fakes.log();
    let copy = log
        .lines()
        .find(|l| l.starts_with("limactl [copy] "))
        .unwrap_or_else(|| panic!("no limactl copy in\n{log}"));
    let source = copy
        .strip_prefix("limactl [copy] [")
        .and_then(|rest| rest.split_once("] ["))
        .map(|(source, _)| PathBuf::from(source))
        .unwrap();
    assert_eq!(
        copy,
        format!(
            "limactl [copy] [{}] [containai-docker:{in_vm}]",
            source.display()
        )
    );
    assert_ne!(
        source, original,
        "the original was copied, not the verified copy"
    );
    assert!(!source.starts_with(mac.host.root()), "{}", source.display());
    assert!(!source.exists(), "the private copy outlived the run");
    let commands = mac.vm_commands();
    assert_eq!(
        commands,
        [
            format!("[sudo] [-n] [dpkg] [-i] [{in_vm}]"),
            format!("[sudo] [-n] [rm] [-f] [{in_vm}]"),
        ]
    );
    let copied_at = log.lines().position(|l| l == copy).unwrap();
    let installed_at = log.lines().position(|l| l.contains("[dpkg]")).unwrap();
    assert!(copied_at < installed_at, "{log}");
    mac.assert_nothing_ran_on_the_mac();
}

#[test]
fn a_failed_dpkg_in_the_vm_names_the_command_and_still_removes_the_copy() {
    let mac = Mac::new();
    let cache = mac.host.root().join("var/cache/containai");
    std::fs::create_dir_all(&cache).unwrap();
    write_mode(&cache.join("sysbox.deb"), "!<arch>\nnot really\n", 0o644);
    // dpkg in the VM fails; everything else behaves.
    mac.host.fakes.add(
        "limactl",
        &format!(
            "VM='{}'\nif [ \"$6 $7 $8\" = 'sudo -n dpkg' ]; then echo 'dpkg: error: broken' >&2; exit 1; fi\n{VM_SHELL}",
            mac.vm.path().display()
        ),
    );
    let script = "//! version: 1.0.0\n//! api: 1\npackages::install_deb(run::args()[0]);\n";
    let (code, _, stderr) = mac.run(script, &[], &["/var/cache/containai/sysbox.deb"]);
    assert_eq!(code, 1, "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("dpkg -i containai-docker:/tmp/cai-")
            && errors[0].contains("exited with status 1"),
        "{stderr}"
    );
    assert!(stderr.contains("  | dpkg: error: broken"), "{stderr}");
    assert!(
        mac.vm_commands()
            .iter()
            .any(|c| c.starts_with("[sudo] [-n] [rm] [-f] [/tmp/cai-")),
        "{}",
        mac.host.fakes.log()
    );
    let left: Vec<_> = std::fs::read_dir(mac.vm_file("/tmp")).unwrap().collect();
    assert!(left.is_empty(), "the copy in the VM was left: {left:?}");
}

#[test]
fn a_missing_vm_is_one_clear_error_naming_the_command() {
    let mac = Mac::new();
    // What limactl does for an instance that does not exist: a fatal line on stderr, exit 1.
    mac.host.fakes.add(
        "limactl",
        "echo 'FATA[0000] instance \"containai-docker\" does not exist, run `limactl create --name=containai-docker` to create a new instance' >&2\nexit 1",
    );
    let local_before = mac.host.snapshot_files();
    for (script, extra, args) in [
        (READ, &[][..], &[ENGINE][..]),
        (INSTALL_UNITS, &["--dry-run"][..], &[ENGINE][..]),
        (INSTALL_UNITS, &[][..], &[ENGINE][..]),
    ] {
        let (code, stdout, stderr) = mac.run(script, extra, args);
        assert_eq!(code, 1, "{extra:?}: {stdout}{stderr}");
        assert!(
            !stdout.contains("absent"),
            "a missing VM read as a missing unit"
        );
        let errors = error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains(&format!(
                "test -e /{UNIT_DIR}/{ENGINE} (in the Lima VM containai-docker) exited with status 1"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("  | FATA[0000] instance \"containai-docker\" does not exist"),
            "{stderr}"
        );
        assert!(
            stderr.contains("help: limactl start containai-docker"),
            "{stderr}"
        );
    }
    assert_eq!(
        mac.host.snapshot_files(),
        local_before,
        "the Mac's root changed"
    );
    assert!(!mac.local_unit().exists());
}

#[test]
fn doctor_checks_the_engine_unit_inside_the_vm() {
    let mac = Mac::new();
    let unit_check = |mac: &Mac| doctor_check(mac, "unit.engine");
    let check = unit_check(&mac);
    assert_eq!(check["status"], "warn", "{check}");
    // A unit that is not what cai renders is reported as different, not as installed.
    write_mode(&mac.vm_unit(), "[Unit]\n", 0o644);
    let check = unit_check(&mac);
    assert_eq!(check["status"], "warn", "{check}");
    assert!(
        check["summary"].as_str().unwrap().contains("differs"),
        "{check}"
    );
    let (code, rendered, stderr) = mac.host.run(&["system", "unit", ENGINE]);
    assert_eq!(code, 0, "{stderr}");
    write_mode(&mac.vm_unit(), &rendered, 0o644);
    let check = unit_check(&mac);
    assert_eq!(check["status"], "ok", "{check}");

    mac.host.fakes.add(
        "limactl",
        "echo 'FATA[0000] instance is stopped' >&2\nexit 1",
    );
    let check = unit_check(&mac);
    assert_eq!(
        check["status"], "unknown",
        "a VM that did not answer: {check}"
    );
    assert_eq!(
        check["remediation"], "limactl start containai-docker",
        "{check}"
    );
}

/// The three ways a VM can be unusable, each with the words that must tell them apart [P30]:
/// (state, set up the fake, doctor status, doctor summary, remediation, update error, update help).
type VmCase = (
    &'static str,
    fn(&Mac),
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const VM_CASES: [VmCase; 3] = [
    (
        "not-found",
        |mac| mac.set_list(&[instance("containai-docker-old", "Running", "x86_64")]),
        "error",
        "the Lima VM containai-docker does not exist",
        "create it: limactl start --name=containai-docker <template>",
        "error: the Lima VM containai-docker does not exist; nothing was changed",
        "help: limactl start --name=containai-docker <template>, then cai update",
    ),
    (
        "stopped",
        |mac| mac.set_list(&[instance("containai-docker", "Stopped", "x86_64")]),
        "error",
        "the Lima VM containai-docker is stopped",
        "limactl start containai-docker",
        "error: the Lima VM containai-docker is stopped; nothing was changed",
        "help: limactl start containai-docker, then cai update",
    ),
    (
        "unreachable",
        |mac| {
            mac.host.fakes.add(
                "limactl",
                "echo 'FATA[0000] cannot read ~/.lima' >&2\nexit 1",
            );
        },
        "unknown",
        "cannot ask limactl about the Lima VM containai-docker",
        "limactl list",
        "error: cannot ask limactl about the Lima VM containai-docker (limactl is missing or failed); nothing was changed",
        "help: limactl list",
    ),
];

fn lima_check(mac: &Mac) -> serde_json::Value {
    doctor_check(mac, "lima.vm")
}

/// The record of check `id` in `cai doctor --json` on this Mac.
fn doctor_check(mac: &Mac, id: &str) -> serde_json::Value {
    let (_, stdout, stderr) = mac.host.run(&["doctor", "--json"]);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    doc["reports"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no {id} check: {stdout}"))
}

#[test]
fn doctor_tells_a_missing_a_stopped_and_an_unreachable_vm_apart() {
    let mac = Mac::new();
    let check = lima_check(&mac);
    assert_eq!(check["status"], "ok", "{check}");
    assert_eq!(check["category"], "platform", "{check}");
    assert_eq!(
        check["summary"], "the Lima VM containai-docker is running",
        "{check}"
    );

    let mut seen = Vec::new();
    for (state, set_up, status, summary, remediation, _, _) in VM_CASES {
        let mac = Mac::new();
        set_up(&mac);
        let check = lima_check(&mac);
        assert_eq!(check["status"], status, "{state}: {check}");
        assert_eq!(check["summary"], summary, "{state}: {check}");
        assert_eq!(check["remediation"], remediation, "{state}: {check}");
        seen.push(check["summary"].clone());
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "three states read alike: {seen:?}");
}

#[test]
fn update_refuses_each_unusable_vm_with_its_own_message_and_asks_it_nothing_else() {
    for (state, set_up, _, _, _, error, help) in VM_CASES {
        let mac = Mac::new();
        set_up(&mac);
        let (code, stdout, stderr) = mac.host.run(&["update"]);
        assert_eq!(code, 1, "{state}: {stdout}{stderr}");
        // One `error:` line, then the script's advice as a `help:` line (never `error: help:`).
        assert_eq!(
            error_lines(&stderr),
            [error.to_string()],
            "{state}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{error}\n{help}\n")),
            "{state}: {stderr}"
        );
        let log = mac.host.fakes.log();
        assert!(
            log.lines().all(|l| l == "limactl [list] [--format] [json]"),
            "{state}: more than the VM's status was asked:\n{log}"
        );
        assert!(mac.vm_commands().is_empty(), "{state}: {log}");
    }
}

/// An architecture other than this machine's, as Lima names it, with its Debian and kernel names.
fn other_arch() -> (&'static str, &'static str) {
    if std::env::consts::ARCH == "aarch64" {
        ("x86_64", "amd64")
    } else {
        ("aarch64", "arm64")
    }
}

#[test]
fn the_release_target_follows_the_vms_arch_not_the_macs() {
    // P27: an aarch64 VM on an x86_64 machine gets the arm64 artifacts (and the other way round).
    let mac = Mac::new();
    let (lima_arch, deb) = other_arch();
    mac.set_list(&[
        instance("default", "Running", std::env::consts::ARCH),
        instance("containai-docker", "Running", lima_arch),
    ]);
    let script = "//! version: 1.0.0\n//! api: 1.4\nprint(lima::status());\nprint(lima::arch());\nlet t = release::target();\nprint(t.sysbox.url);\nprint(t.dockerd.url);\nrelease::target();\n0\n";
    let (code, stdout, stderr) = mac.run(script, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..2], ["running", deb], "{stdout}");
    assert!(
        lines[2].ends_with(&format!(".linux_{deb}.deb")),
        "sysbox for the wrong arch: {stdout}"
    );
    assert!(
        lines[3].contains(&format!("/linux/static/stable/{lima_arch}/docker-")),
        "dockerd for the wrong arch: {stdout}"
    );
    // lima::status and lima::arch ask each time; the release target is resolved once per run
    // [P26] however often it is read. Nothing runs inside the VM.
    assert_eq!(
        mac.host.fakes.log(),
        "limactl [list] [--format] [json]\n".repeat(3),
    );

    mac.set_list(&[]);
    for call in ["lima::arch()", "release::target()"] {
        let (code, _, stderr) = mac.run(
            &format!("//! version: 1.0.0\n//! api: 1.4\n{call};\n"),
            &[],
            &[],
        );
        assert_eq!(code, 1, "{call}: {stderr}");
        let errors = error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{call}: {stderr}");
        assert!(
            errors[0].contains("the Lima VM containai-docker does not exist"),
            "{call}: {stderr}"
        );
        assert!(
            stderr.contains("help: limactl start --name=containai-docker <template>"),
            "{call}: {stderr}"
        );
    }
}

#[test]
fn on_linux_there_is_no_vm_and_the_arch_is_the_machines() {
    let host = TestHost::new();
    host.fakes
        .add("limactl", "echo 'asked limactl' >&2; exit 99");
    let path = host.script(
        "lima.rhai",
        "//! version: 1.0.0\n//! api: 1.4\nprint(lima::status());\nprint(lima::arch() == platform::arch());\n",
    );
    let (code, stdout, stderr) = host.run(&["run", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "not-used\ntrue\n");
    assert_eq!(host.fakes.log(), "", "limactl was asked on Linux");
}

/// [P17] On macOS the containers run in the VM: the update's container gate sees them through the
/// forwarded engine socket and refuses, before anything is fetched or asked of the VM's dpkg.
#[test]
fn regression_p17_the_vms_running_containers_refuse_the_update() {
    let mac = Mac::new();
    write_mode(
        &mac.host.root().join("etc/containai/config.toml"),
        "platform = \"macos\"\nsocket = \"/var/run/containai-docker.sock\"\n",
        0o644,
    );
    std::fs::write(
        mac.vm.path().join("sysbox-version"),
        "sysbox-runc version 0.6.7+containai.20251201\n",
    )
    .unwrap();
    std::fs::create_dir_all(mac.vm.path().join("run/systemd/system")).unwrap();
    let engine = support::Dockerd::start(&mac.host);
    engine.run_agent("agent-1");
    let (code, _, stderr) = mac.host.run(&["update"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("managed containers are running: agent-1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sysbox: 0.6.7+containai.20251201 -> 0.6.7+containai.20260127"),
        "{stderr}"
    );
    assert_eq!(engine.state("agent-1"), "running");
    assert!(!mac.vm.path().join("installed.deb").exists());
    assert!(
        !mac.host.fakes.log().contains("[copy]"),
        "{}",
        mac.host.fakes.log()
    );
}

/// On macOS the engine runs in the VM, so the dockerd bundle goes there: unpacked beside any old
/// version in the VM's `/opt/containai/docker/`, its links and `VERSION` switched there, and
/// `dockerd::installed()` reads the VM's version. The Mac's `/opt/containai` stays untouched.
#[test]
fn the_dockerd_bundle_is_installed_inside_the_vm() {
    let mac = Mac::new();
    let cache = mac.trusted_cache();
    support::dockerd_bundle(
        &cache.join("docker-28.2.2.tgz"),
        &["dockerd", "containerd"],
        "28.2.2",
        |_| {},
    );
    let mac_opt = mac.host.root().join("opt/containai");
    let before = std::fs::read_dir(&mac_opt).unwrap().count();
    let script = "//! version: 1.0.0\n//! api: 1\nprint(`before ${dockerd::installed()}`);\ndockerd::install(\"/var/cache/containai/docker-28.2.2.tgz\", \"28.2.2\");\nprint(`after ${dockerd::installed()}`);\n0\n";
    let (code, stdout, stderr) = mac.run(script, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "before \nafter 28.2.2\n", "{stderr}");

    let vm = mac.vm.path().join("opt/containai");
    assert_eq!(
        std::fs::read_to_string(vm.join("VERSION")).unwrap(),
        "28.2.2\n"
    );
    for name in ["dockerd", "containerd"] {
        let link = vm.join("bin").join(name);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../docker/28.2.2").join(name)
        );
        let meta = std::fs::metadata(&link).unwrap();
        assert!(meta.is_file() && meta.permissions().mode() & 0o111 != 0);
    }
    assert!(!vm.join("docker/.28.2.2.cai-new").exists());
    assert_eq!(std::fs::read_dir(&mac_opt).unwrap().count(), before);
    mac.assert_nothing_ran_on_the_mac();
}

/// P73 on macOS: the bundle's `dockerd --version` runs inside the VM, on the staging directory,
/// before the links switch; a bundle that is another version is refused and the VM's active
/// version (links, `VERSION`, what `dockerd::installed()` says, read from the VM's binary) stays.
#[test]
fn p73_a_bundle_whose_dockerd_reports_another_version_is_refused_inside_the_vm() {
    let mac = Mac::new();
    let cache = mac.trusted_cache();
    support::dockerd_bundle(
        &cache.join("docker-28.2.2.tgz"),
        &["dockerd"],
        "28.2.2",
        |_| {},
    );
    // Named and announced as 28.3.0, but its dockerd is 28.1.0.
    support::dockerd_bundle(
        &cache.join("docker-28.3.0.tgz"),
        &["dockerd"],
        "28.1.0",
        |_| {},
    );
    let install = |file: &str, version: &str| {
        mac.run(
            &format!(
                "//! version: 1.0.0\n//! api: 1\ndockerd::install(\"/var/cache/containai/{file}\", \"{version}\");\nprint(`${{dockerd::installed()}}`);\n0\n"
            ),
            &[],
            &[],
        )
    };
    let (code, stdout, stderr) = install("docker-28.2.2.tgz", "28.2.2");
    assert_eq!((code, stdout.as_str()), (0, "28.2.2\n"), "{stderr}");
    let vm = mac.vm.path().join("opt/containai");
    // VERSION is a note for people: the VM's binary decides what is installed.
    std::fs::write(vm.join("VERSION"), "99.0.0\n").unwrap();

    let (code, stdout, stderr) = install("docker-28.3.0.tgz", "28.3.0");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("its dockerd --version reports 28.1.0, expected 28.3.0"),
        "{stderr}"
    );
    assert!(
        mac.vm_commands()
            .iter()
            .any(|c| c == "[/opt/containai/docker/.28.3.0.cai-new/dockerd] [--version]"),
        "{:?}",
        mac.vm_commands()
    );
    assert_eq!(
        std::fs::read_link(vm.join("bin/dockerd")).unwrap(),
        Path::new("../docker/28.2.2/dockerd")
    );
    assert!(!vm.join("docker/28.3.0").exists());
    assert!(!vm.join("docker/.28.3.0.cai-new").exists());
    let script = "//! version: 1.0.0\n//! api: 1\nprint(`${dockerd::installed()}`);\n0\n";
    let (code, stdout, stderr) = mac.run(script, &[], &[]);
    assert_eq!((code, stdout.as_str()), (0, "28.2.2\n"), "{stderr}");
    mac.assert_nothing_ran_on_the_mac();
}

/// A rollback on macOS: the set is kept on the Mac (the update state lives there) from what the
/// VM holds; the bundle links switch back inside the VM after the kept version's `dockerd
/// --version` ran there, and pruning removes the replaced version from the VM. Nothing runs on
/// the Mac.
#[test]
fn a_rollback_switches_the_vms_bundle_links_back_and_prunes_there() {
    let mac = Mac::new();
    let cache = mac.trusted_cache();
    for version in ["28.2.2", "28.3.0"] {
        support::dockerd_bundle(
            &cache.join(format!("docker-{version}.tgz")),
            &["dockerd", "containerd"],
            version,
            |_| {},
        );
    }
    let script = r#"//! version: 1.0.0
//! api: 1.10
update::lock();
dockerd::install("/var/cache/containai/docker-28.2.2.tgz", "28.2.2");
let kept = update::keep();
print(`kept ${kept.dockerd}`);
dockerd::install("/var/cache/containai/docker-28.3.0.tgz", "28.3.0");
print(`now ${dockerd::installed()}`);
let a = update::rollback("the test's rollback");
print(`restored ${a.restored} running ${a.dockerd} complete ${a.complete}`);
let p = update::prune();
print(`pruned ${p.bundles}`);
0
"#;
    let (code, stdout, stderr) = mac.run(script, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "kept 28.2.2\nnow 28.3.0\nrestored [\"dockerd 28.2.2\"] running 28.2.2 complete true\npruned [\"28.3.0\"]\n",
        "{stderr}"
    );
    let vm = mac.vm.path().join("opt/containai");
    for name in ["dockerd", "containerd"] {
        assert_eq!(
            std::fs::read_link(vm.join("bin").join(name)).unwrap(),
            Path::new("../docker/28.2.2").join(name)
        );
    }
    assert_eq!(
        std::fs::read_to_string(vm.join("VERSION")).unwrap(),
        "28.2.2\n"
    );
    assert!(!vm.join("docker/28.3.0").exists(), "28.3.0 was not pruned");
    assert!(vm.join("docker/28.2.2/dockerd").exists());
    // The kept version was checked inside the VM before any link moved.
    assert!(
        mac.vm_commands()
            .iter()
            .any(|c| c == "[/opt/containai/docker/28.2.2/dockerd] [--version]"),
        "{:?}",
        mac.vm_commands()
    );
    // The set and the state are the Mac's; the record is gone once nothing is left to start.
    let sets = std::fs::read_dir(mac.host.root().join("var/lib/containai/rollback"))
        .unwrap()
        .count();
    assert_eq!(sets, 1);
    assert!(
        !mac.host
            .root()
            .join("var/lib/containai/update-state.json")
            .exists()
    );
    mac.assert_nothing_ran_on_the_mac();
}
