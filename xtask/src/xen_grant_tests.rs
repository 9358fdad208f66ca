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
use crate::xen::{DomU, VirtioMmio, XenArtifacts};
use crate::xen_tests::{Dom0Devices, boot_watching, check_passed, fresh_disk, lock_runs, tail};
use anyhow::Result;

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

fn grant_testguest(img: &Image, a: &XenArtifacts) -> Result<Outcome> {
    let kernel = crate::testguest::build()?;
    let root = crate::project_root();
    let dir = root.join("target/xen/disks");
    std::fs::create_dir_all(&dir)?;
    let disk = fresh_disk(&dir, "grant")?;
    let dev = Dom0Devices {
        extra: [
            "-drive",
            &format!("if=none,id=d0,file={},format=raw", disk.display()),
            "-device",
            "virtio-blk-device,drive=d0",
        ]
        .map(String::from)
        .to_vec(),
    };
    let domu = DomU {
        kernel,
        ramdisk: None,
        memory_mib: 128,
        vcpus: 1,
        bootargs: String::new(),
        virtio: vec![VirtioMmio::libxl_slot(0)],
        vpl011: true,
        grant_virtio: true,
    };
    let out = boot_watching(
        &a.xen_ioreq,
        img,
        "backplane.plan=1:blk@0x2000000/33=virtio-blk0",
        vec![domu],
        &dev,
        "grant-testguest",
        &MARKERS,
        &FAILURES,
    )?;
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
