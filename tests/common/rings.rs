//! Hand-built rings: a minimal driver that writes descriptors straight into
//! [`HostMemory`] and talks to the device through its registers. Used where
//! virtio-drivers cannot go: hostile chains and the packed layout.

use backplane::virtio::{GuestMemory, HostMemory, MmioDevice, VirtioDevice, features, status};

/// Guest memory base for hand-built rings.
pub const BASE: u64 = 0x1000_0000;
/// Guest memory size.
pub const SIZE: usize = 1 << 20;
/// Where queue `q`'s structures live: desc, driver area, device area.
pub fn queue_areas(q: u16) -> (u64, u64, u64) {
    let b = BASE + u64::from(q) * 0x1_0000;
    (b, b + 0x4000, b + 0x8000)
}
/// Start of the data area (buffers).
pub const DATA: u64 = BASE + 0x8_0000;

/// Device + memory, set up through the registers like a driver would.
pub struct Harness {
    pub dev: MmioDevice,
    pub mem: HostMemory,
}

impl Harness {
    /// Negotiates `driver_features` (VERSION_1 added) and enables queues of
    /// the given sizes, then sets DRIVER_OK.
    pub fn new(model: impl VirtioDevice + 'static, driver_features: u64, sizes: &[u16]) -> Self {
        let mut h = Self {
            dev: MmioDevice::new(Box::new(model)),
            mem: HostMemory::with_region(BASE, SIZE),
        };
        h.w(0x070, 0);
        h.w(0x070, u64::from(status::ACKNOWLEDGE | status::DRIVER));
        let f = driver_features | features::VERSION_1;
        h.w(0x024, 0);
        h.w(0x020, f & 0xffff_ffff);
        h.w(0x024, 1);
        h.w(0x020, f >> 32);
        h.w(
            0x070,
            u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
        );
        assert_ne!(
            h.r(0x070) as u8 & status::FEATURES_OK,
            0,
            "features refused"
        );
        for (q, &size) in sizes.iter().enumerate() {
            h.setup_queue(q as u16, size);
        }
        h.w(
            0x070,
            u64::from(
                status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
            ),
        );
        h
    }

    /// Programs and enables queue `q`.
    pub fn setup_queue(&mut self, q: u16, size: u16) {
        let (d, dr, dv) = queue_areas(q);
        self.w(0x030, u64::from(q));
        self.w(0x038, u64::from(size));
        for (off, a) in [(0x080, d), (0x090, dr), (0x0a0, dv)] {
            self.w(off, a & 0xffff_ffff);
            self.w(off + 4, a >> 32);
        }
        self.w(0x044, 1);
    }

    /// 32-bit register read.
    pub fn r(&mut self, off: u64) -> u64 {
        self.dev.read(off, 4, &mut self.mem)
    }

    /// 32-bit register write.
    pub fn w(&mut self, off: u64, v: u64) {
        self.dev.write(off, 4, v, &mut self.mem);
    }

    /// Notifies queue `q`.
    pub fn kick(&mut self, q: u16) {
        self.w(0x050, u64::from(q));
    }

    /// Status register.
    pub fn status(&mut self) -> u8 {
        self.r(0x070) as u8
    }

    /// InterruptStatus register.
    pub fn isr(&mut self) -> u32 {
        self.r(0x060) as u32
    }
}

/// Driver side of a split ring in HostMemory.
pub struct Split {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub avail_idx: u16,
}

impl Split {
    /// The split ring of queue `q` with `size` entries.
    pub fn new(q: u16, size: u16) -> Self {
        let (desc, avail, used) = queue_areas(q);
        Self {
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
        }
    }

    /// Writes descriptor `i`.
    pub fn set_desc(
        &self,
        mem: &mut HostMemory,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let at = self.desc + u64::from(i) * 16;
        write_desc(mem, at, addr, len, flags, next);
    }

    /// Makes `head` available and bumps avail.idx.
    pub fn publish(&mut self, mem: &mut HostMemory, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write_u16(self.avail + 4 + 2 * slot, head).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_u16(self.avail + 2, self.avail_idx).unwrap();
    }

    /// Sets avail.idx to an arbitrary value.
    pub fn set_avail_idx(&mut self, mem: &mut HostMemory, idx: u16) {
        self.avail_idx = idx;
        mem.write_u16(self.avail + 2, idx).unwrap();
    }

    /// used.idx.
    pub fn used_idx(&self, mem: &mut HostMemory) -> u16 {
        mem.read_u16(self.used + 2).unwrap()
    }

    /// Used element `i` (by free-running index): (id, len).
    pub fn used_elem(&self, mem: &mut HostMemory, i: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(i % self.size);
        (mem.read_u32(at).unwrap(), mem.read_u32(at + 4).unwrap())
    }
}

/// Writes a 16-byte split descriptor at `at`.
pub fn write_desc(mem: &mut HostMemory, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&addr.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..14].copy_from_slice(&flags.to_le_bytes());
    b[14..].copy_from_slice(&next.to_le_bytes());
    mem.write(at, &b).unwrap();
}

/// Packed descriptor flags.
pub const AVAIL: u16 = 1 << 7;
/// Packed descriptor flags.
pub const USED: u16 = 1 << 15;

/// Driver side of a packed ring in HostMemory.
pub struct Packed {
    pub size: u16,
    pub desc: u64,
    pub driver_event: u64,
    pub device_event: u64,
    pub next: u16,
    pub wrap: bool,
    pub used_next: u16,
    pub used_wrap: bool,
}

impl Packed {
    /// The packed ring of queue `q` with `size` entries.
    pub fn new(q: u16, size: u16) -> Self {
        let (desc, driver_event, device_event) = queue_areas(q);
        Self {
            size,
            desc,
            driver_event,
            device_event,
            next: 0,
            wrap: true,
            used_next: 0,
            used_wrap: true,
        }
    }

    fn avail_flags(&self, wrap: bool) -> u16 {
        if wrap { AVAIL } else { USED }
    }

    /// Makes a chain of `(addr, len, flags)` available with buffer `id`; the
    /// head's flags are written last.
    pub fn add(&mut self, mem: &mut HostMemory, bufs: &[(u64, u32, u16)], id: u16) {
        let head = (self.next, self.wrap);
        let mut head_flags = 0;
        for (i, &(addr, len, flags)) in bufs.iter().enumerate() {
            let mut f = flags | self.avail_flags(self.wrap);
            if i + 1 < bufs.len() {
                f |= 1;
            }
            let at = self.desc + u64::from(self.next) * 16;
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&addr.to_le_bytes());
            b[8..12].copy_from_slice(&len.to_le_bytes());
            b[12..14].copy_from_slice(&id.to_le_bytes());
            if i == 0 {
                head_flags = f;
            } else {
                b[14..].copy_from_slice(&f.to_le_bytes());
            }
            mem.write(at, &b).unwrap();
            self.next += 1;
            if self.next == self.size {
                self.next = 0;
                self.wrap = !self.wrap;
            }
        }
        let at = self.desc + u64::from(head.0) * 16 + 14;
        mem.write_u16(at, head_flags).unwrap();
    }

    /// Takes the next used descriptor: (id, len), skipping `slots` ring slots.
    pub fn pop_used(&mut self, mem: &mut HostMemory, slots: u16) -> Option<(u16, u32)> {
        let at = self.desc + u64::from(self.used_next) * 16;
        let flags = mem.read_u16(at + 14).unwrap();
        let avail = flags & AVAIL != 0;
        let used = flags & USED != 0;
        if avail != self.used_wrap || used != self.used_wrap {
            return None;
        }
        let len = mem.read_u32(at + 8).unwrap();
        let id = mem.read_u16(at + 12).unwrap();
        for _ in 0..slots {
            self.used_next += 1;
            if self.used_next == self.size {
                self.used_next = 0;
                self.used_wrap = !self.used_wrap;
            }
        }
        Some((id, len))
    }
}

/// Bytes of `mem` outside the given `(addr, len)` ranges, for before/after
/// comparisons.
pub fn outside(mem: &HostMemory, allowed: &[(u64, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (base, bytes) in mem.regions() {
        for (i, &b) in bytes.iter().enumerate() {
            let a = base + i as u64;
            if !allowed.iter().any(|&(s, l)| a >= s && a < s + l as u64) {
                out.push(b);
            }
        }
    }
    out
}
