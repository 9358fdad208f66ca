//! QEMU command lines for Xen on `virt` (TCG), and a runner that watches the console for markers.
use super::dtb::{self, Boot, Generated};
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the machine's serial console (Xen's console) goes.
#[derive(Debug, Clone)]
pub enum Serial {
    /// `-serial stdio` (interactive, or captured by [`run_until`]).
    Stdio,
    /// `-serial file:PATH`.
    #[allow(dead_code)] // for runs whose console must not go through a pipe
    File(PathBuf),
}

/// One QEMU run of Xen with dom0 + dom0less domUs.
#[derive(Debug, Clone)]
pub struct QemuRun {
    pub boot: Boot,
    pub ram_mib: u64,
    pub smp: u32,
    pub cpu: String,
    pub serial: Serial,
    /// Make QEMU's own virtio-mmio transports modern (virtio 1.x) instead of legacy.
    pub modern_virtio: bool,
    /// Extra QEMU arguments (real devices for dom0: `-drive`/`-device virtio-blk-device,...`).
    pub extra_args: Vec<String>,
    /// Where generated DTBs go.
    pub work_dir: PathBuf,
}

impl QemuRun {
    /// Defaults: 2 GiB, 2 CPUs, cortex-a57, serial on stdio, modern virtio-mmio.
    pub fn new(boot: Boot, work_dir: &Path) -> Self {
        QemuRun {
            boot,
            ram_mib: 2048,
            smp: 2,
            cpu: "cortex-a57".into(),
            serial: Serial::Stdio,
            modern_virtio: true,
            extra_args: Vec::new(),
            work_dir: work_dir.to_path_buf(),
        }
    }

    /// The options that shape the machine (and so its DTB).
    pub fn machine_args(&self) -> Vec<String> {
        [
            "-M",
            "virt,virtualization=on,gic-version=3",
            "-cpu",
            &self.cpu,
            "-m",
            &self.ram_mib.to_string(),
            "-smp",
            &self.smp.to_string(),
            "-nic",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// Generate the DTB and build the QEMU command (not started). Also returns the layout.
pub fn boot_command_with_layout(r: &QemuRun) -> Result<(Command, Generated)> {
    let g = dtb::generate(&r.boot, &r.machine_args(), r.ram_mib, &r.work_dir)?;
    let mut c = Command::new("qemu-system-aarch64");
    c.args(r.machine_args());
    c.args(["-display", "none", "-monitor", "none", "-no-reboot"]);
    match &r.serial {
        Serial::Stdio => c.args(["-serial", "stdio"]),
        Serial::File(p) => c.arg("-serial").arg(format!("file:{}", p.display())),
    };
    if r.modern_virtio {
        c.args(["-global", "virtio-mmio.force-legacy=false"]);
    }
    c.arg("-kernel").arg(&r.boot.xen);
    c.arg("-dtb").arg(&g.dtb);
    for m in &g.modules {
        c.arg("-device").arg(format!(
            "loader,file={},addr=0x{:x},force-raw=on",
            m.file.display(),
            m.addr
        ));
    }
    c.args(&r.extra_args);
    Ok((c, g))
}

/// Generate the DTB and build the QEMU command (not started).
pub fn boot_command(r: &QemuRun) -> Result<Command> {
    Ok(boot_command_with_layout(r)?.0)
}

/// How a watched run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// Every success marker was seen (and no failure marker).
    pub passed: bool,
    /// Why the run ended.
    pub reason: String,
    /// Time from spawn to the end.
    #[allow(dead_code)] // part of the outcome; the tests read the timestamps in `seen`
    pub elapsed: Duration,
    /// Each success marker seen, with the time since spawn.
    pub seen: Vec<(String, Duration)>,
    /// Full console output.
    pub log: PathBuf,
}

/// Spawn `cmd` (its serial must be on stdio), copy its output to `log`, and stop it when every
/// `success` marker has appeared, any `failure` marker appears, it exits, or `timeout` passes.
pub fn run_until(
    cmd: Command,
    log: &Path,
    success: &[&str],
    failure: &[&str],
    timeout: Duration,
) -> Result<RunOutcome> {
    run_until_with_input(cmd, log, success, failure, timeout, None)
}

/// As [`run_until`], and once a line contains `input.0`, types `input.1` on
/// the machine's serial console (Xen hands serial input to dom0).
pub fn run_until_with_input(
    mut cmd: Command,
    log: &Path,
    success: &[&str],
    failure: &[&str],
    timeout: Duration,
    mut input: Option<(&str, &str)>,
) -> Result<RunOutcome> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning qemu-system-aarch64")?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    for mut pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut line = Vec::new();
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        for &b in &buf[..n] {
                            if b == b'\n' {
                                let _ = tx.send(Some(
                                    String::from_utf8_lossy(&line)
                                        .trim_end_matches('\r')
                                        .to_string(),
                                ));
                                line.clear();
                            } else {
                                line.push(b);
                            }
                        }
                    }
                }
            }
            if !line.is_empty() {
                let _ = tx.send(Some(String::from_utf8_lossy(&line).to_string()));
            }
            let _ = tx.send(None);
        });
    }
    drop(tx);
    let mut out = std::fs::File::create(log)?;
    let mut seen: Vec<(String, Duration)> = Vec::new();
    let mut closed = 0;
    let reason = loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            break format!("timeout after {timeout:?}");
        }
        match rx.recv_timeout(left) {
            Ok(Some(l)) => {
                use std::io::Write;
                let _ = writeln!(out, "[{:8.3}] {l}", start.elapsed().as_secs_f64());
                if let Some((marker, text)) = input
                    && l.contains(marker)
                {
                    use std::io::Write as _;
                    if let Some(stdin) = child.stdin.as_mut() {
                        let _ = stdin.write_all(text.as_bytes());
                        let _ = stdin.flush();
                    }
                    input = None;
                }
                for m in success {
                    if l.contains(m) && !seen.iter().any(|(s, _)| s == m) {
                        seen.push((m.to_string(), start.elapsed()));
                    }
                }
                if let Some(f) = failure.iter().find(|f| l.contains(*f)) {
                    break format!("failure marker {f:?}: {l}");
                }
                if seen.len() == success.len() && !success.is_empty() {
                    break "all markers seen".into();
                }
            }
            Ok(None) => {
                closed += 1;
                if closed == 2 {
                    break "qemu exited".into();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break "qemu exited".into(),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let passed =
        !success.is_empty() && seen.len() == success.len() && !reason.starts_with("failure");
    Ok(RunOutcome {
        passed,
        reason,
        elapsed: start.elapsed(),
        seen,
        log: log.to_path_buf(),
    })
}
