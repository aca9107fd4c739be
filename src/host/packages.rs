//! The packages family: installs `.deb` files with `dpkg -i` on the execution target. With
//! `--root` other than `/`, dpkg gets `--root=DIR`, so it acts on that tree instead of the
//! running machine. Only paths of `.deb` files are accepted.

use std::path::PathBuf;
use std::time::Duration;

use super::Host;
use super::command::CommandError;
use crate::effects::Approval;

/// dpkg unpacks and runs maintainer scripts (sysbox's restart services).
const DPKG_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("packages::install_deb: {0:?} is not an absolute path to a .deb file")]
    NotADeb(String),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// The host path of a `.deb` a script names: absolute, ending in `.deb`.
pub fn check_deb_path(host: &Host, path: &str) -> Result<PathBuf, PackageError> {
    if !path.starts_with('/') || !path.ends_with(".deb") {
        return Err(PackageError::NotADeb(path.to_string()));
    }
    Ok(host.path(path))
}

/// Installs a `.deb` with `dpkg -i`. The path must name an existing regular `.deb` file.
pub fn install_deb(_: Approval, host: &Host, path: &std::path::Path) -> Result<(), PackageError> {
    let mut args = host.root_args();
    args.push("-i".into());
    args.push(path.display().to_string());
    host.run_as_root("dpkg", &args, DPKG_TIMEOUT)?.checked()?;
    Ok(())
}
