//! The loopback guest's memory: a range of our own RAM (the heap, where the
//! in-image frontend's DMA buffers live), accessed by bounded copies.
use crate::virtio::memory::{GuestMemory, MemError, range_end};

/// Our own RAM in `[base, base+size)`, as guest 0's memory.
pub struct OwnMemory {
    base: u64,
    size: u64,
}

impl OwnMemory {
    /// # Safety
    /// `[base, base+size)` must be mapped normal memory of this image for the
    /// rest of the run (the heap), so copies to and from it are sound.
    pub unsafe fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    fn check(&self, addr: u64, len: usize) -> Result<(), MemError> {
        let end = range_end(addr, len as u64)?;
        if addr < self.base || end > self.base + self.size {
            return Err(MemError::OutOfRange {
                addr,
                len: len as u64,
            });
        }
        Ok(())
    }
}

impl GuestMemory for OwnMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(addr, buf.len())?;
        // SAFETY: the range is inside the region `new` vouched for; the
        // frontend and the device share it as a guest and device would, and
        // a byte copy cannot break any Rust invariant of the frontend's
        // (plain byte) buffers.
        unsafe { core::ptr::copy(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        self.check(addr, data.len())?;
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy(data.as_ptr(), addr as *mut u8, data.len()) };
        Ok(())
    }

    fn check_range(&mut self, addr: u64, len: u64) -> Result<(), MemError> {
        let end = range_end(addr, len)?;
        if len > 0 && (addr < self.base || end > self.base + self.size) {
            return Err(MemError::OutOfRange { addr, len });
        }
        Ok(())
    }

    fn lend_mut(
        &mut self,
        addr: u64,
        len: usize,
        f: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, MemError> {
        self.check(addr, len)?;
        if len == 0 {
            return Ok(false);
        }
        // SAFETY: the range is inside the region `new` vouched for. It is a
        // buffer the frontend shared with the device (Hal::share) for this
        // request and does not touch until the request completes, which
        // happens after `f` returns: the slice is the only live access.
        let s = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
        f(s);
        Ok(true)
    }
}
