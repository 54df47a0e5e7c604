//! Who made a call: a thread's name, namespaces, capabilities, uid, gid and cgroup, kept in its
//! pending-call slot between calls (see `tracer_common::Identity`), and the programs that drop
//! them or make them stale when something may change them.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_ktime_get_ns},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    Identity, PendingCall, SyscallHead,
    record::{COMM_LEN, NsInums},
};

use crate::{
    maps::{CGROUP_MOVED, KEEP_IDENTITY, RENAME_NEWCOMM_OFF, RENAME_PID_OFF, is_traced},
    process::read_field,
    slots,
    store::{put, put_all},
    task::{capabilities, namespaces},
};

/// Writes who made the call into `rec` (name, uid, gid, cgroup; namespaces unless `context`, zeros
/// then) and returns the effective capabilities (`None`: unknown, or `context`). Kept ones
/// when the slot has them and no cgroup move came after they were read (at `now`, kernel
/// time), else read from the task and kept for the thread's next calls.
#[inline(always)]
pub fn identity(
    rec: &mut SyscallHead,
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
            copy_comm(&mut rec.comm, &kept.comm);
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
    current_comm(&mut rec.comm);
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
    copy_comm(&mut kept.comm, &rec.comm);
    let known = if caps.is_some() { Identity::KNOWN | Identity::CAPS } else { Identity::KNOWN };
    put(&mut kept.known, known);
    if context {
        namespaces(&mut rec.ns, false);
        return None;
    }
    copy_ns(&mut rec.ns, &kept.ns);
    caps
}

/// The current thread's name into `comm`, NUL-terminated (empty if the helper fails).
#[inline(always)]
fn current_comm(comm: &mut [u8; COMM_LEN]) {
    // SAFETY: the helper writes at most COMM_LEN bytes, NUL-terminated, into `comm`.
    let ret = unsafe { bpf_get_current_comm(comm.as_mut_ptr().cast(), COMM_LEN as u32) };
    if ret != 0 {
        put(&mut comm[0], 0);
    }
}

/// A name copied as two words, not 16 bytes one by one.
#[inline(always)]
fn copy_comm(dst: &mut [u8; COMM_LEN], src: &[u8; COMM_LEN]) {
    let (dst, src) = (dst.as_mut_ptr().cast::<u64>(), src.as_ptr().cast::<u64>());
    // SAFETY: both are 16 bytes at an 8-byte aligned offset of a struct aligned to 8
    // (asserted in tracer_common::record), so two aligned words each.
    unsafe {
        put(&mut *dst, *src);
        put(&mut *dst.add(1), *src.add(1));
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

/// When a process or thread last moved to another cgroup to another cgroup (kernel time; 0: never seen).
#[inline(always)]
fn last_cgroup_move() -> u64 {
    CGROUP_MOVED.get(0).copied().unwrap_or(0)
}

/// Drops the slot of thread `pid_tgid` of a traced process, identity and all.
#[inline(always)]
pub fn forget(pid_tgid: u64) {
    if is_traced((pid_tgid >> 32) as u32) {
        slots::release(pid_tgid);
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

/// `task:task_rename`, before the thread's new name is written (so it cannot be re-read from
/// the task): the new name goes into the renamed thread's slot. A thread is renamed by itself
/// (prctl(PR_SET_NAME), exec) or by another thread of its process through
/// /proc/self/task/TID/comm (pthread_setname_np); the kernel refuses that write from another
/// process (EINVAL). So the renamed thread, named by its tid, is in the renaming thread's
/// process; a thread without a slot reads its name at its next call.
#[tracepoint(category = "task", name = "task_rename")]
pub fn task_rename(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return 0;
    }
    let target = match RENAME_PID_OFF.load() {
        0 => pid_tgid as u32,
        offset => match read_field::<u32>(&ctx, offset) {
            Some(tid) => tid,
            None => return 0,
        },
    };
    let key = (pid_tgid & !0xffff_ffff) | u64::from(target);
    let Some(slot) = slots::get(key) else { return 0 };
    // SAFETY: a map value; the renamed thread may be making a call on another CPU, and at
    // worst keeps a name read just before this one.
    let kept = unsafe { &mut (*slot).identity };
    match read_field::<[u8; COMM_LEN]>(&ctx, RENAME_NEWCOMM_OFF.load()) {
        Some(comm) => put_all(&mut kept.comm, &comm),
        // Unreadable: the thread reads its identity afresh at its next call.
        None => put(&mut kept.known, 0),
    }
    0
}
