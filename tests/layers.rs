//! The layers only point down: `cli` → `script` → `host` → (`effects`, `config`, `plan`). A file in a lower
//! layer that names a higher one (`crate::script::...` in `src/host/`, say) would let the core
//! depend on the sandbox or the command line, so this test reads the sources and fails on it.
//!
//! Inside a layer, files do not import each other in a circle either: two files that need each
//! other are one concern split wrongly, and whatever they share belongs in a file below both. The
//! second test reads every `use` and every `crate::`, `self::`, `super::` or child-module path of
//! `src/**/*.rs` (comments and literals left out), resolves each to the file that defines the
//! module it names, and fails on every circle of files, naming the names that tie it. A file's
//! imports from the modules it is part of (its folder's `mod.rs`, by `super::`) do not count.

use std::collections::{BTreeMap, BTreeSet};
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

// --- circles between files -------------------------------------------------------------------

/// The module path of a file under `src/`: `lib.rs` is the crate root, `a/mod.rs` and `a.rs` are
/// `a`, `a/b.rs` is `a::b`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.split('/').map(String::from).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.strip_suffix(".rs").unwrap_or(&last);
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a source with comments, string and character literals left out, so that only
/// code can tie two files (a doc link or a message that names a module does not).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !ident_before(&chars, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), or a lifetime, which is kept.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Identifiers, `::` and single punctuation characters, in order.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".to_string());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The leaves of a `use` tree starting at `tokens[*at]`, each as its path and the name it binds
/// (`None` for a glob); `*at` ends on the token after the tree.
fn use_leaves(
    tokens: &[String],
    at: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    loop {
        match tokens.get(*at).map(String::as_str) {
            Some("{") => {
                *at += 1;
                while !matches!(tokens.get(*at).map(String::as_str), Some("}") | None) {
                    use_leaves(tokens, at, &path, out);
                    if tokens.get(*at).map(String::as_str) == Some(",") {
                        *at += 1;
                    }
                }
                *at += 1;
                return;
            }
            Some("*") => {
                *at += 1;
                out.push((path, None));
                return;
            }
            Some("self") if !path.is_empty() && path.len() == prefix.len() => {
                // `a::{self, b}` binds `a`.
                *at += 1;
                let name = path.last().cloned();
                out.push((path, name));
                return;
            }
            Some(token) if is_ident(token) => {
                path.push(token.to_string());
                *at += 1;
                match tokens.get(*at).map(String::as_str) {
                    Some("::") => *at += 1,
                    Some("as") => {
                        let alias = tokens.get(*at + 1).cloned();
                        *at += 2;
                        out.push((path, alias));
                        return;
                    }
                    _ => {
                        let name = path.last().cloned();
                        out.push((path, name));
                        return;
                    }
                }
            }
            _ => return,
        }
    }
}

/// One source file as the circle check reads it.
struct Unit {
    /// The path under `src/`, with `/` separators.
    rel: String,
    tokens: Vec<String>,
}

/// Which file a module path names: the file of its longest prefix that is a module of the crate.
fn file_of<'a>(modules: &'a BTreeMap<Vec<String>, String>, path: &[String]) -> Option<&'a String> {
    (0..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

/// Every file-to-file import of the crate: (from, to) → the names through which `from` reaches
/// `to`. A module's own tests (`mod tests { use super::*; }`) stay inside their file, and a file
/// that names a module it belongs to (`super::Registrar` in `bind/report.rs`, from `bind/mod.rs`)
/// is not counted: that is how one module split into files shares its items, and a circle is
/// between files that are not parent and child, as `bind/report.rs` and `engine.rs`.
fn import_edges(units: &[Unit]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let modules: BTreeMap<Vec<String>, String> = units
        .iter()
        .map(|u| (module_of(&u.rel), u.rel.clone()))
        .collect();
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for unit in units {
        let home = module_of(&unit.rel);
        let t = &unit.tokens;
        // Child modules declared here (`mod x;`) and names bound by `use`, resolved.
        let mut children = BTreeSet::new();
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut paths: Vec<Vec<String>> = Vec::new();
        // The inline modules we are in, with the brace depth each one closes at.
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        let current = |inline: &Vec<(String, usize)>| -> Vec<String> {
            let mut m = home.clone();
            m.extend(inline.iter().map(|(name, _)| name.clone()));
            m
        };
        let absolute = |module: &[String],
                        children: &BTreeSet<String>,
                        aliases: &BTreeMap<String, Vec<String>>,
                        path: &[String]|
         -> Option<Vec<String>> {
            let (first, rest) = path.split_first()?;
            let mut base = match first.as_str() {
                "crate" => Vec::new(),
                "self" => module.to_vec(),
                "super" => {
                    let mut m = module.to_vec();
                    m.pop();
                    m
                }
                name if children.contains(name) => {
                    let mut m = home.clone();
                    m.push(name.to_string());
                    m
                }
                name => {
                    let mut m = aliases.get(name)?.clone();
                    m.extend(rest.iter().cloned());
                    return Some(m);
                }
            };
            let mut rest = rest;
            while let Some(("super", more)) = rest.split_first().map(|(a, b)| (a.as_str(), b)) {
                base.pop();
                rest = more;
            }
            base.extend(rest.iter().cloned());
            Some(base)
        };
        while i < t.len() {
            match t[i].as_str() {
                "{" => {
                    depth += 1;
                    i += 1;
                }
                "}" => {
                    depth -= 1;
                    if inline.last().is_some_and(|(_, d)| *d == depth) {
                        inline.pop();
                    }
                    i += 1;
                }
                "mod" if t.get(i + 1).is_some_and(|n| is_ident(n)) => {
                    match t.get(i + 2).map(String::as_str) {
                        Some("{") => {
                            inline.push((t[i + 1].clone(), depth));
                            depth += 1;
                            i += 3;
                        }
                        _ => {
                            if inline.is_empty() {
                                children.insert(t[i + 1].clone());
                            }
                            i += 2;
                        }
                    }
                }
                "use" => {
                    i += 1;
                    let mut leaves = Vec::new();
                    use_leaves(t, &mut i, &[], &mut leaves);
                    let module = current(&inline);
                    for (path, name) in leaves {
                        let Some(full) = absolute(&module, &children, &aliases, &path) else {
                            continue;
                        };
                        if let Some(name) = name {
                            aliases.insert(name, full.clone());
                        }
                        paths.push(full);
                    }
                }
                token
                    if is_ident(token)
                        && t.get(i + 1).is_some_and(|n| n == "::")
                        && (i == 0 || t[i - 1] != "::") =>
                {
                    let mut path = vec![token.to_string()];
                    let mut j = i + 1;
                    while t.get(j).is_some_and(|n| n == "::")
                        && t.get(j + 1).is_some_and(|n| is_ident(n))
                    {
                        path.push(t[j + 1].clone());
                        j += 2;
                    }
                    let module = current(&inline);
                    if let Some(full) = absolute(&module, &children, &aliases, &path) {
                        paths.push(full);
                    }
                    i = j;
                }
                _ => i += 1,
            }
        }
        for path in paths {
            let Some(target) = file_of(&modules, &path) else {
                continue;
            };
            let target_module = module_of(target);
            if home.starts_with(&target_module) {
                // Its own file, or a module it is part of: children reach their parent's items
                // by `super::`, and the module tree already orders the two.
                continue;
            }
            let name = path
                .get(target_module.len())
                .or(path.last())
                .cloned()
                .unwrap_or_default();
            edges
                .entry((unit.rel.clone(), target.clone()))
                .or_default()
                .insert(name);
        }
    }
    edges
}

/// The circles of a graph: its strongly connected components of more than one file (Tarjan).
fn circles(edges: &BTreeMap<(String, String), BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
        next.entry(to).or_default();
    }
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(node: &'a str, next: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        let n = s.index.len();
        s.index.insert(node, n);
        s.low.insert(node, n);
        s.stack.push(node);
        s.on_stack.insert(node);
        for &to in &next[node] {
            if !s.index.contains_key(to) {
                visit(to, next, s);
                let low = s.low[node].min(s.low[to]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(to) {
                let low = s.low[node].min(s.index[to]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            while let Some(top) = s.stack.pop() {
                s.on_stack.remove(top);
                component.push(top.to_string());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in next.keys() {
        if !state.index.contains_key(node) {
            visit(node, &next, &mut state);
        }
    }
    state.found.sort();
    state.found
}

/// Each circle with the imports that tie it, one `from -> to: names` line each.
fn describe(
    circles: &[Vec<String>],
    edges: &BTreeMap<(String, String), BTreeSet<String>>,
) -> String {
    let mut text = String::new();
    for circle in circles {
        text.push_str(&format!("circle of {}:\n", circle.join(", ")));
        for ((from, to), names) in edges {
            if circle.contains(from) && circle.contains(to) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                text.push_str(&format!("  {from} -> {to}: {}\n", names.join(", ")));
            }
        }
    }
    text
}

fn unit(rel: &str, source: &str) -> Unit {
    Unit {
        rel: rel.to_string(),
        tokens: tokens(&code_only(source)),
    }
}

#[test]
fn no_file_imports_another_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let units: Vec<Unit> = files
        .iter()
        // The binary is a crate of its own: its `crate::` is not the library's.
        .filter(|f| f.file_name().is_some_and(|n| n != "main.rs") || f.parent() != Some(&src))
        .map(|f| {
            let rel = f
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            unit(&rel, &std::fs::read_to_string(f).unwrap())
        })
        .collect();
    assert!(units.len() > 30, "only {} files read", units.len());
    let edges = import_edges(&units);
    assert!(
        edges.len() > units.len(),
        "only {} imports found",
        edges.len()
    );
    let found = circles(&edges);
    assert!(
        found.is_empty(),
        "files that import each other in a circle (move what they share into a file below both):\n{}",
        describe(&found, &edges)
    );
}

#[test]
fn the_circle_check_finds_a_planted_circle_and_nothing_else() {
    let units = [
        unit("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;"),
        unit(
            "a/mod.rs",
            "mod inner;\npub use self::inner::Thing;\nfn f() { inner::g(); }",
        ),
        // A child naming its parent module is not an import between two files.
        unit(
            "a/inner.rs",
            "use super::Shared;\nuse crate::b::{Other as O, self};\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::a::Shared;\n}",
        ),
        // A circle through a path in code, not a `use`; comments and strings do not count.
        unit(
            "b.rs",
            "// use crate::c::X;\nfn f() -> u8 { let s = \"crate::d::Y\"; super::c::h() }",
        ),
        unit(
            "c.rs",
            "pub(crate) use super::a::{inner::Thing};\nfn f() {}",
        ),
        unit(
            "d.rs",
            "use std::path::Path;\nuse crate::a::Thing;\n/// [`crate::b`]\nfn f<'a>(_: &'a Path) -> char { 'x' }",
        ),
    ];
    let edges = import_edges(&units);
    let pairs: Vec<(&str, &str)> = edges
        .keys()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("a/inner.rs", "b.rs"),
            ("a/mod.rs", "a/inner.rs"),
            ("b.rs", "c.rs"),
            ("c.rs", "a/inner.rs"),
            ("d.rs", "a/mod.rs"),
        ]
    );
    assert_eq!(
        edges[&("a/inner.rs".to_string(), "b.rs".to_string())],
        BTreeSet::from(["Other".to_string(), "b".to_string()])
    );
    let found = circles(&edges);
    assert_eq!(found, [["a/inner.rs", "b.rs", "c.rs"]]);
    let text = describe(&found, &edges);
    assert!(text.contains("  b.rs -> c.rs: h\n"), "{text}");

    // Cut the circle and nothing is found.
    let mut cut = units;
    cut[4] = unit("c.rs", "fn f() {}");
    assert!(circles(&import_edges(&cut)).is_empty());
}
