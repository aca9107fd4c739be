//! `packages::` bindings over [`crate::host::packages`]: verified `.deb` installs, gated, and the
//! read-only check of a fetched package against what the update expects.

use rhai::Map;
use serde_json::json;

use super::{Answer, Doc, Effect, Registrar};
use crate::effects::Action;
use crate::host::Host;
use crate::host::packages::{self, PackageError};
use crate::plan::release::PackageIdentity;

/// The keys of the expected identity; each is required.
const IDENTITY_KEYS: [&str; 3] = ["name", "version", "architecture"];

pub fn register(reg: &mut Registrar) {
    reg.reads(
        Doc {
            signature: "packages::check_deb(path: string, expected: map) -> map or ()",
            doc: "checks a fetched .deb with the trust rules packages::install_deb applies, and that its control file names #{name (its Package), version, architecture} (a Debian revision -N is ignored); returns what it says; () in a dry run when it is not fetched yet",
            example: "packages::check_deb(\"/var/cache/containai/x.deb\", #{name: \"sysbox-ce\", version: \"0.6.7+containai.20260127\", architecture: \"amd64\"})",
        }
        .returns(
            &[
                ("name", "string", "the control file's Package"),
                ("version", "string", "its Version"),
                ("architecture", "string", "its Architecture"),
            ],
            r#"#{name: "sysbox-ce", version: "0.6.7+containai.20260127-0", architecture: "amd64"}"#,
        ),
        |h: &Host, path: &str, expected: Map| -> Answer<Option<_>> {
            let expected = identity(&expected)?;
            let file = std::path::Path::new(path);
            match packages::check_deb(h, file, &expected)? {
                Some(found) => Ok(Some(found)),
                // A dry run plans the fetch that would bring it; a live run has fetched it.
                None if h.gate.is_dry_run() => Ok(None),
                None => Err(PackageError::Missing(h.root().display_path(file)).into()),
            }
        },
    );

    reg.gated(
        Doc {
            signature: "packages::install_deb(path: string)",
            doc: "installs a .deb that passes the trust rules (root-owned, not writable by others, no symlinks) from a private copy with dpkg -i; the plan shows its sha256; while the update lock is held, refused unless every running container (labelled or not) is recorded",
            example: "try { packages::install_deb(\"/var/cache/containai/x.deb\") } catch { () }",
        },
        |h: &Host, path: &str| -> Answer<Effect<()>> {
            let file = std::path::Path::new(path);
            // A sysbox package's maintainer scripts restart sysbox, and the engine with it, which
            // stops every container on it; which package restarts what is not known here, so
            // during an update every package waits until every running container is recorded.
            crate::host::update::check_engine_stop(h)
                .map_err(|e| format!("packages::install_deb {path}: {e}"))?;
            // Verified in every mode (it only reads), so a dry run shows what would be installed.
            // A dry run may name a package that an earlier step of the same run would have
            // fetched (and verified against its pinned sha256): that one is planned as such.
            let deb = match packages::verify_deb(h, file) {
                Ok(deb) => Some(deb),
                Err(PackageError::Missing(_)) if h.gate.is_dry_run() => None,
                Err(e) => return Err(e.into()),
            };
            let shown = h.root().display_path(file);
            let action = match &deb {
                Some(deb) => Action::new(
                    "packages.install_deb",
                    deb.shown.display().to_string(),
                    json!({ "bytes": deb.bytes, "sha256": deb.sha256 }),
                ),
                None => Action::new(
                    "packages.install_deb",
                    shown.display().to_string(),
                    json!({ "sha256": "checked when it is fetched" }),
                ),
            };
            Ok(Effect::act(action, || (), move |h, ok| match &deb {
                Some(deb) => packages::install_deb(ok, h, deb),
                // Unreachable in a live run: the missing file was refused above.
                None => Err(PackageError::Missing(shown)),
            }))
        },
    );
}

/// The identity a script expects, every key a string and none missing or unknown.
fn identity(map: &Map) -> Result<PackageIdentity, String> {
    if let Some(key) = map.keys().find(|k| !IDENTITY_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "packages::check_deb: unknown key `{key}` (the keys are {})",
            IDENTITY_KEYS.join(", ")
        ));
    }
    let text = |key: &str| -> Result<String, String> {
        match map.get(key) {
            Some(v) if v.is_string() => Ok(v.clone().into_string().unwrap_or_default()),
            _ => Err(format!(
                "packages::check_deb: the expected map needs `{key}` (a string)"
            )),
        }
    };
    Ok(PackageIdentity {
        name: text("name")?,
        version: text("version")?,
        architecture: text("architecture")?,
    })
}
