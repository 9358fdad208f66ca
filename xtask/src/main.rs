//! `cargo xtask`: build, run, test, bench and size the Backplane image.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod xen;

#[derive(Parser)]
#[command(about = "Backplane's build and test driver")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fetch and build what the Xen path needs (IOREQ Xen, guest kernel, initramfs).
    XenPrep,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::XenPrep => {
            let a = xen::prepare(&project_root())?;
            println!("{a:#?}");
        }
    }
    Ok(())
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}
