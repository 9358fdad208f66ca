//! Standalone mode (no hypervisor): the devices of the plan's guest 0 are
//! served through the loopback adapter to an in-image frontend — the
//! `virtio-drivers` crate — which exercises each one and prints one status
//! line per device. Then the image powers off or keeps serving, as the
//! board says.
use crate::assemble::{DiskWait, RealDevices, assemble};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use backplane::arch::aarch64::{self as arch, psci};
use backplane::hub::Hub;
use backplane::hyp::loopback::{GUEST, HubBus, Loopback, TrapTransport, memory::OwnMemory};
use backplane::plan::{Entry, Kind};
use backplane::platform::dma::IdentityHal;
use backplane::platform::dt::MachineInfo;
use core::cell::RefCell;
use virtio_drivers::device::blk::{SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::device::rng::VirtIORng;

type Front = TrapTransport<HubBus>;

/// Result of exercising one device.
struct Report {
    bytes_in: u64,
    bytes_out: u64,
    requests: u64,
    errors: u64,
    detail: String,
    ok: bool,
}

impl Report {
    fn new() -> Self {
        Self {
            bytes_in: 0,
            bytes_out: 0,
            requests: 0,
            errors: 0,
            detail: String::new(),
            ok: true,
        }
    }

    fn fail(mut self, why: String) -> Self {
        self.ok = false;
        self.detail = why;
        self
    }
}

/// FNV-1a 64: the checksum xtask computes on the host too.
pub fn fnv1a(data: &[u8], mut h: u64) -> u64 {
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

const FNV_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Byte `i` of the pattern the frontend writes.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 12)) as u8
}

/// Read region (checksummed), write region (pattern), as the tests expect.
const READ_BYTES: usize = 1 << 20;
const WRITE_START: u64 = 2 << 20;
const WRITE_BYTES: u64 = 4 << 20;

fn exercise_blk(t: Front) -> Report {
    let mut r = Report::new();
    let mut blk = match VirtIOBlk::<IdentityHal, Front>::new(t) {
        Ok(b) => b,
        Err(e) => return r.fail(format!("frontend init: {e:?}")),
    };
    let capacity = blk.capacity() * SECTOR_SIZE as u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut sum = FNV_SEED;
    let read_len = READ_BYTES.min(capacity as usize);
    for off in (0..read_len).step_by(buf.len()) {
        let n = buf.len().min(read_len - off);
        r.requests += 1;
        if let Err(e) = blk.read_blocks(off / SECTOR_SIZE, &mut buf[..n]) {
            r.errors += 1;
            return r.fail(format!("read at {off:#x}: {e:?}"));
        }
        r.bytes_in += n as u64;
        sum = fnv1a(&buf[..n], sum);
    }
    let mut detail = format!("capacity={capacity} checksum={sum:#018x}");
    if !blk.readonly() && capacity < WRITE_START + WRITE_BYTES {
        detail.push_str(" write=skipped (disk smaller than 6 MiB)");
        r.detail = detail;
        return r;
    }
    if blk.readonly() {
        // A write must be refused, and nothing may change.
        r.requests += 1;
        match blk.write_blocks(0, &buf[..SECTOR_SIZE]) {
            Err(_) => detail.push_str(" write=refused"),
            Ok(()) => return r.fail(format!("{detail} write to a read-only disk succeeded")),
        }
        r.detail = detail;
        return r;
    }
    // Requests of many sizes, up to 256 KiB each.
    let sizes = [512usize, 4096, 65536, 262_144, 8192, 1024, 131_072];
    let mut data = vec![0u8; 262_144];
    let mut pos = WRITE_START;
    let mut i = 0;
    while pos < WRITE_START + WRITE_BYTES {
        let n = sizes[i % sizes.len()].min((WRITE_START + WRITE_BYTES - pos) as usize);
        i += 1;
        for (k, b) in data[..n].iter_mut().enumerate() {
            *b = pattern(pos + k as u64 - WRITE_START);
        }
        r.requests += 1;
        if let Err(e) = blk.write_blocks((pos / SECTOR_SIZE as u64) as usize, &data[..n]) {
            r.errors += 1;
            return r.fail(format!("write at {pos:#x}: {e:?}"));
        }
        r.bytes_out += n as u64;
        pos += n as u64;
    }
    r.requests += 1;
    if let Err(e) = blk.flush() {
        return r.fail(format!("flush: {e:?}"));
    }
    // Read back through the same path and compare.
    let mut pos = WRITE_START;
    while pos < WRITE_START + WRITE_BYTES {
        let n = data.len();
        r.requests += 1;
        if let Err(e) = blk.read_blocks((pos / SECTOR_SIZE as u64) as usize, &mut data[..n]) {
            return r.fail(format!("read-back at {pos:#x}: {e:?}"));
        }
        r.bytes_in += n as u64;
        if let Some(k) = (0..n).find(|&k| data[k] != pattern(pos + k as u64 - WRITE_START)) {
            return r.fail(format!("read-back mismatch at {:#x}", pos + k as u64));
        }
        pos += n as u64;
    }
    detail.push_str(&format!(
        " written={WRITE_BYTES} at={WRITE_START} flushed=yes verified=yes"
    ));
    r.detail = detail;
    r
}

const FRAMES: usize = 16;
const FRAME_LEN: usize = 1000;

fn exercise_net(t: Front, lb: &Loopback) -> Report {
    let mut r = Report::new();
    let mut net = match VirtIONet::<IdentityHal, Front, 16>::new(t, 2048) {
        Ok(n) => n,
        Err(e) => return r.fail(format!("frontend init: {e:?}")),
    };
    let mac = net.mac_address();
    let frame = |seq: usize| -> Vec<u8> {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x88, 0xb5]);
        f.extend((0..FRAME_LEN - 14).map(|k| (k + seq * 7) as u8));
        f
    };
    let mut got = [false; FRAMES];
    for seq in 0..FRAMES {
        let mut tx = net.new_tx_buffer(FRAME_LEN);
        tx.packet_mut().copy_from_slice(&frame(seq));
        r.requests += 1;
        if let Err(e) = net.send(tx) {
            r.errors += 1;
            return r.fail(format!("send: {e:?}"));
        }
        r.bytes_out += FRAME_LEN as u64;
    }
    let deadline = arch::now_us() + 10_000_000;
    while got.iter().any(|g| !g) && arch::now_us() < deadline {
        lb.poll();
        let Ok(rx) = net.receive() else { continue };
        let p = rx.packet();
        r.bytes_in += p.len() as u64;
        if let Some(seq) = (0..FRAMES).find(|&s| !got[s] && p == frame(s).as_slice()) {
            got[seq] = true;
        } else {
            r.errors += 1;
        }
        let _ = net.recycle_rx_buffer(rx);
    }
    let n = got.iter().filter(|g| **g).count();
    r.detail = format!("frames-sent={FRAMES} frames-echoed={n}");
    if n != FRAMES {
        r.ok = false;
    }
    r
}

fn exercise_console(t: Front, lb: &Loopback) -> Report {
    let mut r = Report::new();
    let mut con = match VirtIOConsole::<IdentityHal, Front>::new(t) {
        Ok(c) => c,
        Err(e) => return r.fail(format!("frontend init: {e:?}")),
    };
    let hello = b"backplane console: send a line\n";
    if con.send_bytes(hello).is_err() {
        return r.fail("send".into());
    }
    r.bytes_out += hello.len() as u64;
    let mut line = Vec::new();
    let deadline = arch::now_us() + 15_000_000;
    while arch::now_us() < deadline {
        lb.poll();
        match con.recv(true) {
            Ok(Some(b'\n')) => break,
            Ok(Some(b)) => line.push(b),
            _ => {}
        }
    }
    r.bytes_in += line.len() as u64;
    if line.is_empty() {
        return r.fail("no input line within 15 s".into());
    }
    let mut echo = b"echo: ".to_vec();
    echo.extend_from_slice(&line);
    echo.push(b'\n');
    if con.send_bytes(&echo).is_err() {
        return r.fail("echo send".into());
    }
    r.bytes_out += echo.len() as u64;
    r.requests = 3;
    r.detail = format!("line-bytes={}", line.len());
    r
}

fn exercise_rng(t: Front) -> Report {
    let mut r = Report::new();
    let mut rng = match VirtIORng::<IdentityHal, Front>::new(t) {
        Ok(x) => x,
        Err(e) => return r.fail(format!("frontend init: {e:?}")),
    };
    let mut buf = [0u8; 256];
    let mut got = 0;
    while got < buf.len() {
        r.requests += 1;
        match rng.request_entropy(&mut buf[got..]) {
            Ok(0) | Err(_) => {
                r.errors += 1;
                return r.fail(format!("entropy stopped after {got} bytes"));
            }
            Ok(n) => got += n,
        }
    }
    r.bytes_in = got as u64;
    let distinct = buf.iter().any(|&b| b != buf[0]);
    r.detail = format!("bytes={got} varied={}", if distinct { "yes" } else { "no" });
    r.ok = distinct;
    r
}

/// Runs standalone mode. Never returns.
pub fn run(info: MachineInfo, plan: Vec<Entry>, heap: (u64, u64)) -> ! {
    // The frontend shares its heap buffers and its stack (request headers)
    // with the device: guest 0's memory is the RAM bank holding both.
    let bank = info
        .memory
        .iter()
        .copied()
        .find(|(b, s)| heap.0 >= *b && heap.0 < b + s)
        .unwrap_or(heap);
    let mut real = RealDevices::probe(&info.virtio_mmio);
    let mut hub = Hub::new();
    let failures = assemble(&plan, &mut real, &mut hub, DiskWait::Interrupt);
    // SAFETY: the bank is normal RAM of this image for the whole run; the
    // loopback guest is our own frontend, which shares its buffers in it.
    let mem = unsafe { OwnMemory::new(bank.0, bank.1) };
    let lb = Loopback::new(hub, Rc::new(RefCell::new(mem)));
    if crate::bench::wanted(&info.bootargs) {
        let served = lb
            .hub()
            .slots()
            .iter()
            .find(|s| s.guest == GUEST && s.device.device_id() == 2)
            .map(|s| s.base);
        crate::bench::run(&info.bootargs, &lb, served, &mut real);
        psci::system_off();
    }
    let served: Vec<(u64, u32, String)> = lb
        .hub()
        .slots()
        .iter()
        .filter(|s| s.guest == GUEST)
        .map(|s| (s.base, s.device.device_id(), s.label.clone()))
        .collect();
    log::info!(
        "standalone: serving {} device(s) to the in-image frontend ({} not served)",
        served.len(),
        failures
    );
    let mut all_ok = failures == 0;
    for (base, id, label) in served {
        let start = arch::now_us();
        let kind = match id {
            2 => Kind::Block,
            1 => Kind::Net,
            3 => Kind::Console,
            _ => Kind::Rng,
        };
        let report = match TrapTransport::new(lb.bus(base)) {
            Err(e) => Report::new().fail(format!("transport: {e:?}")),
            Ok(t) => match kind {
                Kind::Block => exercise_blk(t),
                Kind::Net => exercise_net(t, &lb),
                Kind::Console => exercise_console(t, &lb),
                Kind::Rng => exercise_rng(t),
            },
        };
        all_ok &= report.ok;
        log::info!(
            "backplane: device {} backing={} bytes-in={} bytes-out={} requests={} errors={} time={}us result={} {}",
            kind.name(),
            label,
            report.bytes_in,
            report.bytes_out,
            report.requests,
            report.errors,
            arch::now_us() - start,
            if report.ok { "ok" } else { "FAILED" },
            report.detail
        );
    }
    log::info!(
        "standalone: self-test {} ({} interrupts raised by served devices)",
        if all_ok { "passed" } else { "FAILED" },
        lb.interrupts()
    );
    if backplane::board::POWEROFF_AFTER_SELFTEST {
        psci::system_off();
    }
    log::info!("standalone: serving; nothing more to do until power-off");
    loop {
        lb.poll();
        arch::wait_for_interrupt();
    }
}
