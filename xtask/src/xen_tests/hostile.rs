//! Guests that misbehave: a domU that drives its blk window by hand through
//! /dev/mem with malformed virtqueues, and a domU whose kernel crashes with
//! disk I/O running. In both runs a second, well-behaved domU must still get
//! its disk served (its data checked in the host file) and Backplane must
//! not stop.
use super::{
    Dom0Devices, FAILURES, TWO_DISKS_PLAN, boot, boot_watching, check_disk_line, check_passed,
    fresh_disk, linux_domu,
};
use crate::harness::{Outcome, ensure};
use crate::image::Image;
use crate::xen::XenArtifacts;
use anyhow::{Result, anyhow};
use std::path::Path;

/// The hostile cases `test_hostile` plays, and a piece of what Backplane's
/// warning about each must contain (the address or the rule broken).
const BAD_CASES: [(&str, &str); 4] = [
    ("desc-outside-ram", "0x1000000000"),
    ("desc-loop", "looping"),
    ("avail-jump", "avail idx 100"),
    ("ring-outside-ram", "0x180000000"),
];

/// A domU without virtio drivers plays a malicious driver on its blk window
/// (see `test_hostile` in guest_init.sh); beside it a Linux domU tests its disk.
pub fn hostile_driver(a: &XenArtifacts, img: &Image, dir: &Path) -> Result<Outcome> {
    let evil_disk = fresh_disk(dir, "hostile-evil")?;
    let good_disk = fresh_disk(dir, "hostile-good")?;
    let dev = Dom0Devices::disks_and_rng(&[&evil_disk, &good_disk]);
    let mut evil = linux_domu(a, "hostile", 1, 1);
    evil.bootargs
        .push_str(" bp.tag=EVIL bp.nomodules=1 mem=240M");
    let mut good = linux_domu(a, "disk", 1, 1);
    good.bootargs.push_str(" bp.tag=GOOD");
    let out = boot(
        &a.xen_ioreq,
        img,
        TWO_DISKS_PLAN,
        vec![evil, good],
        &dev,
        "hostile",
        &["EVIL: test hostile PASS", "GOOD: test disk PASS"],
    )?;
    let log = std::fs::read_to_string(&out.log)?;
    let mut problems = Vec::new();
    for (case, _) in BAD_CASES {
        match find(&log, &format!("EVIL: hostile case={case} ")) {
            Some(l) if l.ends_with(" ok=1") => {}
            Some(l) => problems.push(format!("case {case}: {l}")),
            None => problems.push(format!("case {case}: no line from the guest")),
        }
    }
    // After four resets the device serves a well-formed read of sector 0.
    let sector0 = hex(&std::fs::read(&evil_disk)?[..16]);
    match find(&log, "EVIL: hostile case=good-read ") {
        Some(l) if l.ends_with(" ok=1") && l.contains(&format!(" sector0={sector0} ")) => {}
        Some(l) => problems.push(format!(
            "good read after the resets: {l} (host sector 0 starts {sector0})"
        )),
        None => problems.push("good read after the resets: no line from the guest".into()),
    }
    // Backplane said why it flagged each case (dom0's lines are not `DOMn:` lines).
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("(XEN)") && l.contains("device needs reset"))
        .collect();
    for (case, what) in BAD_CASES {
        if !warnings.iter().any(|w| w.contains(what)) {
            problems.push(format!(
                "case {case}: Backplane logged no `device needs reset` line with {what:?}"
            ));
        }
    }
    if log.contains("backplane: fatal") {
        problems.push("Backplane printed `backplane: fatal`".into());
    }
    if let Err(e) = check_disk_line(&log, "GOOD", &good_disk) {
        problems.push(format!("the well-behaved domU: {e:#}"));
    }
    if !problems.is_empty() {
        return Ok(Outcome::Fail(format!(
            "{}\nrun: {}; Backplane's warnings: {}; log {}",
            problems.join("\n"),
            out.reason,
            if warnings.is_empty() {
                "none".to_string()
            } else {
                warnings.join(" | ")
            },
            out.log.display()
        )));
    }
    check_passed(&out)
}

/// One domU (2 vCPUs) writes and reads its disk in two loops and crashes its
/// kernel with sysrq; a second domU starts its disk test 6 s after boot.
pub fn crash_with_io(a: &XenArtifacts, img: &Image, dir: &Path) -> Result<Outcome> {
    let crash_disk = fresh_disk(dir, "crash-a")?;
    let after_disk = fresh_disk(dir, "crash-b")?;
    let dev = Dom0Devices::disks_and_rng(&[&crash_disk, &after_disk]);
    let mut crash = linux_domu(a, "crashio", 1, 2);
    // panic=1: the crashed kernel asks Xen to reboot it after 1 s instead of
    // spinning (Xen leaves a dom0less domU shut down).
    crash.bootargs.push_str(" bp.tag=CRASH panic=1");
    let mut after = linux_domu(a, "disk", 1, 1);
    after.bootargs.push_str(" bp.tag=AFTER bp.delay=6");
    // The crash is on purpose: only Backplane's end and test failures stop the run.
    let failures: Vec<&str> = FAILURES
        .iter()
        .copied()
        .filter(|f| *f == "backplane: fatal" || *f == " FAIL")
        .collect();
    let out = boot_watching(
        &a.xen_ioreq,
        img,
        TWO_DISKS_PLAN,
        vec![crash, after],
        &dev,
        "crash",
        &["CRASH: crash: vda", "AFTER: test disk PASS"],
        &failures,
    )?;
    let log = std::fs::read_to_string(&out.log)?;
    check_passed(&out)?;
    let crashing = find(&log, "CRASH: crash: vda").ok_or_else(|| anyhow!("no crash line"))?;
    let io = |key: &str| {
        crashing
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.trim_end_matches(',').parse::<u64>().ok())
            .unwrap_or(0)
    };
    ensure(io("reads=") > 0 && io("writes=") > 0, || {
        format!("no disk I/O was running when the domU crashed: {crashing}")
    })?;
    let panic = log
        .lines()
        .find(|l| l.contains("DOM1") && l.contains("sysrq triggered crash"))
        .ok_or_else(|| anyhow!("the crashing domU did not panic (no `sysrq triggered crash`)"))?;
    let disk_line = find(&log, "AFTER: disk wrote=")
        .ok_or_else(|| anyhow!("no disk line from the second domU"))?;
    ensure(stamp(panic) < stamp(disk_line), || {
        format!("the second domU's disk test ended before the crash: {panic} / {disk_line}")
    })?;
    if let Some(l) = log.lines().find(|l| {
        l.contains("DOM2")
            && ["Oops", "Kernel panic", "Call trace", "blk_update_request"]
                .iter()
                .any(|m| l.contains(m))
    }) {
        anyhow::bail!("the second domU suffered: {l}");
    }
    ensure(!log.contains("backplane: fatal"), || {
        "Backplane printed `backplane: fatal`".into()
    })?;
    check_disk_line(&log, "AFTER", &after_disk)?;
    Ok(Outcome::Pass)
}

/// The first line containing `pat`.
fn find<'a>(log: &'a str, pat: &str) -> Option<&'a str> {
    log.lines().find(|l| l.contains(pat)).map(str::trim_end)
}

/// The run_until timestamp (`[   1.234] ...`) of a log line, in seconds.
fn stamp(line: &str) -> f64 {
    line.trim_start_matches('[')
        .split(']')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
