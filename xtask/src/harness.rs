//! A tiny test harness: named checks, each passing, failing or skipped, and
//! the closing "N passed, N failed, N skipped" line.
use std::time::Instant;

/// How one check ended.
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// Collects outcomes and prints them as they happen.
#[derive(Default)]
pub struct Harness {
    passed: usize,
    failed: Vec<String>,
    skipped: usize,
}

impl Harness {
    /// Runs one check.
    pub fn check(&mut self, name: &str, f: impl FnOnce() -> anyhow::Result<Outcome>) {
        let start = Instant::now();
        let outcome = f().unwrap_or_else(|e| Outcome::Fail(format!("{e:#}")));
        let secs = start.elapsed().as_secs_f64();
        match outcome {
            Outcome::Pass => {
                println!("test {name} ... ok ({secs:.1} s)");
                self.passed += 1;
            }
            Outcome::Fail(why) => {
                println!("test {name} ... FAILED ({secs:.1} s)\n{}", indent(&why));
                self.failed.push(name.to_string());
            }
            Outcome::Skip(why) => {
                println!("test {name} ... SKIPPED: {why}");
                self.skipped += 1;
            }
        }
    }

    /// Prints the summary; true when nothing failed.
    pub fn finish(&self) -> bool {
        if !self.failed.is_empty() {
            println!("\nfailures:");
            for f in &self.failed {
                println!("    {f}");
            }
        }
        println!(
            "\nxtask: {} passed, {} failed, {} skipped",
            self.passed,
            self.failed.len(),
            self.skipped
        );
        self.failed.is_empty()
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fails with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> anyhow::Result<()> {
    if cond {
        Ok(())
    } else {
        Err(anyhow::anyhow!(msg()))
    }
}
