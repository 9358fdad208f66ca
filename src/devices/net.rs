//! virtio-net (device ID 1, virtio §5.1): receiveq 0, transmitq 1, one pair.
//!
//! Every packet carries the 12-byte VERSION_1 `virtio_net_hdr`. Checksum
//! offload bits are offered only when the backend can honour them, and the
//! header's offload fields pass through unchanged.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::backends::{NetBackend, NetHeader};
use crate::devices::BUDGET;
use crate::virtio::device_id;
use crate::virtio::queue::{Chain, UsedToken};
use crate::virtio::transport::{DeviceCtx, DeviceError, VirtioDevice};

/// Feature bits.
pub mod feature {
    #![allow(missing_docs)]
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MAC: u64 = 1 << 5;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
}

/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
/// virtio_net_hdr length with VERSION_1.
pub const HDR_LEN: usize = 12;
/// Largest frame handled (without header): 64 KiB GSO plus Ethernet header.
pub const MAX_FRAME: usize = 65_550;
/// Most receive buffers one merged frame may span.
pub const MAX_MERGED: usize = 64;
/// Config status bit: link up.
pub const STATUS_LINK_UP: u16 = 1;

const RX: usize = 0;
const TX: usize = 1;
const CONFIG_LEN: usize = 10;
const NUM_BUFFERS_OFFSET: u32 = 10;

/// A network device model.
pub struct Net {
    backend: Box<dyn NetBackend>,
    /// Header + frame taken from the backend, waiting for rx buffers.
    rx: Vec<u8>,
    rx_len: Option<usize>,
    tx: Vec<u8>,
    chain: Chain,
    used: heapless::Vec<(UsedToken, u32), MAX_MERGED>,
    mac: [u8; 6],
    link_up: bool,
    negotiated: u64,
}

fn encode_header(h: &NetHeader, num_buffers: u16) -> [u8; HDR_LEN] {
    let mut b = [0u8; HDR_LEN];
    b[0] = h.flags;
    b[1] = h.gso_type;
    b[2..4].copy_from_slice(&h.hdr_len.to_le_bytes());
    b[4..6].copy_from_slice(&h.gso_size.to_le_bytes());
    b[6..8].copy_from_slice(&h.csum_start.to_le_bytes());
    b[8..10].copy_from_slice(&h.csum_offset.to_le_bytes());
    b[10..12].copy_from_slice(&num_buffers.to_le_bytes());
    b
}

fn decode_header(b: &[u8; HDR_LEN]) -> NetHeader {
    NetHeader {
        flags: b[0],
        gso_type: b[1],
        hdr_len: u16::from_le_bytes([b[2], b[3]]),
        gso_size: u16::from_le_bytes([b[4], b[5]]),
        csum_start: u16::from_le_bytes([b[6], b[7]]),
        csum_offset: u16::from_le_bytes([b[8], b[9]]),
    }
}

/// Guest address of writable byte `offset` of `chain`.
fn writable_byte(chain: &Chain, mut offset: u32) -> Option<u64> {
    for d in chain.descs().iter().filter(|d| d.writable) {
        if offset < d.len {
            return Some(d.addr + u64::from(offset));
        }
        offset -= d.len;
    }
    None
}

impl Net {
    /// A network device over `backend`.
    pub fn new(backend: Box<dyn NetBackend>) -> Self {
        let mac = backend.mac();
        let link_up = backend.link_up();
        Self {
            backend,
            rx: alloc::vec![0; HDR_LEN + MAX_FRAME],
            rx_len: None,
            tx: alloc::vec![0; MAX_FRAME],
            chain: Chain::new(),
            used: heapless::Vec::new(),
            mac,
            link_up,
            negotiated: 0,
        }
    }

    fn mergeable(&self) -> bool {
        self.negotiated & feature::MRG_RXBUF != 0
    }

    /// Delivers pending and newly received frames while rx buffers last.
    fn receive(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        for _ in 0..BUDGET {
            if self.rx_len.is_none() {
                // Take a frame only when the driver has somewhere to put it.
                if !ctx.queues[RX].has_available(ctx.mem)? {
                    return Ok(());
                }
                let Some((n, hdr)) = self.backend.receive_with_header(&mut self.rx[HDR_LEN..])
                else {
                    return Ok(());
                };
                let n = n.min(MAX_FRAME);
                self.rx[..HDR_LEN].copy_from_slice(&encode_header(&hdr, 1));
                self.rx_len = Some(HDR_LEN + n);
            }
            let delivered = if self.mergeable() {
                self.deliver_merged(ctx)?
            } else {
                self.deliver_single(ctx)?
            };
            if !delivered {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One buffer per frame. Returns false if no buffer was available.
    fn deliver_single(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<bool, DeviceError> {
        let total = self.rx_len.unwrap_or(0);
        let q = &mut ctx.queues[RX];
        if !q.pop(ctx.mem, &mut self.chain)? {
            return Ok(false);
        }
        let len = if (self.chain.writable_len() as usize) < total {
            // Too small for the frame: drop it, hand the buffer back empty.
            log::warn!("virtio-net: rx buffer too small for {total} bytes; frame dropped");
            0
        } else {
            self.chain.writer().write(ctx.mem, &self.rx[..total])? as u32
        };
        q.push_used(ctx.mem, self.chain.token(), len)?;
        self.rx_len = None;
        Ok(true)
    }

    /// MRG_RXBUF: spread the frame over as many buffers as needed and record
    /// their number in the first one's header. Returns false (and un-pops
    /// everything) if the ring ran out before the frame fit.
    fn deliver_merged(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<bool, DeviceError> {
        let total = self.rx_len.unwrap_or(0);
        let q = &mut ctx.queues[RX];
        let start = q.position();
        self.used.clear();
        let mut num_buffers_at = (0u64, 0u64);
        let mut off = 0;
        while off < total {
            if !q.pop(ctx.mem, &mut self.chain)? {
                q.rewind(start);
                return Ok(false);
            }
            if self.used.is_empty() {
                match (
                    writable_byte(&self.chain, NUM_BUFFERS_OFFSET),
                    writable_byte(&self.chain, NUM_BUFFERS_OFFSET + 1),
                ) {
                    (Some(a), Some(b)) => num_buffers_at = (a, b),
                    _ => {
                        // The first buffer must hold the header (§5.1.6.3).
                        log::warn!("virtio-net: rx buffer smaller than header; frame dropped");
                        q.push_used(ctx.mem, self.chain.token(), 0)?;
                        self.rx_len = None;
                        return Ok(true);
                    }
                }
            }
            let n = self.chain.writer().write(ctx.mem, &self.rx[off..total])?;
            off += n;
            if self.used.push((self.chain.token(), n as u32)).is_err() {
                log::warn!("virtio-net: frame needs more than {MAX_MERGED} buffers; dropped");
                q.rewind(start);
                self.rx_len = None;
                return Ok(true);
            }
        }
        let count = (self.used.len() as u16).to_le_bytes();
        ctx.mem.write(num_buffers_at.0, &count[..1])?;
        ctx.mem.write(num_buffers_at.1, &count[1..])?;
        for &(token, len) in &self.used {
            q.push_used(ctx.mem, token, len)?;
        }
        self.rx_len = None;
        Ok(true)
    }

    fn transmit(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        for _ in 0..BUDGET {
            let q = &mut ctx.queues[TX];
            if !q.pop(ctx.mem, &mut self.chain)? {
                return Ok(());
            }
            let mut reader = self.chain.reader();
            let total = reader.remaining() as usize;
            if total < HDR_LEN || total - HDR_LEN > MAX_FRAME {
                log::warn!("virtio-net: tx packet of {total} bytes dropped");
            } else {
                let mut hdr = [0u8; HDR_LEN];
                reader.read(ctx.mem, &mut hdr)?;
                let n = reader.read(ctx.mem, &mut self.tx)?;
                let header = decode_header(&hdr);
                if self
                    .backend
                    .transmit_with_header(&header, &self.tx[..n])
                    .is_err()
                {
                    log::warn!("virtio-net: backend dropped a tx frame");
                }
            }
            q.push_used(ctx.mem, self.chain.token(), 0)?;
        }
        Ok(())
    }
}

impl VirtioDevice for Net {
    fn device_id(&self) -> u32 {
        device_id::NET
    }

    fn features(&self) -> u64 {
        let offloads = self.backend.offload_features() & (feature::CSUM | feature::GUEST_CSUM);
        feature::MAC | feature::STATUS | feature::MRG_RXBUF | offloads
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let mut c = [0u8; CONFIG_LEN];
        c[..6].copy_from_slice(&self.mac);
        let status = if self.link_up { STATUS_LINK_UP } else { 0 };
        c[6..8].copy_from_slice(&status.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        data.copy_from_slice(&c[offset..offset + data.len()]);
    }

    fn activate(&mut self, features: u64) {
        self.negotiated = features;
    }

    fn queue_notify(&mut self, queue: u16, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        match usize::from(queue) {
            RX => self.receive(ctx),
            TX => self.transmit(ctx),
            _ => Ok(()),
        }
    }

    fn poll(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        let up = self.backend.link_up();
        if up != self.link_up {
            self.link_up = up;
            if self.negotiated & feature::STATUS != 0 {
                ctx.config_changed();
            }
        }
        self.receive(ctx)
    }

    fn reset(&mut self) {
        self.negotiated = 0;
    }
}
