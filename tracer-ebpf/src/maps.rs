//! Maps and loader-set globals. Names and sizes come from `tracer_common::config`.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, Queue, RingBuf},
};
use tracer_common::{
    Slot,
    config::{
        COUNTER_COUNT, Counter, DEFAULT_RING_BYTES, ErrnoSet, MAX_SOCKETS, MAX_TRACED, SLOT_CHUNK,
        SLOT_TIDS,
    },
    layout::KernelLayout,
    record::SocketOwner,
};

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map]
pub static TRACED: HashMap<u32, u64> = HashMap::with_max_entries(MAX_TRACED, 0);

/// A byte per pid, set while the id is in `TRACED` (see `config::MAP_TRACED_PIDS`); sized
/// by the loader.
#[map]
pub static TRACED_PIDS: Array<u64> = Array::with_max_entries(1, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// The threads' slots, by id or a pool (see `config::MAP_SLOTS`); sized by the loader.
#[map]
pub static SLOTS: Array<Slot> = Array::with_max_entries(1, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// Each thread's slot in the pool (see `config::MAP_SLOT_INDEX`); sized by the loader.
#[map]
pub static SLOT_INDEX: Array<[u16; 4]> = Array::with_max_entries(1, 0);

/// Slots given back to the pool.
#[map]
pub static FREE_SLOTS: Queue<u32> = Queue::with_max_entries(SLOT_TIDS, 0);

/// Chunks of the pool never handed out (see `config::MAP_SLOT_CHUNKS`).
#[map]
pub static SLOT_CHUNKS: Queue<u32> = Queue::with_max_entries(SLOT_TIDS / SLOT_CHUNK, 0);

/// Each CPU's next slot and the end of its chunk.
#[map]
pub static FRESH_SLOTS: PerCpuArray<[u32; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU LRU lists (see `MAX_SOCKETS`).
#[map]
pub static SOCKETS: LruHashMap<u64, SocketOwner> =
    LruHashMap::with_max_entries(MAX_SOCKETS, aya_ebpf::bindings::BPF_F_NO_COMMON_LRU);

/// A counting filter of the sockets in `SOCKETS`, by the hash of their `struct file *` (see
/// `sockets::closing`). Small enough to stay in cache: every close of a socket reads it.
pub const SOCKET_FILTER_BITS: u32 = 12;
pub const SOCKET_FILTER_SLOTS: u32 = 1 << SOCKET_FILTER_BITS;

#[map]
pub static SOCKET_FILTER: Array<u64> = Array::with_max_entries(SOCKET_FILTER_SLOTS, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// When a process last moved to another cgroup, which makes kept identities stale (see
/// `identity`).
#[map]
pub static CGROUP_MOVED: Array<u64> = Array::with_max_entries(1, 0);

/// The `--errno` bitmap; a map lookup bounds the index at run time, which the verifier
/// accepts where a variable index into a stack copy of a global was refused.
#[map]
pub static ERRNOS: Array<u64> = Array::with_max_entries(ErrnoSet::WORDS, 0);

#[unsafe(no_mangle)]
pub static TRACER_TGID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static SELECTED: Global<u64> = Global::new(u64::MAX);
#[unsafe(no_mangle)]
pub static FAILED_ONLY: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static ERRNO_FILTER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static WAKEUP_BYTES: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static FORK_CHILD_OFF: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static LAYOUT: Global<KernelLayout> = Global::new(KernelLayout::UNRESOLVED);
#[unsafe(no_mangle)]
pub static EXIT_GROUP_DEAD_OFF: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static EXEC_OLD_PID_OFF: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static KEEP_IDENTITY: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static SLOTS_COVER_ALL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static RENAME_PID_OFF: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static RENAME_NEWCOMM_OFF: Global<u32> = Global::new(0);

/// Since when every new thread of traced process `tgid` has its calls seen from their entry
/// (see `tracer_common::config::MAP_TRACED`).
#[inline(always)]
pub fn traced_since(tgid: u32) -> Option<u64> {
    TRACED.get_ptr(tgid).map(|since| {
        // SAFETY: a map value, read once.
        unsafe { *since }
    })
}

/// The first check of every program: is this process traced? wsltrace itself never is.
/// The byte answers for an id inside `TRACED_PIDS`: it is set from just before the id enters
/// `TRACED` until just after it leaves, so it is set for every traced process, and for a
/// process being added or removed a moment early or late (a call made in that moment is
/// traced). An id past the bytes (`pid_max` raised since the start) asks `TRACED`.
#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    tgid != TRACER_TGID.load()
        && match traced_byte(tgid) {
            // SAFETY: a byte of a map value, read once.
            Some(byte) => unsafe { *byte != 0 },
            None => TRACED.get_ptr(tgid).is_some(),
        }
}

/// Adds `id` to the traced set: its byte first, so that `TRACED` never holds an id whose byte
/// is clear. Returns whether it was added (`TRACED` may be full).
#[inline(always)]
pub fn add_traced(id: u32, since: u64) -> bool {
    set_traced_byte(id, 1);
    if TRACED.insert(id, since, 0).is_ok() {
        return true;
    }
    set_traced_byte(id, 0);
    false
}

/// Takes `id` out of the traced set, its byte last.
#[inline(always)]
pub fn remove_traced(id: u32) {
    let _ = TRACED.remove(id);
    set_traced_byte(id, 0);
}

#[inline(always)]
fn set_traced_byte(id: u32, value: u8) {
    if let Some(byte) = traced_byte(id) {
        // SAFETY: a byte of a map value; a byte store leaves the neighbours' bytes alone.
        unsafe { core::ptr::write_volatile(byte, value) };
    }
}

/// The byte of `id` in `TRACED_PIDS`, eight to an element; `None` past the map.
#[inline(always)]
fn traced_byte(id: u32) -> Option<*mut u8> {
    let bytes = TRACED_PIDS.get_ptr_mut(id / 8)?;
    // SAFETY: `id % 8` is inside the 8-byte value.
    Some(unsafe { bytes.cast::<u8>().add((id % 8) as usize) })
}

#[inline(always)]
pub fn count(counter: Counter) {
    count_at(counter as u32);
}

/// Adds one to counter `index` (a [`Counter`] or a `lost_index`).
#[inline(always)]
pub fn count_at(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, written only by programs on this CPU, which cannot preempt
        // each other on it.
        unsafe { *slot += 1 };
    }
}

/// Whether `errno` is in the `--errno` set.
#[inline(always)]
pub fn errno_selected(errno: u32) -> bool {
    errno != 0 && ERRNOS.get(errno / 64).is_some_and(|word| word & (1 << (errno % 64)) != 0)
}
