//! Plumbing self-tests: Xen with Debian's Linux as dom0 and one dom0less Linux domU. These use
//! no Backplane code; they show that the Xen, DT and guest artifacts work (and what a domU does
//! when its virtio-mmio window has no server).
use super::dtb::{Boot, DomU, VirtioMmio};
use super::qemu::{QemuRun, RunOutcome, Serial, boot_command_with_layout, run_until};
use super::{XenArtifacts, step};
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// Boot `xen` with Linux dom0 (`bp.test=dom0`, stays up) and a Linux domU running `bp.test=smoke`.
/// With `virtio`, the domU's partial DT carries one `virtio,mmio` node nobody serves.
pub fn linux_dom0_smoke(
    a: &XenArtifacts,
    xen: &Path,
    name: &str,
    virtio: bool,
    timeout: Duration,
) -> Result<RunOutcome> {
    let dir = a.cache.join("runs").join(name);
    std::fs::create_dir_all(&dir)?;
    let boot = Boot {
        xen: xen.to_path_buf(),
        xen_bootargs: Boot::DEFAULT_XEN_BOOTARGS.into(),
        dom0_kernel: a.linux_image.clone(),
        dom0_ramdisk: Some(a.initramfs.clone()),
        dom0_bootargs:
            "console=hvc0 earlycon=xen rdinit=/init bp.tag=DOM0 bp.test=dom0 bp.end=hold".into(),
        domus: vec![DomU {
            kernel: a.linux_image.clone(),
            ramdisk: Some(a.initramfs.clone()),
            memory_mib: 256,
            vcpus: 1,
            bootargs: "console=ttyAMA0 rdinit=/init bp.test=smoke".into(),
            virtio: if virtio {
                vec![VirtioMmio::libxl_slot(0)]
            } else {
                vec![]
            },
            vpl011: true,
            grant_virtio: false,
        }],
    };
    let mut r = QemuRun::new(boot, &dir);
    r.serial = Serial::Stdio;
    let (cmd, layout) = boot_command_with_layout(&r)?;
    step(&format!("run {name}: $ {}", super::show(&cmd)));
    for m in &layout.modules {
        step(&format!(
            "  module {:#x}..{:#x} {}",
            m.addr,
            m.addr + m.size,
            m.file.display()
        ));
    }
    let out = run_until(
        cmd,
        &dir.join("console.log"),
        &["DOM0: ready", "GUEST: ready", "GUEST: test smoke"],
        // An unserved virtio-mmio window oopses the domU's virtio_mmio probe (expected there).
        if virtio {
            &["Kernel panic", "(XEN) Panic on CPU"]
        } else {
            &["Kernel panic", "(XEN) Panic on CPU", "Internal error: Oops"]
        },
        timeout,
    )?;
    step(&format!(
        "run {name}: {} ({}) in {:.1?}; markers {:?}",
        if out.passed { "PASS" } else { "FAIL" },
        out.reason,
        out.elapsed,
        out.seen
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts() -> XenArtifacts {
        super::super::prepare(&crate::project_root()).unwrap()
    }

    #[test]
    #[ignore = "boots Xen under QEMU (minutes)"]
    fn ioreq_xen_linux_smoke() {
        let a = artifacts();
        let out = linux_dom0_smoke(
            &a,
            &a.xen_ioreq,
            "ioreq-smoke",
            false,
            Duration::from_secs(600),
        )
        .unwrap();
        assert!(out.passed, "{out:?}");
    }

    #[test]
    #[ignore = "boots Xen under QEMU (minutes)"]
    fn ioreq_xen_unserved_virtio() {
        let a = artifacts();
        let out = linux_dom0_smoke(
            &a,
            &a.xen_ioreq,
            "ioreq-unserved-virtio",
            true,
            Duration::from_secs(600),
        )
        .unwrap();
        println!("{out:?}");
    }

    #[test]
    #[ignore = "boots Xen under QEMU (minutes)"]
    fn debian_xen_linux_smoke() {
        let a = artifacts();
        let out = linux_dom0_smoke(
            &a,
            &a.xen_debian,
            "debian-smoke",
            false,
            Duration::from_secs(600),
        )
        .unwrap();
        assert!(out.passed, "{out:?}");
    }
}
