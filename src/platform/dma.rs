//! DMA for the `virtio-drivers` crate's drivers of the real devices we own:
//! buffers come from our heap and the identity map makes physical ==
//! virtual, so sharing a buffer is naming its address.
use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// The identity-map `Hal`.
pub struct IdentityHal;

fn layout(pages: usize) -> Layout {
    Layout::from_size_align(pages.max(1) * PAGE_SIZE, PAGE_SIZE).expect("page layout")
}

// SAFETY: dma_alloc returns zeroed, page-aligned memory owned by the caller
// until dma_dealloc; physical and virtual addresses are equal under our
// identity map, and RAM is normal cacheable memory that QEMU's (coherent)
// devices see as we do.
unsafe impl Hal for IdentityHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout has non-zero size.
        let ptr = unsafe { alloc_zeroed(layout(pages)) };
        let ptr = NonNull::new(ptr).expect("out of memory for DMA buffers");
        (ptr.as_ptr() as PhysAddr, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: vaddr came from dma_alloc with the same page count.
        unsafe { dealloc(vaddr.as_ptr(), layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("MMIO at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// A virtio-mmio transport over a window the device tree names.
///
/// Returns `None` when the window holds no device (QEMU leaves unused
/// transports with device ID 0) or is not virtio.
pub fn mmio_transport(base: u64, size: u64) -> Option<MmioTransport<'static>> {
    let header = NonNull::new(base as *mut VirtIOHeader)?;
    // SAFETY: the device tree names [base, base+size) as a virtio,mmio
    // window; it is mapped as device memory and owned by this transport only
    // (each node is probed once).
    unsafe { MmioTransport::new(header, size as usize) }.ok()
}
