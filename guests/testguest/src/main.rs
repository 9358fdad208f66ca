//! A tiny Xen dom0less domU for Backplane's tests: a virtio-blk frontend (virtio-drivers) that
//! hands Backplane grant addresses (xen.md §7), writes and verifies 256 KiB, then checks that
//! hostile grant descriptors end in DEVICE_NEEDS_RESET. Reports on its vpl011; powers off.
#![no_std]
#![no_main]

mod grant;

use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::ptr::NonNull;
use grant::{GrantHal, Mode};
use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};

// Entry (arm64 Image header; Xen enters at EL1, MMU off, x0 = DTB). Builds an identity map
// (L1: [0, 1 GiB) through an L2 of 2 MiB device blocks, except the 16 MiB grant-table window at
// 0x38000000 which is Normal WB; [1 GiB, 2 GiB) one Normal WB block for RAM), turns on the MMU
// and caches, zeroes BSS, and calls `main`. Table walks are non-cacheable, so tables written
// with the MMU off need no cache maintenance.
global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       1f
    .word   0
    .quad   0                   // text_offset
    .quad   __image_size
    .quad   2                   // flags: little-endian, 4 KiB pages
    .quad   0, 0, 0
    .word   0x644d5241          // "ARM\x64"
    .word   0
1:  mov     x19, x0
    mov     x1, #(3 << 20)      // CPACR_EL1.FPEN: no traps on FP/SIMD
    msr     cpacr_el1, x1
    isb
    adrp    x1, __pt_l1
    adrp    x2, __pt_l2
    mov     x4, #0
2:  str     xzr, [x1, x4, lsl #3]
    add     x4, x4, #1
    cmp     x4, #512
    b.lo    2b
    orr     x3, x2, #3          // L1[0]: table -> L2
    str     x3, [x1]
    ldr     x3, =0x40000705     // L1[1]: 1 GiB block, AttrIdx 1 (Normal WB), ISH, AF
    str     x3, [x1, #8]
    ldr     x5, =0x0060000000000401 // device block: AttrIdx 0, AF, UXN|PXN
    ldr     x6, =0x0060000000000705 // normal block: AttrIdx 1, ISH, AF, UXN|PXN
    mov     x4, #0
3:  lsl     x7, x4, #21
    cmp     x4, #448            // 0x38000000 >> 21
    b.lo    4f
    cmp     x4, #456            // + 16 MiB
    b.hs    4f
    orr     x7, x7, x6
    b       5f
4:  orr     x7, x7, x5
5:  str     x7, [x2, x4, lsl #3]
    add     x4, x4, #1
    cmp     x4, #512
    b.lo    3b
    dsb     sy
    ldr     x3, =0xff04         // MAIR: attr0 Device-nGnRE, attr1 Normal WB RW-allocate
    msr     mair_el1, x3
    // TCR: T0SZ=25 (39-bit VA, walk from L1), non-cacheable outer-shareable walks, 4 KiB,
    // T1SZ=25, EPD1 (no TTBR1 walks), TG1=4 KiB, IPS=40 bits.
    ldr     x3, =0x280992019
    msr     tcr_el1, x3
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    ic      iallu
    dsb     nsh
    isb
    mrs     x3, sctlr_el1
    orr     x3, x3, #1          // M
    orr     x3, x3, #(1 << 2)   // C
    orr     x3, x3, #(1 << 12)  // I
    bic     x3, x3, #(1 << 1)   // no alignment checks
    msr     sctlr_el1, x3
    isb
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
6:  cmp     x1, x2
    b.hs    7f
    stp     xzr, xzr, [x1], #16
    b       6b
7:  ldr     x1, =__stack_top
    mov     sp, x1
    adr     x1, vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      main
8:  wfi
    b       8b
    .ltorg

    // Reads a 32-bit register that may not be served yet: x0 = address; returns x0 = value,
    // x1 = 1 if the access aborted (the vector below resumes after the load).
    .global probe_read32
probe_read32:
    mov     x16, #0
probe_ldr:
    ldr     w0, [x0]
    mov     x1, x16
    ret

    .balign 2048
vectors:
    .rept   4
    .balign 128
    b       exception
    .endr
    .balign 128                 // current EL, SP_ELx, synchronous
    mrs     x17, elr_el1
    adr     x16, probe_ldr
    cmp     x16, x17
    b.ne    exception
    add     x17, x17, #4
    msr     elr_el1, x17
    mov     x16, #1
    eret
    .rept   11
    .balign 128
    b       exception
    .endr
"#
);

/// The console: Xen's vpl011 for the domU (GUEST_PL011_BASE, 0x22000000; read from the DTB).
struct Uart(usize);

/// 32-bit MMIO load with a plain `ldr` (Xen can only emulate accesses with a valid ISS).
fn mmio_read(addr: usize) -> u32 {
    let v: u32;
    // SAFETY: `addr` is a device register mapped Device-nGnRE by the entry code.
    unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) };
    v
}

fn mmio_write(addr: usize, v: u32) {
    // SAFETY: as in `mmio_read`.
    unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)) };
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            while mmio_read(self.0 + 0x18) & (1 << 5) != 0 {} // FR.TXFF
            mmio_write(self.0, u32::from(b));
        }
        Ok(())
    }
}

static mut UART_BASE: usize = 0x2200_0000;

fn out() -> Uart {
    // SAFETY: written once in `main` before any other code runs; single vCPU.
    Uart(unsafe { UART_BASE })
}

macro_rules! say {
    ($($t:tt)*) => {{ let _ = writeln!(out(), "TESTGUEST: {}", format_args!($($t)*)); }};
}

fn power_off() -> ! {
    // PSCI SYSTEM_OFF (0x84000008) through HVC: Xen shuts the domain down.
    // SAFETY: does not return on success; on failure we spin.
    unsafe { asm!("hvc #0", inout("x0") 0x8400_0008u64 => _, options(nostack)) };
    loop {
        // SAFETY: waits for an interrupt; no memory effects.
        unsafe { asm!("wfi", options(nostack)) };
    }
}

#[unsafe(no_mangle)]
extern "C" fn exception() -> ! {
    let (esr, far, elr): (u64, u64, u64);
    // SAFETY: reads of EL1 system registers.
    unsafe {
        asm!("mrs {0}, esr_el1", "mrs {1}, far_el1", "mrs {2}, elr_el1",
            out(reg) esr, out(reg) far, out(reg) elr, options(nostack));
    }
    say!("FAIL exception esr={esr:#x} far={far:#x} elr={elr:#x}");
    power_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    say!("FAIL panic: {info}");
    power_off()
}

/// Where the guest writes: 256 KiB at sector 8192 (4 MiB into the disk).
const SECTOR: usize = 8192;
const LEN: usize = 256 << 10;
const STATUS: usize = 0x70;
const NEEDS_RESET: u32 = 64;

/// The byte the guest writes at offset `i` of its 256 KiB (xtask checks the host file with
/// the same formula).
fn pattern(i: usize) -> u8 {
    ((i as u32).wrapping_mul(0x9e37_79b1) >> 24) as u8 ^ (i >> 12) as u8
}

#[repr(C, align(4096))]
struct Buf([u8; LEN]);
static mut WBUF: Buf = Buf([0; LEN]);
static mut RBUF: Buf = Buf([0; LEN]);
#[repr(C, align(4096))]
struct Page([u8; 4096]);
/// The hostile cases' data buffer.
static mut HBUF: Page = Page([0; 4096]);
// SAFETY: both are plain integers, for which all-zero is valid.
static mut REQ: BlkReq = unsafe { core::mem::zeroed() };
// SAFETY: as above.
static mut RESP: BlkResp = unsafe { core::mem::zeroed() };

/// A `&mut` to a static buffer.
///
/// # Safety
/// No other reference to `*p` may be live while the result is.
unsafe fn excl<T>(p: *mut T) -> &'static mut T {
    // SAFETY: the caller's promise; statics are valid and aligned for 'static.
    unsafe { &mut *p }
}

type Blk = VirtIOBlk<GrantHal, MmioTransport<'static>>;

fn open(base: usize) -> Blk {
    // SAFETY: `base` is the virtio-mmio window from our DTB, mapped as device memory, used
    // by one transport at a time (the previous one is dropped before the next is made).
    let t = unsafe { MmioTransport::new(NonNull::new(base as *mut VirtIOHeader).unwrap(), 0x200) };
    let t = t.unwrap_or_else(|e| {
        say!("FAIL virtio-mmio transport: {e:?}");
        power_off()
    });
    VirtIOBlk::new(t).unwrap_or_else(|e| {
        say!("FAIL virtio-blk init: {e:?}");
        power_off()
    })
}

#[repr(C)]
struct Probe {
    value: u64,
    faulted: u64,
}

unsafe extern "C" {
    /// See the entry assembly.
    fn probe_read32(addr: usize) -> Probe;
}

/// Waits until the backend serves the virtio window: Xen injects a data abort for accesses
/// to a window no IOREQ server claims yet (xen.md §13), and dom0 may still be starting.
fn wait_for_backend(base: usize) -> bool {
    // Backplane (as of this writing) hangs if a guest's first trapped access arrives while it
    // runs its dom0 self-checks, right after registering the server: start probing only after
    // it has had time to finish them.
    while now_secs() < 2 {
        sched_yield();
    }
    let start = now_secs();
    let mut told = false;
    loop {
        // SAFETY: a load from the device window, mapped as device memory; an abort is caught
        // by the vector and reported as `faulted`.
        let p = unsafe { probe_read32(base) };
        if p.faulted == 0 {
            return p.value as u32 == 0x7472_6976; // "virt"
        }
        if !told {
            say!("waiting for the backend to serve {base:#x}");
            told = true;
        }
        if now_secs() - start > 60 {
            return false;
        }
        let t = ticks();
        while ticks() - t < 1_000_000 {
            sched_yield();
        }
    }
}

/// SCHEDOP_yield (sched_op = 29, cmd 0): let dom0 run while we wait.
fn sched_yield() {
    // SAFETY: a Xen hypercall without memory arguments.
    unsafe {
        asm!("hvc #0xea1", inout("x0") 0u64 => _, inout("x1") 0u64 => _,
            inout("x16") 29u64 => _, options(nostack));
    }
}

fn ticks() -> u64 {
    let c: u64;
    // SAFETY: EL1 may read the virtual counter.
    unsafe { asm!("mrs {0}, cntvct_el0", out(reg) c, options(nostack)) };
    c
}

/// Virtual counter seconds.
fn now_secs() -> u64 {
    let (c, f): (u64, u64);
    // SAFETY: EL1 may read the virtual counter and its frequency.
    unsafe {
        asm!("mrs {0}, cntvct_el0", "mrs {1}, cntfrq_el0", out(reg) c, out(reg) f, options(nostack))
    };
    c / f.max(1)
}

/// Waits for the request in flight: `Ok` once the device used it, `Err(status)` if it flagged
/// DEVICE_NEEDS_RESET or did nothing for 10 s.
fn wait(blk: &mut Blk, base: usize) -> Result<(), u32> {
    let start = now_secs();
    loop {
        if blk.peek_used().is_some() {
            return Ok(());
        }
        let s = mmio_read(base + STATUS);
        if s & NEEDS_RESET != 0 || now_secs() - start > 10 {
            return Err(s);
        }
    }
}

/// One good request through the non-blocking API (the blocking one would spin forever on a
/// device that flagged DEVICE_NEEDS_RESET): `buf` is written at `SECTOR` or read from it.
fn io(blk: &mut Blk, base: usize, write: bool, buf: &mut [u8]) -> Result<(), &'static str> {
    // SAFETY: REQ/RESP serve one request at a time; `buf` outlives the request, which is
    // completed (or the device reset) before we return.
    let (req, resp) = unsafe { (excl(&raw mut REQ), excl(&raw mut RESP)) };
    // SAFETY: as above.
    let token = unsafe {
        if write {
            blk.write_blocks_nb(SECTOR, req, buf, resp)
        } else {
            blk.read_blocks_nb(SECTOR, req, buf, resp)
        }
    }
    .map_err(|_| "submit")?;
    if let Err(s) = wait(blk, base) {
        mmio_write(base + STATUS, 0);
        return Err(if s & NEEDS_RESET != 0 {
            "device needs reset"
        } else {
            "timeout"
        });
    }
    // SAFETY: the same buffers as the submission.
    unsafe {
        if write {
            blk.complete_write_blocks(token, req, buf, resp)
        } else {
            blk.complete_read_blocks(token, req, buf, resp)
        }
    }
    .map_err(|_| "device status not OK")
}

/// One hostile read: the data buffer gets `mode`; the device must flag DEVICE_NEEDS_RESET.
fn hostile(base: usize, name: &str, mode: Mode) {
    let mut blk = open(base);
    grant::set_mode(mode);
    // SAFETY: the statics are used by this request only; the device is reset below before
    // anything else touches them.
    let r = unsafe {
        blk.read_blocks_nb(
            SECTOR,
            excl(&raw mut REQ),
            &mut excl(&raw mut HBUF).0,
            excl(&raw mut RESP),
        )
    };
    grant::set_mode(Mode::Honest);
    if let Err(e) = r {
        say!("hostile {name} FAIL submit: {e:?}");
        return;
    }
    let status = match wait(&mut blk, base) {
        Ok(()) => mmio_read(base + STATUS),
        Err(s) => s,
    };
    // Reset (Status = 0) before the driver's Drop unsets the queue.
    mmio_write(base + STATUS, 0);
    drop(blk);
    if status & NEEDS_RESET != 0 {
        say!("hostile {name} status={status:#x} needs_reset=yes");
    } else {
        say!("hostile {name} FAIL status={status:#x} needs_reset=no");
    }
}

#[unsafe(no_mangle)]
extern "C" fn main(dtb: *const u8) -> ! {
    // SAFETY: Xen passed a valid DTB in x0; it lies in RAM, mapped Normal WB.
    let fdt = unsafe { fdt::Fdt::from_ptr(dtb) }.unwrap_or_else(|_| {
        say!("FAIL no device tree");
        power_off()
    });
    let reg0 = |n: Option<fdt::node::FdtNode>| {
        n.and_then(|n| n.reg()?.next())
            .map(|r| (r.starting_address as u64, r.size.unwrap_or(0) as u64))
    };
    if let Some((uart, _)) = reg0(fdt.find_compatible(&["arm,sbsa-uart", "arm,pl011"])) {
        // SAFETY: single vCPU, before any other use.
        unsafe { UART_BASE = uart as usize };
    }
    say!("up, uart at {:#x}", out().0);
    let Some((gt_base, gt_size)) = reg0(fdt.find_node("/hypervisor")) else {
        say!("FAIL no /hypervisor node (is xen,enhanced set?)");
        power_off()
    };
    let Some((blk_base, _)) = reg0(fdt.find_compatible(&["virtio,mmio"])) else {
        say!("FAIL no virtio,mmio node");
        power_off()
    };
    if let Err(e) = grant::init(gt_base, gt_size) {
        say!("FAIL mapping the grant table at {gt_base:#x}: {e}");
        power_off()
    }
    say!(
        "grant table: {} frames at {gt_base:#x} (window {gt_size:#x}); blk at {blk_base:#x}",
        grant::FRAMES
    );
    let base = blk_base as usize;
    if !wait_for_backend(base) {
        say!("FAIL no virtio device at {base:#x}");
        power_off()
    }

    let mut blk = open(base);
    say!("blk capacity={} sectors", blk.capacity());
    // SAFETY: single-threaded; the buffers are only used here.
    let (w, r) = unsafe { (&mut excl(&raw mut WBUF).0, &mut excl(&raw mut RBUF).0) };
    for (i, b) in w.iter_mut().enumerate() {
        *b = pattern(i);
    }
    if let Err(e) = io(&mut blk, base, true, w) {
        say!("grant blk FAIL write: {e}");
        power_off()
    }
    if let Err(e) = io(&mut blk, base, false, r) {
        say!("grant blk FAIL read: {e}");
        power_off()
    }
    if w[..] == r[..] {
        say!("grant blk wrote={LEN} verified=yes");
    } else {
        let at = w
            .iter()
            .zip(r.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        say!("grant blk FAIL wrote={LEN} verified=no first difference at {at}");
    }
    // Xen keeps GTF_reading/GTF_writing set while the backend maps a page.
    say!(
        "info: {} grant refs were still mapped by the backend when revoked",
        grant::BUSY_AT_REVOKE.load(core::sync::atomic::Ordering::Relaxed)
    );
    mmio_write(base + STATUS, 0);
    drop(blk);

    hostile(base, "(a) never-granted-ref", Mode::NeverGranted);
    say!("hostile (b) plain-address skipped: the backend accepts both kinds");
    hostile(base, "(c) read-only-grant-for-device-write", Mode::ReadOnly);

    // Continue after the resets: a good request still works.
    let mut blk = open(base);
    r[..SECTOR_SIZE * 8].fill(0);
    match io(&mut blk, base, false, &mut r[..SECTOR_SIZE * 8]) {
        Ok(()) if r[..SECTOR_SIZE * 8] == w[..SECTOR_SIZE * 8] => {
            say!("after resets read=4096 verified=yes")
        }
        Ok(()) => say!("after resets FAIL read=4096 verified=no"),
        Err(e) => say!("after resets FAIL read: {e}"),
    }
    mmio_write(base + STATUS, 0);
    drop(blk);
    say!("done");
    power_off()
}
