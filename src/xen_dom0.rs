//! Xen dom0 mode: Backplane is dom0 and the IOREQ server of every planned
//! guest. Servers are registered before `backplane: ready` — a guest that
//! touches a window no server claims yet is killed by Xen, and dom0less
//! guests start together with dom0.
use crate::assemble::{DiskWait, RealDevices, assemble};
use alloc::vec::Vec;
use backplane::arch::aarch64::{self as arch, gic, mmu, psci, timer};
use backplane::hub::{Hub, Trap};
use backplane::hyp::xen::{HypervisorInfo, MmioAccess, Xen};
use backplane::platform::dt::{HypervisorNode, MachineInfo};
use backplane::virtio::GuestMemory;
use core::cell::RefCell;
use core::sync::atomic::{AtomicU32, Ordering};

/// Xen's fixed guest RAM layout on Arm (GUEST_RAM0 / GUEST_RAM1): what a
/// domU's virtqueue addresses may name. Frames the guest does not have fail
/// to map, page by page, and become errors — never faults.
const GUEST_RAM_BANKS: [(u64, u64); 2] =
    [(0x4000_0000, 0xC000_0000), (0x2_0000_0000, 0xFE_0000_0000)];

/// Backend-initiated work (received frames, console input) is polled on a
/// tick when no trap arrives.
const TICK_US: u64 = 2_000;

static UPCALLS: AtomicU32 = AtomicU32::new(0);

fn on_upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
}

/// Waits (interrupts on) up to 100 ms for the event-channel PPI to be taken.
fn wait_upcall(_: &Xen<backplane::hyp::xen::Hvc>) -> bool {
    let before = UPCALLS.load(Ordering::Relaxed);
    let deadline = arch::now_us() + 100_000;
    arch::irq_enable();
    while UPCALLS.load(Ordering::Relaxed) == before && arch::now_us() < deadline {
        core::hint::spin_loop();
    }
    arch::irq_disable();
    UPCALLS.load(Ordering::Relaxed) != before
}

/// Runs dom0 mode. Never returns.
pub fn run(info: MachineInfo, node: &HypervisorNode) -> ! {
    let hinfo = HypervisorInfo::new(&node.regions, node.evtchn_intid);
    let mut xen = match Xen::init(&hinfo, mmu::map_normal) {
        Ok(x) => x,
        Err(e) => {
            log::error!("backplane: fatal: Xen adapter: {e}");
            psci::system_reset()
        }
    };
    let plan = crate::modes::plan_for(&info, backplane::board::PLAN_XEN);
    let mut real = RealDevices::probe(&info.virtio_mmio);
    let mut hub = Hub::new();
    let failures = assemble(&plan, &mut real, &mut hub, DiskWait::Poll);
    let mut served_guests = 0;
    for guest in hub.guests() {
        let windows = hub.windows(guest);
        match xen.add_guest(guest, &GUEST_RAM_BANKS, &windows) {
            Ok(_) => {
                served_guests += 1;
                log::info!(
                    "xen: IOREQ server for dom{guest}: {} window(s)",
                    windows.len()
                );
            }
            // The adapter has said it in one line; no other guest can be served.
            Err(e) if e.name() == "ENOSYS" => break,
            Err(e) => log::error!("xen: dom{guest}: IOREQ server not created: {e}"),
        }
    }
    gic::enable(xen.evtchn_ppi(), on_upcall);
    let probe = hub.guests().first().copied().filter(|_| served_guests > 0);
    let failed = backplane::hyp::xen::selfcheck::run(
        &mut xen,
        node.regions.first().copied(),
        probe,
        &wait_upcall,
    );
    if failed > 0 {
        log::error!("xen: {failed} dom0 self-check(s) failed");
    }
    timer::start_tick(info.vtimer_intid, TICK_US);
    log::info!(
        "backplane: ready as Xen dom0: {} device(s) for {} guest(s) ({} not served)",
        hub.slots().len(),
        served_guests,
        failures
    );
    serve(&mut xen, hub)
}

/// Dom0's console input (Xen hands it the serial line): one command per line.
#[derive(Default)]
struct Console {
    line: heapless::Vec<u8, 64>,
}

impl Console {
    /// Reads what Xen holds for us and runs each completed line.
    fn poll(&mut self, hub: &Hub) {
        let mut buf = [0u8; 64];
        let n = backplane::hyp::xen::console_read(&mut buf);
        for &b in &buf[..n] {
            match b {
                b'\r' | b'\n' => {
                    if !self.line.is_empty() {
                        let line = core::mem::take(&mut self.line);
                        run_command(core::str::from_utf8(&line).unwrap_or("").trim(), hub);
                    }
                }
                _ => {
                    // Overlong lines are cut, never a reason to stop serving.
                    let _ = self.line.push(b);
                }
            }
        }
    }
}

fn run_command(cmd: &str, hub: &Hub) {
    match cmd {
        "status" | "s" => {
            for s in hub.slots() {
                log::info!(
                    "backplane: status dom{} device {} at {:#x} irq {} backing={} traps={}{}",
                    s.guest,
                    s.device.device_id(),
                    s.base,
                    s.irq,
                    s.label,
                    s.traps,
                    if s.device.needs_reset() {
                        " NEEDS-RESET"
                    } else {
                        ""
                    }
                );
            }
            log::info!("backplane: status end ({} device(s))", hub.slots().len());
        }
        "help" | "h" | "?" => log::info!("backplane: commands: status (s), help (h)"),
        other => log::info!("backplane: unknown command '{other}' (try help)"),
    }
}

fn serve(xen: &mut Xen<backplane::hyp::xen::Hvc>, hub: Hub) -> ! {
    let hub = RefCell::new(hub);
    let mut console = Console::default();
    let mut raised: Vec<(u16, u32)> = Vec::with_capacity(16);
    let mut last_tick = timer::ticks();
    loop {
        // Sleep only when nothing is pending; IRQs stay masked around the
        // check so a wake-up cannot slip in between the check and `wfi`.
        arch::irq_disable();
        if !xen.upcall_pending() && timer::ticks() == last_tick {
            arch::wait_for_interrupt();
        }
        arch::irq_enable();
        arch::irq_disable();
        let ticked = timer::ticks() != last_tick;
        last_tick = timer::ticks();
        xen.service(
            &mut |domid, acc: &MmioAccess, mem: &mut dyn GuestMemory| {
                let trap = Trap {
                    guest: domid,
                    vcpu: acc.vcpu,
                    addr: acc.addr,
                    size: acc.size,
                    write: acc.write,
                    data: acc.data,
                };
                hub.borrow_mut()
                    .handle(&trap, mem, &mut |g, irq| raised.push((g, irq)))
            },
            &mut |domid, mem, inject| {
                if ticked {
                    hub.borrow_mut().poll(domid, mem, &mut |_, irq| inject(irq));
                }
            },
        );
        if ticked {
            console.poll(&hub.borrow());
        }
        for (g, irq) in raised.drain(..) {
            if let Err(e) = xen.inject(g, irq) {
                log::warn!("xen: dom{g}: inject SPI {irq}: {e}");
            }
        }
    }
}
