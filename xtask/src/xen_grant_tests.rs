//! Grant-based virtio end to end: QEMU `virt` -> IOREQ Xen -> Backplane as dom0 -> the no_std
//! test guest (`guests/testguest`) as dom0less domU 1, whose virtio-blk frontend hands
//! Backplane grant addresses (`(1 << 63) | (ref << 12) | offset`, reference/xen.md §7).
//!
//! The guest writes 256 KiB at byte offset 4 MiB (sector 8192) of the served disk, reads it
//! back, then tries a never-granted ref and a read-only grant for a device-writable buffer
//! (each must end in DEVICE_NEEDS_RESET), resets, reads again and powers off. The check then
//! compares the host disk file at 4 MiB with the guest's pattern.
use crate::harness::{Harness, Outcome, ensure};
use crate::image::Image;
use crate::xen::{self, Boot, DomU, QemuRun, VirtioMmio, XenArtifacts};
use crate::xen_tests::{check_passed, fresh_disk, tail};
use anyhow::Result;
use std::time::Duration;

/// Where the guest writes (`guests/testguest/src/main.rs`: SECTOR, LEN).
const OFFSET: usize = 4 << 20;
const LEN: usize = 256 << 10;

/// The guest's data pattern (`pattern` in `guests/testguest/src/main.rs`).
fn pattern(i: usize) -> u8 {
    ((i as u32).wrapping_mul(0x9e37_79b1) >> 24) as u8 ^ (i >> 12) as u8
}

const MARKERS: [&str; 5] = [
    "TESTGUEST: grant blk wrote=262144 verified=yes",
    "TESTGUEST: hostile (a) never-granted-ref status=",
    "TESTGUEST: hostile (c) read-only-grant-for-device-write status=",
    "TESTGUEST: after resets read=4096 verified=yes",
    "TESTGUEST: done",
];
const FAILURES: [&str; 2] = ["backplane: fatal", " FAIL"];
const TIMEOUT: Duration = Duration::from_secs(120);

/// Adds `xen::grant_based_virtio_testguest`.
pub fn run(h: &mut Harness, img: &Image, a: &XenArtifacts) {
    const NAME: &str = "xen::grant_based_virtio_testguest";
    // Same filter as the other Xen tests: `BACKPLANE_XEN_TESTS=a,b` (substrings of names).
    let filter = std::env::var("BACKPLANE_XEN_TESTS").unwrap_or_default();
    if !filter.is_empty() && !filter.split(',').any(|f| !f.is_empty() && NAME.contains(f)) {
        h.check(NAME, || {
            Ok(Outcome::Skip("not in BACKPLANE_XEN_TESTS".into()))
        });
        return;
    }
    h.check(NAME, || {
        let _lock = lock_runs()?;
        grant_testguest(img, a)
    });
}

/// Takes the lock `xen_tests` holds around its runs (same file): Xen runs of two xtask
/// processes must not overlap (they share run and disk paths, and the two cores).
fn lock_runs() -> Result<std::fs::File> {
    let path = crate::project_root().join("target/xen/xen-tests.lock");
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "xen: waiting for {} (another xtask runs Xen tests)",
                path.display()
            );
            f.lock()?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    Ok(f)
}

fn grant_testguest(img: &Image, a: &XenArtifacts) -> Result<Outcome> {
    let kernel = crate::testguest::build()?;
    let root = crate::project_root();
    let dir = root.join("target/xen/disks");
    std::fs::create_dir_all(&dir)?;
    let disk = fresh_disk(&dir, "grant")?;
    let work = root.join("target/xen/runs/grant-testguest");
    std::fs::create_dir_all(&work)?;
    let boot = Boot {
        xen: a.xen_ioreq.clone(),
        xen_bootargs: format!(
            "{} dom0_mem=128M",
            Boot::DEFAULT_XEN_BOOTARGS.replace("dom0_mem=512M ", "")
        ),
        dom0_kernel: img.raw.clone(),
        dom0_ramdisk: None,
        dom0_bootargs: "backplane.plan=1:blk@0x2000000/33=virtio-blk0".into(),
        domus: vec![DomU {
            kernel,
            ramdisk: None,
            memory_mib: 128,
            vcpus: 1,
            bootargs: String::new(),
            virtio: vec![VirtioMmio::libxl_slot(0)],
            vpl011: true,
            grant_virtio: true,
        }],
    };
    let mut run = QemuRun::new(boot, &work);
    run.extra_args = [
        "-drive",
        &format!("if=none,id=d0,file={},format=raw", disk.display()),
        "-device",
        "virtio-blk-device,drive=d0",
    ]
    .map(String::from)
    .to_vec();
    let cmd = xen::boot_command(&run)?;
    let out = xen::run_until(cmd, &work.join("console.log"), &MARKERS, &FAILURES, TIMEOUT)?;
    check_passed(&out)?;
    let bytes = std::fs::read(&disk)?;
    let region = &bytes[OFFSET..OFFSET + LEN];
    let bad = (0..LEN).find(|&i| region[i] != pattern(i));
    ensure(bad.is_none(), || {
        let log = std::fs::read_to_string(&out.log).unwrap_or_default();
        format!(
            "the host disk differs from the guest's data at byte {} of the 256 KiB at 4 MiB; log {}:\n{}",
            bad.unwrap_or(0),
            out.log.display(),
            tail(&log, 20)
        )
    })?;
    Ok(Outcome::Pass)
}
