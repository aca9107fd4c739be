//! The release manifest (`stdlib/release.toml`, embedded in `cai` at build time) and the one
//! resolution of the update target from it: the sysbox build and dockerd bundle this `cai`
//! installs on one architecture, with the site's overrides from config and `CAI_SYSBOX_*` applied.
//!
//! Pure: the manifest text, the config's overrides and the environment's values are handed in, and
//! the architecture is a parameter (on macOS it will be the Lima VM's, not this machine's). Nothing
//! here looks anything up: there is no "latest" release and no silent fallback [P25]. Every value
//! comes from the manifest or from an override an operator wrote, and a value that does not parse
//! is an error naming where it came from. The host resolves once per run and keeps the result
//! [P26].

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde::{Deserialize, Serialize};

/// The URL and sha256 types of [`super::artifact`]: the ones the fetch takes.
pub use super::artifact::{Sha256, Url};
use super::version::{SysboxVersion, parse_version};
use crate::term::quoted;

/// The manifest bundled into this `cai`.
pub const BUNDLED: &str = include_str!("../../stdlib/release.toml");

/// Environment overrides of the sysbox target (read once by the CLI, never here).
pub const ENV_SYSBOX_URL: &str = "CAI_SYSBOX_URL";
pub const ENV_SYSBOX_VERSION: &str = "CAI_SYSBOX_VERSION";
pub const ENV_SYSBOX_TAG: &str = "CAI_SYSBOX_TAG";
pub const ENV_SYSBOX_SHA256: &str = "CAI_SYSBOX_SHA256";

/// The keys that pin each component's sha256, named when a download cannot be verified.
pub const KEY_SYSBOX_SHA256: &str = "sysbox_sha256";
pub const KEY_DOCKERD_SHA256: &str = "dockerd_sha256";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("malformed release manifest: {0}\nhelp: fix stdlib/release.toml and rebuild cai")]
    Manifest(String),
    #[error("invalid {var}: {message}\nhelp: fix or unset {var}")]
    Env { var: &'static str, message: String },
    #[error(
        "the release manifest has no artifacts for architecture {0}: cai installs sysbox and dockerd on amd64 and arm64"
    )]
    Arch(String),
}

/// An architecture the manifest carries artifacts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// The Debian name (`amd64`), as `.deb` file names use it.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The kernel's name (`uname -m`), as Docker's static bundles use it.
    pub fn machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The architecture with this Debian name.
    pub fn from_deb(name: &str) -> Result<Arch, ReleaseError> {
        Arch::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| ReleaseError::Arch(name.to_string()))
    }
}

/// A release tag; it becomes a path segment of a download URL, so only `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub fn parse(text: &str) -> Result<Tag, String> {
        let mut bytes = text.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if first_ok && rest_ok && text.len() <= 128 && !text.contains("..") {
            Ok(Tag(text.to_string()))
        } else {
            Err(format!(
                "{} is not a release tag (letters, digits, `.`, `_`, `-`)",
                quoted(text)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A sysbox target version: a ContainAI build (`X.Y.Z+containai.BUILD`), because the upstream
/// package depends on `fuse` instead of `fuse3` and the update decision replaces it.
pub fn sysbox_version(text: &str) -> Result<SysboxVersion, String> {
    let version = parse_version(text).map_err(|e| e.to_string())?;
    if version.containai_build.is_none() {
        return Err(format!(
            "{} is not a ContainAI build (X.Y.Z+containai.BUILD)",
            quoted(text)
        ));
    }
    Ok(version)
}

/// A dockerd version as Docker names its static bundles (`28.2.2`).
pub fn dockerd_version(text: &str) -> Result<semver::Version, String> {
    semver::Version::parse(text)
        .map_err(|_| format!("{} is not a version like 28.2.2", quoted(text)))
}

/// One artifact of a release on one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub url: Url,
    /// Filled by the release workflow (`scripts/pin-release.sh`); `None` in a build from source,
    /// which cannot verify the artifact (see [`SysboxTarget`]).
    pub sha256: Option<Sha256>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysboxRelease {
    pub tag: Tag,
    pub version: SysboxVersion,
    pub url_template: String,
    pub assets: BTreeMap<Arch, Asset>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerdRelease {
    pub version: semver::Version,
    pub url_template: String,
    pub assets: BTreeMap<Arch, Asset>,
}

/// The parsed, checked manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub sysbox: SysboxRelease,
    pub dockerd: DockerdRelease,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    sysbox: RawSysbox,
    dockerd: RawDockerd,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSysbox {
    tag: String,
    version: String,
    url_template: String,
    assets: BTreeMap<String, RawAsset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDockerd {
    version: String,
    url_template: String,
    assets: BTreeMap<String, RawAsset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsset {
    url: String,
    #[serde(default)]
    sha256: Option<String>,
}

/// What a URL template's placeholders stand for.
struct Fill<'a> {
    tag: Option<&'a str>,
    version: &'a str,
    arch: Arch,
}

impl Manifest {
    /// The manifest bundled into this `cai`.
    pub fn bundled() -> Result<Manifest, ReleaseError> {
        Manifest::parse(BUNDLED)
    }

    pub fn parse(text: &str) -> Result<Manifest, ReleaseError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            ReleaseError::Manifest(match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {message}")
                }
                None => message,
            })
        })?;
        let at = |key: &str| {
            let key = key.to_string();
            move |message: String| ReleaseError::Manifest(format!("{key}: {message}"))
        };

        let tag = Tag::parse(&raw.sysbox.tag).map_err(at("sysbox.tag"))?;
        let version = sysbox_version(&raw.sysbox.version).map_err(at("sysbox.version"))?;
        let assets = checked_assets(
            "sysbox",
            raw.sysbox.assets,
            &raw.sysbox.url_template,
            |arch| Fill {
                tag: Some(tag.as_str()),
                version: &version.full,
                arch,
            },
        )?;
        let sysbox = SysboxRelease {
            url_template: raw.sysbox.url_template,
            assets,
            tag,
            version,
        };

        let version = dockerd_version(&raw.dockerd.version).map_err(at("dockerd.version"))?;
        let full = version.to_string();
        let assets = checked_assets(
            "dockerd",
            raw.dockerd.assets,
            &raw.dockerd.url_template,
            |arch| Fill {
                tag: None,
                version: &full,
                arch,
            },
        )?;
        let dockerd = DockerdRelease {
            version,
            url_template: raw.dockerd.url_template,
            assets,
        };
        Ok(Manifest { sysbox, dockerd })
    }
}

/// Checks a component's assets: only known architectures, every one of them, each URL valid and
/// equal to what the template gives (so an override's derived URL follows the same pattern).
fn checked_assets<'a>(
    component: &str,
    raw: BTreeMap<String, RawAsset>,
    template: &str,
    fill: impl Fn(Arch) -> Fill<'a>,
) -> Result<BTreeMap<Arch, Asset>, ReleaseError> {
    let error = |key: String, message: String| ReleaseError::Manifest(format!("{key}: {message}"));
    let mut out = BTreeMap::new();
    for (name, asset) in raw {
        let key = format!("{component}.assets.{name}");
        let arch = Arch::from_deb(&name).map_err(|_| {
            error(
                key.clone(),
                format!(
                    "unknown architecture {} (known: amd64, arm64)",
                    quoted(&name)
                ),
            )
        })?;
        let url = Url::parse(&asset.url).map_err(|e| error(format!("{key}.url"), e.to_string()))?;
        let expected = expand(template, &fill(arch))
            .map_err(|m| error(format!("{component}.url_template"), m))?;
        if url != expected {
            return Err(error(
                format!("{key}.url"),
                format!(
                    "{url} is not what url_template gives for {}: {expected}; change them together",
                    arch.as_str()
                ),
            ));
        }
        // Empty means "not pinned yet": the release workflow fills it.
        let sha256 = match asset.sha256.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                Sha256::parse(text).map_err(|e| error(format!("{key}.sha256"), e.to_string()))?,
            ),
        };
        out.insert(arch, Asset { url, sha256 });
    }
    for arch in Arch::ALL {
        if !out.contains_key(&arch) {
            return Err(error(
                format!("{component}.assets.{}", arch.as_str()),
                "missing; every component lists amd64 and arm64".to_string(),
            ));
        }
    }
    Ok(out)
}

/// Fills `{tag}`, `{version}`, `{arch}` and `{machine}` into a URL template.
fn expand(template: &str, fill: &Fill) -> Result<Url, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {}", quoted(template)))?;
        let value = match &after[..end] {
            "tag" => fill.tag.ok_or_else(|| {
                format!(
                    "{{tag}} in {}, but this component has no tag",
                    quoted(template)
                )
            })?,
            "version" => fill.version,
            "arch" => fill.arch.as_str(),
            "machine" => fill.arch.machine(),
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}} in {} (known: {{tag}}, {{version}}, {{arch}}, {{machine}})",
                    quoted(template)
                ));
            }
        };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Url::parse(&out).map_err(|e| e.to_string())
}

/// A site's override of the sysbox target (config or environment), every value checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysboxOverride {
    pub url: Option<Url>,
    pub version: Option<SysboxVersion>,
    pub tag: Option<Tag>,
    pub sha256: Option<Sha256>,
}

impl SysboxOverride {
    fn is_empty(&self) -> bool {
        *self == SysboxOverride::default()
    }
}

/// A site's override of the dockerd bundle (config only), every value checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerdOverride {
    pub url: Option<Url>,
    pub version: Option<semver::Version>,
    pub sha256: Option<Sha256>,
}

impl DockerdOverride {
    fn is_empty(&self) -> bool {
        *self == DockerdOverride::default()
    }
}

/// The overrides of one layer (config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub sysbox: SysboxOverride,
    pub dockerd: DockerdOverride,
}

/// `CAI_SYSBOX_URL`, `CAI_SYSBOX_VERSION`, `CAI_SYSBOX_TAG` and `CAI_SYSBOX_SHA256` as the
/// environment held them when the CLI read it; an empty value counts as unset, so
/// `CAI_SYSBOX_URL= cai ...` clears one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvVars {
    pub sysbox_url: Option<OsString>,
    pub sysbox_version: Option<OsString>,
    pub sysbox_tag: Option<OsString>,
    pub sysbox_sha256: Option<OsString>,
}

impl EnvVars {
    /// Checks every value; the error names the variable.
    pub fn parse(&self) -> Result<SysboxOverride, ReleaseError> {
        fn one<T>(
            var: &'static str,
            value: Option<&OsString>,
            parse: impl Fn(&str) -> Result<T, String>,
        ) -> Result<Option<T>, ReleaseError> {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            let text = value.to_str().ok_or_else(|| ReleaseError::Env {
                var,
                message: "the value is not valid UTF-8".into(),
            })?;
            parse(text)
                .map(Some)
                .map_err(|message| ReleaseError::Env { var, message })
        }
        Ok(SysboxOverride {
            url: one(ENV_SYSBOX_URL, self.sysbox_url.as_ref(), |t| {
                Url::parse(t).map_err(|e| e.to_string())
            })?,
            version: one(
                ENV_SYSBOX_VERSION,
                self.sysbox_version.as_ref(),
                sysbox_version,
            )?,
            tag: one(ENV_SYSBOX_TAG, self.sysbox_tag.as_ref(), Tag::parse)?,
            sha256: one(ENV_SYSBOX_SHA256, self.sysbox_sha256.as_ref(), |t| {
                Sha256::parse(t).map_err(|e| e.to_string())
            })?,
        })
    }
}

/// Which layer a component's target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Bundled,
    Config,
    Env,
}

/// The sysbox build to install. At most one of `sha256` and `sha256_url` is set, and an artifact
/// is never fetched without one (`artifacts::fetch` reads a `sha256_url` only over https or from a
/// file, so an `http://` URL needs `sha256`, set with `sha256_key`). An override without a sha256
/// is verified against `<url>.sha256`. The bundled manifest's artifacts are verified only by the
/// sha256 the release workflow pins: their servers publish no checksum file, so in a build from
/// source (empty `sha256` in `stdlib/release.toml`) both are `None` and the artifact cannot be
/// fetched until `sha256_key` pins it ([`UpdateTarget::unpinned`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysboxTarget {
    pub tag: Tag,
    /// The full version the installed binary must report afterwards [P24].
    pub version: String,
    pub semver: String,
    pub url: Url,
    pub sha256: Option<Sha256>,
    pub sha256_url: Option<Url>,
    pub source: Layer,
    /// Where an operator pins `sha256` for this source: `CAI_SYSBOX_SHA256` when the target
    /// came from the environment (which replaces config whole), else the config key.
    pub sha256_key: &'static str,
}

/// The dockerd static bundle to install; `sha256` / `sha256_url` / `sha256_key` as for sysbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DockerdTarget {
    pub version: String,
    pub url: Url,
    pub sha256: Option<Sha256>,
    pub sha256_url: Option<Url>,
    pub source: Layer,
    pub sha256_key: &'static str,
}

/// What this run updates to, on one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateTarget {
    pub sysbox: SysboxTarget,
    pub dockerd: DockerdTarget,
    pub arch: Arch,
}

/// An artifact of the target that nothing can verify: the bundled one of a build from source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unpinned {
    /// `sysbox` or `dockerd`, as `cai update` names the component.
    pub component: &'static str,
    pub url: Url,
    /// Where the operator pins it: `sysbox_sha256` or `dockerd_sha256`.
    pub sha256_key: &'static str,
}

impl UpdateTarget {
    /// The artifacts with neither a pinned sha256 nor a checksum file, which `artifacts::fetch`
    /// refuses: said before an update starts, and by `cai doctor`.
    pub fn unpinned(&self) -> Vec<Unpinned> {
        let mut out = Vec::new();
        if self.sysbox.sha256.is_none() && self.sysbox.sha256_url.is_none() {
            out.push(Unpinned {
                component: "sysbox",
                url: self.sysbox.url.clone(),
                sha256_key: self.sysbox.sha256_key,
            });
        }
        if self.dockerd.sha256.is_none() && self.dockerd.sha256_url.is_none() {
            out.push(Unpinned {
                component: "dockerd",
                url: self.dockerd.url.clone(),
                sha256_key: self.dockerd.sha256_key,
            });
        }
        out
    }
}

/// A target and the warnings its overrides deserve (one line each, without `warning: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub target: UpdateTarget,
    pub warnings: Vec<String>,
}

/// Resolves the target on `arch`. Each component comes whole from one layer, the highest that
/// sets any of its keys: environment, then config, then the manifest. Layers are not mixed key by
/// key, because a checksum or URL from one layer does not describe another layer's version.
/// Within an override, unset keys keep the manifest's values, and a URL not given is derived from
/// the manifest's template with the override's tag and version.
pub fn resolve(
    manifest: &Manifest,
    arch: Arch,
    config: &Overrides,
    env: &SysboxOverride,
) -> Result<Resolution, ReleaseError> {
    let mut warnings = Vec::new();
    let sysbox = if !env.is_empty() {
        sysbox_override(&manifest.sysbox, arch, env, Layer::Env, &mut warnings)?
    } else if !config.sysbox.is_empty() {
        sysbox_override(
            &manifest.sysbox,
            arch,
            &config.sysbox,
            Layer::Config,
            &mut warnings,
        )?
    } else {
        let asset = asset(&manifest.sysbox.assets, arch)?;
        let (sha256, sha256_url) = (asset.sha256.clone(), None);
        SysboxTarget {
            tag: manifest.sysbox.tag.clone(),
            version: manifest.sysbox.version.full.clone(),
            semver: manifest.sysbox.version.semver.clone(),
            url: asset.url.clone(),
            sha256,
            sha256_url,
            source: Layer::Bundled,
            sha256_key: KEY_SYSBOX_SHA256,
        }
    };
    let dockerd = dockerd_target(&manifest.dockerd, arch, &config.dockerd)?;
    Ok(Resolution {
        target: UpdateTarget {
            sysbox,
            dockerd,
            arch,
        },
        warnings,
    })
}

fn asset(assets: &BTreeMap<Arch, Asset>, arch: Arch) -> Result<&Asset, ReleaseError> {
    // A parsed manifest lists every architecture; this only guards a hand-built one.
    assets
        .get(&arch)
        .ok_or_else(|| ReleaseError::Arch(arch.as_str().to_string()))
}

/// A pinned sha256, or the `<url>.sha256` file when none is pinned.
fn checksum(url: &Url, sha256: Option<Sha256>) -> (Option<Sha256>, Option<Url>) {
    match sha256 {
        Some(sha256) => (Some(sha256), None),
        None => (None, Some(url.checksum_file())),
    }
}

fn sysbox_override(
    bundled: &SysboxRelease,
    arch: Arch,
    layer: &SysboxOverride,
    source: Layer,
    warnings: &mut Vec<String>,
) -> Result<SysboxTarget, ReleaseError> {
    let (tag_key, version_key) = match source {
        Layer::Env => (ENV_SYSBOX_TAG, ENV_SYSBOX_VERSION),
        Layer::Config | Layer::Bundled => ("config sysbox_tag", "config sysbox_version"),
    };
    match (&layer.tag, &layer.version) {
        (Some(tag), None) => warnings.push(format!(
            "{tag_key} = {} is set without {version_key}, so the bundled version {} goes with it and the pair may name no release; set both",
            tag.as_str(),
            bundled.version.full
        )),
        (None, Some(version)) => warnings.push(format!(
            "{version_key} = {} is set without {tag_key}, so the bundled tag {} goes with it and the pair may name no release; set both",
            version.full,
            bundled.tag.as_str()
        )),
        _ => {}
    }
    let tag = layer.tag.clone().unwrap_or_else(|| bundled.tag.clone());
    let version = layer
        .version
        .clone()
        .unwrap_or_else(|| bundled.version.clone());
    let url = match (&layer.url, layer.tag.is_some() || layer.version.is_some()) {
        (Some(url), _) => url.clone(),
        (None, true) => expand(
            &bundled.url_template,
            &Fill {
                tag: Some(tag.as_str()),
                version: &version.full,
                arch,
            },
        )
        .map_err(|m| ReleaseError::Manifest(format!("sysbox.url_template: {m}")))?,
        (None, false) => asset(&bundled.assets, arch)?.url.clone(),
    };
    let (sha256, sha256_url) = checksum(&url, layer.sha256.clone());
    Ok(SysboxTarget {
        tag,
        version: version.full,
        semver: version.semver,
        url,
        sha256,
        sha256_url,
        source,
        sha256_key: match source {
            Layer::Env => ENV_SYSBOX_SHA256,
            Layer::Config | Layer::Bundled => KEY_SYSBOX_SHA256,
        },
    })
}

fn dockerd_target(
    bundled: &DockerdRelease,
    arch: Arch,
    layer: &DockerdOverride,
) -> Result<DockerdTarget, ReleaseError> {
    if layer.is_empty() {
        let asset = asset(&bundled.assets, arch)?;
        let (sha256, sha256_url) = (asset.sha256.clone(), None);
        return Ok(DockerdTarget {
            version: bundled.version.to_string(),
            url: asset.url.clone(),
            sha256,
            sha256_url,
            source: Layer::Bundled,
            sha256_key: KEY_DOCKERD_SHA256,
        });
    }
    let version = layer
        .version
        .clone()
        .unwrap_or_else(|| bundled.version.clone())
        .to_string();
    let url = match (&layer.url, layer.version.is_some()) {
        (Some(url), _) => url.clone(),
        (None, true) => expand(
            &bundled.url_template,
            &Fill {
                tag: None,
                version: &version,
                arch,
            },
        )
        .map_err(|m| ReleaseError::Manifest(format!("dockerd.url_template: {m}")))?,
        (None, false) => asset(&bundled.assets, arch)?.url.clone(),
    };
    let (sha256, sha256_url) = checksum(&url, layer.sha256.clone());
    Ok(DockerdTarget {
        version,
        url,
        sha256,
        sha256_url,
        source: Layer::Config,
        sha256_key: KEY_DOCKERD_SHA256,
    })
}

/// What a `.deb`'s control file says it is, or what the update expects it to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageIdentity {
    /// The `Package` field (`name`: `package` is a reserved word in Rhai).
    pub name: String,
    pub version: String,
    pub architecture: String,
}

/// Why the package `found` is not the `expected` one, every difference in one line; `Ok` when it
/// is. A Debian revision (`-N`) on the package's version is ignored, as when versions are
/// compared ([`super::version`]): `0.6.7+containai.20260127-0` is `0.6.7+containai.20260127`.
pub fn check_package(found: &PackageIdentity, expected: &PackageIdentity) -> Result<(), String> {
    let upstream = found
        .version
        .rsplit_once('-')
        .map_or(found.version.as_str(), |(upstream, _)| upstream);
    let mut wrong = Vec::new();
    if found.name != expected.name {
        wrong.push(format!(
            "its package is {}, expected {}",
            found.name, expected.name
        ));
    }
    if found.architecture != expected.architecture {
        wrong.push(format!(
            "its architecture is {}, expected {}",
            found.architecture, expected.architecture
        ));
    }
    if found.version != expected.version && upstream != expected.version {
        wrong.push(format!(
            "its version is {}, expected {}",
            found.version, expected.version
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_is_the_target_only_with_its_name_architecture_and_version() {
        let id = |name: &str, version: &str, architecture: &str| PackageIdentity {
            name: name.into(),
            version: version.into(),
            architecture: architecture.into(),
        };
        let target = id("sysbox-ce", "0.6.7+containai.20260127", "amd64");
        for (found, want) in [
            (id("sysbox-ce", "0.6.7+containai.20260127", "amd64"), Ok(())),
            (id("sysbox-ce", "0.6.7+containai.20260127-0", "amd64"), Ok(())),
            (
                id("sysbox-ce", "0.6.7+containai.20260127-0ubuntu1", "amd64"),
                Ok(()),
            ),
            (
                id("sysbox", "0.6.7+containai.20260127", "amd64"),
                Err("its package is sysbox, expected sysbox-ce".to_string()),
            ),
            (
                id("sysbox-ce", "0.6.7+containai.20260127", "arm64"),
                Err("its architecture is arm64, expected amd64".to_string()),
            ),
            (
                id("sysbox-ce", "0.6.7+containai.20251201-0", "amd64"),
                Err(
                    "its version is 0.6.7+containai.20251201-0, expected 0.6.7+containai.20260127"
                        .to_string(),
                ),
            ),
            (
                id("sysbox-ce", "0.6.7", "all"),
                Err("its architecture is all, expected amd64; its version is 0.6.7, expected 0.6.7+containai.20260127".to_string()),
            ),
            (
                id("sysbox-ce", "0.6.7+containai.20260127.1", "amd64"),
                Err("its version is 0.6.7+containai.20260127.1, expected 0.6.7+containai.20260127".to_string()),
            ),
        ] {
            assert_eq!(check_package(&found, &target), want, "{found:?}");
        }
    }

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const GH: &str = "https://github.com/novotnyllc/ContainAI/releases/download";

    /// A valid manifest whose text a test then breaks in one place.
    fn manifest_text() -> String {
        BUNDLED.to_string()
    }

    fn bundled() -> Manifest {
        Manifest::bundled().expect("the bundled manifest parses")
    }

    fn sysbox_override(
        url: Option<&str>,
        version: Option<&str>,
        tag: Option<&str>,
    ) -> SysboxOverride {
        SysboxOverride {
            url: url.map(|u| Url::parse(u).unwrap()),
            version: version.map(|v| sysbox_version(v).unwrap()),
            tag: tag.map(|t| Tag::parse(t).unwrap()),
            sha256: None,
        }
    }

    #[test]
    fn the_bundled_manifest_pins_the_current_releases() {
        let m = bundled();
        assert_eq!(m.sysbox.tag.as_str(), "sysbox-build-20260127-10");
        assert_eq!(m.sysbox.version.full, "0.6.7+containai.20260127");
        assert_eq!(m.dockerd.version.to_string(), "28.2.2");
        for (arch, machine) in [(Arch::Amd64, "x86_64"), (Arch::Arm64, "aarch64")] {
            let a = arch.as_str();
            assert_eq!(
                m.sysbox.assets[&arch].url.as_str(),
                format!(
                    "{GH}/sysbox-build-20260127-10/sysbox-ce_0.6.7+containai.20260127.linux_{a}.deb"
                )
            );
            assert_eq!(
                m.dockerd.assets[&arch].url.as_str(),
                format!(
                    "https://download.docker.com/linux/static/stable/{machine}/docker-28.2.2.tgz"
                )
            );
        }
    }

    #[test]
    fn malformed_manifests_are_refused_with_the_key_that_is_wrong() {
        let base = manifest_text();
        let amd64_url = "https://github.com/novotnyllc/ContainAI/releases/download/sysbox-build-20260127-10/sysbox-ce_0.6.7+containai.20260127.linux_amd64.deb";
        let cases: Vec<(String, &str)> = vec![
            (
                base.replace("[sysbox.assets.arm64]", "[sysbox.assets.riscv64]"),
                "sysbox.assets.riscv64: unknown architecture \"riscv64\"",
            ),
            (
                base.replace("[dockerd.assets.arm64]", "[dockerd.assets.x86]"),
                "dockerd.assets.x86: unknown architecture",
            ),
            (
                base.replace("tag = \"sysbox-build-20260127-10\"\n", ""),
                "missing field `tag`",
            ),
            (
                base.replace("version = \"28.2.2\"\n", ""),
                "missing field `version`",
            ),
            (
                base.replacen(&format!("url = \"{amd64_url}\"\n"), "", 1),
                "missing field `url`",
            ),
            (
                base.replacen("sha256 = \"\"", "sha265 = \"\"", 1),
                "unknown field `sha265`",
            ),
            (
                format!("{base}\n[extra]\nkey = 1\n"),
                "unknown field `extra`",
            ),
            (
                base.replace(
                    "[dockerd.assets.arm64]\n",
                    "[dockerd.assets.arm64]\nmirror = \"x\"\n",
                ),
                "unknown field `mirror`",
            ),
            (
                base.replace(
                    &format!("url = \"{amd64_url}\""),
                    &format!("url = \"{}\"", amd64_url.replace("https://", "ftp://")),
                ),
                "sysbox.assets.amd64.url: \"ftp://",
            ),
            (
                base.replacen("sha256 = \"\"", "sha256 = \"abc123\"", 1),
                "sysbox.assets.amd64.sha256: \"abc123\" is not a sha256",
            ),
            (
                base.replacen(
                    "sha256 = \"\"",
                    &format!("sha256 = \"{}\"", SHA.replace('a', "g")),
                    1,
                ),
                "is not a sha256",
            ),
            (
                base.replace(
                    "0.6.7+containai.20260127\"\nurl_template",
                    "0.6.7\"\nurl_template",
                ),
                "sysbox.version: \"0.6.7\" is not a ContainAI build",
            ),
            (
                base.replace("version = \"28.2.2\"", "version = \"28.2\""),
                "dockerd.version: \"28.2\" is not a version",
            ),
            (
                base.replace("tag = \"sysbox-build-20260127-10\"", "tag = \"../x\""),
                "sysbox.tag: \"../x\" is not a release tag",
            ),
            (
                base.replace("version = \"28.2.2\"", "version = \"28.3.0\""),
                "dockerd.assets.amd64.url: https://download.docker.com/linux/static/stable/x86_64/docker-28.2.2.tgz is not what url_template gives",
            ),
            (
                base.replace("{machine}/docker-", "{cpu}/docker-"),
                "dockerd.url_template: unknown placeholder {cpu}",
            ),
            (
                base.replace("stable/{machine}", "stable/{tag}"),
                "this component has no tag",
            ),
            ("sysbox = [".to_string(), "line 1:"),
        ];
        for (text, want) in cases {
            let err = Manifest::parse(&text).expect_err(want).to_string();
            assert!(err.starts_with("malformed release manifest: "), "{err}");
            assert!(err.contains(want), "want {want:?} in {err}");
            assert!(err.contains("\nhelp: "), "{err}");
        }
        // Both architectures are required, so an update never finds its machine missing.
        let text = base
            .split("[dockerd.assets.arm64]")
            .next()
            .unwrap()
            .to_string();
        let err = Manifest::parse(&text).unwrap_err().to_string();
        assert!(err.contains("dockerd.assets.arm64: missing"), "{err}");
    }

    #[test]
    fn pinned_checksums_are_read_and_empty_ones_mean_unpinned() {
        let text = manifest_text().replacen(
            "sha256 = \"\"",
            &format!("sha256 = \"{}\"", SHA.to_uppercase()),
            1,
        );
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(
            m.sysbox.assets[&Arch::Amd64]
                .sha256
                .as_ref()
                .unwrap()
                .as_str(),
            SHA
        );
        assert_eq!(m.sysbox.assets[&Arch::Arm64].sha256, None);
        let absent = manifest_text().replace("sha256 = \"\"\n", "");
        assert_eq!(Manifest::parse(&absent).unwrap(), bundled());
    }

    #[test]
    fn field_parsers_table() {
        for (url, ok) in [
            ("https://example.com/a.deb", true),
            ("http://10.0.0.1:8080/a.deb", true),
            ("file:///srv/mirror/a.deb", true),
            ("ftp://example.com/a.deb", false),
            ("HTTPS://example.com/a.deb", true),
            ("file://localhost/srv/a.deb", true),
            ("file:///srv/a%ZZ.deb?x", false),
            ("file:///srv/a%ZZ.deb", false),
            ("https:///a.deb", false),
            ("file://relative/a.deb", false),
            ("https://example.com/a b.deb", false),
            ("https://example.com/a\n.deb", false),
            ("/srv/a.deb", false),
            ("", false),
        ] {
            assert_eq!(Url::parse(url).is_ok(), ok, "{url:?}");
        }
        assert!(Sha256::parse(SHA).is_ok());
        for bad in [
            "",
            "abc",
            &SHA[1..],
            &format!("{SHA}0"),
            &SHA.replace('9', "z"),
        ] {
            assert!(Sha256::parse(bad).is_err(), "{bad:?}");
        }
        for (tag, ok) in [
            ("sysbox-build-20260127-10", true),
            ("v1.2_3", true),
            ("", false),
            ("-x", false),
            ("a/b", false),
            ("a..b", false),
            ("a b", false),
        ] {
            assert_eq!(Tag::parse(tag).is_ok(), ok, "{tag:?}");
        }
        assert!(sysbox_version("0.6.8+containai.20260301").is_ok());
        assert!(sysbox_version("0.6.8+containai.20260301-1").is_ok());
        assert!(sysbox_version("0.6.8").is_err());
        assert!(sysbox_version("latest").is_err());
        assert!(dockerd_version("28.2.2").is_ok());
        assert!(dockerd_version("latest").is_err());
        assert_eq!(Arch::from_deb("arm64"), Ok(Arch::Arm64));
        assert_eq!(
            Arch::from_deb("riscv64").unwrap_err().to_string(),
            "the release manifest has no artifacts for architecture riscv64: cai installs sysbox and dockerd on amd64 and arm64"
        );
    }

    #[test]
    fn without_overrides_the_target_is_the_bundled_one() {
        let m = bundled();
        for arch in Arch::ALL {
            let r = resolve(&m, arch, &Overrides::default(), &SysboxOverride::default()).unwrap();
            assert!(r.warnings.is_empty());
            let t = r.target;
            assert_eq!(t.arch, arch);
            assert_eq!(t.sysbox.source, Layer::Bundled);
            assert_eq!(t.sysbox.version, "0.6.7+containai.20260127");
            assert_eq!(t.sysbox.semver, "0.6.7");
            assert_eq!(t.sysbox.url, m.sysbox.assets[&arch].url);
            // Nothing pinned (a build from source): nothing can verify either artifact.
            assert_eq!(t.sysbox.sha256, None);
            assert_eq!(t.sysbox.sha256_url, None);
            assert_eq!(t.dockerd.sha256_url, None);
            let unpinned = t.unpinned();
            assert_eq!(
                unpinned
                    .iter()
                    .map(|u| (u.component, u.sha256_key))
                    .collect::<Vec<_>>(),
                [("sysbox", "sysbox_sha256"), ("dockerd", "dockerd_sha256")]
            );
            assert_eq!(unpinned[1].url, t.dockerd.url);
            assert_eq!(t.dockerd.source, Layer::Bundled);
            assert_eq!(t.dockerd.version, "28.2.2");
            assert!(t.dockerd.url.as_str().contains(arch.machine()));
        }
        // A pinned sha256 is used as is, and then no checksum file is needed.
        let text = manifest_text().replace("sha256 = \"\"", &format!("sha256 = \"{SHA}\""));
        let pinned = Manifest::parse(&text).unwrap();
        let t = resolve(
            &pinned,
            Arch::Arm64,
            &Overrides::default(),
            &SysboxOverride::default(),
        )
        .unwrap()
        .target;
        assert!(t.unpinned().is_empty(), "{:?}", t.unpinned());
        assert_eq!(t.sysbox.sha256.unwrap().as_str(), SHA);
        assert_eq!(t.sysbox.sha256_url, None);
        assert_eq!(t.dockerd.sha256.unwrap().as_str(), SHA);
        assert_eq!(t.dockerd.sha256_url, None);
    }

    /// A source build's bundled artifact is pinned by its config key alone (the URL stays the
    /// manifest's); an override without a sha256 is verified by its checksum file.
    #[test]
    fn a_config_sha256_alone_pins_the_bundled_artifact() {
        let m = bundled();
        let config = Overrides {
            dockerd: DockerdOverride {
                sha256: Some(Sha256::parse(SHA).unwrap()),
                ..DockerdOverride::default()
            },
            ..Overrides::default()
        };
        let t = resolve(&m, Arch::Amd64, &config, &SysboxOverride::default())
            .unwrap()
            .target;
        assert_eq!(t.dockerd.url, m.dockerd.assets[&Arch::Amd64].url);
        assert_eq!(t.dockerd.source, Layer::Config);
        let unpinned: Vec<_> = t.unpinned().iter().map(|u| u.component).collect();
        assert_eq!(unpinned, ["sysbox"]);
        let mirror = SysboxOverride {
            url: Some(Url::parse("https://mirror.example/s.deb").unwrap()),
            ..SysboxOverride::default()
        };
        let t = resolve(&m, Arch::Amd64, &config, &mirror).unwrap().target;
        assert_eq!(
            t.sysbox.sha256_url.as_ref().map(Url::as_str),
            Some("https://mirror.example/s.deb.sha256")
        );
        assert!(t.unpinned().is_empty());
    }

    #[test]
    fn overrides_resolve_by_layer_table() {
        let m = bundled();
        let mirror = "https://mirror.example/sysbox-ce_0.6.8+containai.20260301.linux_amd64.deb";
        let env_url = "file:///srv/sysbox.deb";
        let config = |o: SysboxOverride| Overrides {
            sysbox: o,
            ..Overrides::default()
        };
        // (config, env, want url, want version, want tag, want source, warnings)
        let cases = [
            (
                config(sysbox_override(
                    Some(mirror),
                    Some("0.6.8+containai.20260301"),
                    Some("sysbox-build-20260301-1"),
                )),
                SysboxOverride::default(),
                mirror.to_string(),
                "0.6.8+containai.20260301",
                "sysbox-build-20260301-1",
                Layer::Config,
                0,
            ),
            (
                config(sysbox_override(
                    None,
                    Some("0.6.8+containai.20260301"),
                    Some("sysbox-build-20260301-1"),
                )),
                SysboxOverride::default(),
                format!(
                    "{GH}/sysbox-build-20260301-1/sysbox-ce_0.6.8+containai.20260301.linux_amd64.deb"
                ),
                "0.6.8+containai.20260301",
                "sysbox-build-20260301-1",
                Layer::Config,
                0,
            ),
            // The environment wins over config as a whole; config's URL does not leak in.
            (
                config(sysbox_override(Some(mirror), None, None)),
                sysbox_override(None, Some("0.6.9+containai.20260401"), Some("b-9")),
                format!("{GH}/b-9/sysbox-ce_0.6.9+containai.20260401.linux_amd64.deb"),
                "0.6.9+containai.20260401",
                "b-9",
                Layer::Env,
                0,
            ),
            (
                Overrides::default(),
                sysbox_override(Some(env_url), None, None),
                env_url.to_string(),
                "0.6.7+containai.20260127",
                "sysbox-build-20260127-10",
                Layer::Env,
                0,
            ),
            // One of tag/version: the other comes from the manifest, with a warning.
            (
                Overrides::default(),
                sysbox_override(None, Some("0.6.9+containai.20260401"), None),
                format!(
                    "{GH}/sysbox-build-20260127-10/sysbox-ce_0.6.9+containai.20260401.linux_amd64.deb"
                ),
                "0.6.9+containai.20260401",
                "sysbox-build-20260127-10",
                Layer::Env,
                1,
            ),
            (
                config(sysbox_override(None, None, Some("b-9"))),
                SysboxOverride::default(),
                format!("{GH}/b-9/sysbox-ce_0.6.7+containai.20260127.linux_amd64.deb"),
                "0.6.7+containai.20260127",
                "b-9",
                Layer::Config,
                1,
            ),
        ];
        for (i, (config, env, url, version, tag, source, warnings)) in cases.into_iter().enumerate()
        {
            let r = resolve(&m, Arch::Amd64, &config, &env).unwrap();
            let t = &r.target.sysbox;
            assert_eq!(
                (t.url.as_str(), t.version.as_str(), t.tag.as_str(), t.source),
                (url.as_str(), version, tag, source),
                "case {i}"
            );
            assert_eq!(r.warnings.len(), warnings, "case {i}: {:?}", r.warnings);
            // An override without a sha256 is verified against `<url>.sha256`, never unverified.
            assert_eq!(t.sha256, None, "case {i}");
            assert_eq!(
                t.sha256_url.as_ref().unwrap().as_str(),
                format!("{url}.sha256"),
                "case {i}"
            );
            assert!(!t.url.as_str().contains("latest"), "case {i}");
            assert_eq!(r.target.dockerd.source, Layer::Bundled, "case {i}");
        }
    }

    #[test]
    fn a_lone_tag_or_version_warns_in_one_line_naming_both_keys() {
        let m = bundled();
        let r = resolve(
            &m,
            Arch::Amd64,
            &Overrides::default(),
            &sysbox_override(None, Some("0.6.9+containai.20260401"), None),
        )
        .unwrap();
        assert_eq!(
            r.warnings,
            [
                "CAI_SYSBOX_VERSION = 0.6.9+containai.20260401 is set without CAI_SYSBOX_TAG, so the bundled tag sysbox-build-20260127-10 goes with it and the pair may name no release; set both"
            ]
        );
        let config = Overrides {
            sysbox: sysbox_override(None, None, Some("b-9")),
            ..Overrides::default()
        };
        let r = resolve(&m, Arch::Amd64, &config, &SysboxOverride::default()).unwrap();
        assert!(
            r.warnings[0]
                .starts_with("config sysbox_tag = b-9 is set without config sysbox_version"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn a_pinned_override_sha256_is_used_and_dockerd_overrides_from_config() {
        let m = bundled();
        let sha = Sha256::parse(SHA).unwrap();
        let config = Overrides {
            sysbox: SysboxOverride {
                sha256: Some(sha.clone()),
                ..sysbox_override(Some("https://m.example/s.deb"), None, None)
            },
            dockerd: DockerdOverride {
                version: Some(dockerd_version("28.3.1").unwrap()),
                ..DockerdOverride::default()
            },
        };
        let t = resolve(&m, Arch::Arm64, &config, &SysboxOverride::default())
            .unwrap()
            .target;
        assert_eq!(t.sysbox.sha256, Some(sha.clone()));
        assert_eq!(t.sysbox.sha256_url, None);
        assert_eq!(t.dockerd.source, Layer::Config);
        assert_eq!(t.dockerd.version, "28.3.1");
        assert_eq!(
            t.dockerd.url.as_str(),
            "https://download.docker.com/linux/static/stable/aarch64/docker-28.3.1.tgz"
        );
        assert_eq!(
            t.dockerd.sha256_url.unwrap().as_str(),
            "https://download.docker.com/linux/static/stable/aarch64/docker-28.3.1.tgz.sha256"
        );
        let config = Overrides {
            dockerd: DockerdOverride {
                url: Some(Url::parse("file:///srv/docker.tgz").unwrap()),
                sha256: Some(sha.clone()),
                ..DockerdOverride::default()
            },
            ..Overrides::default()
        };
        let t = resolve(&m, Arch::Amd64, &config, &SysboxOverride::default())
            .unwrap()
            .target;
        assert_eq!(t.dockerd.url.as_str(), "file:///srv/docker.tgz");
        assert_eq!(t.dockerd.version, "28.2.2");
        assert_eq!(t.dockerd.sha256, Some(sha));
        assert_eq!(t.sysbox.source, Layer::Bundled);
    }

    #[test]
    fn environment_values_are_checked_and_named() {
        let env = |url: &str, version: &str, tag: &str| EnvVars {
            sysbox_url: Some(url.into()),
            sysbox_version: Some(version.into()),
            sysbox_tag: Some(tag.into()),
            sysbox_sha256: None,
        };
        assert_eq!(env("", "", "").parse(), Ok(SysboxOverride::default()));
        assert_eq!(EnvVars::default().parse(), Ok(SysboxOverride::default()));
        let ok = env("https://m.example/s.deb", "0.6.8+containai.1", "t-1")
            .parse()
            .unwrap();
        assert_eq!(ok.version.unwrap().full, "0.6.8+containai.1");
        // CAI_SYSBOX_SHA256 pins the environment's artifact (config's pin describes another).
        let pinned = EnvVars {
            sysbox_url: Some("http://m.example/s.deb".into()),
            sysbox_sha256: Some(SHA.to_uppercase().into()),
            ..EnvVars::default()
        }
        .parse()
        .unwrap();
        assert_eq!(pinned.sha256.as_ref().map(Sha256::as_str), Some(SHA));
        let t = resolve(&bundled(), Arch::Amd64, &Overrides::default(), &pinned)
            .unwrap()
            .target;
        assert_eq!(t.sysbox.sha256.as_ref().map(Sha256::as_str), Some(SHA));
        assert_eq!(t.sysbox.sha256_url, None);
        assert_eq!(t.sysbox.sha256_key, "CAI_SYSBOX_SHA256");
        let bad = EnvVars {
            sysbox_sha256: Some("12ab".into()),
            ..EnvVars::default()
        };
        assert!(
            bad.parse()
                .unwrap_err()
                .to_string()
                .starts_with("invalid CAI_SYSBOX_SHA256: \"12ab\" is not a sha256"),
        );
        for (vars, want) in [
            (
                env("ftp://m.example/s.deb", "", ""),
                "invalid CAI_SYSBOX_URL: \"ftp://m.example/s.deb\" is not an https://, http:// or file:// URL\nhelp: fix or unset CAI_SYSBOX_URL",
            ),
            (
                env("", "0.6.8", ""),
                "invalid CAI_SYSBOX_VERSION: \"0.6.8\" is not a ContainAI build",
            ),
            (
                env("", "latest", ""),
                "invalid CAI_SYSBOX_VERSION: malformed sysbox version \"latest\"",
            ),
            (
                env("", "", "a/b"),
                "invalid CAI_SYSBOX_TAG: \"a/b\" is not a release tag",
            ),
        ] {
            let err = vars.parse().unwrap_err().to_string();
            assert!(err.starts_with(want), "want {want:?}, got {err:?}");
        }
        let not_utf8 = EnvVars {
            sysbox_url: Some(std::os::unix::ffi::OsStringExt::from_vec(vec![0xff])),
            ..EnvVars::default()
        };
        assert!(
            not_utf8
                .parse()
                .unwrap_err()
                .to_string()
                .contains("not valid UTF-8")
        );
    }

    #[test]
    fn the_target_serializes_with_every_key_scripts_read() {
        let t = resolve(
            &bundled(),
            Arch::Amd64,
            &Overrides::default(),
            &SysboxOverride::default(),
        )
        .unwrap()
        .target;
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["arch"], "amd64");
        for key in [
            "tag",
            "version",
            "semver",
            "url",
            "sha256",
            "sha256_url",
            "source",
            "sha256_key",
        ] {
            assert!(v["sysbox"].get(key).is_some(), "sysbox.{key}");
        }
        for key in [
            "version",
            "url",
            "sha256",
            "sha256_url",
            "source",
            "sha256_key",
        ] {
            assert!(v["dockerd"].get(key).is_some(), "dockerd.{key}");
        }
        assert_eq!(v["sysbox"]["source"], "bundled");
        assert!(v["sysbox"]["sha256"].is_null());
        assert_eq!(v["sysbox"]["sha256_key"], "sysbox_sha256");
        assert_eq!(v["dockerd"]["sha256_key"], "dockerd_sha256");
    }
}
