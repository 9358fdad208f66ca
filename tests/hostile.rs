//! A hostile driver: one test per malformed case (reference/virtio.md §8).
//! Each checks the device's answer (DEVICE_NEEDS_RESET plus a config
//! interrupt, or an error status) and that guest memory outside the chain's
//! writable buffers is byte-identical before and after.

mod common;

use backplane::backends::mem::{MemDisk, MemNet};
use backplane::devices::blk::Block;
use backplane::devices::net::Net;
use backplane::virtio::{GuestMemory, features, status};
use common::rings::{DATA, Harness, Split, outside};

const QSIZE: u16 = 8;
const HDR: u64 = DATA;
const BUF: u64 = DATA + 0x1000;
const STATUS: u64 = DATA + 0x3000;
const TABLE: u64 = DATA + 0x4000;
const R: u16 = 0;
const NEXT: u16 = 1;
const W: u16 = 2;
const IND: u16 = 4;

fn blk(features: u64) -> (Harness, Split) {
    let h = Harness::new(Block::new(Box::new(MemDisk::new(64))), features, &[QSIZE]);
    (h, Split::new(0, QSIZE))
}

fn header(h: &mut Harness, kind: u32, sector: u64) {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&kind.to_le_bytes());
    b[8..].copy_from_slice(&sector.to_le_bytes());
    h.mem.write(HDR, &b).unwrap();
}

/// A well-formed 1-sector read with descriptors 0..3 at slot `base`.
fn good_read(h: &mut Harness, q: &mut Split, base: u16) {
    header(h, 0, 0);
    q.set_desc(&mut h.mem, base, HDR, 16, NEXT, base + 1);
    q.set_desc(&mut h.mem, base + 1, BUF, 512, W | NEXT, base + 2);
    q.set_desc(&mut h.mem, base + 2, STATUS, 1, W, 0);
    q.publish(&mut h.mem, base);
}

/// Kicks and checks the hostile-driver contract: needs reset, config
/// interrupt, no memory changed at all, and no further processing.
fn assert_rejected(mut h: Harness, mut q: Split) {
    let before = h.mem.clone();
    h.kick(0);
    assert_ne!(
        h.status() & status::DEVICE_NEEDS_RESET,
        0,
        "no DEVICE_NEEDS_RESET"
    );
    assert_ne!(h.isr() & 2, 0, "no config interrupt");
    assert!(h.dev.needs_reset());
    assert!(h.dev.take_interrupt_edge());
    assert!(h.mem == before, "guest memory changed");
    // Dead until reset: a good request is not served.
    good_read(&mut h, &mut q, 4);
    let before = h.mem.clone();
    h.kick(0);
    h.dev.poll(&mut h.mem);
    assert!(h.mem == before, "device kept working after the error");
    // A reset brings it back.
    h.w(0x070, 0);
    assert_eq!(h.status(), 0);
    assert_eq!(h.isr(), 0);
}

fn blk_status_in_memory(h: &mut Harness) -> u8 {
    let mut b = [0u8; 1];
    h.mem.read(STATUS, &mut b).unwrap();
    b[0]
}

#[test]
fn descriptor_loop() {
    let (mut h, mut q) = blk(0);
    header(&mut h, 0, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, BUF, 512, W | NEXT, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn descriptor_self_loop() {
    let (mut h, mut q) = blk(0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn avail_index_jumps_past_queue_size() {
    let (mut h, mut q) = blk(0);
    good_read(&mut h, &mut q, 0);
    q.set_avail_idx(&mut h.mem, QSIZE + 1);
    assert_rejected(h, q);
}

#[test]
fn head_index_out_of_range() {
    let (mut h, mut q) = blk(0);
    q.publish(&mut h.mem, QSIZE);
    assert_rejected(h, q);
}

#[test]
fn next_index_out_of_range() {
    let (mut h, mut q) = blk(0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 200);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn buffer_outside_guest_memory() {
    let (mut h, mut q) = blk(0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, 0x10, 512, W | NEXT, 2);
    q.set_desc(&mut h.mem, 2, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn buffer_address_plus_length_overflows() {
    let (mut h, mut q) = blk(0);
    q.set_desc(&mut h.mem, 0, u64::MAX - 4, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn total_length_reaches_4_gib() {
    let (mut h, mut q) = blk(0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, BUF, u32::MAX - 8, W | NEXT, 2);
    q.set_desc(&mut h.mem, 2, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn readable_after_writable() {
    let (mut h, mut q) = blk(0);
    header(&mut h, 1, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, STATUS, 1, W | NEXT, 2);
    q.set_desc(&mut h.mem, 2, BUF, 512, R, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn readable_after_zero_length_writable() {
    let (mut h, mut q) = blk(0);
    header(&mut h, 1, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, STATUS, 0, W | NEXT, 2);
    q.set_desc(&mut h.mem, 2, BUF, 512, R | NEXT, 3);
    q.set_desc(&mut h.mem, 3, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn indirect_not_negotiated() {
    let (mut h, mut q) = blk(0);
    q.set_desc(&mut h.mem, 0, TABLE, 48, IND, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn indirect_zero_length() {
    let (mut h, mut q) = blk(features::INDIRECT_DESC);
    q.set_desc(&mut h.mem, 0, TABLE, 0, IND, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn indirect_length_not_multiple_of_16() {
    let (mut h, mut q) = blk(features::INDIRECT_DESC);
    q.set_desc(&mut h.mem, 0, TABLE, 40, IND, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn indirect_with_next() {
    let (mut h, mut q) = blk(features::INDIRECT_DESC);
    q.set_desc(&mut h.mem, 0, TABLE, 48, IND | NEXT, 1);
    q.set_desc(&mut h.mem, 1, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

fn table_entry(h: &mut Harness, i: u64, addr: u64, len: u32, flags: u16, next: u16) {
    common::rings::write_desc(&mut h.mem, TABLE + 16 * i, addr, len, flags, next);
}

#[test]
fn indirect_nested() {
    let (mut h, mut q) = blk(features::INDIRECT_DESC);
    table_entry(&mut h, 0, HDR, 16, NEXT, 1);
    table_entry(&mut h, 1, TABLE + 0x100, 32, IND, 0);
    q.set_desc(&mut h.mem, 0, TABLE, 32, IND, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn indirect_next_out_of_table() {
    let (mut h, mut q) = blk(features::INDIRECT_DESC);
    table_entry(&mut h, 0, HDR, 16, NEXT, 5);
    q.set_desc(&mut h.mem, 0, TABLE, 32, IND, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn indirect_loop() {
    let (mut h, mut q) = blk(features::INDIRECT_DESC);
    table_entry(&mut h, 0, HDR, 16, NEXT, 1);
    table_entry(&mut h, 1, BUF, 16, NEXT, 0);
    q.set_desc(&mut h.mem, 0, TABLE, 32, IND, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn indirect_table_outside_memory() {
    let (mut h, mut q) = blk(features::INDIRECT_DESC);
    q.set_desc(&mut h.mem, 0, 0x2000, 48, IND, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn indirect_table_huge() {
    let (mut h, mut q) = blk(features::INDIRECT_DESC);
    q.set_desc(&mut h.mem, 0, TABLE, 0xfff0_0000, IND, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn indirect_table_longer_than_chain_limit() {
    let (mut h, mut q) = blk(features::INDIRECT_DESC);
    for i in 0..1025 {
        table_entry(&mut h, i, HDR, 16, NEXT, (i + 1) as u16);
    }
    q.set_desc(&mut h.mem, 0, TABLE, 1025 * 16, IND, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn blk_without_status_byte() {
    let (mut h, mut q) = blk(0);
    header(&mut h, 4, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, R, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn blk_status_zero_length() {
    let (mut h, mut q) = blk(0);
    header(&mut h, 4, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, STATUS, 0, W, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn blk_status_not_writable() {
    let (mut h, mut q) = blk(0);
    header(&mut h, 4, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, STATUS, 1, R, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn blk_header_writable() {
    let (mut h, mut q) = blk(0);
    header(&mut h, 0, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, W | NEXT, 1);
    q.set_desc(&mut h.mem, 1, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

#[test]
fn blk_header_short() {
    let (mut h, mut q) = blk(0);
    header(&mut h, 0, 0);
    q.set_desc(&mut h.mem, 0, HDR, 8, NEXT, 1);
    q.set_desc(&mut h.mem, 1, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    assert_rejected(h, q);
}

fn expect_enable_refused(size: u16, desc_offset: u64) {
    let mut h = Harness::new(Block::new(Box::new(MemDisk::new(8))), 0, &[]);
    let (d, dr, dv) = common::rings::queue_areas(0);
    h.w(0x030, 0);
    h.w(0x038, u64::from(size));
    let d = d + desc_offset;
    h.w(0x080, d & 0xffff_ffff);
    h.w(0x084, d >> 32);
    h.w(0x090, dr);
    h.w(0x0a0, dv);
    let before = h.mem.clone();
    h.w(0x044, 1);
    assert_eq!(h.r(0x044), 0, "queue went live");
    assert_ne!(h.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_ne!(h.isr() & 2, 0);
    assert!(h.mem == before);
}

#[test]
fn queue_size_not_power_of_two() {
    expect_enable_refused(6, 0);
}

#[test]
fn queue_size_zero() {
    expect_enable_refused(0, 0);
}

#[test]
fn queue_size_above_max() {
    expect_enable_refused(512, 0);
}

#[test]
fn queue_size_above_16_bits() {
    let mut h = Harness::new(Block::new(Box::new(MemDisk::new(8))), 0, &[]);
    h.w(0x030, 0);
    h.w(0x038, 0x1_0008);
    h.w(0x044, 1);
    assert_eq!(h.r(0x044), 0);
    assert!(h.dev.needs_reset());
}

#[test]
fn ring_misaligned() {
    expect_enable_refused(8, 8);
}

#[test]
fn ring_outside_memory() {
    expect_enable_refused(8, 0x1_0000_0000);
}

#[test]
fn nothing_happens_before_driver_ok_or_after_reset() {
    let mut h = Harness::new(Block::new(Box::new(MemDisk::new(8))), 0, &[QSIZE]);
    let mut q = Split::new(0, QSIZE);
    h.w(0x070, 0);
    good_read(&mut h, &mut q, 0);
    let before = h.mem.clone();
    h.kick(0);
    h.dev.poll(&mut h.mem);
    assert!(h.mem == before);
    // Queue configured but no DRIVER_OK: still nothing.
    h.w(0x070, 3);
    h.w(0x020, 0);
    h.w(0x024, 1);
    h.w(0x020, 1);
    h.w(0x070, 11);
    h.setup_queue(0, QSIZE);
    h.kick(0);
    assert!(h.mem == before);
    assert_eq!(h.isr(), 0);
}

#[test]
fn zero_length_descriptor_is_harmless() {
    let (mut h, mut q) = blk(0);
    header(&mut h, 0, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, 0, 0, R | NEXT, 2);
    q.set_desc(&mut h.mem, 2, BUF, 0, W | NEXT, 3);
    q.set_desc(&mut h.mem, 3, BUF, 512, W | NEXT, 4);
    q.set_desc(&mut h.mem, 4, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    h.kick(0);
    assert!(!h.dev.needs_reset());
    assert_eq!(q.used_idx(&mut h.mem), 1);
    assert_eq!(blk_status_in_memory(&mut h), 0);
}

/// Requests that are well-formed chains but bad requests: an error status,
/// the device keeps serving, and only the writable buffers and the used ring
/// change.
fn expect_status(kind: u32, sector: u64, data_len: u32, data_writable: bool, want: u8) {
    let (mut h, mut q) = blk(0);
    h.mem.write(STATUS, &[0xff]).unwrap();
    header(&mut h, kind, sector);
    let before = h.mem.clone();
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    let f = if data_writable { W } else { R };
    q.set_desc(&mut h.mem, 1, BUF, data_len, f | NEXT, 2);
    q.set_desc(&mut h.mem, 2, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    let allowed = [
        (q.desc, 16 * usize::from(QSIZE)),
        (q.avail, 6 + 2 * usize::from(QSIZE)),
        (q.used, 6 + 8 * usize::from(QSIZE)),
        (STATUS, 1),
        (BUF, if data_writable { data_len as usize } else { 0 }),
    ];
    let before_out = outside(&before, &allowed);
    h.kick(0);
    assert!(!h.dev.needs_reset());
    assert_eq!(q.used_idx(&mut h.mem), 1);
    assert_eq!(blk_status_in_memory(&mut h), want);
    assert_eq!(h.isr() & 1, 1);
    assert!(outside(&h.mem, &allowed) == before_out);
}

#[test]
fn blk_read_past_capacity_is_ioerr() {
    expect_status(0, 63, 1024, true, 1);
}

#[test]
fn blk_sector_overflow_is_ioerr() {
    expect_status(0, u64::MAX, 512, true, 1);
}

#[test]
fn blk_partial_sector_is_ioerr() {
    expect_status(1, 0, 100, false, 1);
}

#[test]
fn blk_unknown_type_is_unsupp() {
    expect_status(77, 0, 512, true, 2);
}

#[test]
fn blk_discard_with_unmap_is_unsupp() {
    let mut seg = [0u8; 16];
    seg[8..12].copy_from_slice(&8u32.to_le_bytes());
    seg[12..].copy_from_slice(&1u32.to_le_bytes());
    let (mut h, mut q) = blk(0);
    h.mem.write(BUF, &seg).unwrap();
    header(&mut h, 11, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, BUF, 16, NEXT, 2);
    q.set_desc(&mut h.mem, 2, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    h.kick(0);
    assert_eq!(blk_status_in_memory(&mut h), 2);
    assert!(!h.dev.needs_reset());
}

#[test]
fn blk_write_zeroes_past_capacity_is_ioerr() {
    let (mut h, mut q) = blk(0);
    let mut seg = [0u8; 16];
    seg[..8].copy_from_slice(&60u64.to_le_bytes());
    seg[8..12].copy_from_slice(&8u32.to_le_bytes());
    h.mem.write(BUF, &seg).unwrap();
    header(&mut h, 13, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, BUF, 16, NEXT, 2);
    q.set_desc(&mut h.mem, 2, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    h.kick(0);
    assert_eq!(blk_status_in_memory(&mut h), 1);
}

#[test]
fn blk_write_to_read_only_disk_is_ioerr_and_disk_unchanged() {
    let disk = MemDisk::new(8).read_only();
    let mut h = Harness::new(Block::new(Box::new(disk.clone())), 0, &[QSIZE]);
    let mut q = Split::new(0, QSIZE);
    h.mem.write(BUF, &[0x5a; 512]).unwrap();
    header(&mut h, 1, 0);
    q.set_desc(&mut h.mem, 0, HDR, 16, NEXT, 1);
    q.set_desc(&mut h.mem, 1, BUF, 512, NEXT, 2);
    q.set_desc(&mut h.mem, 2, STATUS, 1, W, 0);
    q.publish(&mut h.mem, 0);
    h.kick(0);
    assert_eq!(blk_status_in_memory(&mut h), 1);
    assert!(disk.contents().iter().all(|&b| b == 0));
}

#[test]
fn spurious_notifications_are_ignored() {
    let (mut h, _q) = blk(0);
    let before = h.mem.clone();
    for q in [1u64, 7, 0xffff, 0xffff_ffff] {
        h.w(0x050, q);
    }
    h.kick(0);
    assert!(!h.dev.needs_reset());
    assert!(h.mem == before);
}

#[test]
fn net_tx_short_header_is_dropped_not_fatal() {
    let backend = MemNet::new([2, 0, 0, 0, 0, 1]);
    let mut h = Harness::new(Net::new(Box::new(backend.clone())), 0, &[8, 8]);
    let mut tx = Split::new(1, 8);
    tx.set_desc(&mut h.mem, 0, BUF, 6, R, 0);
    tx.publish(&mut h.mem, 0);
    h.kick(1);
    assert!(!h.dev.needs_reset());
    assert_eq!(tx.used_idx(&mut h.mem), 1);
    assert!(backend.take_frames().is_empty());
}

#[test]
fn net_rx_buffer_too_small_drops_frame() {
    let backend = MemNet::new([2, 0, 0, 0, 0, 1]);
    let mut h = Harness::new(Net::new(Box::new(backend.clone())), 0, &[8, 8]);
    let mut rx = Split::new(0, 8);
    rx.set_desc(&mut h.mem, 0, BUF, 64, W, 0);
    rx.publish(&mut h.mem, 0);
    backend.push_frame(&[0xab; 200]);
    h.dev.poll(&mut h.mem);
    assert!(!h.dev.needs_reset());
    assert_eq!(rx.used_idx(&mut h.mem), 1);
    assert_eq!(rx.used_elem(&mut h.mem, 0), (0, 0));
}
