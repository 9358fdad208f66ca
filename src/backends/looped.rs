//! Loopback backends for plans that serve a device with no real one behind
//! it: frames sent come back as received frames, console bytes written come
//! back as input. Bounded; excess is dropped, never queued without limit.
use super::{ConsoleBackend, NetBackend, NetError};
use alloc::collections::VecDeque;
use alloc::vec::Vec;

const MAX_FRAMES: usize = 64;
const MAX_BYTES: usize = 64 * 1024;

/// A network port wired to itself.
pub struct LoopNet {
    frames: VecDeque<Vec<u8>>,
    mac: [u8; 6],
}

impl LoopNet {
    /// A looped port with `mac`.
    pub fn new(mac: [u8; 6]) -> Self {
        Self {
            frames: VecDeque::with_capacity(MAX_FRAMES),
            mac,
        }
    }
}

impl NetBackend for LoopNet {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if self.frames.len() >= MAX_FRAMES {
            return Err(NetError::Busy);
        }
        self.frames.push_back(frame.to_vec());
        Ok(())
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let f = self.frames.pop_front()?;
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Some(n)
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&self) -> bool {
        true
    }
}

/// A console line wired to itself.
#[derive(Default)]
pub struct LoopConsole {
    bytes: VecDeque<u8>,
}

impl ConsoleBackend for LoopConsole {
    fn write(&mut self, data: &[u8]) {
        let room = MAX_BYTES.saturating_sub(self.bytes.len());
        self.bytes.extend(&data[..data.len().min(room)]);
    }

    fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.bytes.len());
        for (dst, src) in buf.iter_mut().zip(self.bytes.drain(..n)) {
            *dst = src;
        }
        n
    }
}
