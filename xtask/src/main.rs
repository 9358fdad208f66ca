//! `cargo xtask`: build, run, test, bench and size the Backplane image.
use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use std::process::Command;

mod bench_boot;
mod bench_standalone;
mod bench_xen;
mod boot_tests;
mod deps;
mod fuzz;
mod harness;
mod image;
mod peers;
mod qemu;
mod standalone;
mod testguest;
mod xen;
mod xen_grant_tests;
mod xen_run;
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
    /// Boot the image standalone on QEMU's `virt` machine with virtio blk, net,
    /// console and rng devices and host peers, and stream its console.
    Run {
        /// Release image.
        #[arg(long)]
        release: bool,
        /// Raw disk image to serve (default: target/standalone/disk.img, created if absent).
        #[arg(long, value_name = "FILE")]
        disk: Option<std::path::PathBuf>,
        /// Serve the disk read-only.
        #[arg(long)]
        read_only: bool,
        /// Hypervisor: none (standalone, the default) or xen.
        #[arg(long, default_value = "none")]
        hyp: String,
        /// Xen: the guest kernel (arm64 Image); default Debian's, with a test initramfs.
        #[arg(long, value_name = "IMAGE")]
        guest_kernel: Option<std::path::PathBuf>,
        /// Xen: the guest initramfs.
        #[arg(long, value_name = "CPIO")]
        guest_initramfs: Option<std::path::PathBuf>,
        /// Xen: the guest kernel command line.
        #[arg(long)]
        guest_bootargs: Option<String>,
        /// Xen: guest memory in MiB.
        #[arg(long, default_value_t = 256)]
        guest_mem: u64,
        /// Xen: guest vCPUs.
        #[arg(long, default_value_t = 1)]
        guest_vcpus: u32,
        /// Xen: number of guests (each gets its own disk and entropy device).
        #[arg(long, default_value_t = 1)]
        guests: u32,
    },
    /// Run a benchmark: `boot` (time to ready), `core` (device core vs rust-vmm virtio-queue),
    /// `standalone` (block I/O through Backplane vs direct), `xen` (domU I/O through Backplane on Xen).
    Bench { what: String },
    /// Run every test: host, lints, and the QEMU system tests.
    Test {
        /// Only these groups (host, lint, boot, standalone, fuzz, xen), comma-separated.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Fuzz the guest-facing parsers (cargo-fuzz, nightly) for N seconds per target.
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u32,
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
        Cmd::Run {
            release,
            disk,
            read_only,
            hyp,
            guest_kernel,
            guest_initramfs,
            guest_bootargs,
            guest_mem,
            guest_vcpus,
            guests,
        } => match hyp.as_str() {
            "none" => standalone::run(release, disk, read_only)?,
            "xen" => xen_run::run(xen_run::XenRunOptions {
                release,
                guest_kernel,
                guest_initramfs,
                guest_mem_mib: guest_mem,
                guest_vcpus,
                guest_bootargs,
                guests,
                disk,
            })?,
            other => bail!("unknown hypervisor {other:?} (none, xen; Gunyah is not supported yet)"),
        },
        Cmd::Bench { what } => match what.as_str() {
            "standalone" => bench_standalone::run()?,
            "boot" => bench_boot::run()?,
            "xen" => bench_xen::run()?,
            "core" => {
                let ok = Command::new("cargo")
                    .args(["run", "--release", "-p", "bench-core"])
                    .current_dir(project_root())
                    .status()?
                    .success();
                if !ok {
                    bail!("bench core failed");
                }
            }
            _ => bail!("unknown benchmark {what:?} (known: standalone, core)"),
        },
        Cmd::Test { only } => {
            if !test(&only)? {
                std::process::exit(1);
            }
        }
        Cmd::Fuzz { seconds } => {
            let mut h = harness::Harness::default();
            fuzz::run(&mut h, seconds);
            if !h.finish() {
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
    let img = if wants(only, "boot") || wants(only, "standalone") {
        deps::ensure_commands(deps::QEMU_PACKAGES)?;
        Some(image::build(false)?)
    } else {
        None
    };
    if let (true, Some(img)) = (wants(only, "boot"), &img) {
        let release = image::build(true)?;
        image::print_sizes(&release)?;
        boot_tests::run(&mut h, img, &release);
    }
    if let (true, Some(img)) = (wants(only, "standalone"), &img) {
        standalone::tests(&mut h, img);
    }
    if wants(only, "fuzz") {
        fuzz::run(&mut h, 10);
    }
    if wants(only, "xen") {
        deps::ensure_commands(deps::QEMU_PACKAGES)?;
        let img = image::build(false)?;
        xen_tests::run(&mut h, &img);
        match xen::prepare(&project_root()) {
            Ok(a) => xen_grant_tests::run(&mut h, &img, &a),
            Err(e) => h.check("xen::grant_prepare", || {
                Ok(harness::Outcome::Fail(format!("{e:#}")))
            }),
        }
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
