//! Xen's console for dom0 (`console_io`, xen.md §9): a byte sink for the platform console and
//! a non-blocking read of the input dom0 has while it holds console focus.
//!
//! Image only: on the host there is no Xen to talk to.

#[cfg(target_os = "none")]
use super::hypercall;

/// Writes `bytes` to Xen's console. Errors (a Xen that refuses us the console) are dropped:
/// a log sink has nowhere to report them.
#[cfg(target_os = "none")]
pub fn console_write(bytes: &[u8]) {
    // Xen consumes the whole buffer (continuing internally for long ones); slicing keeps any
    // single hypercall short so other vCPUs' console output interleaves by line, not by log.
    for chunk in bytes.chunks(1024) {
        let _ = hypercall::console_write(chunk);
    }
}

/// Reads pending console input into `buf`; returns the bytes read (0 if none or refused).
/// Input arrival is signalled by `VIRQ_CONSOLE` (see `Events::bind_virq`).
#[cfg(target_os = "none")]
pub fn console_read(buf: &mut [u8]) -> usize {
    hypercall::console_read(buf).map_or(0, |n| (n as usize).min(buf.len()))
}
