//! Building the image: cargo for aarch64-unknown-none, then a raw binary.
use crate::{deps, project_root};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// A built image.
pub struct Image {
    /// The ELF (symbols, sizes).
    pub elf: PathBuf,
    /// The raw binary a loader takes.
    pub raw: PathBuf,
}

/// Builds the image (`release` = size-optimised) and its raw binary.
pub fn build(release: bool) -> Result<Image> {
    deps::ensure_rust_target()?;
    let root = project_root();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root).args([
        "build",
        "--quiet",
        "--bin",
        "backplane",
        "--target",
        "aarch64-unknown-none",
    ]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("building the image failed");
    }
    let profile = if release { "release" } else { "debug" };
    let elf = root
        .join("target/aarch64-unknown-none")
        .join(profile)
        .join("backplane");
    let raw = raw_binary(&elf)?;
    Ok(Image { elf, raw })
}

/// Writes `elf`'s loadable bytes as a raw binary beside it (`.bin`), the form
/// QEMU, Xen and U-Boot load.
pub fn raw_binary(elf: &std::path::Path) -> Result<PathBuf> {
    let raw = elf.with_extension("bin");
    let status = Command::new(deps::llvm_tool("llvm-objcopy")?)
        .args(["-O", "binary"])
        .arg(elf)
        .arg(&raw)
        .status()?;
    if !status.success() {
        bail!("llvm-objcopy failed on {}", elf.display());
    }
    Ok(raw)
}

/// Section sizes of the image, in bytes.
pub struct Sizes {
    pub text: u64,
    pub data: u64,
    pub bss: u64,
    pub raw: u64,
}

/// Reads the sizes: text (code + read-only data), data, bss (zeroed data and
/// stacks), and the raw file.
pub fn sizes(img: &Image) -> Result<Sizes> {
    let out = Command::new(deps::llvm_tool("llvm-size")?)
        .arg("-A")
        .arg(&img.elf)
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let mut s = Sizes {
        text: 0,
        data: 0,
        bss: 0,
        raw: std::fs::metadata(&img.raw)?.len(),
    };
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(size)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        match name {
            ".text" | ".rodata" | ".eh_frame" | ".data.rel.ro" | ".got" | ".dynamic"
            | ".rela.dyn" => s.text += size,
            ".data" => s.data += size,
            ".bss" => s.bss += size,
            _ => {}
        }
    }
    // Stacks and guard pages live past .bss in the image's memory footprint.
    let end = symbol(img, "__image_end")?;
    let bss_end = symbol(img, "__bss_end")?;
    s.bss += end.saturating_sub(bss_end);
    Ok(s)
}

fn symbol(img: &Image, name: &str) -> Result<u64> {
    let out = Command::new(deps::llvm_tool("llvm-nm")?)
        .arg(&img.elf)
        .output()?;
    for line in String::from_utf8(out.stdout)?.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() == 3 && parts[2] == name {
            return Ok(u64::from_str_radix(parts[0], 16)?);
        }
    }
    bail!("symbol {name} not in the image")
}

/// Prints the size table.
pub fn print_sizes(img: &Image) -> Result<()> {
    let s = sizes(img)?;
    let kib = |b: u64| b as f64 / 1024.0;
    println!(
        "image {}: text {:.1} KiB, data {:.1} KiB, bss+stacks {:.1} KiB, total {:.1} KiB (raw file {:.1} KiB)",
        img.raw.display(),
        kib(s.text),
        kib(s.data),
        kib(s.bss),
        kib(s.text + s.data + s.bss),
        kib(s.raw)
    );
    Ok(())
}
