//! Can this process load and attach tracing programs?

use anyhow::{Result, bail};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails with the fix when the effective capabilities cannot trace.
pub fn check() -> Result<()> {
    let status = procfs::process::Process::myself()?.status()?;
    let caps = status.capeff;
    let has = |cap: u32| caps & (1 << cap) != 0;
    // Mounting tracefs needs CAP_SYS_ADMIN too, but only when it is missing.
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!(
        "wsltrace needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) to load eBPF programs: run it with sudo"
    )
}
