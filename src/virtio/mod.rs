//! The virtio device core: guest memory access, virtqueues, the
//! transport-neutral device layer and the virtio-mmio register file.
//!
//! Nothing here knows a hypervisor (DESIGN.md rule 1): adapters hand us a
//! [`memory::GuestMemory`] and register accesses or transport events, and we
//! hand back register values and interrupt levels. Everything a driver writes is
//! treated as hostile: a malformed ring sets `DEVICE_NEEDS_RESET` and stops the
//! device, it never panics or touches memory outside the guest.
#![forbid(unsafe_code)]

pub mod memory;
pub mod mmio;
pub mod queue;
pub mod transport;

pub use memory::{GuestMemory, HostMemory, MemError};
pub use mmio::MmioDevice;
pub use transport::{DeviceCtx, DeviceError, Transport, VirtioDevice};

/// Device status bits (virtio §2.1).
pub mod status {
    /// Guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// Guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// Driver set-up done, device live.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation finished (the device may refuse to latch it).
    pub const FEATURES_OK: u8 = 8;
    /// Device hit an error that needs a reset (set by the device).
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    /// Driver gave up.
    pub const FAILED: u8 = 128;
}

/// Transport and ring feature bits shared by all device types (virtio §6).
pub mod features {
    /// Indirect descriptor tables.
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// `used_event` / `avail_event` notification suppression.
    pub const EVENT_IDX: u64 = 1 << 29;
    /// Non-legacy device; mandatory.
    pub const VERSION_1: u64 = 1 << 32;
    /// Addresses go through a platform translation.
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    /// Packed virtqueue layout.
    pub const RING_PACKED: u64 = 1 << 34;
    /// Buffers used in the order made available.
    pub const IN_ORDER: u64 = 1 << 35;
    /// QueueNotify carries the next avail position.
    pub const NOTIFICATION_DATA: u64 = 1 << 38;
    /// Per-queue reset through QueueReset.
    pub const RING_RESET: u64 = 1 << 40;

    /// What the core implements for every device and therefore offers.
    pub const CORE: u64 =
        VERSION_1 | INDIRECT_DESC | EVENT_IDX | RING_PACKED | RING_RESET | NOTIFICATION_DATA;
}

/// InterruptStatus bits (virtio-mmio §4.2.2).
pub mod interrupt {
    /// A queue has used buffers.
    pub const USED_BUFFER: u32 = 1;
    /// Configuration (or DEVICE_NEEDS_RESET) changed.
    pub const CONFIG_CHANGE: u32 = 2;
}

/// Device type IDs (virtio §5).
pub mod device_id {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
    /// Console.
    pub const CONSOLE: u32 = 3;
    /// Entropy source.
    pub const ENTROPY: u32 = 4;
    /// Socket (vsock).
    pub const VSOCK: u32 = 19;
}
