//! The guest's own grant table (xen.md §7) and a virtio-drivers `Hal` that hands the device
//! grant addresses, `(1 << 63) | (ref << 12) | offset`, instead of guest-physical ones.
//!
//! Refs come from a bump allocator and are never reused: a page the backend still has mapped
//! cannot be revoked (Xen keeps `GTF_reading`/`GTF_writing` set), so reusing its ref would be
//! wrong; the test is short enough that leaking refs is harmless.

use core::arch::asm;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicUsize, Ordering};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

const PAGE: usize = 4096;
/// Grant frames mapped (512 entries each).
pub const FRAMES: usize = 4;
const ENTRIES: u32 = (FRAMES * PAGE / 8) as u32;
/// Refs 0..8 are reserved by convention (console, xenstore).
const FIRST_REF: u32 = 8;
/// A ref inside the table that is never granted (flags stay 0): hostile case (a).
pub const NEVER_GRANTED: u32 = ENTRIES - 1;
const GRANT_ADDR: u64 = 1 << 63;

const GTF_PERMIT_ACCESS: u16 = 1;
const GTF_READONLY: u16 = 1 << 2;
const GTF_READING: u16 = 1 << 3;
const GTF_WRITING: u16 = 1 << 4;

const HYPERVISOR_MEMORY_OP: u64 = 12;
const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
const XENMAPSPACE_GRANT_TABLE: u32 = 1;
const DOMID_SELF: u16 = 0x7ff0;
/// The backend's domain.
const BACKEND: u16 = 0;

/// Grant table base (IPA == VA: identity map, Normal WB), set by [`init`].
static TABLE: AtomicUsize = AtomicUsize::new(0);
static NEXT_REF: AtomicU32 = AtomicU32::new(FIRST_REF);
/// Refs the backend still had mapped when the driver unshared them.
pub static BUSY_AT_REVOKE: AtomicU32 = AtomicU32::new(0);

/// What the next device-writable data buffer gets (the hostile cases).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Honest = 0,
    /// Case (a): its address names [`NEVER_GRANTED`].
    NeverGranted = 1,
    /// Case (c): granted read-only although the device must write it.
    ReadOnly = 2,
}

static MODE: AtomicU8 = AtomicU8::new(Mode::Honest as u8);

pub fn set_mode(m: Mode) {
    MODE.store(m as u8, Ordering::SeqCst);
}

#[repr(C)]
struct AddToPhysmap {
    domid: u16,
    size: u16,
    space: u32,
    idx: u64,
    gpfn: u64,
}

/// `HYPERVISOR_memory_op(cmd, arg)`: `hvc #0xEA1`, number in x16 (xen.md §1).
///
/// # Safety
/// `arg` must point to the structure `cmd` expects, valid for Xen to read and write.
unsafe fn memory_op(cmd: u64, arg: *mut u8) -> i64 {
    let ret: i64;
    // SAFETY: a Xen hypercall; the caller vouches for `arg`. Xen clobbers x16 and the
    // argument registers.
    unsafe {
        asm!("hvc #0xea1",
            inout("x0") cmd => ret,
            inout("x1") arg => _,
            inout("x16") HYPERVISOR_MEMORY_OP => _,
            options(nostack));
    }
    ret
}

/// Maps [`FRAMES`] grant frames at `base` (the `/hypervisor` node's `reg[0]`).
pub fn init(base: u64, size: u64) -> Result<(), i64> {
    if size < (FRAMES * PAGE) as u64 {
        return Err(-28);
    }
    for i in 0..FRAMES {
        let mut a = AddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_GRANT_TABLE,
            idx: i as u64,
            gpfn: (base >> 12) + i as u64,
        };
        // SAFETY: `a` is the add_to_physmap structure, on our (Normal WB) stack.
        let r = unsafe { memory_op(XENMEM_ADD_TO_PHYSMAP, (&raw mut a).cast()) };
        if r != 0 {
            return Err(r);
        }
    }
    TABLE.store(base as usize, Ordering::SeqCst);
    Ok(())
}

/// The flags half-word of entry `r` (`grant_entry_v1`: flags u16 @0, domid u16 @2, frame u32 @4).
fn flags(r: u32) -> &'static AtomicU16 {
    let p = TABLE.load(Ordering::Relaxed) + r as usize * 8;
    // SAFETY: `p` is inside the grant frames `init` mapped (r < ENTRIES), Normal WB, aligned,
    // and only ever accessed atomically by us (Xen uses atomics on it too).
    unsafe { &*(p as *const AtomicU16) }
}

fn grant(r: u32, gfn: u64, readonly: bool) {
    let p = TABLE.load(Ordering::Relaxed) + r as usize * 8;
    // SAFETY: entry `r` is inside the mapped table and not yet granted (flags 0), so Xen does
    // not read it until the flags store below.
    unsafe {
        ((p + 2) as *mut u16).write_volatile(BACKEND);
        ((p + 4) as *mut u32).write_volatile(gfn as u32);
    }
    let f = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
    // Release: domid and frame are visible before the flags that validate them.
    flags(r).store(f, Ordering::Release);
}

/// Ends access to entry `r` unless the backend has it mapped.
fn revoke(r: u32) {
    let f = flags(r);
    let mut cur = f.load(Ordering::Acquire);
    loop {
        if cur & (GTF_READING | GTF_WRITING) != 0 {
            BUSY_AT_REVOKE.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match f.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

/// Grants the pages of `[va, va + len)` under consecutive refs; returns the grant address.
fn grant_range(va: usize, len: usize, readonly: bool) -> PhysAddr {
    let first_page = va / PAGE;
    let pages = (va + len.max(1) - 1) / PAGE - first_page + 1;
    let r0 = NEXT_REF.fetch_add(pages as u32, Ordering::Relaxed);
    assert!(r0 + pages as u32 <= NEVER_GRANTED, "grant table full");
    for i in 0..pages {
        grant(r0 + i as u32, (first_page + i) as u64, readonly);
    }
    GRANT_ADDR | (u64::from(r0) << 12) | (va % PAGE) as u64
}

fn revoke_range(addr: PhysAddr, len: usize) {
    let r0 = ((addr & !GRANT_ADDR) >> 12) as u32;
    if r0 == NEVER_GRANTED {
        return;
    }
    let off = (addr % PAGE as u64) as usize;
    let pages = (off + len.max(1)).div_ceil(PAGE);
    for i in 0..pages {
        revoke(r0 + i as u32);
    }
}

/// Pages for virtqueues (never reused).
#[repr(C, align(4096))]
struct Pool([u8; POOL_PAGES * PAGE]);
const POOL_PAGES: usize = 32;
static mut POOL: Pool = Pool([0; POOL_PAGES * PAGE]);
static POOL_NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct GrantHal;

// SAFETY: dma_alloc returns zeroed, page-aligned, unaliased memory that stays valid (never
// reused); share/unshare grant exactly the buffer's pages and the addresses name them.
unsafe impl Hal for GrantHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let first = POOL_NEXT.fetch_add(pages, Ordering::Relaxed);
        assert!(first + pages <= POOL_PAGES, "DMA pool exhausted");
        // SAFETY: in bounds of POOL; each page is handed out once.
        let va = unsafe { (&raw mut POOL).cast::<u8>().add(first * PAGE) };
        // Rings are written by the device (used ring): grant them writable.
        let addr = grant_range(va as usize, pages * PAGE, false);
        (addr, NonNull::new(va).expect("pool is not null"))
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        revoke_range(paddr, pages * PAGE);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("MMIO is not at 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let va = buffer.cast::<u8>().as_ptr() as usize;
        let len = buffer.len();
        let mut readonly = direction == BufferDirection::DriverToDevice;
        // The hostile cases target the data buffer (not the 1-byte status).
        if direction == BufferDirection::DeviceToDriver && len >= 512 {
            match MODE.swap(Mode::Honest as u8, Ordering::SeqCst) {
                m if m == Mode::NeverGranted as u8 => {
                    return GRANT_ADDR | (u64::from(NEVER_GRANTED) << 12) | (va % PAGE) as u64;
                }
                m if m == Mode::ReadOnly as u8 => readonly = true,
                _ => {}
            }
        }
        grant_range(va, len, readonly)
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, _direction: BufferDirection) {
        revoke_range(paddr, buffer.len());
    }
}
