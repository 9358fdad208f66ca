//! virtio-console (device ID 3, virtio §5.3): a single port, receiveq 0 and
//! transmitq 1, with the terminal size in config space.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::backends::ConsoleBackend;
use crate::devices::BUDGET;
use crate::virtio::device_id;
use crate::virtio::queue::Chain;
use crate::virtio::transport::{DeviceCtx, DeviceError, VirtioDevice};

/// Feature bits.
pub mod feature {
    #![allow(missing_docs)]
    pub const SIZE: u64 = 1 << 0;
    pub const EMERG_WRITE: u64 = 1 << 2;
}

/// Queue size offered.
pub const QUEUE_SIZE: u16 = 64;
/// Bounce buffer size for each direction.
pub const BUF_SIZE: usize = 4096;
const RX: usize = 0;
const TX: usize = 1;
const CONFIG_LEN: usize = 12;
const EMERG_WR_OFFSET: usize = 8;

/// A console device model.
pub struct Console {
    backend: Box<dyn ConsoleBackend>,
    rx: Vec<u8>,
    /// Input taken from the backend but not yet delivered: `rx[start..end]`.
    rx_start: usize,
    rx_end: usize,
    tx: Vec<u8>,
    chain: Chain,
}

impl Console {
    /// A console over `backend`.
    pub fn new(backend: Box<dyn ConsoleBackend>) -> Self {
        Self {
            backend,
            rx: alloc::vec![0; BUF_SIZE],
            rx_start: 0,
            rx_end: 0,
            tx: alloc::vec![0; BUF_SIZE],
            chain: Chain::new(),
        }
    }

    fn receive(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        for _ in 0..BUDGET {
            let q = &mut ctx.queues[RX];
            if self.rx_start == self.rx_end {
                // Pull input only when the driver can take it: the backend
                // buffers better than we do.
                if !q.has_available(ctx.mem)? {
                    return Ok(());
                }
                self.rx_start = 0;
                self.rx_end = self.backend.read(&mut self.rx);
                if self.rx_end == 0 {
                    return Ok(());
                }
            }
            if !q.pop(ctx.mem, &mut self.chain)? {
                return Ok(());
            }
            let n = self
                .chain
                .writer()
                .write(ctx.mem, &self.rx[self.rx_start..self.rx_end])?;
            self.rx_start += n;
            q.push_used(ctx.mem, self.chain.token(), n as u32)?;
        }
        Ok(())
    }

    fn transmit(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        for _ in 0..BUDGET {
            let q = &mut ctx.queues[TX];
            if !q.pop(ctx.mem, &mut self.chain)? {
                return Ok(());
            }
            let mut reader = self.chain.reader();
            loop {
                let n = reader.read(ctx.mem, &mut self.tx)?;
                if n == 0 {
                    break;
                }
                self.backend.write(&self.tx[..n]);
            }
            q.push_used(ctx.mem, self.chain.token(), 0)?;
        }
        Ok(())
    }
}

impl VirtioDevice for Console {
    fn device_id(&self) -> u32 {
        device_id::CONSOLE
    }

    fn features(&self) -> u64 {
        feature::SIZE | feature::EMERG_WRITE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let (cols, rows) = self.backend.size();
        let mut c = [0u8; CONFIG_LEN];
        c[0..2].copy_from_slice(&cols.to_le_bytes());
        c[2..4].copy_from_slice(&rows.to_le_bytes());
        c[4..8].copy_from_slice(&1u32.to_le_bytes());
        data.copy_from_slice(&c[offset..offset + data.len()]);
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) -> bool {
        // emerg_wr: the low byte is output, accepted in any state.
        if offset == EMERG_WR_OFFSET {
            self.backend.write(&data[..1]);
        }
        false
    }

    fn queue_notify(&mut self, queue: u16, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        match usize::from(queue) {
            // New receive buffers are filled on the next poll, never inside
            // the notification itself: Linux's virtio_console posts them
            // before it registers the port, and input that completes in
            // that window is discarded by the guest.
            RX => Ok(()),
            TX => self.transmit(ctx),
            _ => Ok(()),
        }
    }

    fn poll(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        self.receive(ctx)
    }

    fn reset(&mut self) {
        // Input already taken from the backend is dropped with the session.
        self.rx_start = 0;
        self.rx_end = 0;
    }
}
