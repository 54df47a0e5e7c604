//! Names of the maps and globals the loader sets, and the layout of the values it writes.

/// Ring buffer carrying [`crate::SyscallRecord`] and [`crate::ProcessRecord`].
pub const MAP_EVENTS: &str = "EVENTS";
/// `HashMap<u32 tgid, u32 unused>`: the processes being traced.
pub const MAP_TRACED: &str = "TRACED";
/// `LruHashMap<u64 pid_tgid, SyscallRecord>`: calls between entry and exit.
pub const MAP_PENDING: &str = "PENDING";
/// `PerCpuArray<u64>` indexed by [`Counter`].
pub const MAP_COUNTERS: &str = "COUNTERS";

/// Default ring buffer size in bytes (a power of two): about 20,000 syscall records.
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;
/// Maximum number of traced processes.
pub const MAX_TRACED: u32 = 16384;
/// Maximum number of threads inside a traced syscall at once.
pub const MAX_IN_FLIGHT: u32 = 16384;

/// Per-CPU counters kept by the kernel programs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Records that did not fit in the ring buffer: lost events.
    RingFull = 0,
    /// Exits seen without their entry (call in flight at attach): emitted with [`crate::record::FLAG_NO_ENTRY`].
    NoEntry = 1,
}

pub const COUNTER_COUNT: u32 = 2;

// Globals (read-only, set by the loader with `override_global`).
/// `u32`: tgid of wsltrace itself, never traced.
pub const GLOBAL_TRACER_TGID: &str = "TRACER_TGID";
/// `u32`: non-zero to record only failed calls.
pub const GLOBAL_FAILED_ONLY: &str = "FAILED_ONLY";
/// [`ErrnoSet`]: when non-empty, record only calls failing with one of these errnos.
pub const GLOBAL_ERRNO_SET: &str = "ERRNO_SET";
/// `u64`: bytes waiting in the ring buffer above which a record wakes the reader up.
pub const GLOBAL_WAKEUP_BYTES: &str = "WAKEUP_BYTES";
/// `u32`: offset of `child_pid` in `sched:sched_process_fork`'s record.
pub const GLOBAL_FORK_CHILD_OFF: &str = "FORK_CHILD_OFF";
/// `u32`: offset of `group_dead` in `sched:sched_process_exit`'s record, 0 when the kernel
/// lacks the field (then a process ends when its main thread exits).
pub const GLOBAL_EXIT_GROUP_DEAD_OFF: &str = "EXIT_GROUP_DEAD_OFF";

/// Errnos the kernel keeps (1..=MAX), as a bitmap; errnos above it are never filtered in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrnoSet {
    pub bits: [u64; 9],
    /// Non-zero when the set is in use.
    pub enabled: u64,
}

impl ErrnoSet {
    /// Covers every errno the kernel returns to userspace, including the 512+ restart codes.
    pub const MAX: u32 = 575;

    pub const fn empty() -> Self {
        ErrnoSet { bits: [0; 9], enabled: 0 }
    }

    pub fn insert(&mut self, errno: u32) -> bool {
        if errno == 0 || errno > Self::MAX {
            return false;
        }
        self.bits[(errno / 64) as usize] |= 1 << (errno % 64);
        self.enabled = 1;
        true
    }

    #[inline(always)]
    pub fn contains(&self, errno: u32) -> bool {
        if errno > Self::MAX {
            return false;
        }
        let word = (errno / 64) as usize;
        match self.bits.get(word) {
            Some(bits) => bits & (1 << (errno % 64)) != 0,
            None => false,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` array of u64 plus a u64, no padding, valid for any bit pattern.
unsafe impl aya::Pod for ErrnoSet {}
