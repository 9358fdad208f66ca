//! PL011 UART: enough to print and to read a byte when one is waiting.
use super::mmio::MmioRegion;

const DR: usize = 0x00;
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFE: u32 = 1 << 4;

/// A PL011 at a device-tree (or board) address.
#[derive(Clone, Copy, Debug)]
pub struct Pl011(pub MmioRegion);

impl Pl011 {
    /// Writes bytes, turning `\n` into `\r\n`.
    pub fn write(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }

    fn put(&self, b: u8) {
        while self.0.read32(FR) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        self.0.write32(DR, b as u32);
    }

    /// A received byte, if one is waiting.
    pub fn try_read(&self) -> Option<u8> {
        if self.0.read32(FR) & FR_RXFE != 0 {
            None
        } else {
            Some(self.0.read32(DR) as u8)
        }
    }
}
