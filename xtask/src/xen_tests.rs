//! The Xen path, end to end: QEMU `virt` -> IOREQ-capable Xen -> Backplane as
//! dom0 -> dom0less Linux domUs using Backplane's virtio devices.
use crate::harness::{Harness, Outcome, ensure};
use crate::image::Image;
use crate::xen::{self, Boot, DomU, QemuRun, VirtioMmio, XenArtifacts};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The real devices Xen gives to dom0 (QEMU's virtio-mmio devices).
pub struct Dom0Devices {
    pub disk: PathBuf,
    pub extra: Vec<String>,
}

impl Dom0Devices {
    /// A disk (and rng) for dom0 to own.
    pub fn disk_and_rng(disk: &Path) -> Self {
        let extra = [
            "-drive",
            &format!("if=none,id=d0,file={},format=raw", disk.display()),
            "-device",
            "virtio-blk-device,drive=d0",
            "-device",
            "virtio-rng-device",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Self { disk: disk.to_path_buf(), extra }
    }
}

/// A Linux domU with `n` served devices at libxl's slots, running `test`.
pub fn linux_domu(a: &XenArtifacts, test: &str, devices: u32, vcpus: u32) -> DomU {
    DomU {
        kernel: a.linux_image.clone(),
        ramdisk: Some(a.initramfs.clone()),
        memory_mib: 256,
        vcpus,
        bootargs: format!("console=ttyAMA0 rdinit=/init bp.test={test} quiet"),
        virtio: (0..devices).map(VirtioMmio::libxl_slot).collect(),
        vpl011: true,
    }
}

/// Boots Xen with Backplane as dom0.
pub fn boot(
    xen_bin: &Path,
    img: &Image,
    dom0_args: &str,
    domus: Vec<DomU>,
    dev: &Dom0Devices,
    name: &str,
    success: &[&str],
    failure: &[&str],
    timeout: Duration,
) -> Result<xen::RunOutcome> {
    let work = crate::project_root().join("target/xen/runs").join(name);
    std::fs::create_dir_all(&work)?;
    let boot = Boot {
        xen: xen_bin.to_path_buf(),
        xen_bootargs: format!("{} dom0_mem=128M", Boot::DEFAULT_XEN_BOOTARGS.replace("dom0_mem=512M ", "")),
        dom0_kernel: img.raw.clone(),
        dom0_ramdisk: None,
        dom0_bootargs: dom0_args.to_string(),
        domus,
    };
    let mut run = QemuRun::new(boot, &work);
    run.extra_args = dev.extra.clone();
    let cmd = xen::boot_command(&run)?;
    xen::run_until(cmd, &work.join("console.log"), success, failure, timeout)
}

/// Every Xen test.
pub fn run(h: &mut Harness, img: &Image) {
    let a = match xen::prepare(&crate::project_root()) {
        Ok(a) => a,
        Err(e) => {
            h.check("xen::prepare", || Ok(Outcome::Fail(format!("{e:#}"))));
            return;
        }
    };
    let dir = crate::project_root().join("target/xen/disks");
    let _ = std::fs::create_dir_all(&dir);
    h.check("xen::linux_domu_smoke", || {
        let disk = dir.join("smoke.img");
        std::fs::write(&disk, vec![0x5au8; 16 << 20])?;
        let dev = Dom0Devices::disk_and_rng(&disk);
        let domu = linux_domu(&a, "smoke", 2, 1);
        let out = boot(
            &a.xen_ioreq,
            img,
            "",
            vec![domu],
            &dev,
            "smoke",
            &["GUEST: test smoke PASS"],
            &["backplane: fatal", "GUEST: test smoke FAIL", "Oops"],
            Duration::from_secs(90),
        )?;
        let log = std::fs::read_to_string(&out.log)?;
        ensure(out.passed, || format!("{}; log {}:\n{}", out.reason, out.log.display(), tail(&log, 40)))?;
        Ok(Outcome::Pass)
    });
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
