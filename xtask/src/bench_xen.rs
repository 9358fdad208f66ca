//! `cargo xtask bench xen`: a Linux domU on Backplane-served virtio (Xen's IOREQ server) beside
//! the same kernel + initramfs directly on QEMU, in one run. The guest runs `bp.test=bench`, which
//! drives `bptool` (xen/bptool.c, built here with `aarch64-linux-gnu-gcc -static`, appended to a
//! bench copy of the initramfs as a second newc archive).
use crate::xen::{self, Boot, QemuRun, XenArtifacts};
use crate::xen_tests::{Dom0Devices, linux_domu};
use crate::{deps, image};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BPTOOL_SRC: &str = include_str!("xen/bptool.c");
const TIMEOUT: Duration = Duration::from_secs(600);
const FAILURES: [&str; 5] = [
    "backplane: fatal",
    " FAIL",
    "Oops",
    "Kernel panic",
    "BPTOOL error=",
];
/// The guest's test parameters (both sides alike).
const GUEST_ARGS: &str = "bp.iops=1000 bp.seqmb=16 bp.mmiocount=2000";
/// The blk window: libxl slot 0 in the domU; on `virt` the first `-device` takes the last transport.
const XEN_BLK_WINDOW: u64 = 0x0200_0000;
const VIRT_BLK_WINDOW: u64 = 0x0a00_3e00;

/// One run's numbers.
#[derive(Default)]
struct Numbers {
    mmio_mean_ns: Option<f64>,
    mmio_median_ns: Option<f64>,
    mmio_dev: Option<String>,
    iops: Option<f64>,
    /// (op, mode) -> MB/s
    seq: BTreeMap<(String, String), f64>,
    ready_s: Option<f64>,
    vda_s: Option<f64>,
    note: String,
}

/// Runs the benchmark and prints its tables.
pub fn run() -> Result<()> {
    deps::ensure_commands(deps::QEMU_PACKAGES)?;
    deps::ensure_commands(&[("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")])?;
    let root = crate::project_root();
    let img = image::build(true)?;
    let a = xen::prepare(&root)?;
    let dir = root.join("target/bench/xen");
    std::fs::create_dir_all(&dir)?;
    let tool = build_bptool(&dir)?;
    let initrd = bench_initramfs(&a.initramfs, &tool, &dir.join("bench-initramfs.cpio"))?;
    let disk = dir.join("disk.img");

    let direct = measure("direct", || direct_run(&a, &initrd, &disk, &dir))?;
    let configs = [
        ("Xen defaults (credit2)", "bench-default", ""),
        (
            "sched=null dom0_max_vcpus=1 vwfi=native",
            "bench-null",
            " sched=null vwfi=native",
        ),
    ];
    let mut xens = Vec::new();
    for (title, name, args) in configs {
        let n = measure(name, || xen_run(&a, &img, &initrd, &disk, name, args))?;
        xens.push((title, n));
    }
    println!();
    println!(
        "bench xen: one run each, QEMU TCG (machine shared with other jobs: ratios matter more than absolutes)"
    );
    for ((title, n), incumbent_mmio) in xens.iter().zip(["305", "153 (143 busy-poll)"]) {
        table(title, n, &direct, incumbent_mmio);
    }
    Ok(())
}

fn measure(name: &str, f: impl FnOnce() -> Result<(xen::RunOutcome, String)>) -> Result<Numbers> {
    xen::step(&format!("bench xen: {name} run"));
    let (out, log) = f()?;
    let mut n = parse(&log);
    n.ready_s = marker(&out, "backplane: ready as Xen dom0");
    n.vda_s = marker(&out, "bench: vda ready");
    if !out.passed {
        n.note = format!("{name}: {} (log {})", out.reason, out.log.display());
        eprintln!("bench xen: {}", n.note);
    }
    Ok(n)
}

fn marker(out: &xen::RunOutcome, m: &str) -> Option<f64> {
    out.seen
        .iter()
        .find(|(s, _)| s == m)
        .map(|(_, t)| t.as_secs_f64())
}

/// `BPTOOL key=value ...` lines of a run's log.
fn parse(log: &str) -> Numbers {
    let mut n = Numbers::default();
    for line in log.lines() {
        let Some(i) = line.find("BPTOOL ") else {
            continue;
        };
        let mut words = line[i + 7..].split_whitespace();
        let kind = words.next().unwrap_or("");
        let kv: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
        let num = |k: &str| kv.get(k).and_then(|v| v.parse::<f64>().ok());
        match kind {
            "mmio" => {
                n.mmio_mean_ns = num("mean_ns");
                n.mmio_median_ns = num("median_ns");
                n.mmio_dev = Some(format!(
                    "{} val={} dev={} timer={}ns",
                    kv.get("addr").unwrap_or(&"?"),
                    kv.get("val").unwrap_or(&"?"),
                    kv.get("dev").unwrap_or(&"?"),
                    kv.get("timer_ns").unwrap_or(&"?")
                ));
            }
            "randread" => n.iops = num("iops"),
            "seq" => {
                if let (Some(op), Some(mode), Some(kbps)) =
                    (kv.get("op"), kv.get("mode"), num("kbps"))
                {
                    n.seq
                        .insert((op.to_string(), mode.to_string()), kbps / 1000.0);
                }
            }
            _ => {}
        }
    }
    n
}

fn build_bptool(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("bptool.c");
    let bin = dir.join("bptool");
    std::fs::write(&src, BPTOOL_SRC)?;
    xen::run(
        Command::new("aarch64-linux-gnu-gcc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&bin)
            .arg(&src),
    )
    .context("compiling bptool")?;
    Ok(bin)
}

/// The prepared initramfs with a second newc archive holding `/bptool` appended (the kernel
/// unpacks concatenated archives in sequence).
fn bench_initramfs(base: &Path, tool: &Path, out: &Path) -> Result<PathBuf> {
    let mut buf = std::fs::read(base)?;
    newc_entry(&mut buf, 1, "bptool", 0o100755, &std::fs::read(tool)?);
    newc_entry(&mut buf, 0, "TRAILER!!!", 0, &[]);
    while !buf.len().is_multiple_of(512) {
        buf.push(0);
    }
    std::fs::write(out, buf)?;
    Ok(out.to_path_buf())
}

fn newc_entry(buf: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let pad = |b: &mut Vec<u8>| {
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
    };
    pad(buf);
    let nlink = u32::from(mode != 0);
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    buf.extend_from_slice(b"070701");
    for f in fields {
        buf.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    pad(buf);
    buf.extend_from_slice(data);
    pad(buf);
}

/// A fresh 64 MiB disk (patterned), the same for every run.
fn fresh_disk(disk: &Path) -> Result<()> {
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(disk, data)?;
    Ok(())
}

/// The same kernel + initramfs straight on QEMU, with QEMU's own virtio-blk-device.
fn direct_run(
    a: &XenArtifacts,
    initrd: &Path,
    disk: &Path,
    dir: &Path,
) -> Result<(xen::RunOutcome, String)> {
    fresh_disk(disk)?;
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args([
        "-M",
        "virt",
        "-cpu",
        "cortex-a57",
        "-m",
        "256",
        "-nic",
        "none",
    ])
    .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
    .args(["-no-reboot", "-global", "virtio-mmio.force-legacy=false"])
    .arg("-kernel")
    .arg(&a.linux_image)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(format!(
        "console=ttyAMA0 rdinit=/init bp.test=bench quiet {GUEST_ARGS} bp.mmio={VIRT_BLK_WINDOW:#x}"
    ))
    .arg("-drive")
    .arg(format!("if=none,id=d0,file={},format=raw", disk.display()))
    .args(["-device", "virtio-blk-device,drive=d0"]);
    let work = dir.join("direct");
    std::fs::create_dir_all(&work)?;
    let out = xen::run_until(
        cmd,
        &work.join("console.log"),
        &["bench: vda ready", "test bench PASS"],
        &FAILURES,
        TIMEOUT,
    )?;
    let log = std::fs::read_to_string(&out.log)?;
    Ok((out, log))
}

/// Xen + Backplane dom0 + one dom0less Linux domU on the served disk.
fn xen_run(
    a: &XenArtifacts,
    img: &image::Image,
    initrd: &Path,
    disk: &Path,
    name: &str,
    xen_extra: &str,
) -> Result<(xen::RunOutcome, String)> {
    fresh_disk(disk)?;
    let work = crate::project_root().join("target/xen/runs").join(name);
    std::fs::create_dir_all(&work)?;
    let mut domu = linux_domu(a, "bench", 1, 1);
    domu.ramdisk = Some(initrd.to_path_buf());
    domu.bootargs
        .push_str(&format!(" {GUEST_ARGS} bp.mmio={XEN_BLK_WINDOW:#x}"));
    let boot = Boot {
        xen: a.xen_ioreq.clone(),
        xen_bootargs: format!(
            "{} dom0_mem=128M{xen_extra}",
            Boot::DEFAULT_XEN_BOOTARGS.replace("dom0_mem=512M ", "")
        ),
        dom0_kernel: img.raw.clone(),
        dom0_ramdisk: None,
        dom0_bootargs: String::new(),
        domus: vec![domu],
    };
    let mut run = QemuRun::new(boot, &work);
    run.extra_args = Dom0Devices::disks_and_rng(&[disk]).extra;
    if run.smp != 2 {
        bail!("expected QemuRun's default -smp 2");
    }
    let cmd = xen::boot_command(&run)?;
    let out = xen::run_until(
        cmd,
        &work.join("console.log"),
        &[
            "backplane: ready as Xen dom0",
            "bench: vda ready",
            "test bench PASS",
        ],
        &FAILURES,
        TIMEOUT,
    )?;
    let log = std::fs::read_to_string(&out.log)?;
    Ok((out, log))
}

fn fmt(v: Option<f64>, unit_div: f64, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{:.prec$}", v / unit_div))
}

fn ratio(ours: Option<f64>, direct: Option<f64>, higher_better: bool) -> String {
    match (ours, direct) {
        (Some(o), Some(d)) if o > 0.0 && d > 0.0 => {
            let r = if higher_better { d / o } else { o / d };
            format!("{r:.1}x")
        }
        _ => "-".into(),
    }
}

fn table(title: &str, n: &Numbers, d: &Numbers, incumbent_mmio: &str) {
    println!();
    println!("== Xen: {title} (QEMU -smp 2; dom0 1 vCPU, domU 1 vCPU) ==");
    println!(
        "{:<44} {:>12} {:>12} {:>10} {:>26}",
        "metric", "Backplane", "direct QEMU", "cost", "incumbent (xen.md 13)"
    );
    let row = |m: &str, o: String, dd: String, c: String, inc: &str| {
        println!("{m:<44} {o:>12} {dd:>12} {c:>10} {inc:>26}");
    };
    row(
        "MMIO read, mean us (tight ldr loop)",
        fmt(n.mmio_mean_ns, 1000.0, 2),
        fmt(d.mmio_mean_ns, 1000.0, 3),
        ratio(n.mmio_mean_ns, d.mmio_mean_ns, false),
        "",
    );
    row(
        "MMIO read, median us (per-read, +timer)",
        fmt(n.mmio_median_ns, 1000.0, 2),
        fmt(d.mmio_median_ns, 1000.0, 3),
        ratio(n.mmio_median_ns, d.mmio_median_ns, false),
        &format!("{incumbent_mmio} (0.065)"),
    );
    row(
        "4 KiB random read QD1 O_DIRECT, IOPS",
        fmt(n.iops, 1.0, 0),
        fmt(d.iops, 1.0, 0),
        ratio(n.iops, d.iops, true),
        "318 (5429)",
    );
    let seq = |x: &Numbers, op: &str, mode: &str| x.seq.get(&(op.into(), mode.into())).copied();
    for (op, mode, inc) in [
        ("read", "direct", "12-13"),
        ("read", "buffered", "35 (293)"),
        ("write", "direct", "12-13"),
        ("write", "buffered", "65 (166)"),
    ] {
        let label = format!(
            "seq 64 KiB {op} {mode}{}, MB/s",
            if op == "write" && mode == "buffered" {
                " +fsync"
            } else {
                ""
            }
        );
        row(
            &label,
            fmt(seq(n, op, mode), 1.0, 1),
            fmt(seq(d, op, mode), 1.0, 1),
            ratio(seq(n, op, mode), seq(d, op, mode), true),
            inc,
        );
    }
    row(
        "QEMU start -> backplane: ready as dom0, s",
        fmt(n.ready_s, 1.0, 2),
        "n/a".into(),
        String::new(),
        "",
    );
    row(
        "QEMU start -> domU /dev/vda ready, s",
        fmt(n.vda_s, 1.0, 2),
        fmt(d.vda_s, 1.0, 2),
        ratio(n.vda_s, d.vda_s, false),
        "",
    );
    for (who, x) in [("Backplane", n), ("direct", d)] {
        if let Some(m) = &x.mmio_dev {
            println!("  {who} MMIO window: {m}");
        }
        if !x.note.is_empty() {
            println!("  {who}: {}", x.note);
        }
    }
    println!(
        "  incumbent: Linux-dom0 userspace IOREQ server / EPAM virtio-disk; (x) = its direct QEMU figure"
    );
}
