//! `cargo xtask`: build, run, test, bench and size the Backplane image.
use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use std::process::Command;

mod boot_tests;
mod deps;
mod harness;
mod image;
mod qemu;
mod xen;
mod xen_tests;

#[derive(Parser)]
#[command(about = "Backplane's build and test driver")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the image and print its size.
    Build {
        /// Size-optimised release build.
        #[arg(long)]
        release: bool,
    },
    /// Print the release image's size (text, data, bss, total).
    Size,
    /// Boot the image standalone on QEMU's `virt` machine and stream its console.
    Run {
        /// Release image.
        #[arg(long)]
        release: bool,
    },
    /// Run every test: host, lints, and the QEMU system tests.
    Test {
        /// Only these groups (host, lint, boot, standalone, xen), comma-separated.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Fetch and build what the Xen path needs (IOREQ Xen, guest kernel, initramfs).
    XenPrep,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Build { release } => {
            let img = image::build(release)?;
            image::print_sizes(&img)?;
        }
        Cmd::Size => {
            let img = image::build(true)?;
            image::print_sizes(&img)?;
        }
        Cmd::Run { release } => {
            deps::ensure_commands(deps::QEMU_PACKAGES)?;
            let img = image::build(release)?;
            let mut cmd = qemu::virt(3, true, "256");
            cmd.arg("-kernel").arg(&img.raw);
            let out = qemu::run(cmd, std::time::Duration::from_secs(120), true)?;
            if let Err(why) = boot_tests::judge(&out) {
                bail!("the run failed: {why}");
            }
        }
        Cmd::Test { only } => {
            if !test(&only)? {
                std::process::exit(1);
            }
        }
        Cmd::XenPrep => {
            let a = xen::prepare(&project_root())?;
            println!("{a:#?}");
        }
    }
    Ok(())
}

fn wants(only: &[String], group: &str) -> bool {
    only.is_empty() || only.iter().any(|g| g == group)
}

fn cargo(args: &[&str]) -> Result<harness::Outcome> {
    let status = Command::new("cargo")
        .current_dir(project_root())
        .args(args)
        .status()?;
    Ok(if status.success() {
        harness::Outcome::Pass
    } else {
        harness::Outcome::Fail(format!("cargo {} failed", args.join(" ")))
    })
}

fn test(only: &[String]) -> Result<bool> {
    let mut h = harness::Harness::default();
    if wants(only, "host") {
        h.check("host::cargo_test", || {
            cargo(&["test", "--workspace", "--quiet"])
        });
    }
    if wants(only, "lint") {
        deps::ensure_rust_target()?;
        h.check("lint::fmt", || cargo(&["fmt", "--all", "--check"]));
        h.check("lint::clippy_host", || {
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ])
        });
        h.check("lint::clippy_image", || {
            cargo(&[
                "clippy",
                "--target",
                "aarch64-unknown-none",
                "--bin",
                "backplane",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ])
        });
    }
    if wants(only, "boot") {
        deps::ensure_commands(deps::QEMU_PACKAGES)?;
        let img = image::build(false)?;
        let release = image::build(true)?;
        image::print_sizes(&release)?;
        boot_tests::run(&mut h, &img, &release);
    }
    if wants(only, "xen") {
        deps::ensure_commands(deps::QEMU_PACKAGES)?;
        let img = image::build(false)?;
        xen_tests::run(&mut h, &img);
    }
    Ok(h.finish())
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}
