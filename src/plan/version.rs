//! Sysbox version parsing and the update decision. `sysbox-runc --version` prints either one line
//! (`sysbox-runc version 0.6.7+containai.20260127`) or a `sysbox-runc` line followed by indented
//! `key: value` lines including `version:`. Both are parsed; anything else is an error, never an
//! empty version, because an empty version compares as "not installed" and triggers installs.
//! `dockerd --version` (`Docker version 28.2.2, build e6534b4`) is parsed the same way: the
//! version the binary itself reports, or an error [P73].
//!
//! [`decide`] is the one update decision (SPEC 4.3), used on every platform [P24]: it takes no
//! platform input at all, so no platform can skip it because sysbox "exists" [P19], and a failed
//! version check is its own outcome, never "up to date" [P11, P20].

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
    #[error(
        "cannot find a version in `dockerd --version` output {0:?}: expected `Docker version X.Y.Z, build H`"
    )]
    NoDockerdVersion(String),
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

impl SysboxVersion {
    /// The full version without a trailing Debian revision (`0.6.7+containai.20260127-2` is
    /// `0.6.7+containai.20260127`): what "equals the target" compares [P24].
    pub fn without_revision(&self) -> &str {
        strip_debian_revision(&self.full)
    }

    /// The semver part as a comparable value.
    fn comparable(&self) -> Result<semver::Version, String> {
        // Built by `parse_version` from a parsed semver::Version, so it parses; a hand-built
        // value that does not is a failed check, not a guess.
        semver::Version::parse(&self.semver).map_err(|_| {
            format!(
                "malformed sysbox semver {:?} in {:?}",
                self.semver, self.full
            )
        })
    }
}

/// What to do about sysbox, each with the reason shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not installed.
    Install(String),
    /// A ContainAI build older than the target.
    Update(String),
    /// The target's semver, but another ContainAI build of it [P23].
    Rebuild(String),
    /// An upstream build no newer than the target: replaced by the ContainAI build.
    ReplaceUpstream(String),
    UpToDate(String),
    /// An upstream build newer than the target: kept, never downgraded [P31].
    KeepNewerUpstream(String),
    /// The installed version could not be read; nothing is known [P11, P20].
    CheckFailed(String),
}

impl Decision {
    /// The stable name scripts and JSON readers see.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Install(_) => "install",
            Decision::Update(_) => "update",
            Decision::Rebuild(_) => "rebuild",
            Decision::ReplaceUpstream(_) => "replace-upstream",
            Decision::UpToDate(_) => "up-to-date",
            Decision::KeepNewerUpstream(_) => "keep-newer",
            Decision::CheckFailed(_) => "check-failed",
        }
    }

    /// Whether sysbox must be installed; `None` when the check failed and nobody can tell.
    pub fn needed(&self) -> Option<bool> {
        match self {
            Decision::Install(_)
            | Decision::Update(_)
            | Decision::Rebuild(_)
            | Decision::ReplaceUpstream(_) => Some(true),
            Decision::UpToDate(_) | Decision::KeepNewerUpstream(_) => Some(false),
            Decision::CheckFailed(_) => None,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Install(r)
            | Decision::Update(r)
            | Decision::Rebuild(r)
            | Decision::ReplaceUpstream(r)
            | Decision::UpToDate(r)
            | Decision::KeepNewerUpstream(r)
            | Decision::CheckFailed(r) => r,
        }
    }
}

/// Scripts and JSON readers see a decision as `{action, needed, reason}`; `needed` is null when
/// the check failed and nobody can tell.
impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Decision", 3)?;
        out.serialize_field("action", self.action())?;
        out.serialize_field("needed", &self.needed())?;
        out.serialize_field("reason", self.reason())?;
        out.end()
    }
}

/// The sysbox update decision: `installed` is what the version check found (`Ok(None)`: not
/// installed; `Err`: the check failed, with why) and `target` the release target's full version,
/// which must be a ContainAI build. A trailing Debian revision is ignored on both sides.
pub fn decide(installed: Result<Option<&SysboxVersion>, &str>, target: &SysboxVersion) -> Decision {
    let installed = match installed {
        Err(reason) => {
            return Decision::CheckFailed(format!(
                "cannot tell whether sysbox needs updating: {reason}"
            ));
        }
        Ok(None) => {
            return Decision::Install(format!(
                "sysbox is not installed; the target is {}",
                target.full
            ));
        }
        Ok(Some(installed)) => installed,
    };
    let Some(target_build) = &target.containai_build else {
        // Installing a target that is not a ContainAI build would "replace" upstream forever.
        return Decision::CheckFailed(format!(
            "the target sysbox {} is not a ContainAI build",
            target.full
        ));
    };
    let (have, want) = match (installed.comparable(), target.comparable()) {
        (Ok(have), Ok(want)) => (have, want),
        (Err(e), _) | (_, Err(e)) => return Decision::CheckFailed(e),
    };
    let (i, t) = (&installed.full, &target.full);
    match &installed.containai_build {
        Some(_) if want > have => {
            Decision::Update(format!("sysbox {i} is older than the target {t}"))
        }
        Some(build) if want == have && build != target_build => Decision::Rebuild(format!(
            "sysbox {i} is build {build} of {have}; the target is build {target_build} of the same version"
        )),
        Some(_) if want == have => Decision::UpToDate(format!("sysbox {i} is the target {t}")),
        Some(_) => Decision::UpToDate(format!(
            "sysbox {i} is newer than the target {t}; cai never downgrades"
        )),
        None if want >= have => Decision::ReplaceUpstream(format!(
            "sysbox {i} is an upstream build; the target is the ContainAI build {t}"
        )),
        None => Decision::KeepNewerUpstream(format!(
            "upstream sysbox {i} is newer than the target {t}; cai never downgrades"
        )),
    }
}

/// Parses what `dockerd --version` prints, `Docker version 28.2.2, build e6534b4`, into the
/// version as printed (`28.2.2`; a pre-release or build suffix such as `-rc.1` or `+dfsg1` is
/// kept, so it never equals a plain target). Anything else is an error quoting the output, never
/// an empty version [P73].
pub fn parse_dockerd_output(output: &str) -> Result<String, VersionError> {
    let bad = || VersionError::NoDockerdVersion(output.trim().to_string());
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines.next().ok_or_else(bad)?;
    let rest = line.strip_prefix("Docker version ").ok_or_else(bad)?;
    let (version, build) = rest.split_once(", build ").ok_or_else(bad)?;
    let build_ok = !build.is_empty() && build.bytes().all(|b| b.is_ascii_alphanumeric());
    if lines.next().is_some() || !build_ok || semver::Version::parse(version).is_err() {
        return Err(bad());
    }
    Ok(version.to_string())
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

    /// Parses `sysbox-runc --version` output as the host does, in the format given.
    fn installed(output: &str) -> Result<Option<SysboxVersion>, String> {
        parse_runc_output(output)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn one_line(version: &str) -> String {
        format!("sysbox-runc version {version}\n")
    }

    fn multi_line(version: &str) -> String {
        format!(
            "sysbox-runc\n\tedition: \tCommunity Edition (CE)\n\tversion: \t{version}\n\tcommit: \tabc\n"
        )
    }

    #[test]
    fn decision_table() {
        let target = parse_version("0.6.7+containai.20260127").unwrap();
        // (installed `--version` output, or None for not installed; action; reason contains)
        let cases: &[(Option<&str>, &str, &str)] = &[
            (
                None,
                "install",
                "not installed; the target is 0.6.7+containai.20260127",
            ),
            (
                Some("0.6.7+containai.20260127"),
                "up-to-date",
                "is the target",
            ),
            // A Debian revision is not a different build.
            (
                Some("0.6.7+containai.20260127-2"),
                "up-to-date",
                "is the target",
            ),
            // P23: same semver, another build.
            (
                Some("0.6.7+containai.20251201"),
                "rebuild",
                "build 20251201 of 0.6.7",
            ),
            (
                Some("0.6.7+containai.20260301"),
                "rebuild",
                "the target is build 20260127",
            ),
            (
                Some("0.6.6+containai.20251201"),
                "update",
                "older than the target",
            ),
            (
                Some("0.5.9+containai.20240101-3"),
                "update",
                "older than the target",
            ),
            (
                Some("0.6.8+containai.20260101"),
                "up-to-date",
                "cai never downgrades",
            ),
            // Upstream builds: replaced unless newer (P31: never a downgrade).
            (
                Some("0.6.6"),
                "replace-upstream",
                "upstream build; the target is the ContainAI build",
            ),
            (Some("0.6.7"), "replace-upstream", "upstream build"),
            (Some("0.6.7-1"), "replace-upstream", "upstream build"),
            (Some("0.6.7+other.1"), "replace-upstream", "upstream build"),
            (
                Some("0.7.0"),
                "keep-newer",
                "newer than the target 0.6.7+containai.20260127; cai never downgrades",
            ),
            (Some("0.6.8-1"), "keep-newer", "cai never downgrades"),
        ];
        for (version, action, reason) in cases {
            for format in [one_line, multi_line] {
                let found = match version {
                    Some(v) => installed(&format(v)).unwrap(),
                    None => None,
                };
                let decision = decide(Ok(found.as_ref()), &target);
                assert_eq!(decision.action(), *action, "{version:?}: {decision:?}");
                assert!(
                    decision.reason().contains(reason),
                    "{version:?}: {decision:?}"
                );
                let needed = !matches!(*action, "up-to-date" | "keep-newer");
                assert_eq!(decision.needed(), Some(needed), "{version:?}");
            }
        }
    }

    /// P11/P20/P21: output that is not a version is a failed check, never "up to date" and
    /// never "not installed".
    #[test]
    fn garbage_version_output_is_a_failed_check_never_up_to_date() {
        let target = parse_version("0.6.7+containai.20260127").unwrap();
        for garbage in [
            "",
            "garbage",
            "sysbox-runc\n\tcommit: abc\n",
            "sysbox-runc version \n",
        ] {
            let check = installed(garbage);
            let reason = check.as_ref().expect_err(garbage).clone();
            let decision = decide(
                check.as_ref().map(Option::as_ref).map_err(String::as_str),
                &target,
            );
            assert_eq!(
                decision,
                Decision::CheckFailed(format!(
                    "cannot tell whether sysbox needs updating: {reason}"
                ))
            );
            assert_eq!(decision.needed(), None);
            assert_eq!(decision.action(), "check-failed");
        }
        let upstream_target = parse_version("0.6.7").unwrap();
        let d = decide(Ok(None), &upstream_target);
        assert_eq!(d.action(), "install");
        let installed = parse_version("0.6.7").unwrap();
        let d = decide(Ok(Some(&installed)), &upstream_target);
        assert_eq!(d.action(), "check-failed", "{d:?}");
    }

    /// P73: the version is what the binary prints, or an error quoting the output.
    #[test]
    fn dockerd_version_output_table() {
        for (output, version) in [
            ("Docker version 28.2.2, build e6534b4\n", "28.2.2"),
            ("Docker version 28.2.2, build e6534b4", "28.2.2"),
            ("\n  Docker version 27.5.1, build 9f9e405  \n\n", "27.5.1"),
            ("Docker version 28.3.0-rc.1, build 5b2f1a0\n", "28.3.0-rc.1"),
            (
                "Docker version 20.10.24+dfsg1, build 297e128\n",
                "20.10.24+dfsg1",
            ),
        ] {
            assert_eq!(
                parse_dockerd_output(output).as_deref(),
                Ok(version),
                "{output:?}"
            );
        }
        for bad in [
            "",
            "\n",
            "dockerd 28.2.2\n",
            "Docker version 28.2.2\n",
            "Docker version , build e6534b4\n",
            "Docker version 28.2, build e6534b4\n",
            "Docker version v28.2.2, build e6534b4\n",
            "Docker version 28.2.2, build \n",
            "Docker version 28.2.2, build e6534b4 extra\n",
            "docker version 28.2.2, build e6534b4\n",
            "Docker version 28.2.2, build e6534b4\nDocker version 28.3.0, build x\n",
        ] {
            let err = parse_dockerd_output(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{:?}", bad.trim())),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn full_versions_compare_without_the_debian_revision() {
        for (text, bare) in [
            ("0.6.7+containai.20260127", "0.6.7+containai.20260127"),
            ("0.6.7+containai.20260127-2", "0.6.7+containai.20260127"),
            ("0.6.7-1", "0.6.7"),
            ("0.6.7", "0.6.7"),
        ] {
            assert_eq!(
                parse_version(text).unwrap().without_revision(),
                bare,
                "{text}"
            );
        }
    }

    /// P19: on WSL2 an installed but outdated sysbox is updated. The decision has no platform
    /// input, so WSL2 (and macOS, where the version is read inside the VM) decide like Linux.
    #[test]
    fn wsl2_with_an_outdated_sysbox_decides_update() {
        let target = parse_version("0.6.7+containai.20260127").unwrap();
        let wsl2_output = "sysbox-runc\n\tedition: \tCommunity Edition (CE)\n\tversion: \t0.6.6+containai.20251201\n";
        let found = parse_runc_output(wsl2_output).unwrap();
        let decision = decide(Ok(Some(&found)), &target);
        assert_eq!(decision.action(), "update");
        assert_eq!(decision.needed(), Some(true));
    }
}
