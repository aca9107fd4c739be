//! The layers only point down: `cli` → `script` → `host` → (`effects`, `config`, `plan`). A file in a lower
//! layer that names a higher one (`crate::script::...` in `src/host/`, say) would let the core
//! depend on the sandbox or the command line, so this test reads the sources and fails on it.

use std::path::{Path, PathBuf};

/// Layers a file may not name, by directory or file under `src/`.
const RULES: &[(&str, &[&str])] = &[
    ("host", &["script", "cli", "error"]),
    (
        "plan",
        &["script", "cli", "error", "host", "effects", "config"],
    ),
    ("effects.rs", &["script", "cli", "error", "host", "config"]),
    ("render.rs", &["script", "cli", "host"]),
    ("config.rs", &["script", "cli", "host", "error"]),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap().path();
        if entry.is_dir() {
            rust_files(&entry, out);
        } else if entry.extension().is_some_and(|e| e == "rs") {
            out.push(entry);
        }
    }
}

/// Every `crate::NAME` a source names, including inside grouped `use crate::{a, b::c}` lists.
fn crate_paths(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        } else {
            found.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    found
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut checked = 0;
    for (layer, forbidden) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no source files under src/{layer}");
        for file in files {
            checked += 1;
            // Comments may name any layer (doc links); only code counts.
            let text: String = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for name in crate_paths(&text) {
                if forbidden.contains(&name.as_str()) {
                    violations.push(format!(
                        "{} names crate::{name}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
            // `super::super::script` reaches up just the same.
            for name in ["script", "cli"] {
                if forbidden.contains(&name) && text.contains(&format!("super::super::{name}")) {
                    violations.push(format!("{} reaches super::super::{name}", file.display()));
                }
            }
        }
    }
    assert!(checked > 10, "only {checked} files checked");
    assert!(
        violations.is_empty(),
        "imports that point up a layer:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_import_scan_sees_plain_and_grouped_paths() {
    assert_eq!(
        crate_paths("use crate::script::engine::limits;\nuse crate::{cli, host::Host};"),
        ["script", "cli", "host"]
    );
}
