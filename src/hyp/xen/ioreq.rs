//! One IOREQ server per guest domain: set-up in the order that works on Arm, the per-vCPU
//! slot protocol, interrupt injection and teardown (xen.md §3–§5, §12, §13).
//!
//! The ioreq page is Normal WB memory shared with Xen. It is viewed as an array of
//! [`IoreqSlot`]s whose fields are atomics of the ABI's widths, so every access is a single
//! plain load/store of the right size and Rust's memory model covers the concurrent writer;
//! the protocol's barriers are explicit fences (`Acquire` = `dmb ishld` after seeing READY,
//! `Release` = `dmb ish` before publishing IORESP_READY).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

use super::abi::{PAGE_SHIFT, ioreq as st};
use super::error::XenError;
use super::ops::XenOps;

/// Most vCPUs per guest this adapter binds (the page has 128 slots).
pub const MAX_VCPUS: usize = 32;
/// Most MMIO windows per guest.
pub const MAX_WINDOWS: usize = 16;

/// One trapped guest access, as the hub sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The guest vCPU that made it (and is blocked until we answer).
    pub vcpu: u32,
    /// Guest physical address.
    pub addr: u64,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// True for a store.
    pub write: bool,
    /// The stored value (writes); 0 for reads.
    pub data: u64,
}

/// Live view of one `ioreq_t` (layout pinned by `abi::Ioreq`'s tests and `slot_layout` below).
#[repr(C)]
pub struct IoreqSlot {
    addr: AtomicU64,
    data: AtomicU64,
    count: AtomicU32,
    size: AtomicU32,
    vp_eport: AtomicU32,
    pad0: AtomicU16,
    flags: AtomicU8,
    kind: AtomicU8,
}

/// Live view of the shared ioreq page: one slot per vCPU.
#[repr(C, align(4096))]
pub struct IoreqPage {
    slots: [IoreqSlot; st::SLOTS_PER_PAGE],
}

impl IoreqSlot {
    /// The slot's state (bits 0–3 of byte 30).
    pub fn state(&self) -> u8 {
        self.flags.load(Ordering::Relaxed) & st::STATE_MASK
    }

    /// The domU-side port Xen wrote here when the server was enabled.
    pub fn vp_eport(&self) -> u32 {
        self.vp_eport.load(Ordering::Relaxed)
    }

    /// If the slot holds a READY request, reads it (after the acquire fence). `Err(kind)`
    /// is a request we cannot serve (not a single MMIO copy); it must still be answered.
    fn take(&self, vcpu: u32) -> Option<Result<MmioAccess, u8>> {
        if self.state() != st::STATE_IOREQ_READY {
            return None;
        }
        // Order the state read before the reads of the request fields (xen.md §4 step 2).
        fence(Ordering::Acquire);
        let flags = self.flags.load(Ordering::Relaxed);
        let kind = self.kind.load(Ordering::Relaxed);
        let size = self.size.load(Ordering::Relaxed);
        let count = self.count.load(Ordering::Relaxed);
        if kind != st::TYPE_COPY
            || flags & st::DATA_IS_PTR != 0
            || count != 1
            || !matches!(size, 1 | 2 | 4 | 8)
        {
            return Some(Err(kind));
        }
        let write = flags & st::DIR_READ == 0;
        Some(Ok(MmioAccess {
            vcpu,
            addr: self.addr.load(Ordering::Relaxed),
            size: size as u8,
            write,
            data: if write {
                self.data.load(Ordering::Relaxed)
            } else {
                0
            },
        }))
    }

    /// Publishes the answer: `data` (reads), release fence, state IORESP_READY keeping the
    /// other bits of byte 30.
    fn respond(&self, read_value: Option<u64>) {
        if let Some(v) = read_value {
            self.data.store(v, Ordering::Relaxed);
        }
        fence(Ordering::Release);
        let flags = self.flags.load(Ordering::Relaxed);
        self.flags.store(
            (flags & !st::STATE_MASK) | st::STATE_IORESP_READY,
            Ordering::Release,
        );
    }
}

/// Masks `v` to `size` bytes.
fn mask(v: u64, size: u8) -> u64 {
    if size >= 8 {
        v
    } else {
        v & ((1u64 << (size as u32 * 8)) - 1)
    }
}

/// Answers every READY slot among the first `ports.len()` slots of `page`, calling `handler`
/// for each MMIO access and `notify(local_port)` after each answer. Returns how many it
/// answered. This is the whole protocol, separate from set-up so it is tested directly.
pub fn serve_page(
    page: &IoreqPage,
    ports: &[u32],
    handler: &mut dyn FnMut(MmioAccess) -> u64,
    notify: &mut dyn FnMut(u32),
) -> usize {
    let mut served = 0;
    for (vcpu, (slot, &port)) in page.slots.iter().zip(ports).enumerate() {
        let Some(req) = slot.take(vcpu as u32) else {
            continue;
        };
        match req {
            Ok(acc) => {
                let v = handler(acc);
                slot.respond((!acc.write).then(|| mask(v, acc.size)));
            }
            Err(kind) => {
                log::warn!(
                    "xen: vcpu {vcpu}: unsupported ioreq type {kind}; answered with all-ones"
                );
                slot.respond(Some(!0));
            }
        }
        notify(port);
        served += 1;
    }
    served
}

/// A registered IOREQ server for one guest domain. Dropping it tears it down like
/// [`IoreqServer::destroy`] (errors are logged).
pub struct IoreqServer<H: XenOps> {
    hv: H,
    domid: u16,
    id: u16,
    page: NonNull<IoreqPage>,
    page_gfn: u64,
    page_acquired: bool,
    /// False once destroyed (so `Drop` does not destroy twice).
    live: bool,
    windows: heapless::Vec<(u64, u64), MAX_WINDOWS>,
    mapped: usize,
    enabled: bool,
    /// Local port per vCPU (index = vCPU id).
    ports: heapless::Vec<u32, MAX_VCPUS>,
}

impl<H: XenOps> IoreqServer<H> {
    /// Creates a server for `domid`, installs its ioreq page at our frame `page_gfn`, claims
    /// each `(base, size)` MMIO window, enables it and binds every vCPU's event channel
    /// (xen.md §3 "Recommended sequence"). On failure everything done so far is undone.
    ///
    /// `XenError::ENOSYS` from the first step means this Xen has no IOREQ server support.
    ///
    /// # Safety
    /// `page_gfn << 12` must be an unused, page-aligned IPA in an extended region that dom0's
    /// stage-1 maps Normal WB (identity), reserved for this server until [`Self::destroy`].
    pub unsafe fn create(
        hv: H,
        domid: u16,
        page_gfn: u64,
        windows: &[(u64, u64)],
    ) -> Result<Self, XenError> {
        let mut w = heapless::Vec::new();
        for &(base, size) in windows {
            if size == 0 || base.checked_add(size - 1).is_none() {
                return Err(XenError::EINVAL);
            }
            w.push((base, size)).map_err(|_| XenError::E2BIG)?;
        }
        let id = hv.create_ioreq_server(domid)?;
        let page =
            NonNull::new((page_gfn << PAGE_SHIFT) as *mut IoreqPage).ok_or(XenError::EINVAL)?;
        let mut me = IoreqServer {
            hv,
            domid,
            id,
            page,
            page_gfn,
            page_acquired: false,
            live: true,
            windows: w,
            mapped: 0,
            enabled: false,
            ports: heapless::Vec::new(),
        };
        if let Err(e) = me.setup() {
            log::error!("xen: dom{domid}: ioreq server set-up failed: {e}");
            let _ = me.teardown();
            return Err(e);
        }
        Ok(me)
    }

    fn setup(&mut self) -> Result<(), XenError> {
        // 1. The page before enabling, or Xen never writes vp_eport (xen.md §5).
        // SAFETY: `page_gfn` is unused extended-region space, the promise of `create`'s caller.
        unsafe {
            self.hv
                .acquire_ioreq_page(self.domid, self.id, self.page_gfn)
        }?;
        self.page_acquired = true;
        // 2. The MMIO windows (end inclusive).
        for &(base, size) in &self.windows {
            self.hv
                .map_io_range(self.domid, self.id, base, base + (size - 1))?;
            self.mapped += 1;
        }
        // 3. Enable: Xen writes each vCPU's vp_eport.
        self.hv.set_ioreq_server_state(self.domid, self.id, true)?;
        self.enabled = true;
        // 4. Bind every vCPU's port.
        let n = self.hv.nr_vcpus(self.domid)? as usize;
        if n > MAX_VCPUS {
            log::error!(
                "xen: dom{}: {n} vCPUs, this adapter binds at most {MAX_VCPUS}",
                self.domid
            );
            return Err(XenError::E2BIG);
        }
        for vcpu in 0..n {
            let remote = self.page().slots[vcpu].vp_eport();
            if remote == 0 {
                log::error!(
                    "xen: dom{}: vcpu {vcpu} has no ioreq event channel",
                    self.domid
                );
                return Err(XenError::ENOENT);
            }
            let local = self.hv.evtchn_bind_interdomain(self.domid, remote)?;
            // Cannot overflow: n <= MAX_VCPUS.
            let _ = self.ports.push(local);
        }
        Ok(())
    }

    /// Undoes whatever set-up reached, in reverse; returns the first error.
    fn teardown(&mut self) -> Result<(), XenError> {
        if !self.live {
            return Ok(());
        }
        self.live = false;
        let mut first = Ok(());
        let mut note = |r: Result<(), XenError>| {
            if let Err(e) = r {
                log::warn!("xen: ioreq server teardown: {e}");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        };
        for port in self.ports.drain(..) {
            note(self.hv.evtchn_close(port));
        }
        if self.enabled {
            note(self.hv.set_ioreq_server_state(self.domid, self.id, false));
            self.enabled = false;
        }
        for &(base, size) in &self.windows[..self.mapped] {
            note(
                self.hv
                    .unmap_io_range(self.domid, self.id, base, base + (size - 1)),
            );
        }
        self.mapped = 0;
        if self.page_acquired {
            // SAFETY: the page is our acquired mapping and no reference to it outlives this
            // call (`page()` borrows are scoped to `&self` methods).
            note(unsafe { self.hv.remove_from_physmap(self.page_gfn) });
            self.page_acquired = false;
        }
        note(self.hv.destroy_ioreq_server(self.domid, self.id));
        first
    }

    /// Disables and destroys the server, closes its ports and unmaps its page.
    pub fn destroy(mut self) -> Result<(), XenError> {
        self.teardown()
    }

    fn page(&self) -> &IoreqPage {
        debug_assert!(self.live);
        // SAFETY: `page` points at the ioreq page installed by acquire_resource at an
        // identity-mapped Normal WB IPA (the promise of `create`), which stays mapped until
        // `teardown`, which takes `&mut self`. All fields are atomics, so Xen's concurrent
        // writes are not a data race.
        unsafe { self.page.as_ref() }
    }

    /// The guest this server serves.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// Xen's id of this server.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Our local event-channel ports, index = vCPU.
    pub fn ports(&self) -> &[u32] {
        &self.ports
    }

    /// The vCPU whose requests arrive on local `port`, if it is one of ours.
    pub fn vcpu_of_port(&self, port: u32) -> Option<u32> {
        self.ports.iter().position(|&p| p == port).map(|v| v as u32)
    }

    /// True if `addr` is inside one of this server's windows.
    pub fn claims(&self, addr: u64) -> bool {
        self.windows.iter().any(|&(b, s)| addr >= b && addr - b < s)
    }

    /// Answers every READY request of every vCPU through `handler` (which returns the value
    /// for reads) and notifies Xen per answer. Returns the number answered.
    pub fn serve(&mut self, handler: &mut dyn FnMut(MmioAccess) -> u64) -> usize {
        let hv = &self.hv;
        let domid = self.domid;
        let mut notify = |port: u32| {
            if let Err(e) = hv.evtchn_send(port) {
                log::warn!("xen: dom{domid}: evtchn send on {port}: {e}");
            }
        };
        serve_page(self.page(), &self.ports, handler, &mut notify)
    }

    /// Injects SPI `spi` into the guest once (`set_irq_level(spi, 1)`; edge-like on Arm).
    pub fn inject(&self, spi: u32) -> Result<(), XenError> {
        self.hv.set_irq_level(self.domid, spi, true)
    }
}

impl<H: XenOps> Drop for IoreqServer<H> {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::super::abi::{self, dmop};
    use super::super::ops::fake::{Call, FakeXen};
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use core::mem::{offset_of, size_of};

    fn zeroed_page() -> Box<IoreqPage> {
        // SAFETY: IoreqPage is atomics of integers only; all-zero is a valid value.
        unsafe { Box::<IoreqPage>::new_zeroed().assume_init() }
    }

    fn post(slot: &IoreqSlot, addr: u64, size: u32, read: bool, data: u64, high_bits: u8) {
        slot.addr.store(addr, Ordering::Relaxed);
        slot.data.store(data, Ordering::Relaxed);
        slot.count.store(1, Ordering::Relaxed);
        slot.size.store(size, Ordering::Relaxed);
        slot.kind.store(st::TYPE_COPY, Ordering::Relaxed);
        let dir = if read { st::DIR_READ } else { 0 };
        slot.flags
            .store(high_bits | dir | st::STATE_IOREQ_READY, Ordering::Release);
    }

    #[test]
    fn slot_layout() {
        assert_eq!(size_of::<IoreqSlot>(), size_of::<abi::Ioreq>());
        assert_eq!(offset_of!(IoreqSlot, data), offset_of!(abi::Ioreq, data));
        assert_eq!(offset_of!(IoreqSlot, count), offset_of!(abi::Ioreq, count));
        assert_eq!(offset_of!(IoreqSlot, size), offset_of!(abi::Ioreq, size));
        assert_eq!(
            offset_of!(IoreqSlot, vp_eport),
            offset_of!(abi::Ioreq, vp_eport)
        );
        assert_eq!(offset_of!(IoreqSlot, pad0), offset_of!(abi::Ioreq, pad0));
        assert_eq!(offset_of!(IoreqSlot, flags), 30);
        assert_eq!(offset_of!(IoreqSlot, kind), 31);
        assert_eq!(size_of::<IoreqPage>(), 4096);
    }

    #[test]
    fn serves_read_and_write_and_skips_idle() {
        let page = zeroed_page();
        // vcpu 0: 4-byte read; vcpu 1 idle; vcpu 2: 2-byte write with a flag bit 6 set.
        post(&page.slots[0], 0x0200_0000, 4, true, 0xdead, 0);
        post(&page.slots[2], 0x0200_0050, 2, false, 0x1234, 1 << 6);
        let mut seen = Vec::new();
        let mut sent = Vec::new();
        let n = serve_page(
            &page,
            &[7, 8, 9],
            &mut |a| {
                seen.push(a);
                0x1_7473_6976 // more than 4 bytes: must be masked
            },
            &mut |p| sent.push(p),
        );
        assert_eq!(n, 2);
        assert_eq!(
            seen,
            [
                MmioAccess {
                    vcpu: 0,
                    addr: 0x0200_0000,
                    size: 4,
                    write: false,
                    data: 0
                },
                MmioAccess {
                    vcpu: 2,
                    addr: 0x0200_0050,
                    size: 2,
                    write: true,
                    data: 0x1234
                },
            ]
        );
        assert_eq!(sent, [7, 9]);
        assert_eq!(page.slots[0].data.load(Ordering::Relaxed), 0x7473_6976);
        assert_eq!(page.slots[0].state(), st::STATE_IORESP_READY);
        assert_eq!(
            page.slots[0].flags.load(Ordering::Relaxed),
            st::DIR_READ | 3
        );
        // A write keeps its data and the high bits of byte 30.
        assert_eq!(page.slots[2].data.load(Ordering::Relaxed), 0x1234);
        assert_eq!(page.slots[2].flags.load(Ordering::Relaxed), (1 << 6) | 3);
        assert_eq!(page.slots[1].state(), st::STATE_NONE);
        // Answered slots are not served again.
        assert_eq!(serve_page(&page, &[7, 8, 9], &mut |_| 0, &mut |_| ()), 0);
    }

    #[test]
    fn unsupported_requests_are_still_answered() {
        let page = zeroed_page();
        post(&page.slots[0], 0x1000, 4, true, 0, 0);
        page.slots[0].kind.store(8, Ordering::Relaxed); // INVALIDATE
        post(&page.slots[1], 0x1000, 3, true, 0, 0); // odd size
        let mut called = false;
        let mut sent = Vec::new();
        let n = serve_page(
            &page,
            &[1, 2],
            &mut |_| {
                called = true;
                0
            },
            &mut |p| sent.push(p),
        );
        assert_eq!(n, 2);
        assert!(!called);
        assert_eq!(sent, [1, 2]);
        assert_eq!(page.slots[0].state(), st::STATE_IORESP_READY);
        assert_eq!(page.slots[1].data.load(Ordering::Relaxed), !0);
    }

    #[test]
    fn create_follows_the_arm_order_and_destroy_reverses_it() {
        let page = zeroed_page();
        let gfn = (&*page as *const IoreqPage as u64) >> 12;
        let hv = FakeXen::new(2);
        // SAFETY: the "IPA" is our own host page (IPA == VA in the image).
        let mut s =
            unsafe { IoreqServer::create(hv.clone(), 1, gfn, &[(0x0200_0000, 0x200)]) }.unwrap();
        let calls = hv.calls();
        let ops: Vec<_> = calls
            .iter()
            .map(|c| match c {
                Call::Dm(_, op, _) => alloc::format!("dm{op}"),
                Call::Acquire(..) => "acquire".into(),
                Call::Bind(d, p) => alloc::format!("bind{d}:{p}"),
                other => alloc::format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            ops,
            [
                "dm1",
                "acquire",
                "dm3",
                "dm5",
                "dm20",
                "bind1:100",
                "bind1:101"
            ]
        );
        // The range is memory type with an inclusive end.
        let Call::Dm(1, dmop::MAP_IO_RANGE, u) = calls[2] else {
            panic!()
        };
        assert_eq!(&u[4..8], &1u32.to_le_bytes());
        assert_eq!(&u[16..24], &0x0200_01ffu64.to_le_bytes());
        assert_eq!(s.ports(), [10, 11]);
        assert_eq!(s.vcpu_of_port(11), Some(1));
        assert!(s.claims(0x0200_01ff) && !s.claims(0x0200_0200));

        post(&page.slots[1], 0x0200_0070, 4, false, 1, 0);
        hv.clear();
        assert_eq!(s.serve(&mut |_| 0), 1);
        assert_eq!(hv.calls(), [Call::Send(11)]);

        hv.clear();
        s.inject(33).unwrap();
        let Call::Dm(1, dmop::SET_IRQ_LEVEL, u) = hv.calls()[0] else {
            panic!()
        };
        assert_eq!((&u[0..4], u[4]), (&33u32.to_le_bytes()[..], 1));

        hv.clear();
        s.destroy().unwrap();
        let calls = hv.calls();
        assert_eq!(calls[0], Call::Close(10));
        assert_eq!(calls[1], Call::Close(11));
        assert!(matches!(calls[2], Call::Dm(1, dmop::SET_IOREQ_SERVER_STATE, u) if u[2] == 0));
        assert!(matches!(calls[3], Call::Dm(1, dmop::UNMAP_IO_RANGE, _)));
        assert_eq!(calls[4], Call::Remove(gfn));
        assert!(matches!(
            calls[5],
            Call::Dm(1, dmop::DESTROY_IOREQ_SERVER, _)
        ));
        assert_eq!(calls.len(), 6); // dropping after destroy does nothing more

        // Dropping a live server tears it down too.
        // SAFETY: as above.
        let s = unsafe { IoreqServer::create(hv.clone(), 1, gfn, &[]) }.unwrap();
        hv.clear();
        drop(s);
        assert!(matches!(
            hv.calls().last(),
            Some(Call::Dm(1, dmop::DESTROY_IOREQ_SERVER, _))
        ));
    }

    #[test]
    fn enosys_is_reported_unchanged() {
        let hv = FakeXen::new(1);
        hv.0.borrow_mut().dm_error = Some(XenError::ENOSYS);
        // SAFETY: nothing is mapped: create fails at its first call.
        let r = unsafe { IoreqServer::create(hv.clone(), 1, 0x1234, &[(0x0200_0000, 0x200)]) };
        assert_eq!(r.err(), Some(XenError::ENOSYS));
        assert!(!hv.calls().iter().any(|c| matches!(c, Call::Acquire(..))));
    }

    #[test]
    fn missing_vp_eport_fails_and_rolls_back() {
        let page = zeroed_page();
        let gfn = (&*page as *const IoreqPage as u64) >> 12;
        let hv = FakeXen::new(1);
        // A Xen that does not write vp_eport (what happens if the page is acquired late).
        hv.0.borrow_mut().skip_eports = true;
        // SAFETY: the "IPA" is our own host page.
        let r = unsafe { IoreqServer::create(hv.clone(), 1, gfn, &[(0x0200_0000, 0x200)]) };
        assert_eq!(r.err(), Some(XenError::ENOENT));
        let calls = hv.calls();
        assert!(
            calls
                .iter()
                .any(|c| matches!(c, Call::Dm(1, dmop::SET_IOREQ_SERVER_STATE, u) if u[2] == 0))
        );
        assert!(
            calls
                .iter()
                .any(|c| matches!(c, Call::Dm(1, dmop::UNMAP_IO_RANGE, _)))
        );
        assert!(calls.contains(&Call::Remove(gfn)));
        assert!(matches!(
            calls.last(),
            Some(Call::Dm(1, dmop::DESTROY_IOREQ_SERVER, _))
        ));
    }
}
