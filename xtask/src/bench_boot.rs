//! `cargo xtask bench boot`: QEMU start -> `backplane: ready`, beside QEMU
//! start -> exit for an image that only powers off, median of 5 each, in
//! one run; plus the image's own entry -> ready time, size and RAM in use.
use crate::{image, qemu};
use anyhow::{Context, Result};
use std::time::Duration;

/// A minimal Image: header, then PSCI SYSTEM_OFF through HVC.
fn empty_image() -> Vec<u8> {
    let mut img = vec![0u8; 0x1000];
    let put =
        |img: &mut Vec<u8>, off: usize, w: u32| img[off..off + 4].copy_from_slice(&w.to_le_bytes());
    put(&mut img, 0, 0x1400_0010); // b 0x40
    img[16..24].copy_from_slice(&0x1000u64.to_le_bytes()); // image_size
    img[24..32].copy_from_slice(&0xau64.to_le_bytes()); // flags
    put(&mut img, 56, 0x644d_5241); // magic
    put(&mut img, 0x40, 0xD280_0100); // movz x0, #8
    put(&mut img, 0x44, 0xF2B0_8000); // movk x0, #0x8400, lsl #16
    put(&mut img, 0x48, 0xD400_0002); // hvc #0
    img
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| {
            v.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
}

/// Runs the benchmark and prints its table.
pub fn run() -> Result<()> {
    crate::deps::ensure_commands(crate::deps::QEMU_PACKAGES)?;
    let img = image::build(true)?;
    let sizes = image::sizes(&img)?;
    let dir = crate::project_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, empty_image())?;
    let (mut ready, mut bare, mut own) = (Vec::new(), Vec::new(), Vec::new());
    let mut heap_used = 0;
    for _ in 0..5 {
        // Alternate the two so machine load affects both alike.
        let mut cmd = qemu::virt(3, false, "128");
        cmd.arg("-kernel").arg(&empty);
        let r = qemu::run(cmd, Duration::from_secs(20), false)?;
        anyhow::ensure!(!r.timed_out, "the empty image did not power off");
        bare.push(r.elapsed.as_secs_f64() * 1e3);
        let mut cmd = qemu::virt(3, false, "128");
        cmd.arg("-kernel").arg(&img.raw);
        let r = qemu::run_until(cmd, Duration::from_secs(20), false, &["backplane: ready"])?;
        let line = r
            .line("backplane: ready")
            .context("no ready line")?
            .to_string();
        ready.push(
            r.ready_at
                .map(|d| d.as_secs_f64() * 1e3)
                .unwrap_or(f64::NAN),
        );
        own.push(field(&line, "boot=").unwrap_or(0) as f64 / 1e3);
        heap_used = field(&line, "heap-used=").unwrap_or(0);
    }
    // Under -icount shift=0 virtual time is instructions (1 ns each): the
    // image's own boot cost without QEMU's translation time.
    let mut cmd = qemu::virt(3, false, "128");
    cmd.args(["-icount", "shift=0"])
        .arg("-kernel")
        .arg(&img.raw);
    let r = qemu::run_until(cmd, Duration::from_secs(20), false, &["backplane: ready"])?;
    let icount_ms = r
        .line("backplane: ready")
        .and_then(|l| field(l, "boot="))
        .unwrap_or(0) as f64
        / 1e3;
    let footprint = (sizes.text + sizes.data + sizes.bss) / 1024 + heap_used;
    println!(
        "xtask: bench boot: QEMU virt, GICv3, EL1, 128 MiB, release image; median of 5 (same run, alternating)"
    );
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| QEMU start -> `backplane: ready` | {:.1} ms |",
        median(ready.clone())
    );
    println!(
        "| QEMU start -> exit, empty image (PSCI SYSTEM_OFF only) | {:.1} ms |",
        median(bare.clone())
    );
    println!("| difference | {:+.1} ms |", median(ready) - median(bare));
    println!(
        "| image's own boot (entry -> ready, generic timer) | {:.2} ms |",
        median(own)
    );
    println!(
        "| image's own boot with `-icount shift=0` (instructions at 1 ns) | {icount_ms:.2} ms |"
    );
    println!(
        "| release image: raw file / text+data / bss+stacks | {:.1} KiB / {:.1} KiB / {:.1} KiB |",
        sizes.raw as f64 / 1024.0,
        (sizes.text + sizes.data) as f64 / 1024.0,
        sizes.bss as f64 / 1024.0
    );
    println!(
        "| RAM in use after boot (image + stacks + page tables + heap used) | {footprint} KiB |"
    );
    Ok(())
}
