//! Guest memory as the device core sees it: bounded reads and writes of
//! guest-physical ranges.
//!
//! Every access is checked (address, length, and their sum, overflow included);
//! an access outside guest memory is an error, never a panic. Adapters implement
//! [`GuestMemory`] over their own mappings (Xen foreign frames, Gunyah shared
//! memory); [`HostMemory`] is a plain in-RAM implementation for tests, fuzzing,
//! benches and the image's loopback mode.

use alloc::vec::Vec;
use core::fmt;

/// Why a guest memory access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// `addr + len` does not fit in 64 bits.
    Overflow {
        /// Start of the access.
        addr: u64,
        /// Length of the access.
        len: u64,
    },
    /// The range is not (entirely) inside guest memory.
    OutOfRange {
        /// Start of the access.
        addr: u64,
        /// Length of the access.
        len: u64,
    },
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overflow { addr, len } => write!(f, "range {addr:#x}+{len:#x} overflows"),
            Self::OutOfRange { addr, len } => {
                write!(f, "range {addr:#x}+{len:#x} is outside guest memory")
            }
        }
    }
}

/// End of `[addr, addr + len)`, or [`MemError::Overflow`].
pub fn range_end(addr: u64, len: u64) -> Result<u64, MemError> {
    addr.checked_add(len)
        .ok_or(MemError::Overflow { addr, len })
}

/// Bounded access to one guest's physical memory.
///
/// `&mut self` everywhere because real implementations keep a mapping cache.
/// Zero-length accesses succeed without touching anything.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes at guest-physical `addr` into `buf`.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;

    /// Copies `data` to guest-physical `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError>;

    /// Lends `[addr, addr + len)` in place as one slice to `f` (zero copy, as
    /// a DMA-capable device would touch it), if this memory can; returns
    /// `Ok(false)` when it cannot (the caller then copies). The range is
    /// checked like any access. The default cannot lend.
    fn lend_mut(
        &mut self,
        addr: u64,
        len: usize,
        f: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, MemError> {
        let _ = (addr, len, f);
        Ok(false)
    }

    /// Checks that `[addr, addr + len)` lies inside guest memory without moving
    /// data. The default probes the first and last byte, which is exact for
    /// memory made of one contiguous range; implementations with holes should
    /// override it.
    fn check_range(&mut self, addr: u64, len: u64) -> Result<(), MemError> {
        let end = range_end(addr, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut byte = [0u8; 1];
        self.read(addr, &mut byte)
            .and_then(|()| self.read(end - 1, &mut byte))
            .map_err(|_| MemError::OutOfRange { addr, len })
    }

    /// Reads a little-endian `u16`.
    fn read_u16(&mut self, addr: u64) -> Result<u16, MemError> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    fn read_u32(&mut self, addr: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u64`.
    fn read_u64(&mut self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u16`.
    fn write_u16(&mut self, addr: u64, value: u16) -> Result<(), MemError> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Writes a little-endian `u32`.
    fn write_u32(&mut self, addr: u64, value: u32) -> Result<(), MemError> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Writes a little-endian `u64`.
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), MemError> {
        self.write(addr, &value.to_le_bytes())
    }
}

/// One contiguous range of [`HostMemory`].
#[derive(Clone, PartialEq, Eq)]
struct Region {
    base: u64,
    data: Vec<u8>,
}

/// Guest memory backed by host vectors: one or more regions, each at a
/// guest-physical base. An access must lie inside a single region.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HostMemory {
    regions: Vec<Region>,
}

impl fmt::Debug for HostMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for r in &self.regions {
            list.entry(&format_args!("{:#x}+{:#x}", r.base, r.data.len()));
        }
        list.finish()
    }
}

impl HostMemory {
    /// Memory with no regions: every non-empty access fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// Memory with one zeroed region of `size` bytes at `base`.
    ///
    /// # Panics
    /// If `base + size` overflows (a set-up bug, not guest input).
    pub fn with_region(base: u64, size: usize) -> Self {
        let mut m = Self::new();
        if let Err(e) = m.add_region(base, size) {
            panic!("bad host memory region: {e}");
        }
        m
    }

    /// Adds a zeroed region of `size` bytes at `base`; rejects overflow and
    /// overlap with an existing region.
    pub fn add_region(&mut self, base: u64, size: usize) -> Result<(), MemError> {
        let len = size as u64;
        let end = range_end(base, len)?;
        let overlaps = self.regions.iter().any(|r| {
            let r_end = r.base + r.data.len() as u64;
            base < r_end && r.base < end
        });
        if overlaps {
            return Err(MemError::OutOfRange { addr: base, len });
        }
        self.regions.push(Region {
            base,
            data: alloc::vec![0; size],
        });
        Ok(())
    }

    /// The regions as `(base, bytes)` pairs.
    pub fn regions(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.regions.iter().map(|r| (r.base, r.data.as_slice()))
    }

    /// Borrows `[addr, addr + len)` directly.
    pub fn slice(&self, addr: u64, len: usize) -> Result<&[u8], MemError> {
        let (i, off) = self.locate(addr, len as u64)?;
        Ok(&self.regions[i].data[off..off + len])
    }

    /// Mutably borrows `[addr, addr + len)` directly.
    pub fn slice_mut(&mut self, addr: u64, len: usize) -> Result<&mut [u8], MemError> {
        let (i, off) = self.locate(addr, len as u64)?;
        Ok(&mut self.regions[i].data[off..off + len])
    }

    /// Region index and offset of a non-empty, in-range access.
    fn locate(&self, addr: u64, len: u64) -> Result<(usize, usize), MemError> {
        let end = range_end(addr, len)?;
        for (i, r) in self.regions.iter().enumerate() {
            let r_end = r.base + r.data.len() as u64;
            if addr >= r.base && end <= r_end {
                // Fits in usize: it is an offset into a Vec.
                return Ok((i, (addr - r.base) as usize));
            }
        }
        Err(MemError::OutOfRange { addr, len })
    }
}

impl GuestMemory for HostMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        if buf.is_empty() {
            return Ok(());
        }
        buf.copy_from_slice(self.slice(addr, buf.len())?);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        if data.is_empty() {
            return Ok(());
        }
        self.slice_mut(addr, data.len())?.copy_from_slice(data);
        Ok(())
    }

    fn lend_mut(
        &mut self,
        addr: u64,
        len: usize,
        f: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, MemError> {
        if len == 0 {
            return Ok(false);
        }
        f(self.slice_mut(addr, len)?);
        Ok(true)
    }

    fn check_range(&mut self, addr: u64, len: u64) -> Result<(), MemError> {
        if len == 0 {
            return range_end(addr, 0).map(|_| ());
        }
        self.locate(addr, len).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let mut m = HostMemory::with_region(0x1000, 0x100);
        let mut b = [0u8; 4];
        assert!(m.read(0x1000, &mut b).is_ok());
        assert!(m.read(0x10fc, &mut b).is_ok());
        assert!(m.read(0x10fd, &mut b).is_err());
        assert!(m.read(0xfff, &mut b).is_err());
        assert_eq!(
            m.read(u64::MAX - 1, &mut b),
            Err(MemError::Overflow {
                addr: u64::MAX - 1,
                len: 4
            })
        );
        assert!(m.write(u64::MAX, &[1]).is_err());
        assert!(m.check_range(0x1000, 0x100).is_ok());
        assert!(m.check_range(0x1000, 0x101).is_err());
        assert!(m.check_range(u64::MAX, 2).is_err());
        m.write_u32(0x1010, 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(0x1010).unwrap(), 0xdead_beef);
        assert_eq!(m.read_u16(0x1012).unwrap(), 0xdead);
    }

    #[test]
    fn regions_do_not_overlap_and_accesses_do_not_span() {
        let mut m = HostMemory::with_region(0x1000, 0x1000);
        assert!(m.add_region(0x1800, 0x1000).is_err());
        m.add_region(0x2000, 0x1000).unwrap();
        let mut b = [0u8; 2];
        assert!(m.read(0x1fff, &mut b).is_err());
        assert!(m.read(0x2ffe, &mut b).is_ok());
        assert!(m.add_region(u64::MAX - 4, 16).is_err());
    }
}
