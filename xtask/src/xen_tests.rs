//! The Xen path, end to end: QEMU `virt` -> IOREQ-capable Xen -> Backplane as
//! dom0 -> dom0less Linux domUs using Backplane's virtio devices.
use crate::harness::{Harness, Outcome, ensure};
use crate::image::Image;
use crate::xen::{self, Boot, DomU, QemuRun, VirtioMmio, XenArtifacts};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod hostile;
mod net_peer;

/// The real devices Xen gives to dom0 (QEMU's virtio-mmio devices).
pub struct Dom0Devices {
    pub extra: Vec<String>,
}

impl Dom0Devices {
    /// Disks (in order: virtio-blk0, 1, ...) and an entropy source for dom0 to own.
    pub fn disks_and_rng(disks: &[&Path]) -> Self {
        let mut extra = Vec::new();
        for (i, d) in disks.iter().enumerate() {
            extra.push("-drive".to_string());
            extra.push(format!("if=none,id=d{i},file={},format=raw", d.display()));
            extra.push("-device".to_string());
            extra.push(format!("virtio-blk-device,drive=d{i}"));
        }
        extra.push("-device".into());
        extra.push("virtio-rng-device".into());
        Self { extra }
    }

    /// Adds a virtconsole on a TCP chardev that QEMU serves on 127.0.0.1:`port`.
    pub fn with_console(mut self, port: u16) -> Self {
        self.extra.extend(
            [
                "-chardev",
                &format!("socket,id=c0,host=127.0.0.1,port={port},server=on,wait=off"),
                "-device",
                "virtio-serial-device",
                "-device",
                "virtconsole,chardev=c0",
            ]
            .map(String::from),
        );
        self
    }

    /// Adds a NIC whose frames go as UDP datagrams to 127.0.0.1:`peer`, from
    /// 127.0.0.1:`local`.
    pub fn with_net(mut self, peer: u16, local: u16) -> Self {
        self.extra.extend(
            [
                "-netdev",
                &format!("socket,id=n0,udp=127.0.0.1:{peer},localaddr=127.0.0.1:{local}"),
                "-device",
                "virtio-net-device,netdev=n0",
            ]
            .map(String::from),
        );
        self
    }
}

/// A Linux domU with `n` served devices at libxl's slots, running `test`.
pub fn linux_domu(a: &XenArtifacts, test: &str, devices: u32, vcpus: u32) -> DomU {
    DomU {
        kernel: a.linux_image.clone(),
        ramdisk: Some(a.initramfs.clone()),
        memory_mib: 256,
        vcpus,
        bootargs: format!("console=ttyAMA0 rdinit=/init bp.test={test} quiet"),
        virtio: (0..devices).map(VirtioMmio::libxl_slot).collect(),
        vpl011: true,
        grant_virtio: false,
    }
}

/// Boots Xen with Backplane as dom0.
pub fn boot(
    xen_bin: &Path,
    img: &Image,
    dom0_args: &str,
    domus: Vec<DomU>,
    dev: &Dom0Devices,
    name: &str,
    success: &[&str],
) -> Result<xen::RunOutcome> {
    boot_watching(
        xen_bin, img, dom0_args, domus, dev, name, success, &FAILURES,
    )
}

/// [`boot`] with its own failure markers (a run where a guest crashes on purpose).
#[allow(clippy::too_many_arguments)]
pub fn boot_watching(
    xen_bin: &Path,
    img: &Image,
    dom0_args: &str,
    domus: Vec<DomU>,
    dev: &Dom0Devices,
    name: &str,
    success: &[&str],
    failures: &[&str],
) -> Result<xen::RunOutcome> {
    let runs = Runs {
        xen_bin,
        img,
        dom0_args,
        dev,
        name,
    };
    runs.boot(domus, success, failures, None)
}

/// What every Backplane-as-dom0 boot shares.
struct Runs<'a> {
    xen_bin: &'a Path,
    img: &'a Image,
    dom0_args: &'a str,
    dev: &'a Dom0Devices,
    name: &'a str,
}

impl Runs<'_> {
    /// Boots; with `input`, types `input.1` on the console once `input.0` shows.
    fn boot(
        &self,
        domus: Vec<DomU>,
        success: &[&str],
        failures: &[&str],
        input: Option<(&str, &str)>,
    ) -> Result<xen::RunOutcome> {
        let Runs {
            xen_bin,
            img,
            dom0_args,
            dev,
            name,
        } = *self;
        let work = crate::project_root().join("target/xen/runs").join(name);
        std::fs::create_dir_all(&work)?;
        let boot = Boot {
            xen: xen_bin.to_path_buf(),
            xen_bootargs: format!(
                "{} dom0_mem=128M",
                Boot::DEFAULT_XEN_BOOTARGS.replace("dom0_mem=512M ", "")
            ),
            dom0_kernel: img.raw.clone(),
            dom0_ramdisk: None,
            dom0_bootargs: dom0_args.to_string(),
            domus,
        };
        let mut run = QemuRun::new(boot, &work);
        run.extra_args = dev.extra.clone();
        let cmd = xen::boot_command(&run)?;
        xen::run_until_with_input(
            cmd,
            &work.join("console.log"),
            success,
            failures,
            TIMEOUT,
            input,
        )
    }
}

/// Every Xen test. `BACKPLANE_XEN_TESTS=a,b` (substrings of test names) runs
/// only some of them; the others are reported as skipped.
pub fn run(h: &mut Harness, img: &Image) {
    let a = match xen::prepare(&crate::project_root()) {
        Ok(a) => a,
        Err(e) => {
            h.check("xen::prepare", || Ok(Outcome::Fail(format!("{e:#}"))));
            return;
        }
    };
    // Runs share target/xen/{runs,disks}: two xtask processes must not boot at once.
    let _lock = match lock_runs() {
        Ok(l) => l,
        Err(e) => {
            h.check("xen::lock", || Ok(Outcome::Fail(format!("{e:#}"))));
            return;
        }
    };
    let dir = crate::project_root().join("target/xen/disks");
    let _ = std::fs::create_dir_all(&dir);
    let dir = dir.as_path();
    let filter = std::env::var("BACKPLANE_XEN_TESTS").unwrap_or_default();
    let wanted = |name: &str| {
        filter.is_empty() || filter.split(',').any(|f| !f.is_empty() && name.contains(f))
    };
    let mut check = |name: &str, f: &mut dyn FnMut() -> Result<Outcome>| {
        if wanted(name) {
            h.check(name, f);
        } else {
            h.check(name, || {
                Ok(Outcome::Skip("not in BACKPLANE_XEN_TESTS".into()))
            });
        }
    };
    check("xen::linux_domu_smoke", &mut || {
        let disk = fresh_disk(dir, "smoke")?;
        let dev = Dom0Devices::disks_and_rng(&[&disk]);
        let out = boot(
            &a.xen_ioreq,
            img,
            "",
            vec![linux_domu(&a, "smoke", 2, 1)],
            &dev,
            "smoke",
            &["GUEST: test smoke PASS"],
        )?;
        check_passed(&out)
    });
    check("xen::dom0_console_input", &mut || {
        // Xen hands serial input to dom0: `status` lists every served device.
        let disk = fresh_disk(dir, "console-input")?;
        let dev = Dom0Devices::disks_and_rng(&[&disk]);
        let runs = Runs {
            xen_bin: &a.xen_ioreq,
            img,
            dom0_args: "",
            dev: &dev,
            name: "console-input",
        };
        let out = runs.boot(
            vec![linux_domu(&a, "smoke", 2, 1)],
            &[
                "GUEST: test smoke PASS",
                "backplane: status end (2 device(s))",
            ],
            &FAILURES,
            Some(("backplane: ready as Xen dom0", "status\n")),
        )?;
        check_passed(&out)?;
        let log = std::fs::read_to_string(&out.log)?;
        for want in [
            "backplane: status dom1 device 2 at 0x2000000",
            "backplane: status dom1 device 4 at 0x2000200",
        ] {
            ensure(log.contains(want), || {
                format!("no '{want}' line in {}", out.log.display())
            })?;
        }
        Ok(Outcome::Pass)
    });
    // One boot with all four served devices; three checks read its results.
    let mut all: Option<Result<AllDevices, String>> = None;
    check("xen::linux_domu_disk_rng_1vcpu", &mut || {
        let run = all_devices(&a, img, dir);
        let r = run.as_ref().map_err(|e| format!("{e:#}")).and_then(|r| {
            r.disk_rng().map_err(|e| format!("{e:#}"))?;
            Ok(())
        });
        all = Some(run.map_err(|e| format!("{e:#}")));
        Ok(match r {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e),
        })
    });
    check("xen::console_round_trip", &mut || {
        let r = all
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the all-devices run was not made"))?;
        let r = r
            .as_ref()
            .map_err(|e| anyhow::anyhow!("the all-devices run failed: {e}"))?;
        r.console()?;
        Ok(Outcome::Pass)
    });
    check("xen::net_ping", &mut || {
        let r = all
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the all-devices run was not made"))?;
        let r = r
            .as_ref()
            .map_err(|e| anyhow::anyhow!("the all-devices run failed: {e}"))?;
        r.net()?;
        Ok(Outcome::Pass)
    });
    check("xen::linux_domu_disk_rng_2vcpu", &mut || {
        let disk = fresh_disk(dir, "full2")?;
        let dev = Dom0Devices::disks_and_rng(&[&disk]);
        let out = boot(
            &a.xen_ioreq,
            img,
            "",
            vec![linux_domu(&a, "full", 2, 2)],
            &dev,
            "full2",
            &["GUEST: test full PASS"],
        )?;
        check_passed(&out)?;
        let log = std::fs::read_to_string(&out.log)?;
        check_disk_line(&log, "GUEST", &disk)?;
        ensure(log.contains("GUEST: rng bytes=64"), || {
            "no entropy line".into()
        })?;
        ensure(log.contains("vda size=33554432"), || {
            "the domU saw the wrong disk size".into()
        })?;
        Ok(Outcome::Pass)
    });
    check("xen::two_domus_each_own_disk", &mut || {
        let d1 = fresh_disk(dir, "two-a")?;
        let d2 = fresh_disk(dir, "two-b")?;
        let dev = Dom0Devices::disks_and_rng(&[&d1, &d2]);
        let mut g1 = linux_domu(&a, "disk", 1, 1);
        g1.bootargs.push_str(" bp.tag=GUESTA");
        let mut g2 = linux_domu(&a, "disk", 1, 1);
        g2.bootargs.push_str(" bp.tag=GUESTB");
        let out = boot(
            &a.xen_ioreq,
            img,
            TWO_DISKS_PLAN,
            vec![g1, g2],
            &dev,
            "two",
            &["GUESTA: test disk PASS", "GUESTB: test disk PASS"],
        )?;
        check_passed(&out)?;
        let log = std::fs::read_to_string(&out.log)?;
        check_disk_line(&log, "GUESTA", &d1)?;
        check_disk_line(&log, "GUESTB", &d2)?;
        Ok(Outcome::Pass)
    });
    check("xen::hostile_driver_next_to_good_domu", &mut || {
        hostile::hostile_driver(&a, img, dir)
    });
    check("xen::domu_crash_with_io_in_flight", &mut || {
        hostile::crash_with_io(&a, img, dir)
    });
    check("xen::debian_xen_without_ioreq_is_reported", &mut || {
        let disk = fresh_disk(dir, "negative")?;
        let dev = Dom0Devices::disks_and_rng(&[&disk]);
        let msg = "this Xen has no IOREQ server support (CONFIG_IOREQ_SERVER); guests' virtio devices are not served";
        // No virtio nodes in the guest: it must not probe a window nobody serves.
        let out = boot(
            &a.xen_debian,
            img,
            "",
            vec![linux_domu(&a, "smoke", 0, 1)],
            &dev,
            "negative",
            &[
                msg,
                "backplane: ready as Xen dom0",
                "GUEST: test smoke PASS",
            ],
        )?;
        check_passed(&out)?;
        let log = std::fs::read_to_string(&out.log)?;
        let n = log.matches(msg).count();
        ensure(n == 1, || {
            format!("the no-IOREQ line appears {n} times, not once")
        })?;
        ensure(log.contains("xen-check event_channel ok"), || {
            "dom0 plumbing self-checks did not pass on Debian's Xen".into()
        })?;
        Ok(Outcome::Pass)
    });
}

/// Guest 1 and guest 2 each get their own disk (virtio-blk0 and virtio-blk1) at slot 0.
pub const TWO_DISKS_PLAN: &str =
    "backplane.plan=1:blk@0x2000000/33=virtio-blk0;2:blk@0x2000000/33=virtio-blk1";

/// The line the host sends through the served console.
const CONSOLE_LINE: &str = "hello from the host through Backplane";

/// The all-devices run: its log, the disk, and what the host peers saw.
struct AllDevices {
    log: String,
    disk: PathBuf,
    console: crate::peers::ConsoleTalk,
    net: net_peer::NetCounts,
}

/// Boots one domU with blk, rng, console and net served, with the host's
/// console client and network peer attached.
fn all_devices(a: &XenArtifacts, img: &Image, dir: &Path) -> Result<AllDevices> {
    use crate::peers::{ConsoleClient, free_tcp_port, free_udp_port};
    let disk = fresh_disk(dir, "full1")?;
    let life = TIMEOUT + Duration::from_secs(5);
    let peer = net_peer::NetPeer::start(life)?;
    let local = free_udp_port()?;
    let con_port = free_tcp_port()?;
    let dev = Dom0Devices::disks_and_rng(&[&disk])
        .with_console(con_port)
        .with_net(peer.port(), local);
    let client =
        ConsoleClient::start_after(con_port, Some("GUEST-CONSOLE-READY"), CONSOLE_LINE, life);
    let out = boot(
        &a.xen_ioreq,
        img,
        "",
        vec![{
            // The host answers the guest's ready line: 10 s is plenty.
            let mut g = linux_domu(a, "all", 4, 1);
            g.bootargs.push_str(" bp.contimeout=10");
            g
        }],
        &dev,
        "full1",
        &["GUEST: test all PASS"],
    );
    let console = client.finish();
    let net = peer.finish();
    let out = out?;
    let log = std::fs::read_to_string(&out.log)?;
    if !out.passed {
        // Each check says what it misses; keep the run's ending for the first one.
        let why = format!(
            "{}; log {}:\n{}",
            out.reason,
            out.log.display(),
            tail(&log, 30)
        );
        if !log.contains("GUEST: disk wrote=") {
            anyhow::bail!(why);
        }
        eprintln!("xen: all-devices run: {why}");
    }
    Ok(AllDevices {
        log,
        disk,
        console,
        net,
    })
}

impl AllDevices {
    fn disk_rng(&self) -> Result<()> {
        check_disk_line(&self.log, "GUEST", &self.disk)?;
        ensure(self.log.contains("GUEST: rng bytes=64"), || {
            "no entropy line".into()
        })?;
        ensure(self.log.contains("vda size=33554432"), || {
            "the domU saw the wrong disk size".into()
        })
    }

    fn console(&self) -> Result<()> {
        let t = &self.console;
        ensure(t.connected && t.sent, || {
            format!("the host client could not talk to QEMU's chardev: {t:?}")
        })?;
        ensure(
            self.log.lines().any(|l| {
                l.contains("GUEST: console /dev/hvc")
                    && l.ends_with(&format!(" line={CONSOLE_LINE}"))
            }),
            || {
                format!(
                    "the domU did not read the host's line from its hvc: {}; its port: {}; the host client: {t:?}",
                    grep(&self.log, "GUEST: console:"),
                    grep(&self.log, "GUEST: console debug")
                )
            },
        )?;
        ensure(t.echoed(CONSOLE_LINE), || {
            format!(
                "the host did not get the echo back; it got {:?}",
                t.received
            )
        })
    }

    fn net(&self) -> Result<()> {
        let n = self.net;
        let line = grep(&self.log, "GUEST: net:");
        ensure(
            self.log
                .contains("5 packets transmitted, 5 packets received"),
            || format!("the domU did not get 5 replies: {line}; peer saw {n:?}"),
        )?;
        ensure(
            n.arp_requests >= 1 && n.echo_requests >= 5 && n.bad_checksums == 0,
            || {
                format!(
                    "the peer counted {n:?} (want >= 1 ARP, >= 5 echo requests, no bad checksums)"
                )
            },
        )
    }
}

/// Serializes Xen runs across xtask processes (they share run and disk paths).
pub(crate) fn lock_runs() -> Result<std::fs::File> {
    let path = crate::project_root().join("target/xen/xen-tests.lock");
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "xen: another xtask is running Xen tests ({} is locked); waiting",
                path.display()
            );
            f.lock()?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    Ok(f)
}

/// The lines of `log` that contain `pat`, joined.
fn grep(log: &str, pat: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(pat)).collect();
    if lines.is_empty() {
        format!("(no line with {pat:?})")
    } else {
        lines.join(" | ")
    }
}

pub(crate) const TIMEOUT: Duration = Duration::from_secs(120);
const FAILURES: [&str; 4] = ["backplane: fatal", " FAIL", "Oops", "Kernel panic"];

pub(crate) fn fresh_disk(dir: &Path, name: &str) -> Result<PathBuf> {
    let disk = dir.join(format!("{name}.img"));
    let data: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&disk, data)?;
    Ok(disk)
}

pub(crate) fn check_passed(out: &xen::RunOutcome) -> Result<Outcome> {
    let log = std::fs::read_to_string(&out.log).unwrap_or_default();
    ensure(out.passed, || {
        format!(
            "{}; log {}:\n{}",
            out.reason,
            out.log.display(),
            tail(&log, 40)
        )
    })?;
    Ok(Outcome::Pass)
}

/// The guest's `disk wrote=... md5=W readback=R` line must show W == R, and
/// the host file's 16 MiB at 4 MiB must hash to W as well.
pub(crate) fn check_disk_line(log: &str, tag: &str, disk: &Path) -> Result<()> {
    let prefix = format!("{tag}: disk wrote=16MiB at=4MiB md5=");
    let line = log
        .lines()
        .find(|l| l.contains(&prefix))
        .ok_or_else(|| anyhow::anyhow!("no disk line from {tag}"))?;
    let rest = &line[line.find(&prefix).unwrap() + prefix.len()..];
    let (w, r) = rest
        .split_once(" readback=")
        .ok_or_else(|| anyhow::anyhow!("bad disk line: {line}"))?;
    ensure(w.trim() == r.trim(), || {
        format!("{tag} read back other data: {line}")
    })?;
    let bytes = std::fs::read(disk)?;
    let region = &bytes[4 << 20..20 << 20];
    let host = md5_hex(region)?;
    ensure(host == w.trim(), || {
        format!("{tag}: host file has md5 {host}, guest wrote {w}")
    })?;
    Ok(())
}

fn md5_hex(data: &[u8]) -> Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(data)?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}

pub(crate) fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
