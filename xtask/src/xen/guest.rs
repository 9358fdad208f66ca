use super::debian::Apt;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
pub struct Kernel { pub image: PathBuf, pub release: String }
pub fn kernel(_c: &Path, _a: &Apt) -> Result<Kernel> { bail!("todo") }
pub fn busybox(_c: &Path, _a: &Apt) -> Result<PathBuf> { bail!("todo") }
pub fn initramfs(_c: &Path, _k: &Kernel, _b: &Path) -> Result<(PathBuf, Vec<String>)> { bail!("todo") }
