//! Process lifecycle: children of traced processes join the traced set at fork (in the kernel,
//! so even a child that connects within microseconds is seen); exits leave it.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, generated::bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{Header, ProcessRecord, RecordKind, config::Counter};

use crate::{
    identity::forget,
    maps::{
        EXEC_OLD_PID_OFF, EXIT_GROUP_DEAD_OFF, FORK_CHILD_OFF, add_traced, is_traced, remove_traced,
    },
    output::emit,
    slots,
    task::exit_status,
};

/// Reads a field at an offset taken from the tracepoint's format file at start-up (the layout
/// of sched_process_fork changed across kernel versions). Context pointers cannot take a
/// variable offset, so this goes through bpf_probe_read_kernel.
#[inline(always)]
pub fn read_field<T: Copy>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    // SAFETY: the helper checks the address; a bad offset yields an error, not a fault.
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

#[inline(always)]
fn process_record(kind: RecordKind, tgid: u32, parent_tgid: u32) -> ProcessRecord {
    ProcessRecord {
        header: Header::new(kind),
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        tgid,
        parent_tgid,
        comm: bpf_get_current_comm().unwrap_or_default(),
        exit_status: 0,
        flags: 0,
    }
}

/// `sched:sched_process_fork`, attached only with `--follow-forks`. The current task is the
/// parent. Thread creation fires it too: the thread's id is then registered as well, which is
/// harmless (no process has that tgid while the thread lives) and undone when it exits.
#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_traced(parent_tgid) {
        return 0;
    }
    let Some(child) = read_field::<u32>(&ctx, FORK_CHILD_OFF.load()) else { return 0 };
    if add_traced(child, 0) {
        emit(&process_record(RecordKind::ProcessFork, child, parent_tgid), Counter::LostFork);
    }
    0
}

/// `sched:sched_process_exit`: fires for every exiting thread; the process is gone when the
/// last one exits (`group_dead`).
#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if !is_traced(tgid) {
        return 0;
    }
    // A later thread may get this id: it must not inherit the slot and its identity.
    slots::release(pid_tgid);
    if tid != tgid {
        remove_traced(tid);
    }
    let group_dead = match EXIT_GROUP_DEAD_OFF.load() {
        0 => tid == tgid,
        offset => read_field::<u8>(&ctx, offset).is_some_and(|dead| dead != 0),
    };
    if group_dead {
        remove_traced(tgid);
        let mut record = process_record(RecordKind::ProcessExit, tgid, 0);
        // The last thread's status is the process's: exit_group gives every thread the same.
        if let Some(status) = exit_status() {
            record.exit_status = status;
            record.flags = ProcessRecord::STATUS_KNOWN;
        }
        emit(&record, Counter::LostExit);
    }
    0
}

/// `sched:sched_process_exec`: exec may change credentials (set-user-ID programs, file
/// capabilities). A thread other than the leader that execs takes the leader's id: both slots
/// go. The thread then gets a fresh slot, without identity: it is between calls, traced, which
/// is what its next exit without an entry needs to know (see `syscalls::without_entry`); a
/// command started by wsltrace (`-- CMD`) is added to the traced set before it execs.
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    forget(pid_tgid);
    if let Some(old_pid) = read_field::<u32>(&ctx, EXEC_OLD_PID_OFF.load()) {
        forget((pid_tgid & !0xffff_ffff) | u64::from(old_pid));
    }
    if is_traced((pid_tgid >> 32) as u32) {
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        let _ = slots::claim(pid_tgid, now);
    }
    0
}
