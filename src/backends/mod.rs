//! The real devices behind the device models, as traits.
//!
//! A device model owns a `Box<dyn …Backend>` and calls it synchronously while
//! serving a request; backends never see guest memory or rings. In-memory
//! implementations for tests, benches and the loopback mode live in [`mem`];
//! drivers of real hardware (virtio-drivers clients, UARTs) live next to them
//! and implement the same traits.
#![deny(unsafe_code)]

pub mod looped;
pub mod mem;
pub mod virtio;

use core::fmt;

/// Bytes per block-layer sector (virtio-blk counts in these regardless of the
/// backend's own block size).
pub const SECTOR_SIZE: usize = 512;

/// Why a block operation failed; all become VIRTIO_BLK_S_IOERR or UNSUPP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// Sector range beyond the capacity.
    OutOfRange,
    /// The medium is read-only.
    ReadOnly,
    /// The operation is not supported.
    Unsupported,
    /// The device failed.
    Io,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfRange => "sector out of range",
            Self::ReadOnly => "read-only",
            Self::Unsupported => "unsupported",
            Self::Io => "I/O error",
        })
    }
}

/// A disk. Buffers passed in are whole sectors; the caller checks ranges
/// against [`BlockBackend::capacity`] before calling.
pub trait BlockBackend: Send {
    /// Size in 512-byte sectors.
    fn capacity(&self) -> u64;

    /// True if writes must be refused.
    fn read_only(&self) -> bool;

    /// Reads `buf.len() / 512` sectors starting at `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError>;

    /// Writes `data.len() / 512` sectors starting at `sector`.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BlockError>;

    /// Makes completed writes stable.
    fn flush(&mut self) -> Result<(), BlockError>;

    /// Hints that `count` sectors are unused. The default does nothing, which
    /// is a valid discard.
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), BlockError> {
        let _ = (sector, count);
        Ok(())
    }

    /// Zeroes `count` sectors. The default writes zero sectors one at a time.
    fn write_zeroes(&mut self, sector: u64, count: u64) -> Result<(), BlockError> {
        const ZERO: [u8; SECTOR_SIZE] = [0; SECTOR_SIZE];
        for i in 0..count {
            let s = sector.checked_add(i).ok_or(BlockError::OutOfRange)?;
            self.write(s, &ZERO)?;
        }
        Ok(())
    }

    /// Identification string for GET_ID: up to 20 ASCII bytes.
    fn id(&self) -> &[u8];
}

/// A byte stream (serial line, log sink).
pub trait ConsoleBackend: Send {
    /// Sends bytes towards the outside world.
    fn write(&mut self, data: &[u8]);

    /// Takes pending input without blocking; returns the count (0 = none).
    fn read(&mut self, buf: &mut [u8]) -> usize;

    /// Terminal size as (columns, rows).
    fn size(&self) -> (u16, u16) {
        (80, 25)
    }
}

/// Why entropy could not be produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntropyError;

/// A source of random bytes.
pub trait EntropyBackend: Send {
    /// Fills `buf` completely with random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError>;
}

/// Why a frame could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// No room right now; the frame is dropped.
    Busy,
    /// The device failed.
    Io,
}

/// Offload metadata of one frame (virtio_net_hdr without `num_buffers`,
/// which belongs to the ring).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetHeader {
    /// NEEDS_CSUM 1, DATA_VALID 2, RSC_INFO 4.
    pub flags: u8,
    /// GSO type (0 = none).
    pub gso_type: u8,
    /// Header length.
    pub hdr_len: u16,
    /// GSO segment size.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

/// An Ethernet port.
pub trait NetBackend: Send {
    /// Sends one frame (no virtio header).
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError>;

    /// Takes one received frame without blocking; returns its length, or
    /// `None` if nothing is pending. Frames longer than `buf` are truncated.
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize>;

    /// The port's MAC address.
    fn mac(&self) -> [u8; 6];

    /// Link state.
    fn link_up(&self) -> bool;

    /// Offload feature bits (virtio-net CSUM 1<<0, GUEST_CSUM 1<<1) the
    /// backend can honour through the `*_with_header` methods.
    fn offload_features(&self) -> u64 {
        0
    }

    /// Sends a frame with its offload metadata; the default drops the
    /// metadata (right when no offloads are offered).
    fn transmit_with_header(&mut self, header: &NetHeader, frame: &[u8]) -> Result<(), NetError> {
        let _ = header;
        self.transmit(frame)
    }

    /// Receives a frame with its offload metadata.
    fn receive_with_header(&mut self, buf: &mut [u8]) -> Option<(usize, NetHeader)> {
        self.receive(buf).map(|n| (n, NetHeader::default()))
    }
}
