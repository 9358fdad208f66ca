//! A domU's memory as the device core sees it ([`GuestMemory`]), through foreign mappings
//! (xen.md §6) and, for addresses with bit 63 set, grant mappings (xen.md §7).
//!
//! Foreign frames are mapped on demand, a 2 MiB chunk of guest-physical space at a time, into
//! a window of our extended-region IPA space with `add_to_physmap_batch`; a clock (second
//! chance) replaces chunks when the window is full. Every per-page result is checked: a page
//! Xen refused is simply not mapped, and an access touching it fails like one outside the
//! guest's RAM banks — a guest's bad address is a [`MemError`], never a fault of ours.
//!
//! dom0's stage-1 maps the window identity, Normal WB (the adapter maps every extended
//! region at init), so an IPA in the window is also the pointer we copy through.

use core::ptr;

use super::abi::{PAGE_SHIFT, PAGE_SIZE, gnttab};
use super::error::{GrantStatus, XenError};
use super::ops::XenOps;
use crate::virtio::memory::{GuestMemory, MemError, range_end};

/// Guest-physical bytes one cache slot maps.
pub const CHUNK_SIZE: u64 = 2 << 20;
const CHUNK_SHIFT: u32 = 21;
const PAGES_PER_CHUNK: usize = (CHUNK_SIZE / PAGE_SIZE) as usize;
/// Most chunk slots per guest (128 MiB of window).
pub const MAX_CHUNKS: usize = 64;
/// Most RAM banks per guest.
pub const MAX_BANKS: usize = 4;
/// Most grant-mapped pages cached per guest.
pub const MAX_GRANT_PAGES: usize = 32;
/// Pages per `add_to_physmap_batch` call (keeps the three arrays at 1.25 KiB of stack).
const BATCH: usize = 64;
/// Bit 63 marks a grant address: `(1 << 63) | (ref << 12) | offset`.
pub const GRANT_ADDR_BIT: u64 = 1 << 63;

#[derive(Clone, Copy, Default)]
struct ChunkSlot {
    /// Guest chunk index (`gpa >> 21`) held, if any.
    chunk: Option<u64>,
    referenced: bool,
    /// Which of the 512 pages Xen mapped.
    mapped: [u64; PAGES_PER_CHUNK / 64],
}

impl ChunkSlot {
    fn page_mapped(&self, p: usize) -> bool {
        self.mapped[p / 64] & (1 << (p % 64)) != 0
    }
}

#[derive(Clone, Copy, Default)]
struct GrantSlot {
    gref: Option<u32>,
    handle: u32,
    readonly: bool,
    referenced: bool,
}

/// Counters for the size report and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// Chunks mapped.
    pub chunk_maps: u64,
    /// Chunks evicted to make room.
    pub chunk_evictions: u64,
    /// Pages Xen refused to map.
    pub page_errors: u64,
    /// Grant pages mapped.
    pub grant_maps: u64,
}

/// One guest's memory, foreign- and grant-mapped on demand.
pub struct XenGuestMemory<H: XenOps> {
    hv: H,
    domid: u16,
    banks: heapless::Vec<(u64, u64), MAX_BANKS>,
    window: u64,
    slots: heapless::Vec<ChunkSlot, MAX_CHUNKS>,
    hand: usize,
    grant_window: u64,
    grants: heapless::Vec<GrantSlot, MAX_GRANT_PAGES>,
    grant_hand: usize,
    stats: MemStats,
}

impl<H: XenOps> XenGuestMemory<H> {
    /// Memory of guest `domid`, whose RAM is `banks` (`(base, size)` each), mapped through
    /// `chunks` 2 MiB slots at IPA `window` and `grant_pages` pages at IPA `grant_window`.
    ///
    /// # Safety
    /// `[window, window + chunks * 2 MiB)` and `[grant_window, grant_window + grant_pages *
    /// 4 KiB)` must be page-aligned, unused extended-region IPA space, identity-mapped Normal
    /// WB in dom0's stage-1, and reserved for this object for its whole life.
    pub unsafe fn new(
        hv: H,
        domid: u16,
        banks: &[(u64, u64)],
        window: u64,
        chunks: usize,
        grant_window: u64,
        grant_pages: usize,
    ) -> Result<Self, XenError> {
        let page_aligned = |a: u64| a.is_multiple_of(PAGE_SIZE);
        if chunks == 0
            || chunks > MAX_CHUNKS
            || grant_pages > MAX_GRANT_PAGES
            || !page_aligned(window)
            || !page_aligned(grant_window)
        {
            return Err(XenError::EINVAL);
        }
        let mut b = heapless::Vec::new();
        for &(base, size) in banks {
            range_end(base, size).map_err(|_| XenError::EINVAL)?;
            b.push((base, size)).map_err(|_| XenError::E2BIG)?;
        }
        let mut slots = heapless::Vec::new();
        slots
            .resize(chunks, ChunkSlot::default())
            .map_err(|_| XenError::E2BIG)?;
        let mut grants = heapless::Vec::new();
        grants
            .resize(grant_pages, GrantSlot::default())
            .map_err(|_| XenError::E2BIG)?;
        Ok(XenGuestMemory {
            hv,
            domid,
            banks: b,
            window,
            slots,
            hand: 0,
            grant_window,
            grants,
            grant_hand: 0,
            stats: MemStats::default(),
        })
    }

    /// The guest.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// Counters.
    pub fn stats(&self) -> MemStats {
        self.stats
    }

    /// Number of chunks currently mapped.
    pub fn mapped_chunks(&self) -> usize {
        self.slots.iter().filter(|s| s.chunk.is_some()).count()
    }

    /// Unmaps everything (the guest is going away, or is being reset). The object stays usable.
    pub fn release(&mut self) {
        for i in 0..self.slots.len() {
            self.unmap_chunk(i);
        }
        for i in 0..self.grants.len() {
            self.unmap_grant(i);
        }
    }

    /// True if `[addr, end)` is covered by the guest's RAM banks.
    fn in_banks(&self, addr: u64, end: u64) -> bool {
        let mut cur = addr;
        while cur < end {
            match self.banks.iter().find(|&&(b, s)| cur >= b && cur - b < s) {
                Some(&(b, s)) => cur = b + s,
                None => return false,
            }
        }
        true
    }

    fn slot_ipa(&self, slot: usize) -> u64 {
        self.window + slot as u64 * CHUNK_SIZE
    }

    fn unmap_chunk(&mut self, i: usize) {
        let s = self.slots[i];
        if s.chunk.is_none() {
            return;
        }
        let base_gfn = self.slot_ipa(i) >> PAGE_SHIFT;
        for p in (0..PAGES_PER_CHUNK).filter(|&p| s.page_mapped(p)) {
            // SAFETY: this page is a foreign mapping we made in our reserved window; no
            // pointer into it outlives `copy`.
            if let Err(e) = unsafe { self.hv.remove_from_physmap(base_gfn + p as u64) } {
                log::warn!("xen: dom{}: unmapping window page: {e}", self.domid);
            }
        }
        self.slots[i] = ChunkSlot::default();
    }

    /// The slot holding guest chunk `chunk`, mapping it (and evicting another) if needed.
    fn slot_for(&mut self, chunk: u64) -> Result<usize, XenError> {
        if let Some(i) = self.slots.iter().position(|s| s.chunk == Some(chunk)) {
            self.slots[i].referenced = true;
            return Ok(i);
        }
        let i = match self.slots.iter().position(|s| s.chunk.is_none()) {
            Some(i) => i,
            None => loop {
                let h = self.hand;
                self.hand = (h + 1) % self.slots.len();
                if self.slots[h].referenced {
                    self.slots[h].referenced = false;
                } else {
                    self.unmap_chunk(h);
                    self.stats.chunk_evictions += 1;
                    break h;
                }
            },
        };
        self.map_chunk(i, chunk)?;
        Ok(i)
    }

    fn map_chunk(&mut self, i: usize, chunk: u64) -> Result<(), XenError> {
        let mut slot = ChunkSlot {
            chunk: Some(chunk),
            referenced: true,
            ..Default::default()
        };
        let base_gfn = self.slot_ipa(i) >> PAGE_SHIFT;
        let first_gfn = chunk << (CHUNK_SHIFT - PAGE_SHIFT);
        let mut idxs = [0u64; BATCH];
        let mut gpfns = [0u64; BATCH];
        let mut errs = [0i32; BATCH];
        let mut pages = [0usize; BATCH];
        let mut n = 0;
        let mut last_err = None;
        let mut any = false;
        for p in 0..=PAGES_PER_CHUNK {
            if p < PAGES_PER_CHUNK {
                let gpa = (first_gfn + p as u64) << PAGE_SHIFT;
                if !self.in_banks(gpa, gpa + PAGE_SIZE) {
                    continue;
                }
                idxs[n] = first_gfn + p as u64;
                gpfns[n] = base_gfn + p as u64;
                errs[n] = 1; // "not processed": Xen overwrites with 0 or -errno
                pages[n] = p;
                n += 1;
                if n < BATCH {
                    continue;
                }
            }
            if n == 0 {
                continue;
            }
            // SAFETY: the gpfns are in our reserved window, free (slot `i` was unmapped).
            let r = unsafe {
                self.hv
                    .add_to_physmap_batch(self.domid, &idxs[..n], &gpfns[..n], &mut errs[..n])
            };
            if let Err(e) = r {
                last_err = Some(e);
            }
            for k in 0..n {
                if errs[k] == 0 {
                    slot.mapped[pages[k] / 64] |= 1 << (pages[k] % 64);
                    any = true;
                } else {
                    self.stats.page_errors += 1;
                    if errs[k] < 0 {
                        last_err = Some(XenError(errs[k] as i64));
                    }
                }
            }
            n = 0;
        }
        if let Some(e) = last_err {
            log::warn!(
                "xen: dom{}: foreign map of chunk {:#x}: {e}",
                self.domid,
                chunk << CHUNK_SHIFT
            );
        }
        if !any {
            return Err(last_err.unwrap_or(XenError::EFAULT));
        }
        self.slots[i] = slot;
        self.stats.chunk_maps += 1;
        Ok(())
    }

    /// Runs `f(pointer, offset_in_access, len)` over each piece of `[addr, addr + len)`,
    /// mapping as needed (`write`: grant pages must be writable). All-or-nothing per piece; earlier pieces may have run on error.
    fn for_each_piece(
        &mut self,
        addr: u64,
        len: u64,
        write: bool,
        mut f: impl FnMut(*mut u8, usize, usize),
    ) -> Result<(), MemError> {
        let end = range_end(addr, len)?;
        let oob = MemError::OutOfRange { addr, len };
        if len == 0 {
            return Ok(());
        }
        if addr & GRANT_ADDR_BIT != 0 {
            return self.for_each_grant_piece(addr, len, write, f);
        }
        if !self.in_banks(addr, end) {
            return Err(oob);
        }
        let mut done = 0u64;
        while done < len {
            let a = addr + done;
            let off = a & (CHUNK_SIZE - 1);
            let n = (len - done).min(CHUNK_SIZE - off);
            let i = self.slot_for(a >> CHUNK_SHIFT).map_err(|_| oob)?;
            let first = (off >> PAGE_SHIFT) as usize;
            let last = ((off + n - 1) >> PAGE_SHIFT) as usize;
            if !(first..=last).all(|p| self.slots[i].page_mapped(p)) {
                return Err(oob);
            }
            f(
                (self.slot_ipa(i) + off) as *mut u8,
                done as usize,
                n as usize,
            );
            done += n;
        }
        Ok(())
    }

    fn unmap_grant(&mut self, i: usize) {
        let g = self.grants[i];
        if g.gref.is_none() {
            return;
        }
        let mut op = super::abi::GnttabUnmapGrantRef {
            host_addr: self.grant_window + i as u64 * PAGE_SIZE,
            handle: g.handle,
            ..Default::default()
        };
        // SAFETY: the page is a grant mapping we made; no pointer into it outlives `copy`.
        match unsafe { self.hv.unmap_grant_ref(&mut op) } {
            Err(e) => log::warn!("xen: dom{}: grant unmap: {e}", self.domid),
            Ok(()) if op.status != 0 => {
                log::warn!(
                    "xen: dom{}: grant unmap: {}",
                    self.domid,
                    GrantStatus(op.status)
                )
            }
            Ok(()) => {}
        }
        self.grants[i] = GrantSlot::default();
    }

    /// The grant slot holding `gref`, mapping it if needed.
    fn grant_slot_for(&mut self, gref: u32, write: bool) -> Result<usize, ()> {
        if let Some(i) = self.grants.iter().position(|g| g.gref == Some(gref)) {
            if write && self.grants[i].readonly {
                return Err(());
            }
            self.grants[i].referenced = true;
            return Ok(i);
        }
        if self.grants.is_empty() {
            return Err(());
        }
        let i = match self.grants.iter().position(|g| g.gref.is_none()) {
            Some(i) => i,
            None => loop {
                let h = self.grant_hand;
                self.grant_hand = (h + 1) % self.grants.len();
                if self.grants[h].referenced {
                    self.grants[h].referenced = false;
                } else {
                    self.unmap_grant(h);
                    break h;
                }
            },
        };
        let host_addr = self.grant_window + i as u64 * PAGE_SIZE;
        for readonly in [false, true] {
            if readonly && write {
                break;
            }
            let flags =
                gnttab::GNTMAP_HOST_MAP | if readonly { gnttab::GNTMAP_READONLY } else { 0 };
            let mut op = super::abi::GnttabMapGrantRef {
                host_addr,
                flags,
                gref,
                dom: self.domid,
                ..Default::default()
            };
            // SAFETY: `host_addr` is a free page of our reserved grant window.
            let r = unsafe { self.hv.map_grant_ref(&mut op) };
            match r {
                Ok(()) if op.status == 0 => {
                    self.grants[i] = GrantSlot {
                        gref: Some(gref),
                        handle: op.handle,
                        readonly,
                        referenced: true,
                    };
                    self.stats.grant_maps += 1;
                    return Ok(i);
                }
                // A read-only grant refuses a writable mapping: retry read-only for reads.
                // Xen 4.17 answers GNTST_general_error (-1, "Attempt to write-pin a r/o
                // grant entry" in common/grant_table.c), not permission_denied (-8).
                Ok(()) if !write && (op.status == -1 || op.status == -8) => continue,
                Ok(()) => log::warn!(
                    "xen: dom{}: grant {gref}: {}",
                    self.domid,
                    GrantStatus(op.status)
                ),
                Err(e) => log::warn!("xen: dom{}: grant {gref}: {e}", self.domid),
            }
            break;
        }
        Err(())
    }

    fn for_each_grant_piece(
        &mut self,
        addr: u64,
        len: u64,
        write: bool,
        mut f: impl FnMut(*mut u8, usize, usize),
    ) -> Result<(), MemError> {
        let oob = MemError::OutOfRange { addr, len };
        let mut done = 0u64;
        while done < len {
            let a = (addr + done) & !GRANT_ADDR_BIT;
            let gref = u32::try_from(a >> PAGE_SHIFT).map_err(|_| oob)?;
            let off = a & (PAGE_SIZE - 1);
            let n = (len - done).min(PAGE_SIZE - off);
            let i = self.grant_slot_for(gref, write).map_err(|_| oob)?;
            let p = (self.grant_window + i as u64 * PAGE_SIZE + off) as *mut u8;
            f(p, done as usize, n as usize);
            done += n;
        }
        Ok(())
    }
}

impl<H: XenOps> Drop for XenGuestMemory<H> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<H: XenOps> GuestMemory for XenGuestMemory<H> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let dst = buf.as_mut_ptr();
        self.for_each_piece(addr, buf.len() as u64, false, |src, at, n| {
            // SAFETY: `src..src+n` lies in pages of our window that Xen mapped (checked per
            // page), identity-mapped Normal WB; `dst+at..dst+at+n` is inside `buf`. The guest
            // may write the source concurrently: we copy bytes and never form a reference
            // to guest memory.
            unsafe { ptr::copy_nonoverlapping(src, dst.add(at), n) }
        })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let src = data.as_ptr();
        self.for_each_piece(addr, data.len() as u64, true, |dst, at, n| {
            // SAFETY: as in `read`, with the roles of the two ranges swapped.
            unsafe { ptr::copy_nonoverlapping(src.add(at), dst, n) }
        })
    }

    fn check_range(&mut self, addr: u64, len: u64) -> Result<(), MemError> {
        let end = range_end(addr, len)?;
        if len == 0 || addr & GRANT_ADDR_BIT != 0 || self.in_banks(addr, end) {
            Ok(())
        } else {
            Err(MemError::OutOfRange { addr, len })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ops::fake::{Call, FakeXen, pattern};
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[repr(C, align(4096))]
    #[derive(Clone)]
    struct Page([u8; 4096]);

    const RAM: u64 = 0x4000_0000;

    /// A host buffer standing in for the extended-region window (IPA == VA).
    fn window(chunks: usize, grant_pages: usize) -> (Vec<Page>, u64, u64) {
        let v = vec![Page([0; 4096]); chunks * PAGES_PER_CHUNK + grant_pages];
        let base = v.as_ptr() as u64;
        (
            v,
            base,
            base + (chunks * PAGES_PER_CHUNK) as u64 * PAGE_SIZE,
        )
    }

    fn mem(
        hv: &FakeXen,
        banks: &[(u64, u64)],
        chunks: usize,
    ) -> (Vec<Page>, XenGuestMemory<FakeXen>) {
        let (buf, w, g) = window(chunks, 4);
        // SAFETY: the window is our own host buffer, alive as long as the returned Vec (the
        // tests keep both alive together).
        let m = unsafe { XenGuestMemory::new(hv.clone(), 3, banks, w, chunks, g, 4) }.unwrap();
        (buf, m)
    }

    fn batches(hv: &FakeXen) -> Vec<(u16, Vec<u64>, Vec<u64>)> {
        hv.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Batch(d, i, g) => Some((d, i, g)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reads_map_a_chunk_once_with_checked_batches() {
        let hv = FakeXen::new(1);
        let (buf, mut m) = mem(&hv, &[(RAM, 64 << 20)], 2);
        let mut b = [0u8; 8];
        m.read(RAM + 0x20_3010, &mut b).unwrap();
        let gfn = (RAM + 0x20_3000) >> 12;
        assert_eq!(b, core::array::from_fn(|i| pattern(gfn, 0x10 + i)));
        let bs = batches(&hv);
        assert_eq!(bs.len(), PAGES_PER_CHUNK / BATCH);
        assert!(bs.iter().all(|(d, i, _)| *d == 3 && i.len() == BATCH));
        assert_eq!(bs[0].1[0], (RAM + 0x20_0000) >> 12);
        assert_eq!(bs[0].2[0], buf.as_ptr() as u64 >> 12);
        // Same chunk again: no new mapping.
        hv.clear();
        m.read(RAM + 0x3f_fff8, &mut b).unwrap();
        assert!(hv.calls().is_empty());
        assert_eq!(m.stats().chunk_maps, 1);
        drop(m);
        drop(buf);
    }

    #[test]
    fn out_of_bank_and_overflow_are_errors_without_calls() {
        let hv = FakeXen::new(1);
        let (_buf, mut m) = mem(&hv, &[(RAM, 0x30_1000)], 2);
        let mut b = [0u8; 16];
        assert_eq!(
            m.read(0x1000, &mut b),
            Err(MemError::OutOfRange {
                addr: 0x1000,
                len: 16
            })
        );
        assert!(m.read((u64::MAX - 3) & !GRANT_ADDR_BIT, &mut b).is_err());
        assert!(matches!(
            m.write(u64::MAX - 3, &b),
            Err(MemError::Overflow { .. })
        ));
        // The bank ends one page into the second chunk.
        assert!(m.read(RAM + 0x30_1000 - 16, &mut b).is_ok());
        assert!(m.read(RAM + 0x30_1000 - 8, &mut b).is_err());
        assert!(m.check_range(RAM, 0x30_1000).is_ok());
        assert!(m.check_range(RAM, 0x30_1001).is_err());
        // The second chunk mapped only the one page inside the bank.
        let bs = batches(&hv);
        assert_eq!(bs.last().unwrap().1, [(RAM + 0x30_0000) >> 12]);
    }

    #[test]
    fn reads_and_writes_span_chunks_and_banks() {
        let hv = FakeXen::new(1);
        let (_buf, mut m) = mem(&hv, &[(RAM, 2 << 20), (RAM + (2 << 20), 2 << 20)], 2);
        let data: Vec<u8> = (0..64u8).collect();
        let at = RAM + (2 << 20) - 32;
        m.write(at, &data).unwrap();
        let mut back = [0u8; 64];
        m.read(at, &mut back).unwrap();
        assert_eq!(&back[..], &data[..]);
        assert_eq!(m.mapped_chunks(), 2);
    }

    #[test]
    fn clock_evicts_and_unmaps_every_page() {
        let hv = FakeXen::new(1);
        let (buf, mut m) = mem(&hv, &[(RAM, 64 << 20)], 2);
        let mut b = [0u8; 4];
        m.read(RAM, &mut b).unwrap(); // chunk 0 -> slot 0
        m.read(RAM + (2 << 20), &mut b).unwrap(); // chunk 1 -> slot 1
        hv.clear();
        m.read(RAM + (4 << 20), &mut b).unwrap(); // both referenced: clears, evicts slot 0
        let removed: Vec<u64> = hv
            .calls()
            .into_iter()
            .filter_map(|c| {
                if let Call::Remove(g) = c {
                    Some(g)
                } else {
                    None
                }
            })
            .collect();
        let slot0 = buf.as_ptr() as u64 >> 12;
        assert_eq!(removed, (slot0..slot0 + 512).collect::<Vec<_>>());
        assert_eq!(
            b,
            core::array::from_fn(|i| pattern((RAM + (4 << 20)) >> 12, i))
        );
        assert_eq!(m.stats().chunk_evictions, 1);
        // Chunk 1 (slot 1) lost its reference bit and goes next; chunk 2 stays.
        hv.clear();
        m.read(RAM + (4 << 20), &mut b).unwrap();
        assert!(hv.calls().is_empty());
        m.read(RAM, &mut b).unwrap();
        assert!(hv.calls().contains(&Call::Remove(slot0 + 512)));
        // release() unmaps everything mapped.
        hv.clear();
        m.release();
        assert_eq!(hv.calls().len(), 1024);
        assert_eq!(m.mapped_chunks(), 0);
    }

    #[test]
    fn refused_pages_fail_alone() {
        let hv = FakeXen::new(1);
        let bad = (RAM >> 12) + 5;
        hv.0.borrow_mut().bad_gfns.push(bad);
        let (_buf, mut m) = mem(&hv, &[(RAM, 64 << 20)], 2);
        let mut b = [0u8; 4];
        assert!(m.read(RAM + 4 * 4096, &mut b).is_ok());
        assert!(m.read(RAM + 5 * 4096, &mut b).is_err());
        assert!(m.read(RAM + 6 * 4096 - 2, &mut b).is_err()); // spans into the bad page
        assert!(m.read(RAM + 6 * 4096, &mut b).is_ok());
        assert_eq!(m.stats().page_errors, 1);
        hv.clear();
        m.release();
        assert_eq!(hv.calls().len(), 511);
    }

    #[test]
    fn grant_addresses_map_per_page() {
        let hv = FakeXen::new(1);
        let (_buf, mut m) = mem(&hv, &[(RAM, 64 << 20)], 1);
        let addr = GRANT_ADDR_BIT | (5 << 12) | 0xffc;
        let mut b = [0u8; 8];
        m.read(addr, &mut b).unwrap();
        assert_eq!(
            &b[..4],
            &core::array::from_fn::<u8, 4, _>(|i| pattern(5, 0xffc + i))
        );
        assert_eq!(
            &b[4..],
            &core::array::from_fn::<u8, 4, _>(|i| pattern(6, i))
        );
        let maps: Vec<_> = hv
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::MapGrant(..)))
            .collect();
        assert_eq!(maps.len(), 2);
        assert!(matches!(
            maps[0],
            Call::MapGrant(3, 5, _, gnttab::GNTMAP_HOST_MAP)
        ));
        // A bad ref is an error, not a fault.
        hv.0.borrow_mut().bad_gfns.push(9);
        assert!(m.read(GRANT_ADDR_BIT | (9 << 12), &mut b).is_err());
        hv.clear();
        m.release();
        assert_eq!(
            hv.calls()
                .iter()
                .filter(|c| matches!(c, Call::UnmapGrant(_, h) if *h >= 1005))
                .count(),
            2
        );
    }
}
