//! Test support: the `virtio-drivers` crate as a frontend for our devices.
//!
//! The driver's DMA memory must be host memory it can point into, while our
//! device sees guest memory only through [`HostMemory`]. Rather than alias the
//! two (which Rust's aliasing rules forbid), each DMA allocation is a host
//! buffer shadowed by a range of one HostMemory region: the shadow is copied
//! into HostMemory before every device call and back afterwards. Buffers the
//! driver shares (`Hal::share`) are bounced through HostMemory the same way
//! virtio-drivers expects from an IOMMU-less HAL with bounce buffers. All of
//! this is per test thread.
#![allow(dead_code)]

pub mod rings;

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use backplane::virtio::{GuestMemory, HostMemory, MmioDevice, VirtioDevice};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Guest-physical base of the frontend's memory.
pub const GUEST_BASE: u64 = 0x4000_0000;
/// Size of the frontend's memory.
pub const GUEST_SIZE: usize = 32 << 20;

struct Alloc {
    paddr: u64,
    len: usize,
    /// Host shadow of a DMA allocation (None for bounce buffers).
    shadow: Option<NonNull<u8>>,
}

/// Everything the frontend shares with the device on this thread.
pub struct World {
    /// Guest memory as the device sees it.
    pub mem: HostMemory,
    allocs: Vec<Alloc>,
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(World {
        mem: HostMemory::with_region(GUEST_BASE, GUEST_SIZE),
        allocs: Vec::new(),
    });
}

impl World {
    fn allocate(&mut self, len: usize) -> u64 {
        let len = len.max(1).next_multiple_of(PAGE_SIZE) as u64;
        self.allocs.sort_by_key(|a| a.paddr);
        let mut candidate = GUEST_BASE;
        for a in &self.allocs {
            if candidate + len <= a.paddr {
                break;
            }
            candidate = candidate.max(a.paddr + (a.len.next_multiple_of(PAGE_SIZE)) as u64);
        }
        assert!(
            candidate + len <= GUEST_BASE + GUEST_SIZE as u64,
            "test guest memory exhausted"
        );
        candidate
    }

    /// Copies driver-side DMA shadows into guest memory.
    fn sync_in(&mut self) {
        for a in &self.allocs {
            if let Some(p) = a.shadow {
                // SAFETY: `p` is a live allocation of `a.len` bytes made by
                // `dma_alloc`; the driver is not running while we copy.
                let src = unsafe { std::slice::from_raw_parts(p.as_ptr(), a.len) };
                self.mem.write(a.paddr, src).unwrap();
            }
        }
    }

    /// Copies guest memory back into the driver-side DMA shadows.
    fn sync_out(&mut self) {
        for a in &self.allocs {
            if let Some(p) = a.shadow {
                // SAFETY: as in `sync_in`; no reference to the shadow exists.
                let dst = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), a.len) };
                self.mem.read(a.paddr, dst).unwrap();
            }
        }
    }
}

/// Runs `f` on this thread's guest memory with the driver's view synced in
/// and out around it.
pub fn with_mem<R>(f: impl FnOnce(&mut HostMemory) -> R) -> R {
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        w.sync_in();
        let r = f(&mut w.mem);
        w.sync_out();
        r
    })
}

/// The HAL virtio-drivers uses in these tests.
pub struct TestHal;

// SAFETY: dma_alloc returns zeroed, page-aligned, exclusively owned memory
// whose paddr the device sees (through the shadow copy); share returns a
// bounce range holding the buffer's contents, copied back by unshare.
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let len = pages * PAGE_SIZE;
        let layout = Layout::from_size_align(len, PAGE_SIZE).unwrap();
        // SAFETY: the layout has non-zero size.
        let host = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("host allocation");
        WORLD.with(|w| {
            let mut w = w.borrow_mut();
            let paddr = w.allocate(len);
            w.mem.write(paddr, &vec![0; len]).unwrap();
            w.allocs.push(Alloc {
                paddr,
                len,
                shadow: Some(host),
            });
            (paddr, host)
        })
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        WORLD.with(|w| w.borrow_mut().allocs.retain(|a| a.paddr != paddr));
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: allocated in dma_alloc with this layout.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("no PCI BARs in these tests")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        // SAFETY: the caller guarantees the buffer is valid for reads.
        let data = unsafe { std::slice::from_raw_parts(buffer.as_ptr() as *const u8, len) };
        WORLD.with(|w| {
            let mut w = w.borrow_mut();
            let paddr = w.allocate(len);
            w.mem.write(paddr, data).unwrap();
            w.allocs.push(Alloc {
                paddr,
                len,
                shadow: None,
            });
            paddr
        })
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let len = buffer.len();
        WORLD.with(|w| {
            let mut w = w.borrow_mut();
            if direction != BufferDirection::DriverToDevice {
                // SAFETY: the caller guarantees the buffer is valid for writes
                // and not otherwise borrowed for the duration of unshare.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(buffer.as_ptr() as *mut u8, len) };
                w.mem.read(paddr, dst).unwrap();
            }
            w.allocs.retain(|a| a.paddr != paddr);
        });
    }
}

/// A shared handle on a device under test.
pub type Dev = Rc<RefCell<MmioDevice>>;

/// Wraps a device model for a test.
pub fn device(model: impl VirtioDevice + 'static) -> Dev {
    Rc::new(RefCell::new(MmioDevice::new(Box::new(model))))
}

/// Register read through the device, with memory synced.
pub fn reg_read(dev: &Dev, offset: u64, size: u8) -> u64 {
    with_mem(|m| dev.borrow_mut().read(offset, size, m))
}

/// Register write through the device, with memory synced.
pub fn reg_write(dev: &Dev, offset: u64, size: u8, value: u64) {
    with_mem(|m| dev.borrow_mut().write(offset, size, value, m))
}

/// Service-loop poll, with memory synced.
pub fn poll(dev: &Dev) {
    with_mem(|m| dev.borrow_mut().poll(m))
}

/// virtio-drivers `Transport` over our register file.
pub struct TestTransport {
    pub dev: Dev,
}

impl TestTransport {
    /// A transport for `dev`.
    pub fn new(dev: &Dev) -> Self {
        Self { dev: dev.clone() }
    }

    fn r(&self, off: u64) -> u32 {
        reg_read(&self.dev, off, 4) as u32
    }

    fn w(&self, off: u64, v: u32) {
        reg_write(&self.dev, off, 4, u64::from(v));
    }
}

/// Splits a config access into naturally aligned 4/2/1-byte pieces.
fn pieces(offset: usize, len: usize) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let (mut at, end) = (offset, offset + len);
    while at < end {
        let n = if at % 4 == 0 && end - at >= 4 {
            4
        } else if at % 2 == 0 && end - at >= 2 {
            2
        } else {
            1
        };
        out.push((at, n as u8));
        at += n;
    }
    out
}

impl Transport for TestTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::try_from(self.r(0x008)).unwrap()
    }

    fn read_device_features(&mut self) -> u64 {
        self.w(0x014, 0);
        let lo = self.r(0x010);
        self.w(0x014, 1);
        let hi = self.r(0x010);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.w(0x024, 0);
        self.w(0x020, driver_features as u32);
        self.w(0x024, 1);
        self.w(0x020, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.w(0x030, u32::from(queue));
        self.r(0x034)
    }

    fn notify(&mut self, queue: u16) {
        self.w(0x050, u32::from(queue));
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(self.r(0x070))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.w(0x070, status.bits());
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.w(0x028, guest_page_size);
    }

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
        self.w(0x030, u32::from(queue));
        self.w(0x038, size);
        self.w(0x080, descriptors as u32);
        self.w(0x084, (descriptors >> 32) as u32);
        self.w(0x090, driver_area as u32);
        self.w(0x094, (driver_area >> 32) as u32);
        self.w(0x0a0, device_area as u32);
        self.w(0x0a4, (device_area >> 32) as u32);
        self.w(0x044, 1);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.w(0x030, u32::from(queue));
        self.w(0x044, 0);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.w(0x030, u32::from(queue));
        self.r(0x044) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let s = self.r(0x060);
        if s != 0 {
            self.w(0x064, s);
        }
        InterruptStatus::from_bits_retain(s)
    }

    fn read_config_generation(&self) -> u32 {
        self.r(0x0fc)
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let mut bytes = vec![0u8; size_of::<T>()];
        for (at, n) in pieces(offset, bytes.len()) {
            let v = reg_read(&self.dev, 0x100 + at as u64, n);
            let i = at - offset;
            bytes[i..i + n as usize].copy_from_slice(&v.to_le_bytes()[..n as usize]);
        }
        Ok(T::read_from_bytes(&bytes).unwrap())
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        let bytes = value.as_bytes();
        for (at, n) in pieces(offset, bytes.len()) {
            let i = at - offset;
            let mut v = [0u8; 8];
            v[..n as usize].copy_from_slice(&bytes[i..i + n as usize]);
            reg_write(&self.dev, 0x100 + at as u64, n, u64::from_le_bytes(v));
        }
        Ok(())
    }
}
