//! Hypervisor adapters: each turns its hypervisor's events into calls on the hub.
//!
//! The ABI layouts compile on the host so their sizes and offsets are tested
//! there; the calls themselves exist only in the image.
#[cfg(not(bp_no_core))]
pub mod loopback;
pub mod xen;
