//! Device models: the device-type rules of block, console, entropy and
//! network devices, over the backend traits in [`crate::backends`].
//!
//! Each model implements [`crate::virtio::VirtioDevice`]; wrap it in a
//! [`crate::virtio::MmioDevice`] (or drive its transport directly). Buffers
//! (bounce buffers, chain storage) are allocated in the constructor; serving a
//! request allocates nothing.
#![forbid(unsafe_code)]

pub mod blk;
pub mod console;
pub mod net;
pub mod rng;

/// Most chains served per notification or poll before yielding, so a driver
/// that keeps refilling a ring cannot hold the service loop forever. Leftovers
/// are served on the next poll.
pub(crate) const BUDGET: usize = 1024;
