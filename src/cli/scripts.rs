//! `cai scripts {list,show,check,api}`: read-only views of the catalog and the primitive API.

use anyhow::Context;

use super::{Ctx, ScriptsCommand};
use crate::exit;
use crate::script::api::{API_VERSION, PRIMITIVES};
use crate::script::{self};
use crate::term;

pub(super) fn run(ctx: &Ctx, cmd: &ScriptsCommand) -> anyhow::Result<u8> {
    match cmd {
        ScriptsCommand::List => list(ctx),
        ScriptsCommand::Show { name } => {
            let script = ctx.script_for(name)?;
            // The text exactly as it will run, like `cat`.
            term::out_raw(&script.text);
            Ok(exit::OK)
        }
        ScriptsCommand::Check { files } => check(ctx, files),
        ScriptsCommand::Api { json } => {
            if *json {
                let doc = serde_json::json!({ "api_version": API_VERSION.to_string(), "primitives": PRIMITIVES });
                term::out(
                    &serde_json::to_string_pretty(&doc).context("cannot render the API as JSON")?,
                );
            } else {
                term::out(&format!("primitive API {API_VERSION}"));
                for p in PRIMITIVES {
                    term::out(&format!(
                        "{:<9} {:<62} {}",
                        if p.mutating { "mutating" } else { "read-only" },
                        p.signature,
                        p.doc
                    ));
                }
            }
            Ok(exit::OK)
        }
    }
}

fn list(ctx: &Ctx) -> anyhow::Result<u8> {
    let mut code = exit::OK;
    term::out(&format!(
        "{:<12} {:<9} {:<8} {:<64} path",
        "name", "version", "source", "sha256"
    ));
    for (name, resolved) in ctx.catalog.list() {
        match resolved {
            Ok(script) => {
                let version = script
                    .header()
                    .map(|h| h.version.to_string())
                    .unwrap_or_else(|_| "?".into());
                let path = script
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(embedded)".into());
                term::out(&format!(
                    "{name:<12} {version:<9} {:<8} {} {}",
                    script.source.as_str(),
                    script.sha256(),
                    term::line(&path)
                ));
            }
            Err(e) => {
                term::err(&format!(
                    "error: {name}: {}",
                    term::line(e.to_string().lines().next().unwrap_or(""))
                ));
                code = exit::FAILURE;
            }
        }
    }
    Ok(code)
}

fn check(ctx: &Ctx, files: &[std::path::PathBuf]) -> anyhow::Result<u8> {
    // Without files: every script the catalog knows, bundled and overrides alike.
    let scripts: Vec<anyhow::Result<_>> = if files.is_empty() {
        ctx.catalog
            .list()
            .into_iter()
            .map(|(_, script)| script.map_err(anyhow::Error::from))
            .collect()
    } else {
        files
            .iter()
            .map(|f| ctx.catalog.load_file(f).map_err(anyhow::Error::from))
            .collect()
    };
    let mut failed = 0;
    for script in scripts {
        let result = script.and_then(|s| {
            let header = script::check(&ctx.host, &ctx.catalog, &s)?;
            Ok((s, header))
        });
        match result {
            Ok((s, header)) => term::out(&format!(
                "ok     {} {} ({}, api {})",
                term::line(&s.display_name()),
                header.version,
                s.source.as_str(),
                header.api
            )),
            Err(e) => {
                failed += 1;
                term::err(&format!("error: {}", term::text(&e.to_string())));
            }
        }
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILURE })
}
