//! Turns a service plan into served devices: probes the real virtio devices
//! the machine gives us, builds each planned device over its backing, and
//! adds it to the hub. A planned device whose backing is missing is named in
//! an error line and skipped; the others are still served.
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use backplane::arch::aarch64::{self as arch, gic};
use backplane::backends::looped::{LoopConsole, LoopNet};
use backplane::backends::mem::MemDisk;
use backplane::backends::virtio::{VirtioBlock, VirtioConsole, VirtioNet, VirtioRng};
use backplane::devices::{blk::Block, console::Console, net::Net, rng::Rng};
use backplane::hub::Hub;
use backplane::plan::{Backing, Entry, Kind};
use backplane::platform::dma::{IdentityHal, mmio_transport};
use backplane::platform::dt::VirtioMmioNode;
use backplane::virtio::{MmioDevice, VirtioDevice};
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::{DeviceType, Transport};

type T = MmioTransport<'static>;

/// Real virtio devices found in the device tree, by kind, in probe order.
#[derive(Default)]
pub struct RealDevices {
    blk: Vec<Option<(u64, u32, T)>>,
    net: Vec<Option<(u64, u32, T)>>,
    console: Vec<Option<(u64, u32, T)>>,
    rng: Vec<Option<(u64, u32, T)>>,
}

impl RealDevices {
    /// Probes every `virtio,mmio` node; empty transports are skipped.
    /// QEMU fills its transports from the highest address down, so devices
    /// are numbered from the highest address: index 0 is the first
    /// `-device` on QEMU's command line.
    pub fn probe(nodes: &[VirtioMmioNode]) -> Self {
        let mut sorted: Vec<&VirtioMmioNode> = nodes.iter().collect();
        sorted.sort_by_key(|n| core::cmp::Reverse(n.base));
        let mut out = Self::default();
        for n in sorted {
            let Some(t) = mmio_transport(n.base, n.size) else {
                continue;
            };
            let list = match t.device_type() {
                DeviceType::Block => &mut out.blk,
                DeviceType::Network => &mut out.net,
                DeviceType::Console => &mut out.console,
                DeviceType::EntropySource => &mut out.rng,
                other => {
                    log::info!("probe: virtio {other:?} at {:#x} is not used", n.base);
                    continue;
                }
            };
            list.push(Some((n.base, n.intid, t)));
        }
        log::info!(
            "probe: real virtio devices: {} blk, {} net, {} console, {} rng",
            out.blk.len(),
            out.net.len(),
            out.console.len(),
            out.rng.len()
        );
        out
    }

    /// The `index`th real disk's interrupt and transport, if no planned
    /// device took it.
    pub fn take_block_irq(&mut self, index: usize) -> Option<(u32, T)> {
        self.take(Kind::Block, index).map(|(_, i, t)| (i, t))
    }

    fn take(&mut self, kind: Kind, index: usize) -> Option<(u64, u32, T)> {
        let list = match kind {
            Kind::Block => &mut self.blk,
            Kind::Net => &mut self.net,
            Kind::Console => &mut self.console,
            Kind::Rng => &mut self.rng,
        };
        list.get_mut(index).and_then(Option::take)
    }
}

/// Runs only if a disk interrupt is taken with IRQs unmasked: mask it at the
/// GIC so a level line the backend has not acknowledged yet cannot storm.
pub fn mask_stray_disk_interrupt() {
    if let Some(intid) = gic::current() {
        gic::disable(intid);
    }
}

/// How a backend waits for its real disk.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum DiskWait {
    /// `wfi`, woken by the disk's (level) interrupt with IRQs masked in
    /// PSTATE. Right on bare hardware, where a pending interrupt always ends
    /// `wfi`.
    Interrupt,
    /// Poll the used ring. Under Xen a vCPU that executes `wfi` with IRQs
    /// masked is blocked until a *new* interrupt is injected; an interrupt
    /// already pending in its list registers does not wake it again, so a
    /// second wait in the same service pass would sleep forever.
    Poll,
}

fn build(
    e: &Entry,
    real: &mut RealDevices,
    wait: DiskWait,
) -> Result<(Box<dyn VirtioDevice>, String), String> {
    let missing = |kind: Kind, index: usize| {
        format!(
            "no virtio,mmio node provides real {} device #{index}",
            kind.name()
        )
    };
    let failed = |what: &str, base: u64, err: virtio_drivers::Error| {
        format!("real {what} at {base:#x} failed to start: {err:?}")
    };
    Ok(match (&e.backing, e.kind) {
        (Backing::Virtio { kind, index }, _) => {
            let (base, intid, t) = real
                .take(*kind, *index)
                .ok_or_else(|| missing(*kind, *index))?;
            match kind {
                Kind::Block => {
                    let mut b = VirtioBlock::<IdentityHal, T>::new(t)
                        .map_err(|err| failed("virtio-blk", base, err))?;
                    if intid >= 32 && wait == DiskWait::Interrupt {
                        // Sleep until the disk completes. The line is level
                        // and IRQs stay masked in PSTATE while a backend
                        // waits, so `wfi` wakes on it without taking it; the
                        // backend acknowledges the device, which drops it.
                        gic::enable(intid, mask_stray_disk_interrupt);
                        b = b.with_idle(arch::wait_for_interrupt);
                    }
                    let label = format!("{}@{base:#x}", b.describe());
                    (Box::new(Block::new(Box::new(b))), label)
                }
                Kind::Net => {
                    let n = VirtioNet::<IdentityHal, T>::new(t)
                        .map_err(|err| failed("virtio-net", base, err))?;
                    (
                        Box::new(Net::new(Box::new(n))),
                        format!("virtio-net@{base:#x}"),
                    )
                }
                Kind::Console => {
                    let c = VirtioConsole::<IdentityHal, T>::new(t)
                        .map_err(|err| failed("virtio-console", base, err))?;
                    (
                        Box::new(Console::new(Box::new(c))),
                        format!("virtio-console@{base:#x}"),
                    )
                }
                Kind::Rng => {
                    let r = VirtioRng::<IdentityHal, T>::new(t)
                        .map_err(|err| failed("virtio-rng", base, err))?;
                    (
                        Box::new(Rng::new(Box::new(r))),
                        format!("virtio-rng@{base:#x}"),
                    )
                }
            }
        }
        (Backing::Ram { mib, read_only }, Kind::Block) => {
            // The disk lives on the heap: refuse one that cannot fit rather
            // than fail the allocation (which would stop the image).
            let (used, size) = backplane::platform::heap::usage();
            let free = size.saturating_sub(used);
            let want = (*mib as usize) << 20;
            if want + (256 << 10) > free {
                return Err(format!(
                    "a RAM disk of {mib} MiB does not fit the heap ({} KiB free)",
                    free >> 10
                ));
            }
            let mut d = MemDisk::new(*mib as u64 * 2048);
            if *read_only {
                d = d.read_only();
            }
            (
                Box::new(Block::new(Box::new(d))),
                format!("ram {mib} MiB{}", if *read_only { " ro" } else { "" }),
            )
        }
        (Backing::Loopback, Kind::Net) => (
            Box::new(Net::new(Box::new(LoopNet::new([
                0x52, 0x54, 0, 0xbb, 0, 1,
            ])))),
            "loopback".into(),
        ),
        (Backing::Loopback, Kind::Console) => (
            Box::new(Console::new(Box::new(LoopConsole::default()))),
            "loopback".into(),
        ),
        (b, k) => return Err(format!("backing {b:?} cannot serve {}", k.name())),
    })
}

/// Adds every planned device it can build to `hub`; returns how many failed.
pub fn assemble(plan: &[Entry], real: &mut RealDevices, hub: &mut Hub, wait: DiskWait) -> usize {
    let mut failures = 0;
    for e in plan {
        match build(e, real, wait) {
            Ok((dev, label)) => {
                if let Err(err) =
                    hub.add(e.guest, e.base, e.size, e.irq, label, MmioDevice::new(dev))
                {
                    log::error!(
                        "plan: guest {} {} at {:#x}: {err:?}",
                        e.guest,
                        e.kind.name(),
                        e.base
                    );
                    failures += 1;
                }
            }
            Err(why) => {
                log::error!(
                    "plan: guest {} {} at {:#x} not served: {why}",
                    e.guest,
                    e.kind.name(),
                    e.base
                );
                failures += 1;
            }
        }
    }
    failures
}
