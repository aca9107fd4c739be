//! Sysbox version parsing. `sysbox-runc --version` prints either one line
//! (`sysbox-runc version 0.6.7+containai.20260127`) or a `sysbox-runc` line followed by indented
//! `key: value` lines including `version:`. Both are parsed; anything else is an error, never an
//! empty version, because an empty version compares as "not installed" and triggers installs.

use serde::Serialize;

/// A parsed sysbox version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysboxVersion {
    /// As printed, e.g. `0.6.7+containai.20260127` (a trailing Debian revision is kept here).
    pub full: String,
    /// The semver part, e.g. `0.6.7`.
    pub semver: String,
    /// The build after `+containai.`, when this is a ContainAI build.
    pub containai_build: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("cannot find a version in `sysbox-runc --version` output: {0:?}")]
    NoVersion(String),
    #[error("malformed sysbox version {0:?}")]
    Malformed(String),
}

/// Parses the output of `sysbox-runc --version` in either format.
pub fn parse_runc_output(output: &str) -> Result<SysboxVersion, VersionError> {
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines
        .next()
        .ok_or_else(|| VersionError::NoVersion(output.to_string()))?;
    if let Some(rest) = first.strip_prefix("sysbox-runc version ") {
        return parse_version(rest.trim());
    }
    for line in output.lines() {
        if let Some((key, value)) = line.trim().split_once(':') {
            if key.trim() == "version" {
                return parse_version(value.trim());
            }
        }
    }
    Err(VersionError::NoVersion(output.to_string()))
}

/// Parses `0.6.7`, `0.6.7+containai.20260127`, `0.6.7-1` or `0.6.7+containai.20260127-2`.
pub fn parse_version(text: &str) -> Result<SysboxVersion, VersionError> {
    let malformed = || VersionError::Malformed(text.to_string());
    let (core, build) = match text.split_once('+') {
        Some((core, build)) => (core, Some(build)),
        None => (text, None),
    };
    // A Debian revision (`-N`) trails either the core or the build and is ignored when comparing.
    let core = strip_debian_revision(core);
    let semver = semver::Version::parse(core).map_err(|_| malformed())?;
    let containai_build = match build {
        Some(build) => build
            .strip_prefix("containai.")
            .map(|b| strip_debian_revision(b).to_string())
            .filter(|b| !b.is_empty()),
        None => None,
    };
    Ok(SysboxVersion {
        full: text.to_string(),
        semver: semver.to_string(),
        containai_build,
    })
}

fn strip_debian_revision(text: &str) -> &str {
    match text.rsplit_once('-') {
        Some((head, rev)) if !rev.is_empty() && rev.chars().all(|c| c.is_ascii_digit()) => head,
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_output_formats() {
        let one = parse_runc_output("sysbox-runc version 0.6.7+containai.20260127\n").unwrap();
        assert_eq!(one.semver, "0.6.7");
        assert_eq!(one.containai_build.as_deref(), Some("20260127"));
        let multi = "sysbox-runc\n\tedition: \tCommunity Edition (CE)\n\tversion: \t0.6.5\n\tcommit: \tabc\n\tbuilt at: \tMon\n";
        let v = parse_runc_output(multi).unwrap();
        assert_eq!(v.full, "0.6.5");
        assert_eq!(v.containai_build, None);
    }

    #[test]
    fn unparseable_output_is_an_error_never_empty() {
        for bad in [
            "",
            "\n\n",
            "sysbox-runc\n\tcommit: abc\n",
            "sysbox-runc version \n",
            "garbage",
        ] {
            assert!(parse_runc_output(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_table() {
        for (text, semver, build) in [
            ("0.6.7", "0.6.7", None),
            ("0.6.7-1", "0.6.7", None),
            ("0.6.7+containai.20260127", "0.6.7", Some("20260127")),
            ("0.6.7+containai.20260127-2", "0.6.7", Some("20260127")),
            ("0.6.7+other", "0.6.7", None),
        ] {
            let v = parse_version(text).unwrap();
            assert_eq!(
                (v.semver.as_str(), v.containai_build.as_deref()),
                (semver, build),
                "{text}"
            );
        }
        assert!(parse_version("v0.6").is_err());
    }
}
