//! Sets `CAI_VERSION`, what `cai --version` prints after the name: the package version, and the
//! commit and its date when built from the crate's own git checkout (`build/version.rs`).

#[path = "build/version.rs"]
mod version;

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let package = std::env::var("CARGO_PKG_VERSION").expect("cargo sets it");
    println!(
        "cargo:rustc-env=CAI_VERSION={}",
        version::describe(&package, &dir)
    );
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/version.rs");
    for path in version::watched(&dir) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
