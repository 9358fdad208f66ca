//! Deliberate faults, chosen on the kernel command line
//! (`backplane.fault=data-abort|undef|panic|stack-overflow`), so tests can
//! prove that the exception report works and ends the run as a failure.

pub fn maybe_inject(bootargs: &str) {
    let Some(which) = bootargs
        .split_whitespace()
        .find_map(|a| a.strip_prefix("backplane.fault="))
    else {
        return;
    };
    log::warn!("backplane: injecting fault '{which}' as asked");
    match which {
        "data-abort" => {
            // An address that is never mapped: past the 512 GiB identity map.
            let bad = 0x0000_ff00_0000_0000u64 as *const u32;
            // SAFETY: deliberately faulting; the read never completes.
            let v = unsafe { bad.read_volatile() };
            log::error!("read {v} from an unmapped address");
        }
        "undef" => {
            // SAFETY: deliberately executes a permanently undefined instruction.
            unsafe { core::arch::asm!("udf #0") };
        }
        "panic" => panic!("deliberate panic from backplane.fault"),
        "stack-overflow" => {
            log::error!("depth {}", recurse(0, &[0u8; 1024]));
        }
        other => log::warn!("unknown fault '{other}'; ignoring"),
    }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, pad: &[u8; 1024]) -> u64 {
    let local = core::hint::black_box([depth as u8; 1024]);
    recurse(depth + 1, &local) + pad[0] as u64
}
