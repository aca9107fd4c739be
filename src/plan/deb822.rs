//! Debian control files (deb822) and the one packaging patch ContainAI applies to them: every
//! binary package's `Depends` lists `fuse3` and never `fuse`, because sysbox-fs mounts through
//! `fusermount3` and the old `fuse` package conflicts with `fuse3` on current distributions.
//!
//! This module owns the reading of paragraphs and fields, the relation-level rewrite of one
//! `Depends` value, and the check run on the result. It must never touch the filesystem or run a
//! command (the caller reads and writes files), and it must never re-render bytes it did not need
//! to change: an untouched field, paragraph or file comes back byte-for-byte, which is also what
//! makes a second run a no-op.
//!
//! Decisions worth knowing:
//! - Only the `Depends` field of binary paragraphs (those with a `Package` field) is edited; the
//!   source paragraph, `Pre-Depends`, `Build-Depends`, `Recommends`, `Description` and comment
//!   lines stay as they are.
//! - `fuse` goes in every form: bare, versioned, arch-qualified, restricted, and as one
//!   alternative of `a | b` (the other alternatives stay; a relation left with none is dropped).
//!   Names that merely start with `fuse` (`fuse3`, `fuse-overlayfs`) or contain it (`libfuse2`)
//!   are other packages and stay.
//! - `fuse3` counts as present only as a relation of its own (any version or qualifier): inside
//!   `fuse3 | x` it would not guarantee `fusermount3`, so a plain `fuse3` is appended then.
//! - A binary paragraph without `Depends` gets `Depends: fuse3`, placed right after its
//!   `Architecture` field, or after its last field when it has none.
//! - A changed value keeps its layout: a single-line value stays on one line; a folded value
//!   keeps one line per original line with the same indentation, and `fuse3` goes on a new line
//!   indented like the last one (or at the end of that line when the value packs several
//!   relations per line).

use std::ops::Range;
use std::path::Path;

use thiserror::Error;

/// The package every binary paragraph must stop depending on.
pub const DROPPED: &str = "fuse";
/// The package every binary paragraph must depend on instead.
pub const REQUIRED: &str = "fuse3";

/// What can be wrong with a control file, before or after the patch. Messages start lowercase
/// and carry no trailing period; the caller prefixes the file name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Deb822Error {
    #[error("line {line}: continuation line outside any field")]
    OrphanContinuation { line: usize },
    #[error("line {line}: expected a `Name: value` field, found {text:?}")]
    NotAField { line: usize, text: String },
    #[error("line {line}: duplicate {name} field in one paragraph")]
    DuplicateField { line: usize, name: String },
    #[error("no binary package paragraph (one with a Package field)")]
    NoBinaryPackage,
    #[error("package {package}: Depends still lists fuse: {value}")]
    StillFuse { package: String, value: String },
    #[error("package {package}: Depends still lacks fuse3: {value}")]
    LacksFuse3 { package: String, value: String },
    #[error("package {package}: Depends still missing, it must list fuse3")]
    NoDepends { package: String },
}

/// The result of patching one control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patch {
    /// Nothing to do: the input already satisfies [`verify`] (or has no binary paragraph).
    Unchanged,
    /// The full new text of the file.
    Changed(String),
}

/// Patches a whole control file: see the module documentation for the rules.
pub fn patch(text: &str) -> Result<Patch, Deb822Error> {
    let paragraphs = parse(text)?;
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for paragraph in paragraphs.iter().filter(|p| p.is_binary(text)) {
        match paragraph.field(text, "Depends") {
            Some(depends) => {
                if let Some(value) = patch_depends(&text[depends.value.clone()]) {
                    edits.push((depends.value.clone(), value));
                }
            }
            None => {
                // Inserting at the end of the anchor's value (before its line ending) works the
                // same whether or not the file ends with a newline.
                let anchor = paragraph
                    .field(text, "Architecture")
                    .or_else(|| paragraph.fields.last());
                if let Some(anchor) = anchor {
                    let at = anchor.value.end;
                    edits.push((at..at, format!("{eol}Depends: {REQUIRED}")));
                }
            }
        }
    }
    if edits.is_empty() {
        return Ok(Patch::Unchanged);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut done = 0;
    for (range, replacement) in edits {
        out.push_str(&text[done..range.start]);
        out.push_str(&replacement);
        done = range.end;
    }
    out.push_str(&text[done..]);
    Ok(Patch::Changed(out))
}

/// Checks a (patched) control file: it has a binary paragraph, and every binary paragraph's
/// `Depends` lists `fuse3` as a relation of its own and `fuse` nowhere. The first failure wins.
pub fn verify(text: &str) -> Result<(), Deb822Error> {
    let paragraphs = parse(text)?;
    let mut binaries = 0;
    for paragraph in paragraphs.iter().filter(|p| p.is_binary(text)) {
        binaries += 1;
        let package = paragraph
            .field(text, "Package")
            .map(|f| text[f.value.clone()].trim().to_string())
            .unwrap_or_default();
        let Some(depends) = paragraph.field(text, "Depends") else {
            return Err(Deb822Error::NoDepends { package });
        };
        let relations = parse_value(&text[depends.value.clone()]).relations;
        let shown = || {
            relations
                .iter()
                .map(|r| r.text.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if relations.iter().any(|r| r.text.split('|').any(is_dropped)) {
            return Err(Deb822Error::StillFuse {
                package,
                value: shown(),
            });
        }
        if !relations.iter().any(|r| is_required(&r.text)) {
            return Err(Deb822Error::LacksFuse3 {
                package,
                value: shown(),
            });
        }
    }
    if binaries == 0 {
        return Err(Deb822Error::NoBinaryPackage);
    }
    Ok(())
}

/// Rewrites one `Depends` value (the text after `Depends:` through the end of its last
/// continuation line, without the final line ending). Returns `None` when the value already
/// lacks `fuse` and has `fuse3`, so callers can keep the original bytes.
pub fn patch_depends(value: &str) -> Option<String> {
    let parsed = parse_value(value);
    let n = parsed.lines.len();

    let mut slots: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut held = vec![false; n];
    let mut changed = false;
    for relation in &parsed.relations {
        held[relation.line] = true;
        match relation_fate(&relation.text) {
            Fate::Keep => slots[relation.line].push(relation.text.clone()),
            Fate::Rewrite(text) => {
                slots[relation.line].push(text);
                changed = true;
            }
            Fate::Drop => changed = true,
        }
    }
    let need_required = !slots.iter().flatten().any(|r| is_required(r));
    if !changed && !need_required {
        return None;
    }

    let folded = parsed.relations.iter().any(|r| r.line > 0);
    let fold_indent = parsed
        .relations
        .iter()
        .rev()
        .find(|r| r.line > 0)
        .map(|r| parsed.lines[r.line].indent())
        .unwrap_or(" ");

    // Lines left without relations disappear: those that held only dropped relations, and those
    // that only carried the tail of a relation broken across lines (now joined on one line).
    let mut out: Vec<OutLine> = Vec::with_capacity(n + 1);
    for (i, line) in parsed.lines.iter().enumerate() {
        match line {
            ValueLine::Comment(text) => out.push(OutLine::Comment(text)),
            ValueLine::Value { indent } => {
                if i == 0 || !slots[i].is_empty() {
                    out.push(OutLine::Value {
                        indent: (*indent).to_string(),
                        relations: std::mem::take(&mut slots[i]),
                    });
                }
            }
        }
    }
    // When the first line lost all its relations, the next surviving line moves up so the value
    // still starts right after `Depends:` as it did.
    if held[0] && out_relations(&out[0]).is_empty() {
        let next = out
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, l)| !out_relations(l).is_empty())
            .map(|(i, _)| i);
        if let Some(next) = next {
            let moved = match out.remove(next) {
                OutLine::Value { relations, .. } => relations,
                OutLine::Comment(_) => Vec::new(),
            };
            if let OutLine::Value { relations, .. } = &mut out[0] {
                *relations = moved;
            }
        }
    }
    if need_required {
        let last = out.iter().rposition(|l| !out_relations(l).is_empty());
        match last {
            Some(i) if !folded || out_relations(&out[i]).len() > 1 => {
                if let OutLine::Value { relations, .. } = &mut out[i] {
                    relations.push(REQUIRED.to_string());
                }
            }
            Some(i) => {
                let indent = match &out[i] {
                    OutLine::Value { indent, .. } if i > 0 => indent.clone(),
                    _ => fold_indent.to_string(),
                };
                out.insert(
                    i + 1,
                    OutLine::Value {
                        indent,
                        relations: vec![REQUIRED.to_string()],
                    },
                );
            }
            None if folded && !held[0] => out.push(OutLine::Value {
                indent: fold_indent.to_string(),
                relations: vec![REQUIRED.to_string()],
            }),
            None => {
                if let OutLine::Value { relations, .. } = &mut out[0] {
                    relations.push(REQUIRED.to_string());
                }
            }
        }
    }

    let eol = if value.contains("\r\n") { "\r\n" } else { "\n" };
    let last_value_line = out.iter().rposition(|l| !out_relations(l).is_empty());
    let mut rendered = String::with_capacity(value.len() + 16);
    for (i, line) in out.iter().enumerate() {
        if i > 0 {
            rendered.push_str(eol);
        }
        match line {
            OutLine::Comment(text) => rendered.push_str(text),
            OutLine::Value { indent, relations } => {
                if relations.is_empty() {
                    continue;
                }
                // The first line needs at least one space after `Depends:` to stay readable.
                let indent = if i == 0 && indent.is_empty() {
                    " "
                } else {
                    indent
                };
                rendered.push_str(indent);
                rendered.push_str(&relations.join(", "));
                if Some(i) != last_value_line || parsed.trailing_comma {
                    rendered.push(',');
                }
            }
        }
    }
    Some(rendered)
}

/// True for a `control` file whose parent's parent is named `deb` (`…/deb/<package>/control`),
/// the layout the packaging tree uses for each package's control template.
pub fn is_control_path(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "control")
        && path
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .is_some_and(|n| n == "deb")
}

/// One field of a paragraph, as byte ranges into the parsed text.
#[derive(Debug, Clone)]
struct Field {
    name: Range<usize>,
    /// From just after the colon to the end of the last continuation line, line ending excluded.
    value: Range<usize>,
}

#[derive(Debug, Clone, Default)]
struct Paragraph {
    fields: Vec<Field>,
}

impl Paragraph {
    fn field(&self, text: &str, name: &str) -> Option<&Field> {
        // deb822 field names are case-insensitive.
        self.fields
            .iter()
            .find(|f| text[f.name.clone()].eq_ignore_ascii_case(name))
    }

    fn is_binary(&self, text: &str) -> bool {
        self.field(text, "Package").is_some()
    }
}

/// Splits a control file into paragraphs and fields without copying anything, so that edits can
/// be applied as byte ranges and everything else stays as it was.
fn parse(text: &str) -> Result<Vec<Paragraph>, Deb822Error> {
    let mut paragraphs = Vec::new();
    let mut current = Paragraph::default();
    let mut offset = 0;
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let line = index + 1;
        let start = offset;
        offset += raw.len();
        let content = raw.strip_suffix('\n').unwrap_or(raw);
        let content = content.strip_suffix('\r').unwrap_or(content);
        let content_end = start + content.len();

        if content.trim().is_empty() {
            // Lines of only spaces and tabs separate paragraphs too, as dpkg accepts them.
            if !current.fields.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
        } else if content.starts_with('#') {
            // A comment neither ends the field it sits in nor belongs to its value.
        } else if content.starts_with([' ', '\t']) {
            match current.fields.last_mut() {
                Some(field) => field.value.end = content_end,
                None => return Err(Deb822Error::OrphanContinuation { line }),
            }
        } else {
            let not_a_field = || Deb822Error::NotAField {
                line,
                text: content.to_string(),
            };
            let colon = content.find(':').ok_or_else(not_a_field)?;
            let name = &content[..colon];
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(not_a_field());
            }
            if current.field(text, name).is_some() {
                return Err(Deb822Error::DuplicateField {
                    line,
                    name: name.to_string(),
                });
            }
            current.fields.push(Field {
                name: start..start + colon,
                value: start + colon + 1..content_end,
            });
        }
    }
    if !current.fields.is_empty() {
        paragraphs.push(current);
    }
    Ok(paragraphs)
}

/// One physical line of a field value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ValueLine<'a> {
    /// A `#` line inside the value: kept verbatim, never read as relations.
    Comment(&'a str),
    /// A value line; `indent` is its leading whitespace (for the first line, the spacing after
    /// the colon).
    Value { indent: &'a str },
}

impl ValueLine<'_> {
    fn indent(&self) -> &str {
        match self {
            ValueLine::Comment(_) => "",
            ValueLine::Value { indent } => indent,
        }
    }
}

/// One relation (`a (>= 1) | b`), trimmed, with line breaks inside it read as single spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Relation {
    /// Index of the value line it starts on.
    line: usize,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedValue<'a> {
    lines: Vec<ValueLine<'a>>,
    relations: Vec<Relation>,
    /// The value ends with a comma (`a,\n b,`), which a rewrite keeps.
    trailing_comma: bool,
}

fn parse_value(value: &str) -> ParsedValue<'_> {
    let mut lines = Vec::new();
    let mut relations = Vec::new();
    let mut buf = String::new();
    let mut start_line: Option<usize> = None;
    let mut saw_comma = false;
    for (i, piece) in value.split('\n').enumerate() {
        let content = piece.strip_suffix('\r').unwrap_or(piece);
        if i > 0 && content.starts_with('#') {
            lines.push(ValueLine::Comment(content));
            continue;
        }
        let body = content.trim_start();
        lines.push(ValueLine::Value {
            indent: &content[..content.len() - body.len()],
        });
        if start_line.is_some() && !body.is_empty() {
            buf.push(' ');
        }
        for ch in body.chars() {
            if ch == ',' {
                finish_relation(&mut buf, &mut start_line, &mut relations);
                saw_comma = true;
            } else {
                if start_line.is_none() && !ch.is_whitespace() {
                    start_line = Some(i);
                }
                if start_line.is_some() {
                    buf.push(ch);
                }
            }
        }
    }
    let trailing_comma = saw_comma && start_line.is_none();
    finish_relation(&mut buf, &mut start_line, &mut relations);
    ParsedValue {
        lines,
        relations,
        trailing_comma,
    }
}

fn finish_relation(buf: &mut String, start_line: &mut Option<usize>, out: &mut Vec<Relation>) {
    if let Some(line) = start_line.take() {
        out.push(Relation {
            line,
            text: buf.trim_end().to_string(),
        });
    }
    buf.clear();
}

enum Fate {
    Keep,
    Rewrite(String),
    Drop,
}

fn relation_fate(relation: &str) -> Fate {
    let alternatives: Vec<&str> = relation.split('|').map(str::trim).collect();
    if !alternatives.iter().any(|a| is_dropped(a)) {
        return Fate::Keep;
    }
    let kept: Vec<&str> = alternatives
        .into_iter()
        .filter(|a| !a.is_empty() && !is_dropped(a))
        .collect();
    if kept.is_empty() {
        Fate::Drop
    } else {
        Fate::Rewrite(kept.join(" | "))
    }
}

/// The package name an alternative is about, or `None` for a substitution variable
/// (`${shlibs:Depends}`) or text that is not a relation.
fn relation_name(alternative: &str) -> Option<&str> {
    let alternative = alternative.trim_start();
    if alternative.starts_with('$') {
        return None;
    }
    let end = alternative
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .unwrap_or(alternative.len());
    let (name, rest) = alternative.split_at(end);
    // The name must end where a qualifier, version, arch list or profile begins; anything else
    // glued to it means this is not a name we can judge, so it is left alone.
    let delimited = rest
        .chars()
        .next()
        .is_none_or(|c| c.is_whitespace() || matches!(c, ':' | '(' | '[' | '<'));
    (!name.is_empty() && delimited).then_some(name)
}

fn is_dropped(alternative: &str) -> bool {
    relation_name(alternative).is_some_and(|n| n.eq_ignore_ascii_case(DROPPED))
}

fn is_required(relation: &str) -> bool {
    !relation.contains('|')
        && relation_name(relation).is_some_and(|n| n.eq_ignore_ascii_case(REQUIRED))
}

enum OutLine<'a> {
    Comment(&'a str),
    Value {
        indent: String,
        relations: Vec<String>,
    },
}

fn out_relations<'l>(line: &'l OutLine<'_>) -> &'l [String] {
    match line {
        OutLine::Comment(_) => &[],
        OutLine::Value { relations, .. } => relations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(text: &str) -> String {
        match patch(text).expect("parses") {
            Patch::Unchanged => text.to_string(),
            Patch::Changed(new) => new,
        }
    }

    #[test]
    fn depends_values_are_rewritten_keeping_their_layout() {
        // (input value, expected value; None = unchanged)
        let cases: &[(&str, Option<&str>)] = &[
            // single line: fuse first, middle, last, alone
            (" fuse, rsync, iptables", Some(" rsync, iptables, fuse3")),
            (" rsync, fuse, iptables", Some(" rsync, iptables, fuse3")),
            (" rsync, iptables, fuse", Some(" rsync, iptables, fuse3")),
            (" fuse", Some(" fuse3")),
            // forms of fuse
            (" rsync, fuse (>= 2.9)", Some(" rsync, fuse3")),
            (" rsync, fuse (>= 2.9.9-3), jq", Some(" rsync, jq, fuse3")),
            (" fuse:any, jq", Some(" jq, fuse3")),
            (
                " fuse:amd64 (>= 2) [amd64] <!nocheck>, jq",
                Some(" jq, fuse3"),
            ),
            (" fuse [linux-any], jq", Some(" jq, fuse3")),
            (" jq,fuse,rsync", Some(" jq, rsync, fuse3")),
            // alternatives
            (" fuse | fuse3, jq", Some(" fuse3, jq")),
            (" jq, fuse3 | fuse", Some(" jq, fuse3")),
            (
                " jq, fuse-overlayfs | fuse",
                Some(" jq, fuse-overlayfs, fuse3"),
            ),
            (" jq, a | fuse | b", Some(" jq, a | b, fuse3")),
            (" jq, fuse | fuse:any", Some(" jq, fuse3")),
            (" fuse3 | fuse-t, jq", Some(" fuse3 | fuse-t, jq, fuse3")),
            // not fuse
            (" fuse3, fuse-overlayfs, libfuse2", None),
            (" fuse3 (>= 3.10), rsync", None),
            (" fuse3:any", None),
            (
                " libfuse2, fuse-overlayfs",
                Some(" libfuse2, fuse-overlayfs, fuse3"),
            ),
            (" fuse2, rsync", Some(" fuse2, rsync, fuse3")),
            (
                " ${misc:Depends}, ${shlibs:Depends}",
                Some(" ${misc:Depends}, ${shlibs:Depends}, fuse3"),
            ),
            // already patched
            (" rsync, fuse3", None),
            (" fuse3", None),
            // empty value
            ("", Some(" fuse3")),
            // trailing comma kept
            (" jq, fuse,", Some(" jq, fuse3,")),
        ];
        for (input, expected) in cases {
            let got = patch_depends(input);
            assert_eq!(got.as_deref(), *expected, "value {input:?}");
            if let Some(once) = got {
                assert_eq!(patch_depends(&once), None, "second run on {once:?}");
            }
        }
    }

    #[test]
    fn folded_values_stay_folded_with_their_indentation() {
        let cases: &[(&str, Option<&str>)] = &[
            // one relation per line, spaces
            (
                " ${shlibs:Depends},\n         rsync,\n         fuse,\n         iptables",
                Some(" ${shlibs:Depends},\n         rsync,\n         iptables,\n         fuse3"),
            ),
            // fuse last
            (" rsync,\n         fuse", Some(" rsync,\n         fuse3")),
            // fuse on the first line moves the next line up
            (
                " fuse,\n         rsync,\n         iptables",
                Some(" rsync,\n         iptables,\n         fuse3"),
            ),
            (" fuse,\n rsync", Some(" rsync,\n fuse3")),
            // tabs
            (" jq,\n\tfuse,\n\trsync", Some(" jq,\n\trsync,\n\tfuse3")),
            (" jq,\n \tfuse", Some(" jq,\n \tfuse3")),
            // value starting on the next line
            ("\n jq,\n fuse,\n rsync", Some("\n jq,\n rsync,\n fuse3")),
            ("\n fuse", Some("\n fuse3")),
            // packed folding: fuse3 joins the last line
            (" a, b,\n c, fuse, d", Some(" a, b,\n c, d, fuse3")),
            // versioned and alternative inside a fold
            (
                " jq,\n  fuse (>= 2.9),\n  fuse | fuse3,\n  rsync",
                Some(" jq,\n  fuse3,\n  rsync"),
            ),
            // a relation broken across lines is read as one
            (
                " jq,\n fuse\n  (>= 2.9),\n rsync",
                Some(" jq,\n rsync,\n fuse3"),
            ),
            // trailing comma in folded style
            (" jq,\n fuse,\n rsync,", Some(" jq,\n rsync,\n fuse3,")),
            // comments inside the value stay
            (
                " jq,\n# sysbox-fs mounts with fusermount\n fuse,\n rsync",
                Some(" jq,\n# sysbox-fs mounts with fusermount\n rsync,\n fuse3"),
            ),
            // CRLF
            (
                " jq,\r\n fuse,\r\n rsync",
                Some(" jq,\r\n rsync,\r\n fuse3"),
            ),
            // already patched folded
            (" jq,\n  rsync,\n  fuse3", None),
        ];
        for (input, expected) in cases {
            let got = patch_depends(input);
            assert_eq!(got.as_deref(), *expected, "value {input:?}");
            if let Some(once) = got {
                assert_eq!(patch_depends(&once), None, "second run on {once:?}");
            }
        }
    }

    #[test]
    fn relation_names_are_exact() {
        let cases: &[(&str, Option<&str>)] = &[
            ("fuse", Some("fuse")),
            ("  fuse (>= 2.9)", Some("fuse")),
            ("fuse:any", Some("fuse")),
            ("fuse[amd64]", Some("fuse")),
            ("fuse <!nocheck>", Some("fuse")),
            ("fuse3", Some("fuse3")),
            ("fuse-overlayfs", Some("fuse-overlayfs")),
            ("libfuse2", Some("libfuse2")),
            ("libstdc++6", Some("libstdc++6")),
            ("${shlibs:Depends}", None),
            ("fuse$x", None),
            ("", None),
        ];
        for (alt, expected) in cases {
            assert_eq!(relation_name(alt), *expected, "alternative {alt:?}");
        }
    }

    const UPSTREAM: &str = "Source: sysbox-ce\n\
Section: admin\n\
Priority: optional\n\
Maintainer: Example <pkg@example.invalid>\n\
Build-Depends: debhelper (>= 10~),\n               bash,\n\
Standards-Version: 4.1.4\n\
\n\
Package: sysbox-ce\n\
Architecture: linux-any\n\
Pre-Depends: jq\n\
Depends: ${shlibs:Depends},\n         ${misc:Depends},\n         debconf,\n         jq,\n         fuse,\n         lsb-release,\n         rsync,\n         iptables\n\
Description: a container runtime that also mounts with fuse,\n needs fuse for procfs emulation,\n .\n and more.";

    #[test]
    fn only_binary_depends_changes() {
        let out = patched(UPSTREAM);
        let expected = UPSTREAM.replace(
            "         fuse,\n         lsb-release,\n         rsync,\n         iptables\n",
            "         lsb-release,\n         rsync,\n         iptables,\n         fuse3\n",
        );
        assert_eq!(out, expected);
        assert!(!out.ends_with('\n'), "missing final newline is kept");
        assert_eq!(verify(&out), Ok(()));
        assert_eq!(patch(&out), Ok(Patch::Unchanged));
    }

    #[test]
    fn whole_files() {
        // (input, expected output; None = unchanged)
        let cases: &[(&str, Option<&str>)] = &[
            // source paragraph and other relation fields untouched
            (
                "Source: s\nBuild-Depends: fuse, debhelper\n\nPackage: p\nArchitecture: any\nPre-Depends: fuse\nDepends: fuse, jq\nRecommends: fuse\nSuggests: fuse | x\nDescription: uses fuse\n fuse fuse\n",
                Some(
                    "Source: s\nBuild-Depends: fuse, debhelper\n\nPackage: p\nArchitecture: any\nPre-Depends: fuse\nDepends: jq, fuse3\nRecommends: fuse\nSuggests: fuse | x\nDescription: uses fuse\n fuse fuse\n",
                ),
            ),
            // several binary paragraphs
            (
                "Source: s\n\nPackage: a\nDepends: fuse\n\nPackage: b\nDepends: jq,\n fuse\n\nPackage: c\nDepends: fuse3\n",
                Some(
                    "Source: s\n\nPackage: a\nDepends: fuse3\n\nPackage: b\nDepends: jq,\n fuse3\n\nPackage: c\nDepends: fuse3\n",
                ),
            ),
            // no Depends: added after Architecture
            (
                "Package: p\nArchitecture: any\nDescription: d\n",
                Some("Package: p\nArchitecture: any\nDepends: fuse3\nDescription: d\n"),
            ),
            // no Depends, no Architecture, no final newline: added at the end
            (
                "Package: p\nDescription: d\n more",
                Some("Package: p\nDescription: d\n more\nDepends: fuse3"),
            ),
            // folded Architecture stays whole
            (
                "Package: p\nArchitecture: amd64\n arm64\nDescription: d\n",
                Some("Package: p\nArchitecture: amd64\n arm64\nDepends: fuse3\nDescription: d\n"),
            ),
            // comments between fields and paragraphs kept; case-insensitive names
            (
                "# top\nSource: s\n\n# before\npackage: p\n# between\ndepends: fuse\n# after\n",
                Some(
                    "# top\nSource: s\n\n# before\npackage: p\n# between\ndepends: fuse3\n# after\n",
                ),
            ),
            // whitespace-only separator lines and extra blank lines kept
            (
                "Source: s\n \t\n\n\nPackage: p\nDepends: fuse\n\n\n",
                Some("Source: s\n \t\n\n\nPackage: p\nDepends: fuse3\n\n\n"),
            ),
            // CRLF file
            (
                "Package: p\r\nArchitecture: any\r\n",
                Some("Package: p\r\nArchitecture: any\r\nDepends: fuse3\r\n"),
            ),
            // already patched, source-only, empty
            ("Package: p\nDepends: rsync, fuse3\n", None),
            ("Source: s\nBuild-Depends: fuse\n", None),
            ("", None),
        ];
        for (input, expected) in cases {
            let got = patch(input).expect("parses");
            let want = match expected {
                None => Patch::Unchanged,
                Some(text) => Patch::Changed((*text).to_string()),
            };
            assert_eq!(got, want, "file {input:?}");
            let once = patched(input);
            assert_eq!(patch(&once), Ok(Patch::Unchanged), "second run on {once:?}");
        }
    }

    #[test]
    fn malformed_files_are_refused() {
        let cases: &[(&str, Deb822Error)] = &[
            (
                " indented first\n",
                Deb822Error::OrphanContinuation { line: 1 },
            ),
            (
                "Source: s\n\n continuation\n",
                Deb822Error::OrphanContinuation { line: 3 },
            ),
            (
                "Package: p\nno colon here\n",
                Deb822Error::NotAField {
                    line: 2,
                    text: "no colon here".into(),
                },
            ),
            (
                "Package: p\nbad name: x\n",
                Deb822Error::NotAField {
                    line: 2,
                    text: "bad name: x".into(),
                },
            ),
            (
                "Package: p\nDepends: a\ndepends: b\n",
                Deb822Error::DuplicateField {
                    line: 3,
                    name: "depends".into(),
                },
            ),
        ];
        for (input, error) in cases {
            assert_eq!(patch(input), Err(error.clone()), "file {input:?}");
            assert_eq!(verify(input), Err(error.clone()), "file {input:?}");
        }
    }

    #[test]
    fn verify_names_package_and_value() {
        let cases: &[(&str, Result<(), Deb822Error>)] = &[
            ("Package: p\nDepends: fuse3\n", Ok(())),
            ("Package: p\nDepends: a,\n fuse3 (>= 3),\n b\n", Ok(())),
            (
                "Package: p\nDepends: a,\n fuse,\n fuse3\n",
                Err(Deb822Error::StillFuse {
                    package: "p".into(),
                    value: "a, fuse, fuse3".into(),
                }),
            ),
            (
                "Package: p\nDepends: fuse3 | fuse\n",
                Err(Deb822Error::StillFuse {
                    package: "p".into(),
                    value: "fuse3 | fuse".into(),
                }),
            ),
            (
                "Package: p\nDepends: fuse3 | x, fuse-overlayfs\n",
                Err(Deb822Error::LacksFuse3 {
                    package: "p".into(),
                    value: "fuse3 | x, fuse-overlayfs".into(),
                }),
            ),
            (
                "Source: s\n\nPackage: ok\nDepends: fuse3\n\nPackage: q\nArchitecture: any\n",
                Err(Deb822Error::NoDepends {
                    package: "q".into(),
                }),
            ),
            (
                "Source: s\nBuild-Depends: fuse3\n",
                Err(Deb822Error::NoBinaryPackage),
            ),
            ("", Err(Deb822Error::NoBinaryPackage)),
        ];
        for (input, expected) in cases {
            assert_eq!(&verify(input), expected, "file {input:?}");
        }
    }

    #[test]
    fn error_messages_read_as_one_line() {
        let cases: &[(Deb822Error, &str)] = &[
            (
                Deb822Error::StillFuse {
                    package: "sysbox-ce".into(),
                    value: "jq, fuse".into(),
                },
                "package sysbox-ce: Depends still lists fuse: jq, fuse",
            ),
            (
                Deb822Error::LacksFuse3 {
                    package: "p".into(),
                    value: "jq".into(),
                },
                "package p: Depends still lacks fuse3: jq",
            ),
            (
                Deb822Error::NoBinaryPackage,
                "no binary package paragraph (one with a Package field)",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), *message);
        }
    }

    #[test]
    fn control_paths() {
        let cases: &[(&str, bool)] = &[
            ("deb/sysbox-ce/control", true),
            ("/src/sysbox-pkgr/deb/common/control", true),
            ("x/deb/p/control", true),
            ("deb/control", false),
            ("deb/p/q/control", false),
            ("debian/control", false),
            ("deb/p/control.in", false),
            ("control", false),
        ];
        for (path, expected) in cases {
            assert_eq!(is_control_path(Path::new(path)), *expected, "path {path}");
        }
    }
}
