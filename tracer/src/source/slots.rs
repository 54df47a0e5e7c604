//! The threads' slots, read for the calls in flight (`--blocked-after`) and for the calls in
//! progress at attach: `SLOTS`, by thread id or a pool, and `SLOT_INDEX`, each thread's slot
//! in the pool (see `config::MAP_SLOTS`). Handles of their own (the same kernel maps, opened
//! by id), since emulation may take the object's.

use std::collections::HashSet;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, Map, MapData, Queue},
};
use tracer_common::{
    PendingCall, Slot,
    config::{
        MAP_SLOT_CHUNKS, MAP_SLOT_INDEX, MAP_SLOTS, PID_MAX_LIMIT, SLOT_CHUNK, SLOT_NONE,
        SLOT_REFUSED, SLOT_TIDS,
    },
};

/// Elements of `SLOTS`: a slot per thread id up to `pid_max`, at most [`SLOT_TIDS`] (then a
/// pool of that many).
pub fn entries(pid_max: Option<u32>) -> u32 {
    pid_max.unwrap_or(SLOT_TIDS).clamp(1, SLOT_TIDS)
}

/// Whether every thread id has its slot in `SLOTS` (see `config::GLOBAL_SLOTS_COVER_ALL`).
pub fn cover_all(pid_max: Option<u32>) -> bool {
    pid_max.is_some_and(|max| max <= SLOT_TIDS)
}

/// Elements of `SLOT_INDEX`, four thread ids each: every id below `pid_max` where `SLOTS` is
/// a pool, none used otherwise.
pub fn index_entries(pid_max: Option<u32>) -> u32 {
    match cover_all(pid_max) {
        true => 1,
        false => pid_max.unwrap_or(PID_MAX_LIMIT).min(PID_MAX_LIMIT).div_ceil(4),
    }
}

/// The thread ids the programs have a slot for (see `slots::outgrown` in tracer-ebpf).
pub fn covered(pid_max: Option<u32>) -> u32 {
    match cover_all(pid_max) {
        true => entries(pid_max),
        false => 4 * index_entries(pid_max),
    }
}

/// Hands the pool's chunks to the programs (see `config::MAP_SLOT_CHUNKS`), before any runs.
pub fn fill_pool(ebpf: &mut Ebpf) -> Result<()> {
    let map = ebpf.map_mut(MAP_SLOT_CHUNKS).context("map SLOT_CHUNKS missing")?;
    let mut chunks = Queue::<_, u32>::try_from(map)?;
    for chunk in 0..SLOT_TIDS / SLOT_CHUNK {
        chunks.push(chunk, 0).context("filling the pool of slots")?;
    }
    Ok(())
}

pub struct Slots {
    array: Array<MapData, Slot>,
    /// `None` where `SLOTS` is indexed by thread id.
    index: Option<Array<MapData, [u16; 4]>>,
}

impl Slots {
    pub fn open(ebpf: &Ebpf, cover_all: bool) -> Result<Slots> {
        let reopen = |name: &str| -> Result<MapData> {
            let id = match ebpf.map(name) {
                Some(Map::Array(data)) => data.info()?.id(),
                _ => bail!("map {name} missing from the eBPF object"),
            };
            MapData::from_id(id).context("opening the map of calls in flight")
        };
        let array = Array::try_from(Map::Array(reopen(MAP_SLOTS)?))?;
        let index = match cover_all {
            true => None,
            false => Some(Array::try_from(Map::Array(reopen(MAP_SLOT_INDEX)?))?),
        };
        Ok(Slots { array, index })
    }

    /// Thread `tid`'s slot, or a dead thread's with the same id: (owner, call).
    fn slot(&self, tid: u32) -> Option<(u64, PendingCall)> {
        let at = match &self.index {
            None => tid,
            Some(index) => {
                let entries = index.get(&(tid / 4), 0).ok()?;
                match entries[(tid % 4) as usize] {
                    SLOT_NONE | SLOT_REFUSED => return None,
                    at => u32::from(at),
                }
            }
        };
        let slot = self.array.get(&at, 0).ok()?;
        (slot.owner as u32 == tid).then_some((slot.owner, slot.call))
    }

    /// Every call in flight in the threads of `traced` (ids from `TRACED`, which holds threads
    /// too with `-f`): (pid_tgid, the call). A slot stays between its thread's calls, marked
    /// idle ([`PendingCall::NONE`]); those are left out. The maps are read at the threads'
    /// ids, each once, not whole (32,768 look-ups or more).
    pub fn in_flight(&self, traced: &HashSet<u32>) -> Vec<(u64, PendingCall)> {
        // Any thread's task directory lists its whole group: an id already listed is not
        // listed again (with `-f`, N traced threads would otherwise read N² entries).
        let mut tids = HashSet::new();
        for &id in traced {
            if tids.contains(&id) {
                continue;
            }
            let Ok(tasks) = procfs::process::Process::new(id as i32).and_then(|p| p.tasks()) else {
                continue;
            };
            tids.extend(tasks.filter_map(|task| u32::try_from(task.ok()?.tid).ok()));
        }
        tids.into_iter()
            .filter_map(|tid| self.slot(tid))
            .filter(|(_, call)| call.syscall != PendingCall::NONE)
            .collect()
    }

    /// Whether thread `pid_tgid` has a slot: it made a traced call since tracing started.
    pub fn has(&self, pid_tgid: u64) -> bool {
        self.slot(pid_tgid as u32).is_some_and(|(owner, _)| owner == pid_tgid)
    }
}
