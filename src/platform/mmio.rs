//! MMIO accessors. Plain `ldr`/`str` with a base register and no writeback,
//! so a hypervisor that traps the access gets a valid syndrome; never
//! `read_volatile` on device memory (the compiler may pick other forms).
use core::arch::asm;

/// A device register window that the device tree (or the board) declared.
#[derive(Clone, Copy, Debug)]
pub struct MmioRegion {
    base: usize,
    size: usize,
}

impl MmioRegion {
    /// # Safety
    /// `[base, base+size)` must be a device's register window, mapped as
    /// device memory (or the MMU off), and not used as ordinary memory.
    pub const unsafe fn new(base: usize, size: usize) -> Self {
        Self { base, size }
    }

    /// Base physical (= virtual) address.
    pub fn base(&self) -> usize {
        self.base
    }

    fn check(&self, offset: usize, width: usize) -> usize {
        assert!(
            offset.is_multiple_of(width) && offset + width <= self.size,
            "MMIO offset {offset:#x} outside window"
        );
        self.base + offset
    }

    /// 32-bit read at `offset`.
    pub fn read32(&self, offset: usize) -> u32 {
        let addr = self.check(offset, 4);
        let v: u32;
        // SAFETY: `new`'s contract: the address is inside a device window.
        unsafe {
            asm!("ldr {0:w}, [{1}]", out(reg) v, in(reg) addr, options(nostack, preserves_flags))
        };
        v
    }

    /// 32-bit write at `offset`.
    pub fn write32(&self, offset: usize, value: u32) {
        let addr = self.check(offset, 4);
        // SAFETY: `new`'s contract: the address is inside a device window.
        unsafe {
            asm!("str {0:w}, [{1}]", in(reg) value, in(reg) addr, options(nostack, preserves_flags))
        };
    }

    /// 64-bit write at `offset`.
    pub fn write64(&self, offset: usize, value: u64) {
        let addr = self.check(offset, 8);
        // SAFETY: `new`'s contract: the address is inside a device window.
        unsafe {
            asm!("str {0}, [{1}]", in(reg) value, in(reg) addr, options(nostack, preserves_flags))
        };
    }
}
