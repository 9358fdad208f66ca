//! Split virtqueue (virtio §2.7): descriptor table, available ring, used ring.

use core::sync::atomic::{Ordering, fence};

use super::{
    Chain, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, Desc, MAX_CHAIN_DESCS, Position, QueueError,
    RingFeatures, UsedToken,
};
use crate::virtio::memory::GuestMemory;

/// Bytes per descriptor, split and packed alike.
pub const DESC_SIZE: u64 = 16;

/// avail.flags bit: the driver asks for no used-buffer interrupts.
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Device-side state of one enabled split ring.
#[derive(Debug)]
pub struct SplitRing {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    features: RingFeatures,
    next_avail: u16,
    next_used: u16,
    /// Used idx at the last interrupt decision (EVENT_IDX).
    signalled_used: Option<u16>,
    /// Last avail_event value written (EVENT_IDX), to skip redundant writes.
    avail_event: Option<u16>,
}

impl SplitRing {
    /// Checks alignment and that all three areas lie in guest memory.
    pub fn new(
        mem: &mut dyn GuestMemory,
        desc: u64,
        avail: u64,
        used: u64,
        size: u16,
        features: RingFeatures,
    ) -> Result<Self, QueueError> {
        let n = u64::from(size);
        for (addr, align, len) in [
            (desc, 16, DESC_SIZE * n),
            (avail, 2, 6 + 2 * n),
            (used, 4, 6 + 8 * n),
        ] {
            if addr % align != 0 {
                return Err(QueueError::Misaligned(addr));
            }
            mem.check_range(addr, len).map_err(QueueError::Ring)?;
        }
        Ok(Self {
            desc,
            avail,
            used,
            size,
            features,
            next_avail: 0,
            next_used: 0,
            signalled_used: None,
            avail_event: None,
        })
    }

    fn slot(&self, index: u16) -> u64 {
        // size is a power of two.
        u64::from(index & (self.size - 1))
    }

    /// Number of new heads, validated against the ring size. With EVENT_IDX,
    /// an empty ring publishes avail_event and re-checks (§3.6 step 4).
    fn pending(&mut self, mem: &mut dyn GuestMemory) -> Result<u16, QueueError> {
        let mut idx = mem.read_u16(self.avail + 2).map_err(QueueError::Ring)?;
        if idx == self.next_avail && self.features.event_idx && self.avail_event != Some(idx) {
            let at = self.used + 4 + 8 * u64::from(self.size);
            mem.write_u16(at, self.next_avail)
                .map_err(QueueError::Ring)?;
            self.avail_event = Some(self.next_avail);
            fence(Ordering::SeqCst);
            idx = mem.read_u16(self.avail + 2).map_err(QueueError::Ring)?;
        }
        // Ring entries and descriptors must not be read before the index.
        fence(Ordering::Acquire);
        let pending = idx.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailIndexJump {
                avail: idx,
                next: self.next_avail,
            });
        }
        Ok(pending)
    }

    /// See [`super::Queue::has_available`].
    pub fn has_available(&mut self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        Ok(self.pending(mem)? > 0)
    }

    /// See [`super::Queue::pop`].
    pub fn pop(
        &mut self,
        mem: &mut dyn GuestMemory,
        chain: &mut Chain,
    ) -> Result<bool, QueueError> {
        if self.pending(mem)? == 0 {
            return Ok(false);
        }
        let at = self.avail + 4 + 2 * self.slot(self.next_avail);
        let head = mem.read_u16(at).map_err(QueueError::Ring)?;
        if head >= self.size {
            return Err(QueueError::IndexOutOfRange(head));
        }
        walk(mem, chain, self.desc, self.size, head, self.features)?;
        chain.set_token(UsedToken { id: head, slots: 1 });
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(true)
    }

    /// See [`super::Queue::push_used`].
    pub fn push_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        token: UsedToken,
        len: u32,
    ) -> Result<(), QueueError> {
        if token.id >= self.size {
            return Err(QueueError::Internal);
        }
        let at = self.used + 4 + 8 * self.slot(self.next_used);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(token.id).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(at, &elem).map_err(QueueError::Ring)?;
        // Data and the element must be visible before the index moves.
        fence(Ordering::Release);
        self.next_used = self.next_used.wrapping_add(1);
        mem.write_u16(self.used + 2, self.next_used)
            .map_err(QueueError::Ring)
    }

    /// See [`super::Queue::needs_interrupt`].
    pub fn needs_interrupt(&mut self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        // The used idx store must be ordered before the suppression load.
        fence(Ordering::SeqCst);
        if self.features.event_idx {
            let at = self.avail + 4 + 2 * u64::from(self.size);
            let event = mem.read_u16(at).map_err(QueueError::Ring)?;
            let new = self.next_used;
            let Some(old) = self.signalled_used.replace(new) else {
                return Ok(true);
            };
            Ok(need_event(event, new, old))
        } else {
            let flags = mem.read_u16(self.avail).map_err(QueueError::Ring)?;
            Ok(flags & AVAIL_F_NO_INTERRUPT == 0)
        }
    }

    /// See [`super::Queue::position`].
    pub fn position(&self) -> Position {
        Position {
            index: self.next_avail,
            wrap: true,
        }
    }

    /// See [`super::Queue::rewind`].
    pub fn rewind(&mut self, pos: Position) {
        self.next_avail = pos.index;
    }
}

/// True if moving the used index from `old` to `new` crossed `event`
/// (all wrapping u16; virtio §2.7.10).
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Reads one 16-byte split descriptor: (addr, len, flags, next).
fn read_desc(mem: &mut dyn GuestMemory, at: u64) -> Result<(u64, u32, u16, u16), QueueError> {
    let mut b = [0u8; 16];
    mem.read(at, &mut b).map_err(QueueError::Ring)?;
    let addr = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    let flags = u16::from_le_bytes([b[12], b[13]]);
    let next = u16::from_le_bytes([b[14], b[15]]);
    Ok((addr, len, flags, next))
}

/// Walks the chain at `head`, following into at most one indirect table,
/// copying each descriptor once into `chain`. Each table bounds its own walk
/// by its entry count, so loops end.
fn walk(
    mem: &mut dyn GuestMemory,
    chain: &mut Chain,
    desc: u64,
    size: u16,
    head: u16,
    features: RingFeatures,
) -> Result<(), QueueError> {
    let mut table = desc;
    let mut entries = u32::from(size);
    let mut index = u32::from(head);
    let mut budget = entries;
    let mut in_indirect = false;
    loop {
        if budget == 0 {
            return Err(QueueError::ChainTooLong);
        }
        budget -= 1;
        // index < entries <= MAX_CHAIN_DESCS (or 2^16), so no overflow in the
        // product; the table range was checked, so neither in the sum.
        let (addr, len, flags, next) = read_desc(mem, table + u64::from(index) * DESC_SIZE)?;
        if flags & DESC_F_INDIRECT != 0 {
            if !features.indirect {
                return Err(QueueError::IndirectNotNegotiated);
            }
            if in_indirect {
                return Err(QueueError::NestedIndirect);
            }
            if flags & DESC_F_NEXT != 0 {
                return Err(QueueError::IndirectWithNext);
            }
            if len == 0 || !len.is_multiple_of(DESC_SIZE as u32) {
                return Err(QueueError::BadIndirectLen(len));
            }
            let n = len / DESC_SIZE as u32;
            if n as usize > MAX_CHAIN_DESCS {
                return Err(QueueError::ChainTooLong);
            }
            mem.check_range(addr, u64::from(len))
                .map_err(QueueError::Buffer)?;
            table = addr;
            entries = n;
            index = 0;
            budget = n;
            in_indirect = true;
            continue;
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
            return Ok(());
        }
        if u32::from(next) >= entries {
            return Err(QueueError::IndexOutOfRange(next));
        }
        index = u32::from(next);
    }
}

#[cfg(test)]
mod tests {
    use super::need_event;

    #[test]
    fn event_crossing_wraps() {
        assert!(need_event(0, 1, 0));
        assert!(!need_event(1, 1, 0));
        assert!(need_event(0xffff, 0, 0xfffe));
        assert!(need_event(0xfffe, 1, 0xfff0));
        assert!(!need_event(5, 3, 1));
    }
}
