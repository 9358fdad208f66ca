//! Platform: device tree, memory map, heap, console and the `log` backend.
pub mod console;
pub mod dma;
pub mod dt;
pub mod heap;
pub mod mmio;
pub mod pl011;
