//! The script catalog: bundled scripts embedded from `stdlib/`, site overrides in
//! `/etc/containai/scripts/` and user overrides in `~/.config/containai/scripts/` (ignored when
//! running as root). Precedence: user, site, bundled.
//!
//! The catalog also serves unit templates: bundled from `stdlib/units/`, overridden by site in
//! `/etc/containai/units/NAME` (no user layer: a unit runs as root whoever asked for it). It hands
//! out template text and renders it through [`crate::plan::unit`]; it never writes a unit.
//!
//! Scripts and units run as root, so an override is vetted before its text is read: a regular
//! file, owned by root or the invoking user, not group- or world-writable, in a directory that
//! passes the same test. Site overrides live under `--root` and are read through [`Root`]; user
//! overrides and files named on the command line are outside it. There is deliberately no switch
//! that turns this check off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::api::API_VERSION;
use crate::config::Config;
use crate::host::fs::{Root, trusted};
use crate::host::systemd::{self, UnitError};
use crate::host::trust::{Trust, TrustError};
use crate::plan::unit::{self, TemplateError, ValueError};
use crate::term::quoted;

/// Bundled scripts: (name, text). A test checks this table against the files in `stdlib/`.
pub const BUNDLED: &[(&str, &str)] = &[
    ("detect", include_str!("../../stdlib/detect.rhai")),
    ("doctor", include_str!("../../stdlib/doctor.rhai")),
    ("repair", include_str!("../../stdlib/repair.rhai")),
    (
        "stop-containers",
        include_str!("../../stdlib/stop-containers.rhai"),
    ),
    ("update", include_str!("../../stdlib/update.rhai")),
    ("lib/common", include_str!("../../stdlib/lib/common.rhai")),
];

pub const SITE_DIR: &str = "/etc/containai/scripts";

/// Bundled unit templates: (unit name, text). A test checks this table against `stdlib/units/`.
pub const BUNDLED_UNITS: &[(&str, &str)] = &[(
    "containai-docker.service",
    include_str!("../../stdlib/units/containai-docker.service"),
)];

/// Site overrides of unit templates, one file per unit name.
pub const UNIT_SITE_DIR: &str = "/etc/containai/units";

/// Where a script or unit template came from (`source` in listings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Bundled,
    Site,
    User,
    /// A file named on the command line.
    File,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Bundled => "bundled",
            Origin::Site => "site",
            Origin::User => "user",
            Origin::File => "file",
        }
    }
}

/// The declared header of a script: `//! version: X.Y.Z` and `//! api: REQ` in its leading
/// comment lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: semver::Version,
    pub api: semver::VersionReq,
    /// Set when a file named on the command line left a header line out and a default was
    /// assumed: one line for stderr saying so and naming the lines that pin it.
    pub note: Option<String>,
}

/// One script's effective text and where it came from.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub source: Origin,
    pub path: Option<PathBuf>,
    pub text: String,
}

impl Script {
    /// How errors name the script: the file path for files on disk, `NAME.rhai` for bundled ones.
    pub fn display_name(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => format!("{}.rhai", self.name),
        }
    }

    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }

    /// The script's header. Catalog scripts and modules must declare both lines: an override or a module is
    /// looked up by name, so only its header says what it was written for. A file named on the
    /// command line may leave them out (a quick `print("hi")` is a script too) and then runs
    /// against this `cai`'s API, with a note.
    pub fn header(&self) -> Result<Header, CatalogError> {
        let script = self.display_name();
        let refuse = |reason: String| CatalogError::Header {
            script: script.clone(),
            reason,
        };
        let (version, api) = parse_fields(&self.text).map_err(refuse)?;
        if self.source != Origin::File {
            return complete(version, api).map_err(refuse);
        }
        Ok(Header {
            note: missing_note(&script, version.is_none(), api.is_none()),
            version: version.unwrap_or(semver::Version::new(0, 0, 0)),
            api: api.unwrap_or_else(current_api),
        })
    }

    /// Parses the header and checks that this `cai` provides the API the script needs.
    pub fn check_api(&self) -> Result<Header, CatalogError> {
        let header = self.header()?;
        if header.api.matches(&API_VERSION) {
            Ok(header)
        } else {
            Err(CatalogError::Api {
                script: self.display_name(),
                needs: header.api.to_string(),
                provides: API_VERSION.to_string(),
            })
        }
    }
}

/// One unit template's effective text and where it came from.
#[derive(Debug, Clone)]
pub struct UnitTemplate {
    /// The unit name, e.g. `containai-docker.service`.
    pub name: String,
    pub source: Origin,
    pub path: Option<PathBuf>,
    pub text: String,
}

impl UnitTemplate {
    /// How errors name the template: its file, or `units/NAME (bundled)`.
    pub fn display_name(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => format!("units/{} (bundled)", self.name),
        }
    }

    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }

    /// The unit rendered with values built from `config`, checked by [`unit::render`].
    pub fn render(&self, config: &Config) -> Result<String, CatalogError> {
        let values = config.engine_values()?;
        unit::render(&self.display_name(), &self.text, &values).map_err(|error| {
            let help = match &self.path {
                Some(path) => format!(
                    "fix {} and check it with `cai scripts check {}`, or remove it to use the bundled template",
                    path.display(),
                    path.display()
                ),
                None => "the template bundled with this cai is broken; report the bug".to_string(),
            };
            CatalogError::UnitTemplate { error, help }
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "no script named {}\nhelp: `cai scripts list` shows the available scripts; pass a path ending in .rhai to run a file",
        quoted(.0)
    )]
    NotFound(String),
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    #[error("script file {} does not exist\nhelp: check the path, or `cai scripts list` for catalog scripts", .0.display())]
    FileMissing(PathBuf),
    #[error(
        "{script}: {reason}\nhelp: start the script with `//! version: 1.0.0` and `//! api: 1`"
    )]
    Header { script: String, reason: String },
    #[error(
        "{script} needs primitive API {needs} but this cai provides API {provides}\nhelp: upgrade cai, or use a version of the script written for API {provides}"
    )]
    Api {
        script: String,
        needs: String,
        provides: String,
    },
    #[error(
        "invalid module name {}: names use only a-z, 0-9, _, - and /, never absolute paths or `..`",
        quoted(.0)
    )]
    InvalidName(String),
    #[error(
        "no unit template named {}\nhelp: `cai scripts list` shows the unit templates (units/NAME)",
        quoted(.0)
    )]
    UnitNotFound(String),
    #[error(transparent)]
    UnitName(#[from] UnitError),
    #[error(transparent)]
    UnitValue(#[from] ValueError),
    #[error("{error}\nhelp: {help}")]
    UnitTemplate { error: TemplateError, help: String },
}

/// The header of a catalog script: both lines must be there.
pub fn parse_header(text: &str) -> Result<Header, String> {
    let (version, api) = parse_fields(text)?;
    complete(version, api)
}

/// Both lines, or the error that names the first one missing.
fn complete(
    version: Option<semver::Version>,
    api: Option<semver::VersionReq>,
) -> Result<Header, String> {
    match (version, api) {
        (Some(version), Some(api)) => Ok(Header {
            version,
            api,
            note: None,
        }),
        (None, _) => Err("the script declares no version".into()),
        (_, None) => Err("the script declares no api version".into()),
    }
}

/// What a file named on the command line left out of its header, as a note for stderr.
fn missing_note(script: &str, no_version: bool, no_api: bool) -> Option<String> {
    let pin_version = "`//! version: 1.0.0`";
    let pin_api = format!("`//! api: {}`", API_VERSION.major);
    match (no_version, no_api) {
        (true, true) => Some(format!(
            "{script} declares no version or api, so it runs against API {API_VERSION} (add {pin_version} and {pin_api} to pin it)"
        )),
        (false, true) => Some(format!(
            "{script} declares no api, so it runs against API {API_VERSION} (add {pin_api} to pin it)"
        )),
        (true, false) => Some(format!(
            "{script} declares no version (add {pin_version} to give it one)"
        )),
        (false, false) => None,
    }
}

/// The requirement assumed for a file without an api line: the API this `cai` provides
/// (`^1.0.0`), so a later `cai` with an incompatible API refuses the file instead of guessing.
fn current_api() -> semver::VersionReq {
    semver::VersionReq {
        comparators: vec![semver::Comparator {
            op: semver::Op::Caret,
            major: API_VERSION.major,
            minor: Some(API_VERSION.minor),
            patch: Some(API_VERSION.patch),
            pre: API_VERSION.pre.clone(),
        }],
    }
}

/// The `version` and `api` lines of the leading comment block, each when present; a line that is
/// there but malformed is an error, whoever the script is.
fn parse_fields(
    text: &str,
) -> Result<(Option<semver::Version>, Option<semver::VersionReq>), String> {
    let mut version = None;
    let mut api = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        let Some(rest) = line.strip_prefix("//") else {
            break;
        };
        let rest = rest.trim_start_matches(['!', '/']).trim();
        if let Some((key, value)) = rest.split_once(':') {
            let value = value.trim();
            match key.trim() {
                "version" => {
                    version = Some(semver::Version::parse(value).map_err(|e| {
                        format!("declared version {} is not semver: {e}", quoted(value))
                    })?);
                }
                "api" => {
                    api = Some(semver::VersionReq::parse(value).map_err(|e| {
                        format!(
                            "declared api {} is not a version requirement: {e}",
                            quoted(value)
                        )
                    })?);
                }
                _ => {}
            }
        }
    }
    Ok((version, api))
}

/// Module and script names: `[a-z0-9_/-]+`, no empty, `.` or `..` segments, not absolute.
pub fn validate_name(name: &str) -> Result<(), CatalogError> {
    let chars_ok = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'/')
        });
    let segments_ok = name.split('/').all(|s| !s.is_empty());
    if chars_ok && segments_ok {
        Ok(())
    } else {
        Err(CatalogError::InvalidName(name.to_string()))
    }
}

/// Where overrides are looked up, and who may own them.
#[derive(Debug, Clone)]
pub struct Catalog {
    root: Arc<Root>,
    user_dir: Option<PathBuf>,
    trust: Trust,
}

impl Catalog {
    /// Site overrides are [`SITE_DIR`] under `root`; `user_dir` is used only when not running as
    /// root.
    pub fn new(root: Arc<Root>, user_dir: Option<PathBuf>, trust: Trust) -> Self {
        Self {
            root,
            user_dir: if trust.is_root() { None } else { user_dir },
            trust,
        }
    }

    /// The effective script for `name`: user, then site, then bundled.
    pub fn resolve(&self, name: &str) -> Result<Script, CatalogError> {
        validate_name(name)?;
        let file = format!("{name}.rhai");
        if let Some(user) = &self.user_dir {
            let path = user.join(&file);
            if let Some(text) = trusted::read(&self.trust, &path)? {
                return Ok(Script {
                    name: name.to_string(),
                    source: Origin::User,
                    path: Some(path),
                    text,
                });
            }
        }
        let (source, path, text) = self
            .site_or_bundled(SITE_DIR, &file, BUNDLED, name)?
            .ok_or_else(|| CatalogError::NotFound(name.to_string()))?;
        Ok(Script {
            name: name.to_string(),
            source,
            path,
            text,
        })
    }

    /// The site copy of `file` in `site_dir` (under the root, vetted), else the bundled text of
    /// `name`, with where it came from.
    fn site_or_bundled(
        &self,
        site_dir: &str,
        file: &str,
        bundled: &[(&str, &str)],
        name: &str,
    ) -> Result<Option<(Origin, Option<PathBuf>, String)>, CatalogError> {
        let site = Path::new(site_dir).join(file);
        if let Some(text) = self.root.read_trusted(&self.trust, &site)? {
            return Ok(Some((
                Origin::Site,
                Some(self.root.display_path(&site)),
                text,
            )));
        }
        Ok(bundled
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| (Origin::Bundled, None, (*text).to_string())))
    }

    /// The text of a file named on the command line, vetted like an override.
    fn read_named_file(&self, path: &Path) -> Result<String, CatalogError> {
        trusted::read(&self.trust, path)?
            .ok_or_else(|| CatalogError::FileMissing(path.to_path_buf()))
    }

    /// A script file named on the command line; vetted like an override.
    pub fn load_file(&self, path: &Path) -> Result<Script, CatalogError> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = self.read_named_file(path)?;
        Ok(Script {
            name,
            source: Origin::File,
            path: Some(path.to_path_buf()),
            text,
        })
    }

    /// The version the bundled script `name` declares, when there is one.
    pub fn bundled_version(name: &str) -> Option<semver::Version> {
        BUNDLED
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, text)| parse_header(text).ok())
            .map(|h| h.version)
    }

    /// Every script name that resolves, with its effective copy (or the error that refuses it).
    pub fn list(&self) -> Vec<(String, Result<Script, CatalogError>)> {
        let mut names: BTreeMap<String, ()> = BUNDLED
            .iter()
            .map(|(n, _)| ((*n).to_string(), ()))
            .collect();
        if let Some(user) = &self.user_dir {
            for name in scan_dir(user) {
                names.insert(name, ());
            }
        }
        for name in self.scan_site() {
            names.insert(name, ());
        }
        names
            .into_keys()
            .map(|n| (n.clone(), self.resolve(&n)))
            .collect()
    }
}

impl Catalog {
    /// Script names in the site directory under the root; unreadable directories list nothing
    /// here, and resolving a name reports why.
    fn scan_site(&self) -> Vec<String> {
        let dir = Path::new(SITE_DIR);
        let mut names = Vec::new();
        for (sub, prefix) in [(dir.to_path_buf(), ""), (dir.join("lib"), "lib/")] {
            let Ok(Some(entries)) = self.root.list_dir(&sub) else {
                continue;
            };
            names.extend(script_names(entries, prefix));
        }
        names
    }

    /// The effective template of unit `name`: site, then bundled.
    pub fn unit_template(&self, name: &str) -> Result<UnitTemplate, CatalogError> {
        systemd::validate_name(name)?;
        let (source, path, text) = self
            .site_or_bundled(UNIT_SITE_DIR, name, BUNDLED_UNITS, name)?
            .ok_or_else(|| CatalogError::UnitNotFound(name.to_string()))?;
        Ok(UnitTemplate {
            name: name.to_string(),
            source,
            path,
            text,
        })
    }

    /// A unit template file named on the command line (`cai scripts check FILE`); vetted like an
    /// override.
    pub fn load_unit_file(&self, path: &Path) -> Result<UnitTemplate, CatalogError> {
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = self.read_named_file(path)?;
        Ok(UnitTemplate {
            name,
            source: Origin::File,
            path: Some(path.to_path_buf()),
            text,
        })
    }

    /// Every unit template name that resolves, with its effective copy (or why it is refused).
    pub fn unit_templates(&self) -> Vec<(String, Result<UnitTemplate, CatalogError>)> {
        let mut names: BTreeMap<String, ()> = BUNDLED_UNITS
            .iter()
            .map(|(n, _)| ((*n).to_string(), ()))
            .collect();
        if let Ok(Some(entries)) = self.root.list_dir(Path::new(UNIT_SITE_DIR)) {
            for entry in entries {
                let name = entry.to_string_lossy().into_owned();
                if systemd::validate_name(&name).is_ok() {
                    names.insert(name, ());
                }
            }
        }
        names
            .into_keys()
            .map(|n| (n.clone(), self.unit_template(&n)))
            .collect()
    }
}

/// Whether `path` names a unit template rather than a script (`cai scripts check FILE`).
pub fn is_unit_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| systemd::validate_name(n).is_ok())
}

/// Names of `*.rhai` files in `dir` and its `lib/` subdirectory (outside the root).
fn scan_dir(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for (sub, prefix) in [(dir.to_path_buf(), ""), (dir.join("lib"), "lib/")] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        names.extend(script_names(
            entries.flatten().map(|entry| entry.file_name()),
            prefix,
        ));
    }
    names
}

fn script_names(
    entries: impl IntoIterator<Item = std::ffi::OsString>,
    prefix: &str,
) -> Vec<String> {
    entries
        .into_iter()
        .filter_map(|name| {
            let name = name.to_string_lossy().into_owned();
            let full = format!("{prefix}{}", name.strip_suffix(".rhai")?);
            validate_name(&full).is_ok().then_some(full)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_table() {
        let ok = parse_header("//! version: 1.2.3\n//! api: 1\nlet x = 1;").unwrap();
        assert_eq!(ok.version, semver::Version::new(1, 2, 3));
        assert!(ok.api.matches(&API_VERSION));
        assert!(
            parse_header("//! api: 1\n")
                .unwrap_err()
                .contains("no version")
        );
        assert!(
            parse_header("//! version: 1.0.0\n")
                .unwrap_err()
                .contains("no api")
        );
        assert!(
            parse_header("//! version: one\n//! api: 1")
                .unwrap_err()
                .contains("not semver")
        );
        // The header must be in the leading comment block.
        assert!(parse_header("let x = 1;\n//! version: 1.0.0\n//! api: 1").is_err());
        assert!(
            !parse_header("//! version: 1.0.0\n//! api: >=2")
                .unwrap()
                .api
                .matches(&API_VERSION)
        );
    }

    #[test]
    fn only_files_named_on_the_command_line_may_leave_the_header_out() {
        let script = |source, text: &str| Script {
            name: "x".into(),
            source,
            path: Some(PathBuf::from("/tmp/x.rhai")),
            text: text.into(),
        };
        let bare = script(Origin::File, "print(\"hi\");").check_api().unwrap();
        assert_eq!(bare.version, semver::Version::new(0, 0, 0));
        assert_eq!(bare.api.to_string(), format!("^{API_VERSION}"));
        let note = bare.note.unwrap();
        assert!(
            note.starts_with("/tmp/x.rhai declares no version or api, so it runs against API"),
            "{note}"
        );
        assert!(
            note.contains("`//! version: 1.0.0` and `//! api: 1`"),
            "{note}"
        );

        let api_only = script(Origin::File, "//! api: 1\n").check_api().unwrap();
        assert!(api_only.note.unwrap().contains("declares no version ("));
        let version_only = script(Origin::File, "//! version: 2.1.0\n")
            .check_api()
            .unwrap();
        assert_eq!(version_only.version, semver::Version::new(2, 1, 0));
        assert!(version_only.note.unwrap().contains("declares no api, so"));
        let full = script(Origin::File, "//! version: 1.0.0\n//! api: 1\n");
        assert_eq!(full.check_api().unwrap().note, None);

        // A declared line is still checked: a wrong api or a malformed version is refused.
        assert!(matches!(
            script(Origin::File, "//! api: 2\n").check_api(),
            Err(CatalogError::Api { .. })
        ));
        assert!(matches!(
            script(Origin::File, "//! version: one\n").check_api(),
            Err(CatalogError::Header { .. })
        ));
        for source in [Origin::Bundled, Origin::Site, Origin::User] {
            for text in ["print(\"hi\");", "//! api: 1\n", "//! version: 1.0.0\n"] {
                assert!(
                    matches!(
                        script(source, text).check_api(),
                        Err(CatalogError::Header { .. })
                    ),
                    "{source:?}: {text}"
                );
            }
        }
    }

    #[test]
    fn module_names_table() {
        for ok in ["update", "lib/common", "a-b_c/d0"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/etc/passwd",
            "../x",
            "lib/../x",
            "a//b",
            "",
            "A",
            "x.rhai",
            "lib/",
            "a b",
            "..",
            "./x",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_stdlib_unit_is_bundled_and_renders_with_the_default_config() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/units");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let bundled: Vec<String> = BUNDLED_UNITS
            .iter()
            .map(|(n, _)| (*n).to_string())
            .collect();
        assert_eq!(on_disk, bundled);
        let empty = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(
            Arc::new(Root::open(empty.path()).unwrap()),
            None,
            Trust::new(None),
        );
        for (name, unit) in catalog.unit_templates() {
            let unit = unit.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(unit.source, Origin::Bundled);
            assert!(systemd::check_writable(&name).is_ok(), "{name}");
            unit.render(&Config::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn site_unit_templates_override_when_trusted_and_are_refused_otherwise() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let units = root.path().join("etc/containai/units");
        std::fs::create_dir_all(&units).unwrap();
        for dir in ["etc", "etc/containai", "etc/containai/units"] {
            let mode = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(root.path().join(dir), mode).unwrap();
        }
        let catalog = Catalog::new(
            Arc::new(Root::open(root.path()).unwrap()),
            None,
            Trust::new(None),
        );
        let name = "containai-docker.service";
        let file = units.join(name);
        std::fs::write(&file, "[Service]\nExecStart={{dockerd}} --site\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let unit = catalog.unit_template(name).unwrap();
        assert_eq!(unit.source, Origin::Site);
        assert_eq!(unit.display_name(), file.display().to_string());
        assert_eq!(
            unit.render(&Config::default()).unwrap(),
            "[Service]\nExecStart=/opt/containai/bin/dockerd --site\n"
        );

        std::fs::write(
            &file,
            "[Service]\nExecStart={{dockerd}}\nExecStopPre=/bin/true\n",
        )
        .unwrap();
        let err = catalog
            .unit_template(name)
            .unwrap()
            .render(&Config::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "unit template {} line 3: ExecStopPre=",
                file.display()
            )),
            "{err}"
        );
        assert!(err.contains("help: fix "), "{err}");

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = catalog.unit_template(name).unwrap_err().to_string();
        assert!(err.contains("group- or world-writable"), "{err}");
        // Only unit names: nothing outside the directory can be named.
        for bad in ["../x.service", "x", "/etc/passwd"] {
            assert!(catalog.unit_template(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            catalog.unit_template("containai-none.service"),
            Err(CatalogError::UnitNotFound(_))
        ));
        assert!(is_unit_file(Path::new("/x/containai-docker.service")));
        assert!(!is_unit_file(Path::new("/x/update.rhai")));
    }

    #[test]
    fn every_stdlib_file_is_bundled_with_a_valid_header() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
        let mut on_disk = scan_dir(&root);
        on_disk.sort();
        let mut bundled: Vec<String> = BUNDLED.iter().map(|(n, _)| (*n).to_string()).collect();
        bundled.sort();
        assert_eq!(on_disk, bundled);
        for (name, text) in BUNDLED {
            let header = parse_header(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(header.api.matches(&API_VERSION), "{name}");
        }
    }
}
