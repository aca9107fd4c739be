//! The packages family: installing a `.deb` with `dpkg -i`.
//!
//! A package is run as root by dpkg's maintainer scripts, so it is trusted only the way config and
//! scripts are: [`verify_deb`] opens it under `--root` through [`super::fs::Root::open_trusted`]
//! (owned by root or the invoking user, not group- or world-writable, in directories nobody else
//! can write, a regular file reached without any symlink), copies exactly the bytes read from that
//! checked descriptor into a private directory while hashing them, and [`install_deb`] hands dpkg
//! that copy. The original path is never opened again, so swapping it after the check changes
//! nothing. This module never installs a file it did not copy itself.
//!
//! [`check_deb`] reads what a package says it is (`Package`, `Version`, `Architecture`, from its
//! control member through `dpkg-deb --field`, where dpkg runs) from a descriptor that passed the
//! same trust rules, and compares it with what the update expects, so a wrong package is refused
//! in the fetch-and-verify step, before any container stops [P62].
//!
//! On macOS dpkg runs inside the Lima VM, which cannot see this machine's files: the private copy
//! is copied into the VM ([`super::files::stage`], `limactl copy`) under a name made from its
//! sha256, installed from there and removed afterwards.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};

use super::command::{self, CommandError};
use super::files::{self, FileError};
use super::fs::trusted;
use super::installs;
use super::trust::TrustError;
use super::{AsRoot, Host};
use crate::effects::Approval;
use crate::plan::release::{self, PackageIdentity};

/// dpkg unpacks and runs maintainer scripts, which restart services.
const DPKG_TIMEOUT: Duration = Duration::from_secs(300);
/// `dpkg-deb --field` reads a few kilobytes of control data.
const FIELDS_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a `.deb` is read to reach the end of its control member, which comes second
/// (after `debian-binary`) and holds a few kilobytes of metadata.
const CONTROL_LIMIT: usize = 4 * 1024 * 1024;
/// The `ar` archive signature every `.deb` starts with.
const AR_MAGIC: &[u8; 8] = b"!<arch>\n";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(
        "refusing {0:?}: not an absolute path to a .deb file\nhelp: pass the package's absolute host path, e.g. /var/cache/containai/sysbox.deb"
    )]
    NotDeb(String),
    #[error(
        "cannot install {}: the file does not exist\nhelp: fetch the package first, then install it", .0.display()
    )]
    Missing(PathBuf),
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    #[error("cannot make a private copy of {path}: {source}")]
    Copy {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "refusing {path}: {why}\nhelp: this is not the package the update installs; point the URL override (sysbox_url, or CAI_SYSBOX_URL) at the release's package, or remove it, then run the command again"
    )]
    NotTarget { path: PathBuf, why: String },
    #[error(
        "refusing {path}: {why}\nhelp: the URL does not serve a Debian package; point the URL override (sysbox_url, or CAI_SYSBOX_URL) at the release's package, or remove it"
    )]
    NotAPackage { path: PathBuf, why: String },
    #[error("cannot read the control fields of {path}: dpkg-deb --field {ended}\n{stderr}")]
    Fields {
        path: PathBuf,
        ended: command::Ended,
        stderr: String,
    },
    #[error("dpkg -i {copy} {ended} (installing {original})\n{stderr}")]
    Failed {
        copy: String,
        original: String,
        ended: command::Ended,
        stderr: String,
    },
}

/// A `.deb` that passed the trust rules, copied where only this process can reach it.
#[derive(Debug)]
pub struct VerifiedDeb {
    /// Removed with its contents when the value is dropped.
    _dir: tempfile::TempDir,
    /// The private copy dpkg installs.
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    /// The host path the script named (under `--root`).
    pub original: PathBuf,
    /// The original as a path under the root, for messages.
    pub shown: PathBuf,
}

/// Checks the `.deb` at `absolute` under `--root` and copies it into a private directory.
/// Reads only; runs in every mode so a dry run shows the checksum that would be installed.
pub fn verify_deb(host: &Host, absolute: &Path) -> Result<VerifiedDeb, PackageError> {
    let text = absolute.to_string_lossy();
    let is_deb = absolute.extension().is_some_and(|e| e == "deb");
    if !absolute.has_root() || !is_deb {
        return Err(PackageError::NotDeb(text.into_owned()));
    }
    let root = host.root();
    let shown = root.display_path(absolute);
    let mut source = root
        .open_trusted(&host.trust, absolute)?
        .ok_or_else(|| PackageError::Missing(shown.clone()))?;

    let copy_error = |source| PackageError::Copy {
        path: shown.clone(),
        source,
    };
    let (dir, dir_fd) = private_dir(host).map_err(copy_error)?;
    let name = absolute
        .file_name()
        .map_or_else(|| OsString::from("package.deb"), ToOwned::to_owned);
    let target = rustix::fs::openat(
        &dir_fd,
        &name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| copy_error(e.into()))?;
    let mut target = std::fs::File::from(target);
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = source.read(&mut buf).map_err(copy_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        target.write_all(&buf[..n]).map_err(copy_error)?;
        bytes += n as u64;
    }
    target.sync_all().map_err(copy_error)?;
    Ok(VerifiedDeb {
        path: dir.path().join(&name),
        _dir: dir,
        sha256: hex::encode(hasher.finalize()),
        bytes,
        original: absolute.to_path_buf(),
        shown,
    })
}

/// Checks the `.deb` at `absolute` under `--root` with [`verify_deb`], as the install does (trust
/// rules, a private copy), then that its control file names the `expected` package, architecture
/// and version. Returns what it says, or `None` when the file does not exist. Changes nothing
/// (the private copy is removed again; `dpkg-deb --field` is fed the start of it on stdin, inside
/// the Lima VM on macOS); runs in every mode.
pub fn check_deb(
    host: &Host,
    absolute: &Path,
    expected: &PackageIdentity,
) -> Result<Option<PackageIdentity>, PackageError> {
    // The very checks the install makes (and the private copy it makes them with, whose
    // directory must pass the trust rules too), then the fields, read from that copy.
    let deb = match verify_deb(host, absolute) {
        Ok(deb) => deb,
        Err(PackageError::Missing(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let shown = deb.shown.clone();
    let copy_error = |source| PackageError::Copy {
        path: shown.clone(),
        source,
    };
    let mut file = std::fs::File::open(&deb.path).map_err(copy_error)?;
    let head = control_prefix(&mut file).map_err(|why| PackageError::NotAPackage {
        path: shown.clone(),
        why,
    })?;
    let args: Vec<OsString> = [
        "--field",
        "/dev/stdin",
        "Package",
        "Version",
        "Architecture",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let out = host.run("dpkg-deb", &args, Some(&head), AsRoot::No, FIELDS_TIMEOUT)?;
    if !out.success() {
        return Err(PackageError::Fields {
            path: shown,
            ended: out.ended,
            stderr: command::framed(&out.stderr),
        });
    }
    let field = |name: &str| -> String {
        out.stdout
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(|value| value.trim().to_string())
            .unwrap_or_default()
    };
    let found = PackageIdentity {
        name: field("Package"),
        version: field("Version"),
        architecture: field("Architecture"),
    };
    release::check_package(&found, expected)
        .map_err(|why| PackageError::NotTarget { path: shown, why })?;
    Ok(Some(found))
}

/// The start of a `.deb` up to the end of its control member (`control.tar*`): enough for
/// `dpkg-deb --field`, which reads no further.
fn control_prefix(file: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; AR_MAGIC.len()];
    file.read_exact(&mut out)
        .map_err(|_| "it is shorter than an ar archive's signature".to_string())?;
    if out != AR_MAGIC {
        return Err("it does not start with the ar archive signature of a .deb".into());
    }
    loop {
        let mut header = [0u8; 60];
        file.read_exact(&mut header)
            .map_err(|_| "it ends before its control member".to_string())?;
        if &header[58..] != b"`\n" {
            return Err("it has a malformed ar member header".into());
        }
        let name = String::from_utf8_lossy(&header[..16]);
        let name = name.trim_end().trim_end_matches('/').to_string();
        let size: usize = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| format!("its ar member {name:?} has no valid size"))?;
        // Members start on even offsets.
        let padded = size.saturating_add(size % 2);
        if out.len().saturating_add(60).saturating_add(padded) > CONTROL_LIMIT {
            return Err(format!(
                "its control member does not end within the first {} MiB",
                CONTROL_LIMIT >> 20
            ));
        }
        out.extend_from_slice(&header);
        let start = out.len();
        out.resize(start + padded, 0);
        file.read_exact(&mut out[start..])
            .map_err(|_| format!("it ends inside its ar member {name:?}"))?;
        if name.starts_with("control.tar") {
            return Ok(out);
        }
    }
}

/// A fresh 0700 directory in the temporary directory, whose every ancestor passes the trust
/// rules too, so nobody else can replace the copy between the check and dpkg reading it.
fn private_dir(host: &Host) -> std::io::Result<(tempfile::TempDir, OwnedFd)> {
    let dir = tempfile::Builder::new().prefix("cai-deb-").tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let canonical = std::fs::canonicalize(dir.path())?;
    let checked = trusted::dir(&host.trust, &canonical)
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    Ok((dir, checked))
}

impl VerifiedDeb {
    /// Where the copy goes inside the Lima VM: named by its checksum, so the file dpkg installs
    /// there says which bytes it holds.
    fn vm_path(&self) -> PathBuf {
        // The full hash when it is somehow shorter; it is 64 hex digits by construction.
        let prefix = self.sha256.get(..16).unwrap_or(&self.sha256);
        PathBuf::from(format!("/tmp/cai-{prefix}.deb"))
    }
}

/// Installs the verified copy with `dpkg -i` where the engine runs. Locally, with `--root` other
/// than `/`, dpkg gets `--root=<canonical root>` so it acts on that tree; inside the Lima VM it
/// installs a copy of the private copy, removed again whatever dpkg's outcome.
pub fn install_deb(_: Approval, host: &Host, deb: &VerifiedDeb) -> Result<(), PackageError> {
    // Recorded before dpkg runs: pending until the core's check of `sysbox-runc --version`.
    installs::begin(host, installs::Component::Sysbox);
    let staged = files::stage(host, &deb.path, &deb.vm_path())?;
    let mut args: Vec<OsString> = host.program_root_arg().into_iter().collect();
    args.push("-i".into());
    args.push(staged.path().as_os_str().to_owned());
    let out = host.run("dpkg", &args, None, AsRoot::Yes, DPKG_TIMEOUT)?;
    if out.success() {
        return Ok(());
    }
    // A package whose dependencies are missing is left unpacked but unconfigured; apt-get
    // installs them and finishes the configuration. Which failure it was is not read from
    // dpkg's stderr (never parsed): apt-get is simply asked, and its own failure is reported
    // beside dpkg's. A package that did not install shows up in the version check after it.
    let mut fix: Vec<OsString> = host
        .root()
        .program_arg()
        .filter(|_| matches!(host.machine(), super::command::Machine::Local))
        .map(|_| {
            let mut dir = OsString::from("Dir=");
            dir.push(host.root().as_path());
            vec!["-o".into(), dir]
        })
        .unwrap_or_default();
    fix.extend(["install".into(), "-f".into(), "-y".into()]);
    let apt = match host.run("apt-get", &fix, None, AsRoot::Yes, DPKG_TIMEOUT) {
        Ok(fixed) if fixed.success() => return Ok(()),
        Ok(fixed) => format!(
            "apt-get install -f {} too\n{}",
            fixed.ended,
            command::framed(&fixed.stderr)
        ),
        Err(e) => format!("apt-get install -f could not run either: {e}"),
    };
    Err(PackageError::Failed {
        copy: staged.shown(),
        original: deb.shown.display().to_string(),
        ended: out.ended,
        stderr: format!("{}\n{apt}", command::framed(&out.stderr)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ar member header for `name` of `size` bytes.
    fn member(name: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            100_644,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn the_control_member_is_read_and_nothing_after_it() {
        let mut deb = AR_MAGIC.to_vec();
        deb.extend(member("debian-binary", b"2.0\n"));
        deb.extend(member("control.tar.xz", b"odd"));
        let head = deb.clone();
        deb.extend(member("data.tar.xz", &[0u8; 4096]));
        assert_eq!(control_prefix(&mut deb.as_slice()).unwrap(), head);

        for (bytes, want) in [
            (b"!<ar".to_vec(), "shorter than an ar archive's signature"),
            (
                b"PK\x03\x04 not a deb".to_vec(),
                "does not start with the ar archive",
            ),
            (AR_MAGIC.to_vec(), "ends before its control member"),
            (
                [AR_MAGIC.to_vec(), member("debian-binary", b"2.0\n")].concat(),
                "ends before its control member",
            ),
            (
                [AR_MAGIC.to_vec(), b"x".repeat(60)].concat(),
                "malformed ar member header",
            ),
        ] {
            let err = control_prefix(&mut bytes.as_slice()).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let mut huge = AR_MAGIC.to_vec();
        huge.extend(&member("control.tar.xz", b"")[..48]);
        huge.extend(format!("{:<10}`\n", CONTROL_LIMIT).as_bytes());
        let err = control_prefix(&mut huge.as_slice()).unwrap_err();
        assert!(err.contains("does not end within the first 4 MiB"), "{err}");
    }
}
