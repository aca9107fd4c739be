//! Usage rules of `cai doctor --repair` (SPEC 5.2) [P42]: which volumes a repair covers, decided
//! from what the operator typed alone, before anything on the machine is looked at. Each
//! refusal says what to add or drop.

/// What a repair covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every managed volume.
    All,
    /// The volumes of one labelled container.
    Container(String),
    /// No target was given; allowed only where repair is not supported at all (macOS), which
    /// says so and exits 0 [P41].
    Unsupported,
}

/// What was typed after `cai doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Typed {
    pub repair: bool,
    pub container: Option<String>,
    pub all: bool,
    pub dry_run: bool,
}

/// `None` when this is a plain health report; the repair's selection otherwise. `macos`: the
/// platform has no repair, so a missing target is no mistake there.
pub fn selection(typed: &Typed, macos: bool) -> Result<Option<Selection>, String> {
    if !typed.repair {
        let given: Vec<&str> = [
            (typed.container.is_some(), "--container"),
            (typed.all, "--all"),
            (typed.dry_run, "--dry-run"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, flag)| *flag)
        .collect();
        if given.is_empty() {
            return Ok(None);
        }
        return Err(format!(
            "{} only work{} with --repair\nhelp: cai doctor --repair {} (or drop {})",
            given.join(" and "),
            if given.len() == 1 { "s" } else { "" },
            suggestion(typed),
            given.join(" and ")
        ));
    }
    if macos {
        return Ok(Some(Selection::Unsupported));
    }
    match (&typed.container, typed.all) {
        (Some(_), true) => Err(
            "--container and --all cannot be used together\nhelp: cai doctor --repair --container NAME for one container, or --all for every managed container"
                .to_string(),
        ),
        (Some(name), false) if name.trim().is_empty() => Err(
            "--container needs a container name\nhelp: cai doctor --repair --container NAME (`docker ps -a` shows the names)"
                .to_string(),
        ),
        (Some(name), false) => Ok(Some(Selection::Container(name.clone()))),
        (None, true) => Ok(Some(Selection::All)),
        (None, false) => Err(
            "--repair needs a target: add --container NAME or --all\nhelp: cai doctor --repair --all --dry-run shows what would change"
                .to_string(),
        ),
    }
}

fn suggestion(typed: &Typed) -> String {
    let mut out = match &typed.container {
        Some(name) if !name.trim().is_empty() && !typed.all => format!("--container {name}"),
        Some(_) if !typed.all => "--container NAME".to_string(),
        _ => "--all".to_string(),
    };
    if typed.dry_run {
        out.push_str(" --dry-run");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(repair: bool, container: Option<&str>, all: bool, dry_run: bool) -> Typed {
        Typed {
            repair,
            container: container.map(str::to_string),
            all,
            dry_run,
        }
    }

    /// What a case expects: a selection, or an error containing the text.
    type Want = Result<Option<Selection>, &'static str>;

    /// P42: the whole usage-error matrix, and what each message tells the operator to add.
    #[test]
    fn p42_usage_error_matrix() {
        let cases: &[(Typed, bool, Want)] = &[
            (typed(false, None, false, false), false, Ok(None)),
            (
                typed(false, Some("a"), false, false),
                false,
                Err("--container only works with --repair"),
            ),
            (
                typed(false, None, true, false),
                false,
                Err("--all only works with --repair"),
            ),
            (
                typed(false, None, false, true),
                false,
                Err("--dry-run only works with --repair"),
            ),
            (
                typed(false, None, true, true),
                false,
                Err("--all and --dry-run only work with --repair"),
            ),
            (
                typed(false, None, true, false),
                true,
                Err("--all only works with --repair"),
            ),
            (
                typed(true, Some("a"), true, false),
                false,
                Err("--container and --all cannot be used together"),
            ),
            (
                typed(true, None, false, false),
                false,
                Err("add --container NAME or --all"),
            ),
            (
                typed(true, None, false, true),
                false,
                Err("add --container NAME or --all"),
            ),
            (
                typed(true, Some(""), false, false),
                false,
                Err("--container needs a container name"),
            ),
            (
                typed(true, Some("  "), false, false),
                false,
                Err("--container needs a container name"),
            ),
            (
                typed(true, Some("a"), false, true),
                false,
                Ok(Some(Selection::Container("a".into()))),
            ),
            (
                typed(true, None, true, false),
                false,
                Ok(Some(Selection::All)),
            ),
            // P41: on macOS the repair only says it is not supported, with or without a target.
            (
                typed(true, None, false, false),
                true,
                Ok(Some(Selection::Unsupported)),
            ),
            (
                typed(true, None, true, false),
                true,
                Ok(Some(Selection::Unsupported)),
            ),
        ];
        for (t, macos, want) in cases {
            let got = selection(t, *macos);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{t:?}"),
                (Err(w), Err(g)) => {
                    assert!(g.contains(w), "{t:?}: {g}");
                    assert!(g.contains("\nhelp: cai doctor"), "{t:?}: {g}");
                }
                _ => panic!("{t:?} (macos {macos}): got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_help_line_keeps_what_was_typed() {
        let e = selection(&typed(false, Some("box"), false, true), false).unwrap_err();
        assert!(
            e.contains("help: cai doctor --repair --container box --dry-run"),
            "{e}"
        );
    }
}
