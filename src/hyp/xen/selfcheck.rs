//! Dom0 plumbing checks, one `xen-check <name> ok|FAILED` line each, so a
//! broken layer is named on its own rather than as "the guest hung".
use super::abi::{PAGE_SHIFT, mapspace};
use super::hypercall::{self, Hvc};
use super::{Xen, XenError};

fn report(name: &str, r: Result<alloc::string::String, alloc::string::String>) -> bool {
    match r {
        Ok(detail) => {
            log::info!("xen-check {name} ok {detail}");
            true
        }
        Err(why) => {
            log::error!("xen-check {name} FAILED {why}");
            false
        }
    }
}

/// An event sent to ourselves through a bound interdomain pair must arrive
/// as an upcall on the event-channel PPI. `wait_upcall` waits (with
/// interrupts on) until Xen flags the upcall or gives up.
fn event_loop(
    xen: &mut Xen<Hvc>,
    wait_upcall: &dyn Fn(&Xen<Hvc>) -> bool,
) -> Result<alloc::string::String, alloc::string::String> {
    let e = |what: &str, err: XenError| alloc::format!("{what}: {err}");
    let a = hypercall::evtchn_alloc_unbound(0).map_err(|x| e("alloc_unbound", x))?;
    let b = hypercall::evtchn_bind_interdomain(0, a).map_err(|x| e("bind_interdomain", x))?;
    let _ = xen.events().unmask(a);
    hypercall::evtchn_send(b).map_err(|x| e("send", x))?;
    let upcall = wait_upcall(xen);
    let mut seen = false;
    xen.events().take_pending(|p| seen |= p == a);
    let _ = hypercall::evtchn_close(b);
    let _ = hypercall::evtchn_close(a);
    match (upcall, seen) {
        (true, true) => Ok(alloc::format!("ports {a}<->{b}, upcall taken")),
        (false, _) => Err("no upcall arrived".into()),
        (true, false) => Err(alloc::format!("upcall without port {a} pending")),
    }
}

/// Runs every check; returns how many failed. `grant_window` is the
/// `/hypervisor` reg[0] range; `probe` is a guest whose kernel Image Xen
/// placed at 0x4000_0000 (dom0less), read through a foreign mapping.
pub fn run(
    xen: &mut Xen<Hvc>,
    grant_window: Option<(u64, u64)>,
    probe: Option<u16>,
    wait_upcall: &dyn Fn(&Xen<Hvc>) -> bool,
) -> usize {
    let mut failed = 0;
    let mut check = |name: &str, r| {
        if !report(name, r) {
            failed += 1;
        }
    };
    check(
        "console_io",
        hypercall::console_write(b"")
            .map(|_| "write accepted".into())
            .map_err(|e| alloc::format!("{e}")),
    );
    check(
        "xen_version",
        hypercall::xen_version()
            .map(|(a, b)| alloc::format!("{a}.{b}"))
            .map_err(|e| alloc::format!("{e}")),
    );
    check("shared_info", Ok("mapped, vcpu_info registered".into()));
    check("event_channel", event_loop(xen, wait_upcall));
    check(
        "grant_table",
        match grant_window {
            None => Err("no grant-table window in /hypervisor".into()),
            Some((base, _)) => {
                // SAFETY: reg[0] is the IPA window Xen reserves for dom0's own
                // grant table; nothing else is mapped there.
                unsafe { hypercall::add_to_physmap(mapspace::GRANT_TABLE, 0, base >> PAGE_SHIFT) }
                    .map(|()| alloc::format!("frame 0 at {base:#x}"))
                    .map_err(|e| alloc::format!("{e}"))
            }
        },
    );
    if let Some(domid) = probe {
        let r = match xen.guest_memory(domid) {
            None => Err(alloc::format!("dom{domid} has no IOREQ server")),
            Some(mem) => match mem.read_u32(0x4000_0038) {
                Ok(0x644d_5241) => Ok(alloc::format!(
                    "dom{domid} Image magic 0x644d5241 at 0x40000038"
                )),
                Ok(v) => Err(alloc::format!(
                    "dom{domid} read {v:#x} at 0x40000038, not the Image magic"
                )),
                Err(e) => Err(alloc::format!("dom{domid}: {e}")),
            },
        };
        check("foreign_map", r);
    }
    failed
}
