//! Running QEMU with a timeout, streaming or capturing its console.
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a run printed and how it ended.
pub struct RunOutput {
    /// Console lines (serial on stdio).
    pub lines: Vec<String>,
    /// The run did not end by itself before the timeout.
    pub timed_out: bool,
    /// Wall time until exit (or kill).
    pub elapsed: Duration,
    /// Wall time until the first stop marker was seen, if one was.
    pub ready_at: Option<Duration>,
}

impl RunOutput {
    /// Whether some line contains `needle`.
    pub fn has(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.contains(needle))
    }

    /// The first line containing `needle`.
    pub fn line(&self, needle: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.contains(needle))
            .map(|s| s.as_str())
    }

    /// The last `n` lines, for failure reports.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..].join("\n")
    }
}

/// The base QEMU command for the `virt` machine.
pub fn virt(gic: u8, el2: bool, mem: &str) -> Command {
    let mut cmd = Command::new("qemu-system-aarch64");
    let mut machine = format!("virt,gic-version={gic}");
    if el2 {
        machine.push_str(",virtualization=on");
    }
    cmd.args(["-M", &machine, "-cpu", "cortex-a57", "-m", mem])
        .args([
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ]);
    cmd
}

/// Runs `cmd`, collecting stdout lines, killing it after `timeout`.
/// With `echo`, lines are printed as they come.
pub fn run(cmd: Command, timeout: Duration, echo: bool) -> Result<RunOutput> {
    run_until(cmd, timeout, echo, &[])
}

/// As [`run`], but also stops the machine once a line contains one of `stop`
/// (for machines that do not power off by themselves, such as Xen's).
pub fn run_until(
    mut cmd: Command,
    timeout: Duration,
    echo: bool,
    stop: &[&str],
) -> Result<RunOutput> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
            let s = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx2.send(format!("[qemu stderr] {line}")).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut timed_out = false;
    let mut ready_at = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(l) => {
                if echo {
                    println!("{l}");
                }
                let done = stop.iter().any(|m| l.contains(m));
                lines.push(l);
                if done {
                    ready_at = Some(start.elapsed());
                    let _ = child.kill();
                    break;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if child.try_wait()?.is_some() {
            // Drain what the reader threads still hold.
            while let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                if echo {
                    println!("{l}");
                }
                lines.push(l);
            }
            break;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            while let Ok(l) = rx.try_recv() {
                lines.push(l);
            }
            break;
        }
    }
    let _ = child.wait();
    Ok(RunOutput {
        lines,
        timed_out,
        elapsed: start.elapsed(),
        ready_at,
    })
}
