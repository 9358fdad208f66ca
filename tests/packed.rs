//! Packed rings (virtio-drivers has none, so these rings are hand-built), and
//! net MRG_RXBUF over both layouts.

mod common;

use backplane::backends::mem::{MemDisk, MemNet};
use backplane::devices::blk::Block;
use backplane::devices::net::{self, Net};
use backplane::virtio::{GuestMemory, features, status};
use common::rings::{DATA, Harness, Packed, Split, outside};

const W: u16 = 2;
const IND: u16 = 4;

fn blk_packed(disk: &MemDisk, extra: u64, size: u16) -> (Harness, Packed) {
    let h = Harness::new(
        Block::new(Box::new(disk.clone())),
        features::RING_PACKED | extra,
        &[size],
    );
    (h, Packed::new(0, size))
}

/// Buffers of request `n`: header, data (512), status.
fn bufs(n: u64) -> (u64, u64, u64) {
    let b = DATA + (n % 8) * 0x1000;
    (b, b + 0x200, b + 0x400)
}

fn header(h: &mut Harness, at: u64, kind: u32, sector: u64) {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&kind.to_le_bytes());
    b[8..].copy_from_slice(&sector.to_le_bytes());
    h.mem.write(at, &b).unwrap();
}

#[test]
fn packed_blk_wraps_many_times_with_odd_size() {
    let disk = MemDisk::new(64);
    let (mut h, mut q) = blk_packed(&disk, 0, 6);
    for n in 0..50u64 {
        let (hdr, data, st) = bufs(n);
        let sector = n % 64;
        // Write a pattern, then read it back (three slots per chain: the
        // chains straddle the ring end on odd rounds).
        header(&mut h, hdr, 1, sector);
        h.mem.write(data, &[n as u8; 512]).unwrap();
        q.add(
            &mut h.mem,
            &[(hdr, 16, 0), (data, 512, 0), (st, 1, W)],
            n as u16,
        );
        h.kick(0);
        assert_eq!(q.pop_used(&mut h.mem, 3), Some((n as u16, 1)));
        h.mem.write(data, &[0; 512]).unwrap();
        header(&mut h, hdr, 0, sector);
        q.add(
            &mut h.mem,
            &[(hdr, 16, 0), (data, 512, W), (st, 1, W)],
            1000 + n as u16,
        );
        h.kick(0);
        assert_eq!(q.pop_used(&mut h.mem, 3), Some((1000 + n as u16, 513)));
        assert_eq!(h.mem.slice(data, 512).unwrap(), &[n as u8; 512][..]);
        assert_eq!(h.mem.slice(st, 1).unwrap(), &[0]);
    }
    assert!(!h.dev.needs_reset());
    assert_eq!(h.isr(), 1);
}

#[test]
fn packed_batch_of_requests_in_one_kick() {
    let disk = MemDisk::new(64);
    let (mut h, mut q) = blk_packed(&disk, 0, 12);
    for n in 0..4u64 {
        let (hdr, data, st) = bufs(n);
        header(&mut h, hdr, 0, n);
        q.add(
            &mut h.mem,
            &[(hdr, 16, 0), (data, 512, W), (st, 1, W)],
            n as u16,
        );
    }
    h.kick(0);
    for n in 0..4u16 {
        assert_eq!(q.pop_used(&mut h.mem, 3), Some((n, 513)));
    }
    assert_eq!(q.pop_used(&mut h.mem, 3), None);
}

#[test]
fn packed_indirect() {
    let disk = MemDisk::new(8);
    disk.fill(512, &[0x3c; 512]);
    let (mut h, mut q) = blk_packed(&disk, features::INDIRECT_DESC, 4);
    let (hdr, data, st) = bufs(0);
    header(&mut h, hdr, 0, 1);
    let table = DATA + 0x9000;
    for (i, (a, l, f)) in [(hdr, 16, 0), (data, 512, W), (st, 1, W)]
        .into_iter()
        .enumerate()
    {
        // Only WRITE matters in a packed indirect table; NEXT/ids ignored.
        // Packed layout: id at byte 12, flags at 14 (write_desc's `next`).
        common::rings::write_desc(&mut h.mem, table + 16 * i as u64, a, l, 0, f);
    }
    q.add(&mut h.mem, &[(table, 48, IND)], 9);
    h.kick(0);
    assert_eq!(q.pop_used(&mut h.mem, 1), Some((9, 513)));
    assert_eq!(h.mem.slice(data, 512).unwrap(), &[0x3c; 512][..]);
}

#[test]
fn packed_event_suppression() {
    let disk = MemDisk::new(8);
    let (mut h, mut q) = blk_packed(&disk, features::EVENT_IDX, 4);
    let read = |h: &mut Harness, q: &mut Packed, id: u16| {
        let (hdr, data, st) = bufs(u64::from(id));
        header(h, hdr, 0, 0);
        q.add(&mut h.mem, &[(hdr, 16, 0), (data, 512, W), (st, 1, W)], id);
        h.kick(0);
        assert!(q.pop_used(&mut h.mem, 3).is_some());
    };
    // DISABLE: no interrupts.
    h.mem.write_u16(q.driver_event + 2, 1).unwrap();
    read(&mut h, &mut q, 0);
    assert_eq!(h.isr(), 0);
    // ENABLE: interrupt.
    h.mem.write_u16(q.driver_event + 2, 0).unwrap();
    read(&mut h, &mut q, 1);
    assert_eq!(h.isr(), 1);
    h.w(0x064, 1);
    // DESC: the device is at slot 2 of lap 0 (two 3-slot chains in a 4-slot
    // ring); ask for an interrupt once the used descriptor at slot 1 of lap 1
    // is written. Chain 2 goes at slot 2 (not yet), chain 3 at slot 1.
    h.mem.write_u16(q.driver_event, 1 | 0x8000).unwrap();
    h.mem.write_u16(q.driver_event + 2, 2).unwrap();
    read(&mut h, &mut q, 2);
    assert_eq!(h.isr(), 0, "event slot not reached yet");
    read(&mut h, &mut q, 3);
    assert_eq!(h.isr(), 1);
}

fn rejected(extra: u64, build: impl FnOnce(&mut Harness, &mut Packed)) {
    let disk = MemDisk::new(8);
    let (mut h, mut q) = blk_packed(&disk, extra, 4);
    build(&mut h, &mut q);
    let before = h.mem.clone();
    h.kick(0);
    assert_ne!(h.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_ne!(h.isr() & 2, 0);
    assert!(h.mem == before);
}

#[test]
fn packed_chain_longer_than_ring() {
    rejected(0, |h, q| {
        // Every slot says NEXT: the walk must stop after `size` slots.
        for i in 0..4u64 {
            let at = q.desc + 16 * i;
            common::rings::write_desc(&mut h.mem, at, DATA, 16, 0, 0);
            h.mem.write_u16(at + 14, common::rings::AVAIL | 1).unwrap();
        }
    });
}

#[test]
fn packed_indirect_not_negotiated() {
    rejected(0, |h, q| q.add(&mut h.mem, &[(DATA, 48, IND)], 0));
}

#[test]
fn packed_indirect_nested() {
    rejected(features::INDIRECT_DESC, |h, q| {
        let table = DATA + 0x9000;
        common::rings::write_desc(&mut h.mem, table, DATA, 16, 0, IND);
        q.add(&mut h.mem, &[(table, 16, IND)], 0);
    });
}

#[test]
fn packed_indirect_bad_length() {
    rejected(features::INDIRECT_DESC, |h, q| {
        q.add(&mut h.mem, &[(DATA, 20, IND)], 0)
    });
}

#[test]
fn packed_indirect_with_next() {
    rejected(features::INDIRECT_DESC, |h, q| {
        q.add(&mut h.mem, &[(DATA, 48, IND), (DATA + 0x400, 1, W)], 0)
    });
}

#[test]
fn packed_buffer_outside_memory() {
    rejected(0, |h, q| {
        q.add(
            &mut h.mem,
            &[(DATA, 16, 0), (0x100, 512, W), (DATA + 0x400, 1, W)],
            0,
        )
    });
}

#[test]
fn packed_readable_after_writable() {
    rejected(0, |h, q| {
        q.add(
            &mut h.mem,
            &[(DATA, 16, 0), (DATA + 0x400, 1, W), (DATA + 0x200, 512, 0)],
            0,
        )
    });
}

#[test]
fn packed_ring_misaligned_refused() {
    let mut h = Harness::new(
        Block::new(Box::new(MemDisk::new(8))),
        features::RING_PACKED,
        &[],
    );
    let (d, dr, dv) = common::rings::queue_areas(0);
    h.w(0x030, 0);
    h.w(0x038, 5);
    h.w(0x080, d);
    h.w(0x090, dr + 2);
    h.w(0x0a0, dv);
    h.w(0x044, 1);
    assert_eq!(h.r(0x044), 0);
    assert!(h.dev.needs_reset());
}

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 1) as u8).collect()
}

/// Reassembles a merged frame from used rx buffers `(addr, len)`.
fn merged(h: &mut Harness, parts: &[(u64, u32)]) -> (u16, Vec<u8>) {
    let mut all = Vec::new();
    for &(a, l) in parts {
        all.extend_from_slice(h.mem.slice(a, l as usize).unwrap());
    }
    let num = u16::from_le_bytes([all[10], all[11]]);
    (num, all[net::HDR_LEN..].to_vec())
}

#[test]
fn net_mergeable_rx_split_waits_for_buffers() {
    let backend = MemNet::new([2, 0, 0, 0, 0, 2]);
    let mut h = Harness::new(
        Net::new(Box::new(backend.clone())),
        net::feature::MRG_RXBUF,
        &[8, 8],
    );
    let mut rx = Split::new(0, 8);
    let f = frame(3000);
    // Two 1024-byte buffers: not enough for 3012 bytes.
    for i in 0..2u16 {
        rx.set_desc(&mut h.mem, i, DATA + u64::from(i) * 0x1000, 1024, W, 0);
        rx.publish(&mut h.mem, i);
    }
    backend.push_frame(&f);
    let untouched = outside(&h.mem, &[(DATA, 0x3000)]);
    h.dev.poll(&mut h.mem);
    assert_eq!(rx.used_idx(&mut h.mem), 0, "nothing published yet");
    assert!(outside(&h.mem, &[(DATA, 0x3000)]) == untouched);
    // A third buffer: now it fits.
    rx.set_desc(&mut h.mem, 2, DATA + 0x2000, 1024, W, 0);
    rx.publish(&mut h.mem, 2);
    h.kick(0);
    assert_eq!(rx.used_idx(&mut h.mem), 3);
    let parts: Vec<(u64, u32)> = (0..3u16)
        .map(|i| {
            let (id, len) = rx.used_elem(&mut h.mem, i);
            (DATA + u64::from(id) * 0x1000, len)
        })
        .collect();
    let (num, data) = merged(&mut h, &parts);
    assert_eq!(num, 3);
    assert_eq!(data, f);
    assert_eq!(h.isr(), 1);
}

#[test]
fn net_mergeable_rx_packed() {
    let backend = MemNet::new([2, 0, 0, 0, 0, 3]);
    let mut h = Harness::new(
        Net::new(Box::new(backend.clone())),
        net::feature::MRG_RXBUF | features::RING_PACKED,
        &[5, 5],
    );
    let mut rx = Packed::new(0, 5);
    for round in 0..6u64 {
        let f = frame(1500 + round as usize * 100);
        for i in 0..3u64 {
            rx.add(&mut h.mem, &[(DATA + i * 0x1000, 700, W)], i as u16);
        }
        backend.push_frame(&f);
        h.dev.poll(&mut h.mem);
        let mut parts = Vec::new();
        while let Some((id, len)) = rx.pop_used(&mut h.mem, 1) {
            parts.push((DATA + u64::from(id) * 0x1000, len));
        }
        let (num, data) = merged(&mut h, &parts);
        assert_eq!(usize::from(num), parts.len());
        assert_eq!(data, f, "round {round}");
        assert_eq!(parts.len(), 3);
    }
    assert!(!h.dev.needs_reset());
}

#[test]
fn net_config_and_link_change() {
    let backend = MemNet::new([2, 4, 6, 8, 10, 12]);
    let mut h = Harness::new(
        Net::new(Box::new(backend.clone())),
        net::feature::STATUS,
        &[4, 4],
    );
    let mac: Vec<u8> = (0..6)
        .map(|i| h.dev.read(0x100 + i, 1, &mut h.mem) as u8)
        .collect();
    assert_eq!(mac, [2, 4, 6, 8, 10, 12]);
    assert_eq!(h.dev.read(0x106, 2, &mut h.mem), 1);
    let g = h.r(0x0fc);
    backend.set_link_up(false);
    h.dev.poll(&mut h.mem);
    assert_eq!(h.dev.read(0x106, 2, &mut h.mem), 0);
    assert_ne!(h.r(0x0fc), g);
    assert_eq!(h.isr(), 2);
}
