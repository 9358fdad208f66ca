//! Hypervisor adapters: each turns its hypervisor's events into calls on the hub.
//!
//! The ABI layouts compile on the host so their sizes and offsets are tested
//! there; the calls themselves exist only in the image.
pub mod loopback;
pub mod xen;
