//! Exception entry from the vectors in entry.S: IRQs go to the GIC dispatcher;
//! anything else is unexpected and ends the run with a report.
use super::{gic, psci};
use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable};
use core::sync::atomic::{AtomicU32, Ordering};

/// Registers saved by entry.S, in its layout.
#[repr(C)]
pub struct Frame {
    /// x0..x30
    pub x: [u64; 31],
    /// Exception link register.
    pub elr: u64,
    /// Saved program status.
    pub spsr: u64,
    _pad: u64,
}

static NESTING: AtomicU32 = AtomicU32::new(0);

fn class_name(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown instruction",
        0x01 => "trapped WFI/WFE",
        0x07 => "FP/SIMD access trap",
        0x0e => "illegal execution state",
        0x15 => "SVC",
        0x16 => "HVC",
        0x17 => "SMC",
        0x18 => "system register trap",
        0x20 => "instruction abort (lower EL)",
        0x21 => "instruction abort",
        0x22 => "PC alignment fault",
        0x24 => "data abort (lower EL)",
        0x25 => "data abort",
        0x26 => "SP alignment fault",
        0x2f => "SError",
        0x3c => "BRK",
        _ => "other",
    }
}

/// Called by entry.S with the vector number (group * 4 + type) and the frame.
#[unsafe(no_mangle)]
extern "C" fn exception_entry(kind: u64, frame: &mut Frame) {
    if kind & 3 == 1 {
        gic::dispatch();
        return;
    }
    let esr = ESR_EL1.get();
    let far = FAR_EL1.get();
    let ec = (esr >> 26) & 0x3f;
    // A fault while reporting a fault: stop trying to print.
    if NESTING.fetch_add(1, Ordering::SeqCst) > 1 {
        psci::system_reset();
    }
    crate::platform::console::prepare_for_fatal();
    let kind_name = ["sync", "irq", "fiq", "serror"][(kind & 3) as usize];
    log::error!(
        "backplane: fatal: {} exception: {} (EC {:#x}) ESR {:#x} FAR {:#x} ELR {:#x} SPSR {:#x}",
        kind_name,
        class_name(ec),
        ec,
        esr,
        far,
        frame.elr,
        frame.spsr
    );
    if (ec == 0x25 || ec == 0x24) && crate::arch::aarch64::mmu::is_guard_page(far) {
        log::error!(
            "backplane: fatal: stack overflow (guard page at {:#x})",
            far
        );
    }
    for (i, pair) in frame.x.chunks(2).enumerate() {
        match pair {
            [a, b] => log::error!("  x{:<2} {:#018x}  x{:<2} {:#018x}", 2 * i, a, 2 * i + 1, b),
            [a] => log::error!("  x{:<2} {:#018x}", 2 * i, a),
            _ => {}
        }
    }
    psci::system_reset();
}
