//! The grant-path test guest (`guests/testguest`): a small no_std dom0less domU, its own crate
//! outside the workspace, built for aarch64-unknown-none and turned into a raw arm64 Image.
use crate::{deps, project_root};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// Builds the guest (release) and returns its raw Image.
pub fn build() -> Result<PathBuf> {
    deps::ensure_rust_target()?;
    let root = project_root();
    // The workspace's rustflags (PIE, the image's linker script) are for Backplane, not for the
    // guest: an empty CARGO_ENCODED_RUSTFLAGS overrides them; the guest's build.rs names its
    // own linker script.
    let status = Command::new("cargo")
        .current_dir(&root)
        .env("CARGO_ENCODED_RUSTFLAGS", "")
        .args([
            "build",
            "--quiet",
            "--release",
            "--manifest-path",
            "guests/testguest/Cargo.toml",
            "--target",
            "aarch64-unknown-none",
            "--target-dir",
            "target/testguest",
        ])
        .status()
        .context("running cargo build for the test guest")?;
    if !status.success() {
        bail!("building guests/testguest failed");
    }
    let elf = root.join("target/testguest/aarch64-unknown-none/release/testguest");
    let raw = crate::image::raw_binary(&elf)?;
    let head = std::fs::read(&raw)?;
    if head.get(56..60) != Some(b"ARM\x64".as_slice()) {
        bail!("{} has no arm64 Image header", raw.display());
    }
    Ok(raw)
}
