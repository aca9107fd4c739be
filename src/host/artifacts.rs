//! The artifacts family: release artifacts (the sysbox `.deb`, the dockerd bundle) fetched over
//! HTTPS, HTTP or from a `file://` URL into [`CACHE_DIR`] under `--root`, and handed back only
//! once their sha256 matched.
//!
//! A checksum never comes over the channel it protects [P67]: a checksum file (`<url>.sha256`) is
//! read only over `https://` or from a `file://` path, so an `http://` artifact needs a pinned
//! sha256, and the refusal names the key that pins it. Downloads are bounded [P68]: a body larger
//! than `download_max_mb` is refused on its announced length before a byte is read, and on the
//! count of bytes read when none is announced; a body that does not fit in the cache's free space
//! is refused before it is read. The cache directory passes the same trust rules as the files
//! installed from it ([`check_cache`], every directory from `/` down, no symlink), in every mode,
//! so nothing refuses an install after the containers have stopped [P62].
//!
//! A download streams into a temporary file inside the cache directory (through
//! [`super::fs::RootDir`]), hashed as it arrives so memory does not grow with the file, is synced,
//! verified, and only then renamed to its name. Any failure (a mismatch, a truncated body, a
//! timeout, Ctrl-C) removes the temporary file, so the cache only ever holds verified files; a
//! file already there with the expected sha256 is reused without a request. Connecting and each
//! read have a timeout, so a dead or stalled server ends in an error, never a hang; transient
//! failures (refused, reset, timed out, truncated, 5xx) are retried with backoff, a 404 or 403 is
//! not. A `file://` URL names a host path and is resolved under `--root` like every other one.
//!
//! This module must never keep or return a file whose sha256 was not verified, and never fetch
//! one without a checksum to verify: an artifact with neither a sha256 nor a checksum file is
//! refused with the config key that supplies one.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Host;
use super::fs::{FsError, NewFile, Root, RootDir};
use super::trust::{Trust, TrustError};
use crate::effects::{Approval, FailedMembers};

/// Where fetched artifacts are kept (under `--root`).
pub const CACHE_DIR: &str = "/var/cache/containai";
/// Fetched files are readable by the tools that install them; only root writes them.
const FILE_MODE: u32 = 0o644;
/// A checksum file is one line; anything longer is not one.
const SIDE_FILE_LIMIT: u64 = 64 * 1024;
/// One read's worth of a download: the only memory a download holds, whatever its size.
const CHUNK: usize = 64 * 1024;
/// A mebibyte, the unit of `download_max_mb`.
const MIB: u64 = 1024 * 1024;
/// How often a backoff sleep looks at the Ctrl-C flag.
const SLEEP_STEP: Duration = Duration::from_millis(50);

/// A release artifact to fetch: where from, what to call it in the cache, and how to verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// File name in the cache: `[A-Za-z0-9._+-]+`, not starting with a dot.
    pub name: String,
    /// `https://`, `http://` or `file://`.
    pub url: String,
    /// The expected sha256 (64 hex digits). Empty counts as absent.
    pub sha256: Option<String>,
    /// A checksum file as `sha256sum` prints it, used when `sha256` is absent.
    pub sha256_url: Option<String>,
    /// The config key that sets the sha256 (`sysbox_sha256`, `dockerd_sha256`), named when
    /// there is none.
    pub config_key: String,
}

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

/// How long to wait and how often to try. Only tests pass other values than the defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Resolving the host and connecting (TLS included).
    pub connect: Duration,
    /// Each read: the headers, and then every chunk of the body. A big file may take long
    /// overall, but a server that stops sending fails after this.
    pub read: Duration,
    /// Attempts for transient failures.
    pub tries: u32,
    /// The wait after the first failed attempt; it doubles after each further one.
    pub backoff: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            read: Duration::from_secs(60),
            tries: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(
        "refusing artifact name {name:?}: {why}\nhelp: use the release asset's file name, e.g. sysbox-ce_0.6.7.linux_amd64.deb"
    )]
    Name { name: String, why: &'static str },
    #[error(
        "refusing config key {key:?} for {name}: it is not a config key name\nhelp: name the key that sets this artifact's sha256, e.g. sysbox_sha256"
    )]
    ConfigKey { name: String, key: String },
    #[error("refusing to fetch {name} from {url:?}: {why}\nhelp: {help}")]
    Url {
        name: String,
        url: String,
        why: String,
        help: &'static str,
    },
    #[error(
        "refusing the sha256 given for {name}: {why}\nhelp: set {config_key} to the first field `sha256sum {name}` prints"
    )]
    BadSha256 {
        name: String,
        config_key: String,
        why: String,
    },
    #[error(
        "refusing to fetch {name} from {url}: there is no sha256 to verify it against\nhelp: {}", pin_help(.config_key, .name)
    )]
    NoChecksum {
        name: String,
        url: String,
        config_key: String,
    },
    #[error("refusing to fetch {name} from {url}: {why}\nhelp: {}", pin_help(.config_key, .name))]
    PlainHttpChecksum {
        name: String,
        url: String,
        config_key: String,
        why: String,
    },
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
    #[error("cannot fetch {url}: the server answered {status}\nhelp: {help}")]
    Status {
        url: String,
        status: String,
        help: &'static str,
    },
    #[error(
        "cannot fetch {url} after {attempts} attempts: {cause}\nhelp: check that this machine reaches the server (a proxy is taken from HTTPS_PROXY or HTTP_PROXY), then run the command again"
    )]
    Transfer {
        url: String,
        attempts: u32,
        cause: String,
    },
    #[error(
        "cannot fetch {url}: {cause}\nhelp: check the URL (for https, also that the server's certificate is valid), then run the command again"
    )]
    Request { url: String, cause: String },
    #[error(
        "sha256 mismatch for {name}: expected {expected}, got {got}\nhelp: {url} is not the file that sha256 describes and nothing was kept; check {config_key} (or the checksum file) against the release, then run the command again"
    )]
    Mismatch {
        name: String,
        url: String,
        config_key: String,
        expected: String,
        got: String,
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
    #[error(
        "fetching {url} was interrupted by Ctrl-C; nothing was kept\nhelp: run the command again to fetch it"
    )]
    Interrupted { url: String },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Untrusted(#[from] TrustError),
}

/// Where bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `https://` or `http://` URL.
    Http(String),
    /// A `file://` URL and the host path it names.
    File { url: String, path: PathBuf },
}

impl Source {
    pub fn url(&self) -> &str {
        match self {
            Source::Http(url) | Source::File { url, .. } => url,
        }
    }
}

/// Where the expected sha256 comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// Given, 64 lowercase hex digits.
    Known(String),
    /// Read from a checksum file before the artifact is fetched.
    From(Source),
}

/// An [`Artifact`] whose every field passed the checks; made without touching anything, so a
/// dry run refuses what a live run would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub name: String,
    pub source: Source,
    pub checksum: Checksum,
    pub config_key: String,
}

impl Artifact {
    pub fn check(&self) -> Result<Checked, ArtifactError> {
        check_name(&self.name)?;
        let key_ok = !self.config_key.is_empty()
            && self
                .config_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !key_ok {
            return Err(ArtifactError::ConfigKey {
                name: self.name.clone(),
                key: self.config_key.clone(),
            });
        }
        let source = self.source(&self.url)?;
        let given = self.sha256.as_deref().map(str::trim).unwrap_or_default();
        let side = self
            .sha256_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty());
        let checksum = if !given.is_empty() {
            let sha256 = parse_sha256(given).map_err(|why| ArtifactError::BadSha256 {
                name: self.name.clone(),
                config_key: self.config_key.clone(),
                why,
            })?;
            Checksum::Known(sha256)
        } else if let Some(url) = side {
            let side = self.source(url)?;
            if let Some(why) = plain_http_checksum(&source, &side) {
                return Err(ArtifactError::PlainHttpChecksum {
                    name: self.name.clone(),
                    url: self.url.clone(),
                    config_key: self.config_key.clone(),
                    why,
                });
            }
            Checksum::From(side)
        } else {
            return Err(ArtifactError::NoChecksum {
                name: self.name.clone(),
                url: self.url.clone(),
                config_key: self.config_key.clone(),
            });
        };
        Ok(Checked {
            name: self.name.clone(),
            source,
            checksum,
            config_key: self.config_key.clone(),
        })
    }

    fn source(&self, url: &str) -> Result<Source, ArtifactError> {
        parse_url(url).map_err(|(why, help)| ArtifactError::Url {
            name: self.name.clone(),
            url: url.to_string(),
            why,
            help,
        })
    }
}

impl Checked {
    /// The host path the artifact is kept at (under `--root`).
    pub fn path(&self) -> PathBuf {
        Path::new(CACHE_DIR).join(&self.name)
    }

    /// The sha256 when it is known without fetching anything.
    pub fn known_sha256(&self) -> Option<&str> {
        match &self.checksum {
            Checksum::Known(sha256) => Some(sha256),
            Checksum::From(_) => None,
        }
    }

    /// The sha256, or where it will be read from, for a plan.
    pub fn checksum_detail(&self) -> String {
        match &self.checksum {
            Checksum::Known(sha256) => sha256.clone(),
            Checksum::From(source) => format!("from {}", source.url()),
        }
    }
}

/// Why a checksum file cannot vouch for `artifact`, or `None` when it can: one read over plain
/// http proves nothing, since whoever can alter the artifact on its way can alter the checksum
/// too [P67]. `https://` and `file://` checksum files are trusted.
fn plain_http_checksum(artifact: &Source, side: &Source) -> Option<String> {
    let plain = |url: &str| {
        url.get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
    };
    let Source::Http(side_url) = side else {
        return None;
    };
    if !plain(side_url) {
        return None;
    }
    Some(if plain(artifact.url()) {
        format!(
            "a download over plain http needs a pinned sha256 (its checksum file {side_url} would come over the same unprotected channel)"
        )
    } else {
        format!(
            "its checksum file {side_url} comes over plain http, which protects nothing; a checksum file is trusted only over https or from a file:// path"
        )
    })
}

/// How to pin a sha256 with `key`: a config key, or an environment variable (upper case, as
/// `CAI_SYSBOX_SHA256`, which goes with `CAI_SYSBOX_URL`).
fn pin_help(key: &str, name: &str) -> String {
    let value = format!("the file's sha256 (the first field `sha256sum {name}` prints)");
    if key.starts_with(|c: char| c.is_ascii_uppercase()) {
        format!("set {key} in cai's environment to {value}, or fetch it over https")
    } else {
        format!("set {key} in /etc/containai/config.toml to {value}, or fetch it over https")
    }
}

fn check_name(name: &str) -> Result<(), ArtifactError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 200 {
        Some("it is longer than 200 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
    {
        Some("only letters, digits and . _ + - are allowed (no /)")
    } else if name.starts_with('.') {
        // Also keeps `.` and `..` out, and the cache's own temporary files.
        Some("it must not start with a dot")
    } else {
        None
    };
    match why {
        Some(why) => Err(ArtifactError::Name {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// A sha256 as 64 lowercase hex digits.
fn parse_sha256(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected 64 hex digits, found {} characters{}",
            text.chars().count(),
            if text.bytes().all(|b| b.is_ascii_hexdigit()) {
                ""
            } else {
                " that are not all hex digits"
            }
        ))
    }
}

/// The sha256 at the start of a checksum file (`<hex>  <file>`, as `sha256sum` prints it).
fn parse_side_file(bytes: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(bytes);
    // sha256sum marks a line whose file name it escaped with a leading backslash.
    let first = text
        .split_whitespace()
        .next()
        .map(|token| token.strip_prefix('\\').unwrap_or(token));
    match first {
        None => Err("it is empty".to_string()),
        Some(token) => {
            parse_sha256(token).map_err(|why| format!("its first field is not a sha256 ({why})"))
        }
    }
}

type UrlProblem = (String, &'static str);

fn parse_url(url: &str) -> Result<Source, UrlProblem> {
    const SCHEMES: &str = "use an https://, http:// or file:// URL";
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err((
            "the URL contains spaces or control characters".into(),
            "percent-encode them (%20)",
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(("it is not a URL".into(), SCHEMES));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "http" => {
            let uri: ureq::http::Uri = url
                .parse()
                .map_err(|e| (format!("it is not a valid URL ({e})"), SCHEMES))?;
            if uri.host().is_none_or(str::is_empty) {
                return Err(("the URL has no host".into(), SCHEMES));
            }
            Ok(Source::Http(url.to_string()))
        }
        "file" => {
            const FILE_HELP: &str = "write a file URL as file:///absolute/path";
            let path = if rest.starts_with('/') {
                rest
            } else if let Some(path) = rest.strip_prefix("localhost") {
                if !path.starts_with('/') {
                    return Err(("a file URL names a path on this machine".into(), FILE_HELP));
                }
                path
            } else {
                return Err(("a file URL names a path on this machine".into(), FILE_HELP));
            };
            if path.contains(['?', '#']) {
                return Err((
                    "a file URL has no query or fragment".into(),
                    "percent-encode ? and # in the path (%3F, %23)",
                ));
            }
            let decoded = percent_decode(path)
                .ok_or_else(|| ("the URL has a bad %-escape".to_string(), FILE_HELP))?;
            Ok(Source::File {
                url: url.to_string(),
                path: decoded,
            })
        }
        _ => Err((format!("the scheme {scheme:?} is not supported"), SCHEMES)),
    }
}

/// `%XX` escapes decoded into the bytes of a path; `None` for a bad escape or a NUL byte.
fn percent_decode(text: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
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
    let mut file = file;
    match stream(&host.interrupted, &mut file, None, None, u64::MAX) {
        Ok((sha256, bytes)) => Ok((sha256 == expected).then_some(bytes)),
        Err(CopyError::Interrupted) => Err(ArtifactError::Interrupted {
            url: host
                .root()
                .display_path(&checked.path())
                .display()
                .to_string(),
        }),
        Err(CopyError::Read(source)) => Err(FsError::Io {
            op: "read",
            path: host.root().display_path(&checked.path()),
            source,
        }
        .into()),
        Err(CopyError::Write(_) | CopyError::TooLong) => Ok(None),
    }
}

/// Fetches `artifact` into the cache and verifies it, with the default timeouts.
///
/// Touches: `/var/cache/containai/` under `--root` (created 0755; a temporary file there while
/// downloading, then `NAME`, 0644), the network for `https://`/`http://` URLs, and the file a
/// `file://` URL names under `--root`. Bounded by [`Timeouts::default`] per connect and read.
pub fn fetch(
    approval: Approval,
    host: &Host,
    artifact: &Artifact,
) -> Result<Fetched, ArtifactError> {
    fetch_with(approval, host, artifact, Timeouts::default())
}

/// [`fetch`] with other timeouts (tests use short ones).
pub fn fetch_with(
    _: Approval,
    host: &Host,
    artifact: &Artifact,
    timeouts: Timeouts,
) -> Result<Fetched, ArtifactError> {
    let checked = artifact.check()?;
    let fetcher = Fetcher {
        root: host.root(),
        trust: &host.trust,
        interrupted: &host.interrupted,
        timeouts,
        max_mb: host.config.download_max_mb,
        agent: agent(timeouts),
        // A bar is cursor movement: only for a person watching a terminal, never in a pipe.
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    fetcher.fetch(&checked)
}

fn agent(timeouts: Timeouts) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_resolve(Some(timeouts.connect))
        .timeout_connect(Some(timeouts.connect))
        .timeout_send_request(Some(timeouts.read))
        .timeout_recv_response(Some(timeouts.read))
        .timeout_per_read(Some(timeouts.read))
        .timeout_per_write(Some(timeouts.read))
        // Statuses are read here, so a 404 is reported as a 404 and a 503 can be retried.
        .http_status_as_error(false)
        .user_agent(format!("cai/{}", env!("CARGO_PKG_VERSION")))
        .build();
    config.into()
}

struct Fetcher<'a> {
    root: &'a Root,
    trust: &'a Trust,
    interrupted: &'a AtomicBool,
    timeouts: Timeouts,
    /// `download_max_mb`: the largest body kept.
    max_mb: u64,
    agent: ureq::Agent,
    progress: bool,
}

/// Why one attempt failed: worth another try, or not.
enum Attempt {
    Transient(String),
    Fatal(ArtifactError),
}

impl From<ArtifactError> for Attempt {
    fn from(e: ArtifactError) -> Self {
        Attempt::Fatal(e)
    }
}

impl From<FsError> for Attempt {
    fn from(e: FsError) -> Self {
        Attempt::Fatal(e.into())
    }
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
        let expected = match &checked.checksum {
            Checksum::Known(sha256) => sha256.clone(),
            Checksum::From(source) => self.side_file(source, &checked.config_key)?,
        };
        let path = checked.path();
        if let Some(bytes) = self.cached(&dir, &checked.name, &expected)? {
            return Ok(Fetched {
                path,
                sha256: expected,
                bytes,
                reused: true,
            });
        }
        let bytes = match &checked.source {
            Source::File { url, path } => self.copy_file(&dir, checked, url, path, &expected)?,
            Source::Http(url) => {
                self.with_retries(url, || self.download(&dir, checked, url, &expected))?
            }
        };
        Ok(Fetched {
            path,
            sha256: expected,
            bytes,
            reused: false,
        })
    }

    /// The size of `name` in the cache when it is there, trusted and has the expected sha256.
    fn cached(
        &self,
        dir: &RootDir,
        name: &str,
        expected: &str,
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
        let mut file = std::fs::File::from(fd);
        match self.copy(&mut file, None, None, u64::MAX) {
            Ok((sha256, bytes)) => Ok((sha256 == expected).then_some(bytes)),
            Err(CopyError::Interrupted) => Err(ArtifactError::Interrupted {
                url: dir.shown().join(name).display().to_string(),
            }),
            Err(CopyError::Read(source)) => Err(FsError::Io {
                op: "read",
                path: dir.shown().join(name),
                source,
            }
            .into()),
            // Hashing in place writes nothing, and has no limit.
            Err(CopyError::Write(e)) => Err(e.into()),
            Err(CopyError::TooLong) => Ok(None),
        }
    }

    /// The expected sha256 from a checksum file.
    fn side_file(&self, source: &Source, config_key: &str) -> Result<String, ArtifactError> {
        let bytes = match source {
            Source::File { url, path } => {
                let file = self
                    .root
                    .open_file(path)?
                    .ok_or_else(|| ArtifactError::NoFile {
                        url: url.clone(),
                        path: self.root.display_path(path),
                    })?;
                let mut bytes = Vec::new();
                file.take(SIDE_FILE_LIMIT)
                    .read_to_end(&mut bytes)
                    .map_err(|source| ArtifactError::ReadFile {
                        url: url.clone(),
                        source,
                    })?;
                bytes
            }
            Source::Http(url) => self.with_retries(url, || {
                let response = self.get(url)?;
                let mut body = response.into_body();
                body.with_config()
                    .limit(SIDE_FILE_LIMIT)
                    .read_to_vec()
                    .map_err(|e| classify(url, e))
            })?,
        };
        parse_side_file(&bytes).map_err(|why| ArtifactError::SideFile {
            url: source.url().to_string(),
            config_key: config_key.to_string(),
            why,
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or has been tried `tries` times, with a
    /// doubling wait in between that Ctrl-C cuts short.
    fn with_retries<T>(
        &self,
        url: &str,
        mut attempt: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, ArtifactError> {
        let tries = self.timeouts.tries.max(1);
        let mut wait = self.timeouts.backoff;
        let mut cause = String::new();
        for n in 1..=tries {
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(ArtifactError::Interrupted { url: url.into() });
            }
            match attempt() {
                Ok(value) => return Ok(value),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(why)) => cause = why,
            }
            if n < tries {
                self.sleep(wait, url)?;
                wait = wait.saturating_mul(2);
            }
        }
        Err(ArtifactError::Transfer {
            url: url.into(),
            attempts: tries,
            cause,
        })
    }

    fn sleep(&self, total: Duration, url: &str) -> Result<(), ArtifactError> {
        let deadline = std::time::Instant::now() + total;
        loop {
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(ArtifactError::Interrupted { url: url.into() });
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(SLEEP_STEP));
        }
    }

    /// A response with a success status; other statuses are errors, 5xx and 408/429 transient.
    fn get(&self, url: &str) -> Result<ureq::http::Response<ureq::Body>, Attempt> {
        let response = self.agent.get(url).call().map_err(|e| classify(url, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let shown = match status.canonical_reason() {
            Some(reason) => format!("{} {reason}", status.as_u16()),
            None => status.as_u16().to_string(),
        };
        let transient = status.is_server_error()
            || status == ureq::http::StatusCode::REQUEST_TIMEOUT
            || status == ureq::http::StatusCode::TOO_MANY_REQUESTS;
        if transient {
            return Err(Attempt::Transient(format!("the server answered {shown}")));
        }
        let help = match status.as_u16() {
            404 | 410 => {
                "check the version and architecture in the URL: the release does not publish this file"
            }
            401 | 403 => {
                "the server refuses access; check the URL and any proxy in between, then run the command again"
            }
            _ => "check the URL, then run the command again",
        };
        Err(Attempt::Fatal(ArtifactError::Status {
            url: url.to_string(),
            status: shown,
            help,
        }))
    }

    /// One HTTP download into a temporary file, verified and renamed into place.
    fn download(
        &self,
        dir: &RootDir,
        checked: &Checked,
        url: &str,
        expected: &str,
    ) -> Result<u64, Attempt> {
        let response = self.get(url)?;
        let announced = response.body().content_length();
        if let Some(announced) = announced {
            self.check_size(dir, url, announced, "the server announces")?;
        }
        let mut reader = response.into_body().into_reader();
        let mut file = dir.create(checked.name.as_ref(), FILE_MODE)?;
        let bar = self.bar(&checked.name, announced);
        let limit = self.max_bytes();
        let (got, bytes) = match self.copy(&mut reader, Some(&mut file), bar.as_ref(), limit) {
            Ok(done) => done,
            Err(CopyError::Read(e)) => return Err(classify_read(url, e)),
            Err(CopyError::Write(e)) => return Err(e.into()),
            Err(CopyError::Interrupted) => {
                return Err(ArtifactError::Interrupted { url: url.into() }.into());
            }
            Err(CopyError::TooLong) => return Err(self.too_long(url).into()),
        };
        if let Some(announced) = announced.filter(|&n| n != bytes) {
            // ureq checks this too; counting here keeps a short file from ever passing as whole.
            return Err(Attempt::Transient(format!(
                "the connection closed after {bytes} of {announced} bytes"
            )));
        }
        self.finish(file, checked, url, expected, &got)?;
        Ok(bytes)
    }

    /// A `file://` source: one attempt, since a local read that fails will fail again.
    fn copy_file(
        &self,
        dir: &RootDir,
        checked: &Checked,
        url: &str,
        path: &Path,
        expected: &str,
    ) -> Result<u64, ArtifactError> {
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
        let mut file = dir.create(checked.name.as_ref(), FILE_MODE)?;
        let bar = self.bar(&checked.name, announced);
        let limit = self.max_bytes();
        let (got, bytes) = match self.copy(&mut source, Some(&mut file), bar.as_ref(), limit) {
            Ok(done) => done,
            Err(CopyError::Read(source)) => {
                return Err(ArtifactError::ReadFile {
                    url: url.to_string(),
                    source,
                });
            }
            Err(CopyError::Write(e)) => return Err(e.into()),
            Err(CopyError::Interrupted) => {
                return Err(ArtifactError::Interrupted { url: url.into() });
            }
            Err(CopyError::TooLong) => return Err(self.too_long(url)),
        };
        self.finish(file, checked, url, expected, &got)?;
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
        url: &str,
        expected: &str,
        got: &str,
    ) -> Result<(), ArtifactError> {
        if got != expected {
            return Err(ArtifactError::Mismatch {
                name: checked.name.clone(),
                url: url.to_string(),
                config_key: checked.config_key.clone(),
                expected: expected.to_string(),
                got: got.to_string(),
            });
        }
        Ok(file.commit()?)
    }

    /// [`stream`] under this fetch's Ctrl-C flag.
    fn copy(
        &self,
        reader: &mut dyn Read,
        sink: Option<&mut NewFile<'_>>,
        bar: Option<&Bar>,
        limit: u64,
    ) -> Result<(String, u64), CopyError> {
        stream(self.interrupted, reader, sink, bar, limit)
    }

    fn bar(&self, name: &str, length: Option<u64>) -> Option<Bar> {
        if !self.progress {
            return None;
        }
        let (bar, template) = match length {
            Some(length) => (
                indicatif::ProgressBar::with_draw_target(
                    Some(length),
                    crate::term::progress_target(),
                ),
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ),
            None => (
                indicatif::ProgressBar::with_draw_target(None, crate::term::progress_target()),
                "{msg} {spinner} {bytes} {bytes_per_sec}",
            ),
        };
        // The templates are constants; the default style is a fine fallback all the same.
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message(name.to_string());
        Some(Bar(bar))
    }
}

/// Streams `reader` into `sink` (when given) while hashing it; returns the sha256 and size. More
/// than `limit` bytes stop the copy, whatever the source announced; Ctrl-C stops it too.
fn stream(
    interrupted: &AtomicBool,
    reader: &mut dyn Read,
    mut sink: Option<&mut NewFile<'_>>,
    bar: Option<&Bar>,
    limit: u64,
) -> Result<(String, u64), CopyError> {
    use std::io::Write;
    let mut hasher = Sha256::new();
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
            bar.0.inc(n as u64);
        }
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// A progress bar that is cleared from the terminal however the download ends.
struct Bar(indicatif::ProgressBar);

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Sorts a failed request: connection and timeout trouble is worth another try; a bad URL, a
/// TLS failure or a redirect loop is not.
fn classify(url: &str, e: ureq::Error) -> Attempt {
    match e {
        ureq::Error::Io(e) => classify_io(&e),
        ureq::Error::Timeout(which) => Attempt::Transient(match which {
            ureq::Timeout::Resolve | ureq::Timeout::Connect => {
                "could not connect before the connect timeout".to_string()
            }
            _ => "the server stopped sending (read timeout)".to_string(),
        }),
        ureq::Error::HostNotFound => Attempt::Transient("cannot resolve the host name".into()),
        ureq::Error::ConnectionFailed => Attempt::Transient("cannot connect".into()),
        ureq::Error::BodyStalled => Attempt::Transient("the body stopped arriving".into()),
        ureq::Error::BodyExceedsLimit(limit) => Attempt::Fatal(ArtifactError::Request {
            url: url.to_string(),
            cause: format!("the answer is longer than {limit} bytes"),
        }),
        other => Attempt::Fatal(ArtifactError::Request {
            url: url.to_string(),
            cause: other.to_string(),
        }),
    }
}

/// A failed read of the body: ureq wraps its own errors (timeouts) in `io::Error`.
fn classify_read(url: &str, e: std::io::Error) -> Attempt {
    classify(url, ureq::Error::from(e))
}

fn classify_io(e: &std::io::Error) -> Attempt {
    use std::io::ErrorKind;
    Attempt::Transient(match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            "the connection was reset".to_string()
        }
        ErrorKind::UnexpectedEof => "the connection closed before the whole file arrived".into(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timed out".to_string(),
        _ => e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::effects::{Action, GateError, Mode};
    use crate::host::HostOptions;

    const BODY: &[u8] = b"release artifact bytes\n";

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
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
        Artifact {
            name: "tool.deb".into(),
            url: url.into(),
            sha256: sha256.map(str::to_string),
            sha256_url: None,
            config_key: "sysbox_sha256".into(),
        }
    }

    /// Fetches through a live gate, as the binding does.
    fn live(
        host: &Host,
        artifact: &Artifact,
        timeouts: Timeouts,
    ) -> Result<Fetched, ArtifactError> {
        let action = Action::new("artifacts.fetch", artifact.url.clone(), json!({}));
        let predict = || unreachable!("a live gate performs");
        match host.gate.apply(action, predict, |ok| {
            fetch_with(ok, host, artifact, timeouts)
        }) {
            Ok(fetched) => Ok(fetched),
            Err(GateError::Action(e)) => Err(e),
            Err(GateError::Journal(e)) => panic!("journal: {e}"),
        }
    }

    /// Names in the cache directory (temporary files included).
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
    fn artifacts_are_checked_before_anything_is_touched() {
        let good = artifact("https://example.com/x.deb", Some(&"A".repeat(64)));
        let checked = good.check().unwrap();
        assert_eq!(checked.known_sha256(), Some("a".repeat(64).as_str()));
        assert_eq!(checked.path(), Path::new("/var/cache/containai/tool.deb"));
        for name in ["../x", "a/b", ".hidden", "..", ".", "", "x y", "x\n"] {
            let bad = Artifact {
                name: name.into(),
                ..good.clone()
            };
            let err = bad.check().unwrap_err().to_string();
            assert!(err.starts_with("refusing artifact name"), "{name:?}: {err}");
            assert!(err.contains("\nhelp: "), "{err}");
        }
        for name in [
            "sysbox-ce_0.6.7+containai.20260127.linux_amd64.deb",
            "docker-27.1.tgz",
        ] {
            let ok = Artifact {
                name: name.into(),
                ..good.clone()
            };
            assert!(ok.check().is_ok(), "{name}");
        }
        for (url, want) in [
            ("ftp://example.com/x", "the scheme \"ftp\" is not supported"),
            ("example.com/x", "it is not a URL"),
            ("https:///x", "not a valid URL"),
            ("file://server/x", "names a path on this machine"),
            ("file:///a b", "spaces or control characters"),
            ("file:///a%zz", "bad %-escape"),
            ("file:///a%00b", "bad %-escape"),
        ] {
            let err = artifact(url, Some(&"a".repeat(64)))
                .check()
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(err.contains("\nhelp: "), "{url}: {err}");
        }
        let file = artifact("file://localhost/srv/a%20b+c.deb", Some(&"a".repeat(64)));
        assert_eq!(
            file.check().unwrap().source,
            Source::File {
                url: "file://localhost/srv/a%20b+c.deb".into(),
                path: PathBuf::from("/srv/a b+c.deb"),
            }
        );
        for sha256 in ["abc", &"g".repeat(64), &"a".repeat(65)] {
            let err = artifact("https://e.com/x", Some(sha256))
                .check()
                .unwrap_err()
                .to_string();
            assert!(err.contains("expected 64 hex digits"), "{err}");
            assert!(err.contains("help: set sysbox_sha256"), "{err}");
        }
        // An empty sha256 (a manifest not filled in yet) counts as absent.
        let side = Artifact {
            sha256: Some(String::new()),
            sha256_url: Some("https://e.com/x.sha256".into()),
            ..artifact("https://e.com/x", None)
        };
        assert_eq!(
            side.check().unwrap().checksum_detail(),
            "from https://e.com/x.sha256"
        );
        let neither = Artifact {
            sha256: Some("  ".into()),
            config_key: "dockerd_sha256".into(),
            ..artifact("https://e.com/x", None)
        };
        let err = neither.check().unwrap_err().to_string();
        assert!(err.contains("no sha256 to verify it against"), "{err}");
        assert!(err.contains("help: set dockerd_sha256 in"), "{err}");
        let bad_key = Artifact {
            config_key: "a key".into(),
            ..good
        };
        assert!(matches!(
            bad_key.check(),
            Err(ArtifactError::ConfigKey { .. })
        ));
    }

    #[test]
    fn checksum_files_are_read_as_sha256sum_prints_them() {
        let hex = "ab".repeat(32);
        let cases: [(&str, Result<&str, &str>); 6] = [
            (&format!("{hex}  sysbox.deb\n"), Ok(&hex)),
            (&format!("{}  sysbox.deb\n", hex.to_uppercase()), Ok(&hex)),
            (&format!("\\{hex}  we\\nird\n"), Ok(&hex)),
            (&format!("{hex}\n{}  other\n", "cd".repeat(32)), Ok(&hex)),
            ("<html>not found</html>", Err("first field is not a sha256")),
            ("\n", Err("it is empty")),
        ];
        for (text, want) in cases {
            let got = parse_side_file(text.as_bytes());
            match want {
                Ok(hex) => assert_eq!(got.as_deref(), Ok(hex), "{text:?}"),
                Err(why) => assert!(got.unwrap_err().contains(why), "{text:?}"),
            }
        }
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
        assert!(
            cache_names(tree.path()).is_empty(),
            "{:?}",
            cache_names(tree.path())
        );
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
        assert!(
            cache_names(tree.path()).is_empty(),
            "{:?}",
            cache_names(tree.path())
        );

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

    /// P67: a checksum file is read only over https or from a file; which key pins the sha256
    /// instead is named in the way it is set.
    #[test]
    fn a_checksum_file_over_plain_http_is_refused_and_the_pin_named() {
        let side = |url: &str, side: &str, key: &str| Artifact {
            sha256_url: Some(side.into()),
            config_key: key.into(),
            ..artifact(url, None)
        };
        for (artifact, want) in [
            (
                side("http://m/x.deb", "http://m/x.deb.sha256", "sysbox_sha256"),
                "a download over plain http needs a pinned sha256 (its checksum file http://m/x.deb.sha256 would come over the same unprotected channel)\nhelp: set sysbox_sha256 in /etc/containai/config.toml to",
            ),
            (
                side(
                    "HTTP://m/x.deb",
                    "Http://m/x.deb.sha256",
                    "CAI_SYSBOX_SHA256",
                ),
                "needs a pinned sha256 (its checksum file Http://m/x.deb.sha256 would come over the same unprotected channel)\nhelp: set CAI_SYSBOX_SHA256 in cai's environment to",
            ),
            (
                side("https://m/x.deb", "http://m/x.deb.sha256", "dockerd_sha256"),
                "its checksum file http://m/x.deb.sha256 comes over plain http, which protects nothing",
            ),
        ] {
            let err = artifact.check().unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        for ok in [
            side("https://m/x.deb", "https://m/x.deb.sha256", "sysbox_sha256"),
            side(
                "http://m/x.deb",
                "file:///srv/x.deb.sha256",
                "sysbox_sha256",
            ),
            side(
                "file:///srv/x.deb",
                "file:///srv/x.deb.sha256",
                "sysbox_sha256",
            ),
            artifact("http://m/x.deb", Some(&"a".repeat(64))),
        ] {
            assert!(ok.check().is_ok(), "{ok:?}");
        }
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
        assert!(
            cache_names(tree.path()).is_empty(),
            "{:?}",
            cache_names(tree.path())
        );
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
        assert!(
            cache_names(tree.path()).is_empty(),
            "{:?}",
            cache_names(tree.path())
        );
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
