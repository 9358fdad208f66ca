//! virtio-blk requests built from the fuzz input on a live split or packed
//! queue.
#![no_main]

use arbitrary::Arbitrary;
use backplane::backends::mem::MemDisk;
use backplane::devices::blk::Block;
use backplane::virtio::{GuestMemory, HostMemory, MmioDevice, features};
use libfuzzer_sys::fuzz_target;

const BASE: u64 = 0x10_0000;
const SIZE: usize = 128 * 1024;
const DESC: u64 = BASE;
const DRIVER: u64 = BASE + 0x1000;
const DEVICE: u64 = BASE + 0x2000;

#[derive(Arbitrary, Debug)]
struct Input {
    driver_features: u64,
    queue_size: u8,
    read_only: bool,
    kicks: u8,
    memory: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let disk = MemDisk::new(128);
    let disk = if input.read_only {
        disk.read_only()
    } else {
        disk
    };
    let mut dev = MmioDevice::new(Box::new(Block::new(Box::new(disk))));
    let mut mem = HostMemory::with_region(BASE, SIZE);
    let n = input.memory.len().min(SIZE);
    mem.write(BASE, &input.memory[..n]).unwrap();
    let f = (input.driver_features | features::VERSION_1) & dev.transport().device_features();
    let w = |d: &mut MmioDevice, m: &mut HostMemory, off: u64, v: u64| d.write(off, 4, v, m);
    w(&mut dev, &mut mem, 0x070, 3);
    w(&mut dev, &mut mem, 0x024, 0);
    w(&mut dev, &mut mem, 0x020, f & 0xffff_ffff);
    w(&mut dev, &mut mem, 0x024, 1);
    w(&mut dev, &mut mem, 0x020, f >> 32);
    w(&mut dev, &mut mem, 0x070, 11);
    w(&mut dev, &mut mem, 0x030, 0);
    w(&mut dev, &mut mem, 0x038, u64::from(input.queue_size));
    w(&mut dev, &mut mem, 0x080, DESC);
    w(&mut dev, &mut mem, 0x090, DRIVER);
    w(&mut dev, &mut mem, 0x0a0, DEVICE);
    w(&mut dev, &mut mem, 0x044, 1);
    w(&mut dev, &mut mem, 0x070, 15);
    for _ in 0..(input.kicks % 8) + 1 {
        w(&mut dev, &mut mem, 0x050, 0);
        dev.poll(&mut mem);
    }
});
