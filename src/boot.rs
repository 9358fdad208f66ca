//! Boot sequence: MMU, device tree, console, heap, GIC and timer, then the
//! mode the machine asks for (standalone or Xen dom0).
use backplane::arch::aarch64::{self as arch, gic, mmu, psci, timer};
use backplane::platform::console::{self, Sink};
use backplane::platform::dt::{self, GicInfo, MachineInfo};
use backplane::platform::{heap, mmio::MmioRegion, pl011::Pl011};

/// What entry.S knows.
pub struct EntryFacts {
    pub dtb: u64,
    pub load_addr: u64,
    pub bad_relocs: u64,
    pub entry_el: u64,
}

/// The board's UART, used only when the device tree cannot be read.
const BOARD_UART: u64 = backplane::board::UART;

/// The board's UART as a console sink (for reports made before the tree is read).
pub fn board_uart() -> Sink {
    // SAFETY: the board file names this PL011 window.
    Sink::Uart(Pl011(unsafe {
        MmioRegion::new(BOARD_UART as usize, 0x1000)
    }))
}

fn fatal(msg: core::fmt::Arguments) -> ! {
    console::prepare_for_fatal();
    log::error!("backplane: fatal: {msg}");
    psci::system_reset()
}

pub fn boot(e: EntryFacts) -> ! {
    mmu::enable_bootstrap(e.dtb);
    let t0 = arch::now_us();
    console::init_log(log::LevelFilter::Info);
    console::set_fallback(board_uart());
    // Entered at EL2 we are the hypervisor level's only user: PSCI must go to
    // the firmware (SMC); an HVC would trap into our own empty EL2.
    psci::set_method_smc(e.entry_el == 2);

    let parsed = dt::validate(e.dtb).and_then(|size| {
        let (ram, reserved) = dt::memory_layout(e.dtb, size)?;
        Ok((size, ram, reserved))
    });
    let (dt_size, ram, reserved) = match parsed {
        Ok(p) => p,
        Err(err) => fatal(format_args!("{err}")),
    };
    if let Err(err) = mmu::enable_final(&ram) {
        fatal(format_args!("page tables: {err:?}"));
    }
    let image = mmu::image_range();
    let mut avoid = reserved.clone();
    let _ = avoid.push((e.dtb, dt_size as u64));
    let Some((heap_start, heap_size)) = heap::choose(&ram, image, &avoid) else {
        fatal(format_args!(
            "no room for the heap in the RAM bank holding the image"
        ))
    };
    // SAFETY: `choose` picked RAM outside the image, the device tree and every
    // reserved range; nothing else uses it.
    unsafe { heap::init(heap_start as usize, heap_size as usize) };
    let info = match dt::parse(e.dtb, dt_size) {
        Ok(i) => i,
        Err(err) => fatal(format_args!("{err}")),
    };
    psci::set_method_smc(info.psci_smc);
    choose_console(&info);
    if e.bad_relocs != 0 {
        fatal(format_args!(
            "{} relocations of unsupported type",
            e.bad_relocs
        ));
    }

    gic::init(gic_kind(&info.gic));
    let latency = match timer::self_check(info.vtimer_intid) {
        Ok(us) => us,
        Err(why) => fatal(format_args!("timer: {why}")),
    };
    log::info!(
        "timer: interrupt {} taken after {} us",
        info.vtimer_intid,
        latency
    );

    crate::faults::maybe_inject(&info.bootargs);

    let ram: u64 = info.memory.iter().map(|r| r.1).sum();
    log::info!(
        "backplane: ready el={} gic={} ram={}MiB load={:#x} dtb={:#x} heap={}KiB heap-used={}KiB boot={}us",
        e.entry_el,
        match info.gic {
            GicInfo::V2 { .. } => "v2",
            GicInfo::V3 { .. } => "v3",
        },
        ram >> 20,
        e.load_addr,
        e.dtb,
        heap_size >> 10,
        heap::usage().0 >> 10,
        arch::now_us().saturating_sub(t0)
    );
    crate::modes::run(info, (heap_start, heap_size))
}

fn choose_console(info: &MachineInfo) {
    if let Some(h) = &info.hypervisor
        && h.compatible.starts_with("xen")
    {
        console::set_sink(Sink::Func(backplane::hyp::xen::console_write));
        return;
    }
    match info.pl011 {
        Some((base, size)) => {
            // SAFETY: the device tree names this PL011 window.
            let uart = unsafe { MmioRegion::new(base as usize, size as usize) };
            console::set_sink(Sink::Uart(Pl011(uart)));
        }
        None => {
            // SAFETY: the board file names this PL011 when the tree has none.
            let uart = unsafe { MmioRegion::new(BOARD_UART as usize, 0x1000) };
            console::set_sink(Sink::Uart(Pl011(uart)));
        }
    }
}

fn gic_kind(g: &GicInfo) -> gic::GicKind {
    // SAFETY: the device tree names these windows as the GIC's.
    unsafe {
        match *g {
            GicInfo::V2 { dist, cpu } => gic::GicKind::V2 {
                dist: MmioRegion::new(dist.0 as usize, dist.1 as usize),
                cpu: MmioRegion::new(cpu.0 as usize, cpu.1 as usize),
            },
            GicInfo::V3 { dist, redist } => gic::GicKind::V3 {
                dist: MmioRegion::new(dist.0 as usize, dist.1 as usize),
                redist: MmioRegion::new(redist.0 as usize, (redist.1 as usize).min(0x2_0000)),
            },
        }
    }
}
