//! The virtio-mmio v2 register file (virtio §4.2.2): a thin translator from
//! register accesses to [`Transport`] calls. Selectors and the address-register
//! halves are the only state it keeps itself.

use alloc::boxed::Box;

use crate::virtio::features;
use crate::virtio::memory::GuestMemory;
use crate::virtio::transport::{Transport, VirtioDevice};

/// "virt" as a little-endian word.
pub const MAGIC: u32 = 0x7472_6976;
/// Non-legacy virtio-mmio.
pub const VERSION: u32 = 2;
/// Vendor ID we report ("BKPL").
pub const VENDOR_ID: u32 = 0x4c50_4b42;
/// Size of the register window.
pub const WINDOW_SIZE: u64 = 0x200;

/// Register offsets.
pub mod reg {
    #![allow(missing_docs)]
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// Legacy only; virtio-drivers writes it anyway.
    pub const GUEST_PAGE_SIZE: u64 = 0x028;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const QUEUE_RESET: u64 = 0x0c0;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// One virtio-mmio device: the register file over a transport and its model.
#[derive(Debug)]
pub struct MmioDevice {
    transport: Transport,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    bad_accesses: u32,
}

/// Replaces the low or high half of a 64-bit address.
fn set_half(old: u64, value: u32, high: bool) -> u64 {
    if high {
        (old & 0xffff_ffff) | (u64::from(value) << 32)
    } else {
        (old & !0xffff_ffff) | u64::from(value)
    }
}

impl MmioDevice {
    /// A device in reset state around `device`.
    pub fn new(device: Box<dyn VirtioDevice>) -> Self {
        Self {
            transport: Transport::new(device),
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            bad_accesses: 0,
        }
    }

    /// The transport-neutral layer underneath.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Mutable access to the transport-neutral layer.
    pub fn transport_mut(&mut self) -> &mut Transport {
        &mut self.transport
    }

    /// Device type ID.
    pub fn device_id(&self) -> u32 {
        self.transport.device_id()
    }

    /// True once the device flagged DEVICE_NEEDS_RESET.
    pub fn needs_reset(&self) -> bool {
        self.transport.needs_reset()
    }

    /// Level of the interrupt line (InterruptStatus != 0).
    pub fn interrupt_pending(&self) -> bool {
        self.transport.interrupt_pending()
    }

    /// True once per notification raised since the last call.
    pub fn take_interrupt_edge(&mut self) -> bool {
        self.transport.take_interrupt_edge()
    }

    /// Device reset, as if the driver wrote 0 to Status.
    pub fn reset(&mut self) {
        self.transport.reset();
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
    }

    /// Service-loop hook; cheap when idle.
    pub fn poll(&mut self, mem: &mut dyn GuestMemory) {
        self.transport.poll(mem);
    }

    fn bad_access(&mut self, what: &str, offset: u64, size: u8) {
        self.bad_accesses = self.bad_accesses.saturating_add(1);
        let n = self.bad_accesses;
        // First few, then ever more rarely: a hostile guest cannot flood the log.
        if n <= 8 || n.is_power_of_two() {
            log::warn!(
                "virtio-mmio (device {}): bad {what} at {offset:#x} size {size} ({n} so far)",
                self.device_id()
            );
        }
    }

    /// A driver read of `size` bytes at `offset` in the window. Invalid
    /// accesses read 0.
    pub fn read(&mut self, offset: u64, size: u8, mem: &mut dyn GuestMemory) -> u64 {
        let _ = mem;
        if offset >= reg::CONFIG {
            return match self.config_access(offset, size) {
                Some((off, n)) => {
                    let mut b = [0u8; 8];
                    if self.transport.read_config(off, &mut b[..n]) {
                        u64::from_le_bytes(b)
                    } else {
                        self.bad_access("config read", offset, size);
                        0
                    }
                }
                None => {
                    self.bad_access("config read", offset, size);
                    0
                }
            };
        }
        if size != 4 || !offset.is_multiple_of(4) {
            self.bad_access("register read", offset, size);
            return 0;
        }
        let t = &self.transport;
        let value = match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => t.device_id(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => t.device_features_word(self.device_features_sel),
            reg::QUEUE_NUM_MAX => u32::from(t.queue_max_size(self.queue_sel)),
            reg::QUEUE_READY => u32::from(t.queue_ready(self.queue_sel)),
            reg::INTERRUPT_STATUS => t.interrupt_status(),
            reg::STATUS => u32::from(t.status()),
            // No shared memory regions: length and base read all ones.
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            // Resets complete synchronously, so this always reads 0.
            reg::QUEUE_RESET if t.device_features() & features::RING_RESET != 0 => 0,
            reg::CONFIG_GENERATION => t.config_generation(),
            _ => {
                self.bad_access("register read", offset, size);
                0
            }
        };
        u64::from(value)
    }

    /// A driver write of `size` bytes of `value` at `offset` in the window.
    /// Invalid accesses are dropped. May process queues synchronously.
    pub fn write(&mut self, offset: u64, size: u8, value: u64, mem: &mut dyn GuestMemory) {
        if offset >= reg::CONFIG {
            let ok = match self.config_access(offset, size) {
                Some((off, n)) => self.transport.write_config(off, &value.to_le_bytes()[..n]),
                None => false,
            };
            if !ok {
                self.bad_access("config write", offset, size);
            }
            return;
        }
        if size != 4 || !offset.is_multiple_of(4) {
            self.bad_access("register write", offset, size);
            return;
        }
        let v = value as u32;
        let q = self.queue_sel;
        let t = &mut self.transport;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES => t.set_driver_features_word(self.driver_features_sel, v),
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::GUEST_PAGE_SIZE => {}
            reg::QUEUE_SEL => self.queue_sel = v,
            // Sizes above 16 bits become 0, which enabling rejects.
            reg::QUEUE_NUM => t.set_queue_size(q, u16::try_from(v).unwrap_or(0)),
            reg::QUEUE_READY if v <= 1 => t.set_queue_ready(q, v == 1, mem),
            reg::QUEUE_NOTIFY => t.notify_value(v, mem),
            reg::INTERRUPT_ACK => t.ack_interrupt(v),
            reg::STATUS if v <= 0xff => {
                if v == 0 {
                    self.reset();
                } else {
                    t.set_status(v as u8, mem);
                }
            }
            reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH => {
                let (mut d, mut dr, mut dv) = t.queue_addresses(q);
                let high = offset & 4 != 0;
                match offset & !4 {
                    reg::QUEUE_DESC_LOW => d = set_half(d, v, high),
                    reg::QUEUE_DRIVER_LOW => dr = set_half(dr, v, high),
                    _ => dv = set_half(dv, v, high),
                }
                t.set_queue_addresses(q, d, dr, dv);
            }
            reg::SHM_SEL => {}
            reg::QUEUE_RESET if v == 1 && t.reset_queue(q) => {}
            _ => self.bad_access("register write", offset, size),
        }
    }

    /// Config-space offset and width for an access, if the width is valid.
    fn config_access(&self, offset: u64, size: u8) -> Option<(usize, usize)> {
        let n = match size {
            1 | 2 | 4 | 8 => usize::from(size),
            _ => return None,
        };
        let off = usize::try_from(offset - reg::CONFIG).ok()?;
        Some((off, n))
    }
}
