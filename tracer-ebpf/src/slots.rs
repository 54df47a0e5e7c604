//! Each traced thread's slot: the call it is in, between its entry and exit, and its kept
//! identity. A thread whose id is below the size of `SLOTS` has its slot there, at its id (an
//! array access the verifier inlines); the others in the `PENDING` hash, unless `SLOTS` holds
//! every id (`SLOTS_COVER_ALL`): the hash is then never used, and the verifier skips it. A slot in the array
//! is the thread's while its `owner` is the thread's pid_tgid: a thread id is unique among
//! live threads, so no other thread claims it meanwhile, and a dead thread's slot, not
//! dropped, is told apart by its owner's tgid or simply taken over by the id's next thread.

use core::ptr::NonNull;

use tracer_common::PendingCall;

use crate::{
    maps::{PENDING, SLOTS, SLOTS_COVER_ALL},
    store::put,
};

/// The slot of thread `pid_tgid`, if it has one.
#[inline(always)]
pub fn get(pid_tgid: u64) -> Option<*mut PendingCall> {
    let Some(slot) = SLOTS.get_ptr_mut(pid_tgid as u32) else {
        if SLOTS_COVER_ALL.load() != 0 {
            return None;
        }
        return PENDING.get_ptr_mut(pid_tgid);
    };
    // SAFETY: a map value; `owner` is written only by its thread or when it exits.
    let call = match unsafe { (*slot).owner } == pid_tgid {
        // SAFETY: as above.
        true => unsafe { &raw mut (*slot).call },
        false => core::ptr::null_mut(),
    };
    // Made from a pointer that is null for `None`, as the map helpers' results are: an
    // `Option<*mut>` built otherwise leaves its unused word undefined in the `None` case, and
    // the verifier rejects a program that copies an unset register.
    NonNull::new(call).map(NonNull::as_ptr)
}

/// Gives thread `pid_tgid` a new slot, without a call in it and without identity (whatever
/// it had is dropped); its start time `ts_ns`.
#[inline(always)]
pub fn claim(pid_tgid: u64, ts_ns: u64) -> Option<*mut PendingCall> {
    let Some(slot) = SLOTS.get_ptr_mut(pid_tgid as u32) else {
        if SLOTS_COVER_ALL.load() != 0 {
            return None;
        }
        // An LRU map never refuses an insert: under pressure it evicts the slot of the thread
        // idle longest, whose next exit is then one without entry.
        let _ = PENDING.insert(pid_tgid, PendingCall::new(ts_ns, PendingCall::NONE), 0);
        return PENDING.get_ptr_mut(pid_tgid);
    };
    // SAFETY: a map value at this thread's id, which no live thread but this one uses.
    let slot = unsafe { &mut *slot };
    put(&mut slot.call.syscall, PendingCall::NONE);
    put(&mut slot.call.ts_ns, ts_ns);
    // What tells a kept identity from none; the other fields are rewritten when it is kept.
    put(&mut slot.call.identity.known, 0);
    put(&mut slot.owner, pid_tgid);
    Some(&raw mut slot.call)
}

/// Whether thread `pid_tgid` can have no slot at all: `SLOTS` was to hold every id, and
/// `pid_max` was raised past it during the trace.
#[inline(always)]
pub fn outgrown(pid_tgid: u64) -> bool {
    SLOTS_COVER_ALL.load() != 0 && SLOTS.get_ptr_mut(pid_tgid as u32).is_none()
}

/// Drops the slot of thread `pid_tgid`, identity and all.
#[inline(always)]
pub fn release(pid_tgid: u64) {
    match SLOTS.get_ptr_mut(pid_tgid as u32) {
        Some(slot) => {
            // SAFETY: a map value; see `claim`.
            let slot = unsafe { &mut *slot };
            if slot.owner == pid_tgid {
                put(&mut slot.owner, 0);
            }
        }
        None if SLOTS_COVER_ALL.load() != 0 => {}
        None => {
            let _ = PENDING.remove(pid_tgid);
        }
    }
}
