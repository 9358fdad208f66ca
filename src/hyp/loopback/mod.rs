//! The loopback adapter: no hypervisor. An in-image frontend (the
//! `virtio-drivers` crate) reaches the device core through [`TrapTransport`],
//! whose every register access becomes a [`Trap`] handed to the hub exactly
//! as a hypervisor's would be; "guest memory" is our own heap.
#[cfg(target_os = "none")]
pub mod memory;
pub mod transport;

use crate::hub::{Hub, Trap};
use crate::virtio::GuestMemory;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
pub use transport::{RegisterBus, TrapTransport};

/// Guest id of the in-image frontend.
pub const GUEST: u16 = 0;

/// Shared state of the loopback: the hub, guest 0's memory, and a count of
/// interrupts the devices raised.
pub struct Loopback {
    hub: Rc<RefCell<Hub>>,
    mem: Rc<RefCell<dyn GuestMemory>>,
    interrupts: Rc<Cell<u64>>,
}

impl Loopback {
    /// Wraps a hub and the loopback guest's memory.
    pub fn new(hub: Hub, mem: Rc<RefCell<dyn GuestMemory>>) -> Self {
        Self {
            hub: Rc::new(RefCell::new(hub)),
            mem,
            interrupts: Rc::new(Cell::new(0)),
        }
    }

    /// A register bus for the device window at `base`.
    pub fn bus(&self, base: u64) -> HubBus {
        HubBus {
            hub: self.hub.clone(),
            mem: self.mem.clone(),
            interrupts: self.interrupts.clone(),
            base,
        }
    }

    /// Interrupts raised so far.
    pub fn interrupts(&self) -> u64 {
        self.interrupts.get()
    }

    /// The hub (status reports).
    pub fn hub(&self) -> core::cell::Ref<'_, Hub> {
        self.hub.borrow()
    }

    /// Lets the devices make progress on their own (received frames).
    pub fn poll(&self) {
        let mut hub = self.hub.borrow_mut();
        let mut mem = self.mem.borrow_mut();
        let irqs = &self.interrupts;
        hub.poll(GUEST, &mut *mem, &mut |_, _| irqs.set(irqs.get() + 1));
    }
}

/// One device window's registers, served by the hub.
pub struct HubBus {
    hub: Rc<RefCell<Hub>>,
    mem: Rc<RefCell<dyn GuestMemory>>,
    interrupts: Rc<Cell<u64>>,
    base: u64,
}

impl HubBus {
    fn access(&self, offset: u64, size: u8, write: bool, data: u64) -> u64 {
        let trap = Trap {
            guest: GUEST,
            vcpu: 0,
            addr: self.base + offset,
            size,
            write,
            data,
        };
        let mut hub = self.hub.borrow_mut();
        let mut mem = self.mem.borrow_mut();
        let irqs = &self.interrupts;
        hub.handle(&trap, &mut *mem, &mut |_, _| irqs.set(irqs.get() + 1))
    }
}

impl RegisterBus for HubBus {
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.access(offset, size, false, 0)
    }

    fn write(&self, offset: u64, size: u8, value: u64) {
        self.access(offset, size, true, value);
    }
}
