//! Debian plumbing: host tools, and a *private* apt state under `target/xen/apt/` (own sources,
//! lists, cache and dpkg status) used to download arm64 binary packages and the Xen source
//! package without touching the machine's apt configuration.
use super::{Stamp, fresh_dir, output, run, step};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Host tools the Xen path runs, with the Debian package that provides each.
const HOST_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-aarch64", "qemu-system-arm"),
    ("dtc", "device-tree-compiler"),
    ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("make", "make"),
    ("gcc", "gcc"),
    ("python3", "python3"),
    ("dpkg-source", "dpkg-dev"),
    ("xz", "xz-utils"),
    ("apt-get", "apt"),
];

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

/// Install missing host tools with the machine's apt (only when root; otherwise say what is missing).
pub fn ensure_host_packages() -> Result<()> {
    let mut missing: Vec<&str> = HOST_TOOLS
        .iter()
        .filter(|(b, _)| !on_path(b))
        .map(|(_, p)| *p)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing host packages: {} (install them: apt-get install {})",
            missing.join(" "),
            missing.join(" ")
        );
    }
    step(&format!(
        "installing missing host packages: {}",
        missing.join(" ")
    ));
    let install = |m: &[&str]| {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(m)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install(&missing).is_err() {
        run(Command::new("apt-get").arg("update"))?;
        install(&missing)?;
    }
    Ok(())
}

/// The Debian release whose packages we use (Xen 4.17, Linux 6.1).
const SUITE: &str = "bookworm";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A private apt state (arm64 binary indexes + source indexes) under one directory.
pub struct Apt {
    dir: PathBuf,
}

#[derive(Default, Debug)]
struct Mirror {
    uri: String,
    signed_by: Option<String>,
}

/// Find the Debian mirrors the machine uses (main archive and security), from its sources.
fn host_mirrors() -> (Mirror, Mirror) {
    let mut main: Option<Mirror> = None;
    let mut sec: Option<Mirror> = None;
    let mut consider = |uri: &str, suites: &[&str], signed: Option<String>| {
        let m = Mirror {
            uri: uri.trim_end_matches('/').to_string(),
            signed_by: signed,
        };
        if suites.iter().any(|s| s.ends_with("-security")) || uri.contains("debian-security") {
            sec.get_or_insert(m);
        } else if uri.contains("debian") {
            main.get_or_insert(m);
        }
    };
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        v.sort();
        files.extend(v);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let name = f.to_string_lossy();
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let field = |k: &str| {
                    stanza.lines().find_map(|l| {
                        let (a, b) = l.split_once(':')?;
                        (a.trim().eq_ignore_ascii_case(k)).then(|| b.trim().to_string())
                    })
                };
                if field("Enabled").is_some_and(|e| e == "no") {
                    continue;
                }
                let (Some(types), Some(uris), Some(suites)) =
                    (field("Types"), field("URIs"), field("Suites"))
                else {
                    continue;
                };
                if !types.split_whitespace().any(|t| t == "deb") {
                    continue;
                }
                let suites: Vec<&str> = suites.split_whitespace().collect();
                for uri in uris.split_whitespace() {
                    consider(uri, &suites, field("Signed-By"));
                }
            }
        } else if name.ends_with(".list") {
            for l in text.lines() {
                let l = l.trim();
                let Some(rest) = l.strip_prefix("deb ") else {
                    continue;
                };
                let mut signed = None;
                let rest = if let Some(r) = rest.trim_start().strip_prefix('[') {
                    let (opts, after) = r.split_once(']').unwrap_or(("", r));
                    for o in opts.split_whitespace() {
                        if let Some(v) = o.strip_prefix("signed-by=") {
                            signed = Some(v.to_string());
                        }
                    }
                    after
                } else {
                    rest
                };
                let w: Vec<&str> = rest.split_whitespace().collect();
                if w.len() >= 2 {
                    consider(w[0], &w[1..2], signed);
                }
            }
        }
    }
    let main = main.unwrap_or(Mirror {
        uri: "http://deb.debian.org/debian".into(),
        signed_by: None,
    });
    let sec = sec.unwrap_or(Mirror {
        uri: "http://deb.debian.org/debian-security".into(),
        signed_by: None,
    });
    (main, sec)
}

impl Apt {
    /// Lay out the private state and write its sources (bookworm, deb + deb-src, the host's mirror).
    pub fn new(dir: &Path) -> Result<Self> {
        for d in [
            "sources.list.d",
            "state/lists/partial",
            "cache/archives/partial",
            "prefs.d",
        ] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        for f in ["sources.list", "status"] {
            let p = dir.join(f);
            if !p.exists() {
                std::fs::write(&p, "")?;
            }
        }
        let (main, sec) = host_mirrors();
        let stanza = |m: &Mirror, suites: &str| {
            let key = m
                .signed_by
                .clone()
                .or_else(|| Path::new(KEYRING).exists().then(|| KEYRING.to_string()));
            let mut s = format!(
                "Types: deb deb-src\nURIs: {}\nSuites: {suites}\nComponents: main\n",
                m.uri
            );
            if let Some(k) = key {
                s.push_str(&format!("Signed-By: {k}\n"));
            }
            s
        };
        let text = format!(
            "# Backplane's private apt sources (xtask xen-prep); the machine's apt config is untouched.\n{}\n{}",
            stanza(&main, &format!("{SUITE} {SUITE}-updates")),
            stanza(&sec, &format!("{SUITE}-security"))
        );
        let src = dir.join("sources.list.d/backplane.sources");
        if std::fs::read_to_string(&src).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&src, &text)?;
            let _ = std::fs::remove_file(dir.join("stamp-update"));
        }
        Ok(Apt {
            dir: dir.to_path_buf(),
        })
    }

    fn opts(&self, cmd: &mut Command) {
        let d = self.dir.display();
        for o in [
            format!("Dir::Etc::SourceList={d}/sources.list"),
            format!("Dir::Etc::SourceParts={d}/sources.list.d"),
            format!("Dir::Etc::Preferences={d}/preferences"),
            format!("Dir::Etc::PreferencesParts={d}/prefs.d"),
            format!("Dir::State={d}/state"),
            format!("Dir::State::status={d}/status"),
            format!("Dir::Cache={d}/cache"),
            "APT::Architecture=arm64".into(),
            "APT::Architectures=arm64".into(),
            "APT::Sandbox::User=root".into(),
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false".into(),
            "APT::Get::List-Cleanup=false".into(),
        ] {
            cmd.arg("-o").arg(o);
        }
    }

    pub fn apt_get(&self) -> Command {
        let mut c = Command::new("apt-get");
        c.arg("-q");
        self.opts(&mut c);
        c
    }

    pub fn apt_cache(&self) -> Command {
        let mut c = Command::new("apt-cache");
        self.opts(&mut c);
        c
    }

    /// `apt-get update` on the private state, once (stamped).
    pub fn update(&self) -> Result<()> {
        let stamp = Stamp::new(self.dir.join("stamp-update"));
        if stamp.valid("ok") {
            return Ok(());
        }
        step("updating the private apt state (bookworm, arm64 + sources)");
        run(self.apt_get().arg("update"))?;
        stamp.set("ok")
    }

    /// Names of packages whose name starts with `prefix`.
    pub fn pkgnames(&self, prefix: &str) -> Result<Vec<String>> {
        self.update()?;
        let out = output(self.apt_cache().args(["pkgnames", prefix]))?;
        let mut v: Vec<String> = out
            .lines()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        Ok(v)
    }

    /// First `Depends:` target of a package (e.g. the versioned kernel behind a metapackage).
    pub fn first_depend(&self, pkg: &str) -> Result<String> {
        self.update()?;
        let out = output(self.apt_cache().args(["depends", pkg]))?;
        out.lines()
            .find_map(|l| {
                l.trim().strip_prefix("Depends:").map(|v| {
                    v.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
            })
            .with_context(|| format!("{pkg} has no Depends"))
    }

    /// Versions of a binary package in the private state, newest first.
    pub fn versions(&self, pkg: &str) -> Result<Vec<String>> {
        self.update()?;
        let out = output(self.apt_cache().args(["madison", pkg]))?;
        let mut v: Vec<String> = Vec::new();
        for l in out.lines() {
            if let Some(ver) = l.split('|').nth(1).map(|s| s.trim().to_string())
                && !v.contains(&ver)
            {
                v.push(ver);
            }
        }
        Ok(v)
    }

    /// Versions of a source package, newest first (`apt-cache showsrc` lists them in index order).
    fn src_versions(&self, pkg: &str) -> Result<Vec<String>> {
        self.update()?;
        let out = output(self.apt_cache().args(["showsrc", pkg]))?;
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Version:").map(|s| s.trim().to_string()))
            .collect();
        v.dedup();
        // Newest first, by dpkg's ordering.
        v.sort_by(|a, b| {
            let gt = Command::new("dpkg")
                .args(["--compare-versions", a, "gt", b])
                .status();
            if gt.is_ok_and(|s| s.success()) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        });
        Ok(v)
    }

    /// Try `f(version)` for each version, newest first: a mirror may list a version (e.g. in
    /// bookworm-security) whose files it cannot serve.
    fn each_version(
        &self,
        pkg: &str,
        versions: Vec<String>,
        mut f: impl FnMut(&str) -> Result<()>,
    ) -> Result<String> {
        let mut last = None;
        for v in &versions {
            match f(v) {
                Ok(()) => return Ok(v.clone()),
                Err(e) => {
                    step(&format!(
                        "{pkg}={v} could not be fetched ({e:#}); trying an older version"
                    ));
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("{pkg}: no versions in the private apt state")))
    }

    /// Download a binary arm64 package into `dir` (fresh) and return the .deb's path.
    pub fn download(&self, pkg: &str, dir: &Path) -> Result<PathBuf> {
        self.download_prefer(pkg, dir, None)
    }

    /// Like [`Apt::download`], trying version `prefer` first when the index has it.
    pub fn download_prefer(&self, pkg: &str, dir: &Path, prefer: Option<&str>) -> Result<PathBuf> {
        let mut versions = self.versions(pkg)?;
        if let Some(p) = prefer.and_then(|p| versions.iter().position(|v| v == p)) {
            let v = versions.remove(p);
            versions.insert(0, v);
        }
        self.each_version(pkg, versions, |v| {
            fresh_dir(dir)?;
            quiet_run(
                self.apt_get()
                    .arg("download")
                    .arg(format!("{pkg}={v}"))
                    .current_dir(dir),
            )
        })?;
        let deb = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download {pkg} produced no .deb"))?;
        Ok(deb)
    }

    /// `apt-get source` (download + unpack with patches) into `dir` (fresh); returns the tree
    /// and the version fetched.
    pub fn source(&self, pkg: &str, dir: &Path) -> Result<(PathBuf, String)> {
        let versions = self.src_versions(pkg)?;
        let version = self.each_version(pkg, versions, |v| {
            fresh_dir(dir)?;
            quiet_run(
                self.apt_get()
                    .args(["source", &format!("{pkg}={v}")])
                    .current_dir(dir),
            )
        })?;
        let tree = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .with_context(|| format!("apt-get source {pkg} unpacked nothing"))?;
        Ok((tree, version))
    }
}

/// Run, echoing the command but keeping its output only for the error.
fn quiet_run(cmd: &mut Command) -> Result<()> {
    step(&format!("$ {}", super::show(cmd)));
    let out = output(cmd)?;
    let _ = out;
    Ok(())
}

/// `dpkg -x deb dir` into a fresh `dir`.
pub fn extract(deb: &Path, dir: &Path) -> Result<()> {
    fresh_dir(dir)?;
    run(Command::new("dpkg").arg("-x").arg(deb).arg(dir))
}

/// Debian's binary Xen hypervisor (no IOREQ server), for the negative test.
pub fn binary_xen(cache: &Path, apt: &Apt) -> Result<PathBuf> {
    let out = cache.join("debian-xen");
    let stamp = Stamp::new(cache.join("stamp-debian-xen"));
    if let Some(p) = stamp
        .get()
        .map(PathBuf::from)
        .filter(|p| p.is_file() && is_xen_binary(p))
    {
        return Ok(p);
    }
    let pkg = apt
        .pkgnames("xen-hypervisor-")?
        .into_iter()
        .find(|p| p.ends_with("-arm64"))
        .context("no xen-hypervisor-*-arm64 package in bookworm")?;
    // Prefer the version the IOREQ Xen was built from, so the two differ only in configuration.
    let same = std::fs::read_to_string(cache.join("xen-src-version")).ok();
    step(&format!("Debian binary Xen: downloading {pkg}"));
    let deb = apt.download_prefer(
        &pkg,
        &cache.join("debs").join(&pkg),
        same.as_deref().map(str::trim),
    )?;
    extract(&deb, &out)?;
    let xen = std::fs::read_dir(out.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("xen-"))
                && p.extension().is_none_or(|e| e != "config" && e != "efi")
        })
        .context("no /boot/xen-* in the hypervisor package")?;
    stamp.set(&xen.to_string_lossy())?;
    Ok(xen)
}

/// `/boot/xen-4.17-arm64`, not its `.config` or `.efi` siblings.
fn is_xen_binary(p: &Path) -> bool {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    n.starts_with("xen-") && !n.ends_with(".config") && !n.ends_with(".efi")
}
