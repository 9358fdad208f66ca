//! The transport-neutral device layer (DESIGN.md rule 3).
//!
//! [`Transport`] holds what every virtio transport shares: status and feature
//! negotiation, queue configuration, notifications, config space and the
//! interrupt status. The virtio-mmio register file translates register
//! accesses into these calls; Gunyah's virtio-mmio backend events (the
//! hypervisor emulates the registers and reports "features set", "queue N
//! notified", "status changed") and a future shared-memory transport call
//! them directly. Device models implement [`VirtioDevice`] and see only their
//! queues and guest memory through a [`DeviceCtx`].

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::virtio::features;
use crate::virtio::interrupt;
use crate::virtio::memory::{GuestMemory, MemError};
use crate::virtio::queue::{Queue, QueueError, RingFeatures};
use crate::virtio::status;

/// Why a device stopped: the driver broke a rule, so the device now needs a
/// reset. Backend failures are not errors here; devices report them to the
/// driver in-band (e.g. blk IOERR) and keep serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// A ring or chain is malformed.
    Queue(QueueError),
    /// A buffer could not be accessed.
    Memory(MemError),
    /// A request violates the device type's rules (e.g. blk status byte
    /// missing).
    Malformed(&'static str),
}

impl From<QueueError> for DeviceError {
    fn from(e: QueueError) -> Self {
        Self::Queue(e)
    }
}

impl From<MemError> for DeviceError {
    fn from(e: MemError) -> Self {
        Self::Memory(e)
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Queue(e) => write!(f, "queue: {e}"),
            Self::Memory(e) => write!(f, "buffer: {e}"),
            Self::Malformed(what) => write!(f, "malformed request: {what}"),
        }
    }
}

/// What a device model may touch while handling an event.
pub struct DeviceCtx<'a> {
    /// The device's queues, indexed as the driver numbers them.
    pub queues: &'a mut [Queue],
    /// The guest's memory.
    pub mem: &'a mut dyn GuestMemory,
    /// Negotiated features.
    pub features: u64,
    config_changed: bool,
}

impl DeviceCtx<'_> {
    /// Reports that config space changed on the device's own initiative
    /// (link status, capacity): bumps the generation and raises a config
    /// interrupt.
    pub fn config_changed(&mut self) {
        self.config_changed = true;
    }
}

/// A device model: what is device-type specific, and nothing about transports.
///
/// Methods that take a [`DeviceCtx`] run only while the driver has set
/// DRIVER_OK and the device does not need a reset.
pub trait VirtioDevice: Send {
    /// Device type ID (virtio §5).
    fn device_id(&self) -> u32;

    /// Device-type feature bits offered; the transport adds the ring and
    /// transport bits it implements ([`features::CORE`]).
    fn features(&self) -> u64;

    /// Maximum size of each queue; the slice length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];

    /// Size of the device-specific config space in bytes.
    fn config_len(&self) -> usize;

    /// Reads config bytes; `offset + data.len() <= config_len()` is checked
    /// by the caller. Must work before FEATURES_OK.
    fn read_config(&self, offset: usize, data: &mut [u8]);

    /// Writes config bytes (bounds checked by the caller); returns true if the
    /// config space changed.
    fn write_config(&mut self, offset: usize, data: &[u8]) -> bool {
        let _ = (offset, data);
        false
    }

    /// Device-type consistency check of the driver's accepted features (the
    /// transport already checked subset and VERSION_1).
    fn validate_features(&self, features: u64) -> bool {
        let _ = features;
        true
    }

    /// The driver set DRIVER_OK with these negotiated features.
    fn activate(&mut self, features: u64) {
        let _ = features;
    }

    /// The driver notified `queue` (an existing, enabled queue).
    fn queue_notify(&mut self, queue: u16, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError>;

    /// Service-loop hook for inbound data or asynchronous backends; must be
    /// cheap when there is nothing to do.
    fn poll(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        let _ = ctx;
        Ok(())
    }

    /// Device reset: forget negotiated state and anything in flight.
    fn reset(&mut self);

    /// One queue was reset (VIRTIO_F_RING_RESET).
    fn queue_reset(&mut self, queue: u16) {
        let _ = queue;
    }
}

/// Transport-neutral state of one virtio device instance.
pub struct Transport {
    device: Box<dyn VirtioDevice>,
    queues: Vec<Queue>,
    status: u8,
    driver_features: u64,
    /// The driver accepted bits above 63, none of which we offer.
    driver_features_high: bool,
    negotiated: u64,
    interrupt_status: u32,
    edge: bool,
    config_generation: u32,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("device_id", &self.device.device_id())
            .field("status", &self.status)
            .field("negotiated", &self.negotiated)
            .field("interrupt_status", &self.interrupt_status)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Wraps a device model; queues are allocated here, at set-up.
    pub fn new(device: Box<dyn VirtioDevice>) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max))
            .collect();
        Self {
            device,
            queues,
            status: 0,
            driver_features: 0,
            driver_features_high: false,
            negotiated: 0,
            interrupt_status: 0,
            edge: false,
            config_generation: 0,
        }
    }

    /// Device type ID.
    pub fn device_id(&self) -> u32 {
        self.device.device_id()
    }

    /// Every feature bit offered.
    pub fn device_features(&self) -> u64 {
        self.device.features() | features::CORE
    }

    /// Offered features, 32 bits at a time (words 2 and up read 0).
    pub fn device_features_word(&self, sel: u32) -> u32 {
        match sel {
            0 => self.device_features() as u32,
            1 => (self.device_features() >> 32) as u32,
            _ => 0,
        }
    }

    /// Features the driver has written so far.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// Records the driver's accepted features; ignored after FEATURES_OK.
    pub fn set_driver_features(&mut self, value: u64) {
        if self.status & status::FEATURES_OK == 0 {
            self.driver_features = value;
        }
    }

    /// Records 32 bits of the driver's accepted features; ignored after
    /// FEATURES_OK. Non-zero words above 1 make FEATURES_OK fail.
    pub fn set_driver_features_word(&mut self, sel: u32, value: u32) {
        if self.status & status::FEATURES_OK != 0 {
            return;
        }
        let v = u64::from(value);
        match sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
            _ => self.driver_features_high |= value != 0,
        }
    }

    /// Features in force (0 until FEATURES_OK latched).
    pub fn negotiated_features(&self) -> u64 {
        self.negotiated
    }

    /// Device status byte.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// True once the device flagged DEVICE_NEEDS_RESET.
    pub fn needs_reset(&self) -> bool {
        self.status & status::DEVICE_NEEDS_RESET != 0
    }

    fn features_acceptable(&self) -> bool {
        let f = self.driver_features;
        !self.driver_features_high
            && f & !self.device_features() == 0
            && f & features::VERSION_1 != 0
            && self.device.validate_features(f)
    }

    /// A status write from the driver: 0 resets; FEATURES_OK latches only for
    /// an acceptable feature set; DRIVER_OK only after FEATURES_OK; writes
    /// that clear bits are ignored.
    pub fn set_status(&mut self, value: u8, mem: &mut dyn GuestMemory) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        // DEVICE_NEEDS_RESET belongs to the device.
        let mut new = (value & !status::DEVICE_NEEDS_RESET) | (old & status::DEVICE_NEEDS_RESET);
        if new & old != old {
            log::warn!("virtio: driver cleared status bits ({old:#x} -> {value:#x}); ignored");
            return;
        }
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            if self.features_acceptable() {
                self.negotiated = self.driver_features;
            } else {
                log::warn!(
                    "virtio: refusing features {:#x} (offered {:#x})",
                    self.driver_features,
                    self.device_features()
                );
                new &= !status::FEATURES_OK;
            }
        }
        if new & status::DRIVER_OK != 0 && new & status::FEATURES_OK == 0 {
            new &= !status::DRIVER_OK;
        }
        self.status = new;
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            self.device.activate(self.negotiated);
            // Buffers made available before DRIVER_OK (rx rings) get served.
            self.run(mem, |d, ctx| d.poll(ctx));
        }
    }

    /// Full device reset (status 0, or the guest went away).
    pub fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.driver_features = 0;
        self.driver_features_high = false;
        self.negotiated = 0;
        self.interrupt_status = 0;
        self.edge = false;
    }

    /// Number of queues.
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    /// A queue, if it exists.
    pub fn queue(&self, index: u32) -> Option<&Queue> {
        self.queues.get(index as usize)
    }

    /// Maximum size of a queue; 0 if it does not exist.
    pub fn queue_max_size(&self, index: u32) -> u16 {
        self.queue(index).map_or(0, Queue::max_size)
    }

    /// Sets a queue's size (checked when the queue is enabled); ignored for
    /// missing or live queues.
    pub fn set_queue_size(&mut self, index: u32, size: u16) {
        if let Some(q) = self.queues.get_mut(index as usize) {
            q.set_size(size);
        }
    }

    /// A queue's (descriptor, driver, device) area addresses.
    pub fn queue_addresses(&self, index: u32) -> (u64, u64, u64) {
        self.queue(index).map_or((0, 0, 0), Queue::addresses)
    }

    /// Sets a queue's area addresses; ignored for missing or live queues.
    pub fn set_queue_addresses(&mut self, index: u32, desc: u64, driver: u64, device: u64) {
        if let Some(q) = self.queues.get_mut(index as usize) {
            q.set_addresses(desc, driver, device);
        }
    }

    /// True if the queue exists and is enabled.
    pub fn queue_ready(&self, index: u32) -> bool {
        self.queue(index).is_some_and(Queue::ready)
    }

    /// Enables (validating size, alignment and placement) or disables a queue.
    /// An invalid configuration sets DEVICE_NEEDS_RESET.
    pub fn set_queue_ready(&mut self, index: u32, ready: bool, mem: &mut dyn GuestMemory) {
        let ring = RingFeatures::from_bits(self.negotiated);
        let Some(q) = self.queues.get_mut(index as usize) else {
            return;
        };
        if !ready {
            q.disable();
            return;
        }
        if let Err(e) = q.enable(mem, ring) {
            self.fail(DeviceError::Queue(e));
        }
    }

    /// Resets one queue (only with VIRTIO_F_RING_RESET negotiated); returns
    /// whether it was done.
    pub fn reset_queue(&mut self, index: u32) -> bool {
        if self.negotiated & features::RING_RESET == 0 {
            return false;
        }
        let Some(q) = self.queues.get_mut(index as usize) else {
            return false;
        };
        q.reset();
        self.device.queue_reset(index as u16);
        true
    }

    /// The driver notified queue `index`; out-of-range or disabled queues are
    /// ignored (spurious notifications are legal).
    pub fn notify(&mut self, index: u32, mem: &mut dyn GuestMemory) {
        if !self.queue_ready(index) {
            return;
        }
        let q = index as u16;
        self.run(mem, |d, ctx| d.queue_notify(q, ctx));
    }

    /// A raw notification value: with VIRTIO_F_NOTIFICATION_DATA the queue
    /// index is the low 16 bits and the rest is a position hint we do not
    /// need (we read the ring itself).
    pub fn notify_value(&mut self, value: u32, mem: &mut dyn GuestMemory) {
        let index = if self.negotiated & features::NOTIFICATION_DATA != 0 {
            value & 0xffff
        } else {
            value
        };
        self.notify(index, mem);
    }

    /// Service-loop hook: lets inbound data and asynchronous backends progress.
    pub fn poll(&mut self, mem: &mut dyn GuestMemory) {
        self.run(mem, |d, ctx| d.poll(ctx));
    }

    /// Size of the device config space.
    pub fn config_len(&self) -> usize {
        self.device.config_len()
    }

    /// Reads config bytes; false (and `data` untouched) when out of range.
    pub fn read_config(&self, offset: usize, data: &mut [u8]) -> bool {
        match offset.checked_add(data.len()) {
            Some(end) if end <= self.config_len() => {
                self.device.read_config(offset, data);
                true
            }
            _ => false,
        }
    }

    /// Writes config bytes; false when out of range. A change bumps the
    /// generation.
    pub fn write_config(&mut self, offset: usize, data: &[u8]) -> bool {
        match offset.checked_add(data.len()) {
            Some(end) if end <= self.config_len() => {
                if self.device.write_config(offset, data) {
                    self.config_generation = self.config_generation.wrapping_add(1);
                }
                true
            }
            _ => false,
        }
    }

    /// Config generation counter.
    pub fn config_generation(&self) -> u32 {
        self.config_generation
    }

    /// InterruptStatus (bit 0 used buffer, bit 1 config change).
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// Clears the given InterruptStatus bits.
    pub fn ack_interrupt(&mut self, bits: u32) {
        self.interrupt_status &= !bits;
    }

    /// Level of the interrupt line.
    pub fn interrupt_pending(&self) -> bool {
        self.interrupt_status != 0
    }

    /// True once per notification raised since the last call.
    pub fn take_interrupt_edge(&mut self) -> bool {
        core::mem::take(&mut self.edge)
    }

    fn raise(&mut self, bits: u32) {
        self.interrupt_status |= bits;
        self.edge = true;
    }

    /// The driver broke the device: flag DEVICE_NEEDS_RESET, tell a live
    /// driver through a config interrupt, and do nothing more until reset.
    fn fail(&mut self, e: DeviceError) {
        if self.needs_reset() {
            return;
        }
        log::warn!(
            "virtio device {}: {e}; device needs reset",
            self.device.device_id()
        );
        self.status |= status::DEVICE_NEEDS_RESET;
        if self.status & status::DRIVER_OK != 0 {
            self.raise(interrupt::CONFIG_CHANGE);
        }
    }

    /// Runs device work when the device is live, then turns its results into
    /// interrupts.
    fn run(
        &mut self,
        mem: &mut dyn GuestMemory,
        work: impl FnOnce(&mut dyn VirtioDevice, &mut DeviceCtx<'_>) -> Result<(), DeviceError>,
    ) {
        if self.status & status::DRIVER_OK == 0 || self.needs_reset() {
            return;
        }
        let mut ctx = DeviceCtx {
            queues: &mut self.queues,
            mem: &mut *mem,
            features: self.negotiated,
            config_changed: false,
        };
        let result = work(&mut *self.device, &mut ctx);
        let config_changed = ctx.config_changed;
        if let Err(e) = result {
            self.fail(e);
            return;
        }
        let mut used = false;
        for i in 0..self.queues.len() {
            match self.queues[i].needs_interrupt(mem) {
                Ok(n) => used |= n,
                Err(e) => {
                    self.fail(DeviceError::Queue(e));
                    return;
                }
            }
        }
        if used {
            self.raise(interrupt::USED_BUFFER);
        }
        if config_changed {
            self.config_generation = self.config_generation.wrapping_add(1);
            self.raise(interrupt::CONFIG_CHANGE);
        }
    }
}
