//! Names of the maps and globals the loader sets, and the layout of the values it writes.

use crate::Syscall;

/// Ring buffer carrying [`crate::SyscallRecord`] and [`crate::ProcessRecord`].
pub const MAP_EVENTS: &str = "EVENTS";
/// `HashMap<u32 tgid, u64 since_ns>`: the processes being traced, each with the kernel time
/// (CLOCK_MONOTONIC) from which every new thread's calls are seen from their entry: when it
/// was registered, or 0 for a child added at fork (it runs nothing before it is added).
pub const MAP_TRACED: &str = "TRACED";
/// `Array<u64>` with `BPF_F_MMAPABLE`, a byte per pid (eight per element): 1 while that id is
/// in [`MAP_TRACED`]. Every program's first check reads it, an array access the verifier
/// inlines, and asks the hash only for an id past it: the hash lookup was a third of what
/// each program costs every socket call of every process, and 40-50 ns of each traced call's
/// entry and exit. Userspace writes its bytes through a shared mapping, so its stores and the
/// programs' never overwrite each other's neighbours. Sized from `pid_max` at start; ids beyond it go to the hash.
pub const MAP_TRACED_PIDS: &str = "TRACED_PIDS";
/// `Array<Slot>` with `BPF_F_MMAPABLE`: each traced thread's slot, the call it is in and its
/// kept identity. Where `pid_max` is at most [`SLOT_TIDS`] (the kernel's default) it is indexed
/// by thread id; elsewhere (systemd raises `pid_max` to 4,194,304) it is a pool of
/// [`SLOT_TIDS`] slots, and [`MAP_SLOT_INDEX`] says which one a thread has. Either way an
/// array access the verifier inlines, where a hash lookup cost every entry and every exit
/// 40-50 ns; the slot is the thread's while `owner` holds its pid_tgid (a thread id is unique
/// among live threads).
pub const MAP_SLOTS: &str = "SLOTS";
/// `Array<[u16; 4]>`, four thread ids per element, sized from `pid_max` (8 MB for 4,194,304):
/// the index in [`MAP_SLOTS`] of each thread's slot, [`SLOT_NONE`] for none, [`SLOT_REFUSED`]
/// when the pool had none left for it. Used only where [`MAP_SLOTS`] is a pool. A thread
/// writes only its own entry; a slot whose owner has the thread's id is the thread's or a
/// dead predecessor's, which it takes over.
pub const MAP_SLOT_INDEX: &str = "SLOT_INDEX";
/// `Queue<u32>`: slots of the pool given back by exited threads, taken first.
pub const MAP_FREE_SLOTS: &str = "FREE_SLOTS";
/// `Queue<u32>`: the pool's chunks of [`SLOT_CHUNK`] slots never handed out, filled by the
/// loader (a push per chunk, where a push per slot took 30 ms of start-up).
pub const MAP_SLOT_CHUNKS: &str = "SLOT_CHUNKS";
/// `PerCpuArray<[u32; 2]>`: the next slot and the end of the chunk each CPU hands slots out
/// of. Per CPU, since a CPU's programs never run two at once, and a chunk at a time, so a CPU
/// keeps at most `SLOT_CHUNK - 1` slots no other can take.
pub const MAP_FRESH_SLOTS: &str = "FRESH_SLOTS";
/// Slots per chunk of [`MAP_SLOT_CHUNKS`].
pub const SLOT_CHUNK: u32 = 16;
/// A thread without a slot in [`MAP_SLOT_INDEX`].
pub const SLOT_NONE: u16 = 0;
/// A thread the pool had no slot for: its calls are counted as lost ([`Counter::NoSlot`]).
pub const SLOT_REFUSED: u16 = u16::MAX;
/// `PerCpuArray<u64>` indexed by [`Counter`].
pub const MAP_COUNTERS: &str = "COUNTERS";
/// `Array<u64>` of [`ErrnoSet::WORDS`] words: the `--errno` set as a bitmap (bit n = errno n).
pub const MAP_ERRNOS: &str = "ERRNOS";
/// `LruHashMap<u64 struct sock *, SocketOwner>`: sockets traced threads connect, filled at
/// connect entry, dropped at close, for the socket errors the kernel reports on them.
pub const MAP_SOCKETS: &str = "SOCKETS";

/// Default ring buffer size in bytes (a power of two): about 20,000 syscall records.
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;
/// The largest `pid_max` (`PID_MAX_LIMIT` on 64-bit kernels), for when it cannot be read.
pub const PID_MAX_LIMIT: u32 = 4 << 20;
/// Maximum number of traced processes.
pub const MAX_TRACED: u32 = 16384;
/// Slots in [`MAP_SLOTS`] (160 bytes each: 5 MB of kernel memory): one per thread id where
/// `pid_max` is at most this (32768 on most machines without systemd's raise), else a pool
/// for that many traced threads at once (slot 0 unused).
pub const SLOT_TIDS: u32 = 32768;
/// Maximum number of connected sockets whose errors are attributed (the least recently
/// connected are forgotten first). The kernel keeps one LRU list per CPU (an insert into the
/// common list cost each connect about 100 ns): each CPU's connects share
/// `MAX_SOCKETS / possible CPUs` places.
pub const MAX_SOCKETS: u32 = 16384;

/// Per-CPU counters kept by the kernel programs: the fixed ones below, then the records lost
/// per syscall (see [`lost_index`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Exits seen without their entry (call in flight at attach): emitted with [`crate::record::FLAG_NO_ENTRY`].
    NoEntry = 0,
    /// [`crate::ProcessRecord`]s of a fork that did not fit in the ring buffer.
    LostFork = 1,
    /// [`crate::ProcessRecord`]s of an exit that did not fit.
    LostExit = 2,
    /// [`crate::record::SocketErrorRecord`]s that did not fit.
    LostSocketError = 3,
    /// Calls whose thread could get no slot: the pool was empty (more traced threads at once
    /// than [`SLOT_TIDS`]), or its id is past what the maps were sized for (`pid_max` raised
    /// during the trace). They are counted as lost too.
    NoSlot = 4,
}

/// First of the per-syscall loss counters.
const LOST_BASE: u32 = 5;
const SYSCALLS: u32 = Syscall::ALL.len() as u32;

/// Index in [`MAP_COUNTERS`] of the count of `syscall`'s records that did not fit in the ring
/// buffer: records of calls the user selected, or context records (`context`, see
/// [`crate::record::FLAG_CONTEXT`]), counted apart so a loss says what it costs.
pub const fn lost_index(syscall: Syscall, context: bool) -> u32 {
    LOST_BASE + if context { SYSCALLS } else { 0 } + syscall as u32
}

pub const COUNTER_COUNT: u32 = LOST_BASE + 2 * SYSCALLS;
// Globals (read-only, set by the loader with `override_global`).
/// `u32`: tgid of wsltrace itself, never traced.
pub const GLOBAL_TRACER_TGID: &str = "TRACER_TGID";
/// `u64`: bit `Syscall::bit()` set for the syscalls the user asked for (`-s`); the others are
/// attached only for context (see `Syscall::is_context`).
pub const GLOBAL_SELECTED: &str = "SELECTED";
/// `u32`: non-zero to record only failed calls.
pub const GLOBAL_FAILED_ONLY: &str = "FAILED_ONLY";
/// `u32`: non-zero to record only calls failing with an errno in [`MAP_ERRNOS`].
pub const GLOBAL_ERRNO_FILTER: &str = "ERRNO_FILTER";
/// `u64`: bytes waiting in the ring buffer above which a record wakes the reader up.
pub const GLOBAL_WAKEUP_BYTES: &str = "WAKEUP_BYTES";
/// `u32`: offset of `child_pid` in `sched:sched_process_fork`'s record.
pub const GLOBAL_FORK_CHILD_OFF: &str = "FORK_CHILD_OFF";
/// `u32`: offset of `group_dead` in `sched:sched_process_exit`'s record, 0 when the kernel
/// lacks the field (then a process ends when its main thread exits).
pub const GLOBAL_EXIT_GROUP_DEAD_OFF: &str = "EXIT_GROUP_DEAD_OFF";
/// `u32`: offset of `old_pid` in `sched:sched_process_exec`'s record.
pub const GLOBAL_EXEC_OLD_PID_OFF: &str = "EXEC_OLD_PID_OFF";
/// `u32`: non-zero when every call that can change a thread's identity is watched, so a
/// thread's namespaces and capabilities may be kept between its calls.
pub const GLOBAL_KEEP_IDENTITY: &str = "KEEP_IDENTITY";
/// 1 when every thread id fits [`MAP_SLOTS`] (`pid_max` at most [`SLOT_TIDS`] at start), which
/// is then indexed by thread id; 0 when it is a pool, reached through [`MAP_SLOT_INDEX`]. The
/// other way is dead code, which the verifier skips.
pub const GLOBAL_SLOTS_COVER_ALL: &str = "SLOTS_COVER_ALL";
/// `u32`: offset of `pid` (the renamed thread) in `task:task_rename`'s record; 0 if it lacks
/// the field (then the renamed thread is the current one).
pub const GLOBAL_RENAME_PID_OFF: &str = "RENAME_PID_OFF";
/// `u32`: offset of `newcomm` in `task:task_rename`'s record.
pub const GLOBAL_RENAME_NEWCOMM_OFF: &str = "RENAME_NEWCOMM_OFF";

/// The raw tracepoint programs of `--probe-kind raw` (x86_64 only), on `sys_enter` and
/// `sys_exit`: every syscall of every process, dispatched on its number.
pub const PROGRAM_RAW_SYS_ENTER: &str = "raw_sys_enter";
pub const PROGRAM_RAW_SYS_EXIT: &str = "raw_sys_exit";
/// Program arrays indexed by syscall id: each traced syscall's raw entry and exit programs,
/// which the dispatchers above tail-call (one program per syscall keeps each small enough for
/// older kernels' verifiers).
pub const MAP_RAW_ENTER: &str = "RAW_ENTER";
pub const MAP_RAW_EXIT: &str = "RAW_EXIT";

/// The `--errno` set, built by userspace and written to [`MAP_ERRNOS`] word by word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrnoSet {
    pub words: [u64; ErrnoSet::WORDS as usize],
}

impl ErrnoSet {
    /// Covers every errno the kernel returns, including the 512+ restart codes.
    pub const MAX: u32 = 575;
    pub const WORDS: u32 = Self::MAX / 64 + 1;

    pub const fn empty() -> Self {
        ErrnoSet { words: [0; Self::WORDS as usize] }
    }

    /// Adds `errno`; false when it is out of the range the kernel filter covers.
    pub fn insert(&mut self, errno: u32) -> bool {
        if errno == 0 || errno > Self::MAX {
            return false;
        }
        self.words[(errno / 64) as usize] |= 1 << (errno % 64);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }
}
