//! The Xen path's artifacts: an IOREQ-capable Xen built from Debian's source package, Debian's
//! binary Xen (for the negative test), a Debian guest kernel with its virtio modules, a busybox
//! initramfs, and the device-tree/QEMU plumbing that boots them as dom0 + dom0less domUs.
//!
//! Everything big lives under `target/xen/` (never committed) and every step is stamped, so a
//! second `prepare` only checks stamps. Layout:
//!
//! ```text
//! target/xen/
//!   apt/                 private apt state: sources.list.d/backplane.sources (bookworm,
//!                        -updates, -security; deb + deb-src; the machine's mirror), state/, cache/,
//!                        empty dpkg status, stamp-update
//!   src/xen-4.17.*/      `apt-get source xen` (Debian patches applied); built in place
//!   xen-src-version      the source version fetched (the binary Xen prefers the same one)
//!   ioreq/xen            IOREQ-capable hypervisor (arm64 Image); ioreq/config = its .config
//!   debian-xen/boot/     Debian's binary hypervisor (xen-4.17-arm64, no IOREQ)
//!   debs/<pkg>/          downloaded .debs
//!   linux/               extracted linux-image-*-arm64-unsigned; linux-Image = raw Image
//!   busybox/             extracted busybox-static
//!   initramfs.cpio       newc cpio: busybox, /init (guest_init.sh), virtio modules
//!   initramfs.modules    module load order
//!   runs/<name>/         generated DTS/DTB, partial DTBs, console.log of self-test runs
//!   stamp-*              one per step
//! ```
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

mod debian;
mod dtb;
mod guest;
mod qemu;
#[cfg(test)]
mod selftest;
mod xen_build;

pub use dtb::{Boot, DomU, VirtioMmio};
pub use qemu::{QemuRun, RunOutcome, boot_command, run_until, run_until_with_input};

/// Everything `prepare` produced (all paths absolute, under `target/xen/` unless overridden).
#[derive(Debug, Clone)]
#[allow(dead_code)] // every field is printed by `cargo xtask xen-prep`; the tests use some
pub struct XenArtifacts {
    /// IOREQ-capable Xen (`xen/xen`, an arm64 Image), or `$BACKPLANE_XEN`.
    pub xen_ioreq: PathBuf,
    /// Debian's binary hypervisor (`/boot/xen-4.17-arm64` of `xen-hypervisor-4.17-arm64`).
    pub xen_debian: PathBuf,
    /// Debian's guest kernel (raw arm64 Image, from `linux-image-*-arm64-unsigned`).
    pub linux_image: PathBuf,
    /// Kernel release string (e.g. `6.1.0-35-arm64`).
    pub linux_release: String,
    /// Busybox initramfs (uncompressed newc cpio) with `/init`, the virtio modules and the tests.
    pub initramfs: PathBuf,
    /// Modules packed into the initramfs, in load order (names, `_` spelling).
    pub modules: Vec<String>,
    /// Debian's Xen source tree the IOREQ Xen was built from (public headers under
    /// `xen/include/public`). Unpacked even when `$BACKPLANE_XEN` overrides the binary.
    pub xen_src: PathBuf,
    /// Cache root (`target/xen`).
    pub cache: PathBuf,
}

/// Build or fetch everything the Xen path needs. Idempotent and fast when cached.
pub fn prepare(root: &Path) -> Result<XenArtifacts> {
    let cache = root.join("target/xen");
    std::fs::create_dir_all(&cache)?;
    debian::ensure_host_packages()?;
    let apt = debian::Apt::new(&cache.join("apt"))?;
    let xen_ioreq = match std::env::var_os("BACKPLANE_XEN") {
        Some(p) => {
            let p = PathBuf::from(p);
            step(&format!(
                "IOREQ Xen: using $BACKPLANE_XEN = {}",
                p.display()
            ));
            if !p.is_file() {
                bail!("BACKPLANE_XEN={} is not a file", p.display());
            }
            p
        }
        None => xen_build::ioreq_xen(&cache, &apt)?,
    };
    let xen_src = xen_build::source_tree(&cache, &apt)?;
    let xen_debian = debian::binary_xen(&cache, &apt)?;
    let kernel = guest::kernel(&cache, &apt)?;
    let busybox = guest::busybox(&cache, &apt)?;
    let (initramfs, modules) = guest::initramfs(&cache, &kernel, &busybox)?;
    Ok(XenArtifacts {
        xen_ioreq,
        xen_debian,
        linux_image: kernel.image.clone(),
        linux_release: kernel.release.clone(),
        initramfs,
        modules,
        xen_src,
        cache,
    })
}

/// Print a progress line (xtask's voice).
pub(crate) fn step(msg: &str) {
    eprintln!("xen-prep: {msg}");
}

/// Run a command, echoing it; fail with its exit status.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    step(&format!("$ {}", show(cmd)));
    let st = cmd
        .status()
        .with_context(|| format!("spawning {}", show(cmd)))?;
    if !st.success() {
        bail!("command failed ({st}): {}", show(cmd));
    }
    Ok(())
}

/// Run a command quietly and return its stdout; fail (with its stderr) on error.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("spawning {}", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "command failed ({}): {}\n{}",
            out.status,
            show(cmd),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    let mut args = cmd.get_args().peekable();
    let mut private_opts = 0;
    while let Some(a) = args.next() {
        // The private apt state's `-o Dir::...` options are long and always the same.
        if a == "-o"
            && args
                .peek()
                .is_some_and(|n| n.to_string_lossy().contains("::"))
        {
            args.next();
            private_opts += 1;
            continue;
        }
        if private_opts > 0 {
            s.push_str(&format!(" [{private_opts} private-apt options]"));
            private_opts = 0;
        }
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A stamp file records that a step finished for a given key (e.g. a package version).
pub(crate) struct Stamp(PathBuf);

impl Stamp {
    pub fn new(path: PathBuf) -> Self {
        Stamp(path)
    }
    pub fn valid(&self, key: &str) -> bool {
        std::fs::read_to_string(&self.0).is_ok_and(|s| s.trim() == key.trim())
    }
    pub fn set(&self, key: &str) -> Result<()> {
        std::fs::write(&self.0, format!("{key}\n")).with_context(|| format!("{}", self.0.display()))
    }
    pub fn get(&self) -> Option<String> {
        std::fs::read_to_string(&self.0)
            .ok()
            .map(|s| s.trim().to_string())
    }
}

/// Remove and recreate a directory.
pub(crate) fn fresh_dir(p: &Path) -> Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))?;
    }
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    Ok(())
}
