//! A validated descriptor chain, copied out of guest memory once.
//!
//! The ring walkers fill a [`Chain`] with every buffer of one request after
//! checking it; devices then move data only through [`ChainReader`] and
//! [`ChainWriter`], which never re-read the descriptor table (no double fetch)
//! and never touch a buffer in the wrong direction.

use alloc::vec::Vec;

use super::QueueError;
use crate::virtio::memory::{GuestMemory, MemError};

/// Most descriptors one chain may hold, direct and indirect together. Linux
/// stays far below (virtio-blk: seg_max + 2); the bound keeps per-chain work
/// and the preallocated storage finite.
pub const MAX_CHAIN_DESCS: usize = 1024;

/// One buffer of a chain, as the device may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Guest-physical start (range checked against guest memory).
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable (else device-readable).
    pub writable: bool,
}

/// What the ring needs to return a chain as used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsedToken {
    /// Split: head descriptor index. Packed: buffer ID.
    pub id: u16,
    /// Packed: number of ring slots the chain occupied (split: unused).
    pub slots: u16,
}

/// Storage for one chain; allocate once at set-up and reuse.
#[derive(Debug)]
pub struct Chain {
    descs: Vec<Desc>,
    readable: u32,
    writable: u32,
    token: UsedToken,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// Empty chain storage with room for [`MAX_CHAIN_DESCS`] descriptors.
    pub fn new() -> Self {
        Self {
            descs: Vec::with_capacity(MAX_CHAIN_DESCS),
            readable: 0,
            writable: 0,
            token: UsedToken::default(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.descs.clear();
        self.readable = 0;
        self.writable = 0;
        self.token = UsedToken::default();
    }

    pub(crate) fn set_token(&mut self, token: UsedToken) {
        self.token = token;
    }

    /// Appends a checked buffer: readable ones must precede writable ones, the
    /// total must stay below 2^32 bytes and the count within
    /// [`MAX_CHAIN_DESCS`]; the range must lie in guest memory.
    pub(crate) fn push(&mut self, mem: &mut dyn GuestMemory, desc: Desc) -> Result<(), QueueError> {
        if self.descs.len() >= MAX_CHAIN_DESCS {
            return Err(QueueError::ChainTooLong);
        }
        if !desc.writable && self.writable > 0 {
            return Err(QueueError::ReadableAfterWritable);
        }
        // A zero-length writable buffer still marks the switch to writable.
        if !desc.writable && self.descs.last().is_some_and(|d| d.writable) {
            return Err(QueueError::ReadableAfterWritable);
        }
        let total = u64::from(self.readable) + u64::from(self.writable) + u64::from(desc.len);
        if total > u64::from(u32::MAX) {
            return Err(QueueError::ChainTooBig);
        }
        mem.check_range(desc.addr, u64::from(desc.len))
            .map_err(QueueError::Buffer)?;
        if desc.writable {
            self.writable += desc.len;
        } else {
            self.readable += desc.len;
        }
        // Capacity was reserved at construction: no allocation here.
        self.descs.push(desc);
        Ok(())
    }

    /// Number of descriptors.
    pub fn len(&self) -> usize {
        self.descs.len()
    }

    /// True for an empty chain (never returned by a successful pop).
    pub fn is_empty(&self) -> bool {
        self.descs.is_empty()
    }

    /// The descriptors, readable first.
    pub fn descs(&self) -> &[Desc] {
        &self.descs
    }

    /// Total device-readable bytes.
    pub fn readable_len(&self) -> u32 {
        self.readable
    }

    /// Total device-writable bytes.
    pub fn writable_len(&self) -> u32 {
        self.writable
    }

    /// What to hand back to the queue once done.
    pub fn token(&self) -> UsedToken {
        self.token
    }

    /// Sequential reader over the readable buffers.
    pub fn reader(&self) -> ChainReader<'_> {
        let split = self
            .descs
            .iter()
            .position(|d| d.writable)
            .unwrap_or(self.descs.len());
        ChainReader {
            cursor: Cursor::new(&self.descs[..split], self.readable),
        }
    }

    /// Sequential writer over the writable buffers.
    pub fn writer(&self) -> ChainWriter<'_> {
        let split = self
            .descs
            .iter()
            .position(|d| d.writable)
            .unwrap_or(self.descs.len());
        ChainWriter {
            cursor: Cursor::new(&self.descs[split..], self.writable),
            written: 0,
        }
    }
}

/// Position within a run of same-direction buffers.
#[derive(Clone, Debug)]
struct Cursor<'c> {
    descs: &'c [Desc],
    index: usize,
    offset: u32,
    remaining: u32,
}

impl<'c> Cursor<'c> {
    fn new(descs: &'c [Desc], total: u32) -> Self {
        Self {
            descs,
            index: 0,
            offset: 0,
            remaining: total,
        }
    }

    /// Next contiguous piece of at most `max` bytes, advancing past it.
    fn next_piece(&mut self, max: usize) -> Option<(u64, usize)> {
        while let Some(d) = self.descs.get(self.index) {
            let left = d.len - self.offset;
            if left == 0 {
                // Zero-length or exhausted buffer: move on, never spin.
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let n = (left as usize).min(max);
            if n == 0 {
                return None;
            }
            // addr + len was checked when the chain was built.
            let addr = d.addr + u64::from(self.offset);
            self.offset += n as u32;
            self.remaining -= n as u32;
            return Some((addr, n));
        }
        None
    }
}

/// Reads a chain's device-readable bytes in order.
#[derive(Clone, Debug)]
pub struct ChainReader<'c> {
    cursor: Cursor<'c>,
}

impl ChainReader<'_> {
    /// Bytes not read yet.
    pub fn remaining(&self) -> u32 {
        self.cursor.remaining
    }

    /// Fills as much of `buf` as the chain has; returns the count.
    pub fn read(&mut self, mem: &mut dyn GuestMemory, buf: &mut [u8]) -> Result<usize, MemError> {
        let mut done = 0;
        while done < buf.len() {
            let Some((addr, n)) = self.cursor.next_piece(buf.len() - done) else {
                break;
            };
            mem.read(addr, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(done)
    }

    /// The guest address of the next `n` bytes if they lie in one
    /// descriptor (so they can be lent in place); nothing is consumed.
    pub fn peek_contiguous(&self, n: u32) -> Option<u64> {
        let mut c = self.cursor.clone();
        c.next_piece(n as usize)
            .filter(|&(_, k)| k == n as usize)
            .map(|(a, _)| a)
    }

    /// Skips up to `n` bytes; returns how many were skipped.
    pub fn skip(&mut self, n: u32) -> u32 {
        let mut done = 0u32;
        while done < n {
            let Some((_, k)) = self.cursor.next_piece((n - done) as usize) else {
                break;
            };
            done += k as u32;
        }
        done
    }
}

/// Writes a chain's device-writable bytes in order and counts them.
#[derive(Clone, Debug)]
pub struct ChainWriter<'c> {
    cursor: Cursor<'c>,
    written: u32,
}

impl ChainWriter<'_> {
    /// Bytes of room left.
    pub fn remaining(&self) -> u32 {
        self.cursor.remaining
    }

    /// Offset of the next byte written, from the first writable byte; this is
    /// the `len` to report in the used ring.
    pub fn position(&self) -> u32 {
        self.written
    }

    /// Writes as much of `data` as fits; returns the count.
    pub fn write(&mut self, mem: &mut dyn GuestMemory, data: &[u8]) -> Result<usize, MemError> {
        let mut done = 0;
        while done < data.len() {
            let Some((addr, n)) = self.cursor.next_piece(data.len() - done) else {
                break;
            };
            mem.write(addr, &data[done..done + n])?;
            done += n;
        }
        self.written += done as u32;
        Ok(done)
    }

    /// The guest address of the next `n` bytes if they lie in one
    /// descriptor (so they can be lent in place); nothing is consumed.
    pub fn peek_contiguous(&self, n: u32) -> Option<u64> {
        let mut c = self.cursor.clone();
        c.next_piece(n as usize)
            .filter(|&(_, k)| k == n as usize)
            .map(|(a, _)| a)
    }

    /// Skips up to `n` bytes without writing them; returns the count.
    pub fn skip(&mut self, n: u32) -> u32 {
        let mut done = 0u32;
        while done < n {
            let Some((_, k)) = self.cursor.next_piece((n - done) as usize) else {
                break;
            };
            done += k as u32;
        }
        self.written += done;
        done
    }
}
