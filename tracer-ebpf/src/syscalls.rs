//! Socket syscall tracepoints: entry keeps the call's arguments per thread; exit decides
//! whether the call is emitted and, if so, builds its record in the ring.

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_ktime_get_ns},
    programs::TracePointContext,
};
use tracer_common::{
    Capture, Header, PendingCall, RecordKind, Syscall, SyscallRecord,
    config::{Counter, lost_index},
    record::{
        ADDR_CAP, FLAG_ADDR_FAULT, FLAG_CAPS, FLAG_CONTEXT, FLAG_FROM_SOCKET, FLAG_NO_ARGS,
        FLAG_NO_ENTRY, FLAG_REFUSED, FLAG_SECCOMP, FLAG_VALUE_FAULT, SMALL_TAIL, VALUE_CAP,
    },
};

use crate::{
    capture::{read_user, read_user_len},
    identity::identity,
    maps::{
        ERRNO_FILTER, EVENTS, FAILED_ONLY, SELECTED, count, count_at, errno_selected, is_traced,
        traced_since,
    },
    output::wakeup_flags,
    slots, sockets,
    store::{put, put_all},
    task::{self, FdKind, fd_is_socket, fd_kind, saved_args, start_time, under_seccomp},
};

// syscalls:sys_enter_*  (see /sys/kernel/tracing/events/syscalls/sys_enter_bind/format)
//   field:int __syscall_nr;  offset:8;  size:4;
//   field:<arg 0>;           offset:16; size:8;   ... one 8-byte slot per argument
// syscalls:sys_exit_*
//   field:int __syscall_nr;  offset:8;  size:4;
//   field:long ret;          offset:16; size:8;
const NR_OFFSET: usize = 8;
const ARGS_OFFSET: usize = 16;
const RET_OFFSET: usize = 16;

/// The call's arguments as the entry program reads them: from the syscall tracepoint's
/// record, or from the registers a raw tracepoint is given (raw.rs).
pub trait SyscallArgs {
    fn arg(&self, i: usize) -> u64;
}

/// The call's result and number as the exit program reads them.
pub trait SyscallResult {
    fn ret(&self) -> i64;
    fn nr(&self) -> u64;
}

impl SyscallArgs for TracePointContext {
    #[inline(always)]
    fn arg(&self, i: usize) -> u64 {
        read_ctx(self, ARGS_OFFSET + 8 * i)
    }
}

impl SyscallResult for TracePointContext {
    #[inline(always)]
    fn ret(&self) -> i64 {
        read_ctx(self, RET_OFFSET)
    }

    #[inline(always)]
    fn nr(&self) -> u64 {
        read_ctx::<i32>(self, NR_OFFSET) as u64
    }
}

// Each program in a section of its own, `tracepoint/syscalls/NAME`: what
// `#[tracepoint(category, name)]` writes, spelled out because that macro takes only literals.
// aya gives every program a copy of its whole section's line info: 41 programs in one
// `tracepoint` section held 8 MB of wsltrace's memory at start-up.
macro_rules! syscall_programs {
    ($($variant:ident = $id:literal => $name:ident, $enter:ident, $exit:ident, $nargs:literal;)*) => {
        $(
            #[unsafe(no_mangle)]
            #[unsafe(link_section = concat!("tracepoint/syscalls/", stringify!($enter)))]
            pub fn $enter(ctx: *mut c_void) -> u32 {
                on_enter(&TracePointContext::new(ctx), Syscall::$variant);
                0
            }

            #[unsafe(no_mangle)]
            #[unsafe(link_section = concat!("tracepoint/syscalls/", stringify!($exit)))]
            pub fn $exit(ctx: *mut c_void) -> u32 {
                on_exit(&TracePointContext::new(ctx), Syscall::$variant);
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

#[inline(always)]
pub fn on_enter<C: SyscallArgs>(ctx: &C, syscall: Syscall) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_traced((pid_tgid >> 32) as u32) {
        on_traced_enter(ctx, syscall, pid_tgid);
    }
}

/// [`on_enter`] for thread `pid_tgid` of a traced process.
#[inline(always)]
pub fn on_traced_enter<C: SyscallArgs>(ctx: &C, syscall: Syscall, pid_tgid: u64) {
    // close() is traced for sockets only: files, pipes and the loader's closes are not events.
    // Checked now: after the call the fd is gone. The socket's errors are no longer attributed
    // to this fd.
    if syscall == Syscall::Close {
        match fd_kind(ctx.arg(0)) {
            FdKind::NotSocket => return,
            FdKind::Socket { file, sk } => sockets::closing(file, sk),
            FdKind::Unknown => {}
        }
    }
    // SAFETY: helper without arguments.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let arg = |i: usize| if i < syscall.nargs() { ctx.arg(i) } else { 0 };
    let args = [arg(0), arg(1), arg(2), arg(3), arg(4), arg(5)];
    // The socket's errors are attributed to this fd from now on (a refusal on loopback is
    // reported before the connect even returns) until it is closed.
    let sock =
        if syscall == Syscall::Connect { sockets::connecting(pid_tgid, args[0], ts_ns) } else { 0 };
    // An address written back: the kernel overwrites the size the caller offered with the
    // address's whole size, which may be more (the copy was cut short), so the offered size,
    // read now, bounds the copy at exit. An option value's size comes back as what was
    // written, never more than offered: a getsockopt needs no read here.
    let offered = match syscall.capture() {
        Capture::AddrOut { len_ptr, .. } => read_user_len(args[len_ptr]).unwrap_or(0),
        _ => 0,
    };
    let Some(slot) = slots::get(pid_tgid).or_else(|| slots::claim(pid_tgid, ts_ns)) else {
        return;
    };
    // SAFETY: this thread's slot, used only by this thread's enter and exit programs (and by
    // the emulation supervisor while this thread is stopped in seccomp).
    let slot = unsafe { &mut *slot };
    put(&mut slot.ts_ns, ts_ns);
    put_all(&mut slot.args, &args);
    put(&mut slot.offered, offered);
    put(&mut slot.sock, sock);
    put(&mut slot.syscall, syscall as u32);
}

/// What to do with a finished call: emit it, emit it as context only, or drop it.
/// `call` is the call's entry, when it was seen.
#[inline(always)]
fn verdict(syscall: Syscall, ret: i64, call: Option<&PendingCall>) -> Option<u32> {
    if SELECTED.load() & syscall.bit() != 0 && keep(syscall, ret, call) {
        Some(0)
    } else if syscall.is_context() && !syscall.outcome(ret, 0).failed {
        // Hidden, but it changes what an fd is: userspace keeps its fd table current with it
        // (a connect in progress included: it says where the socket is connecting to).
        Some(FLAG_CONTEXT)
    } else {
        None
    }
}

/// The in-kernel result filters: `--failed` and `--errno`, on the call's outcome (a
/// getsockopt(SO_ERROR) that reads an error reports that error; EINPROGRESS is no failure).
#[inline(always)]
fn keep(syscall: Syscall, ret: i64, call: Option<&PendingCall>) -> bool {
    let failed_only = FAILED_ONLY.load() != 0;
    let errno_filter = ERRNO_FILTER.load() != 0;
    if !failed_only && !errno_filter {
        return true;
    }
    let so_error = match call {
        Some(call) if ret == 0 && syscall.reads_so_error(&call.args) => so_error(&call.args),
        _ => 0,
    };
    let outcome = syscall.outcome(ret, so_error);
    if failed_only && !outcome.failed {
        return false;
    }
    if !errno_filter {
        return true;
    }
    errno_selected(outcome.errno)
}

/// The int a successful getsockopt(SOL_SOCKET, SO_ERROR) wrote back: the socket's pending
/// error (a non-blocking connect's outcome), 0 for none or when it cannot be read.
#[inline(always)]
fn so_error(args: &[u64; 6]) -> u32 {
    if read_user_len(args[4]) != Some(4) {
        return 0;
    }
    // SAFETY: the helper validates the user pointer and returns an error on fault.
    let value = unsafe { aya_ebpf::helpers::bpf_probe_read_user(args[3] as *const i32) };
    match value {
        Ok(v) if v > 0 => v as u32,
        _ => 0,
    }
}

#[inline(always)]
pub fn on_exit<C: SyscallResult>(ctx: &C, syscall: Syscall) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    let ret = ctx.ret();
    let slot = slots::get(pid_tgid);
    // SAFETY: this thread's slot, as in `on_enter`.
    let call = slot.filter(|&c| unsafe { (*c).syscall } == syscall as u32);
    let Some(call) = call else {
        without_entry(ctx, syscall, pid_tgid, ret, slot);
        return;
    };
    // SAFETY: this thread's slot, as in `on_enter`.
    if let Some(flags) = verdict(syscall, ret, Some(unsafe { &*call })) {
        // SAFETY: as above.
        emit_call(syscall, pid_tgid, ret, flags, Some(unsafe { &mut *call }));
    }
    if syscall == Syscall::Connect {
        // SAFETY: as above.
        sockets::connected(unsafe { (*call).sock }, ret);
    }
    // SAFETY: as above.
    unsafe { (*call).syscall = PendingCall::NONE };
}

/// An exit whose entry was not seen: a call refused before `sys_enter`, or a call that was
/// in flight when the process was added to the traced set.
///
/// seccomp runs before the `sys_enter` tracepoints (`syscall_trace_enter` in
/// kernel/entry/common.c): a call its filter fails (SECCOMP_RET_ERRNO, or a user-notification
/// supervisor answering with an error, as WSL2's mirrored networking does for bind) never
/// fires `sys_enter`, but fires `sys_exit` with the errno. A call in flight at attach looks the
/// same. What tells them apart is whether the thread was traced before the call began, proven
/// by either:
/// - the thread's slot: it is written only by this thread's programs while its process is
///   traced (entry of an earlier traced call, or exec), and a thread makes one call at a
///   time, so the call now exiting began after that; it is dropped when the thread exits;
/// - the thread's start time: a thread started after its process was added to the traced set
///   (the time kept in `TRACED`; 0 for a child added at fork, before it first ran) made every
///   one of its calls while traced, every program being attached before any process is added.
///
/// Neither holds for a thread that was inside a call when its process was added, which keeps
/// `FLAG_NO_ENTRY`. A thread that made no traced call since, yet is older than that, cannot be
/// told apart: its exit is treated as in flight too.
#[inline(always)]
fn without_entry<C: SyscallResult>(
    ctx: &C,
    syscall: Syscall,
    pid_tgid: u64,
    ret: i64,
    slot: Option<*mut PendingCall>,
) {
    // close() of a file has no entry either (the entry program passes it over): the exit is
    // a refused close only when it failed and its fd is still an open socket. A successful
    // one (a file or pipe closed: nginx closes one per request) needs nothing more.
    if syscall == Syscall::Close && ret >= 0 {
        return;
    }
    if slot.is_none() && slots::outgrown(pid_tgid) {
        // Its entry had nowhere to go: counted as lost, not shown as a refused call.
        if let Some(flags) = verdict(syscall, ret, None) {
            count_at(lost_index(syscall, flags & FLAG_CONTEXT != 0));
        }
        return;
    }
    if slot.is_none() && !started_while_traced((pid_tgid >> 32) as u32) {
        // In flight when tracing started (a server blocked in accept): report the result,
        // flagged, rather than lose it.
        if syscall.may_block() {
            count(Counter::NoEntry);
            if let Some(flags) = verdict(syscall, ret, None) {
                emit_call(syscall, pid_tgid, ret, flags | FLAG_NO_ENTRY, None);
            }
        }
        return;
    }
    let Some(flags) = verdict(syscall, ret, None) else { return };
    let mut args = [0u64; 6];
    let have_args = saved_args(ctx.nr(), &mut args);
    // A failed close: refused only if its fd is still an open socket.
    if syscall == Syscall::Close && (!have_args || fd_is_socket(args[0]) != Some(true)) {
        return;
    }
    let mut flags = flags | FLAG_REFUSED;
    if under_seccomp() == Some(true) {
        flags |= FLAG_SECCOMP;
    }
    if !have_args {
        flags |= FLAG_NO_ARGS;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // The call goes through the thread's slot like any other, so its buffers are captured
    // from the arguments; a thread without one gets one, which its next calls reuse.
    let slot = match slot {
        Some(slot) => slot,
        None => {
            let Some(slot) = slots::claim(pid_tgid, now) else { return };
            slot
        }
    };
    // SAFETY: this thread's slot, as in `on_enter`.
    let call = unsafe { &mut *slot };
    put(&mut call.ts_ns, now);
    put_all(&mut call.args, &args);
    // Nothing was written back: out buffers are not read.
    put(&mut call.offered, 0);
    put(&mut call.sock, 0);
    emit_call(syscall, pid_tgid, ret, flags, Some(call));
    put(&mut call.syscall, PendingCall::NONE);
}

/// Whether the current thread started after its process `tgid` was added to the traced set.
#[inline(always)]
fn started_while_traced(tgid: u32) -> bool {
    // One value at a time: an `Option` pair kept the payload of a `None` in a register the
    // verifier saw as uninitialised.
    let Some(since) = traced_since(tgid) else { return false };
    let Some(start) = start_time() else { return false };
    start >= since
}

/// What a record's tails receive: a user buffer to copy (`src`, `n` bytes of its true length
/// `len`), chosen before the record is reserved so that its size fits.
#[derive(Clone, Copy)]
struct Buffer {
    src: u64,
    len: u32,
    n: u32,
}

impl Buffer {
    const NONE: Buffer = Buffer { src: 0, len: 0, n: 0 };
}

/// What the call's address and value tails receive, and whether the value tail holds what
/// the kernel reads from the sockets (a connect's local end, a socketpair's inodes).
#[derive(Clone, Copy)]
struct Plan {
    addr: Buffer,
    value: Buffer,
    from_socket: bool,
}

impl Plan {
    const NONE: Plan = Plan { addr: Buffer::NONE, value: Buffer::NONE, from_socket: false };
}

/// The user buffers the call passed or had filled. Input buffers are read at exit too: the
/// caller's memory, which these calls only read, and only for calls that are emitted. Output
/// buffers hold what the kernel wrote back: an address bounded by the size the caller offered.
#[inline(always)]
fn plan(syscall: Syscall, ret: i64, call: &PendingCall) -> Plan {
    let args = &call.args;
    let mut plan = Plan::NONE;
    match syscall.capture() {
        Capture::AddrIn { ptr, len } => {
            let len = args[len] as u32;
            plan.addr = Buffer { src: args[ptr], len, n: len };
        }
        Capture::ValueIn { ptr, len } => {
            let len = args[len] as u32;
            plan.value = Buffer { src: args[ptr], len, n: len };
        }
        Capture::AddrOut { ptr, len_ptr } if ret >= 0 => {
            let len = read_user_len(args[len_ptr]).unwrap_or(0);
            let n = if len < call.offered { len } else { call.offered };
            plan.addr = Buffer { src: args[ptr], len, n };
        }
        Capture::ValueOut { ptr, len_ptr } if ret == 0 => {
            let len = read_user_len(args[len_ptr]).unwrap_or(0);
            plan.value = Buffer { src: args[ptr], len, n: len };
        }
        Capture::Fds { ptr } if ret == 0 => {
            plan.value = Buffer { src: args[ptr], len: 8, n: 8 };
            plan.from_socket = true;
        }
        // The call failed: nothing was written back.
        Capture::AddrOut { .. } | Capture::ValueOut { .. } | Capture::Fds { .. } => {}
        Capture::None => {}
    }
    // The port a connect was given, read now: a short-lived client has closed the socket
    // by the time userspace could ask it.
    if syscall == Syscall::Connect && (ret == 0 || ret == -EINPROGRESS) {
        plan.from_socket = true;
    }
    plan
}

/// The tail size for copying `copy`: what the socket reads add for the value tail comes
/// on top (a sockaddr_in6 of 28 bytes, or 24 bytes of fds and inodes).
#[inline(always)]
fn tail(copy: &Buffer, from_socket: bool) -> usize {
    if from_socket || (copy.src != 0 && copy.n != 0 && copy.n as usize <= SMALL_TAIL) {
        SMALL_TAIL
    } else if copy.src != 0 && copy.n != 0 {
        ADDR_CAP
    } else {
        0
    }
}

/// Builds the record in place in the ring, in the smallest form that holds what the call
/// carries, and submits it; a full ring is counted. Each form is a size the verifier knows.
#[inline(always)]
fn emit_call(
    syscall: Syscall,
    pid_tgid: u64,
    ret: i64,
    flags: u32,
    call: Option<&mut PendingCall>,
) {
    let plan = match &call {
        Some(call) if flags & FLAG_NO_ARGS == 0 => plan(syscall, ret, call),
        _ => Plan::NONE,
    };
    // A connect's local end is an address too, but always fits the short tail; a socketpair
    // copies its 8 bytes of fds and adds 16 of inodes.
    let addr = tail(&plan.addr, false);
    let value = tail(&plan.value, plan.from_socket);
    const S: usize = SMALL_TAIL;
    const A: usize = ADDR_CAP;
    const V: usize = VALUE_CAP;
    match (addr, value) {
        (0, 0) => emit::<0, 0>(syscall, pid_tgid, ret, flags, call, &plan),
        (S, 0) => emit::<S, 0>(syscall, pid_tgid, ret, flags, call, &plan),
        (A, 0) => emit::<A, 0>(syscall, pid_tgid, ret, flags, call, &plan),
        (0, S) => emit::<0, S>(syscall, pid_tgid, ret, flags, call, &plan),
        (0, V) => emit::<0, V>(syscall, pid_tgid, ret, flags, call, &plan),
        (S, S) => emit::<S, S>(syscall, pid_tgid, ret, flags, call, &plan),
        (A, S) => emit::<A, S>(syscall, pid_tgid, ret, flags, call, &plan),
        _ => emit::<A, V>(syscall, pid_tgid, ret, flags, call, &plan),
    }
}

/// [`emit_call`] with tails of `A` and `V` bytes.
#[inline(always)]
fn emit<const A: usize, const V: usize>(
    syscall: Syscall,
    pid_tgid: u64,
    ret: i64,
    flags: u32,
    mut call: Option<&mut PendingCall>,
    plan: &Plan,
) {
    let wakeup = wakeup_flags(size_of::<SyscallRecord<A, V>>() as u64);
    let Some(mut entry) = EVENTS.reserve::<SyscallRecord<A, V>>(0) else {
        // Per syscall, and context apart: `lost` counts only what the user asked for.
        count_at(lost_index(syscall, flags & FLAG_CONTEXT != 0));
        return;
    };
    // SAFETY: every bit pattern is a valid SyscallRecord; each head field is written below
    // (the tails past the copied bytes are not part of the record).
    let full = unsafe { &mut *entry.as_mut_ptr() };
    let rec = &mut full.head;
    put(&mut rec.header, Header::new(RecordKind::Syscall));
    // SAFETY: helper without arguments, callable from tracepoints.
    let now = unsafe { bpf_ktime_get_ns() };
    match &call {
        Some(call) => {
            put(&mut rec.ts_ns, call.ts_ns);
            let duration =
                if flags & FLAG_REFUSED != 0 { 0 } else { now.saturating_sub(call.ts_ns) };
            put(&mut rec.duration_ns, duration);
            put_all(&mut rec.args, &call.args);
        }
        None => {
            put(&mut rec.ts_ns, now);
            put(&mut rec.duration_ns, 0);
            put_all(&mut rec.args, &[0; 6]);
        }
    }
    put(&mut rec.ret, ret);
    put(&mut rec.tgid, (pid_tgid >> 32) as u32);
    put(&mut rec.tid, pid_tgid as u32);
    put(&mut rec.syscall, syscall as u32);
    // Read in the kernel: the process may be gone by the time userspace looks. A context
    // record only tells the fd table what an fd is: it goes without namespaces and
    // capabilities, but for a connect: a socket error may follow, judged in the namespaces
    // of a process that has often exited by then.
    let bare = flags & FLAG_CONTEXT != 0 && syscall != Syscall::Connect;
    let caps = identity(rec, call.as_deref_mut(), bare, now);
    put(&mut rec.cap_effective, caps.unwrap_or(0));
    let mut flags = if caps.is_some() { flags | FLAG_CAPS } else { flags };
    put(&mut rec.addr_cap, A as u16);
    put(&mut rec.value_cap, V as u16);
    put(&mut rec._pad, 0);
    put(&mut rec.addr_len, plan.addr.len);
    put(&mut rec.value_len, plan.value.len);
    put(&mut rec.addr_copied, 0);
    put(&mut rec.value_copied, 0);
    if A != 0 && plan.addr.src != 0 {
        match read_user(&mut full.addr, plan.addr.src, plan.addr.n) {
            Some(n) => put(&mut full.head.addr_copied, n),
            None => flags |= FLAG_ADDR_FAULT,
        }
    }
    if V != 0 && plan.value.src != 0 {
        match read_user(&mut full.value, plan.value.src, plan.value.n) {
            Some(n) => put(&mut full.head.value_copied, n),
            None => flags |= FLAG_VALUE_FAULT,
        }
    }
    if plan.from_socket {
        if let Some(call) = &call
            && syscall == Syscall::Connect
        {
            flags |= local_end(full, call.sock);
        } else if syscall == Syscall::Socketpair && full.head.value_copied == 8 {
            flags |= pair_inodes(full);
        }
    }
    put(&mut full.head.flags, flags);
    entry.submit(wakeup);
}

/// Writes the inodes of a socketpair's two sockets after its fds in the value tail; returns
/// [`FLAG_FROM_SOCKET`] when it did: each end names the other, as strace -yy shows them.
#[inline(always)]
fn pair_inodes<const A: usize, const V: usize>(rec: &mut SyscallRecord<A, V>) -> u32 {
    if V < 24 {
        return 0;
    }
    let v = &rec.value;
    let fds = [
        i32::from_ne_bytes([v[0], v[1], v[2], v[3]]),
        i32::from_ne_bytes([v[4], v[5], v[6], v[7]]),
    ];
    let Some((a, b)) = task::fd_inodes(fds[0] as u64, fds[1] as u64) else { return 0 };
    let (a, b) = (a.to_ne_bytes(), b.to_ne_bytes());
    let mut i = 0;
    while i < 8 {
        put(&mut rec.value[8 + i], a[i]);
        put(&mut rec.value[16 + i], b[i]);
        i += 1;
    }
    FLAG_FROM_SOCKET
}

const EINPROGRESS: i64 = 115;

/// Writes the local end of the connect's socket (at `sock`, found at entry) into the value
/// tail as a sockaddr (the bytes userspace decodes like any address); returns
/// [`FLAG_FROM_SOCKET`] when it did.
#[inline(always)]
fn local_end<const A: usize, const V: usize>(rec: &mut SyscallRecord<A, V>, sock: u64) -> u32 {
    if V < 28 {
        return 0;
    }
    let Some((family, port, ip)) = task::local_end(sock) else { return 0 };
    let v = &mut rec.value;
    let [f0, f1] = family.to_ne_bytes();
    let [p0, p1] = port.to_be_bytes();
    put(&mut v[0], f0);
    put(&mut v[1], f1);
    put(&mut v[2], p0);
    put(&mut v[3], p1);
    let len = if family == task::AF_INET {
        // sockaddr_in: the address, then 8 bytes of zero.
        let mut i = 0;
        while i < 12 {
            put(&mut v[4 + i], if i < 4 { ip[i] } else { 0 });
            i += 1;
        }
        16
    } else {
        // sockaddr_in6: flowinfo 0, the address, scope id 0.
        let mut i = 0;
        while i < 24 {
            put(&mut v[4 + i], if (4..20).contains(&i) { ip[i - 4] } else { 0 });
            i += 1;
        }
        28
    };
    put(&mut rec.head.value_len, len);
    put(&mut rec.head.value_copied, len);
    FLAG_FROM_SOCKET
}
