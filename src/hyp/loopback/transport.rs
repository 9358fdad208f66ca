//! A `virtio-drivers` transport whose every register access is handed to a
//! [`RegisterBus`] — for the loopback adapter, the hub, exactly as a
//! hypervisor's trap would be. No unsafe: nothing here touches memory.
use crate::virtio::mmio::reg;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Register accesses of one virtio-mmio window.
pub trait RegisterBus {
    /// Load of `size` bytes at `offset`.
    fn read(&self, offset: u64, size: u8) -> u64;
    /// Store of `size` bytes at `offset`.
    fn write(&self, offset: u64, size: u8, value: u64);
}

/// The transport: a bus and a window.
pub struct TrapTransport<B: RegisterBus> {
    bus: B,
    device_type: DeviceType,
}

impl<B: RegisterBus> TrapTransport<B> {
    /// Wraps `bus`; fails unless it shows a virtio-mmio v2 device.
    pub fn new(bus: B) -> Result<Self> {
        if bus.read(reg::MAGIC_VALUE, 4) != 0x7472_6976 || bus.read(reg::VERSION, 4) != 2 {
            return Err(Error::InvalidParam);
        }
        let device_type = DeviceType::try_from(bus.read(reg::DEVICE_ID, 4) as u32)
            .map_err(|_| Error::Unsupported)?;
        Ok(Self { bus, device_type })
    }

    fn r32(&self, off: u64) -> u32 {
        self.bus.read(off, 4) as u32
    }

    fn w32(&self, off: u64, v: u32) {
        self.bus.write(off, 4, v as u64);
    }

    fn w64(&self, off: u64, v: u64) {
        self.w32(off, v as u32);
        self.w32(off + 4, (v >> 32) as u32);
    }
}

impl<B: RegisterBus> Transport for TrapTransport<B> {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        self.w32(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.r32(reg::DEVICE_FEATURES) as u64;
        self.w32(reg::DEVICE_FEATURES_SEL, 1);
        let hi = self.r32(reg::DEVICE_FEATURES) as u64;
        lo | (hi << 32)
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.w32(reg::DRIVER_FEATURES_SEL, 0);
        self.w32(reg::DRIVER_FEATURES, driver_features as u32);
        self.w32(reg::DRIVER_FEATURES_SEL, 1);
        self.w32(reg::DRIVER_FEATURES, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.w32(reg::QUEUE_SEL, queue as u32);
        self.r32(reg::QUEUE_NUM_MAX)
    }

    fn notify(&mut self, queue: u16) {
        self.w32(reg::QUEUE_NOTIFY, queue as u32);
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.r32(reg::STATUS))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.w32(reg::STATUS, status.bits());
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.w32(reg::QUEUE_SEL, queue as u32);
        self.w32(reg::QUEUE_NUM, size);
        self.w64(reg::QUEUE_DESC_LOW, descriptors);
        self.w64(reg::QUEUE_DRIVER_LOW, driver_area);
        self.w64(reg::QUEUE_DEVICE_LOW, device_area);
        self.w32(reg::QUEUE_READY, 1);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.w32(reg::QUEUE_SEL, queue as u32);
        self.w32(reg::QUEUE_READY, 0);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.w32(reg::QUEUE_SEL, queue as u32);
        self.r32(reg::QUEUE_READY) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let status = self.r32(reg::INTERRUPT_STATUS);
        if status != 0 {
            self.w32(reg::INTERRUPT_ACK, status);
        }
        InterruptStatus::from_bits_retain(status)
    }

    fn read_config_generation(&self) -> u32 {
        self.r32(reg::CONFIG_GENERATION)
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T> {
        let mut value = T::new_zeroed();
        let bytes = value.as_mut_bytes();
        let base = reg::CONFIG + offset as u64;
        match bytes.len() {
            1 | 2 | 4 => {
                let v = self.bus.read(base, bytes.len() as u8).to_le_bytes();
                let n = bytes.len();
                bytes.copy_from_slice(&v[..n]);
            }
            _ => {
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = self.bus.read(base + i as u64, 1) as u8;
                }
            }
        }
        Ok(value)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<()> {
        let bytes = value.as_bytes();
        let base = reg::CONFIG + offset as u64;
        match bytes.len() {
            1 | 2 | 4 => {
                let mut v = [0u8; 8];
                v[..bytes.len()].copy_from_slice(bytes);
                self.bus
                    .write(base, bytes.len() as u8, u64::from_le_bytes(v));
            }
            _ => {
                for (i, b) in bytes.iter().enumerate() {
                    self.bus.write(base + i as u64, 1, *b as u64);
                }
            }
        }
        Ok(())
    }
}
