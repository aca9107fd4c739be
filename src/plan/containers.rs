//! Which containers count as managed. A container is managed when it carries the
//! `containai.managed=true` label, or when it is a legacy container (no label, image
//! `containai:latest` or `containai:gemini`): legacy ones still hold user data, so every safety
//! gate must see them.

use std::collections::HashMap;

use serde::Serialize;

pub const MANAGED_LABEL: &str = "containai.managed";
pub const SSH_PORT_LABEL: &str = "containai.ssh-port";
pub const LEGACY_IMAGES: [&str; 2] = ["containai:latest", "containai:gemini"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    Label,
    Legacy,
}

/// Classifies a container from its labels and the image name it was created from.
pub fn classify(labels: &HashMap<String, String>, image: &str) -> Option<ManagedBy> {
    if labels.get(MANAGED_LABEL).map(String::as_str) == Some("true") {
        return Some(ManagedBy::Label);
    }
    if LEGACY_IMAGES.contains(&image)
        || LEGACY_IMAGES
            .iter()
            .any(|l| image == format!("docker.io/library/{l}"))
    {
        return Some(ManagedBy::Legacy);
    }
    None
}

/// When the engine unit last started: its main process began at `exec_start` and it reported
/// ready (`Type=notify`, after restoring its containers) at `ready`; microseconds since the
/// epoch, as systemd records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EngineStart {
    pub exec_start: i64,
    pub ready: i64,
}

/// Whether a container that stopped at `finished_at` (the engine's RFC 3339 time) was stopped by
/// the engine while it started: a dockerd that comes up after one that died without its stop
/// hook (SIGKILL, OOM) stops the old containers itself before it reports ready, and nothing
/// starts them again. Anything stopped after the engine reported ready was stopped by someone.
pub fn stopped_at_start(finished_at: &str, start: EngineStart) -> bool {
    unix_micros(finished_at).is_some_and(|t| t >= start.exec_start && t <= start.ready)
}

/// Microseconds since the epoch of an RFC 3339 time as the engine writes it
/// (`2026-01-27T10:00:00.123456789Z`, or with a `+hh:mm` offset); `None` when it is not one, or
/// is the engine's "never" (year 1).
pub fn unix_micros(text: &str) -> Option<i64> {
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = text.split_once('T')?;
    let mut ymd = date.splitn(3, '-');
    let (year, month, day) = (num(ymd.next()?)?, num(ymd.next()?)?, num(ymd.next()?)?);
    let clock = rest.get(..8)?;
    let mut hms = clock.splitn(3, ':');
    let (hour, minute, second) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
    let mut zone = &rest[8..];
    let mut micros = 0;
    if let Some(fraction) = zone.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        let padded = format!("{:0<6}", &fraction[..digits.min(6)]);
        micros = num(&padded)?;
        zone = &fraction[digits..];
    }
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = match zone.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = zone[1..].split_once(':')?;
            sign * (num(h)? * 3600 + num(m)? * 60)
        }
    };
    if year < 1970 || !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_times_parse_and_the_start_window_holds() {
        const S: i64 = 1_000_000;
        for (text, want) in [
            ("1970-01-01T00:00:00Z", Some(0)),
            (
                "2026-01-27T10:00:00.123456789Z",
                Some(1_769_508_000 * S + 123_456),
            ),
            ("2026-01-27T10:00:00.5Z", Some(1_769_508_000 * S + 500_000)),
            ("2026-01-27T11:00:00+01:00", Some(1_769_508_000 * S)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800 * S)),
            ("0001-01-01T00:00:00Z", None),
            ("", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-01-27 10:00:00Z", None),
            ("2026-01-27T10:00:00", None),
        ] {
            assert_eq!(unix_micros(text), want, "{text}");
        }
        let start = EngineStart {
            exec_start: 1_769_508_000 * S,
            ready: 1_769_508_012 * S + 250_000,
        };
        for (text, want) in [
            ("2026-01-27T10:00:00Z", true),
            ("2026-01-27T10:00:05Z", true),
            ("2026-01-27T10:00:12.25Z", true),
            // Stopped by someone right after the engine reported ready.
            ("2026-01-27T10:00:12.250001Z", false),
            ("2026-01-27T09:59:59.999999Z", false),
            ("0001-01-01T00:00:00Z", false),
        ] {
            assert_eq!(stopped_at_start(text, start), want, "{text}");
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn classification_table() {
        let cases = [
            (
                labels(&[("containai.managed", "true")]),
                "busybox",
                Some(ManagedBy::Label),
            ),
            (
                labels(&[("containai.managed", "true")]),
                "containai:latest",
                Some(ManagedBy::Label),
            ),
            (labels(&[]), "containai:latest", Some(ManagedBy::Legacy)),
            (labels(&[]), "containai:gemini", Some(ManagedBy::Legacy)),
            (
                labels(&[]),
                "docker.io/library/containai:latest",
                Some(ManagedBy::Legacy),
            ),
            (labels(&[("containai.managed", "false")]), "busybox", None),
            (labels(&[("containai.managed", "TRUE ")]), "busybox", None),
            (labels(&[]), "containai:other", None),
            (labels(&[]), "containai", None),
            (labels(&[("other", "true")]), "alpine", None),
        ];
        for (labels, image, want) in cases {
            assert_eq!(classify(&labels, image), want, "{labels:?} {image}");
        }
    }
}
