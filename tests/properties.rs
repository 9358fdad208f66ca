//! Property tests: random register sequences and random ring contents never
//! panic, and the device writes only where the driver let it (writable
//! buffers and the device-owned ring parts).

mod common;

use backplane::backends::mem::{MemConsole, MemDisk, MemEntropy, MemNet};
use backplane::devices::{blk::Block, console::Console, net::Net, rng::Rng};
use backplane::virtio::{GuestMemory, HostMemory, MemError, MmioDevice, VirtioDevice, features};
use common::rings::{BASE, DATA, Harness, SIZE, queue_areas};
use proptest::prelude::*;

fn model(kind: u8) -> Box<dyn VirtioDevice> {
    match kind % 4 {
        0 => Box::new(Block::new(Box::new(MemDisk::new(64)))),
        1 => Box::new(Console::new(Box::new(MemConsole::new()))),
        2 => Box::new(Rng::new(Box::new(MemEntropy::new(1)))),
        _ => {
            let n = MemNet::new([2, 0, 0, 0, 0, 9]);
            n.push_frame(&[0x11; 300]);
            Box::new(Net::new(Box::new(n)))
        }
    }
}

/// Forwards to HostMemory and records writes outside the allowed ranges.
struct Recorder<'a> {
    mem: &'a mut HostMemory,
    allowed: &'a [(u64, u64)],
    violations: Vec<(u64, usize)>,
}

impl GuestMemory for Recorder<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.mem.read(addr, buf)
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let end = addr.saturating_add(data.len() as u64);
        let ok = self.allowed.iter().any(|&(s, l)| addr >= s && end <= s + l);
        if !ok && !data.is_empty() {
            self.violations.push((addr, data.len()));
        }
        self.mem.write(addr, data)
    }

    fn check_range(&mut self, addr: u64, len: u64) -> Result<(), MemError> {
        self.mem.check_range(addr, len)
    }
}

fn register_op() -> impl Strategy<Value = (u64, u8, bool, u64)> {
    (
        prop_oneof![0u64..0x200, any::<u64>()],
        prop_oneof![Just(4u8), Just(1), Just(2), Just(8), any::<u8>()],
        any::<bool>(),
        prop_oneof![
            0u64..16,
            any::<u64>(),
            (0u64..0x100).prop_map(|v| BASE + v * 0x100)
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_register_sequences(kind in any::<u8>(), ops in prop::collection::vec(register_op(), 0..200)) {
        let mut dev = MmioDevice::new(model(kind));
        let mut mem = HostMemory::with_region(BASE, SIZE);
        // Random ring addresses can point anywhere in guest memory; what we
        // check is that nothing panics and nothing escapes guest memory.
        for (off, size, write, value) in ops {
            if write {
                dev.write(off, size, value, &mut mem);
            } else {
                dev.read(off, size, &mut mem);
            }
            dev.poll(&mut mem);
            let _ = dev.take_interrupt_edge();
        }
        prop_assert_eq!(mem.regions().count(), 1);
    }
}

/// A random descriptor: (data slot, len, flags, next).
fn desc() -> impl Strategy<Value = (u8, u16, u16, u16)> {
    (0u8..20, 0u16..0x1100, 0u16..8, 0u16..10)
}

const SLOT: u64 = 0x1000;
const TABLES: u64 = DATA + 0x4_0000;

fn slot_addr(slot: u8) -> u64 {
    if slot < 16 {
        DATA + u64::from(slot) * SLOT
    } else if slot < 18 {
        TABLES + u64::from(slot - 16) * SLOT
    } else {
        // Outside guest memory.
        0x10 + u64::from(slot) * 0x1_0000_0000
    }
}

fn write_split_desc(
    mem: &mut HostMemory,
    at: u64,
    d: (u8, u16, u16, u16),
    allowed: &mut Vec<(u64, u64)>,
) {
    let (slot, len, flags, next) = d;
    let addr = slot_addr(slot);
    common::rings::write_desc(mem, at, addr, u32::from(len), flags, next);
    if flags & 2 != 0 && flags & 4 == 0 {
        allowed.push((addr, u64::from(len)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_split_rings(
        kind in any::<u8>(),
        feat in 0u8..4,
        table in prop::collection::vec(desc(), 8),
        indirect in prop::collection::vec(desc(), 2 * 8),
        heads in prop::collection::vec(0u16..10, 8),
        avail_idx in prop_oneof![0u16..12, any::<u16>()],
        kick in 0u16..3,
    ) {
        let mut f = 0;
        if feat & 1 != 0 { f |= features::INDIRECT_DESC; }
        if feat & 2 != 0 { f |= features::EVENT_IDX; }
        let mut h = Harness::new(DynModel(model(kind)), f, &[8, 8]);
        let mut allowed = Vec::new();
        for q in 0..2u16 {
            let (d, a, u) = queue_areas(q);
            for (i, &e) in table.iter().enumerate() {
                write_split_desc(&mut h.mem, d + 16 * i as u64, e, &mut allowed);
            }
            for (i, &hd) in heads.iter().enumerate() {
                h.mem.write_u16(a + 4 + 2 * i as u64, hd).unwrap();
            }
            h.mem.write_u16(a + 2, avail_idx).unwrap();
            allowed.push((u, 6 + 8 * 8));
        }
        for (i, &e) in indirect.iter().enumerate() {
            write_split_desc(&mut h.mem, TABLES + 16 * (i % 8) as u64 + SLOT * (i / 8) as u64, e, &mut allowed);
        }
        let mut rec = Recorder { mem: &mut h.mem, allowed: &allowed, violations: Vec::new() };
        h.dev.write(0x050, 4, u64::from(kick), &mut rec);
        h.dev.poll(&mut rec);
        prop_assert!(rec.violations.is_empty(), "writes outside allowed: {:x?}", rec.violations);
    }

    #[test]
    fn random_packed_rings(
        kind in any::<u8>(),
        indirect_feat in any::<bool>(),
        ring in prop::collection::vec((desc(), any::<u16>(), 0u8..4), 6),
        indirect in prop::collection::vec(desc(), 8),
        kick in 0u16..3,
    ) {
        let mut f = features::RING_PACKED;
        if indirect_feat { f |= features::INDIRECT_DESC; }
        let mut h = Harness::new(DynModel(model(kind)), f, &[6, 6]);
        let mut allowed = Vec::new();
        for q in 0..2u16 {
            let (d, _, dev_area) = queue_areas(q);
            for (i, &((slot, len, flags, _), id, av)) in ring.iter().enumerate() {
                // av picks AVAIL/USED bits, so some slots look available.
                let bits = [0x80u16, 0x8000, 0x8080, 0][usize::from(av)];
                let fl = (flags & 7) | bits;
                let at = d + 16 * i as u64;
                common::rings::write_desc(&mut h.mem, at, slot_addr(slot), u32::from(len), id, fl);
                if flags & 2 != 0 && flags & 4 == 0 {
                    allowed.push((slot_addr(slot), u64::from(len)));
                }
            }
            // The device writes used descriptors into the ring itself.
            allowed.push((d, 16 * 6));
            allowed.push((dev_area, 4));
        }
        for (i, &(slot, len, flags, _)) in indirect.iter().enumerate() {
            let at = TABLES + 16 * i as u64;
            common::rings::write_desc(&mut h.mem, at, slot_addr(slot), u32::from(len), 0, flags & 7);
            if flags & 2 != 0 {
                allowed.push((slot_addr(slot), u64::from(len)));
            }
        }
        let mut rec = Recorder { mem: &mut h.mem, allowed: &allowed, violations: Vec::new() };
        h.dev.write(0x050, 4, u64::from(kick), &mut rec);
        h.dev.poll(&mut rec);
        prop_assert!(rec.violations.is_empty(), "writes outside allowed: {:x?}", rec.violations);
    }
}

/// Lets a boxed model go where `impl VirtioDevice` is expected.
struct DynModel(Box<dyn VirtioDevice>);

impl VirtioDevice for DynModel {
    fn device_id(&self) -> u32 {
        self.0.device_id()
    }
    fn features(&self) -> u64 {
        self.0.features()
    }
    fn queue_max_sizes(&self) -> &[u16] {
        self.0.queue_max_sizes()
    }
    fn config_len(&self) -> usize {
        self.0.config_len()
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        self.0.read_config(offset, data)
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) -> bool {
        self.0.write_config(offset, data)
    }
    fn activate(&mut self, features: u64) {
        self.0.activate(features)
    }
    fn queue_notify(
        &mut self,
        queue: u16,
        ctx: &mut backplane::virtio::DeviceCtx<'_>,
    ) -> Result<(), backplane::virtio::DeviceError> {
        self.0.queue_notify(queue, ctx)
    }
    fn poll(
        &mut self,
        ctx: &mut backplane::virtio::DeviceCtx<'_>,
    ) -> Result<(), backplane::virtio::DeviceError> {
        self.0.poll(ctx)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
}
