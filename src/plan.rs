//! The service plan: which guest gets which device, where, backed by what.
//!
//! One entry per device, `GUEST:KIND@BASE[/IRQ]=BACKING`, entries separated by
//! `;` or whitespace, e.g. `1:blk@0x2000000/33=virtio-blk0`. It comes from the
//! board file (checked at build time by this same parser, see build.rs),
//! `/chosen/backplane` `plan`, or `backplane.plan=` on the command line.
//! Self-contained (no crate paths) so build.rs can include it.

extern crate alloc;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Device kinds the core serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// virtio-blk.
    Block,
    /// virtio-net.
    Net,
    /// virtio-console.
    Console,
    /// virtio-rng.
    Rng,
}

impl Kind {
    /// Short name used in plans and status lines.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Block => "blk",
            Kind::Net => "net",
            Kind::Console => "console",
            Kind::Rng => "rng",
        }
    }
}

/// What backs a served device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// The `index`th real virtio device of `kind` the machine gives us.
    Virtio { kind: Kind, index: usize },
    /// A RAM disk of `mib` MiB.
    Ram { mib: u32, read_only: bool },
    /// An in-image loopback (net frames / console bytes come back).
    Loopback,
}

/// One planned device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Guest id (Xen domid; 0 = the in-image loopback frontend).
    pub guest: u16,
    /// Device kind.
    pub kind: Kind,
    /// MMIO window base in the guest.
    pub base: u64,
    /// MMIO window size.
    pub size: u64,
    /// Guest interrupt (SPI INTID, 32..1019).
    pub irq: u32,
    /// The backing device.
    pub backing: Backing,
}

/// Window size of every served device.
pub const WINDOW: u64 = 0x200;

fn number(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("'{s}' is not a number"))
}

fn kind(s: &str) -> Result<Kind, String> {
    Ok(match s {
        "blk" => Kind::Block,
        "net" => Kind::Net,
        "console" => Kind::Console,
        "rng" => Kind::Rng,
        _ => {
            return Err(format!(
                "unknown device kind '{s}' (blk, net, console, rng)"
            ));
        }
    })
}

fn backing(s: &str, k: Kind) -> Result<Backing, String> {
    if s == "loop" {
        return match k {
            Kind::Net | Kind::Console => Ok(Backing::Loopback),
            _ => Err(format!("'loop' cannot back a {} device", k.name())),
        };
    }
    if let Some(rest) = s.strip_prefix("ram:").or_else(|| s.strip_prefix("ram-ro:")) {
        if k != Kind::Block {
            return Err(format!("a RAM disk cannot back a {} device", k.name()));
        }
        let mib = number(rest.trim_end_matches('M'))? as u32;
        if mib == 0 || mib > 1024 {
            return Err(format!("RAM disk size {mib} MiB outside 1..1024"));
        }
        return Ok(Backing::Ram {
            mib,
            read_only: s.starts_with("ram-ro:"),
        });
    }
    if let Some(rest) = s.strip_prefix("virtio-") {
        let split = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (name, idx) = rest.split_at(split);
        let real = kind(name)?;
        if real != k {
            return Err(format!(
                "a real {} device cannot back a {} device",
                real.name(),
                k.name()
            ));
        }
        let index = if idx.is_empty() {
            0
        } else {
            number(idx)? as usize
        };
        return Ok(Backing::Virtio { kind: real, index });
    }
    Err(format!(
        "unknown backing '{s}' (virtio-<kind><n>, ram:<MiB>, ram-ro:<MiB>, loop)"
    ))
}

fn entry(s: &str) -> Result<Entry, String> {
    let (lhs, back) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': missing '=BACKING'"))?;
    let (guest, rest) = lhs
        .split_once(':')
        .ok_or_else(|| format!("'{s}': missing 'GUEST:'"))?;
    let (k, place) = rest
        .split_once('@')
        .ok_or_else(|| format!("'{s}': missing '@BASE'"))?;
    let (base, irq) = match place.split_once('/') {
        Some((b, i)) => (number(b)?, Some(number(i)?)),
        None => (number(place)?, None),
    };
    let guest = u16::try_from(number(guest)?).map_err(|_| format!("'{s}': guest id too large"))?;
    let k = kind(k)?;
    if base % WINDOW != 0 || base.checked_add(WINDOW).is_none() {
        return Err(format!("'{s}': base {base:#x} is not {WINDOW:#x}-aligned"));
    }
    let irq = irq.unwrap_or(0);
    if guest != 0 && !(32..1020).contains(&irq) {
        return Err(format!("'{s}': interrupt {irq} is not an SPI (32..1019)"));
    }
    Ok(Entry {
        guest,
        kind: k,
        base,
        size: WINDOW,
        irq: irq as u32,
        backing: backing(back, k)?,
    })
}

/// Parses and checks a plan: entries well-formed, no two windows of one
/// guest overlapping, no interrupt used twice in one guest, no real device
/// backing two served devices.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut out: Vec<Entry> = Vec::new();
    for item in text
        .split(|c: char| c == ';' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let e = entry(item)?;
        for o in &out {
            if o.guest == e.guest && o.base < e.base + e.size && e.base < o.base + o.size {
                return Err(format!(
                    "'{item}': window overlaps guest {}'s {} at {:#x}",
                    o.guest,
                    o.kind.name(),
                    o.base
                ));
            }
            if o.guest == e.guest && e.guest != 0 && o.irq == e.irq {
                return Err(format!(
                    "'{item}': interrupt {} already used in guest {}",
                    e.irq, e.guest
                ));
            }
            if matches!(e.backing, Backing::Virtio { .. }) && o.backing == e.backing {
                return Err(format!(
                    "'{item}': the same real device backs two served devices"
                ));
            }
        }
        out.push(e);
    }
    Ok(out)
}
