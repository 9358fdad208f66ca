//! `backplane.bench=blk`: the in-image frontend times block I/O through
//! Backplane (the plan's guest-0 blk device, over the loopback adapter) and
//! directly against a second real disk (`virtio-blk1`, no Backplane in the
//! path), one request in flight, same request sequence on both paths.
//! xtask's `bench standalone` parses the lines this prints.
use crate::assemble::RealDevices;
use alloc::vec;
use backplane::arch::aarch64::{self as arch, gic};
use backplane::backends::BlockBackend;
use backplane::backends::virtio::VirtioBlock;
use backplane::hyp::loopback::{HubBus, Loopback, TrapTransport};
use backplane::platform::dma::IdentityHal;
use virtio_drivers::device::blk::{SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::transport::Transport;
use virtio_drivers::transport::mmio::MmioTransport;

fn arg(bootargs: &str, key: &str, default: u64) -> u64 {
    bootargs
        .split_whitespace()
        .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// True when the command line asks for the block benchmark.
pub fn wanted(bootargs: &str) -> bool {
    bootargs
        .split_whitespace()
        .any(|a| a == "backplane.bench=blk")
}

/// What both paths offer the timing loop.
trait Disk {
    fn capacity(&self) -> u64;
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), virtio_drivers::Error>;
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), virtio_drivers::Error>;
    fn flush(&mut self) -> Result<(), virtio_drivers::Error>;
}

/// Through Backplane: the frontend's virtio-drivers block driver on the
/// loopback transport.
impl<T: Transport> Disk for VirtIOBlk<IdentityHal, T> {
    fn capacity(&self) -> u64 {
        VirtIOBlk::capacity(self)
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), virtio_drivers::Error> {
        self.read_blocks(sector as usize, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), virtio_drivers::Error> {
        self.write_blocks(sector as usize, buf)
    }
    fn flush(&mut self) -> Result<(), virtio_drivers::Error> {
        VirtIOBlk::flush(self)
    }
}

/// Direct: the same driver on the real disk, waiting for completions the
/// same way Backplane's backend does (`wfi` on the disk's interrupt), so the
/// two paths differ only by Backplane.
struct Direct(VirtioBlock<IdentityHal, MmioTransport<'static>>);

impl Disk for Direct {
    fn capacity(&self) -> u64 {
        self.0.capacity()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), virtio_drivers::Error> {
        self.0
            .read(sector, buf)
            .map_err(|_| virtio_drivers::Error::IoError)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), virtio_drivers::Error> {
        self.0
            .write(sector, buf)
            .map_err(|_| virtio_drivers::Error::IoError)
    }
    fn flush(&mut self) -> Result<(), virtio_drivers::Error> {
        self.0.flush().map_err(|_| virtio_drivers::Error::IoError)
    }
}

fn run_path(path: &str, blk: &mut dyn Disk, mib: u64, ops: u64) {
    // An untimed pass first, so neither path pays QEMU's first translation
    // of the code they share.
    run_pass(path, blk, mib, ops, false);
    run_pass(path, blk, mib, ops, true);
}

fn run_pass(path: &str, blk: &mut dyn Disk, mib: u64, ops: u64, print: bool) {
    let bytes = (mib << 20).min(blk.capacity() * SECTOR_SIZE as u64);
    let mut buf = vec![0u8; 64 * 1024];
    for (k, b) in buf.iter_mut().enumerate() {
        *b = k as u8;
    }
    let report = |test: &str,
                  bytes: u64,
                  ops: u64,
                  start: u64,
                  result: Result<(), virtio_drivers::Error>| match result {
        _ if !print => {}
        Ok(()) => log::info!(
            "bench: blk path={path} test={test} bytes={bytes} ops={ops} time={}us result=ok",
            arch::now_us() - start
        ),
        Err(e) => log::info!("bench: blk path={path} test={test} result=FAILED {e:?}"),
    };
    // Sequential write, then one flush (timed together).
    let start = arch::now_us();
    let mut r = Ok(());
    let mut n = 0;
    for off in (0..bytes).step_by(buf.len()) {
        r = blk.write(off / SECTOR_SIZE as u64, &buf);
        n += 1;
        if r.is_err() {
            break;
        }
    }
    if r.is_ok() {
        r = blk.flush();
    }
    report("seq-write-64k", bytes, n, start, r);
    // Sequential read.
    let start = arch::now_us();
    let mut r = Ok(());
    let mut n = 0;
    for off in (0..bytes).step_by(buf.len()) {
        r = blk.read(off / SECTOR_SIZE as u64, &mut buf);
        n += 1;
        if r.is_err() {
            break;
        }
    }
    report("seq-read-64k", bytes, n, start, r);
    // Random 4 KiB reads, the same offsets on both paths (fixed LCG seed).
    let blocks = bytes / 4096;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let start = arch::now_us();
    let mut r = Ok(());
    for _ in 0..ops {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let block = (seed >> 33) % blocks.max(1);
        r = blk.read(block * 8, &mut buf[..4096]);
        if r.is_err() {
            break;
        }
    }
    report("rand-read-4k", ops * 4096, ops, start, r);
}

/// Runs both paths; `served_base` is the plan's guest-0 blk window.
pub fn run(bootargs: &str, lb: &Loopback, served_base: Option<u64>, real: &mut RealDevices) {
    let mib = arg(bootargs, "backplane.bench_mib", 32);
    let ops = arg(bootargs, "backplane.bench_ops", 4096);
    match served_base.map(|b| TrapTransport::<HubBus>::new(lb.bus(b))) {
        Some(Ok(t)) => match VirtIOBlk::<IdentityHal, _>::new(t) {
            Ok(mut blk) => run_path("served", &mut blk, mib, ops),
            Err(e) => log::info!("bench: blk path=served test=init result=FAILED {e:?}"),
        },
        _ => log::info!(
            "bench: blk path=served test=init result=FAILED no served blk device in the plan"
        ),
    }
    match real.take_block_irq(1) {
        Some((intid, t)) => match VirtioBlock::<IdentityHal, _>::new(t) {
            Ok(mut blk) => {
                if intid >= 32 {
                    gic::enable(intid, crate::assemble::mask_stray_disk_interrupt);
                    blk = blk.with_idle(arch::wait_for_interrupt);
                }
                run_path("direct", &mut Direct(blk), mib, ops)
            }
            Err(e) => log::info!("bench: blk path=direct test=init result=FAILED {e:?}"),
        },
        None => log::info!(
            "bench: blk path=direct test=init result=FAILED no second real disk (virtio-blk1)"
        ),
    }
    log::info!("bench: done");
}
