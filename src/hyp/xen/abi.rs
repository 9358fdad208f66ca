//! Xen's public ABI on arm64, in our own words: hypercall numbers, sub-op numbers and every
//! argument structure Backplane passes to Xen.
//!
//! Layouts follow `reference/xen.md` (computed from the Xen 4.20 public headers, unchanged
//! 4.17–4.20). Each structure is `#[repr(C)]` with explicit padding so that `zerocopy` can
//! prove it has no uninitialised bytes; the tests at the bottom pin every size and offset.
//! Pointer fields (`XEN_GUEST_HANDLE`) are plain `u64` addresses: dom0's stage-1 is an
//! identity map, and Xen translates them through it.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Hypercall numbers (`x16`), xen.md §2.
pub mod nr {
    /// `HYPERVISOR_memory_op`.
    pub const MEMORY_OP: u64 = 12;
    /// `HYPERVISOR_xen_version`.
    pub const XEN_VERSION: u64 = 17;
    /// `HYPERVISOR_console_io`.
    pub const CONSOLE_IO: u64 = 18;
    /// `HYPERVISOR_grant_table_op`.
    pub const GRANT_TABLE_OP: u64 = 20;
    /// `HYPERVISOR_vcpu_op`.
    pub const VCPU_OP: u64 = 24;
    /// `HYPERVISOR_sched_op`.
    pub const SCHED_OP: u64 = 29;
    /// `HYPERVISOR_event_channel_op`.
    pub const EVENT_CHANNEL_OP: u64 = 32;
    /// `HYPERVISOR_dm_op`.
    pub const DM_OP: u64 = 41;
}

/// `memory_op` commands.
pub mod xenmem {
    /// `XENMEM_add_to_physmap`.
    pub const ADD_TO_PHYSMAP: u64 = 7;
    /// `XENMEM_remove_from_physmap`.
    pub const REMOVE_FROM_PHYSMAP: u64 = 15;
    /// `XENMEM_add_to_physmap_batch`.
    pub const ADD_TO_PHYSMAP_BATCH: u64 = 23;
    /// `XENMEM_acquire_resource`.
    pub const ACQUIRE_RESOURCE: u64 = 28;
    /// Resource type of an ioreq server's pages.
    pub const RESOURCE_IOREQ_SERVER: u16 = 0;
    /// Frame index of the synchronous ioreq page `ioreq(0)` (frame 0 is bufioreq, off on Arm).
    pub const IOREQ_FRAME: u64 = 1;
}

/// `XENMAPSPACE_*` values for the add_to_physmap family.
pub mod mapspace {
    /// The domain's shared_info page.
    pub const SHARED_INFO: u16 = 0;
    /// A frame of the domain's own grant table.
    pub const GRANT_TABLE: u16 = 1;
    /// Another domain's guest frame (foreign mapping).
    pub const GMFN_FOREIGN: u16 = 4;
}

/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7FF0;

/// `xen_version` commands.
pub mod xenver {
    /// Returns `major << 16 | minor`.
    pub const VERSION: u64 = 0;
    /// Fills a 16-byte buffer with the extra version string.
    pub const EXTRAVERSION: u64 = 1;
}

/// `console_io` commands.
pub mod consoleio {
    /// `CONSOLEIO_write`.
    pub const WRITE: u64 = 0;
    /// `CONSOLEIO_read`.
    pub const READ: u64 = 1;
}

/// `grant_table_op` commands and flags.
pub mod gnttab {
    /// `GNTTABOP_map_grant_ref`.
    pub const MAP_GRANT_REF: u64 = 0;
    /// `GNTTABOP_unmap_grant_ref`.
    pub const UNMAP_GRANT_REF: u64 = 1;
    /// `GNTMAP_host_map`: the only mapping kind Arm accepts.
    pub const GNTMAP_HOST_MAP: u32 = 2;
    /// `GNTMAP_readonly`.
    pub const GNTMAP_READONLY: u32 = 4;
}

/// `vcpu_op` commands.
pub mod vcpuop {
    /// `VCPUOP_register_vcpu_info`.
    pub const REGISTER_VCPU_INFO: u64 = 10;
}

/// `sched_op` commands and shutdown reasons.
pub mod schedop {
    /// `SCHEDOP_yield`.
    pub const YIELD: u64 = 0;
    /// `SCHEDOP_shutdown`.
    pub const SHUTDOWN: u64 = 2;
    /// `SHUTDOWN_poweroff`.
    pub const POWEROFF: u32 = 0;
    /// `SHUTDOWN_reboot`.
    pub const REBOOT: u32 = 1;
    /// `SHUTDOWN_crash`.
    pub const CRASH: u32 = 3;
}

/// `event_channel_op` commands, xen.md §8.
pub mod evtchnop {
    /// `EVTCHNOP_bind_interdomain`.
    pub const BIND_INTERDOMAIN: u64 = 0;
    /// `EVTCHNOP_bind_virq`.
    pub const BIND_VIRQ: u64 = 1;
    /// `EVTCHNOP_close`.
    pub const CLOSE: u64 = 3;
    /// `EVTCHNOP_send`.
    pub const SEND: u64 = 4;
    /// `EVTCHNOP_alloc_unbound`.
    pub const ALLOC_UNBOUND: u64 = 6;
    /// `EVTCHNOP_unmask`.
    pub const UNMASK: u64 = 9;
    /// `VIRQ_CONSOLE`: console input arrived.
    pub const VIRQ_CONSOLE: u32 = 2;
}

/// `dm_op` sub-ops (only these exist on Arm), xen.md §3.
pub mod dmop {
    /// `XEN_DMOP_create_ioreq_server`.
    pub const CREATE_IOREQ_SERVER: u32 = 1;
    /// `XEN_DMOP_map_io_range_to_ioreq_server`.
    pub const MAP_IO_RANGE: u32 = 3;
    /// `XEN_DMOP_unmap_io_range_from_ioreq_server`.
    pub const UNMAP_IO_RANGE: u32 = 4;
    /// `XEN_DMOP_set_ioreq_server_state`.
    pub const SET_IOREQ_SERVER_STATE: u32 = 5;
    /// `XEN_DMOP_destroy_ioreq_server`.
    pub const DESTROY_IOREQ_SERVER: u32 = 6;
    /// `XEN_DMOP_set_irq_level` (Arm only).
    pub const SET_IRQ_LEVEL: u32 = 19;
    /// `XEN_DMOP_nr_vcpus`.
    pub const NR_VCPUS: u32 = 20;
    /// `XEN_DMOP_IO_RANGE_MEMORY`: the range type for virtio-mmio windows.
    pub const IO_RANGE_MEMORY: u32 = 1;
}

/// ioreq states and types, xen.md §4.
pub mod ioreq {
    /// Slot free.
    pub const STATE_NONE: u8 = 0;
    /// Xen posted a request.
    pub const STATE_IOREQ_READY: u8 = 1;
    /// The device model is working on it (optional).
    pub const STATE_INPROCESS: u8 = 2;
    /// The device model answered.
    pub const STATE_IORESP_READY: u8 = 3;
    /// Mask of the state in the bitfield byte (offset 30).
    pub const STATE_MASK: u8 = 0x0F;
    /// `data_is_ptr` bit of the bitfield byte.
    pub const DATA_IS_PTR: u8 = 1 << 4;
    /// `dir` bit of the bitfield byte: 1 = read, 0 = write.
    pub const DIR_READ: u8 = 1 << 5;
    /// `IOREQ_TYPE_COPY`: MMIO, the only type Xen sends on Arm.
    pub const TYPE_COPY: u8 = 1;
    /// Slots in the one ioreq page (`GUEST_MAX_VCPUS` on Arm).
    pub const SLOTS_PER_PAGE: usize = 128;
}

/// Page size and shift for Xen frame numbers on arm64 (4 KiB granule).
pub const PAGE_SHIFT: u32 = 12;
/// 4 KiB.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

// ---------------------------------------------------------------------------------------------
// memory_op

/// `xen_add_to_physmap` (XENMEM_add_to_physmap, 24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct AddToPhysmap {
    /// Domain whose physmap changes (`DOMID_SELF`).
    pub domid: u16,
    /// Number of pages for `gmfn_range` (unused here).
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space (e.g. grant frame, 0 for shared_info).
    pub idx: u64,
    /// Frame in our IPA space where it appears.
    pub gpfn: u64,
}

/// `xen_add_to_physmap_batch` (XENMEM_add_to_physmap_batch, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct AddToPhysmapBatch {
    /// Domain whose physmap changes (`DOMID_SELF`).
    pub domid: u16,
    /// `XENMAPSPACE_*` (`GMFN_FOREIGN`).
    pub space: u16,
    /// Number of entries in the three arrays.
    pub size: u16,
    /// Source domain of the frames.
    pub foreign_domid: u16,
    /// Pointer to `u64[size]`: frames in the source domain.
    pub idxs: u64,
    /// Pointer to `u64[size]`: frames in our IPA space.
    pub gpfns: u64,
    /// Pointer to `i32[size]`: per-page result (OUT).
    pub errs: u64,
}

/// `xen_remove_from_physmap` (XENMEM_remove_from_physmap, 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct RemoveFromPhysmap {
    /// Domain whose physmap changes (`DOMID_SELF`).
    pub domid: u16,
    /// Padding to the 8-byte `gpfn`.
    pub pad: [u8; 6],
    /// Frame to remove.
    pub gpfn: u64,
}

/// `xen_mem_acquire_resource` (XENMEM_acquire_resource, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct MemAcquireResource {
    /// Target domain.
    pub domid: u16,
    /// Resource type (`RESOURCE_IOREQ_SERVER`).
    pub kind: u16,
    /// Resource id (ioreq server id).
    pub id: u32,
    /// IN/OUT number of frames.
    pub nr_frames: u32,
    /// Must be zero.
    pub pad: u32,
    /// First frame index.
    pub frame: u64,
    /// Pointer to `u64[nr_frames]`: on Arm, the IPA frames where Xen installs the pages (IN).
    pub frame_list: u64,
}

// ---------------------------------------------------------------------------------------------
// dm_op

/// `xen_dm_op_buf` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct DmOpBuf {
    /// Pointer to the buffer.
    pub h: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// `xen_dm_op` (32 bytes): the op number and a 24-byte union of sub-op structures.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct DmOp {
    /// `XEN_DMOP_*`.
    pub op: u32,
    /// Must be zero.
    pub pad: u32,
    /// The sub-op structure's bytes.
    pub u: [u8; 24],
}

impl DmOp {
    /// Builds an op whose union holds `sub` (zero-filled after it).
    pub fn new<T: IntoBytes + Immutable>(op: u32, sub: &T) -> Self {
        let mut me = DmOp {
            op,
            pad: 0,
            u: [0; 24],
        };
        let bytes = sub.as_bytes();
        me.u[..bytes.len()].copy_from_slice(bytes);
        me
    }

    /// Reads the union back as `T` (for ops with OUT fields).
    pub fn sub<T: FromBytes>(&self) -> T {
        // Every sub-op structure is at most 24 bytes; a larger `T` is a bug in this module.
        T::read_from_prefix(&self.u)
            .map(|(t, _)| t)
            .unwrap_or_else(|_| T::new_zeroed())
    }
}

/// `xen_dm_op_create_ioreq_server` (6 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct DmCreateIoreqServer {
    /// `HVM_IOREQSRV_BUFIOREQ_*`; must be 0 (off) on Arm.
    pub handle_bufioreq: u8,
    /// Zero.
    pub pad: [u8; 3],
    /// OUT: the new server's id.
    pub id: u16,
}

/// `xen_dm_op_ioreq_server_range` (24 bytes), for map and unmap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct DmIoRange {
    /// Server id.
    pub id: u16,
    /// Zero.
    pub pad: u16,
    /// `XEN_DMOP_IO_RANGE_*`.
    pub kind: u32,
    /// First address.
    pub start: u64,
    /// Last address (inclusive).
    pub end: u64,
}

/// `xen_dm_op_set_ioreq_server_state` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct DmSetIoreqServerState {
    /// Server id.
    pub id: u16,
    /// 1 = enabled.
    pub enabled: u8,
    /// Zero.
    pub pad: u8,
}

/// `xen_dm_op_destroy_ioreq_server` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct DmDestroyIoreqServer {
    /// Server id.
    pub id: u16,
    /// Zero.
    pub pad: u16,
}

/// `xen_dm_op_set_irq_level` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct DmSetIrqLevel {
    /// SPI number (>= 32).
    pub irq: u32,
    /// 0 or 1.
    pub level: u8,
    /// Zero.
    pub pad: [u8; 3],
}

/// `xen_dm_op_nr_vcpus` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct DmNrVcpus {
    /// OUT: the target's `max_vcpus`.
    pub vcpus: u32,
}

// ---------------------------------------------------------------------------------------------
// ioreq page

/// `ioreq_t` (32 bytes): one slot of the shared ioreq page, indexed by vCPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct Ioreq {
    /// Guest physical address of the access.
    pub addr: u64,
    /// Write: the value; read: the device model's answer.
    pub data: u64,
    /// Always 1 on Arm.
    pub count: u32,
    /// Access size in bytes.
    pub size: u32,
    /// The domU-side port for this vCPU.
    pub vp_eport: u32,
    /// Padding.
    pub pad0: u16,
    /// Bits 0–3 state, 4 data_is_ptr, 5 dir (1 = read), 6 df.
    pub flags: u8,
    /// `IOREQ_TYPE_*`.
    pub kind: u8,
}

// ---------------------------------------------------------------------------------------------
// grant tables

/// `gnttab_map_grant_ref` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct GnttabMapGrantRef {
    /// IPA (page-aligned) in our space where the granted page appears.
    pub host_addr: u64,
    /// `GNTMAP_*`.
    pub flags: u32,
    /// Grant reference.
    pub gref: u32,
    /// Granting domain.
    pub dom: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle for unmapping.
    pub handle: u32,
    /// OUT: unused on Arm.
    pub dev_bus_addr: u64,
}

/// `gnttab_unmap_grant_ref` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct GnttabUnmapGrantRef {
    /// The `host_addr` given at map time.
    pub host_addr: u64,
    /// Unused on Arm.
    pub dev_bus_addr: u64,
    /// The handle map returned.
    pub handle: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad: u16,
}

// ---------------------------------------------------------------------------------------------
// event channels, vcpu, sched

/// `evtchn_bind_interdomain` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct EvtchnBindInterdomain {
    /// Remote domain.
    pub remote_dom: u16,
    /// Padding.
    pub pad: u16,
    /// Remote (unbound) port.
    pub remote_port: u32,
    /// OUT: our port.
    pub local_port: u32,
}

/// `evtchn_bind_virq` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct EvtchnBindVirq {
    /// `VIRQ_*`.
    pub virq: u32,
    /// vCPU to deliver to.
    pub vcpu: u32,
    /// OUT: our port.
    pub port: u32,
}

/// `evtchn_close`, `evtchn_send`, `evtchn_unmask` (4 bytes each).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct EvtchnPort {
    /// The port.
    pub port: u32,
}

/// `evtchn_alloc_unbound` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct EvtchnAllocUnbound {
    /// Domain that owns the new port (`DOMID_SELF`).
    pub dom: u16,
    /// Domain allowed to bind it.
    pub remote_dom: u16,
    /// OUT: the port.
    pub port: u32,
}

/// `vcpu_register_vcpu_info` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct VcpuRegisterVcpuInfo {
    /// Our frame number (a GFN despite the name).
    pub mfn: u64,
    /// Byte offset of the 48-byte block in that frame.
    pub offset: u32,
    /// Zero.
    pub rsvd: u32,
}

/// `sched_shutdown` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

// ---------------------------------------------------------------------------------------------
// shared_info / vcpu_info (plain forms; the live ones with atomics are in `events.rs`)

/// `vcpu_info` on arm64 (48 bytes). There is no upcall mask on Arm.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct VcpuInfo {
    /// Set by Xen when an event is pending for this vCPU.
    pub evtchn_upcall_pending: u8,
    /// Padding (not a mask on Arm).
    pub pad0: [u8; 7],
    /// One bit per word of `evtchn_pending` that has pending bits.
    pub evtchn_pending_sel: u64,
    /// `vcpu_time_info` (unused here).
    pub time: [u8; 32],
}

/// `shared_info` on arm64 (1088 bytes used).
#[repr(C)]
#[derive(Clone, Copy, Debug, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct SharedInfo {
    /// `vcpu_info` of vCPU 0 (`XEN_LEGACY_MAX_VCPUS` = 1).
    pub vcpu_info: [VcpuInfo; 1],
    /// 2-level pending bitmap: 4096 ports.
    pub evtchn_pending: [u64; 64],
    /// 2-level mask bitmap.
    pub evtchn_mask: [u64; 64],
    /// Wallclock version.
    pub wc_version: u32,
    /// Wallclock seconds.
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// Wallclock seconds, high word.
    pub wc_sec_hi: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn memory_op_layouts() {
        assert_eq!(size_of::<AddToPhysmap>(), 24);
        assert_eq!(offset_of!(AddToPhysmap, size), 2);
        assert_eq!(offset_of!(AddToPhysmap, space), 4);
        assert_eq!(offset_of!(AddToPhysmap, idx), 8);
        assert_eq!(offset_of!(AddToPhysmap, gpfn), 16);

        assert_eq!(size_of::<AddToPhysmapBatch>(), 32);
        assert_eq!(offset_of!(AddToPhysmapBatch, space), 2);
        assert_eq!(offset_of!(AddToPhysmapBatch, size), 4);
        assert_eq!(offset_of!(AddToPhysmapBatch, foreign_domid), 6);
        assert_eq!(offset_of!(AddToPhysmapBatch, idxs), 8);
        assert_eq!(offset_of!(AddToPhysmapBatch, gpfns), 16);
        assert_eq!(offset_of!(AddToPhysmapBatch, errs), 24);

        assert_eq!(size_of::<RemoveFromPhysmap>(), 16);
        assert_eq!(offset_of!(RemoveFromPhysmap, gpfn), 8);

        assert_eq!(size_of::<MemAcquireResource>(), 32);
        assert_eq!(offset_of!(MemAcquireResource, kind), 2);
        assert_eq!(offset_of!(MemAcquireResource, id), 4);
        assert_eq!(offset_of!(MemAcquireResource, nr_frames), 8);
        assert_eq!(offset_of!(MemAcquireResource, pad), 12);
        assert_eq!(offset_of!(MemAcquireResource, frame), 16);
        assert_eq!(offset_of!(MemAcquireResource, frame_list), 24);
    }

    #[test]
    fn dm_op_layouts() {
        assert_eq!(size_of::<DmOpBuf>(), 16);
        assert_eq!(offset_of!(DmOpBuf, size), 8);
        assert_eq!(size_of::<DmOp>(), 32);
        assert_eq!(offset_of!(DmOp, pad), 4);
        assert_eq!(offset_of!(DmOp, u), 8);

        assert_eq!(size_of::<DmCreateIoreqServer>(), 6);
        assert_eq!(offset_of!(DmCreateIoreqServer, pad), 1);
        assert_eq!(offset_of!(DmCreateIoreqServer, id), 4);

        assert_eq!(size_of::<DmIoRange>(), 24);
        assert_eq!(offset_of!(DmIoRange, pad), 2);
        assert_eq!(offset_of!(DmIoRange, kind), 4);
        assert_eq!(offset_of!(DmIoRange, start), 8);
        assert_eq!(offset_of!(DmIoRange, end), 16);

        assert_eq!(size_of::<DmSetIoreqServerState>(), 4);
        assert_eq!(offset_of!(DmSetIoreqServerState, enabled), 2);
        assert_eq!(offset_of!(DmSetIoreqServerState, pad), 3);

        assert_eq!(size_of::<DmDestroyIoreqServer>(), 4);
        assert_eq!(offset_of!(DmDestroyIoreqServer, pad), 2);

        assert_eq!(size_of::<DmSetIrqLevel>(), 8);
        assert_eq!(offset_of!(DmSetIrqLevel, level), 4);
        assert_eq!(offset_of!(DmSetIrqLevel, pad), 5);

        assert_eq!(size_of::<DmNrVcpus>(), 4);
    }

    #[test]
    fn dm_op_union_round_trip() {
        let op = DmOp::new(
            dmop::CREATE_IOREQ_SERVER,
            &DmCreateIoreqServer {
                handle_bufioreq: 0,
                pad: [0; 3],
                id: 0,
            },
        );
        let mut bytes = op.as_bytes().to_vec();
        assert_eq!(&bytes[0..4], &1u32.to_le_bytes());
        // Xen writes the OUT id at union offset 4 = buffer offset 12.
        bytes[12..14].copy_from_slice(&7u16.to_le_bytes());
        let back = DmOp::read_from_bytes(&bytes[..]).unwrap();
        assert_eq!(back.sub::<DmCreateIoreqServer>().id, 7);

        let r = DmOp::new(
            dmop::MAP_IO_RANGE,
            &DmIoRange {
                id: 3,
                pad: 0,
                kind: 1,
                start: 0x200_0000,
                end: 0x200_01ff,
            },
        );
        let b = r.as_bytes();
        assert_eq!(&b[8..10], &3u16.to_le_bytes());
        assert_eq!(&b[12..16], &1u32.to_le_bytes());
        assert_eq!(&b[16..24], &0x200_0000u64.to_le_bytes());
        assert_eq!(&b[24..32], &0x200_01ffu64.to_le_bytes());
    }

    #[test]
    fn ioreq_layout() {
        assert_eq!(size_of::<Ioreq>(), 32);
        assert_eq!(offset_of!(Ioreq, data), 8);
        assert_eq!(offset_of!(Ioreq, count), 16);
        assert_eq!(offset_of!(Ioreq, size), 20);
        assert_eq!(offset_of!(Ioreq, vp_eport), 24);
        assert_eq!(offset_of!(Ioreq, pad0), 28);
        assert_eq!(offset_of!(Ioreq, flags), 30);
        assert_eq!(offset_of!(Ioreq, kind), 31);
        assert_eq!(
            ioreq::SLOTS_PER_PAGE * size_of::<Ioreq>(),
            PAGE_SIZE as usize
        );
    }

    #[test]
    fn grant_layouts() {
        assert_eq!(size_of::<GnttabMapGrantRef>(), 32);
        assert_eq!(offset_of!(GnttabMapGrantRef, flags), 8);
        assert_eq!(offset_of!(GnttabMapGrantRef, gref), 12);
        assert_eq!(offset_of!(GnttabMapGrantRef, dom), 16);
        assert_eq!(offset_of!(GnttabMapGrantRef, status), 18);
        assert_eq!(offset_of!(GnttabMapGrantRef, handle), 20);
        assert_eq!(offset_of!(GnttabMapGrantRef, dev_bus_addr), 24);

        assert_eq!(size_of::<GnttabUnmapGrantRef>(), 24);
        assert_eq!(offset_of!(GnttabUnmapGrantRef, dev_bus_addr), 8);
        assert_eq!(offset_of!(GnttabUnmapGrantRef, handle), 16);
        assert_eq!(offset_of!(GnttabUnmapGrantRef, status), 20);
    }

    #[test]
    fn evtchn_vcpu_sched_layouts() {
        assert_eq!(size_of::<EvtchnBindInterdomain>(), 12);
        assert_eq!(offset_of!(EvtchnBindInterdomain, remote_port), 4);
        assert_eq!(offset_of!(EvtchnBindInterdomain, local_port), 8);
        assert_eq!(size_of::<EvtchnBindVirq>(), 12);
        assert_eq!(offset_of!(EvtchnBindVirq, vcpu), 4);
        assert_eq!(offset_of!(EvtchnBindVirq, port), 8);
        assert_eq!(size_of::<EvtchnPort>(), 4);
        assert_eq!(size_of::<EvtchnAllocUnbound>(), 8);
        assert_eq!(offset_of!(EvtchnAllocUnbound, remote_dom), 2);
        assert_eq!(offset_of!(EvtchnAllocUnbound, port), 4);
        assert_eq!(size_of::<VcpuRegisterVcpuInfo>(), 16);
        assert_eq!(offset_of!(VcpuRegisterVcpuInfo, offset), 8);
        assert_eq!(offset_of!(VcpuRegisterVcpuInfo, rsvd), 12);
        assert_eq!(size_of::<SchedShutdown>(), 4);
    }

    #[test]
    fn shared_info_layout() {
        assert_eq!(size_of::<VcpuInfo>(), 48);
        assert_eq!(offset_of!(VcpuInfo, pad0), 1);
        assert_eq!(offset_of!(VcpuInfo, evtchn_pending_sel), 8);
        assert_eq!(offset_of!(VcpuInfo, time), 16);
        assert_eq!(size_of::<SharedInfo>(), 1088);
        assert_eq!(offset_of!(SharedInfo, evtchn_pending), 48);
        assert_eq!(offset_of!(SharedInfo, evtchn_mask), 560);
        assert_eq!(offset_of!(SharedInfo, wc_version), 1072);
        assert_eq!(offset_of!(SharedInfo, wc_sec), 1076);
        assert_eq!(offset_of!(SharedInfo, wc_nsec), 1080);
        assert_eq!(offset_of!(SharedInfo, wc_sec_hi), 1084);
    }
}
