//! Configuration: the layered TOML files (`/etc/containai/config.toml`, then
//! `~/.config/containai/config.toml`, then `--config FILE`) merged into one [`Config`].
//!
//! This module parses and merges text and touches nothing: the CLI reads each file through the
//! trust rules and hands over its text. Unknown keys are errors, because a typo in a config that
//! runs as root must not be silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plan::platform::Platform;

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
    /// Container stop timeout in seconds (systemd inside the containers needs it generous).
    pub stop_timeout_secs: Option<u64>,
}

/// The merged configuration with the files it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub platform: Option<Platform>,
    pub socket: Option<PathBuf>,
    pub data_root: PathBuf,
    pub script_timeout_secs: u64,
    pub stop_timeout_secs: u64,
    /// Files that were found and read, in order.
    pub sources: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            platform: None,
            socket: None,
            data_root: PathBuf::from(DEFAULT_DATA_ROOT),
            // One hour: an update stops containers (100 s each, concurrently) and installs packages.
            script_timeout_secs: 3600,
            // 100 s: systemd inside the containers needs it to shut down cleanly.
            stop_timeout_secs: 100,
            sources: Vec::new(),
        }
    }
}

pub use crate::plan::layout::{DEFAULT_DATA_ROOT, SITE_CONFIG};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "malformed config {path}: {message}\nhelp: fix the file; valid keys are platform, socket, data_root, script_timeout_secs, stop_timeout_secs"
    )]
    Parse { path: PathBuf, message: String },
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
        if file.platform.is_some() {
            self.platform = file.platform;
        }
        if file.socket.is_some() {
            self.socket = file.socket;
        }
        if let Some(data_root) = file.data_root {
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
        if let Some(secs) = file.stop_timeout_secs {
            if !(1..=3600).contains(&secs) {
                return Err(invalid(format!(
                    "stop_timeout_secs = {secs} is outside 1..=3600"
                )));
            }
            self.stop_timeout_secs = secs;
        }
        self.sources.push(path.to_path_buf());
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
        assert_eq!(config.sources, vec![site.clone(), user.clone()]);
        let err = Config::from_layers([(user, "stop_timeout_secs = 0\n")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("stop_timeout_secs = 0 is outside 1..=3600"),
            "{err}"
        );
        let err = Config::from_layers([(site, "platform = [")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("malformed config /etc/containai/config.toml: line 1"),
            "{err}"
        );
    }
}
