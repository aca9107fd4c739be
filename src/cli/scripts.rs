//! `cai scripts {list,show,check,api}`: read-only views of the catalog and the primitive API.

use anyhow::Context;

use super::{Ctx, ScriptsCommand};
use crate::exit;
use crate::script::api::{API_VERSION, PRIMITIVES};
use crate::script::{self};

pub(super) fn run(ctx: &Ctx, cmd: &ScriptsCommand) -> anyhow::Result<u8> {
    match cmd {
        ScriptsCommand::List => list(ctx),
        ScriptsCommand::Show { name } => {
            let script = ctx.script_for(name)?;
            print!("{}", script.text);
            Ok(exit::OK)
        }
        ScriptsCommand::Check { files } => check(ctx, files),
        ScriptsCommand::Api { json } => {
            if *json {
                let doc = serde_json::json!({ "api_version": API_VERSION.to_string(), "primitives": PRIMITIVES });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&doc).context("cannot render the API as JSON")?
                );
            } else {
                println!("primitive API {API_VERSION}");
                for p in PRIMITIVES {
                    println!(
                        "{:<9} {:<62} {}",
                        if p.mutating { "mutating" } else { "read-only" },
                        p.signature,
                        p.doc
                    );
                }
            }
            Ok(exit::OK)
        }
    }
}

fn list(ctx: &Ctx) -> anyhow::Result<u8> {
    let mut code = exit::OK;
    println!(
        "{:<12} {:<9} {:<8} {:<64} path",
        "name", "version", "source", "sha256"
    );
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
                println!(
                    "{name:<12} {version:<9} {:<8} {} {path}",
                    script.source.as_str(),
                    script.sha256()
                );
            }
            Err(e) => {
                eprintln!(
                    "error: {name}: {}",
                    e.to_string().lines().next().unwrap_or("")
                );
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
            Ok((s, header)) => {
                println!(
                    "ok     {} {} ({}, api {})",
                    s.display_name(),
                    header.version,
                    s.source.as_str(),
                    header.api
                );
                if let Some(note) = header.note {
                    eprintln!("note: {note}");
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILURE })
}
