//! The traced set's byte per pid (`config::MAP_TRACED_PIDS`), written through a shared
//! mapping of the map: a byte store from here cannot undo one the programs make at fork or
//! exit in the same 8-byte element, as a map update of the whole element could.

use std::{num::NonZeroUsize, ptr::NonNull};

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use tracer_common::config::PID_MAX_LIMIT;

/// This machine's `pid_max`, read once at start for the maps sized by it; `None` when it
/// cannot be read.
pub fn pid_max() -> Option<u32> {
    procfs::sys::kernel::pid_max().ok().and_then(|max| u32::try_from(max).ok())
}

/// Elements of the map for `pid_max`: eight ids per element.
pub fn entries(pid_max: Option<u32>) -> u32 {
    pid_max.unwrap_or(PID_MAX_LIMIT).min(PID_MAX_LIMIT).div_ceil(8).max(1)
}

pub struct TracedPids {
    bytes: NonNull<u8>,
    len: usize,
    /// The map stays open while it is mapped.
    _map: MapData,
}

impl TracedPids {
    pub fn map(map: Map) -> Result<TracedPids> {
        let Map::Array(map) = map else {
            anyhow::bail!("the traced-pid map is not an array");
        };
        let entries = map.info().map(|info| info.max_entries()).context("reading its size")?;
        let len = NonZeroUsize::new(entries as usize * 8).context("the traced-pid map is empty")?;
        // SAFETY: a shared mapping of the map's own memory, no larger than the map (the
        // kernel checks), unmapped only on drop.
        let bytes = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                map.fd(),
                0,
            )
        }
        .context("mapping the traced-pid map")?;
        Ok(TracedPids { bytes: bytes.cast(), len: len.get(), _map: map })
    }

    /// Marks `id` traced or not; an id past the map needs no byte (see `maybe_traced`).
    pub fn set(&mut self, id: u32, traced: bool) {
        let at = id as usize;
        if at < self.len {
            // SAFETY: inside the mapping; a byte store, as the programs make.
            unsafe { self.bytes.add(at).write_volatile(u8::from(traced)) };
        }
    }
}

impl Drop for TracedPids {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of `len` bytes, used by nothing else.
        let _ = unsafe { munmap(self.bytes.cast(), self.len) };
    }
}
