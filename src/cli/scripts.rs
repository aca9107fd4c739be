//! `cai scripts {list,show,check,api}`: read-only views of the catalog and the primitive API.

use super::{Ctx, ScriptsCommand};
use crate::error::{self as exit, Error};
use crate::script::api::API_VERSION;
use crate::script::{self, bind};

pub(super) fn run(ctx: &Ctx, cmd: &ScriptsCommand) -> Result<u8, Error> {
    match cmd {
        ScriptsCommand::List => list(ctx),
        ScriptsCommand::Show { name } => {
            let script = ctx.script_for(name)?;
            print!("{}", script.text);
            Ok(exit::OK)
        }
        ScriptsCommand::Check { files } => check(ctx, files),
        ScriptsCommand::Api { json } => {
            // Generated from the registrations themselves: what is listed is what is callable.
            let primitives = bind::primitives(&ctx.host);
            if *json {
                let doc = serde_json::json!({ "api_version": API_VERSION.to_string(), "primitives": primitives });
                println!("{doc:#}");
            } else {
                println!("primitive API {API_VERSION}");
                for p in &primitives {
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

fn list(ctx: &Ctx) -> Result<u8, Error> {
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
            .map(|f| ctx.catalog.load_file(f).map_err(Error::from))
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
