//! What the image does once booted: standalone (no hypervisor) or Xen dom0.
use alloc::string::String;
use alloc::vec::Vec;
use backplane::plan::{self, Entry};
use backplane::platform::dt::MachineInfo;

/// The plan in force: `backplane.plan=` on the command line, else
/// `/chosen/backplane` `plan`, else the board's.
pub fn plan_for(info: &MachineInfo, board_plan: &str) -> Vec<Entry> {
    let (source, text): (&str, String) = if let Some(p) = info
        .bootargs
        .split_whitespace()
        .find_map(|a| a.strip_prefix("backplane.plan="))
    {
        ("command line", p.into())
    } else if let Some(p) = &info.chosen_plan {
        ("/chosen/backplane", p.clone())
    } else {
        ("board", board_plan.into())
    };
    match plan::parse(&text) {
        Ok(p) => {
            log::info!("plan: {} device(s) from the {source}", p.len());
            p
        }
        Err(e) => {
            log::error!("plan: the {source} plan is invalid ({e}); serving nothing");
            Vec::new()
        }
    }
}

pub fn run(info: MachineInfo, heap: (u64, u64)) -> ! {
    if let Some(node) = info.hypervisor.clone()
        && node.compatible.starts_with("xen")
    {
        crate::xen_dom0::run(info, &node);
    }
    let plan = plan_for(&info, backplane::board::PLAN);
    crate::standalone::run(info, plan, heap)
}
