//! Descriptor-chain walking on split and packed rings whose contents are
//! the fuzz input.
#![no_main]

use arbitrary::Arbitrary;
use backplane::virtio::queue::{Chain, Queue, RingFeatures};
use backplane::virtio::{GuestMemory, HostMemory};
use libfuzzer_sys::fuzz_target;

const BASE: u64 = 0x1000;
const SIZE: usize = 64 * 1024;

#[derive(Arbitrary, Debug)]
struct Input {
    size: u16,
    packed: bool,
    indirect: bool,
    event_idx: bool,
    desc: u16,
    driver: u16,
    device: u16,
    used_lens: Vec<u32>,
    memory: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let mut mem = HostMemory::with_region(BASE, SIZE);
    let n = input.memory.len().min(SIZE);
    mem.write(BASE, &input.memory[..n]).unwrap();
    let mut q = Queue::new(256);
    q.set_size(input.size);
    q.set_addresses(
        BASE + u64::from(input.desc),
        BASE + u64::from(input.driver),
        BASE + u64::from(input.device),
    );
    let features = RingFeatures {
        indirect: input.indirect,
        event_idx: input.event_idx,
        packed: input.packed,
    };
    if q.enable(&mut mem, features).is_err() {
        return;
    }
    let mut chain = Chain::new();
    let mut buf = [0u8; 256];
    for i in 0..64 {
        match q.pop(&mut mem, &mut chain) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        // Invariants of a validated chain.
        let readable: u64 = chain
            .descs()
            .iter()
            .filter(|d| !d.writable)
            .map(|d| u64::from(d.len))
            .sum();
        assert_eq!(readable, u64::from(chain.readable_len()));
        assert!(
            u64::from(chain.readable_len()) + u64::from(chain.writable_len())
                <= u64::from(u32::MAX)
        );
        let mut r = chain.reader();
        while r.read(&mut mem, &mut buf).unwrap() > 0 {}
        let mut w = chain.writer();
        let len = input
            .used_lens
            .get(i)
            .copied()
            .unwrap_or(0)
            .min(chain.writable_len());
        let mut left = len as usize;
        while left > 0 {
            let k = w.write(&mut mem, &buf[..left.min(buf.len())]).unwrap();
            assert!(k > 0);
            left -= k;
        }
        let _ = q.push_used(&mut mem, chain.token(), len);
        let _ = q.needs_interrupt(&mut mem);
    }
});
