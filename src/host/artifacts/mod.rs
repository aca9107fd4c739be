//! The artifacts family: the verified cache. Release artifacts (the sysbox `.deb`, the dockerd
//! bundle) are fetched over HTTPS, HTTP (`http.rs`) or from a `file://` URL into [`CACHE_DIR`]
//! under `--root`, and handed back only once their sha256 matched. What an artifact is, its
//! [`Url`] and [`Sha256`], and which checksum may vouch for it are decided before anything is
//! touched, in [`crate::plan::artifact`].
//!
//! Downloads are bounded [P68]: a body larger than `download_max_mb` is refused on its announced
//! length before a byte is read, and on the count of bytes read when none is announced; a body
//! that does not fit in the cache's free space is refused before it is read. The cache directory
//! passes the same trust rules as the files installed from it ([`check_cache`], every directory
//! from `/` down, no symlink), in every mode, so nothing refuses an install after the containers
//! have stopped [P62].
//!
//! A download streams into a temporary file inside the cache directory (through
//! [`super::fs::RootDir`]), hashed as it arrives so memory does not grow with the file, is synced,
//! verified, and only then renamed to its name. Any failure (a mismatch, a truncated body, a
//! timeout, Ctrl-C) removes the temporary file, so the cache only ever holds verified files; a
//! file already there with the expected sha256 is reused without a request. A `file://` URL names
//! a host path and is resolved under `--root` like every other one.
//!
//! This module must never keep or return a file whose sha256 was not verified, and never fetch
//! one without a checksum to verify: [`Checked`] always carries one.

mod http;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use sha2::Digest;

use self::http::{Attempt, Client, read_failed};
pub use self::http::{Timeouts, TransferError};
use super::Host;
use super::fs::{FsError, NewFile, Root, RootDir};
use super::trust::{Trust, TrustError};
use crate::effects::{Approval, FailedMembers};
pub use crate::plan::artifact::CACHE_DIR;
use crate::plan::artifact::{CheckError, Checked, Checksum, Sha256, Url};
use crate::term::{Count, Progress};

/// Fetched files are readable by the tools that install them; only root writes them.
const FILE_MODE: u32 = 0o644;
/// A checksum file is one line; anything longer is not one.
const SIDE_FILE_LIMIT: u64 = 64 * 1024;
/// One read's worth of a download: the only memory a download holds, whatever its size.
const CHUNK: usize = 64 * 1024;
/// A mebibyte, the unit of `download_max_mb`.
const MIB: u64 = 1024 * 1024;

/// A verified artifact in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    /// The host path (under `--root`), as `packages::install_deb` takes it.
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    /// True when the cache already held the verified file and nothing was downloaded.
    pub reused: bool,
}

impl FailedMembers for Fetched {}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(
        "refusing to fetch {url}: {what}, more than download_max_mb = {max_mb} ({} bytes); nothing was kept\nhelp: raise download_max_mb in /etc/containai/config.toml if the file really is that large, or check the URL", .max_mb * MIB
    )]
    TooLarge {
        url: String,
        what: String,
        max_mb: u64,
    },
    #[error(
        "cannot fetch {url}: it is {bytes} bytes and {} has {free} bytes free; nothing was kept\nhelp: free space in {} (or the file system that holds it), then run the command again", .dir.display(), .dir.display()
    )]
    NoSpace {
        url: String,
        bytes: u64,
        dir: PathBuf,
        free: u64,
    },
    #[error(
        "sha256 mismatch for {name}: expected {expected}, got {got}\nhelp: {url} is not the file that sha256 describes and nothing was kept; check {config_key} (or the checksum file) against the release, then run the command again"
    )]
    Mismatch {
        name: String,
        url: String,
        config_key: String,
        expected: Sha256,
        got: Sha256,
    },
    #[error(
        "cannot use the checksum file {url}: {why}\nhelp: it must start with the sha256 as `sha256sum` prints it (`<64 hex digits>  <file>`); or set {config_key} instead"
    )]
    SideFile {
        url: String,
        config_key: String,
        why: String,
    },
    #[error(
        "cannot fetch {url}: {} does not exist\nhelp: check the path; a file:// URL names a host path, resolved under --root", .path.display()
    )]
    NoFile { url: String, path: PathBuf },
    #[error("cannot read {url}: {source}")]
    ReadFile { url: String, source: std::io::Error },
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Untrusted(#[from] TrustError),
}

impl From<FsError> for Attempt<ArtifactError> {
    fn from(e: FsError) -> Self {
        Attempt::Fatal(e.into())
    }
}

impl From<TransferError> for Attempt<ArtifactError> {
    fn from(e: TransferError) -> Self {
        Attempt::Fatal(e.into())
    }
}

/// Checks the cache directory's path with the rules the install applies to files in it (every
/// directory from `/` down owned by root or the invoking user, not writable by others, no
/// symlink), so that a fetch refuses what the install would refuse later [P62]. A cache that
/// does not exist yet is fine when what exists of its path passes. Reads only: runs in every
/// mode.
pub fn check_cache(host: &Host) -> Result<(), ArtifactError> {
    check_cache_path(host.root(), &host.trust).map(|_| ())
}

/// [`check_cache`], with the checked directory when it exists.
fn check_cache_path(root: &Root, trust: &Trust) -> Result<Option<OwnedFd>, ArtifactError> {
    match root.trusted_dir(trust, Path::new(CACHE_DIR)) {
        Ok(dir) => Ok(dir),
        // No chmod fixes a symlink: the help says what does.
        Err(TrustError::Unsafe { path, reason, .. }) if reason.contains("symlink") => {
            let shown = path.display();
            Err(TrustError::Unsafe {
                help: format!(
                    "cai keeps verified downloads only in a real directory; replace the symlink with one: `rm {shown} && mkdir -m 0755 {shown}`"
                ),
                path,
                reason,
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

/// The size of `checked` in the cache when a verified copy is already there: a trusted regular
/// file whose sha256 is the known one. Reads only, so a dry run can tell what a live run would
/// reuse (and check that file as the live run would); `None` when the sha256 is not known
/// without fetching, or the file is absent or different.
pub fn cached(host: &Host, checked: &Checked) -> Result<Option<u64>, ArtifactError> {
    let Some(expected) = checked.known_sha256() else {
        return Ok(None);
    };
    let file = match host.root().open_trusted(&host.trust, &checked.path()) {
        Ok(Some(file)) => file,
        Ok(None) | Err(_) => return Ok(None),
    };
    let shown = host.root().display_path(&checked.path());
    match hash_in_place(&host.interrupted, file, &shown)? {
        Some((sha256, bytes)) => Ok((&sha256 == expected).then_some(bytes)),
        None => Ok(None),
    }
}

/// The sha256 and size of a file already open, or `None` when it could not be read to its end.
fn hash_in_place(
    interrupted: &AtomicBool,
    mut file: std::fs::File,
    shown: &Path,
) -> Result<Option<(Sha256, u64)>, ArtifactError> {
    match stream(interrupted, &mut file, None, None, u64::MAX) {
        Ok(done) => Ok(Some(done)),
        Err(CopyError::Interrupted) => Err(TransferError::Interrupted {
            url: shown.display().to_string(),
        }
        .into()),
        Err(CopyError::Read(source)) => Err(FsError::Io {
            op: "read",
            path: shown.to_path_buf(),
            source,
        }
        .into()),
        // Hashing in place writes nothing, and has no limit.
        Err(CopyError::Write(e)) => Err(e.into()),
        Err(CopyError::TooLong) => Ok(None),
    }
}

/// Fetches a checked artifact into the cache and verifies it, with the default timeouts.
///
/// Touches: `/var/cache/containai/` under `--root` (created 0755; a temporary file there while
/// downloading, then `NAME`, 0644), the network for `https://`/`http://` URLs, and the file a
/// `file://` URL names under `--root`. Bounded by [`Timeouts::default`] per connect and read.
pub fn fetch(approval: Approval, host: &Host, checked: &Checked) -> Result<Fetched, ArtifactError> {
    fetch_with(approval, host, checked, Timeouts::default())
}

/// [`fetch`] with other timeouts (tests use short ones).
pub fn fetch_with(
    _: Approval,
    host: &Host,
    checked: &Checked,
    timeouts: Timeouts,
) -> Result<Fetched, ArtifactError> {
    let fetcher = Fetcher {
        root: host.root(),
        trust: &host.trust,
        interrupted: &host.interrupted,
        max_mb: host.config.download_max_mb,
        http: Client::new(timeouts, &host.interrupted),
    };
    fetcher.fetch(checked)
}

struct Fetcher<'a> {
    root: &'a Root,
    trust: &'a Trust,
    interrupted: &'a AtomicBool,
    /// `download_max_mb`: the largest body kept.
    max_mb: u64,
    http: Client<'a>,
}

/// Why a streamed copy stopped.
enum CopyError {
    Read(std::io::Error),
    Write(FsError),
    Interrupted,
    /// More bytes arrived than the limit allows.
    TooLong,
}

impl Fetcher<'_> {
    fn fetch(&self, checked: &Checked) -> Result<Fetched, ArtifactError> {
        // The path is checked before anything is created on it, and the directory again once it
        // exists: the install opens the file through the same rules, so nothing fetched here is
        // refused there [P62]. Files renamed into a directory others can write could be swapped
        // after verification.
        check_cache_path(self.root, self.trust)?;
        let dir = self.root.create_dir(Path::new(CACHE_DIR))?;
        self.trust.check_dir(dir.fd(), dir.shown())?;
        let checked_dir = check_cache_path(self.root, self.trust)?;
        if !checked_dir.is_some_and(|fd| same_file(&fd, dir.fd())) {
            return Err(self
                .trust
                .unsafe_path(
                    dir.shown(),
                    "the directory was replaced while cai was using it".into(),
                )
                .into());
        }
        let expected = match checked.checksum() {
            Checksum::Known(sha256) => sha256.clone(),
            Checksum::File(url) => self.side_file(url, checked.config_key())?,
        };
        let path = checked.path();
        if let Some(bytes) = self.cached(&dir, checked.name(), &expected)? {
            return Ok(Fetched {
                path,
                sha256: expected.to_string(),
                bytes,
                reused: true,
            });
        }
        let url = checked.url();
        let bytes = match url.file_path() {
            Some(source) => self.copy_file(&dir, checked, source, &expected)?,
            None => self
                .http
                .with_retries(url.as_str(), || self.download(&dir, checked, &expected))?,
        };
        Ok(Fetched {
            path,
            sha256: expected.to_string(),
            bytes,
            reused: false,
        })
    }

    /// The size of `name` in the cache when it is there, trusted and has the expected sha256.
    fn cached(
        &self,
        dir: &RootDir,
        name: &str,
        expected: &Sha256,
    ) -> Result<Option<u64>, ArtifactError> {
        let file = match dir.open_file(name.as_ref()) {
            Ok(Some(file)) => file,
            // A symlink is never read; the download replaces it.
            Ok(None) | Err(FsError::Symlink { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let fd = OwnedFd::from(file);
        // A file someone else could have written is not reused, whatever its checksum says now.
        if self.trust.check_file(&fd, &dir.shown().join(name)).is_err() {
            return Ok(None);
        }
        let shown = dir.shown().join(name);
        match hash_in_place(self.interrupted, std::fs::File::from(fd), &shown)? {
            Some((sha256, bytes)) => Ok((&sha256 == expected).then_some(bytes)),
            None => Ok(None),
        }
    }

    /// The expected sha256 from a checksum file.
    fn side_file(&self, url: &Url, config_key: &str) -> Result<Sha256, ArtifactError> {
        let bytes = match url.file_path() {
            Some(path) => {
                let file = self
                    .root
                    .open_file(path)?
                    .ok_or_else(|| ArtifactError::NoFile {
                        url: url.to_string(),
                        path: self.root.display_path(path),
                    })?;
                let mut bytes = Vec::new();
                file.take(SIDE_FILE_LIMIT)
                    .read_to_end(&mut bytes)
                    .map_err(|source| ArtifactError::ReadFile {
                        url: url.to_string(),
                        source,
                    })?;
                bytes
            }
            None => self.http.read_small(url.as_str(), SIDE_FILE_LIMIT)?,
        };
        Sha256::from_checksum_file(&bytes).map_err(|why| ArtifactError::SideFile {
            url: url.to_string(),
            config_key: config_key.to_string(),
            why,
        })
    }

    /// One HTTP download into a temporary file, verified and renamed into place.
    fn download(
        &self,
        dir: &RootDir,
        checked: &Checked,
        expected: &Sha256,
    ) -> Result<u64, Attempt<ArtifactError>> {
        let url = checked.url().as_str();
        let response = self.http.get(url)?;
        let announced = response.body().content_length();
        if let Some(announced) = announced {
            self.check_size(dir, url, announced, "the server announces")?;
        }
        let mut reader = response.into_body().into_reader();
        let mut file = dir.create(checked.name().as_ref(), FILE_MODE)?;
        let bar = Progress::start(checked.name(), Count::Bytes(announced));
        let limit = self.max_bytes();
        let (got, bytes) = match stream(
            self.interrupted,
            &mut reader,
            Some(&mut file),
            bar.as_ref(),
            limit,
        ) {
            Ok(done) => done,
            Err(CopyError::Read(e)) => return Err(read_failed(url, e)),
            Err(CopyError::Write(e)) => return Err(e.into()),
            Err(CopyError::Interrupted) => {
                return Err(TransferError::Interrupted { url: url.into() }.into());
            }
            Err(CopyError::TooLong) => return Err(self.too_long(url).into()),
        };
        if let Some(announced) = announced.filter(|&n| n != bytes) {
            // ureq checks this too; counting here keeps a short file from ever passing as whole.
            return Err(Attempt::Transient(format!(
                "the connection closed after {bytes} of {announced} bytes"
            )));
        }
        self.finish(file, checked, expected, got)?;
        Ok(bytes)
    }

    /// A `file://` source: one attempt, since a local read that fails will fail again.
    fn copy_file(
        &self,
        dir: &RootDir,
        checked: &Checked,
        path: &Path,
        expected: &Sha256,
    ) -> Result<u64, ArtifactError> {
        let url = checked.url().as_str();
        let mut source = self
            .root
            .open_file(path)?
            .ok_or_else(|| ArtifactError::NoFile {
                url: url.to_string(),
                path: self.root.display_path(path),
            })?;
        let announced = source.metadata().ok().map(|m| m.len());
        if let Some(announced) = announced {
            self.check_size(dir, url, announced, "the file is")?;
        }
        let mut file = dir.create(checked.name().as_ref(), FILE_MODE)?;
        let bar = Progress::start(checked.name(), Count::Bytes(announced));
        let limit = self.max_bytes();
        let (got, bytes) = match stream(
            self.interrupted,
            &mut source,
            Some(&mut file),
            bar.as_ref(),
            limit,
        ) {
            Ok(done) => done,
            Err(CopyError::Read(source)) => {
                return Err(ArtifactError::ReadFile {
                    url: url.to_string(),
                    source,
                });
            }
            Err(CopyError::Write(e)) => return Err(e.into()),
            Err(CopyError::Interrupted) => {
                return Err(TransferError::Interrupted { url: url.into() }.into());
            }
            Err(CopyError::TooLong) => return Err(self.too_long(url)),
        };
        self.finish(file, checked, expected, got)?;
        Ok(bytes)
    }

    fn max_bytes(&self) -> u64 {
        self.max_mb.saturating_mul(MIB)
    }

    /// Refuses a body of `bytes` that is over the ceiling or does not fit in the cache, before
    /// any of it is read [P68].
    fn check_size(
        &self,
        dir: &RootDir,
        url: &str,
        bytes: u64,
        what: &str,
    ) -> Result<(), ArtifactError> {
        if bytes > self.max_bytes() {
            return Err(ArtifactError::TooLarge {
                url: url.to_string(),
                what: format!("{what} {bytes} bytes"),
                max_mb: self.max_mb,
            });
        }
        let stat = rustix::fs::fstatvfs(dir.fd()).map_err(|e| FsError::Io {
            op: "measure the free space of",
            path: dir.shown().to_path_buf(),
            source: e.into(),
        })?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if bytes > free {
            return Err(ArtifactError::NoSpace {
                url: url.to_string(),
                bytes,
                dir: dir.shown().to_path_buf(),
                free,
            });
        }
        Ok(())
    }

    /// A body that went on past the ceiling without announcing its length.
    fn too_long(&self, url: &str) -> ArtifactError {
        ArtifactError::TooLarge {
            url: url.to_string(),
            what: "the body (its length not announced) is longer".to_string(),
            max_mb: self.max_mb,
        }
    }

    /// Keeps the file only when its sha256 is the expected one; otherwise dropping it removes it.
    fn finish(
        &self,
        file: NewFile<'_>,
        checked: &Checked,
        expected: &Sha256,
        got: Sha256,
    ) -> Result<(), ArtifactError> {
        if &got != expected {
            return Err(ArtifactError::Mismatch {
                name: checked.name().to_string(),
                url: checked.url().to_string(),
                config_key: checked.config_key().to_string(),
                expected: expected.clone(),
                got,
            });
        }
        Ok(file.commit()?)
    }
}

/// Streams `reader` into `sink` (when given) while hashing it; returns the sha256 and size. More
/// than `limit` bytes stop the copy, whatever the source announced; Ctrl-C stops it too.
fn stream(
    interrupted: &AtomicBool,
    reader: &mut dyn Read,
    mut sink: Option<&mut NewFile<'_>>,
    bar: Option<&Progress>,
    limit: u64,
) -> Result<(Sha256, u64), CopyError> {
    use std::io::Write;
    let mut hasher = sha2::Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if interrupted.load(Ordering::SeqCst) {
            return Err(CopyError::Interrupted);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        if bytes.saturating_add(n as u64) > limit {
            return Err(CopyError::TooLong);
        }
        hasher.update(&buf[..n]);
        if let Some(file) = sink.as_deref_mut() {
            file.write_all(&buf[..n])
                .map_err(|e| CopyError::Write(file.error(e)))?;
        }
        bytes += n as u64;
        if let Some(bar) = bar {
            bar.add(n as u64);
        }
    }
    Ok((Sha256::from_digest(&hasher.finalize().into()), bytes))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;
    use crate::effects::{Action, GateError, Mode};
    use crate::host::HostOptions;
    use crate::plan::artifact::Artifact;

    const BODY: &[u8] = b"release artifact bytes\n";

    fn sha(bytes: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(bytes))
    }

    fn live_host(root: &Path) -> Host {
        Host::new(HostOptions::for_tests(root, Mode::Live)).unwrap()
    }

    /// Short waits, so failure cases end in well under a second per attempt.
    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_millis(300),
            tries: 3,
            backoff: Duration::from_millis(10),
        }
    }

    fn artifact(url: &str, sha256: Option<&str>) -> Artifact {
        Artifact::for_tests(url, sha256)
    }

    /// Fetches through a live gate, as the binding does.
    fn live(
        host: &Host,
        artifact: &Artifact,
        timeouts: Timeouts,
    ) -> Result<Fetched, ArtifactError> {
        let action = Action::new("artifacts.fetch", artifact.url.clone(), json!({}));
        let checked = artifact.check()?;
        let predict = || unreachable!("a live gate performs");
        match host.gate.apply(action, predict, |ok| {
            fetch_with(ok, host, &checked, timeouts)
        }) {
            Ok(fetched) => Ok(fetched),
            Err(GateError::Action(e)) => Err(e),
            Err(GateError::Journal(e)) => panic!("journal: {e}"),
        }
    }

    /// Names in the cache directory (temporary files included).
    /// Nothing, not even a temporary file, is left in the cache after a failure.
    fn assert_cache_empty(root: &Path) {
        let names = cache_names(root);
        assert!(names.is_empty(), "{names:?}");
    }

    fn cache_names(root: &Path) -> Vec<String> {
        match std::fs::read_dir(root.join("var/cache/containai")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// What the scripted server does with one request.
    #[derive(Clone)]
    enum Reply {
        /// 200 with the body and its length.
        Body(Vec<u8>),
        /// A status with an empty body.
        Status(u16),
        /// Announces `announced` bytes, sends `sent`, closes.
        Short { announced: usize, sent: Vec<u8> },
        /// 200 without a length: the body ends when the connection closes.
        Unsized(Vec<u8>),
        /// Announces `announced` bytes, sends `sent`, then goes quiet for `quiet`.
        Stall {
            announced: usize,
            sent: Vec<u8>,
            quiet: Duration,
        },
    }

    /// A loopback HTTP server that answers the n-th request with the n-th reply (the last one
    /// repeats) and remembers the request lines.
    struct Server {
        port: u16,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl Server {
        fn start(replies: Vec<Reply>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = requests.clone();
            std::thread::spawn(move || {
                for (n, stream) in listener.incoming().enumerate() {
                    let Ok(stream) = stream else { return };
                    let reply = replies[n.min(replies.len() - 1)].clone();
                    let seen = seen.clone();
                    std::thread::spawn(move || serve(stream, &reply, &seen));
                }
            });
            Server { port, requests }
        }

        fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    fn serve(mut stream: TcpStream, reply: &Reply, seen: &Mutex<Vec<String>>) {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        seen.lock().unwrap().push(line);
        let header = |status: &str, length: usize| {
            format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n")
        };
        let _ = match reply {
            Reply::Body(body) => stream
                .write_all(header("200 OK", body.len()).as_bytes())
                .and_then(|()| stream.write_all(body)),
            Reply::Status(code) => {
                let reason = match code {
                    404 => "Not Found",
                    503 => "Service Unavailable",
                    _ => "Other",
                };
                stream.write_all(header(&format!("{code} {reason}"), 0).as_bytes())
            }
            Reply::Short { announced, sent } => stream
                .write_all(header("200 OK", *announced).as_bytes())
                .and_then(|()| stream.write_all(sent)),
            Reply::Unsized(body) => stream
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                .and_then(|()| stream.write_all(body)),
            Reply::Stall {
                announced,
                sent,
                quiet,
            } => {
                let written = stream
                    .write_all(header("200 OK", *announced).as_bytes())
                    .and_then(|()| stream.write_all(sent));
                std::thread::sleep(*quiet);
                written
            }
        };
    }

    #[test]
    fn a_download_is_verified_kept_0644_and_reused_without_a_request() {
        let tree = tempfile::tempdir().unwrap();
        let host = live_host(tree.path());
        let server = Server::start(vec![Reply::Body(BODY.to_vec())]);
        let wanted = artifact(&server.url("/tool.deb"), Some(&sha(BODY)));
        let fetched = live(&host, &wanted, quick()).unwrap();
        assert_eq!(
            fetched,
            Fetched {
                path: PathBuf::from("/var/cache/containai/tool.deb"),
                sha256: sha(BODY),
                bytes: BODY.len() as u64,
                reused: false,
            }
        );
        let real = tree.path().join("var/cache/containai/tool.deb");
        assert_eq!(std::fs::read(&real).unwrap(), BODY);
        assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o7777, 0o644);
        let dir = std::fs::metadata(real.parent().unwrap()).unwrap();
        assert_eq!(dir.mode() & 0o7777, 0o755);
        assert_eq!(cache_names(tree.path()), ["tool.deb"]);

        let again = live(&host, &wanted, quick()).unwrap();
        assert!(again.reused);
        assert_eq!(again.bytes, BODY.len() as u64);
        assert_eq!(server.requests(), ["GET /tool.deb HTTP/1.1"]);

        // A cached file with other bytes is downloaded again and replaced.
        std::fs::write(&real, b"stale").unwrap();
        let replaced = live(&host, &wanted, quick()).unwrap();
        assert!(!replaced.reused);
        assert_eq!(std::fs::read(&real).unwrap(), BODY);
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn a_symlink_in_the_cache_is_replaced_and_its_target_left_alone() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, BODY).unwrap();
        let tree = tempfile::tempdir().unwrap();
        let cache = tree.path().join("var/cache/containai");
        std::fs::create_dir_all(&cache).unwrap();
        std::os::unix::fs::symlink(&victim, cache.join("tool.deb")).unwrap();
        let host = live_host(tree.path());
        let server = Server::start(vec![Reply::Body(BODY.to_vec())]);
        let fetched = live(
            &host,
            &artifact(&server.url("/t"), Some(&sha(BODY))),
            quick(),
        );
        assert!(
            !fetched.unwrap().reused,
            "a symlink must never count as cached"
        );
        let meta = std::fs::symlink_metadata(cache.join("tool.deb")).unwrap();
        assert!(meta.is_file());
        assert_eq!(std::fs::read(&victim).unwrap(), BODY);
    }

    #[test]
    fn a_mismatch_errors_and_leaves_nothing_in_the_cache() {
        let tree = tempfile::tempdir().unwrap();
        let host = live_host(tree.path());
        let server = Server::start(vec![Reply::Body(BODY.to_vec())]);
        let expected = "0".repeat(64);
        let err = live(
            &host,
            &artifact(&server.url("/tool.deb"), Some(&expected)),
            quick(),
        )
        .unwrap_err()
        .to_string();
        let first = format!(
            "sha256 mismatch for tool.deb: expected {expected}, got {}",
            sha(BODY)
        );
        assert!(err.starts_with(&first), "{err}");
        assert!(err.contains("\nhelp: "), "{err}");
        assert_cache_empty(tree.path());
        assert_eq!(server.requests().len(), 1, "a mismatch is not retried");
    }

    #[test]
    fn server_errors_are_retried_and_a_404_is_not() {
        let tree = tempfile::tempdir().unwrap();
        let host = live_host(tree.path());
        let flaky = Server::start(vec![
            Reply::Status(503),
            Reply::Status(503),
            Reply::Body(BODY.to_vec()),
        ]);
        let fetched = live(
            &host,
            &artifact(&flaky.url("/x"), Some(&sha(BODY))),
            quick(),
        );
        assert_eq!(fetched.unwrap().bytes, BODY.len() as u64);
        assert_eq!(flaky.requests().len(), 3);

        // Other checksums from here on, so the verified file in the cache is not reused.
        let other = "1".repeat(64);
        let down = Server::start(vec![Reply::Status(503)]);
        let err = live(&host, &artifact(&down.url("/x"), Some(&other)), quick())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("after 3 attempts: the server answered 503 Service Unavailable"),
            "{err}"
        );
        assert_eq!(down.requests().len(), 3);

        let missing = Server::start(vec![Reply::Status(404)]);
        let url = missing.url("/missing.deb");
        let err = live(&host, &artifact(&url, Some(&other)), quick())
            .unwrap_err()
            .to_string();
        let first = err.lines().next().unwrap();
        assert_eq!(
            first,
            format!("cannot fetch {url}: the server answered 404 Not Found")
        );
        assert!(err.contains("\nhelp: "), "{err}");
        assert_eq!(missing.requests().len(), 1, "a 404 is not retried");
    }

    /// P68: the ceiling holds on the announced length (refused before the body is read, not
    /// retried) and on the bytes counted when no length is announced.
    #[test]
    fn a_body_over_download_max_mb_is_refused_announced_or_not() {
        let tree = tempfile::tempdir().unwrap();
        let mut options = HostOptions::for_tests(tree.path(), Mode::Live);
        options.config.download_max_mb = 1;
        let host = Host::new(options).unwrap();

        let liar = Server::start(vec![Reply::Short {
            announced: 1 << 40,
            sent: BODY.to_vec(),
        }]);
        let url = liar.url("/x");
        let err = live(&host, &artifact(&url, Some(&sha(BODY))), quick())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err.lines().next().unwrap(),
            format!(
                "refusing to fetch {url}: the server announces 1099511627776 bytes, more than download_max_mb = 1 (1048576 bytes); nothing was kept"
            )
        );
        assert!(err.contains("\nhelp: raise download_max_mb"), "{err}");
        assert_eq!(
            liar.requests().len(),
            1,
            "a body over the ceiling is not retried"
        );

        let body = vec![b'x'; (1 << 20) + 1];
        let endless = Server::start(vec![Reply::Unsized(body.clone())]);
        let url = endless.url("/y");
        let err = live(&host, &artifact(&url, Some(&sha(&body))), quick())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "refusing to fetch {url}: the body (its length not announced) is longer, more than download_max_mb = 1"
            )),
            "{err}"
        );
        assert_eq!(endless.requests().len(), 1);
        assert_cache_empty(tree.path());

        // At the ceiling exactly is fine.
        let body = vec![b'x'; 1 << 20];
        let exact = Server::start(vec![Reply::Unsized(body.clone())]);
        let fetched = live(
            &host,
            &artifact(&exact.url("/z"), Some(&sha(&body))),
            quick(),
        );
        assert_eq!(fetched.unwrap().bytes, 1 << 20);
    }

    #[test]
    fn a_truncated_body_is_an_error_and_no_short_file_is_kept() {
        let tree = tempfile::tempdir().unwrap();
        let host = live_host(tree.path());
        let server = Server::start(vec![Reply::Short {
            announced: BODY.len() + 100,
            sent: BODY.to_vec(),
        }]);
        let err = live(
            &host,
            &artifact(&server.url("/x"), Some(&sha(BODY))),
            quick(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("after 3 attempts"), "{err}");
        assert!(err.contains("closed"), "{err}");
        assert_eq!(
            server.requests().len(),
            3,
            "a truncated transfer is retried"
        );
        assert_cache_empty(tree.path());
    }

    #[test]
    fn a_stalled_server_times_out_in_bounded_time() {
        let tree = tempfile::tempdir().unwrap();
        let host = live_host(tree.path());
        let server = Server::start(vec![Reply::Stall {
            announced: BODY.len() * 2,
            sent: BODY.to_vec(),
            quiet: Duration::from_secs(20),
        }]);
        let timeouts = Timeouts {
            tries: 2,
            ..quick()
        };
        let started = Instant::now();
        let err = live(
            &host,
            &artifact(&server.url("/x"), Some(&sha(BODY))),
            timeouts,
        )
        .unwrap_err()
        .to_string();
        let took = started.elapsed();
        assert!(
            err.contains("after 2 attempts: the server stopped sending"),
            "{err}"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert_cache_empty(tree.path());
    }

    #[test]
    fn a_refused_connection_fails_after_the_retries() {
        let tree = tempfile::tempdir().unwrap();
        let host = live_host(tree.path());
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/x");
        let started = Instant::now();
        let err = live(&host, &artifact(&url, Some(&sha(BODY))), quick())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot fetch {url} after 3 attempts: connection refused"
            )),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn file_urls_and_checksum_files_resolve_under_the_root() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("srv/mirror")).unwrap();
        std::fs::write(tree.path().join("srv/mirror/tool.deb"), BODY).unwrap();
        std::fs::write(
            tree.path().join("srv/mirror/tool.deb.sha256"),
            format!("{}  tool.deb\n", sha(BODY)),
        )
        .unwrap();
        let host = live_host(tree.path());
        let wanted = Artifact {
            sha256_url: Some("file:///srv/mirror/tool.deb.sha256".into()),
            ..artifact("file:///srv/mirror/tool.deb", None)
        };
        let fetched = live(&host, &wanted, quick()).unwrap();
        assert_eq!(fetched.sha256, sha(BODY));
        assert_eq!(
            std::fs::read(tree.path().join("var/cache/containai/tool.deb")).unwrap(),
            BODY
        );
        let missing = artifact("file:///srv/none.deb", Some(&"1".repeat(64)));
        let err = live(&host, &missing, quick()).unwrap_err().to_string();
        let shown = tree.path().join("srv/none.deb");
        assert!(
            err.contains(&format!("{} does not exist", shown.display())),
            "{err}"
        );
        std::fs::write(tree.path().join("srv/mirror/tool.deb.sha256"), "oops\n").unwrap();
        std::fs::remove_file(tree.path().join("var/cache/containai/tool.deb")).unwrap();
        let err = live(&host, &wanted, quick()).unwrap_err().to_string();
        assert!(err.contains("first field is not a sha256"), "{err}");
        assert!(err.contains("or set sysbox_sha256 instead"), "{err}");
        assert!(cache_names(tree.path()).is_empty());
    }

    #[test]
    fn a_cache_directory_others_can_write_is_refused() {
        let tree = tempfile::tempdir().unwrap();
        let cache = tree.path().join("var/cache/containai");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let host = live_host(tree.path());
        let server = Server::start(vec![Reply::Body(BODY.to_vec())]);
        let err = live(
            &host,
            &artifact(&server.url("/x"), Some(&sha(BODY))),
            quick(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("group- or world-writable"), "{err}");
        assert!(server.requests().is_empty());
    }

    /// P62: the cache's whole path passes the install's trust rules, checked before anything is
    /// created or requested, also where the cache does not exist yet.
    #[test]
    fn the_cache_path_is_checked_from_slash_before_anything_is_created() {
        let tree = tempfile::tempdir().unwrap();
        let host = live_host(tree.path());
        assert!(
            check_cache(&host).is_ok(),
            "nothing of the cache exists yet"
        );
        let var_cache = tree.path().join("var/cache");
        std::fs::create_dir_all(&var_cache).unwrap();
        std::fs::set_permissions(&var_cache, std::fs::Permissions::from_mode(0o775)).unwrap();
        let server = Server::start(vec![Reply::Body(BODY.to_vec())]);
        let wanted = artifact(&server.url("/x"), Some(&sha(BODY)));
        for err in [
            check_cache(&host).unwrap_err().to_string(),
            live(&host, &wanted, quick()).unwrap_err().to_string(),
        ] {
            assert!(
                err.starts_with(&format!(
                    "refusing {}: the directory is group- or world-writable (mode 775)",
                    var_cache.display()
                )),
                "{err}"
            );
        }
        assert!(!var_cache.join("containai").exists());
        std::fs::set_permissions(&var_cache, std::fs::Permissions::from_mode(0o755)).unwrap();

        std::fs::create_dir_all(tree.path().join("srv")).unwrap();
        std::os::unix::fs::symlink("/srv", var_cache.join("containai")).unwrap();
        let err = live(&host, &wanted, quick()).unwrap_err().to_string();
        assert!(err.contains("containai: it is a symlink"), "{err}");
        assert!(err.contains("help: cai keeps verified downloads only in a real directory"));
        assert!(server.requests().is_empty());
        assert_eq!(
            std::fs::read_dir(tree.path().join("srv")).unwrap().count(),
            0
        );
    }

    #[test]
    fn ctrl_c_stops_a_fetch_and_keeps_nothing() {
        let tree = tempfile::tempdir().unwrap();
        let host = live_host(tree.path());
        let server = Server::start(vec![Reply::Stall {
            announced: BODY.len() * 2,
            sent: BODY.to_vec(),
            quiet: Duration::from_secs(20),
        }]);
        let flag = host.interrupted.clone();
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::SeqCst);
        });
        let timeouts = Timeouts {
            read: Duration::from_secs(1),
            ..quick()
        };
        let err = live(
            &host,
            &artifact(&server.url("/x"), Some(&sha(BODY))),
            timeouts,
        )
        .unwrap_err()
        .to_string();
        setter.join().unwrap();
        assert!(err.contains("interrupted by Ctrl-C"), "{err}");
        assert_eq!(server.requests().len(), 1, "no retry after Ctrl-C");
        assert!(cache_names(tree.path()).is_empty());
    }
}
