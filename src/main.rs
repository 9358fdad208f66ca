//! The Backplane image: entry glue only (boot -> board -> adapter -> service loop).
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

mod assemble;
mod boot;
mod faults;
mod modes;
mod standalone;
mod xen_dom0;

use backplane::arch::aarch64::psci;
use backplane::platform::console;

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
