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
        ScriptsCommand::List => list(ctx),
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
                let doc = serde_json::json!({ "api_version": API_VERSION.to_string(), "primitives": primitives });
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

fn list(ctx: &Ctx) -> Result<u8, Error> {
    // (name, version, source, sha256, path) per entry, or why it is refused.
    type Row = (String, Result<[String; 4], String>);
    let shown = |path: &Option<std::path::PathBuf>| {
        path.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(embedded)".into())
    };
    let first_line =
        |e: catalog::CatalogError| e.to_string().lines().next().unwrap_or("").to_string();
    let mut rows: Vec<Row> = Vec::new();
    for (name, resolved) in ctx.catalog.list() {
        let row = resolved.map_err(first_line).map(|script| {
            let version = script
                .header()
                .map(|h| h.version.to_string())
                .unwrap_or_else(|_| "?".into());
            [
                version,
                script.source.as_str().to_string(),
                script.sha256(),
                shown(&script.path),
            ]
        });
        rows.push((name, row));
    }
    // Unit templates have no version header: their version is the cai that renders them.
    for (name, resolved) in ctx.catalog.unit_templates() {
        let row = resolved.map_err(first_line).map(|unit| {
            [
                "-".to_string(),
                unit.source.as_str().to_string(),
                unit.sha256(),
                shown(&unit.path),
            ]
        });
        rows.push((format!("{UNITS_PREFIX}{name}"), row));
    }

    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(12);
    term::out(&format!(
        "{:<width$} {:<9} {:<8} {:<64} path",
        "name", "version", "source", "sha256"
    ));
    let mut code = exit::OK;
    for (name, row) in rows {
        match row {
            Ok([version, source, sha256, path]) => {
                let path = term::line(&path);
                term::out(&format!(
                    "{name:<width$} {version:<9} {source:<8} {sha256} {path}"
                ));
            }
            Err(reason) => {
                term::err(&format!("error: {name}: {}", term::line(&reason)));
                code = exit::FAILURE;
            }
        }
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
