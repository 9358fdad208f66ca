//! virtio-rng / entropy device (device ID 4, virtio §5.4): one request queue
//! of device-writable buffers.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::backends::EntropyBackend;
use crate::devices::BUDGET;
use crate::virtio::device_id;
use crate::virtio::queue::Chain;
use crate::virtio::transport::{DeviceCtx, DeviceError, VirtioDevice};

/// Queue size offered.
pub const QUEUE_SIZE: u16 = 64;
/// Most bytes given per request; the spec lets the device fill less.
pub const CHUNK: usize = 4096;

/// An entropy device model.
pub struct Rng {
    backend: Box<dyn EntropyBackend>,
    buf: Vec<u8>,
    chain: Chain,
}

impl Rng {
    /// An entropy device over `backend`.
    pub fn new(backend: Box<dyn EntropyBackend>) -> Self {
        Self {
            backend,
            buf: alloc::vec![0; CHUNK],
            chain: Chain::new(),
        }
    }
}

impl VirtioDevice for Rng {
    fn device_id(&self) -> u32 {
        device_id::ENTROPY
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn config_len(&self) -> usize {
        0
    }

    fn read_config(&self, _offset: usize, _data: &mut [u8]) {}

    fn queue_notify(&mut self, queue: u16, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        if queue != 0 {
            return Ok(());
        }
        for _ in 0..BUDGET {
            if !ctx.queues[0].pop(ctx.mem, &mut self.chain)? {
                break;
            }
            // Readable buffers carry nothing for us; they are ignored.
            let n = (self.chain.writable_len() as usize).min(CHUNK);
            let mut written = 0;
            if n > 0 {
                match self.backend.fill(&mut self.buf[..n]) {
                    Ok(()) => {
                        written = self.chain.writer().write(ctx.mem, &self.buf[..n])?;
                    }
                    Err(_) => log::warn!("virtio-rng: entropy backend failed"),
                }
            }
            ctx.queues[0].push_used(ctx.mem, self.chain.token(), written as u32)?;
        }
        Ok(())
    }

    fn reset(&mut self) {}
}
