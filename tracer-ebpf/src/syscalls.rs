//! Socket syscall tracepoints: entry stores the call per thread, exit emits it once.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    Capture, Header, RecordKind, Syscall, SyscallRecord,
    config::Counter,
    record::{FLAG_ADDR_FAULT, FLAG_CAPS, FLAG_CONTEXT, FLAG_NO_ENTRY, FLAG_VALUE_FAULT},
};

use crate::{
    capture::{read_user, read_user_len},
    maps::{ERRNO_FILTER, ERRNOS, FAILED_ONLY, PENDING, SCRATCH, SELECTED, count, is_traced},
    output::emit,
    task::{capabilities, fd_is_socket, namespaces},
};

// syscalls:sys_enter_*  (see /sys/kernel/tracing/events/syscalls/sys_enter_bind/format)
//   field:int __syscall_nr;  offset:8;  size:4;
//   field:<arg 0>;           offset:16; size:8;   ... one 8-byte slot per argument
// syscalls:sys_exit_*
//   field:long ret;          offset:16; size:8;
const ARGS_OFFSET: usize = 16;
const RET_OFFSET: usize = 16;

macro_rules! syscall_programs {
    ($($variant:ident = $id:literal => $name:ident, $enter:ident, $exit:ident, $nargs:literal;)*) => {
        $(
            #[tracepoint]
            pub fn $enter(ctx: TracePointContext) -> u32 {
                on_enter(&ctx, Syscall::$variant);
                0
            }

            #[tracepoint]
            pub fn $exit(ctx: TracePointContext) -> u32 {
                on_exit(&ctx, Syscall::$variant);
                0
            }
        )*
    };
}

tracer_common::for_each_syscall!(syscall_programs);

#[inline(always)]
fn read_ctx<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: the verifier bounds tracepoint context reads; offsets come from the format above.
    unsafe { ctx.as_ptr().cast::<u8>().add(offset).cast::<T>().read() }
}

/// Fills what is known about the calling thread.
#[inline(always)]
fn start_record(rec: &mut SyscallRecord, syscall: Syscall, pid_tgid: u64) {
    rec.header = Header::new(RecordKind::Syscall);
    // SAFETY: helpers without arguments, callable from tracepoints.
    rec.ts_ns = unsafe { bpf_ktime_get_ns() };
    rec.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    rec.duration_ns = 0;
    rec.ret = 0;
    rec.tgid = (pid_tgid >> 32) as u32;
    rec.tid = pid_tgid as u32;
    let uid_gid = bpf_get_current_uid_gid();
    rec.uid = uid_gid as u32;
    rec.gid = (uid_gid >> 32) as u32;
    rec.syscall = syscall as u32;
    rec.flags = 0;
    rec.addr_len = 0;
    rec.value_len = 0;
    rec.addr_copied = 0;
    rec.value_copied = 0;
    rec.comm = bpf_get_current_comm().unwrap_or_default();
    // Read now: the process may be gone by the time userspace looks.
    rec.ns = namespaces();
    match capabilities() {
        Some(caps) => {
            rec.cap_effective = caps;
            rec.flags |= FLAG_CAPS;
        }
        None => rec.cap_effective = 0,
    }
}

#[inline(always)]
fn on_enter(ctx: &TracePointContext, syscall: Syscall) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    // close() is traced for sockets only: files, pipes and the loader's closes are not events.
    if syscall == Syscall::Close && fd_is_socket(read_ctx(ctx, ARGS_OFFSET)) == Some(false) {
        return;
    }
    let Some(rec) = SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's scratch slot; no other program runs on this CPU until we return.
    let rec = unsafe { &mut *rec };
    start_record(rec, syscall, pid_tgid);
    let mut i = 0;
    while i < 6 {
        rec.args[i] = if i < syscall.nargs() { read_ctx(ctx, ARGS_OFFSET + 8 * i) } else { 0 };
        i += 1;
    }
    match syscall.capture() {
        Capture::AddrIn { ptr, len } => {
            rec.addr_len = rec.args[len] as u32;
            copy_addr(rec, rec.args[ptr], rec.addr_len);
        }
        Capture::ValueIn { ptr, len } => {
            rec.value_len = rec.args[len] as u32;
            copy_value(rec, rec.args[ptr], rec.value_len);
        }
        // Out buffers: remember the size the caller offered, the copy is bounded by it at exit.
        Capture::AddrOut { len_ptr, .. } => {
            rec.addr_len = read_user_len(rec.args[len_ptr]).unwrap_or(0);
        }
        Capture::ValueOut { len_ptr, .. } => {
            rec.value_len = read_user_len(rec.args[len_ptr]).unwrap_or(0);
        }
        Capture::Fds { .. } | Capture::None => {}
    }
    // An LRU map never refuses an insert: under pressure it evicts an old entry, whose exit is
    // then reported as a call without entry.
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "by value would copy 400 bytes onto the 512-byte BPF stack"
    )]
    let _ = PENDING.insert(pid_tgid, &*rec, 0);
}

/// What to do with a finished call: emit it, emit it as context only, or drop it.
#[inline(always)]
fn verdict(syscall: Syscall, ret: i64) -> Option<u32> {
    if SELECTED.load() & syscall.bit() != 0 && keep(ret) {
        Some(0)
    } else if syscall.is_context() && ret >= 0 {
        // Hidden, but it changes what an fd is: userspace keeps its fd table current with it.
        Some(FLAG_CONTEXT)
    } else {
        None
    }
}

/// The in-kernel result filters: `--failed` and `--errno`.
#[inline(always)]
fn keep(ret: i64) -> bool {
    let errno_filter = ERRNO_FILTER.load() != 0;
    if ret >= 0 {
        return FAILED_ONLY.load() == 0 && !errno_filter;
    }
    if !errno_filter {
        return true;
    }
    let errno = (-ret) as u32;
    ERRNOS.get(errno / 64).is_some_and(|word| word & (1 << (errno % 64)) != 0)
}

#[inline(always)]
fn on_exit(ctx: &TracePointContext, syscall: Syscall) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    let ret: i64 = read_ctx(ctx, RET_OFFSET);
    let Some(rec) = PENDING.get_ptr_mut(pid_tgid) else {
        if syscall.may_block() {
            exit_without_entry(syscall, pid_tgid, ret);
        }
        return;
    };
    if let Some(flags) = verdict(syscall, ret) {
        // SAFETY: this thread's entry, written only by this thread's enter/exit programs.
        let rec = unsafe { &mut *rec };
        rec.flags |= flags;
        // SAFETY: helper without arguments.
        rec.duration_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(rec.ts_ns);
        rec.ret = ret;
        capture_out(rec, syscall, ret);
        emit(rec);
    }
    let _ = PENDING.remove(pid_tgid);
}

/// Copies a user buffer into `buf`, recording how much was copied or that the pointer was bad.
#[inline(always)]
fn copy_user<const N: usize>(
    buf: &mut [u8; N],
    copied: &mut u32,
    flags: &mut u32,
    fault: u32,
    src: u64,
    len: u32,
) {
    match read_user(buf, src, len) {
        Some(n) => *copied = n,
        None if src != 0 => *flags |= fault,
        None => {}
    }
}

#[inline(always)]
fn copy_addr(rec: &mut SyscallRecord, src: u64, len: u32) {
    copy_user(&mut rec.addr, &mut rec.addr_copied, &mut rec.flags, FLAG_ADDR_FAULT, src, len);
}

#[inline(always)]
fn copy_value(rec: &mut SyscallRecord, src: u64, len: u32) {
    copy_user(&mut rec.value, &mut rec.value_copied, &mut rec.flags, FLAG_VALUE_FAULT, src, len);
}

/// Copies what the kernel wrote back to the caller, bounded by the size the caller offered.
#[inline(always)]
fn capture_out(rec: &mut SyscallRecord, syscall: Syscall, ret: i64) {
    match syscall.capture() {
        Capture::AddrOut { ptr, len_ptr } if ret >= 0 => {
            let offered = rec.addr_len;
            rec.addr_len = read_user_len(rec.args[len_ptr]).unwrap_or(0);
            let n = if rec.addr_len < offered { rec.addr_len } else { offered };
            copy_addr(rec, rec.args[ptr], n);
        }
        Capture::ValueOut { ptr, len_ptr } if ret == 0 => {
            let offered = rec.value_len;
            rec.value_len = read_user_len(rec.args[len_ptr]).unwrap_or(0);
            let n = if rec.value_len < offered { rec.value_len } else { offered };
            copy_value(rec, rec.args[ptr], n);
        }
        Capture::Fds { ptr } if ret == 0 => {
            rec.value_len = 8;
            copy_value(rec, rec.args[ptr], 8);
        }
        // The call failed: nothing was written back.
        Capture::AddrOut { .. } => rec.addr_len = 0,
        Capture::ValueOut { .. } | Capture::Fds { .. } => rec.value_len = 0,
        Capture::AddrIn { .. } | Capture::ValueIn { .. } | Capture::None => {}
    }
}

/// The call was in flight when tracing started (a server blocked in accept): report the
/// result, flagged, rather than lose it.
#[inline(always)]
fn exit_without_entry(syscall: Syscall, pid_tgid: u64, ret: i64) {
    count(Counter::NoEntry);
    let Some(flags) = verdict(syscall, ret) else { return };
    let Some(rec) = SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's scratch slot, as in `on_enter`.
    let rec = unsafe { &mut *rec };
    start_record(rec, syscall, pid_tgid);
    rec.args = [0; 6];
    rec.ret = ret;
    rec.flags |= FLAG_NO_ENTRY | flags;
    emit(rec);
}
