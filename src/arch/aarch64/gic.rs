//! GICv2 and GICv3 (one CPU): enable interrupts by INTID and dispatch them.
use crate::platform::mmio::MmioRegion;
use core::arch::asm;
use spin::{Mutex, Once};

/// Which GIC the device tree described, with its register windows.
#[derive(Clone, Copy, Debug)]
pub enum GicKind {
    /// Distributor and CPU interface.
    V2 { dist: MmioRegion, cpu: MmioRegion },
    /// Distributor and the first redistributor (this CPU's).
    V3 {
        dist: MmioRegion,
        redist: MmioRegion,
    },
}

static GIC: Once<GicKind> = Once::new();
static CURRENT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1023);
/// Interrupt handlers by INTID.
type HandlerTable = heapless::Vec<(u32, fn()), 16>;

static HANDLERS: Mutex<HandlerTable> = Mutex::new(heapless::Vec::new());

const GICD_CTLR: usize = 0x000;
const GICD_IGROUPR: usize = 0x080;
const GICD_ISENABLER: usize = 0x100;
const GICD_ICENABLER: usize = 0x180;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_ITARGETSR: usize = 0x800;
const GICD_IROUTER: usize = 0x6000;
const GICC_CTLR: usize = 0x000;
const GICC_PMR: usize = 0x004;
const GICC_IAR: usize = 0x00c;
const GICC_EOIR: usize = 0x010;
const GICR_WAKER: usize = 0x014;
const GICR_SGI: usize = 0x1_0000;
const PRIORITY: u32 = 0xa0;

/// Brings the GIC up for this CPU; interrupts stay masked in PSTATE.
pub fn init(kind: GicKind) {
    match kind {
        GicKind::V2 { dist, cpu } => {
            dist.write32(GICD_CTLR, 1);
            cpu.write32(GICC_PMR, 0xff);
            cpu.write32(GICC_CTLR, 1);
        }
        GicKind::V3 { dist, redist } => {
            dist.write32(GICD_CTLR, (1 << 4) | (1 << 1)); // ARE_NS, EnableGrp1NS
            while dist.read32(GICD_CTLR) & (1 << 31) != 0 {}
            let waker = redist.read32(GICR_WAKER);
            redist.write32(GICR_WAKER, waker & !(1 << 1));
            while redist.read32(GICR_WAKER) & (1 << 2) != 0 {}
            redist.write32(GICR_SGI + GICD_IGROUPR, 0xffff_ffff);
            // SAFETY: GICv3 CPU-interface system registers of this CPU only.
            unsafe {
                asm!(
                    "mrs {t}, S3_0_C12_C12_5", // ICC_SRE_EL1
                    "orr {t}, {t}, #1",
                    "msr S3_0_C12_C12_5, {t}",
                    "isb",
                    "mov {t}, #0xff",
                    "msr S3_0_C4_C6_0, {t}", // ICC_PMR_EL1
                    "mov {t}, #1",
                    "msr S3_0_C12_C12_7, {t}", // ICC_IGRPEN1_EL1
                    "isb",
                    t = out(reg) _,
                    options(nostack),
                )
            };
        }
    }
    GIC.call_once(|| kind);
}

/// The GIC in use, if initialised.
pub fn kind() -> Option<GicKind> {
    GIC.get().copied()
}

fn set_priority(region: &MmioRegion, base: usize, intid: u32) {
    let off = base + (intid as usize & !3);
    let shift = (intid % 4) * 8;
    let v = region.read32(off) & !(0xff << shift);
    region.write32(off, v | (PRIORITY << shift));
}

/// Enables `intid` and routes it to this CPU; `handler` runs on each one.
pub fn enable(intid: u32, handler: fn()) {
    {
        let mut h = HANDLERS.lock();
        if let Some(slot) = h.iter_mut().find(|(i, _)| *i == intid) {
            slot.1 = handler;
        } else if h.push((intid, handler)).is_err() {
            log::error!("gic: too many interrupt handlers; {intid} not enabled");
            return;
        }
    }
    let Some(kind) = kind() else { return };
    let word = (intid / 32) as usize * 4;
    let bit = 1 << (intid % 32);
    match kind {
        GicKind::V2 { dist, .. } => {
            set_priority(&dist, GICD_IPRIORITYR, intid);
            if intid >= 32 {
                let off = GICD_ITARGETSR + (intid as usize & !3);
                let shift = (intid % 4) * 8;
                let v = dist.read32(off) & !(0xff << shift);
                dist.write32(off, v | (1 << shift));
            }
            dist.write32(GICD_ISENABLER + word, bit);
        }
        GicKind::V3 { dist, redist } => {
            if intid < 32 {
                set_priority(&redist, GICR_SGI + GICD_IPRIORITYR, intid);
                redist.write32(GICR_SGI + GICD_ISENABLER, bit);
            } else {
                let g = dist.read32(GICD_IGROUPR + word);
                dist.write32(GICD_IGROUPR + word, g | bit);
                set_priority(&dist, GICD_IPRIORITYR, intid);
                dist.write64(GICD_IROUTER + 8 * intid as usize, 0);
                dist.write32(GICD_ISENABLER + word, bit);
            }
        }
    }
}

/// Disables `intid` at the GIC.
pub fn disable(intid: u32) {
    let Some(kind) = kind() else { return };
    let word = (intid / 32) as usize * 4;
    let bit = 1 << (intid % 32);
    match kind {
        GicKind::V2 { dist, .. } => dist.write32(GICD_ICENABLER + word, bit),
        GicKind::V3 { dist, redist } => {
            if intid < 32 {
                redist.write32(GICR_SGI + GICD_ICENABLER, bit);
            } else {
                dist.write32(GICD_ICENABLER + word, bit);
            }
        }
    }
}

/// The interrupt being handled, inside a handler.
pub fn current() -> Option<u32> {
    let i = CURRENT.load(core::sync::atomic::Ordering::Relaxed);
    (i < 1020).then_some(i)
}

/// Takes every pending interrupt: acknowledge, handle, end.
pub fn dispatch() {
    let Some(kind) = kind() else { return };
    loop {
        let intid = match kind {
            GicKind::V2 { cpu, .. } => cpu.read32(GICC_IAR) & 0x3ff,
            GicKind::V3 { .. } => {
                let v: u64;
                // SAFETY: reading ICC_IAR1_EL1 acknowledges the interrupt.
                unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) v, options(nostack)) };
                (v & 0xff_ffff) as u32
            }
        };
        if intid >= 1020 {
            return;
        }
        let handler = HANDLERS
            .lock()
            .iter()
            .find(|(i, _)| *i == intid)
            .map(|(_, h)| *h);
        match handler {
            Some(h) => h(),
            None => log::warn!("gic: interrupt {intid} has no handler"),
        }
        match kind {
            GicKind::V2 { cpu, .. } => cpu.write32(GICC_EOIR, intid),
            GicKind::V3 { .. } => {
                // SAFETY: writing ICC_EOIR1_EL1 ends the interrupt we took.
                unsafe {
                    asm!("msr S3_0_C12_C12_1, {}", "isb", in(reg) intid as u64, options(nostack))
                };
            }
        }
    }
}
