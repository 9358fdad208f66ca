//! Compiles the board file (boards/<BACKPLANE_BOARD>.toml, default qemu-virt)
//! into the image, rejecting invalid service plans with a clear message.
use std::fmt::Write;

#[allow(dead_code)]
#[path = "src/plan.rs"]
mod plan;

/// The small TOML subset board files use: `key = value` and string arrays.
fn read_board(text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = Vec::new();
    let mut lines = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim());
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("board line without '=': {line}"))?;
        let (k, mut v) = (k.trim().to_string(), v.trim().to_string());
        if v.starts_with('[') {
            while !v.ends_with(']') {
                let next = lines.next().ok_or("unterminated array")?;
                v.push_str(next);
            }
            let items = v[1..v.len() - 1]
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_string())
                .filter(|s| !s.is_empty())
                .collect();
            out.push((k, items));
        } else {
            out.push((k, vec![v.trim_matches('"').to_string()]));
        }
    }
    Ok(out)
}

fn main() {
    println!("cargo:rerun-if-env-changed=BACKPLANE_BOARD");
    println!("cargo:rerun-if-changed=boards");
    println!("cargo:rerun-if-changed=src/plan.rs");
    let board = std::env::var("BACKPLANE_BOARD").unwrap_or_else(|_| "qemu-virt".into());
    let path = format!("boards/{board}.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("board {path}: {e}"));
    let kv = read_board(&text).unwrap_or_else(|e| panic!("board {path}: {e}"));
    let get = |k: &str| {
        kv.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut rs = String::new();
    let name = get("name").join("");
    writeln!(rs, "/// Board name.\npub const NAME: &str = {name:?};").unwrap();
    let uart = get("uart").join("");
    let uart = u64::from_str_radix(uart.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("board {path}: uart '{uart}' is not a hex address"));
    writeln!(rs, "/// Fallback PL011.\npub const UART: u64 = {uart:#x};").unwrap();
    for (key, konst) in [("serve", "PLAN"), ("serve_xen", "PLAN_XEN")] {
        let plan_text = get(key).join(";");
        if let Err(e) = plan::parse(&plan_text) {
            panic!("board {path}: invalid plan in '{key}': {e}");
        }
        writeln!(
            rs,
            "/// Service plan ({key}).\npub const {konst}: &str = {plan_text:?};"
        )
        .unwrap();
    }
    let after = get("after_selftest").join("");
    if after != "poweroff" && after != "serve" {
        panic!("board {path}: after_selftest must be \"poweroff\" or \"serve\", not '{after}'");
    }
    writeln!(rs, "/// Power off after the standalone self-test.\npub const POWEROFF_AFTER_SELFTEST: bool = {};", after == "poweroff").unwrap();
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("board.rs");
    std::fs::write(out, rs).unwrap();
}
