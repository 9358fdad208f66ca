//! The IOREQ-capable Xen: Debian's `xen` source package (same 4.17 tree and patches as the
//! binary package), hypervisor only, with `CONFIG_EXPERT=y` + `CONFIG_IOREQ_SERVER=y`.
use super::debian::Apt;
use super::{Stamp, run, step};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const EXTRA_CONFIG: &[&str] = &["CONFIG_EXPERT=y", "CONFIG_IOREQ_SERVER=y"];

fn make(tree: &Path) -> Command {
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(tree.join("xen"))
        .arg("XEN_TARGET_ARCH=arm64")
        .arg("CROSS_COMPILE=aarch64-linux-gnu-");
    c
}

/// The unpacked Debian Xen source tree (fetched once).
pub fn source_tree(cache: &Path, apt: &Apt) -> Result<PathBuf> {
    let src_stamp = Stamp::new(cache.join("stamp-xen-src"));
    if let Some(t) = src_stamp
        .get()
        .map(PathBuf::from)
        .filter(|p| p.join("xen/Makefile").is_file())
    {
        return Ok(t);
    }
    step("IOREQ Xen: fetching Debian's xen source package (apt-get source xen)");
    let (t, version) = apt.source("xen", &cache.join("src"))?;
    std::fs::write(cache.join("xen-src-version"), &version)?;
    src_stamp.set(&t.to_string_lossy())?;
    Ok(t)
}

/// Build (once) and return `target/xen/ioreq/xen`.
pub fn ioreq_xen(cache: &Path, apt: &Apt) -> Result<PathBuf> {
    let out_dir = cache.join("ioreq");
    let xen = out_dir.join("xen");
    let stamp = Stamp::new(out_dir.join("stamp"));
    let key = EXTRA_CONFIG.join(" ");
    if stamp.valid(&key) && xen.is_file() {
        return Ok(xen);
    }
    std::fs::create_dir_all(&out_dir)?;
    let tree = source_tree(cache, apt)?;
    step(&format!(
        "IOREQ Xen: configuring {} (defconfig + {})",
        tree.display(),
        EXTRA_CONFIG.join(" ")
    ));
    run(make(&tree).arg("defconfig"))?;
    let cfg_path = tree.join("xen/.config");
    let mut cfg = std::fs::read_to_string(&cfg_path).context("reading xen/.config")?;
    for line in EXTRA_CONFIG {
        let key = line.split('=').next().unwrap();
        cfg = cfg
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}=")) && *l != format!("# {key} is not set"))
            .map(|l| format!("{l}\n"))
            .collect();
        cfg.push_str(line);
        cfg.push('\n');
    }
    std::fs::write(&cfg_path, cfg)?;
    run(make(&tree).arg("olddefconfig"))?;
    let cfg = std::fs::read_to_string(&cfg_path)?;
    for line in EXTRA_CONFIG {
        if !cfg.lines().any(|l| l == *line) {
            bail!(
                "{line} did not survive olddefconfig in {}",
                cfg_path.display()
            );
        }
    }
    step("IOREQ Xen: building the hypervisor (make -j2, ~20-30 s)");
    let t = std::time::Instant::now();
    run(make(&tree).arg("-j2"))?;
    step(&format!("IOREQ Xen: built in {:.0?}", t.elapsed()));
    // The dm_op hypercall only exists with CONFIG_IOREQ_SERVER; make sure it was linked in.
    let syms = super::output(Command::new("aarch64-linux-gnu-nm").arg(tree.join("xen/xen-syms")))?;
    if !syms.lines().any(|l| l.ends_with(" do_dm_op")) {
        bail!("xen-syms has no do_dm_op: the IOREQ server was not built in");
    }
    std::fs::copy(tree.join("xen/xen"), &xen).context("copying xen/xen")?;
    std::fs::copy(&cfg_path, out_dir.join("config"))?;
    stamp.set(&key)?;
    Ok(xen)
}
