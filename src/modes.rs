//! What the image does once booted.
use backplane::arch::aarch64::psci;
use backplane::platform::dt::MachineInfo;

pub fn run(_info: MachineInfo) -> ! {
    log::info!("backplane: nothing to serve; powering off");
    psci::system_off()
}
