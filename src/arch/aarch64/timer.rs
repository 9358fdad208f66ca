//! The EL1 virtual timer: a boot self-check that proves interrupts work, and
//! a periodic tick for the service loop.
use super::{counter, counter_hz, gic};
use aarch64_cpu::registers::{CNTV_CTL_EL0, CNTV_TVAL_EL0, Writeable};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

static FIRED: AtomicU32 = AtomicU32::new(0);
static PERIOD_TICKS: AtomicU64 = AtomicU64::new(0);

fn on_timer() {
    FIRED.fetch_add(1, Ordering::SeqCst);
    let period = PERIOD_TICKS.load(Ordering::Relaxed);
    if period == 0 {
        CNTV_CTL_EL0.set(0b10); // masked, disabled
    } else {
        // Re-arm and unmask: Xen sets IMASK when it injects the virtual
        // timer interrupt, and a masked timer never fires again.
        CNTV_TVAL_EL0.set(period);
        CNTV_CTL_EL0.set(1);
    }
}

/// Arms the timer once and waits for its interrupt to be taken,
/// acknowledged and ended. Returns the latency in microseconds.
pub fn self_check(ppi: u32) -> Result<u64, &'static str> {
    gic::enable(ppi, on_timer);
    let hz = counter_hz();
    let start = counter();
    FIRED.store(0, Ordering::SeqCst);
    CNTV_TVAL_EL0.set(hz / 10_000); // 100 us
    CNTV_CTL_EL0.set(1);
    super::irq_enable();
    let deadline = start + hz; // one second
    while FIRED.load(Ordering::SeqCst) == 0 && counter() < deadline {
        core::hint::spin_loop();
    }
    super::irq_disable();
    if FIRED.load(Ordering::SeqCst) == 0 {
        CNTV_CTL_EL0.set(0b10);
        return Err("virtual timer interrupt never arrived");
    }
    Ok((counter() - start) * 1_000_000 / hz.max(1))
}

/// Starts a periodic tick (wakes the service loop from `wfi`).
pub fn start_tick(ppi: u32, period_us: u64) {
    let ticks = counter_hz() * period_us / 1_000_000;
    PERIOD_TICKS.store(ticks.max(1), Ordering::Relaxed);
    gic::enable(ppi, on_timer);
    CNTV_TVAL_EL0.set(ticks.max(1));
    CNTV_CTL_EL0.set(1);
}

/// Number of timer interrupts taken so far.
pub fn ticks() -> u32 {
    FIRED.load(Ordering::Relaxed)
}
