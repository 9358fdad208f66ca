//! System tests of the foundation: the image boots on QEMU `virt` in every
//! configuration it must support, and its failures are reported and judged
//! as failures.
use crate::harness::{Harness, Outcome, ensure};
use crate::image::Image;
use crate::qemu::{self, RunOutput};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A run counts as a success when it reached ready, reported nothing fatal
/// and ended by itself.
pub fn judge(run: &RunOutput) -> Result<(), String> {
    if run.timed_out {
        return Err(format!(
            "hung (no power-off within the timeout); last lines:\n{}",
            run.tail(15)
        ));
    }
    if let Some(l) = run.line("backplane: fatal") {
        return Err(format!("fatal report: {l}\n{}", run.tail(15)));
    }
    if !run.has("backplane: ready") {
        return Err(format!(
            "never reached ready; last lines:\n{}",
            run.tail(15)
        ));
    }
    Ok(())
}

fn boot(img: &Image, gic: u8, el2: bool, mem: &str, append: Option<&str>) -> Result<RunOutput> {
    let mut cmd = qemu::virt(gic, el2, mem);
    cmd.arg("-kernel").arg(&img.raw);
    if let Some(a) = append {
        cmd.args(["-append", a]);
    }
    qemu::run(cmd, TIMEOUT, false)
}

/// Four little-endian instructions: x0 = dtb, branch to the image.
fn shim(dtb: u64, image: u64) -> Vec<u8> {
    let movz = |rd: u32, imm: u64, hw: u32| {
        0xD280_0000u32 | (hw << 21) | (((imm >> (16 * hw)) as u32 & 0xffff) << 5) | rd
    };
    let movk = |rd: u32, imm: u64, hw: u32| {
        0xF280_0000u32 | (hw << 21) | (((imm >> (16 * hw)) as u32 & 0xffff) << 5) | rd
    };
    let words = [
        movz(0, dtb, 0),
        movk(0, dtb, 1),
        movz(1, image, 0),
        movk(1, image, 1),
        0xD61F_0020, // br x1
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Boots the image at `load` (not where `-kernel` puts it), with the
/// machine's own device tree (or `dtb_override`) placed by `-device loader`.
fn boot_at(
    img: &Image,
    dir: &Path,
    load: u64,
    dtb_override: Option<&Path>,
    bootargs: &str,
) -> Result<RunOutput> {
    let machine = "virt,gic-version=3,virtualization=on";
    let dtb = dir.join("virt.dtb");
    let status = Command::new("qemu-system-aarch64")
        .args([
            "-M",
            &format!("{machine},dumpdtb={}", dtb.display()),
            "-cpu",
            "cortex-a57",
            "-m",
            "1024",
        ])
        .args(["-nographic", "-nic", "none"])
        .output()
        .context("dumping the virt DTB")?;
    anyhow::ensure!(status.status.success(), "dumpdtb failed");
    if !bootargs.is_empty() {
        let ok = Command::new("fdtput")
            .arg("-t")
            .arg("s")
            .arg(&dtb)
            .args(["/chosen", "bootargs", bootargs])
            .status()?;
        anyhow::ensure!(ok.success(), "fdtput failed");
    }
    let dtb = dtb_override.map(Path::to_path_buf).unwrap_or(dtb);
    let dtb_addr = 0x4400_0000u64;
    let shim_path = dir.join("shim.bin");
    std::fs::write(&shim_path, shim(dtb_addr, load))?;
    let mut cmd = qemu::virt(3, true, "1024");
    cmd.args([
        "-device",
        &format!(
            "loader,file={},addr={dtb_addr:#x},force-raw=on",
            dtb.display()
        ),
    ])
    .args([
        "-device",
        &format!(
            "loader,file={},addr={load:#x},force-raw=on",
            img.raw.display()
        ),
    ])
    .args([
        "-device",
        &format!(
            "loader,file={},addr=0x40f00000,force-raw=on",
            shim_path.display()
        ),
    ])
    .args(["-device", "loader,addr=0x40f00000,cpu-num=0"]);
    qemu::run(cmd, TIMEOUT, false)
}

/// Every foundation system test.
pub fn run(h: &mut Harness, img: &Image, release: &Image) {
    for gic in [2u8, 3] {
        for el2 in [false, true] {
            for mem in ["128", "2048"] {
                let name = format!(
                    "boot::gicv{gic}_{}_{}mib",
                    if el2 { "el2" } else { "el1" },
                    mem
                );
                h.check(&name, || {
                    let r = boot(img, gic, el2, mem, None)?;
                    judge(&r).map_err(anyhow::Error::msg)?;
                    let ready = r.line("backplane: ready").unwrap_or("");
                    let want = [
                        format!("el={}", if el2 { 2 } else { 1 }),
                        format!("gic=v{gic}"),
                        format!("ram={mem}MiB"),
                    ];
                    for w in &want {
                        ensure(ready.contains(w.as_str()), || {
                            format!("ready line lacks {w}: {ready}")
                        })?;
                    }
                    ensure(r.has("timer: interrupt 27 taken"), || {
                        "no timer interrupt proof".into()
                    })?;
                    ensure(r.has("backplane: powering off"), || {
                        "did not power off cleanly".into()
                    })?;
                    Ok(Outcome::Pass)
                });
            }
        }
    }
    h.check("boot::release_image", || {
        let r = boot(release, 3, false, "128", None)?;
        judge(&r).map_err(anyhow::Error::msg)?;
        Ok(Outcome::Pass)
    });
    let dir = crate::project_root().join("target/systest");
    let _ = std::fs::create_dir_all(&dir);
    for load in [0x4700_0000u64, 0x6020_0000] {
        h.check(&format!("boot::loaded_at_{load:#x}"), || {
            let r = boot_at(img, &dir, load, None, "")?;
            judge(&r).map_err(anyhow::Error::msg)?;
            let want = format!("load={load:#x}");
            ensure(
                r.line("backplane: ready")
                    .is_some_and(|l| l.contains(&want)),
                || format!("ready line does not show {want}:\n{}", r.tail(5)),
            )?;
            Ok(Outcome::Pass)
        });
    }
    let faults: [(&str, &[&str]); 4] = [
        (
            "data-abort",
            &[
                "data abort (EC 0x25)",
                "FAR 0xff0000000000",
                "ELR 0x",
                "x30",
            ],
        ),
        (
            "undef",
            &["unknown instruction (EC 0x0)", "ESR 0x2000000", "x0 "],
        ),
        ("panic", &["panic at src/faults.rs", "deliberate panic"]),
        ("stack-overflow", &["stack overflow (guard page"]),
    ];
    for (fault, expect) in faults {
        h.check(&format!("boot::fault_{fault}_reported_as_failure"), || {
            let r = boot(
                img,
                3,
                false,
                "128",
                Some(&format!("backplane.fault={fault}")),
            )?;
            ensure(!r.timed_out, || {
                format!("hung instead of powering off:\n{}", r.tail(10))
            })?;
            ensure(judge(&r).is_err(), || {
                "the harness judged a faulting run a success".into()
            })?;
            for e in expect {
                ensure(r.has(e), || format!("report lacks '{e}':\n{}", r.tail(20)))?;
            }
            Ok(Outcome::Pass)
        });
    }
    h.check("boot::fault_at_el2_other_address", || {
        let r = boot_at(img, &dir, 0x4700_0000, None, "backplane.fault=undef")?;
        ensure(
            judge(&r).is_err() && r.has("unknown instruction (EC 0x0)"),
            || r.tail(10),
        )?;
        Ok(Outcome::Pass)
    });
    h.check("boot::corrupt_device_tree", || {
        let bad = dir.join("corrupt.dtb");
        let mut bytes = vec![0u8; 4096];
        bytes[..4].copy_from_slice(&0xd00d_feedu32.to_be_bytes());
        bytes[4..8].copy_from_slice(&4096u32.to_be_bytes());
        bytes[8..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 7) as u8);
        std::fs::write(&bad, bytes)?;
        let r = boot_at(img, &dir, 0x4700_0000, Some(&bad), "")?;
        ensure(!r.timed_out, || format!("hung:\n{}", r.tail(10)))?;
        ensure(!r.has("backplane: ready"), || {
            "reached ready with a corrupt tree".into()
        })?;
        ensure(r.has("device tree") && r.has("corrupt"), || {
            format!("no clear message:\n{}", r.tail(10))
        })?;
        Ok(Outcome::Pass)
    });
    h.check("boot::missing_device_tree", || {
        let mut cmd = qemu::virt(3, false, "128");
        cmd.args([
            "-device",
            &format!(
                "loader,file={},addr=0x47000000,cpu-num=0,force-raw=on",
                img.raw.display()
            ),
        ]);
        let r = qemu::run(cmd, TIMEOUT, false)?;
        ensure(!r.timed_out && !r.has("backplane: ready"), || r.tail(10))?;
        ensure(r.has("no device tree"), || {
            format!("no clear message:\n{}", r.tail(10))
        })?;
        Ok(Outcome::Pass)
    });
}
