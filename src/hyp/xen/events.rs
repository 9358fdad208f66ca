//! Event channels, 2-level ABI (xen.md §8): the shared_info bitmaps, our vCPU's vcpu_info,
//! and the demultiplexer the service loop runs after each wake-up.
//!
//! Both shared structures are viewed through atomics of the ABI's widths: Xen sets bits
//! concurrently (with atomic instructions), and we clear them with atomic RMWs, as the
//! protocol requires.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence};

use super::error::XenError;
use super::ops::XenOps;

/// Ports of the 2-level ABI.
pub const NR_PORTS: u32 = 64 * 64;

/// Live `vcpu_info` (48 bytes; layout pinned by `abi::VcpuInfo` and the test below).
#[repr(C)]
pub struct VcpuInfoLive {
    upcall_pending: AtomicU8,
    pad0: [AtomicU8; 7],
    pending_sel: AtomicU64,
    time: [AtomicU64; 4],
}

/// Live `shared_info` (the first 1088 bytes of the page).
#[repr(C)]
pub struct SharedInfoLive {
    vcpu_info: [VcpuInfoLive; 1],
    pending: [AtomicU64; 64],
    mask: [AtomicU64; 64],
    wc: [AtomicU32; 4],
}

/// The event-channel state of our single vCPU.
pub struct Events<H: XenOps> {
    hv: H,
    shared: &'static SharedInfoLive,
    vcpu: &'static VcpuInfoLive,
}

impl<H: XenOps> Events<H> {
    /// Events over an already-mapped shared_info and a registered vcpu_info (which may be
    /// `&shared.vcpu_info[0]`-equivalent memory if registration was not possible).
    pub fn new(hv: H, shared: &'static SharedInfoLive, vcpu: &'static VcpuInfoLive) -> Self {
        Events { hv, shared, vcpu }
    }

    /// Events using the legacy vcpu_info slot inside shared_info (vCPU 0 only).
    pub fn with_legacy_vcpu_info(hv: H, shared: &'static SharedInfoLive) -> Self {
        Events {
            hv,
            shared,
            vcpu: &shared.vcpu_info[0],
        }
    }

    /// Cheap check for the service loop: did Xen flag an upcall since the last demux?
    pub fn upcall_pending(&self) -> bool {
        self.vcpu.upcall_pending.load(Ordering::Relaxed) != 0
    }

    /// Takes every pending, unmasked port and calls `f(port)` for each, clearing its pending
    /// bit; loops until no new upcall was flagged meanwhile. Returns the number handled.
    pub fn take_pending(&mut self, mut f: impl FnMut(u32)) -> usize {
        let mut n = 0;
        while self.vcpu.upcall_pending.load(Ordering::Relaxed) != 0 {
            self.vcpu.upcall_pending.store(0, Ordering::Relaxed);
            // The clear must be visible before we read the selector, or an event Xen posts
            // between the two could be left with the flag clear and nobody looking.
            fence(Ordering::SeqCst);
            let mut sel = self.vcpu.pending_sel.swap(0, Ordering::AcqRel);
            while sel != 0 {
                let w = sel.trailing_zeros() as usize;
                sel &= sel - 1;
                let mut pend = self.shared.pending[w].load(Ordering::Acquire)
                    & !self.shared.mask[w].load(Ordering::Relaxed);
                while pend != 0 {
                    let b = pend.trailing_zeros();
                    pend &= pend - 1;
                    let bit = 1u64 << b;
                    if self.shared.pending[w].fetch_and(!bit, Ordering::AcqRel) & bit != 0 {
                        f(w as u32 * 64 + b);
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Masks `port` (its events stay pending but do not raise an upcall).
    pub fn mask(&self, port: u32) {
        if port < NR_PORTS {
            self.shared.mask[(port / 64) as usize].fetch_or(1 << (port % 64), Ordering::AcqRel);
        }
    }

    /// Unmasks `port` through Xen, which re-delivers an event that arrived while masked.
    pub fn unmask(&self, port: u32) -> Result<(), XenError> {
        self.hv.evtchn_unmask(port)
    }

    /// True if `port` is pending (whether or not masked).
    pub fn is_pending(&self, port: u32) -> bool {
        port < NR_PORTS
            && self.shared.pending[(port / 64) as usize].load(Ordering::Relaxed)
                & (1 << (port % 64))
                != 0
    }

    /// Binds `remote_dom`'s unbound `remote_port` to a new local port.
    pub fn bind_interdomain(&self, remote_dom: u16, remote_port: u32) -> Result<u32, XenError> {
        self.hv.evtchn_bind_interdomain(remote_dom, remote_port)
    }

    /// Signals `port`.
    pub fn send(&self, port: u32) -> Result<(), XenError> {
        self.hv.evtchn_send(port)
    }

    /// Closes `port`.
    pub fn close(&self, port: u32) -> Result<(), XenError> {
        self.hv.evtchn_close(port)
    }
}

/// Our registered vcpu_info: in dom0 RAM (Xen refuses its own pages for this), 64-byte
/// aligned so the 48 bytes never cross a page.
#[cfg(target_os = "none")]
static VCPU_INFO: Aligned64 = Aligned64(VcpuInfoLive {
    upcall_pending: AtomicU8::new(0),
    pad0: [const { AtomicU8::new(0) }; 7],
    pending_sel: AtomicU64::new(0),
    time: [const { AtomicU64::new(0) }; 4],
});

#[cfg(target_os = "none")]
#[repr(C, align(64))]
struct Aligned64(VcpuInfoLive);

#[cfg(target_os = "none")]
impl Events<super::hypercall::Hvc> {
    /// Maps shared_info at our frame `shared_gfn` and registers vCPU 0's vcpu_info (falling
    /// back to the legacy slot in shared_info if Xen refuses).
    ///
    /// # Safety
    /// `shared_gfn << 12` must be an unused extended-region page, identity-mapped Normal WB,
    /// reserved for shared_info for the rest of the program. Call once.
    pub unsafe fn init(shared_gfn: u64) -> Result<Self, XenError> {
        use super::abi::{PAGE_SHIFT, mapspace};
        use super::hypercall::{Hvc, register_vcpu_info};
        // SAFETY: the page is free and reserved (caller's promise).
        unsafe { Hvc.add_to_physmap(mapspace::SHARED_INFO, 0, shared_gfn) }?;
        // SAFETY: Xen now backs the page with shared_info, mapped Normal WB at IPA == VA; all
        // fields are atomics, so Xen's concurrent updates are not data races; it stays mapped
        // for the rest of the program.
        let shared: &'static SharedInfoLive =
            unsafe { &*((shared_gfn << PAGE_SHIFT) as *const SharedInfoLive) };
        let vcpu: &'static VcpuInfoLive = &VCPU_INFO.0;
        let addr = vcpu as *const VcpuInfoLive as u64;
        // SAFETY: VCPU_INFO is a static in our RAM that only Xen writes (through atomics we
        // read), 64-byte aligned so it does not cross a page; it lives forever.
        match unsafe { register_vcpu_info(0, addr >> PAGE_SHIFT, (addr & 0xfff) as u32) } {
            Ok(()) => Ok(Events::new(Hvc, shared, vcpu)),
            Err(e) => {
                log::warn!("xen: register_vcpu_info: {e}; using shared_info's vcpu_info");
                Ok(Events::with_legacy_vcpu_info(Hvc, shared))
            }
        }
    }

    /// Binds `virq` (e.g. `abi::evtchnop::VIRQ_CONSOLE`) on vCPU 0.
    pub fn bind_virq(&self, virq: u32) -> Result<u32, XenError> {
        super::hypercall::evtchn_bind_virq(virq, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::abi;
    use super::super::ops::fake::{Call, FakeXen};
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_the_abi() {
        assert_eq!(size_of::<VcpuInfoLive>(), size_of::<abi::VcpuInfo>());
        assert_eq!(
            offset_of!(VcpuInfoLive, pending_sel),
            offset_of!(abi::VcpuInfo, evtchn_pending_sel)
        );
        assert_eq!(
            offset_of!(VcpuInfoLive, time),
            offset_of!(abi::VcpuInfo, time)
        );
        assert_eq!(
            offset_of!(SharedInfoLive, pending),
            offset_of!(abi::SharedInfo, evtchn_pending)
        );
        assert_eq!(
            offset_of!(SharedInfoLive, mask),
            offset_of!(abi::SharedInfo, evtchn_mask)
        );
        assert_eq!(
            offset_of!(SharedInfoLive, wc),
            offset_of!(abi::SharedInfo, wc_version)
        );
        assert_eq!(size_of::<SharedInfoLive>(), size_of::<abi::SharedInfo>());
    }

    fn leak_shared() -> &'static SharedInfoLive {
        // SAFETY: SharedInfoLive is atomics only; all-zero is valid.
        Box::leak(unsafe { Box::<SharedInfoLive>::new_zeroed().assume_init() })
    }

    fn raise(s: &SharedInfoLive, v: &VcpuInfoLive, port: u32) {
        s.pending[(port / 64) as usize].fetch_or(1 << (port % 64), Ordering::Relaxed);
        v.pending_sel.fetch_or(1 << (port / 64), Ordering::Relaxed);
        v.upcall_pending.store(1, Ordering::Release);
    }

    #[test]
    fn demux_takes_unmasked_ports_once() {
        let s = leak_shared();
        let v = &s.vcpu_info[0];
        let hv = FakeXen::new(1);
        let mut ev = Events::with_legacy_vcpu_info(hv.clone(), s);
        assert!(!ev.upcall_pending());
        for p in [3, 64, 130, 4095] {
            raise(s, v, p);
        }
        ev.mask(130);
        assert!(ev.upcall_pending());
        let mut got = Vec::new();
        assert_eq!(ev.take_pending(|p| got.push(p)), 3);
        assert_eq!(got, [3, 64, 4095]);
        assert!(!ev.upcall_pending());
        assert!(ev.is_pending(130) && !ev.is_pending(3));
        assert_eq!(ev.take_pending(|_| panic!()), 0);
        ev.unmask(130).unwrap();
        assert_eq!(hv.calls(), [Call::Unmask(130)]);
    }
}
