//! `cai scripts {list,show,check,api}`: read-only views of the catalog (scripts and unit
//! templates, the latter named `units/NAME`) and the primitive API.

use super::{Ctx, ScriptsCommand};
use crate::error::{self as exit, Error};
use crate::script::api::API_VERSION;
use crate::script::catalog::{self, UnitTemplate};
use crate::script::{self, bind};
use crate::term;

/// How `cai scripts list|show` name unit templates.
const UNITS_PREFIX: &str = "units/";

pub(super) fn run(ctx: &Ctx, cmd: &ScriptsCommand) -> Result<u8, Error> {
    match cmd {
        ScriptsCommand::List { json } => list(ctx, *json),
        ScriptsCommand::Show { name } => {
            // `units/NAME` is a unit template: the catalog's name for it, not a relative path.
            let text = match name.strip_prefix(UNITS_PREFIX) {
                Some(unit) => ctx.catalog.unit_template(unit)?.text,
                None => ctx.script_for(name)?.text,
            };
            // The text exactly as it will run, like `cat`.
            term::out_raw(&text);
            Ok(exit::OK)
        }
        ScriptsCommand::Check { files } => check(ctx, files),
        ScriptsCommand::Api { json } => {
            // Generated from the registrations themselves: what is listed is what is callable.
            let primitives = bind::primitives(&ctx.host, &ctx.catalog);
            if *json {
                let doc = serde_json::json!({ "schema": crate::render::JSON_SCHEMA, "api_version": API_VERSION.to_string(), "primitives": primitives });
                term::out(&format!("{doc:#}"));
            } else {
                term::out(&format!("primitive API {API_VERSION}"));
                for p in &primitives {
                    term::out(&p.describe());
                }
            }
            Ok(exit::OK)
        }
    }
}

/// One row of `cai scripts list`: a script or a unit template as it resolved, or why not.
#[derive(serde::Serialize)]
struct Row {
    name: String,
    /// `-` for unit templates (their version is the cai that renders them).
    version: Option<String>,
    source: Option<&'static str>,
    sha256: Option<String>,
    /// The file, or `None` for embedded text.
    path: Option<String>,
    /// For an override: the version of the bundled script it shadows, when that is newer.
    older_than_bundled: Option<String>,
    /// Why the entry does not resolve (it then cannot run).
    error: Option<String>,
}

fn list(ctx: &Ctx, json: bool) -> Result<u8, Error> {
    let first_line =
        |e: catalog::CatalogError| e.to_string().lines().next().unwrap_or("").to_string();
    let failed = |name: String, error: String| Row {
        name,
        version: None,
        source: None,
        sha256: None,
        path: None,
        older_than_bundled: None,
        error: Some(error),
    };
    let mut rows: Vec<Row> = Vec::new();
    for (name, resolved) in ctx.catalog.list() {
        rows.push(match resolved {
            Err(e) => failed(name, first_line(e)),
            // An override without a valid header cannot run: its error names its file.
            Ok(script) if script.header().is_err() => {
                let e = script.header().err().map(first_line).unwrap_or_default();
                failed(name, e)
            }
            Ok(script) => {
                let version = script.header().ok().map(|h| h.version);
                let bundled = catalog::Catalog::bundled_version(&name);
                let older = match (&version, bundled) {
                    (Some(v), Some(b)) if script.source != catalog::Origin::Bundled && *v < b => {
                        Some(b.to_string())
                    }
                    _ => None,
                };
                Row {
                    name,
                    version: Some(version.map_or("?".into(), |v| v.to_string())),
                    source: Some(script.source.as_str()),
                    sha256: Some(script.sha256()),
                    path: script.path.as_ref().map(|p| p.display().to_string()),
                    older_than_bundled: older,
                    error: None,
                }
            }
        });
    }
    for (name, resolved) in ctx.catalog.unit_templates() {
        let name = format!("{UNITS_PREFIX}{name}");
        rows.push(match resolved {
            Err(e) => failed(name, first_line(e)),
            Ok(unit) => Row {
                name,
                version: Some("-".into()),
                source: Some(unit.source.as_str()),
                sha256: Some(unit.sha256()),
                path: unit.path.as_ref().map(|p| p.display().to_string()),
                older_than_bundled: None,
                error: None,
            },
        });
    }
    let code = if rows.iter().any(|r| r.error.is_some()) {
        exit::FAILURE
    } else {
        exit::OK
    };
    if json {
        let doc = serde_json::json!({ "schema": crate::render::JSON_SCHEMA, "scripts": rows });
        term::out(&format!("{doc:#}"));
        return Ok(code);
    }

    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(12);
    term::out(&format!(
        "{:<width$} {:<9} {:<8} {:<64} path",
        "name", "version", "source", "sha256"
    ));
    for row in &rows {
        let name = &row.name;
        if let Some(reason) = &row.error {
            term::err(&format!("error: {name}: {}", term::line(reason)));
            continue;
        }
        let version = row.version.as_deref().unwrap_or("?");
        let source = row.source.unwrap_or("");
        let sha256 = row.sha256.as_deref().unwrap_or("");
        let path = term::line(row.path.as_deref().unwrap_or("(embedded)")).into_owned();
        let older = match &row.older_than_bundled {
            Some(b) => format!("  (older than bundled {b})"),
            None => String::new(),
        };
        term::out(&format!(
            "{name:<width$} {version:<9} {source:<8} {sha256} {path}{older}"
        ));
    }
    for row in rows.iter().filter(|r| r.older_than_bundled.is_some()) {
        term::err(&format!(
            "warning: {} {} is older than the bundled {} it shadows\nhelp: compare them (`cai scripts show {}` shows the override), then update or remove {}",
            term::line(row.path.as_deref().unwrap_or(&row.name)),
            row.version.as_deref().unwrap_or("?"),
            row.older_than_bundled.as_deref().unwrap_or("?"),
            row.name,
            term::line(row.path.as_deref().unwrap_or(&row.name)),
        ));
    }
    Ok(code)
}

/// Renders a unit template with this host's config and checks the result.
fn check_unit(ctx: &Ctx, unit: Result<UnitTemplate, Error>) -> Result<(), Error> {
    let unit = unit?;
    unit.render(&ctx.host.config)?;
    term::out(&format!(
        "ok     {} ({}, unit template)",
        term::line(&unit.display_name()),
        unit.source.as_str()
    ));
    Ok(())
}

fn check(ctx: &Ctx, files: &[std::path::PathBuf]) -> Result<u8, Error> {
    // Without files: every script the catalog knows, bundled and overrides alike.
    let scripts: Vec<Result<_, Error>> = if files.is_empty() {
        ctx.catalog
            .list()
            .into_iter()
            .map(|(_, script)| script.map_err(Error::from))
            .collect()
    } else {
        files
            .iter()
            .filter(|f| !catalog::is_unit_file(f))
            .map(|f| ctx.catalog.load_file(f).map_err(Error::from))
            .collect()
    };
    let units: Vec<Result<UnitTemplate, Error>> = if files.is_empty() {
        ctx.catalog
            .unit_templates()
            .into_iter()
            .map(|(_, unit)| unit.map_err(Error::from))
            .collect()
    } else {
        files
            .iter()
            .filter(|f| catalog::is_unit_file(f))
            .map(|f| ctx.catalog.load_unit_file(f).map_err(Error::from))
            .collect()
    };
    let mut failed = 0;
    for unit in units {
        if let Err(e) = check_unit(ctx, unit) {
            failed += 1;
            term::err(&format!("error: {}", term::text(&e.to_string())));
        }
    }
    let checker = script::Checker::new(&ctx.host, &ctx.catalog);
    for script in scripts {
        let result = script.and_then(|s| {
            let header = checker.check(&s)?;
            Ok((s, header))
        });
        match result {
            Ok((s, header)) => {
                term::out(&format!(
                    "ok     {} {} ({}, api {})",
                    term::line(&s.display_name()),
                    header.version,
                    s.source.as_str(),
                    header.api
                ));
                if let Some(note) = header.note {
                    term::err(&format!("note: {}", term::line(&note)));
                }
            }
            Err(e) => {
                failed += 1;
                term::err(&format!("error: {}", term::text(&e.to_string())));
            }
        }
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILURE })
}
