//! The threads' slots, read for the calls in flight (`--blocked-after`) and for the calls in
//! progress at attach: `SLOTS`, an array by thread id, and `PENDING`, the hash of the threads
//! with larger ids (see `config::MAP_SLOTS`). Handles of their own (the same kernel maps,
//! opened by id), since emulation may take the object's.

use std::collections::HashSet;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData},
};
use tracer_common::{
    PendingCall, Slot,
    config::{MAP_PENDING, MAP_SLOTS, SLOT_TIDS},
};

/// Elements of `SLOTS`: a slot per thread id up to `pid_max`, at most [`SLOT_TIDS`].
pub fn entries(pid_max: Option<u32>) -> u32 {
    pid_max.unwrap_or(SLOT_TIDS).clamp(1, SLOT_TIDS)
}

/// Whether every thread id has its slot in `SLOTS` (see `config::GLOBAL_SLOTS_COVER_ALL`).
pub fn cover_all(pid_max: Option<u32>) -> bool {
    pid_max.is_some_and(|max| max <= SLOT_TIDS)
}

pub struct Slots {
    array: Array<MapData, Slot>,
    hash: HashMap<MapData, u64, PendingCall>,
}

impl Slots {
    pub fn open(ebpf: &Ebpf) -> Result<Slots> {
        let reopen = |name: &str| -> Result<MapData> {
            let id = match ebpf.map(name) {
                Some(Map::Array(data) | Map::LruHashMap(data)) => data.info()?.id(),
                _ => bail!("map {name} missing from the eBPF object"),
            };
            MapData::from_id(id).context("opening the map of calls in flight")
        };
        let array = Array::try_from(Map::Array(reopen(MAP_SLOTS)?))?;
        let hash = HashMap::try_from(Map::LruHashMap(reopen(MAP_PENDING)?))?;
        Ok(Slots { array, hash })
    }

    /// Every call in flight in the threads of `traced` (ids from `TRACED`, which holds threads
    /// too with `-f`): (pid_tgid, the call). A slot stays between its thread's calls, marked
    /// idle ([`PendingCall::NONE`]); those are left out. The array is read at the threads'
    /// ids, each once, not whole (32,768 look-ups).
    pub fn in_flight(&self, traced: &HashSet<u32>) -> Vec<(u64, PendingCall)> {
        let hashed = self.hash.iter().filter_map(Result::ok);
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
        let arrayed = tids.into_iter().filter_map(|tid| {
            let slot = self.array.get(&tid, 0).ok()?;
            (slot.owner as u32 == tid).then_some((slot.owner, slot.call))
        });
        hashed.chain(arrayed).filter(|(_, call)| call.syscall != PendingCall::NONE).collect()
    }

    /// Whether thread `pid_tgid` has a slot: it made a traced call since tracing started.
    pub fn has(&self, pid_tgid: u64) -> bool {
        let arrayed = self.array.get(&(pid_tgid as u32), 0).is_ok_and(|s| s.owner == pid_tgid);
        arrayed || self.hash.get(&pid_tgid, 0).is_ok()
    }
}
