//! Virtqueues, device side: configuration as the driver set it, and the
//! split or packed ring behind it once enabled.
//!
//! A queue only touches guest memory while enabled. Every index and address
//! the driver controls is checked; a violation is a [`QueueError`], which the
//! transport turns into `DEVICE_NEEDS_RESET`.

pub mod chain;
pub mod packed;
pub mod split;

use core::fmt;

pub use chain::{Chain, ChainReader, ChainWriter, Desc, MAX_CHAIN_DESCS, UsedToken};

use crate::virtio::memory::{GuestMemory, MemError};

/// Descriptor flag: chain continues at `next` (split) / the next slot (packed).
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: device-writable buffer.
pub const DESC_F_WRITE: u16 = 2;
/// Descriptor flag: buffer is an indirect descriptor table.
pub const DESC_F_INDIRECT: u16 = 4;

/// A driver mistake found in a ring (or a ring outside guest memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// A ring structure could not be read or written.
    Ring(MemError),
    /// A chain's buffer is not inside guest memory (or wraps around).
    Buffer(MemError),
    /// avail.idx claims more new heads than the queue has slots.
    AvailIndexJump {
        /// avail.idx as read.
        avail: u16,
        /// Our next expected index.
        next: u16,
    },
    /// A head or `next` index is not below the table size.
    IndexOutOfRange(u16),
    /// The chain does not end within the table size (a loop) or
    /// exceeds [`MAX_CHAIN_DESCS`].
    ChainTooLong,
    /// Sum of buffer lengths reaches 2^32.
    ChainTooBig,
    /// A device-readable buffer follows a device-writable one.
    ReadableAfterWritable,
    /// INDIRECT used without VIRTIO_F_INDIRECT_DESC.
    IndirectNotNegotiated,
    /// INDIRECT inside an indirect table.
    NestedIndirect,
    /// INDIRECT combined with NEXT.
    IndirectWithNext,
    /// Indirect table length zero or not a multiple of 16.
    BadIndirectLen(u32),
    /// Queue size zero, above the maximum, or (split) not a power of two.
    BadSize(u16),
    /// A ring address is misaligned.
    Misaligned(u64),
    /// A device-side misuse (used without a matching pop); our bug, reported
    /// rather than panicking.
    Internal,
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ring(e) => write!(f, "ring not in guest memory: {e}"),
            Self::Buffer(e) => write!(f, "buffer not in guest memory: {e}"),
            Self::AvailIndexJump { avail, next } => {
                write!(f, "avail idx {avail} too far ahead of {next}")
            }
            Self::IndexOutOfRange(i) => write!(f, "descriptor index {i} out of range"),
            Self::ChainTooLong => write!(f, "descriptor chain too long or looping"),
            Self::ChainTooBig => write!(f, "descriptor chain of 4 GiB or more"),
            Self::ReadableAfterWritable => write!(f, "readable descriptor after writable"),
            Self::IndirectNotNegotiated => write!(f, "indirect descriptor not negotiated"),
            Self::NestedIndirect => write!(f, "nested indirect table"),
            Self::IndirectWithNext => write!(f, "INDIRECT together with NEXT"),
            Self::BadIndirectLen(l) => write!(f, "indirect table length {l}"),
            Self::BadSize(s) => write!(f, "bad queue size {s}"),
            Self::Misaligned(a) => write!(f, "misaligned ring address {a:#x}"),
            Self::Internal => write!(f, "device used a buffer it did not pop"),
        }
    }
}

/// Ring features negotiated for a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingFeatures {
    /// VIRTIO_F_INDIRECT_DESC.
    pub indirect: bool,
    /// VIRTIO_F_EVENT_IDX.
    pub event_idx: bool,
    /// VIRTIO_F_RING_PACKED.
    pub packed: bool,
}

impl RingFeatures {
    /// Ring features from a negotiated feature word.
    pub fn from_bits(features: u64) -> Self {
        use crate::virtio::features as f;
        Self {
            indirect: features & f::INDIRECT_DESC != 0,
            event_idx: features & f::EVENT_IDX != 0,
            packed: features & f::RING_PACKED != 0,
        }
    }
}

/// Where the ring consumer stands; save before popping tentatively and
/// restore to hand the chains back (nothing is published until pushed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    index: u16,
    wrap: bool,
}

#[derive(Debug)]
enum Ring {
    Split(split::SplitRing),
    Packed(packed::PackedRing),
}

/// One virtqueue: driver-set configuration plus the active ring.
#[derive(Debug)]
pub struct Queue {
    max_size: u16,
    size: u16,
    desc: u64,
    driver: u64,
    device: u64,
    ring: Option<Ring>,
    /// Used entries published since the last interrupt decision.
    used_pending: bool,
}

impl Queue {
    /// A disabled queue whose size may be set up to `max_size` (0 = absent).
    pub fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            desc: 0,
            driver: 0,
            device: 0,
            ring: None,
            used_pending: false,
        }
    }

    /// Back to the state after device reset.
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// Largest size the driver may choose.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// Size the driver chose (defaults to the maximum).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Descriptor / driver / device area addresses.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (self.desc, self.driver, self.device)
    }

    /// True once enabled (QueueReady = 1 accepted).
    pub fn ready(&self) -> bool {
        self.ring.is_some()
    }

    /// Sets the size; ignored while the queue is live (the driver must not).
    pub fn set_size(&mut self, size: u16) {
        if !self.ready() {
            self.size = size;
        }
    }

    /// Sets the three area addresses; ignored while live.
    pub fn set_addresses(&mut self, desc: u64, driver: u64, device: u64) {
        if !self.ready() {
            self.desc = desc;
            self.driver = driver;
            self.device = device;
        }
    }

    /// Validates the configuration and starts using the rings. On error the
    /// queue stays disabled.
    pub fn enable(
        &mut self,
        mem: &mut dyn GuestMemory,
        features: RingFeatures,
    ) -> Result<(), QueueError> {
        if self.ready() {
            return Ok(());
        }
        let size = self.size;
        if size == 0 || size > self.max_size {
            return Err(QueueError::BadSize(size));
        }
        let ring = if features.packed {
            if size > 0x8000 {
                return Err(QueueError::BadSize(size));
            }
            Ring::Packed(packed::PackedRing::new(
                mem,
                self.desc,
                self.driver,
                self.device,
                size,
                features,
            )?)
        } else {
            if !size.is_power_of_two() {
                return Err(QueueError::BadSize(size));
            }
            Ring::Split(split::SplitRing::new(
                mem,
                self.desc,
                self.driver,
                self.device,
                size,
                features,
            )?)
        };
        self.ring = Some(ring);
        self.used_pending = false;
        Ok(())
    }

    /// Stops using the rings (QueueReady = 0); configuration is kept.
    pub fn disable(&mut self) {
        self.ring = None;
        self.used_pending = false;
    }

    /// Takes the next available chain into `chain`. `Ok(false)`: nothing
    /// available (or the queue is disabled).
    pub fn pop(
        &mut self,
        mem: &mut dyn GuestMemory,
        chain: &mut Chain,
    ) -> Result<bool, QueueError> {
        chain.clear();
        match &mut self.ring {
            None => Ok(false),
            Some(Ring::Split(r)) => r.pop(mem, chain),
            Some(Ring::Packed(r)) => r.pop(mem, chain),
        }
    }

    /// True if a chain is available, without consuming it.
    pub fn has_available(&mut self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        match &mut self.ring {
            None => Ok(false),
            Some(Ring::Split(r)) => r.has_available(mem),
            Some(Ring::Packed(r)) => r.has_available(mem),
        }
    }

    /// Returns a popped chain to the driver with `len` bytes written.
    pub fn push_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        token: UsedToken,
        len: u32,
    ) -> Result<(), QueueError> {
        match &mut self.ring {
            None => return Err(QueueError::Internal),
            Some(Ring::Split(r)) => r.push_used(mem, token, len)?,
            Some(Ring::Packed(r)) => r.push_used(mem, token, len)?,
        }
        self.used_pending = true;
        Ok(())
    }

    /// Consumer position, for [`Queue::rewind`].
    pub fn position(&self) -> Position {
        match &self.ring {
            None => Position {
                index: 0,
                wrap: true,
            },
            Some(Ring::Split(r)) => r.position(),
            Some(Ring::Packed(r)) => r.position(),
        }
    }

    /// Un-pops every chain popped since `pos` was taken (none of them may
    /// have been pushed); they will be walked again, from guest memory.
    pub fn rewind(&mut self, pos: Position) {
        match &mut self.ring {
            None => {}
            Some(Ring::Split(r)) => r.rewind(pos),
            Some(Ring::Packed(r)) => r.rewind(pos),
        }
    }

    /// Decides whether used buffers published since the last call warrant an
    /// interrupt, honouring the driver's suppression (flags or event index).
    pub fn needs_interrupt(&mut self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        if !core::mem::take(&mut self.used_pending) {
            return Ok(false);
        }
        match &mut self.ring {
            None => Ok(false),
            Some(Ring::Split(r)) => r.needs_interrupt(mem),
            Some(Ring::Packed(r)) => r.needs_interrupt(mem),
        }
    }
}
