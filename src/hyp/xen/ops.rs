//! The hypercalls the adapter's stateful parts need, behind one trait, so the ioreq protocol,
//! the foreign-mapping cache and the event code are tested on the host against a fake Xen.
//!
//! The image implements it with [`Hvc`](super::hypercall::Hvc); the `dm_op` sub-ops are
//! provided methods built on [`XenOps::dm_op`], so a fake decodes only one structure.

use super::abi::{self, DmOp};
use super::error::XenError;

/// Xen operations used by the ioreq server, guest memory and events code.
pub trait XenOps {
    /// `XENMEM_add_to_physmap` into our own physmap.
    ///
    /// # Safety
    /// `gpfn` must be unused IPA space (an extended region).
    unsafe fn add_to_physmap(&self, space: u16, idx: u64, gpfn: u64) -> Result<(), XenError>;

    /// `XENMEM_add_to_physmap_batch` (space `gmfn_foreign`) of `foreign`'s frames `idxs` at our
    /// frames `gpfns`; per-page results in `errs`.
    ///
    /// # Safety
    /// Every `gpfns` entry must be unused IPA space.
    unsafe fn add_to_physmap_batch(
        &self,
        foreign: u16,
        idxs: &[u64],
        gpfns: &[u64],
        errs: &mut [i32],
    ) -> Result<(), XenError>;

    /// `XENMEM_remove_from_physmap` of our frame `gpfn`.
    ///
    /// # Safety
    /// `gpfn` must be a mapping we made and no longer reference.
    unsafe fn remove_from_physmap(&self, gpfn: u64) -> Result<(), XenError>;

    /// `XENMEM_acquire_resource` of ioreq server `id`'s synchronous page (`ioreq(0)`) of
    /// `domid`, installed at our frame `gpfn`.
    ///
    /// # Safety
    /// `gpfn` must be unused IPA space.
    unsafe fn acquire_ioreq_page(&self, domid: u16, id: u16, gpfn: u64) -> Result<(), XenError>;

    /// `GNTTABOP_map_grant_ref` of one entry; per-entry status in `op.status`.
    ///
    /// # Safety
    /// `op.host_addr` must be unused IPA space.
    unsafe fn map_grant_ref(&self, op: &mut abi::GnttabMapGrantRef) -> Result<(), XenError>;

    /// `GNTTABOP_unmap_grant_ref` of one entry; per-entry status in `op.status`.
    ///
    /// # Safety
    /// `op.host_addr` must be a grant mapping we made and no longer reference.
    unsafe fn unmap_grant_ref(&self, op: &mut abi::GnttabUnmapGrantRef) -> Result<(), XenError>;

    /// `EVTCHNOP_bind_interdomain`: returns our local port.
    fn evtchn_bind_interdomain(&self, remote_dom: u16, remote_port: u32) -> Result<u32, XenError>;
    /// `EVTCHNOP_send`.
    fn evtchn_send(&self, port: u32) -> Result<(), XenError>;
    /// `EVTCHNOP_unmask`.
    fn evtchn_unmask(&self, port: u32) -> Result<(), XenError>;
    /// `EVTCHNOP_close`.
    fn evtchn_close(&self, port: u32) -> Result<(), XenError>;

    /// One `xen_dm_op` on `domid`; OUT fields are written back into `op`.
    fn dm_op(&self, domid: u16, op: &mut DmOp) -> Result<(), XenError>;

    /// `XEN_DMOP_create_ioreq_server` with bufioreq off (the only choice on Arm): the new id.
    fn create_ioreq_server(&self, domid: u16) -> Result<u16, XenError> {
        let mut op = DmOp::new(
            abi::dmop::CREATE_IOREQ_SERVER,
            &abi::DmCreateIoreqServer::default(),
        );
        self.dm_op(domid, &mut op)?;
        Ok(op.sub::<abi::DmCreateIoreqServer>().id)
    }

    /// `XEN_DMOP_map_io_range_to_ioreq_server`, type memory, `last` inclusive.
    fn map_io_range(&self, domid: u16, id: u16, first: u64, last: u64) -> Result<(), XenError> {
        let r = abi::DmIoRange {
            id,
            pad: 0,
            kind: abi::dmop::IO_RANGE_MEMORY,
            start: first,
            end: last,
        };
        self.dm_op(domid, &mut DmOp::new(abi::dmop::MAP_IO_RANGE, &r))
    }

    /// `XEN_DMOP_unmap_io_range_from_ioreq_server`, type memory, `last` inclusive.
    fn unmap_io_range(&self, domid: u16, id: u16, first: u64, last: u64) -> Result<(), XenError> {
        let r = abi::DmIoRange {
            id,
            pad: 0,
            kind: abi::dmop::IO_RANGE_MEMORY,
            start: first,
            end: last,
        };
        self.dm_op(domid, &mut DmOp::new(abi::dmop::UNMAP_IO_RANGE, &r))
    }

    /// `XEN_DMOP_set_ioreq_server_state`.
    fn set_ioreq_server_state(&self, domid: u16, id: u16, enabled: bool) -> Result<(), XenError> {
        let s = abi::DmSetIoreqServerState {
            id,
            enabled: enabled as u8,
            pad: 0,
        };
        self.dm_op(domid, &mut DmOp::new(abi::dmop::SET_IOREQ_SERVER_STATE, &s))
    }

    /// `XEN_DMOP_destroy_ioreq_server`.
    fn destroy_ioreq_server(&self, domid: u16, id: u16) -> Result<(), XenError> {
        let d = abi::DmDestroyIoreqServer { id, pad: 0 };
        self.dm_op(domid, &mut DmOp::new(abi::dmop::DESTROY_IOREQ_SERVER, &d))
    }

    /// `XEN_DMOP_set_irq_level` (Arm: level 1 injects the SPI once; level 0 is ignored).
    fn set_irq_level(&self, domid: u16, spi: u32, level: bool) -> Result<(), XenError> {
        let l = abi::DmSetIrqLevel {
            irq: spi,
            level: level as u8,
            pad: [0; 3],
        };
        self.dm_op(domid, &mut DmOp::new(abi::dmop::SET_IRQ_LEVEL, &l))
    }

    /// `XEN_DMOP_nr_vcpus`: the target's `max_vcpus`.
    fn nr_vcpus(&self, domid: u16) -> Result<u32, XenError> {
        let mut op = DmOp::new(abi::dmop::NR_VCPUS, &abi::DmNrVcpus::default());
        self.dm_op(domid, &mut op)?;
        Ok(op.sub::<abi::DmNrVcpus>().vcpus)
    }
}

/// A scripted Xen for host tests: records calls, answers dm_ops, and "maps" pages by writing
/// a recognisable pattern into host memory at the given frame (host tests use host buffer
/// addresses as IPAs, which is what dom0's identity map makes them in the image).
#[cfg(test)]
pub mod fake {
    use super::*;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use std::rc::Rc;

    /// A recorded call.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Call {
        /// add_to_physmap(space, idx, gpfn)
        AddToPhysmap(u16, u64, u64),
        /// add_to_physmap_batch(foreign, idxs, gpfns)
        Batch(u16, Vec<u64>, Vec<u64>),
        /// remove_from_physmap(gpfn)
        Remove(u64),
        /// acquire_ioreq_page(domid, id, gpfn)
        Acquire(u16, u16, u64),
        /// map_grant_ref(dom, gref, host_addr, flags)
        MapGrant(u16, u32, u64, u32),
        /// unmap_grant_ref(host_addr, handle)
        UnmapGrant(u64, u32),
        /// bind_interdomain(remote_dom, remote_port)
        Bind(u16, u32),
        /// send(port)
        Send(u32),
        /// unmask(port)
        Unmask(u32),
        /// close(port)
        Close(u32),
        /// dm_op(domid, op number, union bytes)
        Dm(u16, u32, [u8; 24]),
    }

    /// Shared state of the fake.
    #[derive(Default)]
    pub struct State {
        /// Every call in order.
        pub calls: Vec<Call>,
        /// Answer to every dm_op (e.g. `Some(ENOSYS)` for a Xen without IOREQ).
        pub dm_error: Option<XenError>,
        /// vCPU count the fake domain reports.
        pub vcpus: u32,
        /// Foreign frames (in the source domain) that fail with -EINVAL per page.
        pub bad_gfns: Vec<u64>,
        /// Next local port handed out by bind_interdomain.
        pub next_port: u32,
        /// Where acquire_ioreq_page installs the "page" (host address = gpfn << 12); the fake
        /// writes vp_eport = 100 + vcpu into each slot when the server is enabled.
        pub ioreq_gpfn: Option<u64>,
        /// Behave like a Xen that never wrote vp_eport (page acquired after enabling).
        pub skip_eports: bool,
    }

    /// The fake, cheap to clone (shared state).
    #[derive(Clone, Default)]
    pub struct FakeXen(pub Rc<RefCell<State>>);

    impl FakeXen {
        /// A fake whose domains have `vcpus` vCPUs.
        pub fn new(vcpus: u32) -> Self {
            let f = FakeXen::default();
            f.0.borrow_mut().vcpus = vcpus;
            f.0.borrow_mut().next_port = 10;
            f
        }
        /// The calls so far.
        pub fn calls(&self) -> Vec<Call> {
            self.0.borrow().calls.clone()
        }
        /// Forget recorded calls.
        pub fn clear(&self) {
            self.0.borrow_mut().calls.clear();
        }
        fn push(&self, c: Call) {
            self.0.borrow_mut().calls.push(c);
        }
    }

    /// The byte pattern the fake puts at offset `i` of foreign frame `gfn`.
    pub fn pattern(gfn: u64, i: usize) -> u8 {
        (gfn as u8).wrapping_mul(31).wrapping_add(i as u8)
    }

    impl XenOps for FakeXen {
        unsafe fn add_to_physmap(&self, space: u16, idx: u64, gpfn: u64) -> Result<(), XenError> {
            self.push(Call::AddToPhysmap(space, idx, gpfn));
            Ok(())
        }
        unsafe fn add_to_physmap_batch(
            &self,
            foreign: u16,
            idxs: &[u64],
            gpfns: &[u64],
            errs: &mut [i32],
        ) -> Result<(), XenError> {
            self.push(Call::Batch(foreign, idxs.to_vec(), gpfns.to_vec()));
            let bad = self.0.borrow().bad_gfns.clone();
            for ((&idx, &gpfn), err) in idxs.iter().zip(gpfns).zip(errs.iter_mut()) {
                if bad.contains(&idx) {
                    *err = -22;
                    continue;
                }
                *err = 0;
                let page = (gpfn << 12) as *mut u8;
                for i in 0..4096 {
                    // SAFETY: tests pass gpfns of host buffers they own (IPA == VA).
                    unsafe { page.add(i).write(pattern(idx, i)) };
                }
            }
            Ok(())
        }
        unsafe fn remove_from_physmap(&self, gpfn: u64) -> Result<(), XenError> {
            self.push(Call::Remove(gpfn));
            Ok(())
        }
        unsafe fn acquire_ioreq_page(
            &self,
            domid: u16,
            id: u16,
            gpfn: u64,
        ) -> Result<(), XenError> {
            self.push(Call::Acquire(domid, id, gpfn));
            self.0.borrow_mut().ioreq_gpfn = Some(gpfn);
            Ok(())
        }
        unsafe fn map_grant_ref(&self, op: &mut abi::GnttabMapGrantRef) -> Result<(), XenError> {
            self.push(Call::MapGrant(op.dom, op.gref, op.host_addr, op.flags));
            if self.0.borrow().bad_gfns.contains(&(op.gref as u64)) {
                op.status = -3;
                return Ok(());
            }
            let page = op.host_addr as *mut u8;
            for i in 0..4096 {
                // SAFETY: tests pass host buffers they own as host_addr (IPA == VA).
                unsafe { page.add(i).write(pattern(op.gref as u64, i)) };
            }
            op.status = 0;
            op.handle = op.gref + 1000;
            Ok(())
        }
        unsafe fn unmap_grant_ref(
            &self,
            op: &mut abi::GnttabUnmapGrantRef,
        ) -> Result<(), XenError> {
            self.push(Call::UnmapGrant(op.host_addr, op.handle));
            op.status = 0;
            Ok(())
        }
        fn evtchn_bind_interdomain(
            &self,
            remote_dom: u16,
            remote_port: u32,
        ) -> Result<u32, XenError> {
            self.push(Call::Bind(remote_dom, remote_port));
            let mut s = self.0.borrow_mut();
            s.next_port += 1;
            Ok(s.next_port - 1)
        }
        fn evtchn_send(&self, port: u32) -> Result<(), XenError> {
            self.push(Call::Send(port));
            Ok(())
        }
        fn evtchn_unmask(&self, port: u32) -> Result<(), XenError> {
            self.push(Call::Unmask(port));
            Ok(())
        }
        fn evtchn_close(&self, port: u32) -> Result<(), XenError> {
            self.push(Call::Close(port));
            Ok(())
        }
        fn dm_op(&self, domid: u16, op: &mut DmOp) -> Result<(), XenError> {
            self.push(Call::Dm(domid, op.op, op.u));
            let s = self.0.borrow();
            if let Some(e) = s.dm_error {
                return Err(e);
            }
            match op.op {
                abi::dmop::CREATE_IOREQ_SERVER => op.u[4..6].copy_from_slice(&5u16.to_le_bytes()),
                abi::dmop::NR_VCPUS => op.u[0..4].copy_from_slice(&s.vcpus.to_le_bytes()),
                abi::dmop::SET_IOREQ_SERVER_STATE if op.u[2] == 1 => {
                    if let (Some(gpfn), false) = (s.ioreq_gpfn, s.skip_eports) {
                        for v in 0..s.vcpus as usize {
                            let p = ((gpfn << 12) as usize + 32 * v + 24) as *mut u32;
                            // SAFETY: the test's ioreq page is a host buffer it owns.
                            unsafe { p.write(100 + v as u32) };
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        }
    }
}
