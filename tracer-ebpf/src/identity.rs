//! A thread's namespaces and capabilities, kept in its pending-call slot between calls (see
//! `tracer_common::Identity`), and the programs that drop them when a call may change them.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use tracer_common::{Identity, PendingCall, record::NsInums};

use crate::{
    maps::{KEEP_IDENTITY, PENDING, is_traced},
    store::put,
    task::{capabilities, namespaces},
};

/// Writes the thread's namespaces into `ns` and returns its effective capabilities: kept
/// ones when the slot has them, else read from the task and kept for the next call.
#[inline(always)]
pub fn identity(ns: &mut NsInums, slot: Option<&mut PendingCall>) -> Option<u64> {
    let keep = KEEP_IDENTITY.load() != 0;
    match slot {
        Some(slot) if keep && slot.identity.known != 0 => {
            let kept = &slot.identity;
            copy_ns(ns, &kept.ns);
            (kept.known & Identity::CAPS != 0).then_some(kept.cap_effective)
        }
        slot => {
            namespaces(ns, true);
            let caps = capabilities();
            if let Some(slot) = slot.filter(|_| keep) {
                let kept = &mut slot.identity;
                copy_ns(&mut kept.ns, ns);
                put(&mut kept.cap_effective, caps.unwrap_or(0));
                let known =
                    if caps.is_some() { Identity::KNOWN | Identity::CAPS } else { Identity::KNOWN };
                put(&mut kept.known, known);
            }
            caps
        }
    }
}

/// Field by field: a whole-struct copy would become a byte loop (see `store`).
#[inline(always)]
fn copy_ns(dst: &mut NsInums, src: &NsInums) {
    put(&mut dst.net, src.net);
    put(&mut dst.mnt, src.mnt);
    put(&mut dst.pid, src.pid);
    put(&mut dst.user, src.user);
    put(&mut dst.uts, src.uts);
    put(&mut dst._pad, 0);
}

/// Drops the slot of thread `pid_tgid` of a traced process, identity and all.
#[inline(always)]
pub fn forget(pid_tgid: u64) {
    if is_traced((pid_tgid >> 32) as u32) {
        let _ = PENDING.remove(pid_tgid);
    }
}

macro_rules! forget_after {
    ($($program:ident),*) => {
        $(
            #[tracepoint]
            pub fn $program(_ctx: TracePointContext) -> u32 {
                forget(bpf_get_current_pid_tgid());
                0
            }
        )*
    };
}

tracer_common::for_each_identity_change!(forget_after);
