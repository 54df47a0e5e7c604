//! Socket errors the program never asks for: `sock:inet_sk_error_report` fires where the kernel
//! reports an error on a socket (a refused or timed-out connect, a reset), mostly in softirq
//! context where the current task is not the owner. The socket is attributed through its
//! kernel address, learned when a traced thread connects it.

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_ns, macros::raw_tracepoint, programs::RawTracePointContext,
};
use tracer_common::{
    Header, RecordKind, Syscall,
    config::Counter,
    record::{SocketErrorRecord, SocketOwner},
};

use crate::{
    maps::{
        ERRNO_FILTER, SELECTED, SOCKET_FILTER, SOCKET_FILTER_BITS, SOCKETS, errno_selected,
        is_traced,
    },
    output::emit,
    slots,
    task::{fd_sock, sock_error, socket_sock},
};

/// Connect entry on `fd` by thread `pid_tgid`: its socket's errors are attributed to it.
/// Returns the socket's kernel address (0 when unknown), which the connect's exit reuses.
#[inline(always)]
pub fn connecting(pid_tgid: u64, fd: u64, ts_ns: u64) -> u64 {
    let Some((file, sk)) = fd_sock(fd) else { return 0 };
    let owner = SocketOwner {
        connect_ns: ts_ns,
        error_ns: 0,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        fd: fd as u32,
        error: 0,
        file,
    };
    // Counted before the insert: a close that finds the slot at 0 knows the key is absent.
    filter_add(file, 1);
    let _ = SOCKETS.insert(sk, owner, 0);
    sk
}

/// Connect exit with `ret` on the socket at `sk` (0: unknown, nothing to do). An error reported while the call was in the kernel is
/// emitted now if the call does not return it itself (a non-blocking connect refused on
/// loopback returns EINPROGRESS after the refusal was reported). The socket stays known until
/// it is closed.
#[inline(always)]
pub fn connected(sk: u64, ret: i64) {
    if sk == 0 {
        return;
    }
    let Some(owner) = SOCKETS.get_ptr_mut(sk) else { return };
    // SAFETY: a map value; the report program writes it only while this thread is in connect,
    // which it no longer is.
    let owner = unsafe { &mut *owner };
    if owner.error != 0 && ret != -i64::from(owner.error) {
        report(owner, owner.error_ns, owner.error);
    }
    owner.error = 0;
    owner.error_ns = 0;
}

/// Close entry of the socket whose `struct file *` is `file` (and `struct sock *` `sk`, when
/// found on the way: 0 otherwise): its errors are no longer attributed.
///
/// The entry is deleted, not left for the next socket at its address to rewrite: that saved
/// a sixth of this program's time in the bench's mix, but an LRU map drops its least recently
/// used entries first, and closed ones kept (each looked up by its close) would push out a
/// long-lived connection's entry once enough short ones had come and gone.
///
/// Most closed sockets were never connected by a traced thread (accepted, listening, a
/// socketpair's): the filter slot of their file is mostly 0, and then neither the reads to
/// the `struct sock` (where the close did not find it on the way) nor the delete (a hash walk
/// under the bucket's lock) are made. The filter is keyed by the file (one per socket for its
/// life, as the sock is) because the close has it at hand. A slot never counts fewer than the
/// keys in `SOCKETS` whose insert it counted: each insert adds one to its file's slot (a
/// replaced entry or an LRU eviction only leaves a slot higher), and a delete takes one off
/// the slot of the file its entry records.
#[inline(always)]
pub fn closing(file: u64, sk: u64) {
    if let Some(count) = SOCKET_FILTER.get_ptr(filter_slot(file)) {
        // SAFETY: a map value; a stale read errs towards a delete that finds nothing.
        if unsafe { core::ptr::read_volatile(count) } == 0 {
            return;
        }
    }
    let Some(sk) = socket_sock(file, sk) else { return };
    let Some(owner) = SOCKETS.get_ptr(sk) else { return };
    // SAFETY: a map value, one field read.
    let counted = unsafe { (*owner).file };
    if SOCKETS.remove(sk).is_ok() {
        filter_add(counted, u64::MAX);
    }
}

/// The `SOCKET_FILTER` slot of the socket file at `file`: a multiplicative hash of its
/// address (the low bits of slab addresses are all alike).
#[inline(always)]
fn filter_slot(file: u64) -> u32 {
    (file.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SOCKET_FILTER_BITS)) as u32
}

/// Adds `n` (wrapping: `u64::MAX` takes one off) to the filter slot of `file`, atomically:
/// connects and closes of sockets sharing a slot may run on other CPUs.
#[inline(always)]
fn filter_add(file: u64, n: u64) {
    if let Some(count) = SOCKET_FILTER.get_ptr_mut(filter_slot(file)) {
        // SAFETY: a map value, valid and aligned. The result is unused, so this is the
        // BPF_XADD instruction every kernel takes (a fetching add needs 5.12).
        let _ = unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                count, n,
            )
        };
    }
}

/// `sock:inet_sk_error_report` (`TP_PROTO(const struct sock *sk)`), attached as a raw
/// tracepoint: the classic one carries no socket pointer.
#[raw_tracepoint(tracepoint = "inet_sk_error_report")]
pub fn inet_sk_error_report(ctx: RawTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    let Some(owner) = SOCKETS.get_ptr_mut(sk) else { return 0 };
    // SAFETY: a map value, its fields read and written one at a time.
    let owner = unsafe { &mut *owner };
    if !is_traced(owner.tgid) {
        return 0;
    }
    let Some(error) = sock_error(sk) else { return 0 };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // The owner is still inside its connect on this socket: only that call's exit knows
    // whether it returns the error itself (a blocking connect) or not.
    let pid_tgid = (u64::from(owner.tgid) << 32) | u64::from(owner.tid);
    if let Some(slot) = slots::get(pid_tgid) {
        // SAFETY: the owner's slot, read once per field; a torn read only misfiles one report.
        let (syscall, fd) = unsafe { ((*slot).syscall, (*slot).args[0]) };
        if syscall == Syscall::Connect as u32 && fd == u64::from(owner.fd) {
            owner.error = error;
            owner.error_ns = now;
            return 0;
        }
    }
    report(owner, now, error);
    0
}

/// Emits the error if the filters want it: it is the connect's outcome (`-s connect`), always
/// a failure (`--failed`), and `--errno` judges it.
#[inline(always)]
fn report(owner: &SocketOwner, ts_ns: u64, error: u32) {
    if SELECTED.load() & Syscall::Connect.bit() == 0 {
        return;
    }
    if ERRNO_FILTER.load() != 0 && !errno_selected(error) {
        return;
    }
    emit(
        &SocketErrorRecord {
            header: Header::new(RecordKind::SocketError),
            ts_ns,
            connect_ns: owner.connect_ns,
            tgid: owner.tgid,
            tid: owner.tid,
            fd: owner.fd,
            error,
        },
        Counter::LostSocketError,
    );
}
