//! Standalone mode from the host: the image on QEMU `virt` owning QEMU's
//! virtio-blk, -net, -console and -rng devices and serving them to its
//! in-image frontend, with host peers on the other side of net and console.
//! `cargo xtask run` and the `standalone` test group.
use crate::harness::{Harness, Outcome, ensure};
use crate::image::Image;
use crate::peers::{ConsoleClient, ConsoleTalk, UdpEcho};
use crate::qemu::{self, RunOutput};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the in-image frontend reads and checksums, and where it writes.
pub const READ_BYTES: usize = 1 << 20;
pub const WRITE_START: usize = 2 << 20;
pub const WRITE_BYTES: usize = 4 << 20;
/// The size of the disk `cargo xtask run` and the tests create.
pub const DISK_BYTES: usize = 16 << 20;
const SECTOR: u64 = 512;
const TIMEOUT: Duration = Duration::from_secs(40);
/// The line the host console client sends.
pub const CONSOLE_LINE: &str = "hello from the xtask console peer";
const KINDS: [&str; 4] = ["blk", "net", "console", "rng"];

/// FNV-1a 64, as the frontend computes it.
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Byte `i` (from the start of the write region) the frontend writes.
pub fn frontend_pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 12)) as u8
}

/// A recognisable disk: each 512-byte sector starts with
/// `BACKPLANE disk <seed> sector <n>` and continues with bytes that depend
/// on the sector, the offset and `seed`.
pub fn disk_pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut d = vec![0u8; len];
    for (s, sector) in d.chunks_mut(SECTOR as usize).enumerate() {
        for (k, b) in sector.iter_mut().enumerate() {
            *b = ((s as u32).wrapping_mul(13) as u8) ^ (k as u8).wrapping_mul(7) ^ seed;
        }
        let tag = format!("BACKPLANE disk {seed} sector {s:08}\n");
        let n = tag.len().min(sector.len());
        sector[..n].copy_from_slice(&tag.as_bytes()[..n]);
    }
    d
}

/// Checks a user's disk image before QEMU sees it; its size in bytes.
pub fn check_disk(path: &Path, read_only: bool) -> Result<u64> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("disk image {} does not exist", path.display())
        }
        Err(e) => bail!("cannot read disk image {}: {e}", path.display()),
    };
    if !meta.is_file() {
        bail!("disk image {} is not a regular file", path.display());
    }
    let len = meta.len();
    if len == 0 || len % SECTOR != 0 {
        bail!(
            "disk image {} is {len} bytes: a disk must be a non-empty multiple of {SECTOR} bytes (whole sectors)",
            path.display()
        );
    }
    if !read_only && host_read_only(path, &meta) {
        bail!(
            "disk image {} is read-only on the host; pass --read-only to serve it read-only",
            path.display()
        );
    }
    Ok(len)
}

/// `check_disk`, and a writable disk must hold the self-test's write
/// region: today's image writes sector 0 of a writable disk under 6 MiB to
/// "test a refusal" (and reports a failure).
pub fn check_run_disk(path: &Path, read_only: bool) -> Result<u64> {
    let len = check_disk(path, read_only)?;
    if !read_only && len < (WRITE_START + WRITE_BYTES) as u64 {
        bail!(
            "disk image {} is smaller than 6 MiB: the self-test would write its first sector; \
             pass --read-only (or use a disk of at least 6 MiB)",
            path.display()
        );
    }
    Ok(len)
}

fn host_read_only(path: &Path, meta: &fs::Metadata) -> bool {
    // Root may open a mode-0444 file for writing; the mode still says "no".
    meta.permissions().readonly() || fs::OpenOptions::new().write(true).open(path).is_err()
}

/// A QEMU drive option value: commas doubled.
fn drive_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// One `-drive` plus its `virtio-blk-device`.
pub struct Drive {
    pub path: PathBuf,
    pub read_only: bool,
    /// A blkdebug config wrapped around the file (errors injected).
    pub blkdebug: Option<PathBuf>,
    /// More `-drive` options, e.g. `cache=unsafe`.
    pub extra: &'static str,
}

impl Drive {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            read_only: false,
            blkdebug: None,
            extra: "",
        }
    }

    fn arg(&self, id: usize) -> Result<String> {
        let file = match &self.blkdebug {
            None => drive_path(&self.path),
            Some(conf) => {
                for p in [conf.as_path(), self.path.as_path()] {
                    if p.display().to_string().contains(':') {
                        bail!("blkdebug paths may not contain ':': {}", p.display());
                    }
                }
                format!("blkdebug:{}:{}", drive_path(conf), drive_path(&self.path))
            }
        };
        let mut a = format!("if=none,id=d{id},file={file},format=raw");
        if self.read_only {
            a.push_str(",readonly=on");
        }
        // Report errors to the guest instead of pausing the VM.
        a.push_str(",werror=report,rerror=report");
        if !self.extra.is_empty() {
            a.push(',');
            a.push_str(self.extra);
        }
        Ok(a)
    }
}

/// The machine of one standalone run.
pub struct Machine {
    /// virtio-blk devices, in command-line order (`virtio-blk0` first).
    pub drives: Vec<Drive>,
    pub net: bool,
    pub console: bool,
    pub rng: bool,
    /// Kernel command line (`backplane.plan=...`, ...).
    pub append: Option<String>,
}

impl Machine {
    /// All four kinds, one disk.
    pub fn full(disk: Drive) -> Self {
        Self {
            drives: vec![disk],
            net: true,
            console: true,
            rng: true,
            append: None,
        }
    }
}

/// What one run printed and what the host peers saw.
pub struct Session {
    pub out: RunOutput,
    /// Datagrams the UDP echo peer returned.
    pub udp_echoed: u64,
    pub console: ConsoleTalk,
}

impl Session {
    /// The status line of device `kind` (`blk`, `net`, ...).
    pub fn device(&self, kind: &str) -> Option<&str> {
        self.out.line(&format!("backplane: device {kind} "))
    }

    /// Ok when the device's line says `result=ok`.
    pub fn device_ok(&self, kind: &str) -> Result<&str> {
        let line = self.device(kind).ok_or_else(|| {
            anyhow::anyhow!(
                "no status line for {kind}; last lines:\n{}",
                self.out.tail(15)
            )
        })?;
        ensure(field(line, "result") == Some("ok"), || {
            format!("{kind} did not pass: {line}")
        })?;
        Ok(line)
    }

    /// The run ended by itself and reported nothing fatal.
    pub fn ended(&self) -> Result<()> {
        ensure(!self.out.timed_out, || {
            format!("hung (killed after the timeout):\n{}", self.out.tail(15))
        })?;
        if let Some(l) = self.out.line("backplane: fatal") {
            bail!("fatal report: {l}\n{}", self.out.tail(15));
        }
        Ok(())
    }
}

/// The value of `key=value` in a status line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// The QEMU command of a machine; the peers' ports are given.
fn command(
    img: &Image,
    m: &Machine,
    net_ports: (u16, u16),
    con_port: u16,
) -> Result<std::process::Command> {
    let mut cmd = qemu::virt(3, true, "256");
    cmd.arg("-kernel").arg(&img.raw);
    // Modern (version 2) virtio-mmio: the image's drivers need it.
    cmd.args(["-global", "virtio-mmio.force-legacy=false"]);
    for (i, d) in m.drives.iter().enumerate() {
        cmd.args(["-drive", &d.arg(i)?]);
        cmd.args(["-device", &format!("virtio-blk-device,drive=d{i}")]);
    }
    if m.net {
        let (peer, local) = net_ports;
        cmd.args([
            "-netdev",
            &format!("socket,id=n0,udp=127.0.0.1:{peer},localaddr=127.0.0.1:{local}"),
        ]);
        cmd.args(["-device", "virtio-net-device,netdev=n0"]);
    }
    if m.console {
        cmd.args([
            "-chardev",
            &format!("socket,id=c0,host=127.0.0.1,port={con_port},server=on,wait=off"),
        ]);
        cmd.args([
            "-device",
            "virtio-serial-device",
            "-device",
            "virtconsole,chardev=c0",
        ]);
    }
    if m.rng {
        cmd.args(["-device", "virtio-rng-device"]);
    }
    if let Some(a) = &m.append {
        cmd.args(["-append", a]);
    }
    Ok(cmd)
}

/// Boots `m` with its peers, waits for QEMU to end, stops the peers.
pub fn boot(img: &Image, m: &Machine, timeout: Duration, echo: bool) -> Result<Session> {
    let life = timeout + Duration::from_secs(2);
    let udp = if m.net {
        Some(UdpEcho::start(life)?)
    } else {
        None
    };
    let local = crate::peers::free_udp_port()?;
    let con_port = crate::peers::free_tcp_port()?;
    let cmd = command(
        img,
        m,
        (udp.as_ref().map_or(0, UdpEcho::port), local),
        con_port,
    )?;
    let client = m
        .console
        .then(|| ConsoleClient::start(con_port, CONSOLE_LINE, life));
    let out = qemu::run(cmd, timeout, echo);
    let udp_echoed = udp.map_or(0, UdpEcho::finish);
    let console = client.map(ConsoleClient::finish).unwrap_or_default();
    Ok(Session {
        out: out?,
        udp_echoed,
        console,
    })
}

/// A fresh disk image with `disk_pattern`; its contents.
fn fresh_disk(path: &Path, len: usize, seed: u8) -> Result<Vec<u8>> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    // Replaced, not rewritten: an earlier run may have left it read-only.
    let _ = fs::remove_file(path);
    let data = disk_pattern(len, seed);
    fs::write(path, &data).with_context(|| format!("writing {}", path.display()))?;
    Ok(data)
}

fn work_dir() -> PathBuf {
    crate::project_root().join("target/standalone")
}

/// `cargo xtask run`: boots the image with the four devices and host peers.
pub fn run(release: bool, disk: Option<PathBuf>, read_only: bool) -> Result<()> {
    let drive = match disk {
        Some(p) => {
            check_run_disk(&p, read_only)?;
            if !read_only {
                eprintln!(
                    "xtask: note: the self-test overwrites bytes {WRITE_START}..{} of {} (pass --read-only to keep it unchanged)",
                    WRITE_START + WRITE_BYTES,
                    p.display()
                );
            }
            let mut d = Drive::new(p);
            d.read_only = read_only;
            d
        }
        None => {
            let p = work_dir().join("disk.img");
            if !p.exists() {
                fresh_disk(&p, DISK_BYTES, 0)?;
                eprintln!("xtask: created {} ({} MiB)", p.display(), DISK_BYTES >> 20);
            }
            let mut d = Drive::new(p);
            d.read_only = read_only;
            d
        }
    };
    crate::deps::ensure_commands(crate::deps::QEMU_PACKAGES)?;
    let img = crate::image::build(release)?;
    let disk_path = drive.path.clone();
    let s = boot(&img, &Machine::full(drive), Duration::from_secs(120), true)?;
    println!(
        "\nxtask: standalone run with disk {} ({:.1} s)",
        disk_path.display(),
        s.out.elapsed.as_secs_f64()
    );
    let mut all = true;
    for kind in KINDS {
        let (verdict, line) = match s.device(kind) {
            Some(l) if field(l, "result") == Some("ok") => ("ok", l),
            Some(l) => ("FAILED", l),
            None => ("missing", ""),
        };
        all &= verdict == "ok";
        let detail = line
            .split(" result=")
            .nth(1)
            .and_then(|r| r.split_once(' '))
            .map_or("", |(_, d)| d);
        let host = match kind {
            "net" => format!(" (host echo peer returned {} datagrams)", s.udp_echoed),
            "console" if s.console.echoed(CONSOLE_LINE) => {
                format!(" (host sent {CONSOLE_LINE:?}, the echo came back)")
            }
            "console" => " (the echo did not reach the host)".to_string(),
            _ => String::new(),
        };
        println!("  {kind:8} {verdict:8} {detail}{host}");
    }
    for l in s.out.lines.iter().filter(|l| l.contains("not served:")) {
        println!("  {l}");
    }
    s.ended()?;
    if !all || !s.out.has("standalone: self-test passed") {
        bail!("the standalone self-test failed");
    }
    println!("xtask: every device passed");
    Ok(())
}

/// The `standalone` system tests.
pub fn tests(h: &mut Harness, img: &Image) {
    let dir = work_dir();
    h.check("standalone::all_devices_end_to_end", || {
        all_devices(img, &dir)
    });
    h.check("standalone::blk_index_is_command_line_order", || {
        blk_order(img, &dir)
    });
    h.check("standalone::read_only_drive_refuses_writes", || {
        read_only(img, &dir)
    });
    h.check("standalone::real_device_error_reported", || {
        device_error(img, &dir)
    });
    h.check("standalone::missing_device_node_reported", || {
        missing_node(img)
    });
    h.check("standalone::ram_disk_plan_and_oversized_ram_disk", || {
        ram_disks(img)
    });
    h.check("standalone::xtask_refuses_bad_disk_images", || {
        refusals(&dir.join("refusals"))
    });
}

fn others_ok(s: &Session) -> Result<()> {
    for kind in ["net", "console", "rng"] {
        s.device_ok(kind)?;
    }
    ensure(s.udp_echoed >= 16, || {
        format!(
            "the host echo peer returned only {} datagrams",
            s.udp_echoed
        )
    })?;
    ensure(s.console.echoed(CONSOLE_LINE), || {
        format!(
            "the console echo never reached the host client (connected={}, sent={}, got {:?})",
            s.console.connected, s.console.sent, s.console.received
        )
    })
}

fn all_devices(img: &Image, dir: &Path) -> Result<Outcome> {
    let path = dir.join("test-all.img");
    let before = fresh_disk(&path, DISK_BYTES, 1)?;
    let s = boot(img, &Machine::full(Drive::new(&path)), TIMEOUT, false)?;
    s.ended()?;
    let blk = s.device_ok("blk")?;
    others_ok(&s)?;
    ensure(s.out.has("standalone: self-test passed"), || s.out.tail(10))?;
    let want = format!("{:#018x}", fnv1a(&before[..READ_BYTES]));
    ensure(field(blk, "checksum") == Some(want.as_str()), || {
        format!("checksum mismatch: host computed {want}; image said: {blk}")
    })?;
    ensure(
        field(blk, "capacity") == Some(&DISK_BYTES.to_string())
            && field(blk, "written") == Some(&WRITE_BYTES.to_string())
            && field(blk, "at") == Some(&WRITE_START.to_string())
            && field(blk, "verified") == Some("yes"),
        || format!("unexpected blk report: {blk}"),
    )?;
    let after = fs::read(&path)?;
    ensure(after.len() == before.len(), || {
        "the disk changed size".into()
    })?;
    ensure(after[..WRITE_START] == before[..WRITE_START], || {
        "the first 2 MiB changed".into()
    })?;
    let end = WRITE_START + WRITE_BYTES;
    if let Some(i) =
        (0..WRITE_BYTES).find(|&i| after[WRITE_START + i] != frontend_pattern(i as u64))
    {
        bail!(
            "written region differs from the pattern at byte {:#x}: {:#04x} != {:#04x}",
            WRITE_START + i,
            after[WRITE_START + i],
            frontend_pattern(i as u64)
        );
    }
    ensure(after[end..] == before[end..], || {
        "bytes past the written region changed".into()
    })?;
    Ok(Outcome::Pass)
}

/// Two disks of different sizes: `virtio-blk1` is the second on QEMU's
/// command line (so `virtio-blk0`, the default plan's, is the first).
fn blk_order(img: &Image, dir: &Path) -> Result<Outcome> {
    let (a, b) = (dir.join("order-0.img"), dir.join("order-1.img"));
    fresh_disk(&a, DISK_BYTES, 2)?;
    let db = fresh_disk(&b, 8 << 20, 3)?;
    let m = Machine {
        drives: vec![Drive::new(&a), Drive::new(&b)],
        net: false,
        console: false,
        rng: false,
        append: Some("backplane.plan=0:blk@0x10000000=virtio-blk1".into()),
    };
    let s = boot(img, &m, TIMEOUT, false)?;
    s.ended()?;
    let line = s.device_ok("blk")?;
    let want_sum = format!("{:#018x}", fnv1a(&db[..READ_BYTES]));
    let want_cap = db.len().to_string();
    ensure(
        field(line, "checksum") == Some(want_sum.as_str())
            && field(line, "capacity") == Some(want_cap.as_str()),
        || {
            format!(
                "virtio-blk1 is not the second -device (want capacity {want_cap}, checksum {want_sum}): {line}"
            )
        },
    )?;
    Ok(Outcome::Pass)
}

fn read_only(img: &Image, dir: &Path) -> Result<Outcome> {
    let path = dir.join("test-ro.img");
    let before = fnv1a(&fresh_disk(&path, DISK_BYTES, 4)?);
    let mut d = Drive::new(&path);
    d.read_only = true;
    let s = boot(img, &Machine::full(d), TIMEOUT, false)?;
    s.ended()?;
    let blk = s.device_ok("blk")?;
    ensure(blk.contains("write=refused"), || {
        format!("no write=refused: {blk}")
    })?;
    others_ok(&s)?;
    let after = fnv1a(&fs::read(&path)?);
    ensure(before == after, || {
        format!("the read-only disk changed: {before:#x} -> {after:#x}")
    })?;
    Ok(Outcome::Pass)
}

/// blkdebug config for QEMU 7.2: every write fails with EIO.
const BLKDEBUG_EIO_ON_WRITE: &str = "[inject-error]\nevent = \"write_aio\"\nerrno = \"5\"\n";

fn device_error(img: &Image, dir: &Path) -> Result<Outcome> {
    let path = dir.join("test-eio.img");
    let before = fresh_disk(&path, DISK_BYTES, 5)?;
    let conf = dir.join("eio-on-write.conf");
    fs::write(&conf, BLKDEBUG_EIO_ON_WRITE)?;
    let mut d = Drive::new(&path);
    d.blkdebug = Some(conf);
    let s = boot(img, &Machine::full(d), TIMEOUT, false)?;
    s.ended()?;
    let blk = s
        .device("blk")
        .ok_or_else(|| anyhow::anyhow!("no blk status line:\n{}", s.out.tail(15)))?;
    ensure(field(blk, "result") == Some("FAILED"), || {
        format!("a failing real device was reported as passing: {blk}")
    })?;
    ensure(blk.contains("IoError") && blk.contains("write at"), || {
        format!("no write I/O error in the report: {blk}")
    })?;
    // The reads before the first write still work and checksum right.
    let want = format!("{:#018x}", fnv1a(&before[..READ_BYTES]));
    ensure(
        field(blk, "checksum").is_none() || field(blk, "checksum") == Some(&want),
        || format!("bad checksum: {blk}"),
    )?;
    others_ok(&s)?;
    ensure(s.out.has("standalone: self-test FAILED"), || {
        format!("the self-test did not fail overall:\n{}", s.out.tail(8))
    })?;
    ensure(fs::read(&path)? == before, || {
        "the disk changed although every write failed".into()
    })?;
    Ok(Outcome::Pass)
}

fn missing_node(img: &Image) -> Result<Outcome> {
    let m = Machine {
        drives: vec![],
        ..Machine::full(Drive::new(""))
    };
    let s = boot(img, &m, TIMEOUT, false)?;
    s.ended()?;
    let want = "plan: guest 0 blk at 0x10000000 not served: no virtio,mmio node provides real blk device #0";
    let line = s
        .out
        .line(want)
        .ok_or_else(|| anyhow::anyhow!("no '{want}' line:\n{}", s.out.tail(15)))?;
    ensure(line.starts_with("error: "), || {
        format!("not reported as an error: {line}")
    })?;
    ensure(s.device("blk").is_none(), || {
        "a blk status line without a blk device".into()
    })?;
    others_ok(&s)?;
    Ok(Outcome::Pass)
}

/// A plan from the command line with RAM disks: one that cannot fit the heap
/// is refused with a clear line (never an allocation failure that stops the
/// image); one that fits is served and passes the full block exercise.
fn ram_disks(img: &Image) -> Result<Outcome> {
    let m = Machine {
        drives: vec![],
        net: false,
        console: false,
        rng: true,
        append: Some(
            "backplane.plan=0:blk@0x10000000=ram:512;0:blk@0x10000200=ram:8;0:rng@0x10000600=virtio-rng0".into(),
        ),
    };
    let s = boot(img, &m, TIMEOUT, false)?;
    s.ended()?;
    ensure(!s.out.has("backplane: fatal"), || {
        format!("fatal report:\n{}", s.out.tail(15))
    })?;
    let refused =
        "plan: guest 0 blk at 0x10000000 not served: a RAM disk of 512 MiB does not fit the heap";
    ensure(s.out.has(refused), || {
        format!("no '{refused}' line:\n{}", s.out.tail(15))
    })?;
    let blk = s.device_ok("blk")?;
    for want in ["backing=ram 8 MiB", "capacity=8388608", "verified=yes"] {
        ensure(blk.contains(want), || {
            format!("blk line lacks '{want}': {blk}")
        })?;
    }
    s.device_ok("rng")?;
    Ok(Outcome::Pass)
}

/// The same refusals the unit tests cover, run where the system tests run.
fn refusals(dir: &Path) -> Result<Outcome> {
    let c = refusal_cases(dir)?;
    for (name, path, ro, want) in &c.cases {
        match check_disk(path, *ro) {
            Ok(_) => bail!("{name}: accepted {}", path.display()),
            Err(e) => ensure(e.to_string().contains(want), || {
                format!("{name}: unclear message: {e}")
            })?,
        }
    }
    check_disk(&c.read_only, true).context("a read-only disk with --read-only")?;
    check_disk(&c.good, false).context("a good disk")?;
    ensure(check_run_disk(&c.good, false).is_err(), || {
        "`run` accepted a writable disk under 6 MiB".into()
    })?;
    Ok(Outcome::Pass)
}

type Case = (&'static str, PathBuf, bool, &'static str);

struct RefusalCases {
    cases: Vec<Case>,
    read_only: PathBuf,
    good: PathBuf,
}

fn refusal_cases(dir: &Path) -> Result<RefusalCases> {
    fs::create_dir_all(dir)?;
    let missing = dir.join("missing.img");
    let _ = fs::remove_file(&missing);
    let odd = dir.join("odd.img");
    fs::write(&odd, vec![0u8; 1000])?;
    let empty = dir.join("empty.img");
    fs::write(&empty, [])?;
    let ro = dir.join("ro.img");
    let _ = fs::remove_file(&ro);
    fs::write(&ro, vec![0u8; 4096])?;
    let mut p = fs::metadata(&ro)?.permissions();
    p.set_readonly(true);
    fs::set_permissions(&ro, p)?;
    let good = dir.join("good.img");
    fs::write(&good, vec![0u8; 4096])?;
    Ok(RefusalCases {
        cases: vec![
            ("missing", missing, false, "does not exist"),
            ("odd size", odd, false, "multiple of 512"),
            ("empty", empty, false, "multiple of 512"),
            ("read-only", ro.clone(), false, "--read-only"),
            ("directory", dir.to_path_buf(), false, "not a regular file"),
        ],
        read_only: ro,
        good,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("xtask-standalone-{}-{name}", std::process::id()))
    }

    #[test]
    fn refuses_missing_disk() {
        let e = check_disk(&tmp("nope.img"), false).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn refuses_size_not_multiple_of_512() {
        let p = tmp("odd.img");
        fs::write(&p, vec![0u8; 513]).unwrap();
        let e = check_disk(&p, false).unwrap_err().to_string();
        assert!(
            e.contains("513 bytes") && e.contains("multiple of 512"),
            "{e}"
        );
        let e = check_disk(&p, true).unwrap_err().to_string();
        assert!(e.contains("multiple of 512"), "{e}");
        fs::remove_file(p).unwrap();
    }

    #[test]
    fn refuses_read_only_file_without_flag() {
        let dir = tmp("refusals");
        let c = refusal_cases(&dir).unwrap();
        let e = check_disk(&c.read_only, false).unwrap_err().to_string();
        assert!(
            e.contains("read-only on the host") && e.contains("--read-only"),
            "{e}"
        );
        assert_eq!(check_disk(&c.read_only, true).unwrap(), 4096);
        assert_eq!(check_disk(&c.good, false).unwrap(), 4096);
        for (name, path, ro, want) in &c.cases {
            let e = check_disk(path, *ro).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn run_refuses_small_writable_disk() {
        let p = tmp("small.img");
        fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        let e = check_run_disk(&p, false).unwrap_err().to_string();
        assert!(
            e.contains("smaller than 6 MiB") && e.contains("--read-only"),
            "{e}"
        );
        assert_eq!(check_run_disk(&p, true).unwrap(), 1 << 20);
        fs::remove_file(p).unwrap();
    }

    #[test]
    fn fnv_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn patterns() {
        assert_eq!(frontend_pattern(0), 0);
        assert_eq!(frontend_pattern(1), 31);
        assert_eq!(frontend_pattern(4096), 1);
        let d = disk_pattern(1024, 0);
        assert!(d.starts_with(b"BACKPLANE disk 0 sector 00000000\n"));
        assert!(d[512..].starts_with(b"BACKPLANE disk 0 sector 00000001\n"));
        assert_ne!(disk_pattern(1024, 1), d);
    }

    #[test]
    fn fields_and_drive_args() {
        let l = "backplane: device blk backing=virtio-blk 32768 sectors@0xa003e00 result=ok capacity=16777216 checksum=0x2cdf991db9b7fe2d";
        assert_eq!(field(l, "checksum"), Some("0x2cdf991db9b7fe2d"));
        assert_eq!(field(l, "result"), Some("ok"));
        assert_eq!(field(l, "cap"), None);
        let mut d = Drive::new("/x/a,b.img");
        d.read_only = true;
        assert_eq!(
            d.arg(1).unwrap(),
            "if=none,id=d1,file=/x/a,,b.img,format=raw,readonly=on,werror=report,rerror=report"
        );
        d.blkdebug = Some("/x/c.conf".into());
        assert!(
            d.arg(0)
                .unwrap()
                .contains("file=blkdebug:/x/c.conf:/x/a,,b.img,")
        );
    }
}
