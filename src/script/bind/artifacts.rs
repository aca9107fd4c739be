//! `artifacts::` bindings over [`crate::host::artifacts`]: release artifacts fetched into the
//! cache and verified, gated. The map a script hands over is checked by
//! [`crate::plan::artifact::Artifact::check`], with the same URL and sha256 rules as config.
//!
//! A script hands over the manifest's entry as a map and gets back the verified host path; it
//! never names a cache path or skips the checksum. The artifact is checked (name, URL schemes,
//! sha256 or a checksum file that is not on plain http, the trust of the cache directory's path)
//! in every mode, so a dry run refuses what a live run would refuse, but only a live run touches
//! the network or writes. A dry run reports `reused: true` when the cache already holds the
//! verified file, so the checks that follow a fetch can run on it.

use rhai::Map;
use serde_json::json;

use super::{Answer, Doc, Effect, Registrar};
use crate::effects::Action;
use crate::host::Host;
use crate::host::artifacts::{self, Fetched};
use crate::plan::artifact::Artifact;

/// The keys of the artifact map; any other key is a typo worth an error.
const KEYS: [&str; 5] = ["name", "url", "sha256", "sha256_url", "config_key"];

pub fn register(reg: &mut Registrar) {
    reg.gated(
        Doc {
            signature: "artifacts::fetch(artifact: map) -> map",
            doc: "downloads #{name, url, sha256 or sha256_url, config_key} into /var/cache/containai and verifies its sha256 (reusing a verified copy); a checksum file is read only over https or file://, so an http:// url needs a pinned sha256; bodies over download_max_mb or the cache's free space are refused; returns #{path, sha256, bytes, reused}",
            example: "artifacts::fetch(#{name: \"x.deb\", url: \"https://example.com/x.deb\", sha256_url: \"https://example.com/x.deb.sha256\", config_key: \"sysbox_sha256\"})",
        }
        .returns(
            &[
                ("path", "string", "where the verified file is (what packages::install_deb takes)"),
                ("sha256", "string", "its sha256; \"\" in a dry run when only a checksum file knows it"),
                ("bytes", "int", "its size; 0 in a dry run unless the cache holds it"),
                ("reused", "bool", "the cache already held the verified file and nothing was downloaded"),
            ],
            r#"#{path: "/var/cache/containai/x.deb", sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", bytes: 12345678, reused: false}"#,
        ),
        |h: &Host, map: Map| -> Answer<Effect<Fetched>> {
            let artifact = from_map(map)?;
            crate::host::update::check_fetchable(h)
                .map_err(|e| format!("artifacts::fetch: {e}"))?;
            let checked = artifact.check()?;
            artifacts::check_cache(h)?;
            let path = checked.path();
            let action = Action::new(
                "artifacts.fetch",
                artifact.url.clone(),
                json!({
                    "name": checked.name(),
                    "sha256": checked.checksum_detail(),
                    "into": h.root().display_path(&path).display().to_string(),
                }),
            );
            // In a dry run the size is unknown, and so is a sha256 that a checksum file holds,
            // unless the cache already holds the verified file (which only reading tells).
            let cached = if h.gate.is_dry_run() {
                artifacts::cached(h, &checked)?
            } else {
                None
            };
            let predicted = Fetched {
                sha256: checked
                    .known_sha256()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                path,
                bytes: cached.unwrap_or(0),
                reused: cached.is_some(),
            };
            Ok(Effect::act(action, || predicted, move |h, ok| {
                artifacts::fetch(ok, h, &checked)
            }))
        },
    );
}

/// The artifact a script described; `sha256` and `sha256_url` may be absent or `()`.
fn from_map(map: Map) -> Result<Artifact, String> {
    if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "artifacts::fetch: unknown key `{key}` (the keys are {})",
            KEYS.join(", ")
        ));
    }
    let text = |key: &str, required: bool| -> Result<Option<String>, String> {
        match map.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.clone().into_string().unwrap_or_default())),
            Some(v) => Err(format!(
                "artifacts::fetch: `{key}` must be a string{}, found {}",
                if required { "" } else { " or ()" },
                v.type_name()
            )),
        }
    };
    let required = |key: &str| -> Result<String, String> {
        text(key, true)?
            .ok_or_else(|| format!("artifacts::fetch: the map needs `{key}` (a string)"))
    };
    Ok(Artifact {
        name: required("name")?,
        url: required("url")?,
        sha256: text("sha256", false)?,
        sha256_url: text("sha256_url", false)?,
        config_key: required("config_key")?,
    })
}

#[cfg(test)]
mod tests {
    use rhai::Dynamic;

    use super::*;

    fn engine() -> rhai::Engine {
        let mut engine = rhai::Engine::new();
        engine.register_fn(
            "parse",
            |map: Map| -> Result<Dynamic, Box<rhai::EvalAltResult>> {
                let a = from_map(map)?;
                Ok(Dynamic::from(format!(
                    "{}|{}|{:?}|{:?}|{}",
                    a.name, a.url, a.sha256, a.sha256_url, a.config_key
                )))
            },
        );
        engine
    }

    #[test]
    fn the_map_is_read_strictly() {
        let engine = engine();
        let ok: String = engine
            .eval(r#"parse(#{name: "a", url: "u", sha256: (), config_key: "k"})"#)
            .unwrap();
        assert_eq!(ok, "a|u|None|None|k");
        let ok: String = engine
            .eval(r#"parse(#{name: "a", url: "u", sha256_url: "s", config_key: "k"})"#)
            .unwrap();
        assert_eq!(ok, "a|u|None|Some(\"s\")|k");
        for (script, want) in [
            (
                r#"parse(#{name: "a", url: "u", sha: "x", config_key: "k"})"#,
                "unknown key `sha`",
            ),
            (r#"parse(#{url: "u", config_key: "k"})"#, "needs `name`"),
            (
                r#"parse(#{name: "a", url: 1, config_key: "k"})"#,
                "`url` must be a string, found i64",
            ),
            (
                r#"parse(#{name: "a", url: "u", sha256: 5, config_key: "k"})"#,
                "`sha256` must be a string or ()",
            ),
        ] {
            let err = engine.eval::<String>(script).unwrap_err().to_string();
            assert!(err.contains(want), "{script}: {err}");
        }
    }
}
