//! In-memory backends for tests, benches and the image's loopback mode.
//!
//! Each is a cheap handle around shared state: clone it before boxing it into
//! a device model, and keep the clone to inject input and inspect output.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use super::{
    BlockBackend, BlockError, ConsoleBackend, EntropyBackend, EntropyError, NetBackend, NetError,
    NetHeader, SECTOR_SIZE,
};

#[derive(Debug)]
struct DiskState {
    data: Vec<u8>,
    read_only: bool,
    failing: bool,
    flushes: u64,
    discards: u64,
}

/// A RAM disk.
#[derive(Clone, Debug)]
pub struct MemDisk {
    state: Arc<Mutex<DiskState>>,
    id: [u8; 20],
}

impl MemDisk {
    /// A zeroed, writable disk of `sectors` sectors.
    pub fn new(sectors: u64) -> Self {
        Self::from_bytes(alloc::vec![0; sectors as usize * SECTOR_SIZE])
    }

    /// A disk with the given contents (truncated to whole sectors).
    pub fn from_bytes(mut data: Vec<u8>) -> Self {
        data.truncate(data.len() / SECTOR_SIZE * SECTOR_SIZE);
        let mut id = [0u8; 20];
        id[..9].copy_from_slice(b"backplane");
        Self {
            state: Arc::new(Mutex::new(DiskState {
                data,
                read_only: false,
                failing: false,
                flushes: 0,
                discards: 0,
            })),
            id,
        }
    }

    /// Makes the disk read-only (before handing it to a device).
    pub fn read_only(self) -> Self {
        self.state.lock().read_only = true;
        self
    }

    /// Sets the GET_ID string (truncated to 20 bytes).
    pub fn with_id(mut self, id: &[u8]) -> Self {
        self.id = [0; 20];
        let n = id.len().min(20);
        self.id[..n].copy_from_slice(&id[..n]);
        self
    }

    /// Makes every operation fail with [`BlockError::Io`] (or succeed again).
    pub fn set_failing(&self, failing: bool) {
        self.state.lock().failing = failing;
    }

    /// A copy of the contents.
    pub fn contents(&self) -> Vec<u8> {
        self.state.lock().data.clone()
    }

    /// Overwrites bytes at `offset`.
    pub fn fill(&self, offset: usize, bytes: &[u8]) {
        self.state.lock().data[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// Number of flushes served.
    pub fn flushes(&self) -> u64 {
        self.state.lock().flushes
    }

    /// Number of discards served.
    pub fn discards(&self) -> u64 {
        self.state.lock().discards
    }
}

impl DiskState {
    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, BlockError> {
        if self.failing {
            return Err(BlockError::Io);
        }
        let start = usize::try_from(sector)
            .ok()
            .and_then(|s| s.checked_mul(SECTOR_SIZE))
            .ok_or(BlockError::OutOfRange)?;
        let end = start.checked_add(len).ok_or(BlockError::OutOfRange)?;
        if end > self.data.len() {
            return Err(BlockError::OutOfRange);
        }
        Ok(start..end)
    }
}

impl BlockBackend for MemDisk {
    fn capacity(&self) -> u64 {
        (self.state.lock().data.len() / SECTOR_SIZE) as u64
    }

    fn read_only(&self) -> bool {
        self.state.lock().read_only
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let s = self.state.lock();
        let r = s.range(sector, buf.len())?;
        buf.copy_from_slice(&s.data[r]);
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BlockError> {
        let mut s = self.state.lock();
        if s.read_only {
            return Err(BlockError::ReadOnly);
        }
        let r = s.range(sector, data.len())?;
        s.data[r].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        let mut s = self.state.lock();
        if s.failing {
            return Err(BlockError::Io);
        }
        s.flushes += 1;
        Ok(())
    }

    fn discard(&mut self, sector: u64, count: u64) -> Result<(), BlockError> {
        let mut s = self.state.lock();
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(SECTOR_SIZE))
            .ok_or(BlockError::OutOfRange)?;
        s.range(sector, len)?;
        s.discards += 1;
        Ok(())
    }

    fn write_zeroes(&mut self, sector: u64, count: u64) -> Result<(), BlockError> {
        let mut s = self.state.lock();
        if s.read_only {
            return Err(BlockError::ReadOnly);
        }
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(SECTOR_SIZE))
            .ok_or(BlockError::OutOfRange)?;
        let r = s.range(sector, len)?;
        s.data[r].fill(0);
        Ok(())
    }

    fn id(&self) -> &[u8] {
        &self.id
    }
}

#[derive(Debug, Default)]
struct ConsoleState {
    input: VecDeque<u8>,
    output: Vec<u8>,
}

/// A console whose input is injected and whose output is collected.
#[derive(Clone, Debug, Default)]
pub struct MemConsole {
    state: Arc<Mutex<ConsoleState>>,
}

impl MemConsole {
    /// An idle console.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues bytes as if typed.
    pub fn push_input(&self, bytes: &[u8]) {
        self.state.lock().input.extend(bytes.iter().copied());
    }

    /// Takes everything the guest wrote so far.
    pub fn take_output(&self) -> Vec<u8> {
        core::mem::take(&mut self.state.lock().output)
    }
}

impl ConsoleBackend for MemConsole {
    fn write(&mut self, data: &[u8]) {
        self.state.lock().output.extend_from_slice(data);
    }

    fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut s = self.state.lock();
        let n = buf.len().min(s.input.len());
        for (dst, src) in buf.iter_mut().zip(s.input.drain(..n)) {
            *dst = src;
        }
        n
    }
}

/// A deterministic pseudo-random source (xorshift64*): for tests and
/// benches only, never a source of real entropy.
#[derive(Clone, Debug)]
pub struct MemEntropy {
    state: Arc<Mutex<(u64, bool)>>,
}

impl MemEntropy {
    /// A generator seeded with `seed` (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> Self {
        let seed = if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        };
        Self {
            state: Arc::new(Mutex::new((seed, false))),
        }
    }

    /// Makes `fill` fail (or succeed again).
    pub fn set_failing(&self, failing: bool) {
        self.state.lock().1 = failing;
    }
}

impl EntropyBackend for MemEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        let mut s = self.state.lock();
        if s.1 {
            return Err(EntropyError);
        }
        for chunk in buf.chunks_mut(8) {
            let mut x = s.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            s.0 = x;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct NetState {
    inbound: VecDeque<(Vec<u8>, NetHeader)>,
    outbound: Vec<(Vec<u8>, NetHeader)>,
    link_up: bool,
    offloads: u64,
}

/// A network port whose inbound frames are injected and whose outbound
/// frames are collected.
#[derive(Clone, Debug)]
pub struct MemNet {
    state: Arc<Mutex<NetState>>,
    mac: [u8; 6],
}

impl MemNet {
    /// A port with link up and no offloads.
    pub fn new(mac: [u8; 6]) -> Self {
        Self {
            state: Arc::new(Mutex::new(NetState {
                inbound: VecDeque::new(),
                outbound: Vec::new(),
                link_up: true,
                offloads: 0,
            })),
            mac,
        }
    }

    /// Advertises offload bits (virtio-net CSUM / GUEST_CSUM).
    pub fn with_offloads(self, bits: u64) -> Self {
        self.state.lock().offloads = bits;
        self
    }

    /// Queues an inbound frame.
    pub fn push_frame(&self, frame: &[u8]) {
        self.push_frame_with_header(frame, NetHeader::default());
    }

    /// Queues an inbound frame with offload metadata.
    pub fn push_frame_with_header(&self, frame: &[u8], header: NetHeader) {
        self.state
            .lock()
            .inbound
            .push_back((frame.to_vec(), header));
    }

    /// Takes the frames the guest sent so far.
    pub fn take_frames(&self) -> Vec<(Vec<u8>, NetHeader)> {
        core::mem::take(&mut self.state.lock().outbound)
    }

    /// Number of inbound frames not yet delivered.
    pub fn pending_inbound(&self) -> usize {
        self.state.lock().inbound.len()
    }

    /// Sets the link state.
    pub fn set_link_up(&self, up: bool) {
        self.state.lock().link_up = up;
    }
}

impl NetBackend for MemNet {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        self.transmit_with_header(&NetHeader::default(), frame)
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.receive_with_header(buf).map(|(n, _)| n)
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&self) -> bool {
        self.state.lock().link_up
    }

    fn offload_features(&self) -> u64 {
        self.state.lock().offloads
    }

    fn transmit_with_header(&mut self, header: &NetHeader, frame: &[u8]) -> Result<(), NetError> {
        self.state.lock().outbound.push((frame.to_vec(), *header));
        Ok(())
    }

    fn receive_with_header(&mut self, buf: &mut [u8]) -> Option<(usize, NetHeader)> {
        let (frame, header) = self.state.lock().inbound.pop_front()?;
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Some((n, header))
    }
}
