//! Random register accesses against every device model, with guest memory
//! filled from the input so that rings the driver points at hold fuzz data.
#![no_main]

use arbitrary::Arbitrary;
use backplane::backends::mem::{MemConsole, MemDisk, MemEntropy, MemNet};
use backplane::devices::{blk::Block, console::Console, net::Net, rng::Rng};
use backplane::virtio::{GuestMemory, HostMemory, MmioDevice, VirtioDevice};
use libfuzzer_sys::fuzz_target;

/// Guest memory is small so that random addresses hit it often.
const BASE: u64 = 0x4000_0000;
const SIZE: usize = 64 * 1024;

#[derive(Arbitrary, Debug)]
struct Access {
    offset: u16,
    size: u8,
    write: bool,
    value: u32,
    /// Points a value at guest memory (ring addresses).
    near_base: bool,
    poll: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: u8,
    accesses: Vec<Access>,
    memory: Vec<u8>,
}

fn model(kind: u8) -> Box<dyn VirtioDevice> {
    match kind % 4 {
        0 => Box::new(Block::new(Box::new(MemDisk::new(64)))),
        1 => {
            let c = MemConsole::new();
            c.push_input(b"fuzz");
            Box::new(Console::new(Box::new(c)))
        }
        2 => Box::new(Rng::new(Box::new(MemEntropy::new(7)))),
        _ => {
            let n = MemNet::new([2, 0, 0, 0, 0, 1]);
            n.push_frame(&[0x42; 200]);
            Box::new(Net::new(Box::new(n)))
        }
    }
}

fuzz_target!(|input: Input| {
    let mut mem = HostMemory::with_region(BASE, SIZE);
    let n = input.memory.len().min(SIZE);
    mem.write(BASE, &input.memory[..n]).unwrap();
    let mut dev = MmioDevice::new(model(input.kind));
    // Bound the work per input (legal-but-huge sequences time out otherwise).
    for a in input.accesses.iter().take(512) {
        let off = u64::from(a.offset) & 0x1ff;
        let value = if a.near_base {
            BASE + u64::from(a.value) % SIZE as u64
        } else {
            u64::from(a.value)
        };
        if a.write {
            dev.write(off, a.size, value, &mut mem);
        } else {
            dev.read(off, a.size, &mut mem);
        }
        if a.poll {
            dev.poll(&mut mem);
        }
        let _ = dev.take_interrupt_edge();
    }
});
