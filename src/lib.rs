//! Backplane: a driver VM in one small image.
//!
//! The library holds everything that does not need the machine: the device core
//! (`virtio`, `devices`, `backends` traits), the service plan, the hub that routes
//! traps to devices, and — only when built for the image target — the arch,
//! platform and hypervisor layers. Host tests exercise the first group with real
//! frontends (the `virtio-drivers` crate).
//!
//! Unsafe code is confined to `arch`, `platform` (MMIO), and `hyp` (hypercalls,
//! foreign mappings); the device core forbids it.
#![cfg_attr(not(test), no_std)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod backends;
pub mod devices;
pub mod hub;
pub mod hyp;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod virtio;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod platform;

/// The board this image was built for (boards/*.toml, compiled by build.rs).
pub mod board {
    include!(concat!(env!("OUT_DIR"), "/board.rs"));
}
