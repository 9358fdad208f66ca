//! The Linux guest: Debian's arm64 kernel (raw Image + virtio modules) and a busybox initramfs
//! (newc cpio, uncompressed) whose `/init` runs the test chosen by `bp.test=` on the command line.
use super::debian::{Apt, extract};
use super::{Stamp, step};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The init script; `@MODULES@` becomes the module load order.
const INIT_TEMPLATE: &str = include_str!("guest_init.sh");

/// Modules the guest wants (their dependencies are added automatically).
const WANTED_MODULES: &[&str] = &[
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio_rng",
];

#[derive(Debug, Clone)]
pub struct Kernel {
    /// Raw arm64 Image (decompressed if the package ships it gzipped).
    pub image: PathBuf,
    /// `uname -r` of the kernel.
    pub release: String,
    /// `lib/modules/<release>` of the extracted package.
    pub modules_dir: PathBuf,
}

/// Debian's unsigned arm64 kernel, extracted under `target/xen/linux/`.
pub fn kernel(cache: &Path, apt: &Apt) -> Result<Kernel> {
    let root = cache.join("linux");
    let image = cache.join("linux-Image");
    let stamp = Stamp::new(cache.join("stamp-linux"));
    let found = |release: &str| {
        let modules_dir = root.join("lib/modules").join(release);
        (image.is_file() && modules_dir.is_dir()).then(|| Kernel {
            image: image.clone(),
            release: release.to_string(),
            modules_dir,
        })
    };
    if let Some(k) = stamp.get().as_deref().and_then(found) {
        return Ok(k);
    }
    let signed = apt.first_depend("linux-image-arm64")?; // linux-image-6.1.0-NN-arm64
    let pkg = format!("{signed}-unsigned");
    step(&format!("guest kernel: downloading {pkg}"));
    let deb = apt.download(&pkg, &cache.join("debs").join(&pkg))?;
    step("guest kernel: extracting (kernel + modules)");
    extract(&deb, &root)?;
    let vmlinuz = std::fs::read_dir(root.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("no /boot/vmlinuz-* in the kernel package")?;
    let release = vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
    let bytes = std::fs::read(&vmlinuz)?;
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        step("guest kernel: vmlinuz is gzipped; decompressing to a raw Image");
        decompress(&vmlinuz, "gzip")?
    } else {
        bytes
    };
    if raw.len() < 64 || &raw[56..60] != b"ARM\x64" {
        bail!(
            "{} is not an arm64 Image (no ARM\\x64 magic)",
            vmlinuz.display()
        );
    }
    std::fs::write(&image, &raw)?;
    stamp.set(&release)?;
    found(&release).context("kernel extraction incomplete")
}

/// Busybox (static, arm64) from `busybox-static`.
pub fn busybox(cache: &Path, apt: &Apt) -> Result<PathBuf> {
    let root = cache.join("busybox");
    let bin = root.join("bin/busybox");
    let stamp = Stamp::new(cache.join("stamp-busybox"));
    if stamp.valid("ok") && bin.is_file() {
        return Ok(bin);
    }
    step("busybox: downloading busybox-static (arm64)");
    let deb = apt.download("busybox-static", &cache.join("debs/busybox-static"))?;
    extract(&deb, &root)?;
    if !bin.is_file() {
        bail!("busybox-static has no /bin/busybox");
    }
    stamp.set("ok")?;
    Ok(bin)
}

fn decompress(path: &Path, tool: &str) -> Result<Vec<u8>> {
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!("{tool} -dc {} failed", path.display());
    }
    Ok(out.stdout)
}

/// Module name as the kernel spells it (`-` → `_`, no `.ko[.xz|.zst|.gz]`).
fn module_name(file: &str) -> Option<String> {
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))
        .or_else(|| file.strip_suffix(".ko.zst"))
        .or_else(|| file.strip_suffix(".ko.gz"))?;
    Some(stem.replace('-', "_"))
}

fn walk(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if let Some(n) = module_name(&e.file_name().to_string_lossy()) {
            out.insert(n, p);
        }
    }
    Ok(())
}

/// Read a module file as a plain ELF (decompressing .xz/.zst/.gz).
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    if name.ends_with(".xz") {
        decompress(path, "xz")
    } else if name.ends_with(".zst") {
        decompress(path, "zstd")
    } else if name.ends_with(".gz") {
        decompress(path, "gzip")
    } else {
        Ok(std::fs::read(path)?)
    }
}

/// `depends=` from the module's `.modinfo` strings.
fn module_depends(elf: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(pos) = elf.windows(key.len()).position(|w| w == key) else {
        return vec![];
    };
    let rest = &elf[pos + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// Wanted modules + dependencies in load order, skipping built-ins. Returns (name, ELF bytes).
fn resolve_modules(k: &Kernel) -> Result<Vec<(String, Vec<u8>)>> {
    let mut index = BTreeMap::new();
    walk(&k.modules_dir.join("kernel"), &mut index)?;
    let builtin: BTreeSet<String> = std::fs::read_to_string(k.modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| module_name(l.rsplit('/').next()?))
        .collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        n: &str,
        index: &BTreeMap<String, PathBuf>,
        builtin: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        if !seen.insert(n.to_string()) || builtin.contains(n) {
            return Ok(());
        }
        let Some(path) = index.get(n) else {
            bail!("module {n} is neither built in nor in the kernel package");
        };
        let elf = module_bytes(path)?;
        for d in module_depends(&elf) {
            visit(&d, index, builtin, seen, order)?;
        }
        order.push((n.to_string(), elf));
        Ok(())
    }
    for m in WANTED_MODULES {
        visit(m, &index, &builtin, &mut seen, &mut order)?;
    }
    Ok(order)
}

/// Build `target/xen/initramfs.cpio` (busybox, `/init`, modules). Returns it and the module order.
pub fn initramfs(cache: &Path, k: &Kernel, busybox: &Path) -> Result<(PathBuf, Vec<String>)> {
    let out = cache.join("initramfs.cpio");
    let order_file = cache.join("initramfs.modules");
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        INIT_TEMPLATE.hash(&mut h);
        WANTED_MODULES.hash(&mut h);
        k.release.hash(&mut h);
        std::fs::metadata(busybox)?.len().hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let stamp = Stamp::new(cache.join("stamp-initramfs"));
    if stamp.valid(&key) && out.is_file() {
        let order = std::fs::read_to_string(&order_file)?
            .split_whitespace()
            .map(String::from)
            .collect();
        return Ok((out, order));
    }
    step("initramfs: resolving virtio modules and writing the newc cpio");
    let mods = resolve_modules(k)?;
    let names: Vec<String> = mods.iter().map(|(n, _)| n.clone()).collect();
    let init = INIT_TEMPLATE.replace("@MODULES@", &names.join(" "));
    let mut c = Cpio::default();
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "mnt",
        "etc",
        "lib",
        "lib/modules",
    ] {
        c.dir(d);
    }
    c.node("dev/console", 0o020600, 5, 1);
    c.node("dev/null", 0o020666, 1, 3);
    c.file("bin/busybox", 0o755, &std::fs::read(busybox)?);
    c.symlink("bin/sh", "busybox");
    c.file("init", 0o755, init.as_bytes());
    for (n, elf) in &mods {
        c.file(&format!("lib/modules/{n}.ko"), 0o644, elf);
    }
    std::fs::write(&out, c.finish())?;
    std::fs::write(&order_file, names.join("\n"))?;
    stamp.set(&key)?;
    Ok((out, names))
}

/// A newc ("070701") cpio archive writer, enough for an initramfs.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }
    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }
    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, (0, 0), target.as_bytes());
    }
    fn node(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, mode, (major, minor), &[]);
    }
    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}
