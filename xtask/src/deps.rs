//! Installing what the commands need on a fresh Debian machine: the rustup
//! target and components, and Debian packages. Says what it installs; when it
//! cannot, stops with the command that would.
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Debian packages for the standalone and system tests.
pub const QEMU_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-aarch64", "qemu-system-arm"),
    ("dtc", "device-tree-compiler"),
    ("fdtput", "device-tree-compiler"),
];

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

static APT_UPDATED: OnceLock<()> = OnceLock::new();

/// Installs Debian packages that provide the missing commands.
pub fn ensure_commands(needs: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|(c, _)| !have(c))
        .map(|(_, p)| *p)
        .collect();
    missing.sort();
    missing.dedup();
    ensure_packages_named(&missing)
}

fn ensure_packages_named(missing: &[&str]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: {list}\n  install them with: sudo apt-get install -y {list}"
        );
    }
    eprintln!("xtask: installing Debian packages: {list}");
    if APT_UPDATED.get().is_none() {
        run_quiet(Command::new("apt-get").arg("update"))?;
        let _ = APT_UPDATED.set(());
    }
    let status = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(missing)
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get install {list} failed");
    }
    Ok(())
}

fn run_quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The rustup target and components the image build needs.
pub fn ensure_rust_target() -> Result<()> {
    let sysroot = rustc_sysroot()?;
    if !sysroot.join("lib/rustlib/aarch64-unknown-none").exists() {
        eprintln!("xtask: installing rustup target aarch64-unknown-none");
        run_quiet(Command::new("rustup").args(["target", "add", "aarch64-unknown-none"]))?;
    }
    if llvm_tool("llvm-objcopy").is_err() {
        eprintln!("xtask: installing rustup component llvm-tools");
        run_quiet(Command::new("rustup").args(["component", "add", "llvm-tools", "rust-src"]))?;
    }
    Ok(())
}

fn rustc_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(crate::project_root())
        .output()?;
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Path of an LLVM tool from the `llvm-tools` component.
pub fn llvm_tool(name: &str) -> Result<PathBuf> {
    let sysroot = rustc_sysroot()?;
    let rustlib = sysroot.join("lib/rustlib");
    for entry in std::fs::read_dir(&rustlib)? {
        let p = entry?.path().join("bin").join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "{name} not found under {} (rustup component add llvm-tools)",
        rustlib.display()
    )
}
