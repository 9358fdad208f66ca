//! The boot device tree, parsed once into the facts the image needs.
use alloc::string::String;
use alloc::vec::Vec;
use fdt::Fdt;

/// Which interrupt controller, where.
#[derive(Clone, Copy, Debug)]
pub enum GicInfo {
    /// GICv2: distributor and CPU interface windows.
    V2 { dist: (u64, u64), cpu: (u64, u64) },
    /// GICv3: distributor and redistributor windows.
    V3 {
        dist: (u64, u64),
        redist: (u64, u64),
    },
}

/// A `virtio,mmio` transport the machine gives us.
#[derive(Clone, Copy, Debug)]
pub struct VirtioMmioNode {
    /// Register window.
    pub base: u64,
    /// Window size.
    pub size: u64,
    /// GIC INTID of its interrupt.
    pub intid: u32,
}

/// `/hypervisor` (Xen).
#[derive(Clone, Debug, Default)]
pub struct HypervisorNode {
    /// `compatible`, first string.
    pub compatible: String,
    /// `reg` entries: [0] grant table window, [1..] extended regions.
    pub regions: Vec<(u64, u64)>,
    /// Event-channel upcall INTID.
    pub evtchn_intid: u32,
}

/// Everything the image reads from the device tree.
#[derive(Debug)]
pub struct MachineInfo {
    /// RAM banks.
    pub memory: Vec<(u64, u64)>,
    /// Reserved memory (memreserve entries and /reserved-memory children).
    pub reserved: Vec<(u64, u64)>,
    /// The console UART, if the tree names a PL011.
    pub pl011: Option<(u64, u64)>,
    /// Interrupt controller.
    pub gic: GicInfo,
    /// Virtual timer INTID.
    pub vtimer_intid: u32,
    /// PSCI conduit is SMC (else HVC).
    pub psci_smc: bool,
    /// `/hypervisor` when present.
    pub hypervisor: Option<HypervisorNode>,
    /// virtio-mmio transports, in tree order.
    pub virtio_mmio: Vec<VirtioMmioNode>,
    /// `/chosen/bootargs`.
    pub bootargs: String,
    /// `/chosen/backplane` `plan` property, if present.
    pub chosen_plan: Option<String>,
    /// The tree's own location.
    pub dtb: (u64, u64),
}

/// Why the device tree could not be used.
#[derive(Debug)]
pub enum DtError {
    /// No pointer, or it points nowhere plausible.
    Missing(u64),
    /// The header or structure is invalid.
    Corrupt(u64),
    /// A required node is absent.
    NoNode(&'static str),
}

impl core::fmt::Display for DtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DtError::Missing(p) => write!(f, "no device tree (x0 = {p:#x})"),
            DtError::Corrupt(p) => write!(f, "device tree at {p:#x} is corrupt"),
            DtError::NoNode(n) => write!(f, "device tree has no {n}"),
        }
    }
}

const FDT_MAGIC: u32 = 0xd00d_feed;

/// Checks the header at `ptr` without trusting anything else.
pub fn validate(ptr: u64) -> Result<usize, DtError> {
    if ptr == 0 || !ptr.is_multiple_of(8) || ptr >= (512 << 30) {
        return Err(DtError::Missing(ptr));
    }
    // SAFETY: the pointer is 8-aligned and inside the identity map. It is not
    // trusted yet and may name device memory, hence volatile loads for this
    // probe only; reading two words has no side effect on RAM or ROM.
    let (magic, size) = unsafe {
        let p = ptr as *const u32;
        (
            u32::from_be(p.read_volatile()),
            u32::from_be(p.add(1).read_volatile()),
        )
    };
    if magic != FDT_MAGIC {
        return Err(DtError::Missing(ptr));
    }
    if !(40..=(2 << 20)).contains(&size) {
        return Err(DtError::Corrupt(ptr));
    }
    // The parser trusts the header's offsets; check them first so a corrupt
    // tree is reported as such rather than as a parser panic.
    let word = |i: usize| -> u32 {
        // SAFETY: i < 10, inside the 40-byte header checked above; the magic
        // says this is the tree the loader left in RAM (ordinary memory).
        u32::from_be(unsafe { (ptr as *const u32).add(i).read() })
    };
    let (off_struct, off_strings, off_rsvmap) = (word(2), word(3), word(4));
    let (version, size_strings, size_struct) = (word(5), word(8), word(9));
    let inside = |off: u32, len: u32| off.checked_add(len).is_some_and(|end| end <= size);
    let ok = version >= 16
        && inside(off_struct, size_struct)
        && inside(off_strings, size_strings)
        && inside(off_rsvmap, 16)
        && off_struct.is_multiple_of(4)
        && off_rsvmap.is_multiple_of(8);
    if !ok {
        return Err(DtError::Corrupt(ptr));
    }
    Ok(size as usize)
}

fn reg_pairs(node: &fdt::node::FdtNode) -> Vec<(u64, u64)> {
    node.reg()
        .map(|it| {
            it.map(|r| (r.starting_address as u64, r.size.unwrap_or(0) as u64))
                .collect()
        })
        .unwrap_or_default()
}

fn cells(node: &fdt::node::FdtNode, name: &str) -> Vec<u32> {
    node.property(name)
        .map(|p| {
            p.value
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
        .unwrap_or_default()
}

/// GIC INTID from a 3-cell `interrupts` specifier.
fn intid(spec: &[u32]) -> Option<u32> {
    match spec {
        [0, n, _] => Some(n + 32),
        [1, n, _] => Some(n + 16),
        _ => None,
    }
}

/// RAM banks and reserved ranges (at most 16 each), read without allocating
/// so the heap can be placed before the full parse.
pub type Ranges = heapless::Vec<(u64, u64), 16>;

/// Memory banks and reserved ranges, without the heap.
pub fn memory_layout(ptr: u64, size: usize) -> Result<(Ranges, Ranges), DtError> {
    // SAFETY: as in `parse`.
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, size) };
    let fdt = Fdt::new(bytes).map_err(|_| DtError::Corrupt(ptr))?;
    let mut ram = Ranges::new();
    for n in fdt.all_nodes().filter(|n| is_memory(n)) {
        for r in n.reg().into_iter().flatten() {
            let r = (r.starting_address as u64, r.size.unwrap_or(0) as u64);
            if r.1 > 0 {
                let _ = ram.push(r);
            }
        }
    }
    if ram.is_empty() {
        return Err(DtError::NoNode("memory"));
    }
    let mut reserved = Ranges::new();
    for r in fdt.memory_reservations() {
        let _ = reserved.push((r.address() as u64, r.size() as u64));
    }
    if let Some(rm) = fdt.find_node("/reserved-memory") {
        for child in rm.children() {
            for r in child.reg().into_iter().flatten() {
                let _ = reserved.push((r.starting_address as u64, r.size.unwrap_or(0) as u64));
            }
        }
    }
    Ok((ram, reserved))
}

fn is_memory(n: &fdt::node::FdtNode) -> bool {
    n.name.starts_with("memory")
        && n.property("device_type").and_then(|p| p.as_str()) == Some("memory")
}

/// Parses the tree at `ptr` (already validated to be `size` bytes).
pub fn parse(ptr: u64, size: usize) -> Result<MachineInfo, DtError> {
    // SAFETY: `validate` checked the header; the tree stays in place (it is
    // excluded from the heap) for the rest of the run.
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, size) };
    let fdt = Fdt::new(bytes).map_err(|_| DtError::Corrupt(ptr))?;

    let memory: Vec<(u64, u64)> = fdt
        .all_nodes()
        .filter(is_memory)
        .flat_map(|n| reg_pairs(&n))
        .filter(|r| r.1 > 0)
        .collect();
    if memory.is_empty() {
        return Err(DtError::NoNode("memory"));
    }
    let mut reserved: Vec<(u64, u64)> = fdt
        .memory_reservations()
        .map(|r| (r.address() as u64, r.size() as u64))
        .collect();
    if let Some(rm) = fdt.find_node("/reserved-memory") {
        for child in rm.children() {
            reserved.extend(reg_pairs(&child));
        }
    }

    let pl011 = fdt
        .find_compatible(&["arm,pl011"])
        .and_then(|n| reg_pairs(&n).first().copied());

    let gic = if let Some(n) = fdt.find_compatible(&["arm,gic-v3"]) {
        let r = reg_pairs(&n);
        if r.len() < 2 {
            return Err(DtError::NoNode("GICv3 distributor and redistributor"));
        }
        GicInfo::V3 {
            dist: r[0],
            redist: r[1],
        }
    } else if let Some(n) =
        fdt.find_compatible(&["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a9-gic"])
    {
        let r = reg_pairs(&n);
        if r.len() < 2 {
            return Err(DtError::NoNode("GICv2 distributor and CPU interface"));
        }
        GicInfo::V2 {
            dist: r[0],
            cpu: r[1],
        }
    } else {
        return Err(DtError::NoNode("interrupt controller (GICv2/v3)"));
    };

    let vtimer_intid = fdt
        .find_compatible(&["arm,armv8-timer", "arm,armv7-timer"])
        .map(|n| cells(&n, "interrupts"))
        .and_then(|c| c.chunks_exact(3).nth(2).and_then(intid))
        .unwrap_or(27);

    let psci_smc = fdt
        .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
        .and_then(|n| n.property("method").and_then(|p| p.as_str()))
        == Some("smc");

    let hypervisor = fdt.find_node("/hypervisor").map(|n| HypervisorNode {
        compatible: n.compatible().map(|c| c.first()).unwrap_or("").into(),
        regions: reg_pairs(&n),
        evtchn_intid: intid(&cells(&n, "interrupts")).unwrap_or(31),
    });

    let virtio_mmio = fdt
        .all_nodes()
        .filter(|n| {
            n.compatible()
                .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"))
        })
        .filter_map(|n| {
            let (base, size) = *reg_pairs(&n).first()?;
            let intid = intid(&cells(&n, "interrupts")).unwrap_or(0);
            Some(VirtioMmioNode { base, size, intid })
        })
        .collect();

    let chosen = fdt.find_node("/chosen");
    let bootargs = chosen
        .as_ref()
        .and_then(|c| c.property("bootargs").and_then(|p| p.as_str()))
        .unwrap_or("")
        .into();
    let chosen_plan = fdt
        .find_node("/chosen/backplane")
        .and_then(|n| n.property("plan").and_then(|p| p.as_str()))
        .map(String::from);

    Ok(MachineInfo {
        memory,
        reserved,
        pl011,
        gic,
        vtimer_intid,
        psci_smc,
        hypervisor,
        virtio_mmio,
        bootargs,
        chosen_plan,
        dtb: (ptr, size as u64),
    })
}
