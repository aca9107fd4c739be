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

#[cfg(test)]
mod tests {
    use super::*;

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
