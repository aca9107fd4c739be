//! Configuration: the layered TOML files (`/etc/containai/config.toml`, then
//! `~/.config/containai/config.toml`, then `--config FILE`) merged into one [`Config`].
//!
//! This module parses and merges text and touches nothing: the CLI reads each file through the
//! trust rules and hands over its text. Unknown keys are errors, because a typo in a config that
//! runs as root must not be silently ignored; so are values that do not parse, such as an
//! override of the release target with an `ftp://` URL or a sha256 that is not one. URLs and
//! sha256s are parsed into the types the fetch takes ([`crate::plan::artifact`]), so a value the
//! fetch would refuse (`file:///srv/a%ZZ.deb?x`) is refused here, naming the key and the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plan::artifact::{Sha256, Url};
use crate::plan::platform::Platform;
use crate::plan::release::{self, Overrides, Tag};

/// One config file as written by an operator. Every field is optional; later files override
/// earlier ones field by field.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Forces the platform instead of detecting it.
    pub platform: Option<Platform>,
    /// Engine socket path (absolute host path; resolved under `--root`).
    pub socket: Option<PathBuf>,
    /// Engine data root (absolute host path; resolved under `--root`).
    pub data_root: Option<PathBuf>,
    /// Wall-clock budget for one script run, in seconds.
    pub script_timeout_secs: Option<u64>,
    /// Memory one script run may take, in MiB.
    pub script_memory_mb: Option<u64>,
    /// Container stop timeout in seconds (systemd inside the containers needs it generous).
    pub stop_timeout_secs: Option<u64>,
    /// The largest artifact download kept, in MiB.
    pub download_max_mb: Option<u64>,
    /// Overrides of the bundled release target (see [`crate::plan::release`]).
    pub sysbox_url: Option<String>,
    pub sysbox_version: Option<String>,
    pub sysbox_tag: Option<String>,
    pub sysbox_sha256: Option<String>,
    pub dockerd_url: Option<String>,
    pub dockerd_version: Option<String>,
    pub dockerd_sha256: Option<String>,
}

/// The merged configuration with the files it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub platform: Option<Platform>,
    pub socket: Option<PathBuf>,
    pub data_root: PathBuf,
    pub script_timeout_secs: u64,
    pub script_memory_mb: u64,
    pub stop_timeout_secs: u64,
    /// The largest body an artifact download may have, in MiB [P68].
    pub download_max_mb: u64,
    /// The release target's overrides, checked; applied over the bundled manifest.
    pub release: Overrides,
    /// Files that were found and read, in order.
    pub sources: Vec<PathBuf>,
}

impl Config {
    /// The engine unit's and daemon configuration's values from this config.
    pub fn engine_values(
        &self,
    ) -> Result<crate::plan::unit::UnitValues, crate::plan::unit::ValueError> {
        crate::plan::unit::UnitValues::for_settings(
            self.socket.as_deref(),
            &self.data_root,
            self.stop_timeout_secs,
        )
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            platform: None,
            socket: None,
            data_root: PathBuf::from(DEFAULT_DATA_ROOT),
            // One hour: an update stops containers (100 s each, concurrently) and installs packages.
            script_timeout_secs: 3600,
            // 512 MiB: the bundled flows need a few MiB; a runaway script stops long before the
            // machine swaps [P72].
            script_memory_mb: 512,
            // 100 s: systemd inside the containers needs it to shut down cleanly.
            stop_timeout_secs: 100,
            // 512 MiB: the sysbox package is ~30 MiB and a dockerd bundle ~80 MiB; a server that
            // sends more is broken or hostile, and the cache must not fill the disk.
            download_max_mb: DEFAULT_DOWNLOAD_MAX_MB,
            release: Overrides::default(),
            sources: Vec::new(),
        }
    }
}

pub use crate::plan::layout::{DEFAULT_DATA_ROOT, SITE_CONFIG};

/// The default of `download_max_mb`.
pub const DEFAULT_DOWNLOAD_MAX_MB: u64 = 512;
/// The largest `download_max_mb` accepted (64 GiB): beyond it the key is a typo.
const MAX_DOWNLOAD_MAX_MB: u64 = 65536;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "malformed config {path}: {message}\nhelp: fix the file; valid keys are platform, socket, data_root, script_timeout_secs, script_memory_mb, stop_timeout_secs, download_max_mb, sysbox_url, sysbox_version, sysbox_tag, sysbox_sha256, dockerd_url, dockerd_version, dockerd_sha256"
    )]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key} in config {path}: {message}\nhelp: fix or remove {key} in {path}")]
    Value {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    #[error("config file {0} does not exist\nhelp: check the path given to --config")]
    Missing(PathBuf),
}

impl Config {
    /// Merges config files in order, each given as the path it was read from and its text; later
    /// files override earlier ones key by key.
    pub fn from_layers<'a>(
        layers: impl IntoIterator<Item = (PathBuf, &'a str)>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for (path, text) in layers {
            config.apply(parse_file(text, &path)?, &path)?;
        }
        Ok(config)
    }

    fn apply(&mut self, file: ConfigFile, path: &Path) -> Result<(), ConfigError> {
        self.apply_release(&file, path)?;
        if file.platform.is_some() {
            self.platform = file.platform;
        }
        // Paths are checked here, once, as the engine unit needs them, so every command refuses
        // the same value and names the file it came from.
        let unit_path = |key: &'static str, value: &Path| {
            crate::plan::unit::UnitPath::new(key, value, "").map_err(|e| ConfigError::Value {
                path: path.to_path_buf(),
                key,
                message: format!("{} ({})", e.reason, crate::term::quoted(value)),
            })
        };
        if let Some(socket) = file.socket {
            unit_path("socket", &socket)?;
            self.socket = Some(socket);
        }
        if let Some(data_root) = file.data_root {
            unit_path("data_root", &data_root)?;
            self.data_root = data_root;
        }
        let invalid = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        if let Some(secs) = file.script_timeout_secs {
            if secs == 0 {
                return Err(invalid("script_timeout_secs must be at least 1".into()));
            }
            self.script_timeout_secs = secs;
        }
        if let Some(mib) = file.script_memory_mb {
            if !(16..=1024 * 1024).contains(&mib) {
                return Err(invalid(format!(
                    "script_memory_mb = {mib} is outside 16..=1048576"
                )));
            }
            self.script_memory_mb = mib;
        }
        if let Some(secs) = file.stop_timeout_secs {
            if !(1..=3600).contains(&secs) {
                return Err(invalid(format!(
                    "stop_timeout_secs = {secs} is outside 1..=3600"
                )));
            }
            self.stop_timeout_secs = secs;
        }
        if let Some(mb) = file.download_max_mb {
            if !(1..=MAX_DOWNLOAD_MAX_MB).contains(&mb) {
                return Err(invalid(format!(
                    "download_max_mb = {mb} is outside 1..={MAX_DOWNLOAD_MAX_MB}"
                )));
            }
            self.download_max_mb = mb;
        }
        self.sources.push(path.to_path_buf());
        Ok(())
    }

    /// Release-target overrides, key by key like every other key; which layer wins over the
    /// bundled manifest and the environment is [`release::resolve`]'s business.
    fn apply_release(&mut self, file: &ConfigFile, path: &Path) -> Result<(), ConfigError> {
        fn value<T>(
            path: &Path,
            key: &'static str,
            text: Option<&String>,
            parse: impl Fn(&str) -> Result<T, String>,
        ) -> Result<Option<T>, ConfigError> {
            text.map(|t| parse(t))
                .transpose()
                .map_err(|message| ConfigError::Value {
                    path: path.to_path_buf(),
                    key,
                    message,
                })
        }
        // The fetch's own types: a value config loading accepts is one the fetch can use.
        let url = |text: &str| Url::parse(text).map_err(|e| e.to_string());
        let sha256 = |text: &str| Sha256::parse(text).map_err(|e| e.to_string());
        let sysbox = &mut self.release.sysbox;
        let dockerd = &mut self.release.dockerd;
        if let Some(v) = value(path, "sysbox_url", file.sysbox_url.as_ref(), url)? {
            sysbox.url = Some(v);
        }
        if let Some(v) = value(
            path,
            "sysbox_version",
            file.sysbox_version.as_ref(),
            release::sysbox_version,
        )? {
            sysbox.version = Some(v);
        }
        if let Some(v) = value(path, "sysbox_tag", file.sysbox_tag.as_ref(), Tag::parse)? {
            sysbox.tag = Some(v);
        }
        if let Some(v) = value(path, "sysbox_sha256", file.sysbox_sha256.as_ref(), sha256)? {
            sysbox.sha256 = Some(v);
        }
        if let Some(v) = value(path, "dockerd_url", file.dockerd_url.as_ref(), url)? {
            dockerd.url = Some(v);
        }
        if let Some(v) = value(
            path,
            "dockerd_version",
            file.dockerd_version.as_ref(),
            release::dockerd_version,
        )? {
            dockerd.version = Some(v);
        }
        if let Some(v) = value(path, "dockerd_sha256", file.dockerd_sha256.as_ref(), sha256)? {
            dockerd.sha256 = Some(v);
        }
        Ok(())
    }
}

fn parse_file(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    parse(text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses one config file's text; the error is a single line.
pub fn parse(text: &str) -> Result<ConfigFile, String> {
    toml::from_str::<ConfigFile>(text).map_err(|e| {
        let message = e.message().trim().to_string();
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: {message}")
            }
            None => message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let file = parse(
            "platform = \"wsl2\"\nsocket = \"/run/x.sock\"\ndata_root = \"/d\"\nscript_timeout_secs = 5\nstop_timeout_secs = 7\n",
        )
        .unwrap();
        assert_eq!(file.platform, Some(Platform::Wsl2));
        assert_eq!(file.socket, Some(PathBuf::from("/run/x.sock")));
        assert_eq!(file.stop_timeout_secs, Some(7));
    }

    #[test]
    fn release_overrides_are_checked_and_merged_key_by_key() {
        let site = PathBuf::from("/etc/containai/config.toml");
        let user = PathBuf::from("/root/.config/containai/config.toml");
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let config = Config::from_layers([
            (
                site.clone(),
                "sysbox_url = \"https://mirror.example/s.deb\"\nsysbox_version = \"0.6.8+containai.20260301\"\nsysbox_tag = \"b-1\"\ndockerd_version = \"28.3.0\"\n",
            ),
            (
                user,
                &format!("sysbox_sha256 = \"{sha}\"\ndockerd_url = \"file:///srv/docker.tgz\"\ndockerd_sha256 = \"{}\"\n", sha.to_uppercase()),
            ),
        ])
        .unwrap();
        let r = &config.release;
        assert_eq!(
            r.sysbox.url.as_ref().unwrap().as_str(),
            "https://mirror.example/s.deb"
        );
        assert_eq!(
            r.sysbox.version.as_ref().unwrap().full,
            "0.6.8+containai.20260301"
        );
        assert_eq!(r.sysbox.tag.as_ref().unwrap().as_str(), "b-1");
        assert_eq!(r.sysbox.sha256.as_ref().unwrap().as_str(), sha);
        assert_eq!(
            r.dockerd.url.as_ref().unwrap().as_str(),
            "file:///srv/docker.tgz"
        );
        assert_eq!(r.dockerd.version.as_ref().unwrap().to_string(), "28.3.0");
        assert_eq!(r.dockerd.sha256.as_ref().unwrap().as_str(), sha);
        assert_eq!(Config::default().release, Overrides::default());

        for (text, want) in [
            (
                "sysbox_url = \"ftp://m/s.deb\"",
                "invalid sysbox_url in config /etc/containai/config.toml: \"ftp://m/s.deb\" is not an https://, http:// or file:// URL\nhelp: fix or remove sysbox_url in /etc/containai/config.toml",
            ),
            (
                "sysbox_sha256 = \"xyz\"",
                "invalid sysbox_sha256 in config /etc/containai/config.toml: \"xyz\" is not a sha256",
            ),
            ("sysbox_sha256 = \"\"", "invalid sysbox_sha256 in config"),
            (
                "sysbox_version = \"0.6.8\"",
                "invalid sysbox_version in config /etc/containai/config.toml: \"0.6.8\" is not a ContainAI build",
            ),
            ("sysbox_tag = \"a b\"", "invalid sysbox_tag in config"),
            (
                "dockerd_url = \"docker.tgz\"",
                "invalid dockerd_url in config",
            ),
            (
                "dockerd_version = \"latest\"",
                "invalid dockerd_version in config /etc/containai/config.toml: \"latest\" is not a version like 28.2.2",
            ),
            (
                "dockerd_sha256 = \"12\"",
                "invalid dockerd_sha256 in config",
            ),
            ("dockerd_tag = \"x\"", "unknown field `dockerd_tag`"),
            ("sysbox_url = 1", "invalid type"),
        ] {
            let err = Config::from_layers([(site.clone(), text)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text}: want {want:?} in {err:?}");
        }
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values_with_line() {
        let err = parse("\nplatfrom = \"linux\"\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(err.contains("platfrom"), "{err}");
        let err = parse("platform = \"solaris\"").unwrap_err();
        assert!(
            err.contains("solaris") || err.contains("unknown variant"),
            "{err}"
        );
        assert!(parse("platform = ").is_err());
    }

    #[test]
    fn later_files_override_earlier_ones() {
        let site = PathBuf::from("/etc/containai/config.toml");
        let user = PathBuf::from("/home/u/.config/containai/config.toml");
        let config = Config::from_layers([
            (
                site.clone(),
                "platform = \"linux\"\nstop_timeout_secs = 50\n",
            ),
            (user.clone(), "platform = \"macos\"\n"),
        ])
        .unwrap();
        assert_eq!(config.platform, Some(Platform::Macos));
        assert_eq!(config.stop_timeout_secs, 50);
        assert_eq!(config.download_max_mb, DEFAULT_DOWNLOAD_MAX_MB);
        assert_eq!(config.sources, vec![site.clone(), user.clone()]);
        let err = Config::from_layers([(user, "stop_timeout_secs = 0\n")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("stop_timeout_secs = 0 is outside 1..=3600"),
            "{err}"
        );
        let config = Config::from_layers([(site.clone(), "download_max_mb = 64\n")]).unwrap();
        assert_eq!(config.download_max_mb, 64);
        for bad in ["download_max_mb = 0\n", "download_max_mb = 65537\n"] {
            let err = Config::from_layers([(site.clone(), bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("is outside 1..=65536"), "{err}");
        }
        let err = Config::from_layers([(site, "platform = [")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("malformed config /etc/containai/config.toml: line 1"),
            "{err}"
        );
    }
}
