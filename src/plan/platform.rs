//! Platform detection: macOS by target OS, WSL2 when the kernel release mentions Microsoft/WSL,
//! else Linux. Config `platform = ...` overrides detection. Touches nothing: the caller reads the
//! kernel release (under `--root`) and passes its text.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Linux,
    Wsl2,
    Macos,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Linux => "linux",
            Platform::Wsl2 => "wsl2",
            Platform::Macos => "macos",
        }
    }
}

/// Detects the platform; `osrelease` is the text of `/proc/sys/kernel/osrelease` under `--root`
/// (empty when it cannot be read).
pub fn detect(osrelease: &str) -> Platform {
    if cfg!(target_os = "macos") {
        return Platform::Macos;
    }
    classify_release(osrelease)
}

pub fn classify_release(release: &str) -> Platform {
    let lower = release.to_ascii_lowercase();
    if lower.contains("microsoft") || lower.contains("wsl") {
        Platform::Wsl2
    } else {
        Platform::Linux
    }
}

/// The Debian architecture name of this machine.
pub fn deb_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_kernel_releases() {
        for (release, want) in [
            ("5.15.167.4-microsoft-standard-WSL2", Platform::Wsl2),
            ("4.4.0-19041-Microsoft", Platform::Wsl2),
            ("6.1.0-28-amd64", Platform::Linux),
            ("", Platform::Linux),
        ] {
            assert_eq!(classify_release(release), want, "{release}");
        }
    }
}
