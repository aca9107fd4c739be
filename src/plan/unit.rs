//! Unit files from templates: fills the `{{placeholder}}`s of a catalog template with typed,
//! validated values, checks that the result is a unit file `cai` is willing to install, compares
//! it with the file on disk and shows the difference as a unified diff.
//!
//! Pure: text and values in, text or an error naming the template and line out; nothing here
//! reads the machine. It must never pass through anything it cannot vouch for: a unit file is a
//! command systemd runs as root, and systemd itself only warns about what it does not understand
//! (`ExecStopPre=` is ignored with a log line), so every value is checked before it is spliced in
//! and every directive must be on a small allow-list.

use std::path::Path;

use serde::Serialize;

use crate::plan::layout::{DAEMON_CONFIG, SITE_CONFIG};
use crate::term::quoted;

/// The bundle's active dockerd (a symlink switched atomically by updates).
pub const DOCKERD: &str = "/opt/containai/bin/dockerd";
/// The engine's exec root and pid file: apart from a system Docker's, so the two never meet.
pub const EXEC_ROOT: &str = "/var/run/containai-docker";
pub const PIDFILE: &str = "/var/run/containai-docker.pid";
/// The `cai` the stop hook calls. A fixed root-owned location, not the running executable: the
/// running one may be a build tree or `~/.cargo/bin` (writable by a user, yet run as root by
/// systemd), and under `--root` it is not even part of the tree being prepared.
pub const CAI: &str = "/usr/local/bin/cai";
/// How much longer systemd waits for the stop than the stop hook gives the containers: the hook
/// lists containers first and dockerd needs a moment to exit after them.
pub const STOP_MARGIN_SECS: u64 = 60;
/// The container stop timeout a unit accepts (the same bounds as `stop_timeout_secs` in config).
pub const STOP_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;

/// Every placeholder a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "dockerd",
    "socket",
    "data_root",
    "exec_root",
    "pidfile",
    "cai",
    "daemon_config",
    "stop_timeout_secs",
    "timeout_stop_secs",
];

/// Directives a template may use, per section: what the engine unit needs and nothing else.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "Unit",
        &[
            "Description",
            "Documentation",
            "After",
            "Wants",
            "Requires",
            "PartOf",
            "StartLimitIntervalSec",
            "StartLimitBurst",
        ],
    ),
    (
        "Service",
        &[
            "Type",
            "ExecStart",
            "ExecStop",
            "TimeoutStartSec",
            "TimeoutStopSec",
            "Restart",
            "RestartSec",
            "KillMode",
            "Delegate",
            "LimitNOFILE",
            "LimitNPROC",
            "TasksMax",
            "OOMScoreAdjust",
        ],
    ),
    ("Install", &["WantedBy"]),
];

/// A value that cannot be put into a unit file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid unit value {placeholder} = {}: {reason}\nhelp: {help}", quoted(.value))]
pub struct ValueError {
    pub placeholder: &'static str,
    pub value: String,
    pub reason: String,
    pub help: String,
}

/// A template that does not render into an acceptable unit file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unit template {template}{}: {problem}", line_suffix(*.line))]
pub struct TemplateError {
    /// How the caller names the template (its path, or `units/NAME (bundled)`).
    pub template: String,
    /// 1-based line in the template; `None` for a problem of the whole file.
    pub line: Option<usize>,
    pub problem: String,
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|n| format!(" line {n}")).unwrap_or_default()
}

/// An absolute path that is safe to splice into a unit file: systemd would otherwise split it
/// at whitespace, expand `%` specifiers and `$` variables, or unquote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPath(String);

impl UnitPath {
    /// `help` says how the operator fixes the value (which config key to change).
    pub fn new(placeholder: &'static str, path: &Path, help: &str) -> Result<Self, ValueError> {
        let text = path.to_string_lossy().into_owned();
        let invalid = |reason: &str| ValueError {
            placeholder,
            value: text.clone(),
            reason: reason.to_string(),
            help: help.to_string(),
        };
        if path.to_str().is_none() {
            return Err(invalid("a unit path must be valid UTF-8"));
        }
        if !path.is_absolute() {
            return Err(invalid("a unit path must be absolute"));
        }
        // `Path::components` folds `.` away, so look at the text's own segments.
        if text
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            return Err(invalid("a unit path must not contain . or .. components"));
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(&format!(
                "a unit path must not contain whitespace or control characters (found {c:?})"
            )));
        }
        if let Some(c) = text
            .chars()
            .find(|c| matches!(c, '%' | '"' | '\'' | '\\' | '$' | '{' | '}' | ';'))
        {
            return Err(invalid(&format!(
                "a unit path must not contain {c:?} (systemd gives it a meaning)"
            )));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything a template can ask for, each value checked when it is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitValues {
    pub dockerd: UnitPath,
    pub socket: UnitPath,
    pub data_root: UnitPath,
    pub exec_root: UnitPath,
    pub pidfile: UnitPath,
    pub cai: UnitPath,
    /// The daemon configuration dockerd reads (`--config-file`).
    pub daemon_config: UnitPath,
    /// How long the stop hook gives each container.
    pub stop_timeout_secs: u64,
    /// systemd's `TimeoutStopSec`: the stop timeout plus [`STOP_MARGIN_SECS`].
    pub timeout_stop_secs: u64,
}

impl UnitValues {
    /// The engine's values: socket, data root and stop timeout from the operator, the rest fixed.
    /// Paths are the ones the running host sees (never prefixed with `--root`): the unit is read
    /// by the systemd of the tree it is written into.
    pub fn engine(
        socket: &Path,
        data_root: &Path,
        stop_timeout_secs: u64,
    ) -> Result<Self, ValueError> {
        let config_help = |key: &str| {
            format!(
                "set {key} in {} to an absolute path without whitespace, quotes, %, $, \\, ; or braces",
                SITE_CONFIG
            )
        };
        let fixed = "this path is fixed in cai; report the bug";
        if !STOP_TIMEOUT_RANGE.contains(&stop_timeout_secs) {
            return Err(ValueError {
                placeholder: "stop_timeout_secs",
                value: stop_timeout_secs.to_string(),
                reason: format!(
                    "outside {}..={}",
                    STOP_TIMEOUT_RANGE.start(),
                    STOP_TIMEOUT_RANGE.end()
                ),
                help: format!(
                    "set stop_timeout_secs in {} to a number of seconds in that range",
                    SITE_CONFIG
                ),
            });
        }
        Ok(Self {
            dockerd: UnitPath::new("dockerd", Path::new(DOCKERD), fixed)?,
            socket: UnitPath::new("socket", socket, &config_help("socket"))?,
            data_root: UnitPath::new("data_root", data_root, &config_help("data_root"))?,
            exec_root: UnitPath::new("exec_root", Path::new(EXEC_ROOT), fixed)?,
            pidfile: UnitPath::new("pidfile", Path::new(PIDFILE), fixed)?,
            cai: UnitPath::new("cai", Path::new(CAI), fixed)?,
            daemon_config: UnitPath::new("daemon_config", Path::new(DAEMON_CONFIG), fixed)?,
            stop_timeout_secs,
            timeout_stop_secs: stop_timeout_secs + STOP_MARGIN_SECS,
        })
    }

    /// The engine's values from the operator's settings (config `socket`, `data_root`,
    /// `stop_timeout_secs`). Units run on Linux, in WSL2 or inside the Lima VM: the Linux socket
    /// when none is set.
    pub fn for_settings(
        socket: Option<&Path>,
        data_root: &Path,
        stop_timeout_secs: u64,
    ) -> Result<Self, ValueError> {
        let socket = socket.unwrap_or(Path::new(crate::plan::layout::LINUX_SOCKET));
        Self::engine(socket, data_root, stop_timeout_secs)
    }

    fn get(&self, placeholder: &str) -> Option<String> {
        let path = |p: &UnitPath| Some(p.as_str().to_string());
        match placeholder {
            "dockerd" => path(&self.dockerd),
            "socket" => path(&self.socket),
            "data_root" => path(&self.data_root),
            "exec_root" => path(&self.exec_root),
            "pidfile" => path(&self.pidfile),
            "cai" => path(&self.cai),
            "daemon_config" => path(&self.daemon_config),
            "stop_timeout_secs" => Some(self.stop_timeout_secs.to_string()),
            "timeout_stop_secs" => Some(self.timeout_stop_secs.to_string()),
            _ => None,
        }
    }
}

/// Fills every placeholder of `text` and checks the result with [`check`]; `template` names it
/// in errors. Lines keep their numbers, so an error in the result points at the template line.
pub fn render(template: &str, text: &str, values: &UnitValues) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len() + 256);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        out.push_str(&fill(line, values).map_err(|problem| TemplateError {
            template: template.to_string(),
            line: Some(i + 1),
            problem,
        })?);
    }
    check(template, &out, values.stop_timeout_secs)?;
    Ok(out)
}

fn fill(line: &str, values: &UnitValues) -> Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(
                "leftover `{{` without a closing `}}` (placeholders are written {{name}})".into(),
            );
        };
        let name = after[..end].trim();
        let value = values.get(name).ok_or_else(|| {
            let known: Vec<String> = PLACEHOLDERS
                .iter()
                .map(|p| format!("{{{{{p}}}}}"))
                .collect();
            format!(
                "unknown placeholder {{{{{name}}}}}; known: {}",
                known.join(", ")
            )
        })?;
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One `Key=Value` line of a unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub section: String,
    pub key: String,
    pub value: String,
    /// 1-based line where the directive starts.
    pub line: usize,
}

/// Checks that `text` is a unit file `cai` installs: only `[Unit]`, `[Service]` and `[Install]`,
/// each at most once; `Key=Value` lines with allow-listed keys; no placeholder left; an
/// `ExecStart=` with an absolute command; and, when there is a stop hook (`ExecStop=`), a
/// `TimeoutStopSec=` longer than the container stop timeout so systemd does not kill the
/// engine while the hook is still stopping containers.
pub fn check(
    template: &str,
    text: &str,
    stop_timeout_secs: u64,
) -> Result<Vec<Directive>, TemplateError> {
    let at = |line: Option<usize>, problem: String| TemplateError {
        template: template.to_string(),
        line,
        problem,
    };
    let directives = parse(text).map_err(|(line, problem)| at(Some(line), problem))?;
    let first = |key: &str| directives.iter().find(|d| d.key == key);
    if first("ExecStart").is_none() {
        return Err(at(
            None,
            "no ExecStart= in [Service]; a service unit needs a command".into(),
        ));
    }
    for d in directives.iter().filter(|d| d.key.starts_with("Exec")) {
        let command = d.value.trim_start_matches(['-', '@', ':', '+', '!']);
        if !command.starts_with('/') {
            return Err(at(
                Some(d.line),
                format!(
                    "{}= must start with an absolute command path, found {}",
                    d.key,
                    quoted(&d.value)
                ),
            ));
        }
    }
    if let Some(stop) = first("ExecStop") {
        // systemd keeps the last assignment of a single-valued setting.
        let Some(timeout) = directives.iter().rev().find(|d| d.key == "TimeoutStopSec") else {
            return Err(at(
                Some(stop.line),
                format!(
                    "ExecStop= needs TimeoutStopSec= above the container stop timeout ({stop_timeout_secs} s); systemd's default of 90 s would kill the engine while containers stop"
                ),
            ));
        };
        match parse_seconds(&timeout.value) {
            Some(secs) if secs > stop_timeout_secs => {}
            Some(secs) => {
                return Err(at(
                    Some(timeout.line),
                    format!(
                        "TimeoutStopSec={secs} must exceed the container stop timeout ({stop_timeout_secs} s) so the ExecStop= hook can finish"
                    ),
                ));
            }
            None => {
                return Err(at(
                    Some(timeout.line),
                    format!(
                        "TimeoutStopSec={} must be whole seconds (e.g. {{{{timeout_stop_secs}}}}) or infinity",
                        quoted(&timeout.value)
                    ),
                ));
            }
        }
    }
    Ok(directives)
}

/// `N`, `Ns` or `infinity` (as `u64::MAX`); anything else is not understood here.
fn parse_seconds(value: &str) -> Option<u64> {
    let value = value.trim();
    if value == "infinity" {
        return Some(u64::MAX);
    }
    value.strip_suffix('s').unwrap_or(value).parse().ok()
}

/// Splits a unit file into directives, refusing what systemd would warn about and ignore.
fn parse(text: &str) -> Result<Vec<Directive>, (usize, String)> {
    let mut directives = Vec::new();
    let mut seen_sections: Vec<String> = Vec::new();
    let mut section: Option<&'static (&'static str, &'static [&'static str])> = None;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((number, raw)) = lines.next() {
        if let Some(c) = raw.chars().find(|c| c.is_control() && *c != '\t') {
            return Err((number, format!("control character {c:?} in the line")));
        }
        if raw.contains("{{") {
            return Err((number, "leftover `{{` in the rendered unit".into()));
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']') else {
                return Err((number, format!("malformed section header {}", quoted(line))));
            };
            let Some(allowed) = ALLOWED.iter().find(|(s, _)| *s == name) else {
                return Err((
                    number,
                    format!(
                        "section [{name}] is not allowed; a unit cai installs has only [Unit], [Service] and [Install]"
                    ),
                ));
            };
            if seen_sections.iter().any(|s| s == name) {
                return Err((number, format!("section [{name}] appears twice")));
            }
            seen_sections.push(name.to_string());
            section = Some(allowed);
            continue;
        }
        // A trailing backslash continues the directive on the next line, as in systemd.
        let mut logical = line.to_string();
        while logical.ends_with('\\') {
            logical.pop();
            let Some((_, next)) = lines.next() else {
                return Err((number, "a continued line (\\) ends the file".into()));
            };
            if next.chars().any(|c| c.is_control() && c != '\t') || next.contains("{{") {
                return Err((number, "invalid continuation line".into()));
            }
            logical = format!("{} {}", logical.trim_end(), next.trim());
        }
        let Some((key, value)) = logical.split_once('=') else {
            return Err((
                number,
                format!("expected Key=Value, found {}", quoted(line)),
            ));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err((number, format!("malformed directive name {}", quoted(key))));
        }
        let Some((section_name, keys)) = section else {
            return Err((
                number,
                format!("{key}= comes before any section header such as [Unit]"),
            ));
        };
        if key == "ExecStopPre" {
            return Err((
                number,
                "ExecStopPre= does not exist for services (systemd ignores it); stop work belongs in ExecStop=".into(),
            ));
        }
        // The bundle's dockerd finds containerd and runc on PATH; no other variable may be set
        // (LD_PRELOAD and friends would run code as root).
        if key == "Environment" && *section_name == "Service" {
            let path_only = value.trim().strip_prefix("PATH=").is_some_and(|dirs| {
                !dirs.is_empty()
                    && dirs.split(':').all(|dir| {
                        dir.starts_with('/')
                            && dir.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.')
                            })
                    })
            });
            if !path_only {
                return Err((
                    number,
                    "Environment= may only set PATH, to absolute directories (PATH=/a:/b)".into(),
                ));
            }
            directives.push(Directive {
                section: (*section_name).to_string(),
                key: key.to_string(),
                value: value.trim().to_string(),
                line: number,
            });
            continue;
        }
        if !keys.contains(&key) {
            return Err((
                number,
                format!(
                    "{key}= is not allowed in [{section_name}]; cai installs only {}",
                    keys.iter()
                        .map(|k| format!("{k}="))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        directives.push(Directive {
            section: (*section_name).to_string(),
            key: key.to_string(),
            value: value.trim().to_string(),
            line: number,
        });
    }
    if !seen_sections.iter().any(|s| s == "Service") {
        return Err((text.lines().count().max(1), "no [Service] section".into()));
    }
    Ok(directives)
}

/// A file as `cai` would write it (a rendered unit, the daemon configuration) beside the file on
/// disk, compared with [`is_current`] and [`diff`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The file as plans name it (`VM:PATH` inside the Lima VM).
    pub path: String,
    pub text: String,
    /// `None`: the file does not exist.
    pub on_disk: Option<String>,
}

impl Rendered {
    pub fn is_current(&self) -> bool {
        is_current(self.on_disk.as_deref(), &self.text)
    }

    pub fn diff(&self) -> String {
        diff(&self.path, self.on_disk.as_deref(), &self.text)
    }

    /// Where the file on disk stands against the rendered text, with the diff that shows it.
    pub fn compare(&self) -> Comparison {
        Comparison {
            state: FileState::of(self.on_disk.as_deref(), &self.text),
            diff: self.diff(),
        }
    }
}

/// A managed file against what `cai` would write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// It holds the rendered text, trailing newlines aside [P18].
    Current,
    /// It exists and holds something else.
    Differs,
    /// It does not exist.
    Missing,
}

impl FileState {
    pub fn of(on_disk: Option<&str>, rendered: &str) -> Self {
        match on_disk {
            None => FileState::Missing,
            Some(_) if is_current(on_disk, rendered) => FileState::Current,
            Some(_) => FileState::Differs,
        }
    }
}

/// What scripts get from `units::state` and `dockerd::config_state`: the state, and the unified
/// diff from the file on disk to the rendered text ("" when current).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub state: FileState,
    pub diff: String,
}

/// Whether the file on disk already holds `rendered`; trailing newlines do not count [P18].
pub fn is_current(on_disk: Option<&str>, rendered: &str) -> bool {
    on_disk.is_some_and(|text| text.trim_end_matches('\n') == rendered.trim_end_matches('\n'))
}

/// A unified diff from the file on disk (`None`: absent) to the rendered unit, empty when the file
/// is current. Both sides end in exactly one newline first, so a trailing-newline difference
/// never shows up as a change [P18].
pub fn diff(path: &str, on_disk: Option<&str>, rendered: &str) -> String {
    if is_current(on_disk, rendered) {
        return String::new();
    }
    let normal = |text: &str| {
        let text = text.trim_end_matches('\n');
        if text.is_empty() {
            String::new()
        } else {
            format!("{text}\n")
        }
    };
    let old = normal(on_disk.unwrap_or(""));
    let new = normal(rendered);
    let old_name = if on_disk.is_some() { path } else { "/dev/null" };
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, &format!("{path} (rendered)"))
        .to_string()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::plan::layout::LINUX_SOCKET;

    const BUNDLED: &str = include_str!("../../stdlib/units/containai-docker.service");

    fn values() -> UnitValues {
        UnitValues::engine(
            Path::new("/var/run/containai-docker.sock"),
            Path::new("/var/lib/containai-docker"),
            100,
        )
        .unwrap()
    }

    /// A minimal valid unit around `body` (lines for [Service]).
    fn unit(body: &str) -> String {
        format!(
            "[Unit]\nDescription=x\n\n[Service]\nExecStart={{{{dockerd}}}}\n{body}\n[Install]\nWantedBy=multi-user.target\n"
        )
    }

    #[test]
    fn the_bundled_engine_unit_renders_with_every_value() {
        let text = render("units/containai-docker.service", BUNDLED, &values()).unwrap();
        for want in [
            "ExecStart=/opt/containai/bin/dockerd --config-file=/etc/containai/docker/daemon.json\n",
            "ExecStop=/usr/local/bin/cai system stop-containers --timeout=100",
            "TimeoutStopSec=160",
            "PartOf=sysbox-mgr.service sysbox-fs.service",
            "Requires=sysbox-mgr.service sysbox-fs.service",
            "Restart=always",
            "Environment=PATH=/opt/containai/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "OOMScoreAdjust=-500",
            "WantedBy=multi-user.target",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert!(!text.contains("{{"));
        assert_eq!(text.lines().count(), BUNDLED.lines().count());
        let after = check("t", &text, 100)
            .unwrap()
            .into_iter()
            .find(|d| d.key == "After")
            .unwrap();
        assert!(after.value.contains("sysbox-mgr.service sysbox-fs.service"));
    }

    #[test]
    fn values_follow_config_and_are_validated() {
        let v = UnitValues::engine(
            Path::new("/run/cai/engine.sock"),
            Path::new("/srv/engine"),
            30,
        )
        .unwrap();
        assert_eq!(v.socket.as_str(), "/run/cai/engine.sock");
        assert_eq!(v.data_root.as_str(), "/srv/engine");
        assert_eq!((v.stop_timeout_secs, v.timeout_stop_secs), (30, 90));
        let default = UnitValues::engine(
            Path::new(LINUX_SOCKET),
            Path::new("/var/lib/containai-docker"),
            100,
        )
        .unwrap();
        assert_eq!(default.socket.as_str(), LINUX_SOCKET);

        let bad_paths: &[(&str, &str)] = &[
            ("relative/x.sock", "absolute"),
            ("/run/a b.sock", "whitespace"),
            ("/run/a\tb.sock", "whitespace"),
            ("/run/a\nExecStartPost=/bin/sh", "whitespace"),
            ("/run/a\u{7}.sock", "control"),
            ("/run/%h.sock", "'%'"),
            ("/run/\"x\".sock", "'\"'"),
            ("/run/'x'.sock", "'\\''"),
            ("/run/$HOME.sock", "'$'"),
            ("/run/x\\y.sock", "'\\\\'"),
            ("/run/{{cai}}.sock", "'{'"),
            ("/run/x;y", "';'"),
            ("/run/../etc/x.sock", ".."),
            ("/run/./x.sock", ". or .."),
        ];
        for (path, want) in bad_paths {
            let err = UnitValues::engine(Path::new(path), Path::new("/d"), 100).unwrap_err();
            assert_eq!(err.placeholder, "socket", "{path}");
            let text = err.to_string();
            assert!(text.contains(want), "{path}: {text}");
            assert!(text.starts_with("invalid unit value socket = "), "{text}");
            assert!(
                text.contains("help: set socket in /etc/containai/config.toml"),
                "{text}"
            );
        }
        let err = UnitValues::engine(Path::new("/s"), Path::new("d"), 100).unwrap_err();
        assert_eq!(err.placeholder, "data_root");
        for secs in [0, 3601, u64::MAX] {
            let err = UnitValues::engine(Path::new("/s"), Path::new("/d"), secs).unwrap_err();
            assert_eq!(err.placeholder, "stop_timeout_secs", "{secs}");
        }
        assert!(UnitValues::engine(Path::new("/s"), Path::new("/d"), 3600).is_ok());
        assert!(
            UnitValues::engine(Path::new("/run/a-b_c.d/x@1:2.sock"), Path::new("/d"), 1).is_ok()
        );
    }

    #[test]
    fn placeholders_table() {
        let v = values();
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("{{socket}}", Ok("/var/run/containai-docker.sock")),
            ("{{ socket }}", Ok("/var/run/containai-docker.sock")),
            (
                "a{{cai}}b{{pidfile}}c",
                Ok("a/usr/local/bin/caib/var/run/containai-docker.pidc"),
            ),
            ("{{stop_timeout_secs}}/{{timeout_stop_secs}}", Ok("100/160")),
            (
                "{{exec_root}} {{data_root}} {{dockerd}}",
                Ok(
                    "/var/run/containai-docker /var/lib/containai-docker /opt/containai/bin/dockerd",
                ),
            ),
            ("no placeholders }}", Ok("no placeholders }}")),
            (
                "{{sockets}}",
                Err("unknown placeholder {{sockets}}; known: {{dockerd}}"),
            ),
            ("{{}}", Err("unknown placeholder {{}}")),
            ("{{socket", Err("leftover `{{`")),
            ("x {{ y", Err("leftover `{{`")),
            ("{{socket}} {{", Err("leftover `{{`")),
        ];
        for (line, want) in cases {
            match (fill(line, &v), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{line}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{line}: {got}"),
                (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
            }
        }
        for p in PLACEHOLDERS {
            assert!(v.get(p).is_some(), "{p} has no value");
        }
    }

    #[test]
    fn template_errors_name_the_template_and_line() {
        let v = values();
        let cases: &[(&str, usize, &str)] = &[
            (
                "[Unit]\nDescription={{nope}}\n",
                2,
                "unknown placeholder {{nope}}",
            ),
            ("[Unit]\n\n\nDescription={{socket\n", 4, "leftover `{{`"),
            (
                "[Service]\nExecStart=/bin/true\nExecStopPre=/bin/true\n",
                3,
                "ExecStopPre= does not exist for services",
            ),
        ];
        for (text, line, want) in cases {
            let err = render("/etc/containai/units/containai-x.service", text, &v).unwrap_err();
            assert_eq!(err.line, Some(*line), "{text}");
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!(
                    "unit template /etc/containai/units/containai-x.service line {line}: "
                )),
                "{shown}"
            );
            assert!(shown.contains(want), "{shown}");
        }
    }

    #[test]
    fn unit_file_checks_table() {
        let ok = |body: &str| check("t", &unit(body).replace("{{dockerd}}", "/d"), 100);
        let cases: &[(&str, Result<(), &str>)] = &[
            ("", Ok(())),
            ("ExecStop=/c stop\nTimeoutStopSec=101", Ok(())),
            ("ExecStop=/c stop\nTimeoutStopSec=160s", Ok(())),
            ("ExecStop=/c stop\nTimeoutStopSec=infinity", Ok(())),
            ("ExecStop=-/c stop\nTimeoutStopSec=101", Ok(())),
            ("# comment\n; comment\n  \nRestart=on-failure", Ok(())),
            ("ExecStop=/c \\\n  stop\nTimeoutStopSec=101", Ok(())),
            ("Restart = on-failure", Ok(())),
            ("ExecStop=/c stop", Err("ExecStop= needs TimeoutStopSec=")),
            (
                "ExecStop=/c stop\nTimeoutStopSec=100",
                Err("TimeoutStopSec=100 must exceed"),
            ),
            (
                "ExecStop=/c stop\nTimeoutStopSec=500\nTimeoutStopSec=5",
                Err("TimeoutStopSec=5 must exceed"),
            ),
            ("ExecStart=", Err("absolute command path")),
            (
                "ExecStop=/c stop\nTimeoutStopSec=2min",
                Err("must be whole seconds"),
            ),
            ("ExecStopPre=/c stop", Err("ExecStopPre= does not exist")),
            (
                "ExecStartPre=/bin/sh -c x",
                Err("ExecStartPre= is not allowed in [Service]"),
            ),
            (
                "Environment=LD_PRELOAD=/x.so",
                Err("Environment= may only set PATH"),
            ),
            ("Bogus=1", Err("Bogus= is not allowed")),
            (
                "ExecStop=relative stop\nTimeoutStopSec=101",
                Err("absolute command path"),
            ),
            ("just words", Err("expected Key=Value")),
            ("Bad Key=1", Err("malformed directive name")),
            ("=1", Err("malformed directive name")),
            (
                "[Timer]\nOnCalendar=daily",
                Err("section [Timer] is not allowed"),
            ),
            (
                "[Service]\nType=simple",
                Err("section [Service] appears twice"),
            ),
            ("[Service", Err("malformed section header")),
            ("Description=\u{1b}[31m", Err("control character")),
        ];
        for (body, want) in cases {
            match (ok(body), want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{body:?}: {e}"),
                (got, want) => panic!("{body:?}: got {got:?}, want {want:?}"),
            }
        }
        let whole: &[(&str, &str)] = &[
            (
                "Description=x\n[Service]\nExecStart=/d\n",
                "comes before any section",
            ),
            ("[Unit]\nDescription=x\n", "no [Service] section"),
            ("[Service]\nType=notify\n", "no ExecStart="),
            ("[Service]\nExecStart={{socket}}\n", "leftover `{{`"),
            ("[Service]\nExecStart=/d \\", "continued line"),
            (
                "[Install]\nWantedBy=x\nAlias=y\n[Service]\nExecStart=/d\n",
                "Alias= is not allowed in [Install]",
            ),
            (
                "[Unit]\nExecStart=/d\n[Service]\nExecStart=/d\n",
                "ExecStart= is not allowed in [Unit]",
            ),
        ];
        for (text, want) in whole {
            let err = check("t", text, 100).unwrap_err();
            assert!(err.to_string().contains(want), "{text:?}: {err}");
        }
        let directives = check("t", "[Service]\nExecStart=/a \\\n  b\n", 100).unwrap();
        assert_eq!(directives[0].value, "/a b");
        assert_eq!(
            (directives[0].section.as_str(), directives[0].line),
            ("Service", 2)
        );
    }

    #[test]
    fn comparison_ignores_trailing_newlines_p18() {
        let cases: &[(Option<&str>, &str, bool)] = &[
            (Some("[Unit]\n"), "[Unit]\n", true),
            (Some("[Unit]"), "[Unit]\n", true),
            (Some("[Unit]\n\n\n"), "[Unit]\n", true),
            (Some("[Unit]\n"), "[Unit]", true),
            (Some("[Unit] \n"), "[Unit]\n", false),
            (Some("\n[Unit]\n"), "[Unit]\n", false),
            (Some(""), "[Unit]\n", false),
            (None, "[Unit]\n", false),
        ];
        for (on_disk, rendered, current) in cases {
            assert_eq!(is_current(*on_disk, rendered), *current, "{on_disk:?}");
            assert_eq!(
                diff("/u", *on_disk, rendered).is_empty(),
                *current,
                "{on_disk:?}"
            );
        }
    }

    /// The state says "current" itself; a script never reads it from an empty diff.
    #[test]
    fn state_is_current_differs_or_missing() {
        use FileState::{Current, Differs, Missing};
        let cases: &[(Option<&str>, &str, FileState)] = &[
            (Some("[Unit]\n"), "[Unit]\n", Current),
            (Some("[Unit]\n\n"), "[Unit]", Current),
            (Some("[Unit] \n"), "[Unit]\n", Differs),
            (Some(""), "[Unit]\n", Differs),
            (Some("[Service]\n"), "[Unit]\n", Differs),
            (None, "[Unit]\n", Missing),
            // Nothing to write and nothing there is still a missing file, not a current one.
            (None, "", Missing),
            (Some(""), "", Current),
        ];
        for (on_disk, rendered, want) in cases {
            let file = Rendered {
                path: "/u".into(),
                text: (*rendered).into(),
                on_disk: on_disk.map(str::to_string),
            };
            let got = file.compare();
            assert_eq!(got.state, *want, "{on_disk:?}");
            // An empty rendered text against no file diffs as nothing: only the state tells a
            // missing file from a current one.
            if !rendered.is_empty() {
                assert_eq!(got.diff.is_empty(), *want == Current, "{on_disk:?}");
            }
            let shown = serde_json::to_value(&got).unwrap();
            let name = match want {
                Current => "current",
                Differs => "differs",
                Missing => "missing",
            };
            assert_eq!(shown["state"], name);
        }
    }

    #[test]
    fn diff_is_unified_with_headers() {
        let d = diff(
            "/etc/systemd/system/x.service",
            Some("[Unit]\nDescription=old\n\n"),
            "[Unit]\nDescription=new",
        );
        assert_eq!(
            d,
            "--- /etc/systemd/system/x.service\n+++ /etc/systemd/system/x.service (rendered)\n@@ -1,2 +1,2 @@\n [Unit]\n-Description=old\n+Description=new\n"
        );
        let d = diff("/u", None, "[Unit]\n");
        assert!(d.starts_with("--- /dev/null\n+++ /u (rendered)\n"), "{d}");
        assert!(d.ends_with("+[Unit]\n"), "{d}");
    }
}
