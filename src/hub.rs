//! The hub: routes each trapped register access (guest, address) to the one
//! virtio-mmio device instance that owns that window, and reports which
//! guest interrupts to raise. Adapters call it; it knows no hypervisor.
#![forbid(unsafe_code)]

use crate::virtio::{GuestMemory, MmioDevice};
use alloc::string::String;
use alloc::vec::Vec;

/// One trapped access, as any adapter describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trap {
    /// Guest (Xen domid; 0 for the loopback frontend).
    pub guest: u16,
    /// The guest vCPU that made the access.
    pub vcpu: u32,
    /// Guest-physical address.
    pub addr: u64,
    /// Access width in bytes.
    pub size: u8,
    /// Store (true) or load.
    pub write: bool,
    /// Value stored (writes).
    pub data: u64,
}

/// A device instance in a guest's address space.
pub struct Slot {
    /// Owning guest.
    pub guest: u16,
    /// MMIO window base.
    pub base: u64,
    /// Window size.
    pub size: u64,
    /// The guest interrupt (SPI INTID) to raise.
    pub irq: u32,
    /// What backs it, for status lines.
    pub label: String,
    /// The device.
    pub device: MmioDevice,
    /// Register accesses served.
    pub traps: u64,
}

/// Why a device could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum HubError {
    /// The window overlaps another of the same guest.
    Overlap { guest: u16, base: u64 },
    /// The window is empty or wraps.
    BadWindow { base: u64, size: u64 },
}

/// All served devices.
#[derive(Default)]
pub struct Hub {
    slots: Vec<Slot>,
    unclaimed: u64,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a device at `[base, base+size)` in `guest`, raising `irq`.
    pub fn add(
        &mut self,
        guest: u16,
        base: u64,
        size: u64,
        irq: u32,
        label: String,
        device: MmioDevice,
    ) -> Result<(), HubError> {
        let end = base
            .checked_add(size)
            .filter(|_| size > 0)
            .ok_or(HubError::BadWindow { base, size })?;
        if self
            .slots
            .iter()
            .any(|s| s.guest == guest && s.base < end && base < s.base + s.size)
        {
            return Err(HubError::Overlap { guest, base });
        }
        self.slots.push(Slot {
            guest,
            base,
            size,
            irq,
            label,
            device,
            traps: 0,
        });
        Ok(())
    }

    /// Serves one access. Returns the value for loads (0 for stores) and
    /// calls `raise(guest, irq)` for each device that has a new notification.
    pub fn handle(
        &mut self,
        trap: &Trap,
        mem: &mut dyn GuestMemory,
        raise: &mut dyn FnMut(u16, u32),
    ) -> u64 {
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.guest == trap.guest && trap.addr >= s.base && trap.addr - s.base < s.size)
        else {
            self.unclaimed += 1;
            if self.unclaimed.is_power_of_two() {
                log::warn!(
                    "hub: guest {} accessed {:#x}, which no device claims ({} such accesses)",
                    trap.guest,
                    trap.addr,
                    self.unclaimed
                );
            }
            return 0;
        };
        slot.traps += 1;
        let offset = trap.addr - slot.base;
        let value = if trap.write {
            slot.device.write(offset, trap.size, trap.data, mem);
            0
        } else {
            slot.device.read(offset, trap.size, mem)
        };
        if slot.device.take_interrupt_edge() {
            raise(slot.guest, slot.irq);
        }
        value
    }

    /// Lets every device of `guest` make progress on its own (received
    /// frames, console input), raising interrupts as needed.
    pub fn poll(&mut self, guest: u16, mem: &mut dyn GuestMemory, raise: &mut dyn FnMut(u16, u32)) {
        for slot in self.slots.iter_mut().filter(|s| s.guest == guest) {
            slot.device.poll(mem);
            if slot.device.take_interrupt_edge() {
                raise(slot.guest, slot.irq);
            }
        }
    }

    /// Resets every device of a guest that went away.
    pub fn reset_guest(&mut self, guest: u16) {
        for slot in self.slots.iter_mut().filter(|s| s.guest == guest) {
            slot.device.reset();
        }
    }

    /// The guests that have devices, each once, in order of first device.
    pub fn guests(&self) -> Vec<u16> {
        let mut g: Vec<u16> = Vec::new();
        for s in &self.slots {
            if !g.contains(&s.guest) {
                g.push(s.guest);
            }
        }
        g
    }

    /// MMIO windows of `guest`.
    pub fn windows(&self, guest: u16) -> Vec<(u64, u64)> {
        self.slots
            .iter()
            .filter(|s| s.guest == guest)
            .map(|s| (s.base, s.size))
            .collect()
    }

    /// Every slot, for status reports.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }
}
