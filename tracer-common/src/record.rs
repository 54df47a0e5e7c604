//! Records sent from the kernel programs to userspace through the ring buffer.

/// Size of the sockaddr copy: `sizeof(struct sockaddr_storage)`, the largest address.
pub const ADDR_CAP: usize = 128;
/// Size of the option value copy: enough for every option wsltrace decodes.
pub const VALUE_CAP: usize = 128;
pub const COMM_LEN: usize = 16;

/// Version of the record layouts below; bump it on any layout change.
pub const RECORD_VERSION: u16 = 4;

/// What a record is. Numbers are never reused.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Syscall = 1,
    ProcessFork = 2,
    ProcessExit = 3,
    SocketError = 4,
}

impl RecordKind {
    pub const fn from_u16(v: u16) -> Option<RecordKind> {
        match v {
            1 => Some(RecordKind::Syscall),
            2 => Some(RecordKind::ProcessFork),
            3 => Some(RecordKind::ProcessExit),
            4 => Some(RecordKind::SocketError),
            _ => None,
        }
    }
}

/// First bytes of every record: what follows and in which layout version.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u16,
    pub version: u16,
    pub _pad: u32,
}

impl Header {
    pub const fn new(kind: RecordKind) -> Self {
        Header { kind: kind as u16, version: RECORD_VERSION, _pad: 0 }
    }
}

/// `SyscallHead::flags`: the exit was seen without its entry (the call was in flight when
/// tracing started, or its entry was evicted); arguments and duration are unknown.
pub const FLAG_NO_ENTRY: u32 = 1 << 0;
/// `SyscallHead::flags`: reading the `addr` user buffer faulted (bad pointer).
pub const FLAG_ADDR_FAULT: u32 = 1 << 1;
/// `SyscallHead::flags`: reading the `value` user buffer faulted (bad pointer).
pub const FLAG_VALUE_FAULT: u32 = 1 << 2;
/// `SyscallHead::flags`: `cap_effective` was read (a process may have no capability at all).
pub const FLAG_CAPS: u32 = 1 << 3;
/// `SyscallHead::flags`: the filters hide this call; it only keeps the fd table current,
/// and carries neither namespaces nor capabilities.
pub const FLAG_CONTEXT: u32 = 1 << 4;
/// `SyscallHead::flags`: the exit was seen without its entry on a thread traced since before
/// the call began, so the call never reached `sys_enter`: something that runs before it, a
/// seccomp filter, refused it. `ts_ns` is the exit time, the duration is unknown; the
/// arguments were read at exit from the task's saved user registers (see [`FLAG_NO_ARGS`]).
pub const FLAG_REFUSED: u32 = 1 << 5;
/// `SyscallHead::flags`, with [`FLAG_REFUSED`]: the thread runs under a seccomp filter
/// (`task->seccomp.mode != 0`), which is then what refused the call.
pub const FLAG_SECCOMP: u32 = 1 << 6;
/// `SyscallHead::flags`, with [`FLAG_REFUSED`]: the saved registers could not be read (no
/// kernel layout, or none of the candidate locations checked out): the arguments are unknown.
pub const FLAG_NO_ARGS: u32 = 1 << 7;
/// `SyscallHead::flags`: the value tail holds what the kernel read from the sockets as the call
/// returned. A connect that succeeded or is under way: the socket's local end (its ephemeral
/// port) as a `sockaddr_in`/`sockaddr_in6`. A socketpair: after the two fds (`value_copied`
/// = 8), the two sockets' inode numbers, two u64 at bytes 8..24.
pub const FLAG_FROM_SOCKET: u32 = 1 << 8;

/// One syscall, entry and exit paired: emitted once, at exit, as a [`SyscallRecord`]: this
/// fixed head, then `addr_cap` bytes of address and `value_cap` bytes of option value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallHead {
    pub header: Header,
    /// Kernel time (CLOCK_MONOTONIC) at entry, or at exit with [`FLAG_NO_ENTRY`] or
    /// [`FLAG_REFUSED`].
    pub ts_ns: u64,
    pub duration_ns: u64,
    pub cgroup_id: u64,
    pub ret: i64,
    /// Raw syscall arguments, as the `sys_enter_*` tracepoint saw them (with [`FLAG_REFUSED`]:
    /// as the saved user registers held them at exit).
    pub args: [u64; 6],
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// [`crate::Syscall`] id.
    pub syscall: u32,
    pub flags: u32,
    /// True length of the address (what the caller passed in, or what the kernel reported out);
    /// at most `addr_cap` bytes of it are in the record.
    pub addr_len: u32,
    /// True length of the option value; at most `value_cap` bytes of it are in the record.
    pub value_len: u32,
    /// Bytes of the address and value actually copied (bounded by the caps and by the buffer
    /// size the caller offered); the rest of each tail is not part of the record.
    pub addr_copied: u32,
    pub value_copied: u32,
    pub comm: [u8; COMM_LEN],
    /// The caller's namespaces at entry; all zero when the kernel layout is unknown.
    pub ns: NsInums,
    /// The caller's effective capabilities at entry (`CAP_*` bits), with [`FLAG_CAPS`].
    pub cap_effective: u64,
    /// Size of the address tail after the head: one of [`TAIL_CAPS`].
    pub addr_cap: u16,
    /// Size of the option value tail after the address tail: one of [`TAIL_CAPS`].
    pub value_cap: u16,
    pub _pad: u32,
}

const _: () = assert!(size_of::<SyscallHead>() == 184);

/// The sizes a tail can have. `bpf_ringbuf_reserve` takes a size the verifier knows, so a
/// record is not cut to its exact length: the kernel picks the smallest of these that holds
/// what the call carries (most calls carry neither an address nor a value, most addresses and
/// option values fit in 32 bytes). Each a multiple of 8: a record has no padding, and the next
/// record in the ring stays aligned.
pub const TAIL_CAPS: [usize; 3] = [0, SMALL_TAIL, ADDR_CAP];
/// The short tail: a `sockaddr_in6` (28 bytes), a connect's local end, a socketpair's fds and
/// inodes (24), any option value up to 32 bytes.
pub const SMALL_TAIL: usize = 32;

/// A syscall record as it is in the ring: the head, an address tail of `A` bytes and a value
/// tail of `V` bytes (`A` and `V` among [`TAIL_CAPS`], as the head's `addr_cap` and
/// `value_cap` say).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallRecord<const A: usize, const V: usize> {
    pub head: SyscallHead,
    pub addr: [u8; A],
    pub value: [u8; V],
}

/// Size in the ring of a record with tails of `addr_cap` and `value_cap` bytes.
pub const fn record_size(addr_cap: usize, value_cap: usize) -> usize {
    size_of::<SyscallHead>() + addr_cap + value_cap
}

const _: () = {
    assert!(ADDR_CAP == VALUE_CAP && ADDR_CAP.is_multiple_of(8) && SMALL_TAIL.is_multiple_of(8));
    assert!(size_of::<SyscallRecord<0, 0>>() == record_size(0, 0));
    assert!(size_of::<SyscallRecord<SMALL_TAIL, 0>>() == record_size(SMALL_TAIL, 0));
    assert!(size_of::<SyscallRecord<0, SMALL_TAIL>>() == record_size(0, SMALL_TAIL));
    assert!(size_of::<SyscallRecord<SMALL_TAIL, SMALL_TAIL>>() == 248);
    assert!(size_of::<SyscallRecord<ADDR_CAP, 0>>() == record_size(ADDR_CAP, 0));
    assert!(size_of::<SyscallRecord<0, VALUE_CAP>>() == record_size(0, VALUE_CAP));
    assert!(size_of::<SyscallRecord<ADDR_CAP, SMALL_TAIL>>() == record_size(ADDR_CAP, SMALL_TAIL));
    assert!(size_of::<SyscallRecord<ADDR_CAP, VALUE_CAP>>() == 440);
};

/// A syscall record read from the ring, by reference: its head and its two tails, whole
/// (bytes past `addr_copied` and `value_copied` were not written, except what
/// [`FLAG_FROM_SOCKET`] says).
#[derive(Clone, Copy, Debug)]
pub struct SyscallView<'a> {
    pub head: SyscallHead,
    pub addr: &'a [u8],
    pub value: &'a [u8],
}

impl SyscallView<'_> {
    /// The address bytes copied from the caller.
    pub fn addr_copied(&self) -> &[u8] {
        &self.addr[..(self.head.addr_copied as usize).min(self.addr.len())]
    }

    /// The option value bytes copied from the caller.
    pub fn value_copied(&self) -> &[u8] {
        &self.value[..(self.head.value_copied as usize).min(self.value.len())]
    }
}

/// What `sys_enter_*` keeps for its exit, per thread. The record itself is built at exit, in
/// the ring, and only for the calls that are emitted: the calls the filters drop cost a write
/// of a few words, not of a whole record.
///
/// A thread's slot stays in the map between calls (rewritten in place, which costs much less
/// than an insert and a delete per call); `syscall` says which call it holds, if any.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingCall {
    /// Kernel time (CLOCK_MONOTONIC) at entry.
    pub ts_ns: u64,
    /// Raw syscall arguments, as the `sys_enter_*` tracepoint saw them.
    pub args: [u64; 6],
    /// For calls that write an address back: the buffer size the caller offered (read at
    /// entry, since the kernel overwrites it with the address's whole size).
    pub offered: u32,
    /// The [`crate::Syscall`] id of the call in flight, or [`PendingCall::NONE`].
    pub syscall: u32,
    /// For a connect: the kernel address of its socket (`struct sock *`), found at entry, so
    /// that its exit does not walk the fd table again; 0 when unknown.
    pub sock: u64,
    /// The thread's namespaces and capabilities, kept between its calls.
    pub identity: Identity,
}

const _: () = assert!(size_of::<PendingCall>() == 152);

impl PendingCall {
    /// `syscall` of a slot whose call has exited.
    pub const NONE: u32 = u32::MAX;

    pub const fn new(ts_ns: u64, syscall: u32) -> PendingCall {
        PendingCall {
            ts_ns,
            args: [0; 6],
            offered: 0,
            syscall,
            sock: 0,
            identity: Identity::UNKNOWN,
        }
    }
}

/// A thread's slot in the `SLOTS` array (see `config::MAP_SLOTS`): its call and identity,
/// the thread's while `owner` holds its pid_tgid (0: free).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub owner: u64,
    pub call: PendingCall,
}

const _: () = assert!(size_of::<Slot>() == 160);

/// What a thread's records say of who made the call (namespaces, effective capabilities,
/// uid and gid, cgroup), as its first emitted call read them. Reading them costs some 15
/// kernel pointer reads and two helpers, a third of an emitted call's time in the kernel, and
/// they change only through events the programs watch: setns, unshare, capset, the set*id
/// family and exec drop the slot (their exits come after the change, in the thread itself); a
/// move to another cgroup anywhere (`cgroup:cgroup_attach_task`, after the move) makes every
/// identity read before it stale. So later calls copy them from here. The name too: exec drops
/// the slot, and `task:task_rename` (which fires before the new name is written, possibly by
/// another thread of the process through /proc/self/task/TID/comm) writes its `newcomm` into
/// the renamed thread's slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub ns: NsInums,
    pub cap_effective: u64,
    /// [`Identity::KNOWN`], with [`Identity::CAPS`] when `cap_effective` could be read.
    pub known: u32,
    pub uid: u32,
    pub gid: u32,
    pub _pad: u32,
    pub cgroup_id: u64,
    /// Kernel time (CLOCK_MONOTONIC) these were read at.
    pub read_ns: u64,
    /// The thread's name (`comm`), NUL-terminated.
    pub comm: [u8; COMM_LEN],
}

const _: () = assert!(size_of::<Identity>() == 80);
// The kernel programs copy a name as two aligned words.
const _: () = assert!(
    core::mem::offset_of!(SyscallHead, comm).is_multiple_of(8)
        && core::mem::offset_of!(Identity, comm).is_multiple_of(8)
        && core::mem::offset_of!(PendingCall, identity).is_multiple_of(8)
        && align_of::<SyscallHead>() == 8
        && align_of::<PendingCall>() == 8
);

impl Identity {
    pub const UNKNOWN: Identity = Identity {
        ns: NsInums { net: 0, mnt: 0, pid: 0, user: 0, uts: 0, _pad: 0 },
        cap_effective: 0,
        known: 0,
        uid: 0,
        gid: 0,
        _pad: 0,
        cgroup_id: 0,
        read_ns: 0,
        comm: [0; COMM_LEN],
    };
    pub const KNOWN: u32 = 1;
    pub const CAPS: u32 = 2;
}

/// Namespace inode numbers, as in /proc/PID/ns/*.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsInums {
    pub net: u32,
    pub mnt: u32,
    pub pid: u32,
    pub user: u32,
    pub uts: u32,
    pub _pad: u32,
}

/// A traced process forked a child (with `--follow-forks`) or a traced process exited.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessRecord {
    pub header: Header,
    pub ts_ns: u64,
    /// The process concerned: the child for a fork, the exiting process for an exit.
    pub tgid: u32,
    /// The parent's tgid for a fork; 0 for an exit.
    pub parent_tgid: u32,
    pub comm: [u8; COMM_LEN],
    /// For an exit with [`ProcessRecord::STATUS_KNOWN`]: the status as wait(2) reports it
    /// (`code << 8`, or the signal number, with 0x80 for a core dump).
    pub exit_status: u32,
    pub flags: u32,
}

const _: () = assert!(size_of::<ProcessRecord>() == 48);

impl ProcessRecord {
    /// `flags`: `exit_status` was read from the exiting task.
    pub const STATUS_KNOWN: u32 = 1;
}

/// A socket error the kernel reported (`sock:inet_sk_error_report`, in softirq context) on a
/// socket a traced thread connected: the outcome of a connect the program never asked for
/// (ECONNREFUSED, ETIMEDOUT...) or a later failure of the connection (ECONNRESET...).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SocketErrorRecord {
    pub header: Header,
    /// Kernel time (CLOCK_MONOTONIC) of the report.
    pub ts_ns: u64,
    /// `ts_ns` of the connect that taught the programs the socket (its entry).
    pub connect_ns: u64,
    /// The thread that connected, and its fd.
    pub tgid: u32,
    pub tid: u32,
    pub fd: u32,
    /// `sk->sk_err`: the error, a positive errno.
    pub error: u32,
}

const _: () = assert!(size_of::<SocketErrorRecord>() == 40);

/// What the programs know of a socket a traced thread connected, by its kernel address
/// (`struct sock *`): who connected it, and an error reported while that connect was still in
/// the kernel (kept for its exit, which alone knows whether the call itself returns it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOwner {
    pub connect_ns: u64,
    /// When `error` was reported; 0 with it.
    pub error_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub fd: u32,
    /// An error reported during the connect, not yet emitted; 0 for none.
    pub error: u32,
    /// The socket's `struct file *` at the connect: the key its insert was counted under in
    /// the programs' filter of closes (see the eBPF `sockets::closing`).
    pub file: u64,
}

const _: () = assert!(size_of::<SocketOwner>() == 40);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data without padding (checked by the size assertions) and
    // valid for any bit pattern.
    unsafe impl aya::Pod for super::SyscallHead {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PendingCall {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Slot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProcessRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SocketErrorRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SocketOwner {}
}
