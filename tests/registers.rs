//! Register-level semantics of the virtio-mmio register file (§1 of
//! reference/virtio.md) and split-ring notification behaviour.

mod common;

use backplane::backends::mem::MemDisk;
use backplane::devices::blk::{self, Block};
use backplane::virtio::HostMemory;
use backplane::virtio::{GuestMemory, MmioDevice, features, status};
use common::rings::{BASE, DATA, Harness, SIZE, Split};

fn raw() -> (MmioDevice, HostMemory) {
    (
        MmioDevice::new(Box::new(Block::new(Box::new(MemDisk::new(2048))))),
        HostMemory::with_region(BASE, SIZE),
    )
}

#[test]
fn identity_registers() {
    let (mut d, mut m) = raw();
    assert_eq!(d.read(0x000, 4, &mut m), 0x7472_6976);
    assert_eq!(d.read(0x004, 4, &mut m), 2);
    assert_eq!(d.read(0x008, 4, &mut m), 2);
    assert_eq!(d.device_id(), 2);
}

#[test]
fn feature_words_page_and_high_words_read_zero() {
    let (mut d, mut m) = raw();
    let offered = d.transport().device_features();
    for sel in 0..4u64 {
        d.write(0x014, 4, sel, &mut m);
        let want = match sel {
            0 => offered & 0xffff_ffff,
            1 => offered >> 32,
            _ => 0,
        };
        assert_eq!(d.read(0x010, 4, &mut m), want, "word {sel}");
    }
    assert_ne!(offered & features::VERSION_1, 0);
    assert_ne!(offered & features::RING_PACKED, 0);
    assert_ne!(offered & blk::feature::FLUSH, 0);
    assert_eq!(offered & blk::feature::RO, 0);
}

fn negotiate(d: &mut MmioDevice, m: &mut HostMemory, words: &[(u64, u64)]) -> u8 {
    d.write(0x070, 4, 0, m);
    d.write(0x070, 4, 3, m);
    for &(sel, v) in words {
        d.write(0x024, 4, sel, m);
        d.write(0x020, 4, v, m);
    }
    d.write(0x070, 4, 11, m);
    d.read(0x070, 4, m) as u8
}

#[test]
fn features_ok_checks() {
    let (mut d, mut m) = raw();
    // No VERSION_1: refused.
    assert_eq!(
        negotiate(&mut d, &mut m, &[(0, 0)]) & status::FEATURES_OK,
        0
    );
    // DRIVER_OK does not latch without FEATURES_OK.
    d.write(0x070, 4, 15, &mut m);
    assert_eq!(d.read(0x070, 4, &mut m) as u8 & status::DRIVER_OK, 0);
    // A bit not offered (RO on a writable disk): refused.
    let ro = blk::feature::RO;
    assert_eq!(
        negotiate(&mut d, &mut m, &[(0, ro), (1, 1)]) & status::FEATURES_OK,
        0
    );
    // Bits in word 2: refused.
    assert_eq!(
        negotiate(&mut d, &mut m, &[(1, 1), (2, 1)]) & status::FEATURES_OK,
        0
    );
    // Plain VERSION_1: accepted, and again after a reset.
    for _ in 0..2 {
        assert_ne!(
            negotiate(&mut d, &mut m, &[(1, 1)]) & status::FEATURES_OK,
            0
        );
    }
    assert_eq!(d.transport().negotiated_features(), features::VERSION_1);
    // Driver feature writes after FEATURES_OK are ignored.
    d.write(0x024, 4, 0, &mut m);
    d.write(0x020, 4, blk::feature::FLUSH, &mut m);
    assert_eq!(d.transport().driver_features(), features::VERSION_1);
}

#[test]
fn status_cannot_clear_bits_and_zero_resets() {
    let (mut d, mut m) = raw();
    negotiate(&mut d, &mut m, &[(1, 1)]);
    d.write(0x070, 4, 1, &mut m);
    assert_eq!(d.read(0x070, 4, &mut m), 11);
    d.write(0x030, 4, 0, &mut m);
    d.write(0x038, 4, 8, &mut m);
    d.write(0x070, 4, 0, &mut m);
    assert_eq!(d.read(0x070, 4, &mut m), 0);
    assert_eq!(d.transport().queue(0).unwrap().size(), blk::QUEUE_SIZE);
    assert_eq!(d.transport().negotiated_features(), 0);
}

#[test]
fn queue_registers() {
    let mut h = Harness::new(Block::new(Box::new(MemDisk::new(8))), 0, &[8]);
    h.w(0x030, 5);
    assert_eq!(h.r(0x034), 0, "queue 5 does not exist");
    assert_eq!(h.r(0x044), 0);
    h.w(0x044, 1);
    h.w(0x038, 4);
    assert!(!h.dev.needs_reset());
    h.w(0x030, 0);
    assert_eq!(h.r(0x034), u64::from(blk::QUEUE_SIZE));
    assert_eq!(h.r(0x044), 1);
    // Live queue: size and address writes ignored.
    let before = h.dev.transport().queue_addresses(0);
    h.w(0x038, 2);
    h.w(0x080, 0x1234_0000);
    h.w(0x0a4, 7);
    assert_eq!(h.dev.transport().queue_addresses(0), before);
    assert_eq!(h.dev.transport().queue(0).unwrap().size(), 8);
    // Stop, then it reads 0.
    h.w(0x044, 0);
    assert_eq!(h.r(0x044), 0);
}

#[test]
fn config_space_widths_and_generation() {
    let (mut d, mut m) = raw();
    assert_eq!(d.read(0x100, 8, &mut m), 2048);
    assert_eq!(d.read(0x100, 4, &mut m), 2048);
    assert_eq!(d.read(0x104, 4, &mut m), 0);
    assert_eq!(d.read(0x101, 1, &mut m), 8);
    assert_eq!(d.read(0x100, 2, &mut m), 2048);
    assert_eq!(d.read(0x114, 4, &mut m), 512, "blk_size");
    // Beyond config: 0; bad width: 0.
    assert_eq!(d.read(0x100 + 60, 4, &mut m), 0);
    assert_eq!(d.read(0x100 + 58, 4, &mut m), 0);
    assert_eq!(d.read(0x100, 3, &mut m), 0);
    assert_eq!(d.read(0x1ff, 1, &mut m), 0);
    // writeback toggling changes the generation.
    let g = d.read(0x0fc, 4, &mut m);
    assert_eq!(d.read(0x120, 1, &mut m), 1);
    d.write(0x120, 1, 0, &mut m);
    assert_eq!(d.read(0x120, 1, &mut m), 0);
    assert_ne!(d.read(0x0fc, 4, &mut m), g);
    // Read-only fields ignore writes.
    d.write(0x100, 8, 5, &mut m);
    assert_eq!(d.read(0x100, 8, &mut m), 2048);
}

#[test]
fn shared_memory_registers_report_no_region() {
    let (mut d, mut m) = raw();
    d.write(0x0ac, 4, 0, &mut m);
    for off in [0x0b0, 0x0b4, 0x0b8, 0x0bc] {
        assert_eq!(d.read(off, 4, &mut m), 0xffff_ffff);
    }
}

#[test]
fn bad_offsets_and_widths_read_zero_and_ignore_writes() {
    let (mut d, mut m) = raw();
    let before = m.clone();
    for (off, size) in [
        (0x004, 2),
        (0x002, 4),
        (0x018, 4),
        (0x014, 4),
        (0x0f0, 4),
        (0x000, 8),
    ] {
        assert_eq!(d.read(off, size, &mut m), 0, "{off:#x}/{size}");
    }
    for (off, size) in [
        (0x000, 4),
        (0x070, 2),
        (0x071, 4),
        (0x0f8, 4),
        (0x300, 4),
        (0x100, 7),
    ] {
        d.write(off, size, 0xffff_ffff, &mut m);
    }
    d.write(u64::MAX, 4, 1, &mut m);
    assert_eq!(d.read(u64::MAX - 2, 8, &mut m), 0);
    assert_eq!(d.read(0x070, 4, &mut m), 0);
    assert!(m == before);
}

/// A 1-sector read request at descriptors `base..base+3`.
fn read_req(h: &mut Harness, q: &mut Split, base: u16, sector: u64) {
    let hdr = DATA + u64::from(base) * 0x400;
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&sector.to_le_bytes());
    h.mem.write(hdr, &b).unwrap();
    q.set_desc(&mut h.mem, base, hdr, 16, 1, base + 1);
    q.set_desc(&mut h.mem, base + 1, hdr + 0x100, 512, 3, base + 2);
    q.set_desc(&mut h.mem, base + 2, hdr + 0x300, 1, 2, 0);
    q.publish(&mut h.mem, base);
}

#[test]
fn interrupt_ack_and_edges() {
    let mut h = Harness::new(Block::new(Box::new(MemDisk::new(8))), 0, &[4]);
    let mut q = Split::new(0, 4);
    assert!(!h.dev.take_interrupt_edge());
    read_req(&mut h, &mut q, 0, 0);
    h.kick(0);
    assert_eq!(h.isr(), 1);
    assert!(h.dev.interrupt_pending());
    assert!(h.dev.take_interrupt_edge());
    assert!(!h.dev.take_interrupt_edge());
    h.w(0x064, 1);
    assert_eq!(h.isr(), 0);
    assert!(!h.dev.interrupt_pending());
}

#[test]
fn ring_reset_resets_one_queue() {
    let mut h = Harness::new(
        Block::new(Box::new(MemDisk::new(8))),
        features::RING_RESET,
        &[4],
    );
    let mut q = Split::new(0, 4);
    read_req(&mut h, &mut q, 0, 0);
    h.kick(0);
    assert_eq!(q.used_idx(&mut h.mem), 1);
    h.w(0x030, 0);
    assert_eq!(h.r(0x0c0), 0);
    h.w(0x0c0, 1);
    assert_eq!(h.r(0x0c0), 0);
    assert_eq!(h.r(0x044), 0);
    // Re-enable from scratch: indices restart at 0.
    h.mem.write(q.used, &[0; 6 + 8 * 4]).unwrap();
    h.mem.write_u16(q.avail + 2, 0).unwrap();
    q.avail_idx = 0;
    h.setup_queue(0, 4);
    read_req(&mut h, &mut q, 0, 1);
    h.kick(0);
    assert_eq!(q.used_idx(&mut h.mem), 1);
    assert!(!h.dev.needs_reset());
}

#[test]
fn queue_reset_ignored_without_ring_reset() {
    let mut h = Harness::new(Block::new(Box::new(MemDisk::new(8))), 0, &[4]);
    h.w(0x030, 0);
    h.w(0x0c0, 1);
    assert_eq!(h.r(0x044), 1);
}

#[test]
fn notification_data_carries_queue_index() {
    let mut h = Harness::new(
        Block::new(Box::new(MemDisk::new(8))),
        features::NOTIFICATION_DATA,
        &[4],
    );
    let mut q = Split::new(0, 4);
    read_req(&mut h, &mut q, 0, 0);
    h.w(0x050, 1 << 16);
    assert_eq!(q.used_idx(&mut h.mem), 1);
}

#[test]
fn no_interrupt_flag_suppresses_without_event_idx() {
    let mut h = Harness::new(Block::new(Box::new(MemDisk::new(8))), 0, &[4]);
    let mut q = Split::new(0, 4);
    h.mem.write_u16(q.avail, 1).unwrap();
    read_req(&mut h, &mut q, 0, 0);
    h.kick(0);
    assert_eq!(q.used_idx(&mut h.mem), 1);
    assert_eq!(h.isr(), 0);
}

#[test]
fn event_idx_suppression_and_avail_event() {
    let mut h = Harness::new(
        Block::new(Box::new(MemDisk::new(64))),
        features::EVENT_IDX,
        &[4],
    );
    let mut q = Split::new(0, 4);
    let used_event = q.avail + 4 + 2 * 4;
    let avail_event = q.used + 4 + 8 * 4;
    // used_event = 0: interrupt after the first used buffer.
    read_req(&mut h, &mut q, 0, 0);
    h.kick(0);
    assert_eq!(h.isr(), 1);
    h.w(0x064, 1);
    assert_eq!(h.mem.read_u16(avail_event).unwrap(), 1, "avail_event");
    // used_event = 5: no interrupt until used idx passes 5.
    h.mem.write_u16(used_event, 5).unwrap();
    for i in 0..4u16 {
        read_req(&mut h, &mut q, 0, u64::from(i));
        h.kick(0);
        assert_eq!(h.isr(), 0, "request {i}");
    }
    read_req(&mut h, &mut q, 0, 0);
    h.kick(0);
    assert_eq!(q.used_idx(&mut h.mem), 6);
    assert_eq!(h.isr(), 1);
}

#[test]
fn split_index_wraps() {
    let disk = MemDisk::new(8);
    disk.fill(512, &[0x77; 512]);
    let mut h = Harness::new(Block::new(Box::new(disk)), features::EVENT_IDX, &[4]);
    let mut q = Split::new(0, 4);
    let n: u32 = 0x1_0000 + 2;
    for _ in 0..n {
        read_req(&mut h, &mut q, 0, 1);
        h.kick(0);
    }
    assert_eq!(q.used_idx(&mut h.mem), n as u16);
    assert!(!h.dev.needs_reset());
    let mut b = [0u8; 512];
    h.mem.read(DATA + 0x100, &mut b).unwrap();
    assert_eq!(b, [0x77; 512]);
}

#[test]
fn full_ring_of_requests_in_one_kick_across_wrap() {
    let mut h = Harness::new(
        Block::new(Box::new(MemDisk::new(64))),
        features::INDIRECT_DESC,
        &[4],
    );
    let mut q = Split::new(0, 4);
    // Bring avail idx close to 0xffff with single-descriptor (indirect) chains.
    let mut issued: u32 = 0;
    let one_round = |h: &mut Harness, q: &mut Split, count: u16| {
        for slot in 0..count {
            let table = DATA + 0x8000 + u64::from(slot) * 0x1000;
            let hdr = table + 0x100;
            h.mem.write(hdr, &[0u8; 16]).unwrap();
            common::rings::write_desc(&mut h.mem, table, hdr, 16, 1, 1);
            common::rings::write_desc(&mut h.mem, table + 16, hdr + 0x200, 512, 3, 2);
            common::rings::write_desc(&mut h.mem, table + 32, hdr + 0x400, 1, 2, 0);
            q.set_desc(&mut h.mem, slot, table, 48, 4, 0);
            q.publish(&mut h.mem, slot);
        }
        h.kick(0);
    };
    while issued < 0xfffe {
        one_round(&mut h, &mut q, 4);
        issued += 4;
    }
    one_round(&mut h, &mut q, 4);
    assert_eq!(q.used_idx(&mut h.mem), (issued + 4) as u16);
    assert!(!h.dev.needs_reset());
    let last = q.used_idx(&mut h.mem).wrapping_sub(1);
    let (id, len) = q.used_elem(&mut h.mem, last);
    assert_eq!((id, len), (3, 513));
}
