//! Stage-1 identity map: RAM normal write-back, everything else device memory.
//!
//! Two maps are built: a bootstrap one (the GiB holding the image is normal
//! memory, the rest device) so that Rust code never runs with the MMU off,
//! and the final one from the device tree's memory regions. Tables come from
//! a fixed pool in BSS; `map_normal`/`map_device` change the live map later
//! (Xen's extended regions) with break-before-make.
use aarch64_cpu::asm::barrier;
use core::arch::asm;
use spin::Mutex;

const ENTRIES: usize = 512;
const POOL: usize = 20;

const VALID: u64 = 1;
const TABLE: u64 = 1 << 1; // table (levels 0-2) or page (level 3)
const ATTR_DEVICE: u64 = 0 << 2; // MAIR index 0
const ATTR_NORMAL: u64 = 1 << 2; // MAIR index 1
const INNER_SHAREABLE: u64 = 3 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Memory type of a mapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Attr {
    /// Normal, inner/outer write-back, inner shareable.
    Normal,
    /// Device-nGnRE, never executable.
    Device,
    /// Not mapped (guard pages).
    Invalid,
}

impl Attr {
    fn leaf_bits(self) -> u64 {
        match self {
            Attr::Normal => VALID | ATTR_NORMAL | INNER_SHAREABLE | ACCESS_FLAG,
            Attr::Device => VALID | ATTR_DEVICE | ACCESS_FLAG | PXN | UXN,
            Attr::Invalid => 0,
        }
    }
}

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

struct Pool {
    tables: [Table; POOL],
    used: usize,
    /// The live root table's index + 1 (0: none yet). Zero-initialised so
    /// the pool stays in BSS instead of the image file.
    live_root: usize,
}

static POOL_TABLES: Mutex<Pool> = Mutex::new(Pool {
    tables: [const { Table([0; ENTRIES]) }; POOL],
    used: 0,
    live_root: 0,
});

/// Errors from building the map.
#[derive(Debug)]
pub enum MapError {
    /// The fixed table pool is exhausted.
    OutOfTables,
    /// The final map is not live yet.
    NotLive,
}

impl Pool {
    fn alloc(&mut self) -> Result<usize, MapError> {
        if self.used == POOL {
            return Err(MapError::OutOfTables);
        }
        let i = self.used;
        self.used += 1;
        self.tables[i].0 = [0; ENTRIES];
        Ok(i)
    }

    fn index_of(&self, addr: u64) -> usize {
        let base = self.tables.as_ptr() as u64;
        ((addr - base) / 4096) as usize
    }

    fn addr_of(&self, i: usize) -> u64 {
        &self.tables[i] as *const Table as u64
    }

    /// Maps `[va, va+size)` identically with `attr` below table `t` at `level`.
    fn map(
        &mut self,
        t: usize,
        level: u32,
        va: u64,
        size: u64,
        attr: Attr,
    ) -> Result<(), MapError> {
        let shift = 39 - 9 * level;
        let block = 1u64 << shift;
        let mut addr = va;
        let end = va + size;
        while addr < end {
            let idx = ((addr >> shift) & 511) as usize;
            let entry_start = addr & !(block - 1);
            let entry_end = entry_start + block;
            let chunk_end = end.min(entry_end);
            let whole = addr == entry_start && chunk_end == entry_end;
            let old = self.tables[t].0[idx];
            if whole && (level == 1 || level == 2 || level == 3) {
                let new = match attr {
                    Attr::Invalid => 0,
                    _ if level == 3 => entry_start | attr.leaf_bits() | TABLE,
                    _ => entry_start | attr.leaf_bits(),
                };
                self.replace(t, idx, new);
            } else {
                let child = if old & (VALID | TABLE) == (VALID | TABLE) && level < 3 {
                    self.index_of(old & ADDR_MASK)
                } else {
                    // Split: a new table that repeats the old block's mapping.
                    let c = self.alloc()?;
                    if old & VALID != 0 {
                        let sub = block / ENTRIES as u64;
                        let bits = old & !ADDR_MASK & !TABLE;
                        for (k, e) in self.tables[c].0.iter_mut().enumerate() {
                            let a = entry_start + k as u64 * sub;
                            *e = a | bits | if level + 1 == 3 { TABLE } else { 0 };
                        }
                    }
                    let addr_c = self.addr_of(c);
                    self.replace(t, idx, addr_c | VALID | TABLE);
                    c
                };
                self.map(child, level + 1, addr, chunk_end - addr, attr)?;
            }
            addr = chunk_end;
        }
        Ok(())
    }

    /// Break-before-make when the live map changes a valid entry.
    fn replace(&mut self, t: usize, idx: usize, new: u64) {
        let slot = &mut self.tables[t].0[idx];
        if *slot & VALID != 0 && self.live_root != 0 {
            *slot = 0;
            tlb_flush();
        }
        *slot = new;
    }
}

fn tlb_flush() {
    // SAFETY: TLB maintenance has no memory-safety effect; the barriers make
    // the table writes visible to the walker first.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
}

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __guard0: u8;
    static __guard1: u8;
}

fn sym(s: *const u8) -> u64 {
    s as u64
}

/// The image's `[start, end)` in memory, stacks included.
pub fn image_range() -> (u64, u64) {
    (sym(&raw const __image_start), sym(&raw const __image_end))
}

/// Whether `addr` lies in one of the stack guard pages.
pub fn is_guard_page(addr: u64) -> bool {
    [sym(&raw const __guard0), sym(&raw const __guard1)]
        .iter()
        .any(|&g| addr >= g && addr < g + 4096)
}

const DEVICE_SPAN: u64 = 512 << 30;

fn build(ram: &[(u64, u64)]) -> Result<u64, MapError> {
    let mut p = POOL_TABLES.lock();
    let root = p.alloc()?;
    p.map(root, 0, 0, DEVICE_SPAN, Attr::Device)?;
    for &(base, size) in ram {
        let start = base & !0xfff;
        let end = (base + size + 0xfff) & !0xfff;
        p.map(root, 0, start, end - start, Attr::Normal)?;
    }
    for g in [sym(&raw const __guard0), sym(&raw const __guard1)] {
        p.map(root, 0, g, 4096, Attr::Invalid)?;
    }
    clean_tables(&p);
    Ok(p.addr_of(root))
}

fn clean_tables(p: &Pool) {
    for i in 0..p.used {
        let base = p.addr_of(i);
        for line in (base..base + 4096).step_by(64) {
            // SAFETY: cleaning and invalidating our own table lines to the
            // point of coherency changes no data.
            unsafe { asm!("dc civac, {}", in(reg) line, options(nostack)) };
        }
    }
    // SAFETY: a barrier only orders memory accesses.
    unsafe { asm!("dsb ish", options(nostack)) };
}

#[repr(C, align(4096))]
struct BootTables([[u64; ENTRIES]; 2]);

static mut BOOT_TABLES: BootTables = BootTables([[0; ENTRIES]; 2]);

/// Turns the MMU and caches on with a bootstrap map: the GiBs that hold the
/// image and `also` (the device tree) are normal memory, the rest of the
/// first 512 GiB device memory.
///
/// Runs with the MMU off, where atomics (and so locks) are not dependable:
/// it touches only its own static tables, with aligned stores.
pub fn enable_bootstrap(also: u64) {
    let (start, _) = image_range();
    let image_gib = start >> 30;
    let tables = &raw mut BOOT_TABLES;
    // SAFETY: single CPU, called once before anything else uses the tables;
    // no reference to the static is formed, only raw aligned stores.
    unsafe {
        let root = &raw mut (*tables).0[0];
        let l1 = &raw mut (*tables).0[1];
        for i in 0..ENTRIES {
            let normal = i as u64 == image_gib || i as u64 == also >> 30;
            let attr = if normal { Attr::Normal } else { Attr::Device };
            (*l1)[i] = ((i as u64) << 30) | attr.leaf_bits();
        }
        (*root)[0] = (l1 as u64) | VALID | TABLE;
        for line in (root as u64..root as u64 + 2 * 4096).step_by(64) {
            asm!("dc civac, {}", in(reg) line, options(nostack));
        }
        asm!("dsb ish", options(nostack));
        switch_to(root as u64);
    }
}

/// Replaces the bootstrap map with one built from the RAM regions.
pub fn enable_final(ram: &[(u64, u64)]) -> Result<(), MapError> {
    let ttbr = build(ram)?;
    switch_to(ttbr);
    let mut p = POOL_TABLES.lock();
    p.live_root = p.index_of(ttbr) + 1;
    Ok(())
}

/// Maps `[base, base+size)` as normal write-back memory in the live map
/// (memory shared with a hypervisor).
pub fn map_normal(base: u64, size: u64) -> Result<(), MapError> {
    map_live(base, size, Attr::Normal)
}

/// Maps `[base, base+size)` as device memory in the live map.
pub fn map_device(base: u64, size: u64) -> Result<(), MapError> {
    map_live(base, size, Attr::Device)
}

fn map_live(base: u64, size: u64, attr: Attr) -> Result<(), MapError> {
    let mut p = POOL_TABLES.lock();
    let Some(root) = p.live_root.checked_sub(1) else {
        return Err(MapError::NotLive);
    };
    let start = base & !0xfff;
    let end = (base + size + 0xfff) & !0xfff;
    p.map(root, 0, start, end - start, attr)?;
    tlb_flush();
    Ok(())
}

/// Tables used from the pool, for the boot report.
pub fn tables_used() -> usize {
    POOL_TABLES.lock().used
}

fn switch_to(ttbr: u64) {
    let mmfr0: u64;
    // SAFETY: reading an ID register.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0, options(nomem, nostack)) };
    let ips = (mmfr0 & 0xf).min(5);
    let mair: u64 = 0x04 | (0xff << 8);
    let tcr: u64 = 16 // T0SZ: 48-bit VA, walk starts at level 0
        | (1 << 8) | (1 << 10) | (3 << 12) // WB WA walks, inner shareable
        | (1 << 23) // EPD1: no TTBR1 walks
        | (ips << 32);
    // SAFETY: the new tables identity-map all RAM (including this code, the
    // stacks and the tables) as normal memory, so execution continues at the
    // same addresses with the same contents after the switch.
    unsafe {
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "isb",
            "msr ttbr0_el1, {ttbr}",
            "isb",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            "mrs {tmp}, sctlr_el1",
            "orr {tmp}, {tmp}, #1",        // M
            "orr {tmp}, {tmp}, #(1 << 2)", // C
            "orr {tmp}, {tmp}, #(1 << 12)", // I
            "msr sctlr_el1, {tmp}",
            "isb",
            mair = in(reg) mair,
            tcr = in(reg) tcr,
            ttbr = in(reg) ttbr,
            tmp = out(reg) _,
            options(nostack),
        );
    }
    barrier::isb(barrier::SY);
}
