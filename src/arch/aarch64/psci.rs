//! Power off and reset through PSCI, with the conduit the device tree names.
use core::sync::atomic::{AtomicBool, Ordering};

static USE_SMC: AtomicBool = AtomicBool::new(false);

/// Selects the conduit from `/psci` `method` ("smc" or "hvc").
pub fn set_method_smc(smc: bool) {
    USE_SMC.store(smc, Ordering::Relaxed);
}

/// Ends the run cleanly.
pub fn system_off() -> ! {
    log::info!("backplane: powering off");
    crate::platform::console::flush();
    if USE_SMC.load(Ordering::Relaxed) {
        let _ = smccc::psci::system_off::<smccc::Smc>();
    } else {
        let _ = smccc::psci::system_off::<smccc::Hvc>();
    }
    halt()
}

/// Ends the run as a failure (QEMU `-no-reboot` exits; a board restarts).
pub fn system_reset() -> ! {
    crate::platform::console::flush();
    if USE_SMC.load(Ordering::Relaxed) {
        let _ = smccc::psci::system_reset::<smccc::Smc>();
    } else {
        let _ = smccc::psci::system_reset::<smccc::Hvc>();
    }
    halt()
}

fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}
