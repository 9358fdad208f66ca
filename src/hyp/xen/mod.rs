//! Xen adapter: Backplane as dom0 and IOREQ server for dom0less domUs.
//!
//! What it does, in the order the image calls it:
//! 1. [`Xen::init`]: check the Xen version, map the extended regions Normal WB, map
//!    shared_info and register our vcpu_info (event channels).
//! 2. [`Xen::add_guest`] per served domU: reserve IPA space, create and enable an IOREQ
//!    server for the guest's MMIO windows, bind its per-vCPU event channels, and set up a
//!    foreign-mapping view of its RAM. This must happen before the guest can probe its devices
//!    (an access to an unclaimed window is fatal to the guest, xen.md §13).
//! 3. [`Xen::service`] after every wake-up: drain event channels, answer every posted request
//!    through the hub's handler, let the hub poll devices and inject SPIs.
//!
//! Layering: [`abi`] (layouts), [`error`], [`hypercall`] (the `hvc` conduit, image only),
//! [`ops`] (the operations behind a trait, faked on the host), then the stateful parts
//! [`events`], [`ioreq`], [`memory`] and [`console`], and this file tying them together.
//! Everything except the conduit, the console and the set-up of shared_info is tested on the
//! host against [`ops::fake`].

pub mod abi;
pub mod console;
pub mod error;
pub mod events;
pub mod hypercall;
pub mod ioreq;
pub mod memory;
pub mod ops;
#[cfg(target_os = "none")]
pub mod selfcheck;

#[cfg(target_os = "none")]
pub use console::{console_read, console_write};
pub use error::{GrantStatus, XenError};
pub use events::Events;
pub use hypercall::Hvc;
pub use ioreq::{IoreqServer, MmioAccess};
pub use memory::XenGuestMemory;
pub use ops::XenOps;

use crate::virtio::memory::GuestMemory;
use abi::{PAGE_SHIFT, PAGE_SIZE};
use memory::CHUNK_SIZE;

/// Most guests served at once.
pub const MAX_GUESTS: usize = 8;
/// Grant pages cached per guest.
const GRANT_PAGES: usize = 16;
/// Smallest foreign-mapping window worth having (in 2 MiB chunks).
const MIN_CHUNKS: usize = 4;

/// What the device tree's `/hypervisor` node says (xen.md §10).
#[derive(Clone, Debug, Default)]
pub struct HypervisorInfo {
    /// `reg`: entry 0 is the grant-table window, entries 1.. are extended regions.
    pub regions: heapless::Vec<(u64, u64), 8>,
    /// The event-channel upcall PPI (INTID, 16..31) from `interrupts`.
    pub evtchn_ppi: u32,
}

impl HypervisorInfo {
    /// From the `/hypervisor` node's `reg` pairs and upcall INTID (entries past 8 are dropped).
    pub fn new(regions: &[(u64, u64)], evtchn_ppi: u32) -> Self {
        let mut r = heapless::Vec::new();
        for &pair in regions {
            if r.push(pair).is_err() {
                log::warn!("xen: more than 8 /hypervisor reg entries; ignoring the rest");
                break;
            }
        }
        HypervisorInfo {
            regions: r,
            evtchn_ppi,
        }
    }
}

/// A bump allocator of unused IPA space over the extended regions: single pages from the top
/// of a region downwards, aligned windows from the bottom upwards, so neither fragments the
/// other. Nothing is freed except by [`IpaAllocator::rollback`] to a [`IpaAllocator::mark`].
#[derive(Clone, Debug, Default)]
pub struct IpaAllocator {
    /// `(low, high)`: free space is `[low, high)`.
    free: heapless::Vec<(u64, u64), 8>,
}

impl IpaAllocator {
    /// Space from `regions` (`(base, size)`), trimmed to whole pages.
    pub fn new(regions: &[(u64, u64)]) -> Self {
        let mut free = heapless::Vec::new();
        for &(base, size) in regions {
            let lo = base
                .checked_add(PAGE_SIZE - 1)
                .map(|v| v & !(PAGE_SIZE - 1));
            let hi = base.checked_add(size).map(|v| v & !(PAGE_SIZE - 1));
            if let (Some(lo), Some(hi)) = (lo, hi)
                && lo < hi
            {
                let _ = free.push((lo, hi));
            }
        }
        IpaAllocator { free }
    }

    /// One free page's frame number.
    pub fn page(&mut self) -> Option<u64> {
        self.pages(1).map(|a| a >> PAGE_SHIFT)
    }

    /// `n` contiguous free pages; returns the first IPA.
    pub fn pages(&mut self, n: u64) -> Option<u64> {
        let len = n.checked_mul(PAGE_SIZE)?;
        let r = self.free.iter_mut().find(|(lo, hi)| hi - lo >= len)?;
        r.1 -= len;
        Some(r.1)
    }

    /// `size` bytes aligned to `align` (a power of two); returns the IPA.
    pub fn aligned(&mut self, size: u64, align: u64) -> Option<u64> {
        for r in self.free.iter_mut() {
            let Some(start) = r.0.checked_add(align - 1).map(|v| v & !(align - 1)) else {
                continue;
            };
            if start.checked_add(size).is_some_and(|end| end <= r.1) {
                r.0 = start + size;
                return Some(start);
            }
        }
        None
    }

    /// A snapshot to undo a failed set-up.
    pub fn mark(&self) -> IpaAllocator {
        self.clone()
    }

    /// Returns to a snapshot taken with [`IpaAllocator::mark`].
    pub fn rollback(&mut self, mark: IpaAllocator) {
        *self = mark;
    }

    /// Free bytes left.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|(lo, hi)| hi - lo).sum()
    }
}

/// The hub's request handler for [`Xen::service`]: `(domid, access, guest memory) -> value`
/// (the value answers reads; ignored for writes).
pub type Handler<'a> = dyn FnMut(u16, &MmioAccess, &mut dyn GuestMemory) -> u64 + 'a;

/// The hub's per-guest poll for [`Xen::service`]: `(domid, guest memory, inject(spi))`.
pub type AfterService<'a> = dyn FnMut(u16, &mut dyn GuestMemory, &mut dyn FnMut(u32)) + 'a;

/// A served guest, as [`Xen::add_guest`] returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestHandle(pub usize);

struct Guest<H: XenOps> {
    domid: u16,
    server: IoreqServer<H>,
    mem: XenGuestMemory<H>,
}

/// The Xen adapter.
pub struct Xen<H: XenOps + Clone> {
    hv: H,
    ipa: IpaAllocator,
    events: Events<H>,
    evtchn_ppi: u32,
    guests: heapless::Vec<Option<Guest<H>>, MAX_GUESTS>,
    /// `Some(false)` once a create answered ENOSYS.
    ioreq_available: Option<bool>,
}

#[cfg(target_os = "none")]
impl Xen<Hvc> {
    /// Brings the adapter up: version check (logged), `map_normal(base, size)` over every
    /// extended region (identity, Normal WB, so shared_info, ioreq, foreign and grant pages
    /// can be touched; `crate::arch::aarch64::mmu::map_normal` fits), then shared_info and
    /// vcpu_info for event channels.
    pub fn init<E: core::fmt::Debug>(
        info: &HypervisorInfo,
        mut map_normal: impl FnMut(u64, u64) -> Result<(), E>,
    ) -> Result<Self, XenError> {
        let (major, minor) = hypercall::xen_version()?;
        let extra = hypercall::xen_extraversion().unwrap_or([0; 16]);
        let n = extra.iter().position(|&b| b == 0).unwrap_or(16);
        let extra = core::str::from_utf8(&extra[..n]).unwrap_or("");
        log::info!(
            "xen: Xen {major}.{minor}{extra}, upcall PPI {}",
            info.evtchn_ppi
        );
        if (major, minor) < (4, 17) {
            log::warn!("xen: Backplane is written against Xen 4.17-4.20");
        }
        let ext = info.regions.get(1..).unwrap_or(&[]);
        if ext.is_empty() {
            log::error!("xen: no extended regions in /hypervisor reg (ext_regions=no?)");
            return Err(XenError::ENOMEM);
        }
        // Only regions we could map are handed out.
        let mut usable: heapless::Vec<(u64, u64), 8> = heapless::Vec::new();
        for &(base, size) in ext {
            match map_normal(base, size) {
                Ok(()) => {
                    log::debug!("xen: extended region {base:#x}+{size:#x}");
                    let _ = usable.push((base, size));
                }
                Err(e) => log::warn!("xen: cannot map extended region {base:#x}+{size:#x}: {e:?}"),
            }
        }
        let mut ipa = IpaAllocator::new(&usable);
        let shared = ipa.page().ok_or(XenError::ENOMEM)?;
        // SAFETY: `shared` is a page of an extended region (unused IPA space) that we just
        // mapped Normal WB and hand out to nothing else; init runs once.
        let events = unsafe { Events::init(shared) }?;
        Ok(Self::with_parts(Hvc, ipa, events, info.evtchn_ppi))
    }
}

impl<H: XenOps + Clone> Xen<H> {
    /// An adapter over already set-up parts (used by `init`, and by host tests with a fake).
    pub fn with_parts(hv: H, ipa: IpaAllocator, events: Events<H>, evtchn_ppi: u32) -> Self {
        Xen {
            hv,
            ipa,
            events,
            evtchn_ppi,
            guests: heapless::Vec::new(),
            ioreq_available: None,
        }
    }

    /// The upcall PPI the lead's GIC code must enable (and acknowledge/EOI after each wake-up).
    pub fn evtchn_ppi(&self) -> u32 {
        self.evtchn_ppi
    }

    /// Cheap check: has Xen flagged an event since the last [`Xen::service`]?
    pub fn upcall_pending(&self) -> bool {
        self.events.upcall_pending()
    }

    /// `Some(false)` if this Xen has no IOREQ server support; `None` until a guest was added.
    pub fn ioreq_available(&self) -> Option<bool> {
        self.ioreq_available
    }

    /// The event-channel state (for binding e.g. `VIRQ_CONSOLE`).
    pub fn events(&mut self) -> &mut Events<H> {
        &mut self.events
    }

    /// Serves guest `domid`: its RAM is `ram_banks` and its virtio-mmio windows are `windows`
    /// (`(base, size)` each). Returns `XenError::ENOSYS` if this Xen cannot (no
    /// `CONFIG_IOREQ_SERVER`), after logging it once; the caller keeps running.
    pub fn add_guest(
        &mut self,
        domid: u16,
        ram_banks: &[(u64, u64)],
        windows: &[(u64, u64)],
    ) -> Result<GuestHandle, XenError> {
        if self.ioreq_available == Some(false) {
            return Err(XenError::ENOSYS);
        }
        let slot = match self.guests.iter().position(Option::is_none) {
            Some(i) => i,
            None if !self.guests.is_full() => {
                let _ = self.guests.push(None);
                self.guests.len() - 1
            }
            None => return Err(XenError::E2BIG),
        };
        let mark = self.ipa.mark();
        let r = self.try_add_guest(domid, ram_banks, windows);
        match r {
            Ok(g) => {
                self.ioreq_available = Some(true);
                self.guests[slot] = Some(g);
                log::info!("xen: serving dom{domid}: {} window(s)", windows.len());
                Ok(GuestHandle(slot))
            }
            Err(e) => {
                self.ipa.rollback(mark);
                if e == XenError::ENOSYS {
                    self.ioreq_available = Some(false);
                    log::error!(
                        "xen: this Xen has no IOREQ server support (CONFIG_IOREQ_SERVER); \
                         guests' virtio devices are not served"
                    );
                } else {
                    log::error!("xen: cannot serve dom{domid}: {e}");
                }
                Err(e)
            }
        }
    }

    fn try_add_guest(
        &mut self,
        domid: u16,
        ram_banks: &[(u64, u64)],
        windows: &[(u64, u64)],
    ) -> Result<Guest<H>, XenError> {
        let ram: u64 = ram_banks.iter().map(|&(_, s)| s).sum();
        let want = (ram.div_ceil(CHUNK_SIZE) as usize).clamp(MIN_CHUNKS, memory::MAX_CHUNKS);
        let mut chunks = want;
        let window = loop {
            if let Some(w) = self.ipa.aligned(chunks as u64 * CHUNK_SIZE, CHUNK_SIZE) {
                break w;
            }
            if chunks <= MIN_CHUNKS {
                log::error!("xen: extended regions exhausted");
                return Err(XenError::ENOMEM);
            }
            chunks /= 2;
        };
        let grants = self.ipa.pages(GRANT_PAGES as u64).ok_or(XenError::ENOMEM)?;
        let ioreq_gfn = self.ipa.page().ok_or(XenError::ENOMEM)?;
        // SAFETY: the window and grant pages are fresh extended-region space, mapped Normal
        // WB by `init`, owned by this guest from now on.
        let mem = unsafe {
            XenGuestMemory::new(
                self.hv.clone(),
                domid,
                ram_banks,
                window,
                chunks,
                grants,
                GRANT_PAGES,
            )
        }?;
        // SAFETY: as above, for the ioreq page.
        let server = unsafe { IoreqServer::create(self.hv.clone(), domid, ioreq_gfn, windows) }?;
        Ok(Guest { domid, server, mem })
    }

    /// Stops serving a guest: destroys its server and unmaps its memory. Its IPA space is not
    /// reused (bump allocator).
    pub fn remove_guest(&mut self, g: GuestHandle) -> Result<(), XenError> {
        let guest = self
            .guests
            .get_mut(g.0)
            .and_then(Option::take)
            .ok_or(XenError::EINVAL)?;
        let Guest {
            server, mut mem, ..
        } = guest;
        mem.release();
        server.destroy()
    }

    /// Guest `domid`'s memory as the device core sees it.
    pub fn guest_memory(&mut self, domid: u16) -> Option<&mut dyn GuestMemory> {
        self.guests
            .iter_mut()
            .flatten()
            .find(|g| g.domid == domid)
            .map(|g| &mut g.mem as &mut dyn GuestMemory)
    }

    /// Injects `spi` into guest `domid`.
    pub fn inject(&self, domid: u16, spi: u32) -> Result<(), XenError> {
        let g = self
            .guests
            .iter()
            .flatten()
            .find(|g| g.domid == domid)
            .ok_or(XenError::ESRCH)?;
        g.server.inject(spi)
    }

    /// One service pass, for after every wake-up: drains event channels (ports that are not
    /// ours are logged), answers every posted request of every guest through
    /// `handler(domid, access, memory)` (its return value answers reads), then runs
    /// `after(domid, memory, inject)` per guest so the hub can poll devices and raise SPIs.
    /// Returns the number of requests answered.
    pub fn service(&mut self, handler: &mut Handler<'_>, after: &mut AfterService<'_>) -> usize {
        let guests = &self.guests;
        self.events.take_pending(|port| {
            let ours = guests
                .iter()
                .flatten()
                .any(|g| g.server.vcpu_of_port(port).is_some());
            if !ours {
                log::debug!("xen: event on port {port} (not an ioreq port)");
            }
        });
        let mut served = 0;
        for g in self.guests.iter_mut().flatten() {
            let Guest { domid, server, mem } = g;
            let domid = *domid;
            served += server.serve(&mut |acc| handler(domid, &acc, mem));
            let mut inject = |spi: u32| {
                if let Err(e) = server.inject(spi) {
                    log::warn!("xen: dom{domid}: inject SPI {spi}: {e}");
                }
            };
            after(domid, mem, &mut inject);
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::ops::fake::{Call, FakeXen};
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;

    #[test]
    fn ipa_allocator_splits_pages_and_windows() {
        let mut a = IpaAllocator::new(&[(0x8000_0000, 0x40_0000), (0x1_0000_0000, 0x400_0000)]);
        assert_eq!(a.page(), Some((0x8040_0000 - 0x1000) >> 12));
        // The first region no longer has 4 MiB aligned to 2 MiB left: the second one serves it.
        assert_eq!(a.aligned(0x40_0000, CHUNK_SIZE), Some(0x1_0000_0000));
        assert_eq!(a.aligned(0x20_0000, CHUNK_SIZE), Some(0x8000_0000));
        let m = a.mark();
        assert_eq!(a.pages(16), Some(0x803f_f000 - 0x10000));
        a.rollback(m);
        assert_eq!(a.free_bytes(), 0x20_0000 - 0x1000 + 0x400_0000 - 0x40_0000);
        assert_eq!(a.aligned(0x1000_0000, CHUNK_SIZE), None);
        // Unaligned region edges are trimmed to pages.
        let b = IpaAllocator::new(&[(0x1800, 0x2000)]);
        assert_eq!(b.free_bytes(), 0x1000);
    }

    #[repr(C, align(2097152))]
    struct Chunk([u8; 2 << 20]);

    /// An adapter over a fake Xen, with a host buffer as "extended region".
    fn adapter(hv: &FakeXen) -> (Box<[Chunk]>, Xen<FakeXen>) {
        // SAFETY: a byte array is valid all-zero.
        let region: Box<[Chunk]> = unsafe { Box::new_zeroed_slice(6).assume_init() };
        let base = region.as_ptr() as u64;
        // SAFETY: all-zero atomics are valid.
        let shared =
            Box::leak(unsafe { Box::<events::SharedInfoLive>::new_zeroed().assume_init() });
        let ev = Events::with_legacy_vcpu_info(hv.clone(), shared);
        let x = Xen::with_parts(hv.clone(), IpaAllocator::new(&[(base, 6 << 21)]), ev, 19);
        (region, x)
    }

    #[test]
    fn add_guest_serve_and_remove() {
        let hv = FakeXen::new(1);
        let (region, mut x) = adapter(&hv);
        let g = x
            .add_guest(1, &[(0x4000_0000, 8 << 20)], &[(0x0200_0000, 0x200)])
            .unwrap();
        assert_eq!(x.ioreq_available(), Some(true));
        // The ioreq page is the top page of the region.
        let top = region.as_ptr() as u64 + (6 << 21) - 0x1000;
        let gfn = hv
            .calls()
            .iter()
            .find_map(|c| {
                if let Call::Acquire(1, _, g) = c {
                    Some(*g)
                } else {
                    None
                }
            })
            .unwrap();
        assert_eq!(gfn << 12, top - GRANT_PAGES as u64 * 0x1000);
        // Post a read on vCPU 0 and serve it; the handler reads guest memory.
        let slot = top - GRANT_PAGES as u64 * 0x1000;
        // SAFETY: the slot is in our own host buffer standing in for the ioreq page.
        unsafe {
            core::ptr::write((slot) as *mut u64, 0x0200_0000);
            core::ptr::write((slot + 16) as *mut u32, 1);
            core::ptr::write((slot + 20) as *mut u32, 4);
            core::ptr::write((slot + 31) as *mut u8, abi::ioreq::TYPE_COPY);
            core::ptr::write((slot + 30) as *mut u8, abi::ioreq::DIR_READ | 1);
        }
        hv.clear();
        let mut injected = vec![];
        let n = x.service(
            &mut |dom, acc, mem| {
                assert_eq!((dom, acc.addr, acc.write), (1, 0x0200_0000, false));
                let mut b = [0u8; 4];
                mem.read(0x4000_0000, &mut b).unwrap();
                u32::from_le_bytes(b) as u64
            },
            &mut |dom, _mem, inject| {
                injected.push(dom);
                inject(33);
            },
        );
        assert_eq!(n, 1);
        assert_eq!(injected, [1]);
        // SAFETY: as above.
        let (data, state) = unsafe {
            (
                core::ptr::read((slot + 8) as *const u64),
                *((slot + 30) as *const u8),
            )
        };
        assert_eq!(
            data as u32,
            u32::from_le_bytes(core::array::from_fn(|i| ops::fake::pattern(0x40000, i)))
        );
        assert_eq!(state, abi::ioreq::DIR_READ | 3);
        let calls = hv.calls();
        assert!(calls.contains(&Call::Send(10)));
        assert!(
            calls
                .iter()
                .any(|c| matches!(c, Call::Dm(1, abi::dmop::SET_IRQ_LEVEL, _)))
        );
        hv.clear();
        x.remove_guest(g).unwrap();
        assert!(matches!(
            hv.calls().last(),
            Some(Call::Dm(1, abi::dmop::DESTROY_IOREQ_SERVER, _))
        ));
        assert!(x.remove_guest(g).is_err());
        drop(x);
        drop(region);
    }

    #[test]
    fn enosys_means_no_ioreq_support_and_is_sticky() {
        let hv = FakeXen::new(1);
        let (_region, mut x) = adapter(&hv);
        let free = x.ipa.free_bytes();
        hv.0.borrow_mut().dm_error = Some(XenError::ENOSYS);
        assert_eq!(
            x.add_guest(1, &[(0x4000_0000, 8 << 20)], &[(0x0200_0000, 0x200)]),
            Err(XenError::ENOSYS)
        );
        assert_eq!(x.ioreq_available(), Some(false));
        assert_eq!(x.ipa.free_bytes(), free);
        hv.clear();
        assert_eq!(
            x.add_guest(2, &[(0x4000_0000, 8 << 20)], &[(0x0200_0000, 0x200)]),
            Err(XenError::ENOSYS)
        );
        assert!(hv.calls().is_empty());
        // Service still runs (nothing to serve).
        assert_eq!(x.service(&mut |_, _, _| 0, &mut |_, _, _| ()), 0);
    }
}
