//! The heap: `linked_list_allocator` over a region of RAM that holds neither
//! the image, nor the device tree, nor reserved memory.
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Gives `[start, start+size)` to the allocator.
///
/// # Safety
/// The range must be normal memory owned by nobody else for the rest of the run.
pub unsafe fn init(start: usize, size: usize) {
    // SAFETY: forwarded to the caller.
    unsafe { HEAP.lock().init(start as *mut u8, size) };
}

/// Bytes in use and total.
pub fn usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.used(), h.size())
}

/// Chooses a heap region: 1/16 of RAM clamped to 2..16 MiB, in the RAM bank
/// that holds the image, above the image and clear of `avoid` ranges.
pub fn choose(ram: &[(u64, u64)], image: (u64, u64), avoid: &[(u64, u64)]) -> Option<(u64, u64)> {
    let total: u64 = ram.iter().map(|r| r.1).sum();
    let size = (total / 16).clamp(2 << 20, 16 << 20);
    let bank = ram.iter().find(|(b, s)| image.0 >= *b && image.0 < b + s)?;
    let mut start = (image.1 + 0xffff) & !0xffff;
    loop {
        let end = start + size;
        if end > bank.0 + bank.1 {
            return None;
        }
        match avoid.iter().find(|(b, s)| *b < end && start < b + s) {
            Some((b, s)) => start = (b + s + 0xffff) & !0xffff,
            None => return Some((start, size)),
        }
    }
}
