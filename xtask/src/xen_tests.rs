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
    pub extra: Vec<String>,
}

impl Dom0Devices {
    /// Disks (in order: virtio-blk0, 1, ...) and an entropy source for dom0 to own.
    pub fn disks_and_rng(disks: &[&Path]) -> Self {
        let mut extra = Vec::new();
        for (i, d) in disks.iter().enumerate() {
            extra.push("-drive".to_string());
            extra.push(format!("if=none,id=d{i},file={},format=raw", d.display()));
            extra.push("-device".to_string());
            extra.push(format!("virtio-blk-device,drive=d{i}"));
        }
        extra.push("-device".into());
        extra.push("virtio-rng-device".into());
        Self { extra }
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
) -> Result<xen::RunOutcome> {
    let work = crate::project_root().join("target/xen/runs").join(name);
    std::fs::create_dir_all(&work)?;
    let boot = Boot {
        xen: xen_bin.to_path_buf(),
        xen_bootargs: format!(
            "{} dom0_mem=128M",
            Boot::DEFAULT_XEN_BOOTARGS.replace("dom0_mem=512M ", "")
        ),
        dom0_kernel: img.raw.clone(),
        dom0_ramdisk: None,
        dom0_bootargs: dom0_args.to_string(),
        domus,
    };
    let mut run = QemuRun::new(boot, &work);
    run.extra_args = dev.extra.clone();
    let cmd = xen::boot_command(&run)?;
    xen::run_until(cmd, &work.join("console.log"), success, &FAILURES, TIMEOUT)
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
    let dir = dir.as_path();
    h.check("xen::linux_domu_smoke", || {
        let disk = fresh_disk(dir, "smoke")?;
        let dev = Dom0Devices::disks_and_rng(&[&disk]);
        let out = boot(
            &a.xen_ioreq,
            img,
            "",
            vec![linux_domu(&a, "smoke", 2, 1)],
            &dev,
            "smoke",
            &["GUEST: test smoke PASS"],
        )?;
        check_passed(&out)
    });
    for vcpus in [1u32, 2] {
        h.check(&format!("xen::linux_domu_disk_rng_{vcpus}vcpu"), || {
            let disk = fresh_disk(dir, &format!("full{vcpus}"))?;
            let dev = Dom0Devices::disks_and_rng(&[&disk]);
            let out = boot(
                &a.xen_ioreq,
                img,
                "",
                vec![linux_domu(&a, "full", 2, vcpus)],
                &dev,
                &format!("full{vcpus}"),
                &["GUEST: test full PASS"],
            )?;
            check_passed(&out)?;
            let log = std::fs::read_to_string(&out.log)?;
            check_disk_line(&log, "GUEST", &disk)?;
            ensure(log.contains("GUEST: rng bytes=64"), || {
                "no entropy line".into()
            })?;
            ensure(log.contains("vda size=33554432"), || {
                "the domU saw the wrong disk size".into()
            })?;
            Ok(Outcome::Pass)
        });
    }
    h.check("xen::two_domus_each_own_disk", || {
        let d1 = fresh_disk(dir, "two-a")?;
        let d2 = fresh_disk(dir, "two-b")?;
        let dev = Dom0Devices::disks_and_rng(&[&d1, &d2]);
        let plan = "backplane.plan=1:blk@0x2000000/33=virtio-blk0;2:blk@0x2000000/33=virtio-blk1";
        let mut g1 = linux_domu(&a, "disk", 1, 1);
        g1.bootargs.push_str(" bp.tag=GUESTA");
        let mut g2 = linux_domu(&a, "disk", 1, 1);
        g2.bootargs.push_str(" bp.tag=GUESTB");
        let out = boot(
            &a.xen_ioreq,
            img,
            plan,
            vec![g1, g2],
            &dev,
            "two",
            &["GUESTA: test disk PASS", "GUESTB: test disk PASS"],
        )?;
        check_passed(&out)?;
        let log = std::fs::read_to_string(&out.log)?;
        check_disk_line(&log, "GUESTA", &d1)?;
        check_disk_line(&log, "GUESTB", &d2)?;
        Ok(Outcome::Pass)
    });
    h.check("xen::debian_xen_without_ioreq_is_reported", || {
        let disk = fresh_disk(dir, "negative")?;
        let dev = Dom0Devices::disks_and_rng(&[&disk]);
        let msg = "this Xen has no IOREQ server support (CONFIG_IOREQ_SERVER); guests' virtio devices are not served";
        // No virtio nodes in the guest: it must not probe a window nobody serves.
        let out = boot(&a.xen_debian, img, "", vec![linux_domu(&a, "smoke", 0, 1)], &dev, "negative",
            &[msg, "backplane: ready as Xen dom0", "GUEST: test smoke PASS"])?;
        check_passed(&out)
    });
}

const TIMEOUT: Duration = Duration::from_secs(120);
const FAILURES: [&str; 4] = ["backplane: fatal", " FAIL", "Oops", "Kernel panic"];

fn fresh_disk(dir: &Path, name: &str) -> Result<PathBuf> {
    let disk = dir.join(format!("{name}.img"));
    let data: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&disk, data)?;
    Ok(disk)
}

fn check_passed(out: &xen::RunOutcome) -> Result<Outcome> {
    let log = std::fs::read_to_string(&out.log).unwrap_or_default();
    ensure(out.passed, || {
        format!(
            "{}; log {}:\n{}",
            out.reason,
            out.log.display(),
            tail(&log, 40)
        )
    })?;
    Ok(Outcome::Pass)
}

/// The guest's `disk wrote=... md5=W readback=R` line must show W == R, and
/// the host file's 16 MiB at 4 MiB must hash to W as well.
fn check_disk_line(log: &str, tag: &str, disk: &Path) -> Result<()> {
    let prefix = format!("{tag}: disk wrote=16MiB at=4MiB md5=");
    let line = log
        .lines()
        .find(|l| l.contains(&prefix))
        .ok_or_else(|| anyhow::anyhow!("no disk line from {tag}"))?;
    let rest = &line[line.find(&prefix).unwrap() + prefix.len()..];
    let (w, r) = rest
        .split_once(" readback=")
        .ok_or_else(|| anyhow::anyhow!("bad disk line: {line}"))?;
    ensure(w.trim() == r.trim(), || {
        format!("{tag} read back other data: {line}")
    })?;
    let bytes = std::fs::read(disk)?;
    let region = &bytes[4 << 20..20 << 20];
    let host = md5_hex(region)?;
    ensure(host == w.trim(), || {
        format!("{tag}: host file has md5 {host}, guest wrote {w}")
    })?;
    Ok(())
}

fn md5_hex(data: &[u8]) -> Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(data)?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
