//! Backends over real virtio devices, driven by the `virtio-drivers` crate.
//!
//! Generic over the crate's `Hal` and `Transport`, so they build and test on
//! the host; the image instantiates them with its identity-map DMA `Hal`
//! (platform::dma) and QEMU's (or the board's) virtio-mmio transports.
//!
//! The one unsafe use here is virtio-drivers' non-blocking block API, which
//! lets the CPU sleep (`wfi`) until the disk completes instead of spinning;
//! its contract is local to one function (see `VirtioBlock::transfer`).
#![allow(unsafe_code)]
use super::{
    BlockBackend, BlockError, ConsoleBackend, EntropyBackend, EntropyError, NetBackend, NetError,
    SECTOR_SIZE,
};
use alloc::string::String;
use core::fmt::Write;
use virtio_drivers::Hal;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::Transport;

/// A real virtio-blk disk.
pub struct VirtioBlock<H: Hal, T: Transport> {
    dev: VirtIOBlk<H, T>,
    id: [u8; 20],
    id_len: usize,
    errors: u64,
    idle: Option<fn()>,
}

impl<H: Hal, T: Transport> VirtioBlock<H, T> {
    /// Initialises the device and reads its identity.
    pub fn new(transport: T) -> Result<Self, virtio_drivers::Error> {
        let mut dev = VirtIOBlk::new(transport)?;
        let mut id = [0u8; 20];
        let id_len = dev.device_id(&mut id).unwrap_or(0);
        Ok(Self {
            dev,
            id,
            id_len,
            errors: 0,
            idle: None,
        })
    }

    /// Waits for completions with `idle` (e.g. `wfi` with the disk's
    /// interrupt enabled at the GIC) instead of spinning on the used ring.
    pub fn with_idle(mut self, idle: fn()) -> Self {
        // Requests made while setting up left the line raised: drop it, so
        // it is high only while a request of ours is outstanding.
        self.dev.ack_interrupt();
        self.dev.enable_interrupts();
        self.idle = Some(idle);
        self
    }

    /// One request, submitted without blocking; waits with `idle` until the
    /// device returns it, then completes it.
    fn transfer(
        &mut self,
        sector: u64,
        read: Option<&mut [u8]>,
        write: Option<&[u8]>,
    ) -> virtio_drivers::Result {
        let Some(idle) = self.idle else {
            return match (read, write) {
                (Some(b), _) => self.dev.read_blocks(sector as usize, b),
                (_, Some(d)) => self.dev.write_blocks(sector as usize, d),
                _ => Ok(()),
            };
        };
        let mut req = BlkReq::default();
        let mut resp = BlkResp::default();
        match (read, write) {
            (Some(buf), _) => {
                // SAFETY: `req`, `buf` and `resp` live on this frame and are
                // neither moved nor touched until `complete_read_blocks`
                // below, which runs before they go out of scope.
                let token = unsafe {
                    self.dev
                        .read_blocks_nb(sector as usize, &mut req, buf, &mut resp)
                }?;
                while self.dev.peek_used() != Some(token) {
                    idle();
                }
                self.dev.ack_interrupt();
                // SAFETY: the same token and buffers as the submission.
                unsafe { self.dev.complete_read_blocks(token, &req, buf, &mut resp) }
            }
            (_, Some(data)) => {
                // SAFETY: as above, for `complete_write_blocks`.
                let token = unsafe {
                    self.dev
                        .write_blocks_nb(sector as usize, &mut req, data, &mut resp)
                }?;
                while self.dev.peek_used() != Some(token) {
                    idle();
                }
                self.dev.ack_interrupt();
                // SAFETY: the same token and buffers as the submission.
                unsafe { self.dev.complete_write_blocks(token, &req, data, &mut resp) }
            }
            _ => Ok(()),
        }
    }

    /// A short description for status lines.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "virtio-blk {} sectors{}",
            self.dev.capacity(),
            if self.dev.readonly() { " ro" } else { "" }
        );
        s
    }

    /// Errors the real device reported.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    fn io<R>(&mut self, r: virtio_drivers::Result<R>) -> Result<R, BlockError> {
        r.map_err(|e| {
            self.errors += 1;
            log::warn!("virtio-blk backend: {e:?}");
            BlockError::Io
        })
    }
}

impl<H: Hal, T: Transport> BlockBackend for VirtioBlock<H, T>
where
    VirtIOBlk<H, T>: Send,
{
    fn capacity(&self) -> u64 {
        self.dev.capacity()
    }

    fn read_only(&self) -> bool {
        self.dev.readonly()
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        if !buf.len().is_multiple_of(SECTOR_SIZE) {
            return Err(BlockError::Io);
        }
        let r = self.transfer(sector, Some(buf), None);
        self.io(r)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BlockError> {
        if self.dev.readonly() {
            return Err(BlockError::ReadOnly);
        }
        if !data.len().is_multiple_of(SECTOR_SIZE) {
            return Err(BlockError::Io);
        }
        let r = self.transfer(sector, None, Some(data));
        self.io(r)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        let r = self.dev.flush();
        self.io(r)
    }

    fn id(&self) -> &[u8] {
        &self.id[..self.id_len]
    }
}

const NET_QUEUE: usize = 16;
const NET_BUF: usize = 2048;

/// A real virtio-net port.
pub struct VirtioNet<H: Hal, T: Transport> {
    dev: VirtIONet<H, T, NET_QUEUE>,
}

impl<H: Hal, T: Transport> VirtioNet<H, T> {
    /// Initialises the device with its receive buffers posted.
    pub fn new(transport: T) -> Result<Self, virtio_drivers::Error> {
        Ok(Self {
            dev: VirtIONet::new(transport, NET_BUF)?,
        })
    }
}

impl<H: Hal, T: Transport> NetBackend for VirtioNet<H, T>
where
    VirtIONet<H, T, NET_QUEUE>: Send,
{
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        let mut tx = self.dev.new_tx_buffer(frame.len());
        tx.packet_mut().copy_from_slice(frame);
        self.dev.send(tx).map_err(|e| {
            log::warn!("virtio-net backend: transmit: {e:?}");
            NetError::Io
        })
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        if !self.dev.can_recv() {
            return None;
        }
        let rx = self.dev.receive().ok()?;
        let pkt = rx.packet();
        let n = pkt.len().min(buf.len());
        buf[..n].copy_from_slice(&pkt[..n]);
        if let Err(e) = self.dev.recycle_rx_buffer(rx) {
            log::warn!("virtio-net backend: recycling a receive buffer: {e:?}");
        }
        Some(n)
    }

    fn mac(&self) -> [u8; 6] {
        self.dev.mac_address()
    }

    fn link_up(&self) -> bool {
        true
    }
}

/// A real virtio-console port.
pub struct VirtioConsole<H: Hal, T: Transport> {
    dev: VirtIOConsole<H, T>,
}

impl<H: Hal, T: Transport> VirtioConsole<H, T> {
    /// Initialises the device.
    pub fn new(transport: T) -> Result<Self, virtio_drivers::Error> {
        Ok(Self {
            dev: VirtIOConsole::new(transport)?,
        })
    }
}

impl<H: Hal, T: Transport> ConsoleBackend for VirtioConsole<H, T>
where
    VirtIOConsole<H, T>: Send,
{
    fn write(&mut self, data: &[u8]) {
        if let Err(e) = self.dev.send_bytes(data) {
            log::warn!("virtio-console backend: {e:?}");
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match self.dev.recv(true) {
                Ok(Some(b)) => {
                    buf[n] = b;
                    n += 1;
                }
                _ => break,
            }
        }
        n
    }
}

/// A real virtio-rng source.
pub struct VirtioRng<H: Hal, T: Transport> {
    dev: VirtIORng<H, T>,
}

impl<H: Hal, T: Transport> VirtioRng<H, T> {
    /// Initialises the device.
    pub fn new(transport: T) -> Result<Self, virtio_drivers::Error> {
        Ok(Self {
            dev: VirtIORng::new(transport)?,
        })
    }
}

impl<H: Hal, T: Transport> EntropyBackend for VirtioRng<H, T>
where
    VirtIORng<H, T>: Send,
{
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        let mut done = 0;
        while done < buf.len() {
            match self.dev.request_entropy(&mut buf[done..]) {
                Ok(0) | Err(_) => return Err(EntropyError),
                Ok(n) => done += n,
            }
        }
        Ok(())
    }
}
