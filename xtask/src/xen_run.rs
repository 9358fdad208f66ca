//! `cargo xtask run --hyp xen`: QEMU `virt` -> IOREQ Xen -> Backplane as
//! dom0 -> dom0less Linux domU(s) that use Backplane's virtio devices. The
//! built-in test guest (Debian's kernel + busybox initramfs) is the default;
//! options take the user's own guests.
use crate::image;
use crate::qemu;
use crate::xen::{self, Boot, DomU, QemuRun, VirtioMmio};
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::time::Duration;

/// What the user asked for.
pub struct XenRunOptions {
    pub release: bool,
    pub guest_kernel: Option<PathBuf>,
    pub guest_initramfs: Option<PathBuf>,
    pub guest_mem_mib: u64,
    pub guest_vcpus: u32,
    pub guest_bootargs: Option<String>,
    pub guests: u32,
    pub disk: Option<PathBuf>,
}

/// Boots it and streams Xen's console (dom0's and the domUs' output) until
/// every built-in guest has finished its test, or until Ctrl-C for user guests.
pub fn run(o: XenRunOptions) -> Result<()> {
    crate::deps::ensure_commands(crate::deps::QEMU_PACKAGES)?;
    let root = crate::project_root();
    let a = xen::prepare(&root)?;
    let img = image::build(o.release)?;
    image::print_sizes(&img)?;
    if o.guests == 0 || o.guests > 4 {
        bail!("--guests must be 1..4");
    }
    let work = root.join("target/xen/runs/run");
    std::fs::create_dir_all(&work)?;
    let mut extra: Vec<String> = Vec::new();
    let mut plan = Vec::new();
    for g in 1..=o.guests {
        let disk = match (&o.disk, g) {
            (Some(d), 1) => d.clone(),
            _ => {
                let d = work.join(format!("guest{g}.img"));
                if !d.exists() {
                    let mut data = vec![0u8; 32 << 20];
                    let msg = format!("Backplane test disk of guest {g}\n");
                    data[..msg.len()].copy_from_slice(msg.as_bytes());
                    std::fs::write(&d, data)?;
                }
                d
            }
        };
        if !disk.is_file() {
            bail!("disk image {} does not exist", disk.display());
        }
        let i = g - 1;
        extra.extend([
            "-drive".into(),
            format!("if=none,id=d{i},file={},format=raw", disk.display()),
            "-device".into(),
            format!("virtio-blk-device,drive=d{i}"),
            "-device".into(),
            "virtio-rng-device".into(),
        ]);
        plan.push(format!("{g}:blk@0x2000000/33=virtio-blk{i}"));
        plan.push(format!("{g}:rng@0x2000200/34=virtio-rng{i}"));
    }
    let builtin = o.guest_kernel.is_none();
    let domus: Vec<DomU> = (1..=o.guests)
        .map(|g| DomU {
            kernel: o
                .guest_kernel
                .clone()
                .unwrap_or_else(|| a.linux_image.clone()),
            ramdisk: o
                .guest_initramfs
                .clone()
                .or_else(|| builtin.then(|| a.initramfs.clone())),
            memory_mib: o.guest_mem_mib,
            vcpus: o.guest_vcpus,
            bootargs: o.guest_bootargs.clone().unwrap_or_else(|| {
                format!(
                    "console=ttyAMA0 rdinit=/init bp.test=smoke bp.tag=GUEST{g} bp.end=hold quiet"
                )
            }),
            virtio: (0..2).map(VirtioMmio::libxl_slot).collect(),
            vpl011: true,
            grant_virtio: false,
        })
        .collect();
    let boot = Boot {
        xen: a.xen_ioreq.clone(),
        xen_bootargs: format!(
            "{} dom0_mem=128M",
            Boot::DEFAULT_XEN_BOOTARGS.replace("dom0_mem=512M ", "")
        ),
        dom0_kernel: img.raw.clone(),
        dom0_ramdisk: None,
        dom0_bootargs: format!("backplane.plan={}", plan.join(";")),
        domus,
    };
    let mut run = QemuRun::new(boot, &work);
    run.extra_args = extra;
    let cmd = xen::boot_command(&run)?;
    println!(
        "xtask: booting Xen with Backplane as dom0 and {} guest(s); Ctrl-C ends the run",
        o.guests
    );
    let stops: Vec<String> = (1..=o.guests)
        .map(|g| format!("GUEST{g}: test smoke"))
        .collect();
    let stop_refs: Vec<&str> = if builtin && o.guests == 1 {
        stops.iter().map(String::as_str).collect()
    } else {
        Vec::new()
    };
    let out = qemu::run_until(
        cmd,
        Duration::from_secs(if builtin { 180 } else { 24 * 3600 }),
        true,
        &stop_refs,
    )?;
    if out.has("backplane: fatal") {
        bail!("Backplane reported a fatal error");
    }
    if builtin && !out.has("test smoke PASS") {
        bail!("the guest did not finish its test");
    }
    Ok(())
}
