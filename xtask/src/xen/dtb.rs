//! Device trees for booting Xen on QEMU `virt`: QEMU's own DTB (dumped with `dumpdtb`) plus
//! `/chosen` entries for Xen (command line, dom0 kernel/ramdisk modules, one `xen,domain` node
//! per dom0less domU) and, per domU, a partial device tree carrying its `virtio,mmio` nodes.
use super::{output, run};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Xen's phandle for a domU's virtual GIC (`GUEST_PHANDLE_GIC`).
pub const GUEST_PHANDLE_GIC: u32 = 65000;
/// The phandle libxl gives the `xen,grant-dma` node (`GUEST_PHANDLE_IOMMU`).
pub const GUEST_PHANDLE_IOMMU: u32 = 65001;

/// One virtio-mmio device a domU sees (served by an IOREQ server in dom0).
#[derive(Debug, Clone)]
pub struct VirtioMmio {
    /// Guest-physical base (libxl uses 0x0200_0000 + n * 0x200).
    pub base: u64,
    /// Window size (0x200 for virtio-mmio).
    pub size: u64,
    /// GIC interrupt ID (INTID, >= 32; libxl uses 33..=43). The DT cell is `intid - 32`; the
    /// same INTID is what `dm_op set_irq_level` takes.
    pub intid: u32,
    /// Level-triggered (DT flag 4) instead of edge-rising (flag 1). Xen's vGIC ignores level 0,
    /// so edge is what works (reference/xen.md §12); level is here for experiments.
    pub level: bool,
}

impl VirtioMmio {
    /// Device `n` at libxl's layout: base 0x0200_0000 + n*0x200, INTID 33 + n, edge.
    pub fn libxl_slot(n: u32) -> Self {
        VirtioMmio {
            base: 0x0200_0000 + 0x200 * n as u64,
            size: 0x200,
            intid: 33 + n,
            level: false,
        }
    }
}

/// A dom0less domU.
#[derive(Debug, Clone)]
pub struct DomU {
    pub kernel: PathBuf,
    pub ramdisk: Option<PathBuf>,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub bootargs: String,
    pub virtio: Vec<VirtioMmio>,
    /// Give the domU a virtual PL011 (its console, printed by Xen as `(XEN) DOM<n>: ...`).
    pub vpl011: bool,
    /// Grant-based virtio (reference/xen.md §7): the domain node gets
    /// `xen,enhanced = "no-xenstore"` (Xen then builds a `/hypervisor` node with the grant-table
    /// window, and no xenstore event channel), and each virtio node gets
    /// `iommus = <&xen_grant_dma 0>` (backend dom0) pointing at a `xen,grant-dma` node.
    pub grant_virtio: bool,
}

/// What Xen boots: dom0 and the dom0less domUs.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The hypervisor (arm64 Image), loaded with QEMU `-kernel`.
    pub xen: PathBuf,
    pub xen_bootargs: String,
    pub dom0_kernel: PathBuf,
    pub dom0_ramdisk: Option<PathBuf>,
    pub dom0_bootargs: String,
    pub domus: Vec<DomU>,
}

impl Boot {
    /// Default Xen command line: PL011 console, 512 MiB / 1 vCPU dom0, all guest logs.
    pub const DEFAULT_XEN_BOOTARGS: &'static str = "console=dtuart dtuart=/pl011@9000000 dom0_mem=512M dom0_max_vcpus=1 bootscrub=0 loglvl=all guest_loglvl=all";
}

/// One file QEMU places in guest RAM with `-device loader`.
#[derive(Debug, Clone)]
pub struct Module {
    pub file: PathBuf,
    pub addr: u64,
    pub size: u64,
}

/// The generated device tree and the modules it points at.
#[derive(Debug, Clone)]
pub struct Generated {
    pub dtb: PathBuf,
    #[allow(dead_code)] // kept beside the DTB for reading a failed run
    pub dts: PathBuf,
    pub modules: Vec<Module>,
}

/// Start of RAM on QEMU `virt`.
const RAM_BASE: u64 = 0x4000_0000;
const ALIGN: u64 = 0x20_0000;

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn cells(v: u64) -> String {
    format!("0x{:x} 0x{:x}", v >> 32, v & 0xffff_ffff)
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Dump QEMU's device tree for these machine options (cached by the options' text).
pub fn dump_qemu_dtb(machine_args: &[String], dir: &Path) -> Result<PathBuf> {
    let key = machine_args.join(" ");
    let out = dir.join("qemu-virt.dtb");
    let keyfile = dir.join("qemu-virt.dtb.args");
    if out.is_file() && std::fs::read_to_string(&keyfile).is_ok_and(|k| k == key) {
        return Ok(out);
    }
    // `dumpdtb` is a machine property: append it to the `-M` value.
    let mut args = machine_args.to_vec();
    let m = args
        .iter()
        .position(|a| a == "-M" || a == "-machine")
        .context("machine args need -M")?;
    args[m + 1] = format!("{},dumpdtb={}", args[m + 1], out.display());
    output(
        Command::new("qemu-system-aarch64")
            .args(&args)
            .args(["-display", "none"]),
    )?;
    std::fs::write(&keyfile, key)?;
    Ok(out)
}

/// The partial device tree (`/passthrough`) that gives a domU its virtio-mmio nodes; with
/// `grants`, also the `xen,grant-dma` node their `iommus` name (backend domain 0).
pub fn partial_dts(devs: &[VirtioMmio], grants: bool) -> String {
    let mut s = String::from(
        "/dts-v1/;\n\n/ {\n\t#address-cells = <2>;\n\t#size-cells = <2>;\n\n\tpassthrough {\n\t\tcompatible = \"simple-bus\";\n\t\tranges;\n\t\t#address-cells = <2>;\n\t\t#size-cells = <2>;\n",
    );
    if grants {
        let _ = write!(
            s,
            "\n\t\txen_grant_dma {{\n\t\t\tcompatible = \"xen,grant-dma\";\n\t\t\t#iommu-cells = <1>;\n\t\t\tphandle = <{GUEST_PHANDLE_IOMMU}>;\n\t\t}};\n"
        );
    }
    for d in devs {
        let iommus = if grants {
            format!("\t\t\tiommus = <{GUEST_PHANDLE_IOMMU} 0>;\n")
        } else {
            String::new()
        };
        let _ = write!(
            s,
            "\n\t\tvirtio@{:x} {{\n\t\t\tcompatible = \"virtio,mmio\";\n\t\t\treg = <{} {}>;\n\t\t\tinterrupt-parent = <{}>;\n\t\t\tinterrupts = <0 {} {}>;\n\t\t\tdma-coherent;\n{}\t\t}};\n",
            d.base,
            cells(d.base),
            cells(d.size),
            GUEST_PHANDLE_GIC,
            d.intid - 32,
            if d.level { 4 } else { 1 },
            iommus
        );
    }
    s.push_str("\t};\n};\n");
    s
}

fn compile(dts: &Path, dtb: &Path) -> Result<()> {
    run(Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(dtb)
        .arg(dts))
}

fn check(boot: &Boot) -> Result<()> {
    for d in &boot.domus {
        for v in &d.virtio {
            if v.intid < 32 || v.intid >= 1020 {
                bail!(
                    "virtio-mmio at {:#x}: INTID {} is not an SPI",
                    v.base,
                    v.intid
                );
            }
            if v.size == 0 || v.base % 0x200 != 0 {
                bail!(
                    "virtio-mmio at {:#x}: base must be 0x200-aligned and size non-zero",
                    v.base
                );
            }
        }
        for (i, a) in d.virtio.iter().enumerate() {
            for b in &d.virtio[i + 1..] {
                if a.base < b.base + b.size && b.base < a.base + a.size {
                    bail!(
                        "virtio-mmio windows {:#x} and {:#x} overlap",
                        a.base,
                        b.base
                    );
                }
                if a.intid == b.intid {
                    bail!(
                        "virtio-mmio devices {:#x} and {:#x} share INTID {}",
                        a.base,
                        b.base,
                        a.intid
                    );
                }
            }
        }
    }
    Ok(())
}

/// Write the DTS/DTB for `boot` into `dir`, laying out modules from `ram_mib`'s DTB hole upward.
pub fn generate(
    boot: &Boot,
    machine_args: &[String],
    ram_mib: u64,
    dir: &Path,
) -> Result<Generated> {
    check(boot)?;
    std::fs::create_dir_all(dir)?;
    let base_dtb = dump_qemu_dtb(machine_args, dir)?;
    let mut dts = output(
        Command::new("dtc")
            .args(["-q", "-I", "dtb", "-O", "dts"])
            .arg(&base_dtb),
    )?;

    // QEMU puts the DTB at RAM + min(RAM/2, 128 MiB) (its initrd slot, empty here); keep 16 MiB
    // clear above it and place modules from there, 2 MiB aligned.
    let dtb_at = RAM_BASE + (ram_mib * 0x10_0000 / 2).min(128 * 0x10_0000);
    let mut next = dtb_at + 0x100_0000;
    let mut modules = Vec::new();
    let mut place = |file: &Path| -> Result<Module> {
        let size = std::fs::metadata(file)
            .with_context(|| format!("{}", file.display()))?
            .len();
        let m = Module {
            file: file.to_path_buf(),
            addr: next,
            size,
        };
        next = align_up(next + size, ALIGN);
        modules.push(m.clone());
        Ok(m)
    };
    let module_node = |indent: &str, compat: &str, m: &Module, bootargs: Option<&str>| {
        let mut s = format!(
            "{indent}module@{:x} {{\n{indent}\tcompatible = \"multiboot,{compat}\", \"multiboot,module\";\n{indent}\treg = <{} {}>;\n",
            m.addr,
            cells(m.addr),
            cells(m.size)
        );
        if let Some(b) = bootargs {
            let _ = writeln!(s, "{indent}\tbootargs = {};", quote(b));
        }
        let _ = writeln!(s, "{indent}}};");
        s
    };

    let mut chosen = String::new();
    let _ = writeln!(chosen, "\t\t#address-cells = <2>;\n\t\t#size-cells = <2>;");
    let _ = writeln!(
        chosen,
        "\t\txen,xen-bootargs = {};",
        quote(&boot.xen_bootargs)
    );
    let k = place(&boot.dom0_kernel)?;
    chosen.push_str(&module_node(
        "\t\t",
        "kernel",
        &k,
        Some(&boot.dom0_bootargs),
    ));
    if let Some(r) = &boot.dom0_ramdisk {
        let r = place(r)?;
        chosen.push_str(&module_node("\t\t", "ramdisk", &r, None));
    }
    for (i, d) in boot.domus.iter().enumerate() {
        let n = i + 1;
        let _ = writeln!(chosen, "\n\t\tdomU{n} {{");
        let _ = writeln!(
            chosen,
            "\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <2>;\n\t\t\t#size-cells = <2>;"
        );
        let _ = writeln!(chosen, "\t\t\tmemory = <{}>;", cells(d.memory_mib * 1024));
        let _ = writeln!(chosen, "\t\t\tcpus = <{}>;", d.vcpus);
        if d.vpl011 {
            let _ = writeln!(chosen, "\t\t\tvpl011;");
        }
        if d.grant_virtio {
            let _ = writeln!(chosen, "\t\t\txen,enhanced = \"no-xenstore\";");
        }
        let k = place(&d.kernel)?;
        chosen.push_str(&module_node("\t\t\t", "kernel", &k, Some(&d.bootargs)));
        if let Some(r) = &d.ramdisk {
            let r = place(r)?;
            chosen.push_str(&module_node("\t\t\t", "ramdisk", &r, None));
        }
        if !d.virtio.is_empty() {
            let pdts = dir.join(format!("domU{n}-partial.dts"));
            let pdtb = dir.join(format!("domU{n}-partial.dtb"));
            std::fs::write(&pdts, partial_dts(&d.virtio, d.grant_virtio))?;
            compile(&pdts, &pdtb)?;
            let p = place(&pdtb)?;
            chosen.push_str(&module_node("\t\t\t", "device-tree", &p, None));
        }
        let _ = writeln!(chosen, "\t\t}};");
    }
    // dtc merges a second definition of `/chosen` into QEMU's.
    let _ = write!(dts, "\n/ {{\n\tchosen {{\n{chosen}\t}};\n}};\n");
    let dts_path = dir.join("xen-boot.dts");
    let dtb_path = dir.join("xen-boot.dtb");
    std::fs::write(&dts_path, &dts)?;
    compile(&dts_path, &dtb_path)?;
    if std::fs::metadata(&dtb_path)?.len() >= 0x100_0000 {
        bail!("generated DTB is too large for the slot below the modules");
    }
    Ok(Generated {
        dtb: dtb_path,
        dts: dts_path,
        modules,
    })
}
