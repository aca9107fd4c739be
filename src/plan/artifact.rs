//! What a release artifact is before anything is fetched: the one [`Url`] and the one [`Sha256`]
//! that config, `CAI_SYSBOX_*`, the bundled manifest and `artifacts::fetch` all parse with, and the
//! checks on an [`Artifact`] a script hands over (file name, URL, where its sha256 comes from).
//!
//! Pure: text in, typed values or a refusal out. A URL that config loading accepts is one the
//! fetch can use, so a bad `sysbox_url` is refused at load naming its key, not at a script line.
//! A checksum never comes over the channel it protects [P67]: a checksum file is trusted only
//! over `https://` or from a `file://` path, so an `http://` artifact needs a pinned sha256.
//! Nothing here reads the network or the file system; `host::artifacts` does, with these types.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

/// Where fetched artifacts are kept (a host path, under `--root`).
pub const CACHE_DIR: &str = "/var/cache/containai";

const SCHEMES_HELP: &str =
    "use an https:// or file:// URL (http:// only with a pinned sha256), e.g. https://HOST/PATH";
const FILE_HELP: &str = "write a file URL as file:///absolute/path";

/// A download URL: `https://`, `http://` or `file://` (a path on this machine, resolved under
/// `--root` when fetched). The scheme is matched without regard to case, as RFC 3986 says; the
/// text is kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    text: String,
    /// The decoded path of a `file://` URL; `None` for `https://` and `http://`.
    file: Option<PathBuf>,
    plain_http: bool,
}

/// Why a text is not a [`Url`]; shown as `"TEXT" WHY`, with `help` for the next step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} {why}")]
pub struct UrlError {
    pub text: String,
    pub why: String,
    pub help: &'static str,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let refuse = |why: String, help: &'static str| UrlError {
            text: text.to_string(),
            why,
            help,
        };
        // The URL travels as one argument and into messages: whitespace is a typo, controls worse.
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(refuse(
                "contains whitespace or control characters".into(),
                "percent-encode them (a space is %20)",
            ));
        }
        let not_supported = || {
            refuse(
                "is not an https://, http:// or file:// URL".into(),
                SCHEMES_HELP,
            )
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(not_supported());
        };
        match scheme.to_ascii_lowercase().as_str() {
            scheme @ ("https" | "http") => {
                let uri: ureq::http::Uri = text
                    .parse()
                    .map_err(|e| refuse(format!("is not a valid URL ({e})"), SCHEMES_HELP))?;
                if uri.host().is_none_or(str::is_empty) {
                    return Err(refuse("has no host".into(), SCHEMES_HELP));
                }
                // The parser takes any digits as a port and drops them when they do not fit;
                // connecting would then go elsewhere or fail late.
                if !port_ok(uri.authority().map_or("", |a| a.as_str())) {
                    return Err(refuse("has a port outside 1..=65535".into(), SCHEMES_HELP));
                }
                Ok(Url {
                    text: text.to_string(),
                    file: None,
                    plain_http: scheme == "http",
                })
            }
            "file" => {
                let path = match rest.strip_prefix("localhost") {
                    _ if rest.starts_with('/') => rest,
                    Some(path) if path.starts_with('/') => path,
                    _ => {
                        return Err(refuse(
                            "does not name a path on this machine (file:///path)".into(),
                            FILE_HELP,
                        ));
                    }
                };
                if path.contains(['?', '#']) {
                    return Err(refuse(
                        "has a query or fragment, which a file URL cannot have".into(),
                        "percent-encode ? and # in the path (%3F, %23)",
                    ));
                }
                let Some(decoded) = percent_decode(path) else {
                    return Err(refuse(
                        "has a bad %-escape (or an escaped NUL byte)".into(),
                        "write an escaped byte as % and two hex digits, e.g. %20",
                    ));
                };
                Ok(Url {
                    text: text.to_string(),
                    file: Some(decoded),
                    plain_http: false,
                })
            }
            _ => Err(not_supported()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host path a `file://` URL names (to be resolved under `--root`).
    pub fn file_path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// An `http://` URL: nothing protects what comes over it.
    pub fn is_plain_http(&self) -> bool {
        self.plain_http
    }

    /// Where a release publishes this artifact's checksum, as `sha256sum` prints it: the URL
    /// with `.sha256` appended (to the path of a `file://` URL, which has no query).
    pub fn checksum_file(&self) -> Url {
        let file = self.file.as_ref().map(|path| {
            let mut bytes = path.clone().into_os_string().into_vec();
            bytes.extend_from_slice(b".sha256");
            PathBuf::from(OsString::from_vec(bytes))
        });
        Url {
            text: format!("{}.sha256", self.text),
            file,
            plain_http: self.plain_http,
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Url {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// Whether the port in `authority` (`[user@]host[:port]`), if any, is one a connection can use.
fn port_ok(authority: &str) -> bool {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    // An IPv6 literal holds colons of its own.
    let after_host = match host_port.rsplit_once(']') {
        Some((_, rest)) => rest,
        None => host_port,
    };
    match after_host.rsplit_once(':') {
        None | Some((_, "")) => true,
        Some((_, port)) => port.parse::<u16>().is_ok_and(|port| port > 0),
    }
}

/// `%XX` escapes decoded into the bytes of a path; `None` for a bad escape or a NUL byte.
fn percent_decode(text: &str) -> Option<PathBuf> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
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
    Some(PathBuf::from(OsString::from_vec(out)))
}

/// A sha256 digest: 64 hexadecimal digits, kept in lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Sha256(String);

/// Why a text is not a [`Sha256`]; `problem` says it without repeating the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a sha256 (64 hexadecimal digits): {problem}")]
pub struct Sha256Error {
    pub text: String,
    pub problem: String,
}

impl Sha256 {
    pub fn parse(text: &str) -> Result<Sha256, Sha256Error> {
        let hex = text.bytes().all(|b| b.is_ascii_hexdigit());
        if text.len() == 64 && hex {
            return Ok(Sha256(text.to_ascii_lowercase()));
        }
        Err(Sha256Error {
            text: text.to_string(),
            problem: format!(
                "it has {} characters{}",
                text.chars().count(),
                if hex {
                    ""
                } else {
                    ", not all of them hex digits"
                }
            ),
        })
    }

    /// A digest as a hash function returns it.
    pub fn from_digest(digest: &[u8; 32]) -> Sha256 {
        Sha256(hex::encode(digest))
    }

    /// The sha256 at the start of a checksum file (`<hex>  <file>`, as `sha256sum` prints it).
    pub fn from_checksum_file(bytes: &[u8]) -> Result<Sha256, String> {
        let text = String::from_utf8_lossy(bytes);
        // sha256sum marks a line whose file name it escaped with a leading backslash.
        let first = text
            .split_whitespace()
            .next()
            .map(|token| token.strip_prefix('\\').unwrap_or(token));
        match first {
            None => Err("it is empty".to_string()),
            // The problem only: the field may be a whole HTML page.
            Some(token) => Sha256::parse(token)
                .map_err(|e| format!("its first field is not a sha256 ({})", e.problem)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A release artifact as a script describes it: where from, what to call it in the cache, and
/// how to verify it. Text until [`Artifact::check`] types it.
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

/// Where the expected sha256 comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// Given.
    Known(Sha256),
    /// Read from a checksum file (never over plain http) before the artifact is fetched.
    File(Url),
}

/// An [`Artifact`] whose every field passed the checks; made without touching anything, so a
/// dry run refuses what a live run would refuse. Only [`Artifact::check`] makes one, so holding
/// one means the rules held: a checksum to verify against, never a checksum file over plain http.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    name: String,
    url: Url,
    checksum: Checksum,
    config_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error(
        "refusing artifact name {name:?}: {why}\nhelp: use the release asset's file name, e.g. sysbox-ce_0.6.7.linux_amd64.deb"
    )]
    Name { name: String, why: &'static str },
    #[error(
        "refusing config key {key:?} for {name}: it is not a config key name\nhelp: name the key that sets this artifact's sha256, e.g. sysbox_sha256"
    )]
    ConfigKey { name: String, key: String },
    #[error("refusing to fetch {name}: {error}\nhelp: {}", .error.help)]
    Url { name: String, error: UrlError },
    #[error(
        "refusing the sha256 given for {name}: {error}\nhelp: set {config_key} to the first field `sha256sum {name}` prints"
    )]
    BadSha256 {
        name: String,
        config_key: String,
        error: Sha256Error,
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
}

impl Artifact {
    pub fn check(&self) -> Result<Checked, CheckError> {
        check_name(&self.name)?;
        let key_ok = !self.config_key.is_empty()
            && self
                .config_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !key_ok {
            return Err(CheckError::ConfigKey {
                name: self.name.clone(),
                key: self.config_key.clone(),
            });
        }
        let url = self.url(&self.url)?;
        let given = self.sha256.as_deref().map(str::trim).unwrap_or_default();
        let side = self
            .sha256_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty());
        let checksum = if !given.is_empty() {
            let sha256 = Sha256::parse(given).map_err(|error| CheckError::BadSha256 {
                name: self.name.clone(),
                config_key: self.config_key.clone(),
                error,
            })?;
            Checksum::Known(sha256)
        } else if let Some(side) = side {
            let side = self.url(side)?;
            if let Some(why) = plain_http_checksum(&url, &side) {
                return Err(CheckError::PlainHttpChecksum {
                    name: self.name.clone(),
                    url: self.url.clone(),
                    config_key: self.config_key.clone(),
                    why,
                });
            }
            Checksum::File(side)
        } else {
            return Err(CheckError::NoChecksum {
                name: self.name.clone(),
                url: self.url.clone(),
                config_key: self.config_key.clone(),
            });
        };
        Ok(Checked {
            name: self.name.clone(),
            url,
            checksum,
            config_key: self.config_key.clone(),
        })
    }

    fn url(&self, text: &str) -> Result<Url, CheckError> {
        Url::parse(text).map_err(|error| CheckError::Url {
            name: self.name.clone(),
            error,
        })
    }
}

impl Checked {
    /// The file name in the cache.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn checksum(&self) -> &Checksum {
        &self.checksum
    }

    /// Where an operator pins the sha256, named when it does not match.
    pub fn config_key(&self) -> &str {
        &self.config_key
    }

    /// The host path the artifact is kept at (under `--root`).
    pub fn path(&self) -> PathBuf {
        Path::new(CACHE_DIR).join(&self.name)
    }

    /// The sha256 when it is known without fetching anything.
    pub fn known_sha256(&self) -> Option<&Sha256> {
        match &self.checksum {
            Checksum::Known(sha256) => Some(sha256),
            Checksum::File(_) => None,
        }
    }

    /// The sha256, or where it will be read from, for a plan.
    pub fn checksum_detail(&self) -> String {
        match &self.checksum {
            Checksum::Known(sha256) => sha256.to_string(),
            Checksum::File(url) => format!("from {url}"),
        }
    }
}

/// Why a checksum file cannot vouch for `artifact`, or `None` when it can: one read over plain
/// http proves nothing, since whoever can alter the artifact on its way can alter the checksum
/// too [P67]. `https://` and `file://` checksum files are trusted.
fn plain_http_checksum(artifact: &Url, side: &Url) -> Option<String> {
    if !side.is_plain_http() {
        return None;
    }
    Some(if artifact.is_plain_http() {
        format!(
            "a download over plain http needs a pinned sha256 (its checksum file {side} would come over the same unprotected channel)"
        )
    } else {
        format!(
            "its checksum file {side} comes over plain http, which protects nothing; a checksum file is trusted only over https or from a file:// path"
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

fn check_name(name: &str) -> Result<(), CheckError> {
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
        Some(why) => Err(CheckError::Name {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
impl Artifact {
    /// `tool.deb` from `url`, with `sha256` pinned (or not), as the config key `sysbox_sha256`.
    pub(crate) fn for_tests(url: &str, sha256: Option<&str>) -> Self {
        Artifact {
            name: "tool.deb".into(),
            url: url.into(),
            sha256: sha256.map(str::to_string),
            sha256_url: None,
            config_key: "sysbox_sha256".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn artifact(url: &str, sha256: Option<&str>) -> Artifact {
        Artifact::for_tests(url, sha256)
    }

    #[test]
    fn urls_table() {
        // (text, Ok(file path or "" for http(s)) or Err(why))
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("https://example.com/a.deb", Ok("")),
            ("http://10.0.0.1:8080/a.deb", Ok("")),
            ("HTTPS://example.com/a.deb", Ok("")),
            ("https://example.com/a.deb?token=1#x", Ok("")),
            ("file:///srv/mirror/a.deb", Ok("/srv/mirror/a.deb")),
            ("FILE:///srv/a.deb", Ok("/srv/a.deb")),
            ("file://localhost/srv/a%20b+c.deb", Ok("/srv/a b+c.deb")),
            ("file:///srv/%3Fq%23", Ok("/srv/?q#")),
            (
                "ftp://example.com/a.deb",
                Err("is not an https://, http:// or file:// URL"),
            ),
            (
                "/srv/a.deb",
                Err("is not an https://, http:// or file:// URL"),
            ),
            (
                "example.com/x",
                Err("is not an https://, http:// or file:// URL"),
            ),
            ("", Err("is not an https://, http:// or file:// URL")),
            ("https:///a.deb", Err("is not a valid URL")),
            ("https://example.com:8443/a", Ok("")),
            (
                "https://example.com:99999/a",
                Err("has a port outside 1..=65535"),
            ),
            (
                "http://example.com:0/a",
                Err("has a port outside 1..=65535"),
            ),
            ("https://?x", Err("is not a valid URL")),
            ("https://example.com/a b.deb", Err("whitespace or control")),
            ("https://example.com/a\n.deb", Err("whitespace or control")),
            ("file:///a b", Err("whitespace or control")),
            (
                "file://relative/a.deb",
                Err("does not name a path on this machine"),
            ),
            (
                "file://localhostx/a",
                Err("does not name a path on this machine"),
            ),
            (
                "file://localhost",
                Err("does not name a path on this machine"),
            ),
            ("file:///srv/a%ZZ.deb?x", Err("has a query or fragment")),
            ("file:///srv/a.deb#frag", Err("has a query or fragment")),
            ("file:///srv/a%ZZ.deb", Err("has a bad %-escape")),
            ("file:///srv/a%zz", Err("has a bad %-escape")),
            ("file:///srv/a%+1", Err("has a bad %-escape")),
            ("file:///srv/a%2", Err("has a bad %-escape")),
            ("file:///a%00b", Err("has a bad %-escape")),
        ];
        for (text, want) in cases {
            match (Url::parse(text), want) {
                (Ok(url), Ok(path)) => {
                    assert_eq!(url.as_str(), *text);
                    assert_eq!(url.to_string(), *text);
                    let got = url.file_path().map(Path::to_path_buf).unwrap_or_default();
                    assert_eq!(got, PathBuf::from(path), "{text:?}");
                }
                (Err(e), Err(why)) => {
                    assert!(e.why.contains(why), "{text:?}: {e}");
                    assert_eq!(e.to_string(), format!("{text:?} {}", e.why));
                    assert!(!e.help.is_empty());
                }
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn plain_http_and_checksum_files_of_urls() {
        for (text, plain) in [
            ("http://m/x", true),
            ("HTTP://m/x", true),
            ("Http://m/x", true),
            ("https://m/x", false),
            ("file:///x", false),
        ] {
            assert_eq!(Url::parse(text).unwrap().is_plain_http(), plain, "{text}");
        }
        let file = Url::parse("file:///srv/a%20b.deb").unwrap().checksum_file();
        assert_eq!(file.as_str(), "file:///srv/a%20b.deb.sha256");
        assert_eq!(file.file_path(), Some(Path::new("/srv/a b.deb.sha256")));
        assert_eq!(
            Some(file.clone()),
            Url::parse(file.as_str()).ok(),
            "appending keeps the URL what parsing gives"
        );
        let https = Url::parse("https://m/x.deb").unwrap().checksum_file();
        assert_eq!(
            Some(https.clone()),
            Url::parse("https://m/x.deb.sha256").ok()
        );
        assert_eq!(
            serde_json::to_value(&https).unwrap(),
            serde_json::json!("https://m/x.deb.sha256")
        );
    }

    #[test]
    fn sha256_table() {
        let upper = SHA.to_uppercase();
        let long = format!("{SHA}0");
        let not_hex = SHA.replace('9', "z");
        let spaced = format!(" {SHA}");
        let cases: &[(&str, Result<&str, &str>)] = &[
            (SHA, Ok(SHA)),
            (&upper, Ok(SHA)),
            ("", Err("it has 0 characters")),
            ("abc", Err("it has 3 characters")),
            (&SHA[1..], Err("it has 63 characters")),
            (&long, Err("it has 65 characters")),
            (
                &not_hex,
                Err("it has 64 characters, not all of them hex digits"),
            ),
            (
                &spaced,
                Err("it has 65 characters, not all of them hex digits"),
            ),
            (
                "not-hex",
                Err("it has 7 characters, not all of them hex digits"),
            ),
        ];
        for (text, want) in cases {
            match (Sha256::parse(text), want) {
                (Ok(sha), Ok(hex)) => assert_eq!(sha.as_str(), *hex),
                (Err(e), Err(problem)) => {
                    assert_eq!(e.problem, *problem, "{text:?}");
                    assert!(
                        e.to_string().starts_with(&format!(
                            "{text:?} is not a sha256 (64 hexadecimal digits): "
                        )),
                        "{e}"
                    );
                }
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(Sha256::from_digest(&[0xab; 32]).as_str(), "ab".repeat(32));
    }

    #[test]
    fn checksum_files_are_read_as_sha256sum_prints_them() {
        let hex = "ab".repeat(32);
        let cases: [(&str, Result<&str, &str>); 7] = [
            (&format!("{hex}  sysbox.deb\n"), Ok(&hex)),
            (&format!("{}  sysbox.deb\n", hex.to_uppercase()), Ok(&hex)),
            (&format!("\\{hex}  we\\nird\n"), Ok(&hex)),
            (&format!("{hex}\n{}  other\n", "cd".repeat(32)), Ok(&hex)),
            (
                "<html>not found</html>",
                Err(
                    "its first field is not a sha256 (it has 9 characters, not all of them hex digits)",
                ),
            ),
            ("\n", Err("it is empty")),
            ("", Err("it is empty")),
        ];
        for (text, want) in cases {
            let got = Sha256::from_checksum_file(text.as_bytes());
            match want {
                Ok(hex) => assert_eq!(got.map(|s| s.0).as_deref(), Ok(hex), "{text:?}"),
                Err(why) => assert_eq!(got.unwrap_err(), why, "{text:?}"),
            }
        }
    }

    #[test]
    fn artifacts_are_checked_before_anything_is_touched() {
        let good = artifact("https://example.com/x.deb", Some(&"A".repeat(64)));
        let checked = good.check().unwrap();
        assert_eq!(
            checked.known_sha256().map(Sha256::as_str),
            Some("a".repeat(64).as_str())
        );
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
        let long = "a".repeat(201);
        assert!(matches!(
            Artifact {
                name: long,
                ..good.clone()
            }
            .check(),
            Err(CheckError::Name {
                why: "it is longer than 200 characters",
                ..
            })
        ));
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
            (
                "ftp://example.com/x",
                "refusing to fetch tool.deb: \"ftp://example.com/x\" is not an https://, http:// or file:// URL\nhelp: use an https://",
            ),
            (
                "file:///srv/a%ZZ.deb?x",
                "refusing to fetch tool.deb: \"file:///srv/a%ZZ.deb?x\" has a query or fragment, which a file URL cannot have\nhelp: percent-encode ? and # in the path (%3F, %23)",
            ),
        ] {
            let err = artifact(url, Some(&"a".repeat(64)))
                .check()
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{url}: {err}");
        }
        let file = artifact("file://localhost/srv/a%20b+c.deb", Some(&"a".repeat(64)));
        assert_eq!(
            file.check().unwrap().url().file_path(),
            Some(Path::new("/srv/a b+c.deb"))
        );
        for sha256 in ["abc", &"g".repeat(64), &"a".repeat(65)] {
            let err = artifact("https://e.com/x", Some(sha256))
                .check()
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "refusing the sha256 given for tool.deb: {sha256:?} is not a sha256 (64 hexadecimal digits)"
                )),
                "{err}"
            );
            assert!(err.contains("help: set sysbox_sha256"), "{err}");
        }
        // Spaces around a pinned sha256 are not part of it.
        let padded = artifact("https://e.com/x", Some(&format!(" {SHA}\n")));
        assert_eq!(padded.check().unwrap().checksum_detail(), SHA);
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
        let bad_side = Artifact {
            sha256_url: Some("file:///x%zz".into()),
            ..artifact("https://e.com/x", None)
        };
        assert!(matches!(bad_side.check(), Err(CheckError::Url { .. })));
        let neither = Artifact {
            sha256: Some("  ".into()),
            sha256_url: Some(" ".into()),
            config_key: "dockerd_sha256".into(),
            ..artifact("https://e.com/x", None)
        };
        let err = neither.check().unwrap_err().to_string();
        assert!(err.contains("no sha256 to verify it against"), "{err}");
        assert!(err.contains("help: set dockerd_sha256 in"), "{err}");
        for key in ["a key", "", "k/x"] {
            let bad_key = Artifact {
                config_key: key.into(),
                ..good.clone()
            };
            assert!(
                matches!(bad_key.check(), Err(CheckError::ConfigKey { .. })),
                "{key:?}"
            );
        }
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
            (
                side("file:///x.deb", "http://m/x.deb.sha256", "dockerd_sha256"),
                "its checksum file http://m/x.deb.sha256 comes over plain http",
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
}
