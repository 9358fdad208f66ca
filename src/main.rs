//! The Backplane image: entry glue only (boot -> board -> adapter -> service loop).
//!
//! On the host this builds as an empty program so `cargo test` and `cargo
//! clippy` of the workspace work; the image exists only for
//! `aarch64-unknown-none`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the Backplane image runs on aarch64-unknown-none: use `cargo xtask run`");
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod assemble;
#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod faults;
#[cfg(target_os = "none")]
mod modes;
#[cfg(target_os = "none")]
mod standalone;
#[cfg(target_os = "none")]
mod xen_dom0;

#[cfg(target_os = "none")]
use backplane::arch::aarch64::psci;
#[cfg(target_os = "none")]
use backplane::platform::console;

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::prepare_for_fatal();
    match info.location() {
        Some(l) => log::error!(
            "backplane: fatal: panic at {}:{}: {}",
            l.file(),
            l.line(),
            info.message()
        ),
        None => log::error!("backplane: fatal: panic: {}", info.message()),
    }
    psci::system_reset()
}

#[cfg(target_os = "none")]
/// Called by entry.S with the MMU off, relocations applied, BSS zeroed.
#[unsafe(no_mangle)]
extern "C" fn rust_entry(dtb: u64, load_addr: u64, bad_relocs: u64, entry_el: u64) -> ! {
    boot::boot(boot::EntryFacts {
        dtb,
        load_addr,
        bad_relocs,
        entry_el,
    })
}
