//! virtio-blk (device ID 2, virtio §5.2): one request queue.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::backends::{BlockBackend, BlockError, SECTOR_SIZE};
use crate::devices::BUDGET;
use crate::virtio::device_id;
use crate::virtio::queue::Chain;
use crate::virtio::transport::{DeviceCtx, DeviceError, VirtioDevice};

/// Feature bits.
pub mod feature {
    #![allow(missing_docs)]
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const CONFIG_WCE: u64 = 1 << 11;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Request types.
pub mod req {
    #![allow(missing_docs)]
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const DISCARD: u32 = 11;
    pub const WRITE_ZEROES: u32 = 13;
}

/// Request status values.
pub mod status {
    #![allow(missing_docs)]
    pub const OK: u8 = 0;
    pub const IOERR: u8 = 1;
    pub const UNSUPP: u8 = 2;
}

/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
/// Largest single segment the driver may use (we chunk anyway).
pub const SIZE_MAX: u32 = 1 << 20;
/// Segments per request: queue size minus header and status, as QEMU does.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Bounce buffer size: data moves through it in chunks of this size.
pub const BOUNCE_SIZE: usize = 64 * 1024;
/// Largest DISCARD / WRITE_ZEROES segment, in sectors.
pub const MAX_ZERO_DISCARD_SECTORS: u32 = 1 << 22;
/// Segments per DISCARD / WRITE_ZEROES request.
pub const MAX_ZERO_DISCARD_SEG: u32 = 16;
/// Size of the config space we expose (up to write_zeroes_may_unmap + pad).
pub const CONFIG_LEN: usize = 60;

const HEADER_LEN: u32 = 16;
const SEGMENT_LEN: usize = 16;
const WRITEBACK_OFFSET: usize = 32;

/// A block device model.
pub struct Block {
    backend: Box<dyn BlockBackend>,
    bounce: Vec<u8>,
    chain: Chain,
    id: [u8; 20],
    writeback: u8,
    negotiated: u64,
}

impl Block {
    /// A block device over `backend`; allocates its buffers now.
    pub fn new(backend: Box<dyn BlockBackend>) -> Self {
        let mut id = [0u8; 20];
        let src = backend.id();
        let n = src.len().min(20);
        id[..n].copy_from_slice(&src[..n]);
        Self {
            backend,
            bounce: alloc::vec![0; BOUNCE_SIZE],
            chain: Chain::new(),
            id,
            writeback: 1,
            negotiated: 0,
        }
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        let put32 = |c: &mut [u8; CONFIG_LEN], at: usize, v: u32| {
            c[at..at + 4].copy_from_slice(&v.to_le_bytes());
        };
        c[0..8].copy_from_slice(&self.backend.capacity().to_le_bytes());
        put32(&mut c, 8, SIZE_MAX);
        put32(&mut c, 12, SEG_MAX);
        put32(&mut c, 20, SECTOR_SIZE as u32);
        c[WRITEBACK_OFFSET] = self.writeback;
        put32(&mut c, 36, MAX_ZERO_DISCARD_SECTORS);
        put32(&mut c, 40, MAX_ZERO_DISCARD_SEG);
        put32(&mut c, 44, 1);
        put32(&mut c, 48, MAX_ZERO_DISCARD_SECTORS);
        put32(&mut c, 52, MAX_ZERO_DISCARD_SEG);
        c
    }

    fn write_through(&self) -> bool {
        self.writeback == 0 || self.negotiated & feature::FLUSH == 0
    }

    fn serve(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        for _ in 0..BUDGET {
            let Some(q) = ctx.queues.first_mut() else {
                return Ok(());
            };
            if !q.pop(ctx.mem, &mut self.chain)? {
                return Ok(());
            }
            let len = self.handle(ctx)?;
            ctx.queues[0].push_used(ctx.mem, self.chain.token(), len)?;
        }
        Ok(())
    }

    /// Serves the chain in `self.chain`; returns the used length.
    fn handle(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<u32, DeviceError> {
        let chain = &self.chain;
        if chain.writable_len() < 1 {
            return Err(DeviceError::Malformed(
                "blk request without writable status byte",
            ));
        }
        if chain.readable_len() < HEADER_LEN {
            return Err(DeviceError::Malformed(
                "blk request header short or writable",
            ));
        }
        let mut reader = chain.reader();
        let mut header = [0u8; HEADER_LEN as usize];
        reader.read(ctx.mem, &mut header)?;
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sector = u64::from_le_bytes([
            header[8], header[9], header[10], header[11], header[12], header[13], header[14],
            header[15],
        ]);
        let mut writer = chain.writer();
        // Everything writable before the final status byte.
        let data_in = chain.writable_len() - 1;
        let data_out = reader.remaining();
        let read_only = self.backend.read_only();
        let capacity = self.backend.capacity();
        let in_range = |bytes: u32| {
            (bytes as usize).is_multiple_of(SECTOR_SIZE)
                && sector
                    .checked_add(u64::from(bytes) / SECTOR_SIZE as u64)
                    .is_some_and(|end| end <= capacity)
        };
        let status = match kind {
            req::IN if !in_range(data_in) => status::IOERR,
            req::IN => 'lent: {
                // One data descriptor: let the backend fill guest memory in
                // place (no bounce copy) when the memory can lend it.
                if let Some(addr) = writer.peek_contiguous(data_in).filter(|_| data_in > 0) {
                    let backend = &mut self.backend;
                    let mut res = Ok(());
                    let lent = ctx.mem.lend_mut(addr, data_in as usize, &mut |s| {
                        res = backend.read(sector, s)
                    })?;
                    if lent {
                        writer.skip(data_in);
                        break 'lent if res.is_ok() {
                            status::OK
                        } else {
                            status::IOERR
                        };
                    }
                }
                let mut st = status::OK;
                let mut done = 0u32;
                while done < data_in {
                    let n = (data_in - done).min(BOUNCE_SIZE as u32) as usize;
                    let s = sector + u64::from(done) / SECTOR_SIZE as u64;
                    if self.backend.read(s, &mut self.bounce[..n]).is_err() {
                        st = status::IOERR;
                        break;
                    }
                    writer.write(ctx.mem, &self.bounce[..n])?;
                    done += n as u32;
                }
                st
            }
            req::OUT if read_only || !in_range(data_out) => status::IOERR,
            req::OUT => 'lent: {
                if let Some(addr) = reader.peek_contiguous(data_out).filter(|_| data_out > 0) {
                    let backend = &mut self.backend;
                    let mut res = Ok(());
                    let lent = ctx.mem.lend_mut(addr, data_out as usize, &mut |s| {
                        res = backend.write(sector, s)
                    })?;
                    if lent {
                        reader.skip(data_out);
                        let mut st = if res.is_ok() {
                            status::OK
                        } else {
                            status::IOERR
                        };
                        if st == status::OK && self.write_through() && self.backend.flush().is_err()
                        {
                            st = status::IOERR;
                        }
                        break 'lent st;
                    }
                }
                let mut st = status::OK;
                let mut done = 0u32;
                while done < data_out {
                    let n = (data_out - done).min(BOUNCE_SIZE as u32) as usize;
                    let s = sector + u64::from(done) / SECTOR_SIZE as u64;
                    reader.read(ctx.mem, &mut self.bounce[..n])?;
                    if self.backend.write(s, &self.bounce[..n]).is_err() {
                        st = status::IOERR;
                        break;
                    }
                    done += n as u32;
                }
                if st == status::OK && self.write_through() && self.backend.flush().is_err() {
                    st = status::IOERR;
                }
                st
            }
            req::FLUSH => match self.backend.flush() {
                Ok(()) => status::OK,
                Err(_) => status::IOERR,
            },
            req::GET_ID => {
                let n = (data_in as usize).min(self.id.len());
                writer.write(ctx.mem, &self.id[..n])?;
                status::OK
            }
            req::DISCARD | req::WRITE_ZEROES if read_only => status::IOERR,
            req::DISCARD | req::WRITE_ZEROES => {
                let discard = kind == req::DISCARD;
                let bytes = data_out as usize;
                if bytes == 0
                    || !bytes.is_multiple_of(SEGMENT_LEN)
                    || bytes / SEGMENT_LEN > MAX_ZERO_DISCARD_SEG as usize
                {
                    status::IOERR
                } else {
                    let mut st = status::OK;
                    for _ in 0..bytes / SEGMENT_LEN {
                        let mut seg = [0u8; SEGMENT_LEN];
                        reader.read(ctx.mem, &mut seg)?;
                        st = segment(&mut *self.backend, &seg, discard, capacity);
                        if st != status::OK {
                            break;
                        }
                    }
                    st
                }
            }
            _ => status::UNSUPP,
        };
        let pad = data_in - writer.position();
        writer.skip(pad);
        writer.write(ctx.mem, &[status])?;
        Ok(writer.position())
    }
}

/// One DISCARD / WRITE_ZEROES segment.
fn segment(
    backend: &mut dyn BlockBackend,
    seg: &[u8; SEGMENT_LEN],
    discard: bool,
    capacity: u64,
) -> u8 {
    let sector = u64::from_le_bytes([
        seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7],
    ]);
    let count = u32::from_le_bytes([seg[8], seg[9], seg[10], seg[11]]);
    let flags = u32::from_le_bytes([seg[12], seg[13], seg[14], seg[15]]);
    const UNMAP: u32 = 1;
    if flags & !UNMAP != 0 || (discard && flags & UNMAP != 0) {
        return status::UNSUPP;
    }
    let fits = sector
        .checked_add(u64::from(count))
        .is_some_and(|end| end <= capacity);
    if count > MAX_ZERO_DISCARD_SECTORS || !fits {
        return status::IOERR;
    }
    let r = if discard {
        backend.discard(sector, u64::from(count))
    } else {
        backend.write_zeroes(sector, u64::from(count))
    };
    match r {
        Ok(()) => status::OK,
        Err(BlockError::Unsupported) => status::UNSUPP,
        Err(_) => status::IOERR,
    }
}

impl VirtioDevice for Block {
    fn device_id(&self) -> u32 {
        device_id::BLOCK
    }

    fn features(&self) -> u64 {
        let mut f = feature::SIZE_MAX
            | feature::SEG_MAX
            | feature::BLK_SIZE
            | feature::FLUSH
            | feature::CONFIG_WCE
            | feature::DISCARD
            | feature::WRITE_ZEROES;
        if self.backend.read_only() {
            f |= feature::RO;
        }
        f
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        data.copy_from_slice(&self.config()[offset..offset + data.len()]);
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) -> bool {
        // Only `writeback` is driver-writable.
        if offset == WRITEBACK_OFFSET && data.len() == 1 {
            let v = u8::from(data[0] != 0);
            let changed = v != self.writeback;
            self.writeback = v;
            return changed;
        }
        false
    }

    fn activate(&mut self, features: u64) {
        self.negotiated = features;
        if features & feature::FLUSH == 0 {
            // Without FLUSH the device must behave write-through (§5.2.6.3).
            self.writeback = 0;
        }
    }

    fn queue_notify(&mut self, queue: u16, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        if queue == 0 { self.serve(ctx) } else { Ok(()) }
    }

    fn poll(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        // Serves leftovers of a notification that hit the budget.
        self.serve(ctx)
    }

    fn reset(&mut self) {
        self.writeback = 1;
        self.negotiated = 0;
    }
}
