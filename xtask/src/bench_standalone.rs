//! `cargo xtask bench standalone`: the in-image frontend's block throughput
//! through Backplane beside the same frontend driving QEMU's virtio-blk
//! directly, measured in the same run.
//!
//! Protocol with the image. xtask boots QEMU `virt` with two identical raw
//! disks (`virtio-blk0`, then `virtio-blk1`, both `cache=unsafe`) and
//!
//! ```text
//! -append "backplane.plan=0:blk@0x10000000=virtio-blk0 backplane.bench=blk
//!          backplane.bench_mib=<M> backplane.bench_ops=<N>"
//! ```
//!
//! With `backplane.bench=blk` the image runs the benchmark instead of the
//! self-test: path `served` is the frontend's `VirtIOBlk` over the loopback
//! transport of the plan's blk device (through Backplane, backed by
//! `virtio-blk0`); path `direct` is the same `VirtIOBlk` over the real
//! `virtio-blk1` transport, not through Backplane. One request in flight at a
//! time. For each test in the order below, `served` runs, then `direct`:
//!
//! - `seq-write-64k`: write bytes [0, M MiB) in 64 KiB requests, then one
//!   flush; the time includes the flush.
//! - `seq-read-64k`: read bytes [0, M MiB) in 64 KiB requests.
//! - `rand-read-4k`: N reads of 4 KiB at 4 KiB-aligned offsets within
//!   [0, M MiB), the same sequence on both paths.
//!
//! After each, one line (time from the generic timer, in microseconds):
//!
//! ```text
//! bench: blk path=served test=seq-read-64k bytes=33554432 ops=512 time=123456us result=ok
//! bench: blk path=direct test=rand-read-4k result=FAILED <why>
//! ```
//!
//! and at the end `bench: done`, then power off (whatever the board's
//! `after_selftest`). xtask computes MB/s = bytes / time (10^6 bytes per
//! second) and IOPS = ops / time.
use crate::harness::ensure;
use crate::image::Image;
use crate::standalone::{self, Drive, Machine, field};
use anyhow::{Result, bail};
use std::time::Duration;

const MIB: usize = 32;
const OPS: usize = 4096;
/// Tests in the order the image runs them, and what each measures.
const TESTS: [(&str, Unit); 3] = [
    ("seq-write-64k", Unit::MBps),
    ("seq-read-64k", Unit::MBps),
    ("rand-read-4k", Unit::Iops),
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Unit {
    MBps,
    Iops,
}

/// One measurement the image reported.
#[derive(Debug, PartialEq)]
struct Sample {
    path: String,
    test: String,
    bytes: u64,
    ops: u64,
    time_us: u64,
}

impl Sample {
    fn value(&self, unit: Unit) -> f64 {
        let secs = self.time_us.max(1) as f64 / 1e6;
        match unit {
            Unit::MBps => self.bytes as f64 / 1e6 / secs,
            Unit::Iops => self.ops as f64 / secs,
        }
    }
}

/// Parses one `bench: blk ...` line: a sample, an error, or not ours.
fn parse(line: &str) -> Option<Result<Sample, String>> {
    let rest = &line[line.find("bench: blk ")?..];
    let get = |k: &str| field(rest, k).map(str::to_string);
    let (path, test) = (get("path")?, get("test")?);
    if field(rest, "result") != Some("ok") {
        return Some(Err(format!("{path} {test}: {}", rest.trim())));
    }
    let num = |k: &str| -> Option<u64> { field(rest, k)?.trim_end_matches("us").parse().ok() };
    Some(match (num("bytes"), num("ops"), num("time")) {
        (Some(bytes), Some(ops), Some(time_us)) => Ok(Sample {
            path,
            test,
            bytes,
            ops,
            time_us,
        }),
        _ => Err(format!("malformed: {}", rest.trim())),
    })
}

/// Formats the comparison table.
fn table(samples: &[Sample]) -> Result<String> {
    let mut s = format!(
        "{:<15} {:>16} {:>16} {:>15}\n",
        "test", "served", "direct", "served/direct"
    );
    for (test, unit) in TESTS {
        let find = |path: &str| {
            samples
                .iter()
                .find(|x| x.test == test && x.path == path)
                .map(|x| x.value(unit))
        };
        let (Some(served), Some(direct)) = (find("served"), find("direct")) else {
            bail!("the image reported no served/direct pair for {test}");
        };
        let u = match unit {
            Unit::MBps => "MB/s",
            Unit::Iops => "IOPS",
        };
        s += &format!(
            "{test:<15} {:>11.1} {u} {:>11.1} {u} {:>15.2}\n",
            served,
            direct,
            served / direct.max(f64::MIN_POSITIVE)
        );
    }
    Ok(s)
}

/// Runs the benchmark and prints the table.
pub fn run() -> Result<()> {
    crate::deps::ensure_commands(crate::deps::QEMU_PACKAGES)?;
    let img: Image = crate::image::build(true)?;
    let dir = crate::project_root().join("target/standalone");
    std::fs::create_dir_all(&dir)?;
    let mut drives = Vec::new();
    for name in ["bench-served.img", "bench-direct.img"] {
        let p = dir.join(name);
        std::fs::write(&p, standalone::disk_pattern(MIB << 20, 0))?;
        let mut d = Drive::new(p);
        d.extra = "cache=unsafe";
        drives.push(d);
    }
    let m = Machine {
        drives,
        net: false,
        console: false,
        rng: false,
        append: Some(format!(
            "backplane.plan=0:blk@0x10000000=virtio-blk0 backplane.bench=blk backplane.bench_mib={MIB} backplane.bench_ops={OPS}"
        )),
    };
    println!(
        "xtask: bench standalone: {MIB} MiB sequential, {OPS} random 4 KiB reads, release image"
    );
    let s = standalone::boot(&img, &m, Duration::from_secs(180), false)?;
    s.ended()?;
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    for l in &s.out.lines {
        match parse(l) {
            Some(Ok(x)) => samples.push(x),
            Some(Err(e)) => errors.push(e),
            None => {}
        }
    }
    if samples.is_empty() && errors.is_empty() {
        bail!(
            "the image printed no `bench: blk` lines: it has no bench mode yet \
             (the protocol is at the top of xtask/src/bench_standalone.rs); last lines:\n{}",
            s.out.tail(10)
        );
    }
    ensure(errors.is_empty(), || {
        format!("the benchmark failed:\n{}", errors.join("\n"))
    })?;
    ensure(s.out.has("bench: done"), || {
        format!("no `bench: done`:\n{}", s.out.tail(10))
    })?;
    print!("{}", table(&samples)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_and_failures() {
        let ok = parse("bench: blk path=served test=seq-read-64k bytes=2000000 ops=31 time=1000000us result=ok")
            .unwrap()
            .unwrap();
        assert_eq!(ok.value(Unit::MBps), 2.0);
        assert_eq!(ok.value(Unit::Iops), 31.0);
        let bad =
            parse("bench: blk path=direct test=rand-read-4k result=FAILED read at 0x1000: IoError");
        assert!(bad.unwrap().unwrap_err().contains("IoError"));
        assert!(parse("backplane: device blk result=ok").is_none());
        assert!(parse("bench: done").is_none());
    }

    #[test]
    fn table_has_ratio() {
        let mk = |path: &str, test: &str, time_us| Sample {
            path: path.into(),
            test: test.into(),
            bytes: 1_000_000,
            ops: 100,
            time_us,
        };
        let mut v = Vec::new();
        for (t, _) in TESTS {
            v.push(mk("served", t, 2_000_000));
            v.push(mk("direct", t, 1_000_000));
        }
        let t = table(&v).unwrap();
        assert!(t.contains("seq-read-64k") && t.contains("0.50"), "{t}");
        assert!(t.contains("IOPS"), "{t}");
        v.pop();
        assert!(table(&v).is_err());
    }
}
