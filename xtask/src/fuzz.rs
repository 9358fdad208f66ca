//! Fuzzing the guest-facing parsers with cargo-fuzz (libFuzzer, nightly).
use crate::harness::{Harness, Outcome};
use crate::project_root;
use anyhow::Result;
use std::process::Command;

/// The targets in fuzz/fuzz_targets.
pub const TARGETS: &[&str] = &["mmio_registers", "queue_walk", "blk_request"];

fn nightly_available() -> bool {
    Command::new("cargo")
        .args(["+nightly", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn cargo_fuzz_available() -> bool {
    Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Makes sure cargo-fuzz is installed (from crates.io); false if impossible.
fn ensure_cargo_fuzz() -> bool {
    if cargo_fuzz_available() {
        return true;
    }
    eprintln!("xtask: installing cargo-fuzz (cargo install cargo-fuzz)");
    let ok = Command::new("cargo")
        .args(["+nightly", "install", "--locked", "--quiet", "cargo-fuzz"])
        .status()
        .is_ok_and(|s| s.success());
    ok && cargo_fuzz_available()
}

/// Runs every target for `seconds` each.
pub fn run(h: &mut Harness, seconds: u32) {
    let nightly = nightly_available();
    let fuzz = nightly && ensure_cargo_fuzz();
    for t in TARGETS {
        h.check(&format!("fuzz::{t}"), || -> Result<Outcome> {
            if !nightly {
                return Ok(Outcome::Skip(
                    "no nightly toolchain (cargo-fuzz needs one)".into(),
                ));
            }
            if !fuzz {
                return Ok(Outcome::Skip("cargo-fuzz could not be installed".into()));
            }
            let status = Command::new("cargo")
                .current_dir(project_root())
                .args([
                    "+nightly",
                    "fuzz",
                    "run",
                    t,
                    "--",
                    &format!("-max_total_time={seconds}"),
                    "-rss_limit_mb=2048",
                ])
                .status()?;
            Ok(if status.success() {
                Outcome::Pass
            } else {
                Outcome::Fail(format!(
                    "fuzz target {t} found a crash (see fuzz/artifacts/{t})"
                ))
            })
        });
    }
}
