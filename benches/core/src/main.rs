//! `cargo xtask bench core`: Backplane's device core serving virtio-blk
//! requests beside rust-vmm's `virtio-queue` (+ `vm-memory`) doing the same
//! work, measured in one run.
//!
//! Both sides see the same guest memory layout: one split virtqueue of
//! [`QUEUE_SIZE`] entries and [`BATCH`] requests, each a chain of three
//! descriptors (16-byte header, 4 KiB data buffer, 1-byte status). Even
//! requests write (OUT) a 4 KiB block, odd ones read (IN) the block the
//! previous request just wrote. Per request a side pops the chain, reads the
//! header, copies 4 KiB between guest memory and a RAM disk, writes the status
//! byte and adds a used element; per batch it makes the notification decision
//! (EVENT_IDX off).
//!
//! The driver (shared code, [`Driver`]) writes the descriptors and headers once,
//! then per batch posts the chain heads on the avail ring. Only the device's
//! part is timed: for Backplane the `QueueNotify` register write (which serves
//! the queue synchronously), for virtio-queue the pop/serve/add_used loop plus
//! `needs_notification`. Heap allocations are counted by a counting global
//! allocator over the whole timed loop (driver part included). Each side runs
//! [`RUNS`] times, alternating, and the median is reported. Before and after
//! the timed runs each side serves a batch whose OUT data is fresh and whose IN
//! buffers and status bytes were scrubbed, and the result is checked, so a side
//! that fails cannot be measured silently.
//!
//! `BENCH_CORE_SECONDS` sets the device time per run (default 1).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backplane::backends::mem::MemDisk;
use backplane::devices::blk::{self, Block};
use backplane::virtio::mmio::reg;
use backplane::virtio::{GuestMemory as _, HostMemory, MmioDevice, features, status};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

// ---------------------------------------------------------------------------
// Allocation counting

/// `System`, counting every allocation (and reallocation).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counter has no effect
// on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` via us.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// Guest memory layout and the driver

const BASE: u64 = 0x4000_0000;
const MEM_SIZE: usize = 1 << 20;
const QUEUE_SIZE: u16 = 256;
/// Requests per notify: three descriptors each, so at most 85 fit in 256.
const BATCH: u16 = 64;
const DESC: u64 = BASE;
const AVAIL: u64 = BASE + 0x1000;
const USED: u64 = BASE + 0x2000;
const HEADERS: u64 = BASE + 0x3000;
const STATUS: u64 = BASE + 0x3800;
const DATA: u64 = BASE + 0x1_0000;
const BLOCK: usize = 4096;
const SECTOR: usize = 512;
const DISK_SECTORS: u64 = 2048;
const RUNS: usize = 3;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const REQ_IN: u32 = 0;
const REQ_OUT: u32 = 1;
const STATUS_OK: u8 = 0;
const STATUS_IOERR: u8 = 1;
const STATUS_UNSUPP: u8 = 2;

/// Request `k` of a batch: (is a write, first sector).
fn request(k: u16) -> (bool, u64) {
    let sector = u64::from(k / 2) * (BLOCK / SECTOR) as u64 * 3;
    (k.is_multiple_of(2), sector)
}

fn head(k: u16) -> u16 {
    3 * k
}

fn data_addr(k: u16) -> u64 {
    DATA + u64::from(k) * BLOCK as u64
}

/// Used length a correct device reports for request `k`.
fn used_len(k: u16) -> u32 {
    if request(k).0 { 1 } else { BLOCK as u32 + 1 }
}

/// OUT data of request `k` in verification round `seed`.
fn pattern(seed: u8, k: u16) -> Vec<u8> {
    (0..BLOCK)
        .map(|i| (i as u8).wrapping_mul(31) ^ (k as u8).wrapping_mul(7) ^ seed)
        .collect()
}

/// Plain byte access to guest memory, as the driver side needs it.
trait Ram {
    fn put(&mut self, addr: u64, data: &[u8]);
    fn get(&mut self, addr: u64, buf: &mut [u8]);

    fn put_u16(&mut self, addr: u64, v: u16) {
        self.put(addr, &v.to_le_bytes());
    }

    fn get_u16(&mut self, addr: u64) -> u16 {
        let mut b = [0; 2];
        self.get(addr, &mut b);
        u16::from_le_bytes(b)
    }

    fn get_u32(&mut self, addr: u64) -> u32 {
        let mut b = [0; 4];
        self.get(addr, &mut b);
        u32::from_le_bytes(b)
    }
}

impl Ram for HostMemory {
    fn put(&mut self, addr: u64, data: &[u8]) {
        self.write(addr, data)
            .expect("driver write inside guest memory");
    }

    fn get(&mut self, addr: u64, buf: &mut [u8]) {
        self.read(addr, buf)
            .expect("driver read inside guest memory");
    }
}

impl Ram for GuestMemoryMmap {
    fn put(&mut self, addr: u64, data: &[u8]) {
        self.write_slice(data, GuestAddress(addr))
            .expect("driver write inside guest memory");
    }

    fn get(&mut self, addr: u64, buf: &mut [u8]) {
        self.read_slice(buf, GuestAddress(addr))
            .expect("driver read inside guest memory");
    }
}

/// The driver side of the split ring, identical for both implementations.
struct Driver {
    avail_idx: u16,
}

impl Driver {
    /// Writes descriptors and headers; leaves the rings empty.
    fn setup(mem: &mut impl Ram) -> Self {
        for k in 0..BATCH {
            let (out, sector) = request(k);
            let h = head(k);
            let data_flags = if out { F_NEXT } else { F_NEXT | F_WRITE };
            let descs = [
                (HEADERS + 16 * u64::from(k), 16, F_NEXT, h + 1),
                (data_addr(k), BLOCK as u32, data_flags, h + 2),
                (STATUS + u64::from(k), 1, F_WRITE, 0),
            ];
            for (i, (addr, len, flags, next)) in descs.into_iter().enumerate() {
                let mut d = [0u8; 16];
                d[..8].copy_from_slice(&addr.to_le_bytes());
                d[8..12].copy_from_slice(&u32::to_le_bytes(len));
                d[12..14].copy_from_slice(&flags.to_le_bytes());
                d[14..].copy_from_slice(&next.to_le_bytes());
                mem.put(DESC + 16 * u64::from(h + i as u16), &d);
            }
            let mut hdr = [0u8; 16];
            let kind = if out { REQ_OUT } else { REQ_IN };
            hdr[..4].copy_from_slice(&kind.to_le_bytes());
            hdr[8..].copy_from_slice(&sector.to_le_bytes());
            mem.put(HEADERS + 16 * u64::from(k), &hdr);
        }
        mem.put(AVAIL, &[0; 4]);
        mem.put(USED, &[0; 4]);
        Self { avail_idx: 0 }
    }

    /// Posts the batch's chain heads and publishes them.
    fn post(&mut self, mem: &mut impl Ram) {
        for k in 0..BATCH {
            let slot = self.avail_idx.wrapping_add(k) % QUEUE_SIZE;
            mem.put_u16(AVAIL + 4 + 2 * u64::from(slot), head(k));
        }
        self.avail_idx = self.avail_idx.wrapping_add(BATCH);
        mem.put_u16(AVAIL + 2, self.avail_idx);
    }

    /// Cheap per-batch check: the device used the whole batch.
    fn completed(&self, mem: &mut impl Ram) -> bool {
        mem.get_u16(USED + 2) == self.avail_idx
    }

    /// Fresh OUT data, scrubbed IN buffers and status bytes.
    fn prepare_check(&self, mem: &mut impl Ram, seed: u8) {
        for k in 0..BATCH {
            let data = if request(k).0 {
                pattern(seed, k)
            } else {
                vec![0xa5; BLOCK]
            };
            mem.put(data_addr(k), &data);
            mem.put(STATUS + u64::from(k), &[0xff]);
        }
    }

    /// After one batch prepared with `prepare_check`: every used element,
    /// status byte and IN buffer is right, and `disk(sector)` returns the
    /// written block.
    fn check(
        &self,
        mem: &mut impl Ram,
        seed: u8,
        mut disk: impl FnMut(u64) -> Vec<u8>,
    ) -> Result<(), String> {
        if !self.completed(mem) {
            return Err(format!(
                "used.idx {} after posting up to {}",
                mem.get_u16(USED + 2),
                self.avail_idx
            ));
        }
        let first = self.avail_idx.wrapping_sub(BATCH);
        for k in 0..BATCH {
            let slot = first.wrapping_add(k) % QUEUE_SIZE;
            let at = USED + 4 + 8 * u64::from(slot);
            let (id, len) = (mem.get_u32(at), mem.get_u32(at + 4));
            if (id, len) != (u32::from(head(k)), used_len(k)) {
                return Err(format!("request {k}: used element ({id}, {len})"));
            }
            let mut st = [0xff];
            mem.get(STATUS + u64::from(k), &mut st);
            if st[0] != STATUS_OK {
                return Err(format!("request {k}: status {}", st[0]));
            }
            let (out, sector) = request(k);
            let written = pattern(seed, if out { k } else { k - 1 });
            let mut buf = vec![0; BLOCK];
            mem.get(data_addr(k), &mut buf);
            if buf != written {
                return Err(format!("request {k}: data buffer does not round-trip"));
            }
            if disk(sector) != written {
                return Err(format!("request {k}: disk block at sector {sector} wrong"));
            }
        }
        Ok(())
    }
}

/// One timed run's outcome.
#[derive(Clone, Copy, Debug)]
struct Run {
    requests: u64,
    device_time: Duration,
    allocations: u64,
}

impl Run {
    fn chains_per_s(&self) -> f64 {
        self.requests as f64 / self.device_time.as_secs_f64()
    }

    fn ns_per_request(&self) -> f64 {
        self.device_time.as_nanos() as f64 / self.requests as f64
    }

    fn allocations_per_request(&self) -> f64 {
        self.allocations as f64 / self.requests as f64
    }
}

/// A device implementation under test.
trait Side {
    /// Driver posts one batch, device serves it; returns the device's time.
    fn batch(&mut self) -> Duration;
    /// One verified batch with OUT data derived from `seed`.
    fn verify(&mut self, seed: u8) -> Result<(), String>;
}

/// Runs `side` until its device time reaches `budget`.
fn measure(side: &mut dyn Side, budget: Duration) -> Run {
    let mut device_time = Duration::ZERO;
    let mut batches = 0u64;
    let before = allocations();
    while device_time < budget {
        device_time += side.batch();
        batches += 1;
    }
    Run {
        requests: batches * u64::from(BATCH),
        device_time,
        allocations: allocations() - before,
    }
}

// ---------------------------------------------------------------------------
// Backplane: virtio-mmio register file + virtio-blk over a MemDisk

struct Backplane {
    dev: MmioDevice,
    mem: HostMemory,
    disk: MemDisk,
    driver: Driver,
}

impl Backplane {
    fn new() -> Self {
        let disk = MemDisk::new(DISK_SECTORS);
        let mut dev = MmioDevice::new(Box::new(Block::new(Box::new(disk.clone()))));
        let mut mem = HostMemory::with_region(BASE, MEM_SIZE);
        let driver = Driver::setup(&mut mem);
        let mut w = |off: u64, v: u64| dev.write(off, 4, v, &mut mem);
        w(reg::STATUS, 0);
        w(reg::STATUS, u64::from(status::ACKNOWLEDGE | status::DRIVER));
        // Write-back cache (FLUSH negotiated): no flush per write, as on the
        // virtio-queue side.
        let f = features::VERSION_1 | blk::feature::FLUSH;
        for (sel, word) in [(0, f & 0xffff_ffff), (1, f >> 32)] {
            w(reg::DRIVER_FEATURES_SEL, sel);
            w(reg::DRIVER_FEATURES, word);
        }
        let negotiated = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        w(reg::STATUS, u64::from(negotiated));
        w(reg::QUEUE_SEL, 0);
        w(reg::QUEUE_NUM, u64::from(QUEUE_SIZE));
        for (low, addr) in [
            (reg::QUEUE_DESC_LOW, DESC),
            (reg::QUEUE_DRIVER_LOW, AVAIL),
            (reg::QUEUE_DEVICE_LOW, USED),
        ] {
            w(low, addr & 0xffff_ffff);
            w(low + 4, addr >> 32);
        }
        w(reg::QUEUE_READY, 1);
        w(reg::STATUS, u64::from(negotiated | status::DRIVER_OK));
        let st = dev.read(reg::STATUS, 4, &mut mem) as u8;
        assert_eq!(
            st & (status::FEATURES_OK | status::DRIVER_OK),
            status::FEATURES_OK | status::DRIVER_OK,
            "Backplane device refused set-up (status {st:#x})"
        );
        Self {
            dev,
            mem,
            disk,
            driver,
        }
    }

    fn serve(&mut self) -> Duration {
        let start = Instant::now();
        self.dev.write(reg::QUEUE_NOTIFY, 4, 0, &mut self.mem);
        start.elapsed()
    }

    /// The driver's interrupt handling: read and acknowledge InterruptStatus.
    fn ack(&mut self) -> u32 {
        let isr = self.dev.read(reg::INTERRUPT_STATUS, 4, &mut self.mem) as u32;
        self.dev
            .write(reg::INTERRUPT_ACK, 4, u64::from(isr), &mut self.mem);
        isr
    }
}

impl Side for Backplane {
    fn batch(&mut self) -> Duration {
        self.driver.post(&mut self.mem);
        let t = self.serve();
        assert!(
            self.driver.completed(&mut self.mem) && !self.dev.needs_reset(),
            "Backplane did not complete a batch"
        );
        self.ack();
        t
    }

    fn verify(&mut self, seed: u8) -> Result<(), String> {
        self.driver.prepare_check(&mut self.mem, seed);
        self.driver.post(&mut self.mem);
        self.serve();
        if self.dev.needs_reset() {
            return Err("device set DEVICE_NEEDS_RESET".into());
        }
        if self.ack() & backplane::virtio::interrupt::USED_BUFFER == 0 {
            return Err("no used-buffer interrupt".into());
        }
        let contents = self.disk.contents();
        self.driver.check(&mut self.mem, seed, |sector| {
            let at = sector as usize * SECTOR;
            contents[at..at + BLOCK].to_vec()
        })
    }
}

// ---------------------------------------------------------------------------
// rust-vmm: virtio-queue over vm-memory's GuestMemoryMmap, RAM disk in a Vec

struct RustVmm {
    queue: Queue,
    mem: GuestMemoryMmap,
    disk: Vec<u8>,
    driver: Driver,
}

/// A chain the device refuses (the Backplane side would set
/// DEVICE_NEEDS_RESET).
#[derive(Debug)]
struct Malformed(&'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed request: {}", self.0)
    }
}

impl RustVmm {
    fn new() -> Self {
        let mut mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(BASE), MEM_SIZE)])
            .expect("mmap guest memory");
        let driver = Driver::setup(&mut mem);
        let mut queue = Queue::new(QUEUE_SIZE).expect("queue");
        queue.set_size(QUEUE_SIZE);
        queue
            .try_set_desc_table_address(GuestAddress(DESC))
            .expect("descriptor table address");
        queue
            .try_set_avail_ring_address(GuestAddress(AVAIL))
            .expect("avail ring address");
        queue
            .try_set_used_ring_address(GuestAddress(USED))
            .expect("used ring address");
        queue.set_event_idx(false);
        queue.set_ready(true);
        assert!(queue.is_valid(&mem), "virtio-queue refused the ring layout");
        Self {
            queue,
            mem,
            disk: vec![0; DISK_SECTORS as usize * SECTOR],
            driver,
        }
    }

    /// The device loop: every available chain, then the notification
    /// decision.
    fn serve(&mut self) -> Result<bool, Malformed> {
        let mem = &self.mem;
        while let Some(mut chain) = self.queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = handle(&mut chain, mem, &mut self.disk)?;
            self.queue
                .add_used(mem, head, len)
                .map_err(|_| Malformed("add_used"))?;
        }
        self.queue
            .needs_notification(mem)
            .map_err(|_| Malformed("needs_notification"))
    }

    fn timed_serve(&mut self) -> (Duration, Result<bool, Malformed>) {
        let start = Instant::now();
        let r = self.serve();
        (start.elapsed(), r)
    }
}

/// Serves one virtio-blk request (IN or OUT, any number of data segments);
/// returns the used length.
fn handle<M>(
    chain: &mut virtio_queue::DescriptorChain<M>,
    mem: &GuestMemoryMmap,
    disk: &mut [u8],
) -> Result<u32, Malformed>
where
    M: std::ops::Deref<Target = GuestMemoryMmap>,
{
    let header = chain.next().ok_or(Malformed("empty chain"))?;
    if header.is_write_only() || header.len() < 16 {
        return Err(Malformed("header short or writable"));
    }
    let hdr: [u8; 16] = mem
        .read_obj(header.addr())
        .map_err(|_| Malformed("header outside memory"))?;
    let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let sector = u64::from_le_bytes([
        hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
    ]);
    let mut offset = usize::try_from(sector)
        .ok()
        .and_then(|s| s.checked_mul(SECTOR));
    let mut status = if kind == REQ_IN || kind == REQ_OUT {
        STATUS_OK
    } else {
        STATUS_UNSUPP
    };
    let mut written = 0u32;
    // Every descriptor but the last carries data; the last is the status.
    let mut pending: Option<Descriptor> = None;
    for desc in chain.by_ref() {
        if let Some(data) = pending.replace(desc) {
            let len = data.len() as usize;
            let range = offset
                .filter(|_| len.is_multiple_of(SECTOR))
                .and_then(|o| Some(o..o.checked_add(len)?))
                .filter(|r| r.end <= disk.len());
            match (kind, range) {
                (_, _) if status != STATUS_OK => {}
                (REQ_IN, Some(r)) if data.is_write_only() => {
                    mem.write_slice(&disk[r.clone()], data.addr())
                        .map_err(|_| Malformed("data outside memory"))?;
                    written += data.len();
                    offset = Some(r.end);
                }
                (REQ_OUT, Some(r)) if !data.is_write_only() => {
                    mem.read_slice(&mut disk[r.clone()], data.addr())
                        .map_err(|_| Malformed("data outside memory"))?;
                    offset = Some(r.end);
                }
                (REQ_IN | REQ_OUT, None) => status = STATUS_IOERR,
                _ => return Err(Malformed("data descriptor direction")),
            }
        }
    }
    let status_desc = pending.ok_or(Malformed("no status descriptor"))?;
    if !status_desc.is_write_only() || status_desc.len() < 1 {
        return Err(Malformed("status not writable"));
    }
    mem.write_obj(status, status_desc.addr())
        .map_err(|_| Malformed("status outside memory"))?;
    Ok(written + 1)
}

impl Side for RustVmm {
    fn batch(&mut self) -> Duration {
        self.driver.post(&mut self.mem);
        let (t, r) = self.timed_serve();
        assert!(
            r.is_ok() && self.driver.completed(&mut self.mem),
            "virtio-queue did not complete a batch: {r:?}"
        );
        t
    }

    fn verify(&mut self, seed: u8) -> Result<(), String> {
        self.driver.prepare_check(&mut self.mem, seed);
        self.driver.post(&mut self.mem);
        match self.timed_serve().1 {
            Ok(true) => {}
            Ok(false) => return Err("no notification".into()),
            Err(e) => return Err(e.to_string()),
        }
        let disk = &self.disk;
        self.driver.check(&mut self.mem, seed, |sector| {
            let at = sector as usize * SECTOR;
            disk[at..at + BLOCK].to_vec()
        })
    }
}

// ---------------------------------------------------------------------------

/// Version of a package as locked in the workspace's Cargo.lock.
fn locked_version(name: &str) -> &'static str {
    let lock = include_str!("../../../Cargo.lock");
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .map(|at| &lock[at + needle.len()..])
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("?")
}

fn median(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.chains_per_s().total_cmp(&b.chains_per_s()));
    sorted[sorted.len() / 2]
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_CORE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(seconds);
    let vq = format!(
        "rust-vmm virtio-queue {} (+ vm-memory {} mmap)",
        locked_version("virtio-queue"),
        locked_version("vm-memory")
    );
    let ours = "Backplane core (virtio-mmio + blk, RAM disk)";

    let mut sides: [(&str, Box<dyn Side>); 2] = [
        (ours, Box::new(Backplane::new())),
        (&vq, Box::new(RustVmm::new())),
    ];
    for (name, side) in &mut sides {
        if let Err(e) = side.verify(1) {
            eprintln!("bench core: {name} fails the correctness check: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "bench core: {BATCH} requests (4 KiB, half OUT, half IN) per notify on a \
         {QUEUE_SIZE}-entry split queue; {RUNS} runs of {seconds} s device time per side, \
         alternating; median shown"
    );
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for round in 0..RUNS {
        for (i, (name, side)) in sides.iter_mut().enumerate() {
            let run = measure(side.as_mut(), budget);
            eprintln!(
                "  run {}: {name}: {:.0} chains/s, {:.1} ns/request",
                round + 1,
                run.chains_per_s(),
                run.ns_per_request()
            );
            runs[i].push(run);
        }
    }
    for (name, side) in &mut sides {
        if let Err(e) = side.verify(2) {
            eprintln!("bench core: {name} fails the correctness check after the runs: {e}");
            std::process::exit(1);
        }
    }

    println!();
    println!("| implementation | chains/s | ns per 4 KiB request | allocations per request |");
    println!("|---|---|---|---|");
    let medians = [median(&runs[0]), median(&runs[1])];
    for ((name, _), m) in sides.iter().zip(&medians) {
        println!(
            "| {name} | {:.0} | {:.1} | {:.3} |",
            m.chains_per_s(),
            m.ns_per_request(),
            m.allocations_per_request()
        );
    }
    println!(
        "ratio: Backplane / virtio-queue = {:.2}x (chains/s; above 1 means Backplane is faster)",
        medians[0].chains_per_s() / medians[1].chains_per_s()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_serve_correctly() {
        let mut sides: [Box<dyn Side>; 2] = [Box::new(Backplane::new()), Box::new(RustVmm::new())];
        for side in &mut sides {
            for seed in 1..4 {
                side.verify(seed).unwrap();
                side.batch();
            }
        }
    }

    #[test]
    fn check_catches_a_lost_write() {
        let mut side = RustVmm::new();
        side.verify(1).unwrap();
        side.driver.prepare_check(&mut side.mem, 2);
        side.driver.post(&mut side.mem);
        side.serve().unwrap();
        side.disk[0] ^= 1;
        assert!(
            side.driver
                .check(&mut side.mem, 2, |s| {
                    let at = s as usize * SECTOR;
                    side.disk[at..at + BLOCK].to_vec()
                })
                .is_err()
        );
    }
}
