//! Who made a call: a thread's namespaces, capabilities, uid, gid and cgroup, kept in its
//! pending-call slot between calls (see `tracer_common::Identity`), and the programs that drop
//! them or make them stale when something may change them.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{Identity, PendingCall, SyscallRecord, record::NsInums};

use crate::{
    maps::{CGROUP_MOVED, KEEP_IDENTITY, PENDING, is_traced},
    store::put,
    task::{capabilities, namespaces},
};

/// Writes who made the call into `rec` (uid, gid, cgroup; namespaces unless `context`, zeros
/// then) and returns the effective capabilities (`None`: unknown, or `context`). Kept ones
/// when the slot has them and no cgroup move came after they were read (at `now`, kernel
/// time), else read from the task and kept for the thread's next calls.
#[inline(always)]
pub fn identity(
    rec: &mut SyscallRecord,
    slot: Option<&mut PendingCall>,
    context: bool,
    now: u64,
) -> Option<u64> {
    let slot = slot.filter(|_| KEEP_IDENTITY.load() != 0);
    let fresh =
        |slot: &PendingCall| slot.identity.known != 0 && slot.identity.read_ns > last_cgroup_move();
    let slot = match slot {
        Some(slot) if fresh(slot) => {
            let kept = &slot.identity;
            put(&mut rec.uid, kept.uid);
            put(&mut rec.gid, kept.gid);
            put(&mut rec.cgroup_id, kept.cgroup_id);
            if context {
                namespaces(&mut rec.ns, false);
                return None;
            }
            copy_ns(&mut rec.ns, &kept.ns);
            return (kept.known & Identity::CAPS != 0).then_some(kept.cap_effective);
        }
        slot => slot,
    };
    let uid_gid = bpf_get_current_uid_gid();
    put(&mut rec.uid, uid_gid as u32);
    put(&mut rec.gid, (uid_gid >> 32) as u32);
    // SAFETY: helper without arguments, callable from tracepoints.
    put(&mut rec.cgroup_id, unsafe { bpf_get_current_cgroup_id() });
    let Some(slot) = slot else {
        namespaces(&mut rec.ns, !context);
        return if context { None } else { capabilities() };
    };
    // Read in full even for a context record, which goes without namespaces and
    // capabilities: they are kept for the thread's next calls.
    let kept = &mut slot.identity;
    namespaces(&mut kept.ns, true);
    let caps = capabilities();
    put(&mut kept.cap_effective, caps.unwrap_or(0));
    put(&mut kept.uid, uid_gid as u32);
    put(&mut kept.gid, (uid_gid >> 32) as u32);
    put(&mut kept.cgroup_id, rec.cgroup_id);
    put(&mut kept.read_ns, now);
    let known = if caps.is_some() { Identity::KNOWN | Identity::CAPS } else { Identity::KNOWN };
    put(&mut kept.known, known);
    if context {
        namespaces(&mut rec.ns, false);
        return None;
    }
    copy_ns(&mut rec.ns, &kept.ns);
    caps
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

/// When a process or thread last moved to another cgroup (kernel time; 0: never seen).
#[inline(always)]
fn last_cgroup_move() -> u64 {
    CGROUP_MOVED.get(0).copied().unwrap_or(0)
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
            // A section per program (see `syscall_programs`).
            #[unsafe(no_mangle)]
            #[unsafe(link_section = concat!("tracepoint/syscalls/", stringify!($program)))]
            pub fn $program(_ctx: *mut c_void) -> u32 {
                forget(bpf_get_current_pid_tgid());
                0
            }
        )*
    };
}

tracer_common::for_each_identity_change!(forget_after);

/// `cgroup:cgroup_attach_task`, after a process or thread moved to another cgroup: every
/// identity read until now is stale. A move is made by another process (a write to
/// cgroup.procs), whose target's slot cannot be found from here, and moves are rare.
#[tracepoint(category = "cgroup", name = "cgroup_attach_task")]
pub fn cgroup_attach_task(_ctx: TracePointContext) -> u32 {
    if let Some(moved) = CGROUP_MOVED.get_ptr_mut(0) {
        // SAFETY: a map value. Concurrent moves may overwrite each other's time: both are
        // later than any identity read before either move, which is all that matters.
        unsafe { *moved = bpf_ktime_get_ns() };
    }
    0
}
