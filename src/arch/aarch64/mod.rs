//! AArch64: entry and relocation (entry.S), exceptions, MMU, GIC, timer, PSCI.
//!
//! This is one of the few places where `unsafe` lives; every block names its
//! invariant.
pub mod exceptions;
pub mod gic;
pub mod mmu;
pub mod psci;
pub mod timer;

core::arch::global_asm!(include_str!("entry.S"));

/// Waits for an interrupt (or an event that would have woken us).
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::wfi();
}

/// Masks IRQs on this CPU.
pub fn irq_disable() {
    // SAFETY: writing DAIFSet only changes this CPU's interrupt mask.
    unsafe { core::arch::asm!("msr daifset, #2", options(nomem, nostack)) };
}

/// Unmasks IRQs on this CPU.
pub fn irq_enable() {
    // SAFETY: writing DAIFClr only changes this CPU's interrupt mask; handlers
    // are installed before anyone enables interrupts.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nomem, nostack)) };
}

/// Counter frequency and value, for timing.
pub fn counter() -> u64 {
    use aarch64_cpu::registers::{CNTVCT_EL0, Readable};
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTVCT_EL0.get()
}

/// Ticks per second of [`counter`].
pub fn counter_hz() -> u64 {
    use aarch64_cpu::registers::{CNTFRQ_EL0, Readable};
    CNTFRQ_EL0.get()
}

/// Microseconds since an arbitrary epoch (the counter's start).
pub fn now_us() -> u64 {
    let hz = counter_hz().max(1);
    (counter() as u128 * 1_000_000 / hz as u128) as u64
}
