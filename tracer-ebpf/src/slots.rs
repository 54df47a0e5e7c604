//! Each traced thread's slot: the call it is in, between its entry and exit, and its kept
//! identity. Where `SLOTS` holds every thread id (`SLOTS_COVER_ALL`) a thread's slot is at its
//! id; elsewhere `SLOTS` is a pool and `SLOT_INDEX` holds, at the thread's id, which slot is
//! its own. Both are array accesses the verifier inlines, and the way not taken is dead code
//! it skips. A slot is the thread's while its `owner` is the thread's pid_tgid: a thread id is
//! unique among live threads, so no other thread claims it meanwhile, and a dead thread's
//! slot, not dropped, is told apart by its owner's tgid or simply taken over by the id's next
//! thread.

use core::ptr::{NonNull, null_mut};

use tracer_common::{
    PendingCall, Slot,
    config::{Counter, SLOT_CHUNK, SLOT_NONE, SLOT_REFUSED},
};

use crate::{
    maps::{FREE_SLOTS, FRESH_SLOTS, SLOT_CHUNKS, SLOT_INDEX, SLOTS, SLOTS_COVER_ALL, count},
    store::put,
};

/// Where thread `tid`'s slot in the pool is noted; `None` past `pid_max` at start.
#[inline(always)]
fn index_entry(tid: u32) -> Option<*mut u16> {
    let entries = SLOT_INDEX.get_ptr_mut(tid >> 2)?;
    // SAFETY: one of the value's four u16 (`tid & 3` < 4).
    Some(unsafe { entries.cast::<u16>().add((tid & 3) as usize) })
}

// The functions below give pointers, null for none, rather than `Option`s: an
// `Option<*mut>` that is `None` leaves its pointer word undefined, and the verifier rejects a
// program that copies an unset register (as a spill to the stack does).

/// The slot at `index`, if it is thread `tid`'s or a dead thread's with the same id.
#[inline(always)]
fn pooled(index: u16, tid: u32) -> *mut Slot {
    if index == SLOT_NONE || index == SLOT_REFUSED {
        return null_mut();
    }
    match SLOTS.get_ptr_mut(u32::from(index)) {
        // SAFETY: a map value; `owner` is written only by its thread or when it exits.
        Some(slot) if unsafe { (*slot).owner } as u32 == tid => slot,
        _ => null_mut(),
    }
}

/// The slot that is or may become thread `tid`'s: at its id, or the one noted for it.
#[inline(always)]
fn place(tid: u32) -> *mut Slot {
    if SLOTS_COVER_ALL.load() != 0 {
        return SLOTS.get_ptr_mut(tid).unwrap_or(null_mut());
    }
    match index_entry(tid) {
        // SAFETY: this thread's own entry.
        Some(entry) => pooled(unsafe { *entry }, tid),
        None => null_mut(),
    }
}

/// The slot of thread `pid_tgid`, if it has one.
#[inline(always)]
pub fn get(pid_tgid: u64) -> Option<*mut PendingCall> {
    let slot = place(pid_tgid as u32);
    // SAFETY: a map value; `owner` is written only by its thread or when it exits.
    let call = match !slot.is_null() && unsafe { (*slot).owner } == pid_tgid {
        // SAFETY: as above.
        true => unsafe { &raw mut (*slot).call },
        false => null_mut(),
    };
    // Made from a pointer that is null for `None`, as the map helpers' results are (see above).
    NonNull::new(call).map(NonNull::as_ptr)
}

/// A slot of the pool no thread has: one given back, else the next of this CPU's chunk, else
/// the first of a new chunk. `SLOT_NONE` when there is none.
#[inline(always)]
fn take_free() -> u16 {
    if let Ok(Some(index)) = FREE_SLOTS.pop() {
        return index as u16;
    }
    let Some(fresh) = FRESH_SLOTS.get_ptr_mut(0) else { return SLOT_NONE };
    // SAFETY: this CPU's value; programs on one CPU do not run concurrently.
    let [next, end] = unsafe { &mut *fresh };
    if *next >= *end {
        let Ok(Some(chunk)) = SLOT_CHUNKS.pop() else { return SLOT_NONE };
        // Slot 0 is never handed out: it would read as `SLOT_NONE`.
        *next = (chunk * SLOT_CHUNK).max(1);
        *end = chunk * SLOT_CHUNK + SLOT_CHUNK;
    }
    let index = *next;
    *next += 1;
    index as u16
}

/// A slot of the pool for thread `tid`, noted as its own; null where `SLOTS` is by id or
/// the thread's id is past `SLOT_INDEX` (`pid_max` raised since the start), and when the pool
/// has none left (noted too: the thread's exits then know their entries had nowhere to go).
#[inline(always)]
fn from_pool(tid: u32) -> *mut Slot {
    if SLOTS_COVER_ALL.load() != 0 {
        return null_mut();
    }
    let Some(entry) = index_entry(tid) else { return null_mut() };
    let index = take_free();
    // SAFETY: this thread's own entry.
    unsafe { *entry = if index == SLOT_NONE { SLOT_REFUSED } else { index } };
    if index == SLOT_NONE {
        return null_mut();
    }
    SLOTS.get_ptr_mut(u32::from(index)).unwrap_or(null_mut())
}

/// Gives thread `pid_tgid` a new slot, without a call in it and without identity (whatever
/// it had is dropped); its start time `ts_ns`.
#[inline(always)]
pub fn claim(pid_tgid: u64, ts_ns: u64) -> Option<*mut PendingCall> {
    let slot = place(pid_tgid as u32);
    let slot = if slot.is_null() { from_pool(pid_tgid as u32) } else { slot };
    if slot.is_null() {
        count(Counter::NoSlot);
        return None;
    }
    // SAFETY: this thread's slot (see `place`), which no other live thread uses.
    let slot = unsafe { &mut *slot };
    put(&mut slot.call.syscall, PendingCall::NONE);
    put(&mut slot.call.ts_ns, ts_ns);
    // What tells a kept identity from none; the other fields are rewritten when it is kept.
    put(&mut slot.call.identity.known, 0);
    put(&mut slot.owner, pid_tgid);
    Some(&raw mut slot.call)
}

/// Whether thread `pid_tgid` can have no slot at all: its id is past what `SLOTS` or
/// `SLOT_INDEX` was sized for at start (`pid_max` raised since), or the pool had none left.
#[inline(always)]
pub fn outgrown(pid_tgid: u64) -> bool {
    let tid = pid_tgid as u32;
    if SLOTS_COVER_ALL.load() != 0 {
        return SLOTS.get_ptr_mut(tid).is_none();
    }
    match index_entry(tid) {
        // SAFETY: this thread's own entry.
        Some(entry) => (unsafe { *entry }) == SLOT_REFUSED,
        None => true,
    }
}

/// Drops the slot of thread `pid_tgid`, identity and all; a slot of the pool goes back to it.
#[inline(always)]
pub fn release(pid_tgid: u64) {
    let tid = pid_tgid as u32;
    if SLOTS_COVER_ALL.load() != 0 {
        if let Some(slot) = SLOTS.get_ptr_mut(tid) {
            // SAFETY: a map value; see `claim`.
            let slot = unsafe { &mut *slot };
            if slot.owner == pid_tgid {
                put(&mut slot.owner, 0);
            }
        }
        return;
    }
    let Some(entry) = index_entry(tid) else { return };
    // SAFETY: the entry of thread `tid`, which is this thread or one no longer running.
    let index = unsafe { *entry };
    // SAFETY: as above.
    unsafe { *entry = SLOT_NONE };
    // A dead predecessor's slot goes back too: no live thread but this one has the id.
    let slot = pooled(index, tid);
    if !slot.is_null() {
        // SAFETY: a map value; see `claim`.
        put(unsafe { &mut (*slot).owner }, 0);
        let _ = FREE_SLOTS.push(u32::from(index), 0);
    }
}
