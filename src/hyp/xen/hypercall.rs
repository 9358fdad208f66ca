//! The hypercall conduit (`hvc #0xEA1`, number in `x16`, arguments `x0..x4`, result in `x0`)
//! and one typed wrapper per operation Backplane uses (xen.md §1–§9).
//!
//! Wrappers that only pass values or point Xen at our own argument structures are safe: the
//! structures live in dom0 RAM (Normal WB, identity-mapped), and the asm block tells the
//! compiler Xen may read and write any memory. Wrappers that change dom0's physmap are
//! `unsafe`: pointed at RAM, they would replace it under our feet.
//!
//! Only the image has the instruction; on the host this file is empty apart from the
//! [`Hvc`] marker, and tests use a fake [`XenOps`](super::ops::XenOps) instead.

/// The real hypercall conduit: a zero-sized handle implementing
/// [`XenOps`](super::ops::XenOps) by `hvc #0xEA1` (image only).
#[derive(Clone, Copy, Debug, Default)]
pub struct Hvc;

#[cfg(target_os = "none")]
pub use image::*;

#[cfg(target_os = "none")]
mod image {
    use super::super::abi::{self, *};
    use super::super::error::XenError;
    use super::super::ops::XenOps;
    use super::Hvc;

    /// Issues hypercall `nr` with five arguments and returns Xen's raw `x0`.
    ///
    /// # Safety
    /// Every pointer argument must point to memory valid for the operation's reads and
    /// writes, and the operation must not change dom0's memory map in a way that breaks
    /// Rust's assumptions (e.g. replace RAM in use).
    #[inline(always)]
    pub unsafe fn hypercall5(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
        let ret: i64;
        // SAFETY: `hvc #0xEA1` traps to Xen, which follows the documented convention: it
        // reads x16 and x0..x4, writes x0 and may clobber x16 and x1..x4, all declared here.
        // No `nomem`: Xen reads and writes our memory through the pointer arguments, which the
        // caller guarantees are valid.
        unsafe {
            core::arch::asm!(
                "hvc #0xEA1",
                inout("x0") a0 => ret,
                inout("x1") a1 => _,
                inout("x2") a2 => _,
                inout("x3") a3 => _,
                inout("x4") a4 => _,
                inout("x16") nr => _,
                options(nostack),
            );
        }
        ret
    }

    /// `hypercall5` with unused arguments zeroed.
    ///
    /// # Safety
    /// As for [`hypercall5`].
    #[inline(always)]
    unsafe fn hcall(nr: u64, a0: u64, a1: u64, a2: u64) -> Result<u64, XenError> {
        // SAFETY: forwarded from the caller.
        XenError::check(unsafe { hypercall5(nr, a0, a1, a2, 0, 0) })
    }

    fn ptr<T>(r: &T) -> u64 {
        r as *const T as u64
    }

    fn ptr_mut<T>(r: &mut T) -> u64 {
        r as *mut T as u64
    }

    // ----- console_io, xen_version, sched_op, vcpu_op -----------------------------------

    /// `CONSOLEIO_write`: writes `bytes` to Xen's console; returns the count written.
    pub fn console_write(bytes: &[u8]) -> Result<u64, XenError> {
        // SAFETY: Xen reads `len` bytes from a valid slice.
        unsafe {
            hcall(
                nr::CONSOLE_IO,
                consoleio::WRITE,
                bytes.len() as u64,
                bytes.as_ptr() as u64,
            )
        }
    }

    /// `CONSOLEIO_read`: reads pending console input into `buf`; returns the count read.
    pub fn console_read(buf: &mut [u8]) -> Result<u64, XenError> {
        // SAFETY: Xen writes at most `len` bytes into a valid, exclusively borrowed slice.
        unsafe {
            hcall(
                nr::CONSOLE_IO,
                consoleio::READ,
                buf.len() as u64,
                buf.as_mut_ptr() as u64,
            )
        }
    }

    /// `XENVER_version`: returns `(major, minor)`.
    pub fn xen_version() -> Result<(u16, u16), XenError> {
        // SAFETY: no pointer argument.
        let v = unsafe { hcall(nr::XEN_VERSION, xenver::VERSION, 0, 0) }?;
        Ok(((v >> 16) as u16, v as u16))
    }

    /// `XENVER_extraversion`: the 16-byte NUL-padded extra version (e.g. `".5"`).
    pub fn xen_extraversion() -> Result<[u8; 16], XenError> {
        let mut buf = [0u8; 16];
        // SAFETY: Xen writes 16 bytes into `buf`.
        unsafe { hcall(nr::XEN_VERSION, xenver::EXTRAVERSION, ptr_mut(&mut buf), 0) }?;
        Ok(buf)
    }

    /// `SCHEDOP_yield`.
    pub fn sched_yield() -> Result<(), XenError> {
        // SAFETY: no pointer argument.
        unsafe { hcall(nr::SCHED_OP, schedop::YIELD, 0, 0) }.map(drop)
    }

    /// `SCHEDOP_shutdown` with `reason` (`schedop::POWEROFF`, `REBOOT`, `CRASH`). Returns only
    /// on failure.
    pub fn sched_shutdown(reason: u32) -> XenError {
        let arg = SchedShutdown { reason };
        // SAFETY: Xen reads the 4-byte argument.
        match unsafe { hcall(nr::SCHED_OP, schedop::SHUTDOWN, ptr(&arg), 0) } {
            Ok(_) => XenError::EINVAL,
            Err(e) => e,
        }
    }

    /// `VCPUOP_register_vcpu_info`: Xen keeps `vcpu`'s vcpu_info at `offset` in our frame
    /// `gfn` from now on.
    ///
    /// # Safety
    /// The 48 bytes at `gfn << 12 | offset` must be dom0 memory reserved for Xen to write
    /// for as long as the domain lives, and must not cross a page boundary.
    pub unsafe fn register_vcpu_info(vcpu: u32, gfn: u64, offset: u32) -> Result<(), XenError> {
        let arg = VcpuRegisterVcpuInfo {
            mfn: gfn,
            offset,
            rsvd: 0,
        };
        // SAFETY: the argument is valid; the target memory is the caller's promise.
        unsafe {
            hcall(
                nr::VCPU_OP,
                vcpuop::REGISTER_VCPU_INFO,
                vcpu as u64,
                ptr(&arg),
            )
        }
        .map(drop)
    }

    // ----- memory_op ------------------------------------------------------------------

    /// `XENMEM_add_to_physmap` into our own physmap (`DOMID_SELF`).
    ///
    /// # Safety
    /// `gpfn` must be unused IPA space (an extended region), not RAM in use.
    pub unsafe fn add_to_physmap(space: u16, idx: u64, gpfn: u64) -> Result<(), XenError> {
        let arg = AddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: space as u32,
            idx,
            gpfn,
        };
        // SAFETY: argument valid; `gpfn` is the caller's promise.
        unsafe { hcall(nr::MEMORY_OP, xenmem::ADD_TO_PHYSMAP, ptr(&arg), 0) }.map(drop)
    }

    /// `XENMEM_add_to_physmap_batch` of `foreign`'s frames `idxs` at our frames `gpfns`;
    /// per-page results land in `errs`. All three slices must have the same length.
    ///
    /// # Safety
    /// Every `gpfns` entry must be unused IPA space.
    pub unsafe fn add_to_physmap_batch(
        foreign: u16,
        idxs: &[u64],
        gpfns: &[u64],
        errs: &mut [i32],
    ) -> Result<(), XenError> {
        let n = idxs.len();
        if gpfns.len() != n || errs.len() != n || n > u16::MAX as usize {
            return Err(XenError::EINVAL);
        }
        let arg = AddToPhysmapBatch {
            domid: DOMID_SELF,
            space: mapspace::GMFN_FOREIGN,
            size: n as u16,
            foreign_domid: foreign,
            idxs: idxs.as_ptr() as u64,
            gpfns: gpfns.as_ptr() as u64,
            errs: errs.as_mut_ptr() as u64,
        };
        // SAFETY: the arrays are valid for `n` entries (errs writable); `gpfns` is the
        // caller's promise.
        unsafe { hcall(nr::MEMORY_OP, xenmem::ADD_TO_PHYSMAP_BATCH, ptr(&arg), 0) }.map(drop)
    }

    /// `XENMEM_remove_from_physmap` of our frame `gpfn`.
    ///
    /// # Safety
    /// `gpfn` must be a foreign/grant/shared-info/ioreq mapping we made and no longer use.
    pub unsafe fn remove_from_physmap(gpfn: u64) -> Result<(), XenError> {
        let arg = RemoveFromPhysmap {
            domid: DOMID_SELF,
            pad: [0; 6],
            gpfn,
        };
        // SAFETY: argument valid; `gpfn` is the caller's promise.
        unsafe { hcall(nr::MEMORY_OP, xenmem::REMOVE_FROM_PHYSMAP, ptr(&arg), 0) }.map(drop)
    }

    /// `XENMEM_acquire_resource`: installs `gpfns.len()` frames of `domid`'s resource `kind`
    /// `id` starting at `frame` at our frames `gpfns`.
    ///
    /// # Safety
    /// Every `gpfns` entry must be unused IPA space.
    pub unsafe fn acquire_resource(
        domid: u16,
        kind: u16,
        id: u32,
        frame: u64,
        gpfns: &[u64],
    ) -> Result<(), XenError> {
        let arg = MemAcquireResource {
            domid,
            kind,
            id,
            nr_frames: gpfns.len() as u32,
            pad: 0,
            frame,
            frame_list: gpfns.as_ptr() as u64,
        };
        // SAFETY: argument and frame list valid; `gpfns` is the caller's promise.
        unsafe { hcall(nr::MEMORY_OP, xenmem::ACQUIRE_RESOURCE, ptr(&arg), 0) }.map(drop)
    }

    // ----- event channels --------------------------------------------------------------

    fn evtchn<T>(cmd: u64, arg: &mut T) -> Result<(), XenError> {
        // SAFETY: Xen reads and writes only the argument structure of `cmd`, which is `T`.
        unsafe { hcall(nr::EVENT_CHANNEL_OP, cmd, ptr_mut(arg), 0) }.map(drop)
    }

    /// `EVTCHNOP_bind_interdomain`: returns our local port.
    pub fn evtchn_bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32, XenError> {
        let mut a = EvtchnBindInterdomain {
            remote_dom,
            pad: 0,
            remote_port,
            local_port: 0,
        };
        evtchn(evtchnop::BIND_INTERDOMAIN, &mut a)?;
        Ok(a.local_port)
    }

    /// `EVTCHNOP_bind_virq` on `vcpu`: returns our port.
    pub fn evtchn_bind_virq(virq: u32, vcpu: u32) -> Result<u32, XenError> {
        let mut a = EvtchnBindVirq {
            virq,
            vcpu,
            port: 0,
        };
        evtchn(evtchnop::BIND_VIRQ, &mut a)?;
        Ok(a.port)
    }

    /// `EVTCHNOP_alloc_unbound`: a new port of ours that `remote_dom` may bind.
    pub fn evtchn_alloc_unbound(remote_dom: u16) -> Result<u32, XenError> {
        let mut a = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom,
            port: 0,
        };
        evtchn(evtchnop::ALLOC_UNBOUND, &mut a)?;
        Ok(a.port)
    }

    /// `EVTCHNOP_send`.
    pub fn evtchn_send(port: u32) -> Result<(), XenError> {
        evtchn(evtchnop::SEND, &mut EvtchnPort { port })
    }

    /// `EVTCHNOP_unmask` (Xen re-delivers events that arrived while masked).
    pub fn evtchn_unmask(port: u32) -> Result<(), XenError> {
        evtchn(evtchnop::UNMASK, &mut EvtchnPort { port })
    }

    /// `EVTCHNOP_close`.
    pub fn evtchn_close(port: u32) -> Result<(), XenError> {
        evtchn(evtchnop::CLOSE, &mut EvtchnPort { port })
    }

    // ----- grant tables ----------------------------------------------------------------

    /// `GNTTABOP_map_grant_ref` of one entry (status in `op.status`).
    ///
    /// # Safety
    /// `op.host_addr` must be unused IPA space.
    pub unsafe fn map_grant_ref(op: &mut GnttabMapGrantRef) -> Result<(), XenError> {
        // SAFETY: one valid entry; `host_addr` is the caller's promise.
        unsafe { hcall(nr::GRANT_TABLE_OP, gnttab::MAP_GRANT_REF, ptr_mut(op), 1) }.map(drop)
    }

    /// `GNTTABOP_unmap_grant_ref` of one entry (status in `op.status`).
    ///
    /// # Safety
    /// `op.host_addr` must be a grant mapping we made and no longer use.
    pub unsafe fn unmap_grant_ref(op: &mut GnttabUnmapGrantRef) -> Result<(), XenError> {
        // SAFETY: one valid entry; `host_addr` is the caller's promise.
        unsafe { hcall(nr::GRANT_TABLE_OP, gnttab::UNMAP_GRANT_REF, ptr_mut(op), 1) }.map(drop)
    }

    // ----- dm_op -----------------------------------------------------------------------

    /// `HYPERVISOR_dm_op(domid, 1, &buf)` with one `xen_dm_op`; OUT fields land in `op`.
    pub fn dm_op(domid: u16, op: &mut DmOp) -> Result<(), XenError> {
        let buf = DmOpBuf {
            h: ptr_mut(op),
            size: core::mem::size_of::<DmOp>() as u64,
        };
        // SAFETY: Xen reads the buffer descriptor and reads/writes the 32-byte op it names.
        unsafe { hcall(nr::DM_OP, domid as u64, 1, ptr(&buf)) }.map(drop)
    }

    impl XenOps for Hvc {
        unsafe fn add_to_physmap(&self, space: u16, idx: u64, gpfn: u64) -> Result<(), XenError> {
            // SAFETY: forwarded from the caller.
            unsafe { add_to_physmap(space, idx, gpfn) }
        }
        unsafe fn add_to_physmap_batch(
            &self,
            foreign: u16,
            idxs: &[u64],
            gpfns: &[u64],
            errs: &mut [i32],
        ) -> Result<(), XenError> {
            // SAFETY: forwarded from the caller.
            unsafe { add_to_physmap_batch(foreign, idxs, gpfns, errs) }
        }
        unsafe fn remove_from_physmap(&self, gpfn: u64) -> Result<(), XenError> {
            // SAFETY: forwarded from the caller.
            unsafe { remove_from_physmap(gpfn) }
        }
        unsafe fn acquire_ioreq_page(
            &self,
            domid: u16,
            id: u16,
            gpfn: u64,
        ) -> Result<(), XenError> {
            // SAFETY: forwarded from the caller.
            unsafe {
                acquire_resource(
                    domid,
                    abi::xenmem::RESOURCE_IOREQ_SERVER,
                    id as u32,
                    abi::xenmem::IOREQ_FRAME,
                    &[gpfn],
                )
            }
        }
        unsafe fn map_grant_ref(&self, op: &mut GnttabMapGrantRef) -> Result<(), XenError> {
            // SAFETY: forwarded from the caller.
            unsafe { map_grant_ref(op) }
        }
        unsafe fn unmap_grant_ref(&self, op: &mut GnttabUnmapGrantRef) -> Result<(), XenError> {
            // SAFETY: forwarded from the caller.
            unsafe { unmap_grant_ref(op) }
        }
        fn evtchn_bind_interdomain(
            &self,
            remote_dom: u16,
            remote_port: u32,
        ) -> Result<u32, XenError> {
            evtchn_bind_interdomain(remote_dom, remote_port)
        }
        fn evtchn_send(&self, port: u32) -> Result<(), XenError> {
            evtchn_send(port)
        }
        fn evtchn_unmask(&self, port: u32) -> Result<(), XenError> {
            evtchn_unmask(port)
        }
        fn evtchn_close(&self, port: u32) -> Result<(), XenError> {
            evtchn_close(port)
        }
        fn dm_op(&self, domid: u16, op: &mut DmOp) -> Result<(), XenError> {
            dm_op(domid, op)
        }
    }
}
