//! `release::` bindings: the release target this run updates to, as the host resolved it once
//! from the bundled manifest and the site's overrides for the engine's architecture (on macOS
//! the Lima VM's, asked of limactl once per run). Read-only; it never looks anything up online.

use rhai::Dynamic;
use serde::Serialize;

use super::{Answer, Doc, Registrar, to_dynamic};
use crate::host::Host;
use crate::plan::release::{Unpinned, UpdateTarget};

/// The target as scripts see it: with the artifacts nothing can verify, listed by the core.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    target: &'a UpdateTarget,
    unpinned: Vec<Unpinned>,
}

pub fn register(reg: &mut Registrar) {
    reg.reads(
        Doc {
            signature: "release::target() -> map",
            doc: "this run's release target on the engine's arch (the Lima VM's on macOS): sysbox (tag, version, semver, url, sha256, sha256_url, source, sha256_key) and dockerd (version, url, sha256, sha256_url, source, sha256_key); source is bundled, config or env; sha256_key is where an operator pins the sha256 (sysbox_sha256, CAI_SYSBOX_SHA256, dockerd_sha256); unpinned lists #{component, url, sha256_key} for each artifact with neither sha256 nor sha256_url (the bundled ones of a build from source), which artifacts::fetch refuses",
            example: "release::target()",
        }
        .returns(
            &[
                ("arch", "string", "the engine machine's Debian architecture (amd64, arm64)"),
                ("sysbox", "map", "#{tag, version, semver, url, sha256, sha256_url, source, sha256_key}; sha256 is () unless pinned"),
                ("dockerd", "map", "#{version, url, sha256, sha256_url, source, sha256_key}; sha256 is () unless pinned"),
                ("unpinned", "array", "#{component, url, sha256_key} for each artifact with neither sha256 nor sha256_url; [] when every one can be verified"),
            ],
            r#"#{arch: "amd64", sysbox: #{tag: "sysbox-build-20260127-10", version: "0.6.7+containai.20260127", semver: "0.6.7", url: "https://github.com/novotnyllc/ContainAI/releases/download/sysbox-build-20260127-10/sysbox-ce_0.6.7+containai.20260127.linux_amd64.deb", sha256: (), sha256_url: "https://github.com/novotnyllc/ContainAI/releases/download/sysbox-build-20260127-10/sysbox-ce_0.6.7+containai.20260127.linux_amd64.deb.sha256", source: "bundled", sha256_key: "sysbox_sha256"}, dockerd: #{version: "28.2.2", url: "https://download.docker.com/linux/static/stable/x86_64/docker-28.2.2.tgz", sha256: (), sha256_url: "https://download.docker.com/linux/static/stable/x86_64/docker-28.2.2.tgz.sha256", source: "bundled", sha256_key: "dockerd_sha256"}, unpinned: []}"#,
        ),
        |h: &Host| -> Answer<Dynamic> {
            let target = h.release()?;
            Ok(to_dynamic(&Shown {
                unpinned: target.unpinned(),
                target,
            })?)
        },
    );
}
