//! Packed virtqueue (virtio §2.8): one descriptor ring shared both ways, with
//! wrap counters, plus driver/device event suppression structures.

use core::sync::atomic::{Ordering, fence};

use super::split::{DESC_SIZE, need_event};
use super::{
    Chain, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, Desc, MAX_CHAIN_DESCS, Position, QueueError,
    RingFeatures, UsedToken,
};
use crate::virtio::memory::GuestMemory;

/// Descriptor flag: available (matches the driver's wrap counter).
pub const DESC_F_AVAIL: u16 = 1 << 7;
/// Descriptor flag: used (matches the device's wrap counter).
pub const DESC_F_USED: u16 = 1 << 15;

/// Event suppression: notify on every used buffer.
pub const EVENT_FLAGS_ENABLE: u16 = 0;
/// Event suppression: do not notify.
pub const EVENT_FLAGS_DISABLE: u16 = 1;
/// Event suppression: notify when reaching `desc` (needs EVENT_IDX).
pub const EVENT_FLAGS_DESC: u16 = 2;

/// Device-side state of one enabled packed ring.
#[derive(Debug)]
pub struct PackedRing {
    desc: u64,
    driver_event: u64,
    size: u16,
    features: RingFeatures,
    next_avail: u16,
    avail_wrap: bool,
    next_used: u16,
    used_wrap: bool,
    /// Used slot at the last interrupt decision.
    signalled_used: Option<u16>,
}

/// One 16-byte packed descriptor: (addr, len, id, flags).
fn read_desc(mem: &mut dyn GuestMemory, at: u64) -> Result<(u64, u32, u16, u16), QueueError> {
    let mut b = [0u8; 16];
    mem.read(at, &mut b).map_err(QueueError::Ring)?;
    let addr = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    let id = u16::from_le_bytes([b[12], b[13]]);
    let flags = u16::from_le_bytes([b[14], b[15]]);
    Ok((addr, len, id, flags))
}

impl PackedRing {
    /// Checks alignment and that the ring and both event areas lie in guest
    /// memory.
    pub fn new(
        mem: &mut dyn GuestMemory,
        desc: u64,
        driver_event: u64,
        device_event: u64,
        size: u16,
        features: RingFeatures,
    ) -> Result<Self, QueueError> {
        for (addr, align, len) in [
            (desc, 16, DESC_SIZE * u64::from(size)),
            (driver_event, 4, 4),
            (device_event, 4, 4),
        ] {
            if addr % align != 0 {
                return Err(QueueError::Misaligned(addr));
            }
            mem.check_range(addr, len).map_err(QueueError::Ring)?;
        }
        Ok(Self {
            desc,
            driver_event,
            size,
            features,
            next_avail: 0,
            avail_wrap: true,
            next_used: 0,
            used_wrap: true,
            signalled_used: None,
        })
    }

    fn slot_addr(&self, slot: u16) -> u64 {
        self.desc + u64::from(slot) * DESC_SIZE
    }

    fn is_available(flags: u16, wrap: bool) -> bool {
        let avail = flags & DESC_F_AVAIL != 0;
        let used = flags & DESC_F_USED != 0;
        avail == wrap && used != wrap
    }

    fn advance(&self, slot: u16, wrap: bool, by: u16) -> (u16, bool) {
        // slot < size and by <= size, so the sum fits in u32 and wraps once.
        let next = u32::from(slot) + u32::from(by);
        if next >= u32::from(self.size) {
            ((next - u32::from(self.size)) as u16, !wrap)
        } else {
            (next as u16, wrap)
        }
    }

    /// See [`super::Queue::has_available`].
    pub fn has_available(&mut self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        let flags = mem
            .read_u16(self.slot_addr(self.next_avail) + 14)
            .map_err(QueueError::Ring)?;
        Ok(Self::is_available(flags, self.avail_wrap))
    }

    /// See [`super::Queue::pop`].
    pub fn pop(
        &mut self,
        mem: &mut dyn GuestMemory,
        chain: &mut Chain,
    ) -> Result<bool, QueueError> {
        if !self.has_available(mem)? {
            return Ok(false);
        }
        // The rest of the descriptor only after its flags said "available".
        fence(Ordering::Acquire);
        let (mut slot, mut wrap) = (self.next_avail, self.avail_wrap);
        let mut slots: u16 = 0;
        let id = loop {
            if slots == self.size {
                return Err(QueueError::ChainTooLong);
            }
            let (addr, len, id, flags) = read_desc(mem, self.slot_addr(slot))?;
            slots += 1;
            (slot, wrap) = self.advance(slot, wrap, 1);
            if flags & DESC_F_INDIRECT != 0 {
                if flags & DESC_F_NEXT != 0 {
                    return Err(QueueError::IndirectWithNext);
                }
                self.walk_indirect(mem, chain, addr, len)?;
                break id;
            }
            chain.push(
                mem,
                Desc {
                    addr,
                    len,
                    writable: flags & DESC_F_WRITE != 0,
                },
            )?;
            if flags & DESC_F_NEXT == 0 {
                break id;
            }
        };
        chain.set_token(UsedToken { id, slots });
        self.next_avail = slot;
        self.avail_wrap = wrap;
        Ok(true)
    }

    /// An indirect table: `len / 16` consecutive entries, only WRITE counts.
    fn walk_indirect(
        &self,
        mem: &mut dyn GuestMemory,
        chain: &mut Chain,
        table: u64,
        len: u32,
    ) -> Result<(), QueueError> {
        if !self.features.indirect {
            return Err(QueueError::IndirectNotNegotiated);
        }
        if len == 0 || !len.is_multiple_of(DESC_SIZE as u32) {
            return Err(QueueError::BadIndirectLen(len));
        }
        let n = len / DESC_SIZE as u32;
        if n as usize > MAX_CHAIN_DESCS {
            return Err(QueueError::ChainTooLong);
        }
        mem.check_range(table, u64::from(len))
            .map_err(QueueError::Buffer)?;
        for i in 0..u64::from(n) {
            let (addr, len, _id, flags) = read_desc(mem, table + i * DESC_SIZE)?;
            if flags & DESC_F_INDIRECT != 0 {
                return Err(QueueError::NestedIndirect);
            }
            chain.push(
                mem,
                Desc {
                    addr,
                    len,
                    writable: flags & DESC_F_WRITE != 0,
                },
            )?;
        }
        Ok(())
    }

    /// See [`super::Queue::push_used`]. The used descriptor goes where the
    /// chain's first descriptor was; both sides then skip its other slots.
    pub fn push_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        token: UsedToken,
        len: u32,
    ) -> Result<(), QueueError> {
        if token.slots == 0 || token.slots > self.size {
            return Err(QueueError::Internal);
        }
        let at = self.slot_addr(self.next_used);
        let mut head = [0u8; 6];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4..].copy_from_slice(&token.id.to_le_bytes());
        mem.write(at + 8, &head).map_err(QueueError::Ring)?;
        let mut flags = if self.used_wrap {
            DESC_F_AVAIL | DESC_F_USED
        } else {
            0
        };
        if len > 0 {
            // WRITE on a used descriptor says `len` is meaningful.
            flags |= DESC_F_WRITE;
        }
        // Data, len and id must be visible before the flags flip.
        fence(Ordering::Release);
        mem.write_u16(at + 14, flags).map_err(QueueError::Ring)?;
        (self.next_used, self.used_wrap) =
            self.advance(self.next_used, self.used_wrap, token.slots);
        Ok(())
    }

    /// See [`super::Queue::needs_interrupt`].
    pub fn needs_interrupt(&mut self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        // Flags store ordered before the suppression load.
        fence(Ordering::SeqCst);
        let mut b = [0u8; 4];
        mem.read(self.driver_event, &mut b)
            .map_err(QueueError::Ring)?;
        let off_wrap = u16::from_le_bytes([b[0], b[1]]);
        let flags = u16::from_le_bytes([b[2], b[3]]) & 3;
        let new = self.next_used;
        let old = self.signalled_used.replace(new);
        Ok(match flags {
            EVENT_FLAGS_DISABLE => false,
            EVENT_FLAGS_DESC if self.features.event_idx => {
                let Some(old) = old else { return Ok(true) };
                let mut off = off_wrap & 0x7fff;
                if (off_wrap >> 15 != 0) != self.used_wrap {
                    // The event is in the previous lap of the ring.
                    off = off.wrapping_sub(self.size);
                }
                // Non-power-of-two sizes can only make this over-notify,
                // which the driver tolerates.
                need_event(off, new, old)
            }
            // ENABLE, and anything reserved: notifying is always safe.
            _ => true,
        })
    }

    /// See [`super::Queue::position`].
    pub fn position(&self) -> Position {
        Position {
            index: self.next_avail,
            wrap: self.avail_wrap,
        }
    }

    /// See [`super::Queue::rewind`].
    pub fn rewind(&mut self, pos: Position) {
        self.next_avail = pos.index;
        self.avail_wrap = pos.wrap;
    }
}
