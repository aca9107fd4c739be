//! Who should own a container's files, and whether its own root file system is damaged (SPEC 5.2):
//! the rules of the repair's target owner [P32-P34] and of the rootfs taint, and the parsing of
//! what `id`, `getent group` and `stat` print inside the container. The lookups themselves are
//! the caller's ([`Inside`]); nothing here touches a machine, and a user name is only ever
//! resolved through the container's lookups, never on this host [P32].

use serde::Serialize;

/// The ContainAI images' agent user and group: the answer when nothing better is known [P34].
pub const DEFAULT_ID: u64 = 1000;

/// The programs the taint check runs inside the container: one exec. busybox and GNU stat both
/// go on past a missing file (exit 1), so its exit status is not a verdict.
pub const TAINT_STAT: [&str; 8] = [
    "stat",
    "-c",
    "%u:%g:%n",
    "/usr/bin/sudo",
    "/bin",
    "/etc",
    "/usr",
    "/usr/bin",
];

/// The broken ownership: nobody:nogroup.
const NOBODY: &str = "65534";

/// A user's numeric ids as `id` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u64,
    pub gid: u64,
}

/// The owner a container's files should have, where that answer came from, and a warning for the
/// operator ("" when none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
    pub source: String,
    pub warning: String,
}

impl Owner {
    fn found(uid: u64, gid: u64, source: String) -> Self {
        Self {
            uid,
            gid,
            source,
            warning: String::new(),
        }
    }

    fn default(source: &str, warning: String) -> Self {
        Self {
            uid: DEFAULT_ID,
            gid: DEFAULT_ID,
            source: source.to_string(),
            warning,
        }
    }
}

/// Lookups answered by the container's own databases (one exec each); `None` when the program
/// failed, exited non-zero or printed something else.
pub trait Inside {
    /// `id USER`, or plain `id` (the effective ids) for `None`.
    fn id(&mut self, user: Option<&str>) -> Option<Ids>;
    /// `getent group GROUP`: the group's id.
    fn group(&mut self, group: &str) -> Option<u64>;
}

/// The target owner of container `name`, whose `Config.User` is `user`, from that user alone
/// when it is numeric, else from lookups inside the container, which only a running one answers.
pub fn owner(name: &str, user: &str, running: bool, inside: &mut impl Inside) -> Owner {
    let mut parts = user.split(':');
    let uname = parts.next().unwrap_or("");
    let group = parts.next().unwrap_or("");
    let uid = number(uname);
    let is_root = uname.is_empty() || uname == "root" || uid == Some(0);
    // A numeric Config.User other than root is the answer, running or not.
    if let Some(uid) = uid.filter(|_| !is_root) {
        if let Some(gid) = number(group) {
            return Owner::found(uid, gid, format!("Config.User {user}"));
        }
        if group.is_empty() && running {
            if let Some(found) = inside.id(Some(&uid.to_string())) {
                return Owner::found(
                    uid,
                    found.gid,
                    format!("Config.User {user}, group from id inside the container"),
                );
            }
        }
        if !group.is_empty() && running {
            if let Some(gid) = inside.group(group) {
                return Owner::found(
                    uid,
                    gid,
                    format!("Config.User {user}, group resolved inside the container"),
                );
            }
        }
        return Owner::found(
            uid,
            uid,
            format!("Config.User {user} (group taken equal to the user id)"),
        );
    }
    if !running {
        return Owner::default(
            "default for a stopped container",
            format!(
                "container {name} is stopped, so its user cannot be looked up inside it; assuming {DEFAULT_ID}:{DEFAULT_ID} (start it and run the repair again to use its real user)"
            ),
        );
    }
    if !is_root {
        // A user name: resolved by the container's own passwd database [P32].
        if let Some(found) = inside.id(Some(uname)) {
            let gid = if group.is_empty() {
                Some(found.gid)
            } else {
                number(group).or_else(|| inside.group(group))
            };
            if let Some(gid) = gid {
                return Owner::found(
                    found.uid,
                    gid,
                    format!("Config.User {user}, resolved inside the container (id {uname})"),
                );
            }
        }
        return Owner::default(
            "default",
            format!(
                "user {user} of container {name} does not resolve inside it; assuming {DEFAULT_ID}:{DEFAULT_ID}"
            ),
        );
    }
    // Empty or root user: the agent user if the container has one, else its effective ids [P33].
    if let Some(found) = inside.id(Some("agent")) {
        return Owner::found(
            found.uid,
            found.gid,
            "user agent inside the container (id agent)".into(),
        );
    }
    if let Some(found) = inside.id(None) {
        return Owner::found(
            found.uid,
            found.gid,
            "the container's effective ids (id; it has no agent user)".into(),
        );
    }
    Owner::default(
        "default",
        format!("cannot run id inside container {name}; assuming {DEFAULT_ID}:{DEFAULT_ID}"),
    )
}

/// The digits of `s` as a number; `None` when `s` is not a plain non-negative number.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `uid=1000(agent) gid=1000(agent) groups=...`: both ids, or `None` when either is missing.
pub fn parse_id(stdout: &str) -> Option<Ids> {
    let (mut uid, mut gid) = (None, None);
    for field in stdout.trim().split(' ') {
        let kv: Vec<&str> = field.split('=').collect();
        let [key, value] = kv[..] else { continue };
        let value = value.split('(').next().unwrap_or("");
        match key {
            "uid" => uid = number(value),
            "gid" => gid = number(value),
            _ => {}
        }
    }
    Some(Ids {
        uid: uid?,
        gid: gid?,
    })
}

/// `NAME:x:GID:members`: the group id.
pub fn parse_getent_group(stdout: &str) -> Option<u64> {
    number(stdout.trim().split(':').nth(2)?)
}

/// Signs in the output of [`TAINT_STAT`] that the container's own root file system was damaged
/// too: `/usr/bin/sudo` not owned by root, or a system directory owned by 65534 (uid or gid).
pub fn taint(stat_stdout: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in stat_stdout.trim().split('\n') {
        let f: Vec<&str> = line.split(':').collect();
        let [uid, gid, path, ..] = f[..] else {
            continue;
        };
        if path == "/usr/bin/sudo" {
            if uid != "0" {
                found.push(format!("/usr/bin/sudo is owned by uid {uid}, not root"));
            }
        } else if uid == NOBODY || gid == NOBODY {
            found.push(format!("{path} is owned by {uid}:{gid}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A container's databases as a table; every lookup asked is remembered.
    #[derive(Default)]
    struct Fake {
        users: BTreeMap<&'static str, (u64, u64)>,
        effective: Option<(u64, u64)>,
        groups: BTreeMap<&'static str, u64>,
        asked: Vec<String>,
    }

    impl Inside for Fake {
        fn id(&mut self, user: Option<&str>) -> Option<Ids> {
            self.asked.push(format!("id {}", user.unwrap_or("")));
            let found = match user {
                Some(u) => self.users.get(u).copied(),
                None => self.effective,
            };
            found.map(|(uid, gid)| Ids { uid, gid })
        }
        fn group(&mut self, group: &str) -> Option<u64> {
            self.asked.push(format!("getent {group}"));
            self.groups.get(group).copied()
        }
    }

    fn image() -> Fake {
        Fake {
            users: [
                ("agent", (1001, 1002)),
                ("worker", (2345, 3456)),
                ("1234", (1234, 4321)),
            ]
            .into(),
            effective: Some((0, 0)),
            groups: [("staff", 50)].into(),
            asked: Vec::new(),
        }
    }

    fn bare() -> Fake {
        Fake::default()
    }

    /// P32-P34: the owner and its source for every form of Config.User, running or stopped.
    #[test]
    fn p32_p34_target_owner_matrix() {
        // (user, running, databases, uid, gid, source contains, warning contains)
        let cases: Vec<(&str, bool, Fake, u64, u64, &str, &str)> = vec![
            (
                "1234:2345",
                true,
                image(),
                1234,
                2345,
                "Config.User 1234:2345",
                "",
            ),
            (
                "1234:2345",
                false,
                bare(),
                1234,
                2345,
                "Config.User 1234:2345",
                "",
            ),
            (
                "1234",
                true,
                image(),
                1234,
                4321,
                "group from id inside",
                "",
            ),
            ("1234", false, image(), 1234, 1234, "group taken equal", ""),
            ("1234", true, bare(), 1234, 1234, "group taken equal", ""),
            (
                "1234:staff",
                true,
                image(),
                1234,
                50,
                "group resolved inside",
                "",
            ),
            (
                "1234:staff",
                false,
                image(),
                1234,
                1234,
                "group taken equal",
                "",
            ),
            (
                "1234:nogroup",
                true,
                image(),
                1234,
                1234,
                "group taken equal",
                "",
            ),
            ("0012:7", true, image(), 12, 7, "Config.User 0012:7", ""),
            // P32: a name is resolved inside the container only.
            (
                "worker",
                true,
                image(),
                2345,
                3456,
                "resolved inside the container (id worker)",
                "",
            ),
            ("worker:7", true, image(), 2345, 7, "(id worker)", ""),
            ("worker:staff", true, image(), 2345, 50, "(id worker)", ""),
            (
                "worker:nogroup",
                true,
                image(),
                1000,
                1000,
                "default",
                "does not resolve",
            ),
            (
                "ghost",
                true,
                image(),
                1000,
                1000,
                "default",
                "user ghost of container c does not resolve",
            ),
            // P34: a stopped container cannot be asked.
            (
                "worker",
                false,
                image(),
                1000,
                1000,
                "default for a stopped container",
                "c is stopped",
            ),
            (
                "",
                false,
                image(),
                1000,
                1000,
                "default for a stopped container",
                "c is stopped",
            ),
            (
                "root",
                false,
                image(),
                1000,
                1000,
                "default for a stopped container",
                "c is stopped",
            ),
            // P33: empty or root user: agent, else the effective ids.
            (
                "",
                true,
                image(),
                1001,
                1002,
                "user agent inside the container",
                "",
            ),
            (
                "root",
                true,
                image(),
                1001,
                1002,
                "user agent inside the container",
                "",
            ),
            (
                "0",
                true,
                image(),
                1001,
                1002,
                "user agent inside the container",
                "",
            ),
            (
                "0:0",
                true,
                image(),
                1001,
                1002,
                "user agent inside the container",
                "",
            ),
            (
                "root:staff",
                true,
                image(),
                1001,
                1002,
                "user agent inside the container",
                "",
            ),
            (
                "",
                true,
                Fake {
                    effective: Some((5, 6)),
                    ..bare()
                },
                5,
                6,
                "effective ids",
                "",
            ),
            (
                "",
                true,
                bare(),
                1000,
                1000,
                "default",
                "cannot run id inside container c",
            ),
        ];
        for (user, running, mut inside, uid, gid, source, warning) in cases {
            let got = owner("c", user, running, &mut inside);
            let case = format!("{user:?} running={running}: {got:?}");
            assert_eq!((got.uid, got.gid), (uid, gid), "{case}");
            assert!(got.source.contains(source), "{case}");
            if warning.is_empty() {
                assert_eq!(got.warning, "", "{case}");
            } else {
                assert!(got.warning.contains(warning), "{case}");
            }
            if !running {
                assert!(inside.asked.is_empty(), "{case}: asked {:?}", inside.asked);
            }
        }
    }

    #[test]
    fn the_source_quotes_the_whole_user_and_the_lookups_are_the_ones_of_today() {
        let mut inside = image();
        let got = owner("c", "worker:staff", true, &mut inside);
        assert_eq!(
            got.source,
            "Config.User worker:staff, resolved inside the container (id worker)"
        );
        assert_eq!(inside.asked, ["id worker", "getent staff"]);
        let mut inside = image();
        owner("c", "", true, &mut inside);
        assert_eq!(inside.asked, ["id agent"]);
        let mut inside = bare();
        owner("c", "root", true, &mut inside);
        assert_eq!(inside.asked, ["id agent", "id "]);
        let mut inside = image();
        owner("c", "0012", true, &mut inside);
        assert_eq!(inside.asked, ["id 12"]);
    }

    #[test]
    fn id_output_is_parsed_or_refused() {
        let cases: &[(&str, Option<(u64, u64)>)] = &[
            (
                "uid=1000(agent) gid=1000(agent) groups=1000(agent)\n",
                Some((1000, 1000)),
            ),
            (
                "uid=0(root) gid=0(root) groups=0(root),10(wheel)",
                Some((0, 0)),
            ),
            ("uid=2345 gid=3456", Some((2345, 3456))),
            ("  uid=1  gid=2  \n", Some((1, 2))),
            ("gid=2 uid=1", Some((1, 2))),
            ("uid=1000(agent)", None),
            ("gid=1000(agent)", None),
            ("uid=-1 gid=2", None),
            ("uid=x(agent) gid=2", None),
            ("uid==1 gid=2", None),
            ("id: 'ghost': no such user", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = parse_id(text).map(|i| (i.uid, i.gid));
            assert_eq!(got, *want, "{text:?}");
        }
    }

    #[test]
    fn getent_group_output_is_parsed_or_refused() {
        let cases: &[(&str, Option<u64>)] = &[
            ("staff:x:50:alice,bob\n", Some(50)),
            ("staff:x:50:", Some(50)),
            ("staff:x:50", Some(50)),
            ("staff:x", None),
            ("staff:x::", None),
            ("staff:x:fifty:", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_getent_group(text), *want, "{text:?}");
        }
    }

    #[test]
    fn taint_reads_sudo_and_the_system_directories() {
        let healthy = "0:0:/usr/bin/sudo\n0:0:/bin\n0:0:/etc\n0:0:/usr\n0:0:/usr/bin\n";
        let cases: &[(&str, &[&str])] = &[
            (healthy, &[]),
            ("", &[]),
            ("0:0:/bin\n0:0:/etc\n", &[]),
            (
                "1000:1000:/usr/bin/sudo\n0:0:/bin\n",
                &["/usr/bin/sudo is owned by uid 1000, not root"],
            ),
            ("0:65534:/usr/bin/sudo\n", &[]),
            (
                "65534:0:/usr/bin/sudo\n65534:65534:/etc\n0:65534:/usr\n",
                &[
                    "/usr/bin/sudo is owned by uid 65534, not root",
                    "/etc is owned by 65534:65534",
                    "/usr is owned by 0:65534",
                ],
            ),
            ("65534:65534\nstat: cannot stat '/usr/bin/sudo'\n", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(taint(text), *want, "{text:?}");
        }
    }
}
