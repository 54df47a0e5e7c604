//! The processes to trace: validation of `--pid` values and liveness.

use anyhow::{Result, anyhow, bail};
use procfs::process::Process;

/// Validates a `--pid` value and returns the process (tgid) to trace: a thread id stands for
/// its whole process.
pub fn resolve_pid(pid: u32) -> Result<u32> {
    if pid == std::process::id() {
        bail!(
            "pid {pid} is wsltrace itself, which never traces itself: give the pid of the process to watch"
        );
    }
    let status = i32::try_from(pid)
        .ok()
        .and_then(|p| Process::new(p).ok())
        .and_then(|p| p.status().ok())
        .ok_or_else(|| anyhow!("no such process: {pid} (list processes with `ps -e`)"))?;
    if status.state.starts_with('Z') {
        bail!("process {pid} ({}) has already exited (zombie): nothing to trace", status.name);
    }
    let tgid = status.tgid as u32;
    if tgid != pid {
        tracing::info!("pid {pid} is a thread of process {tgid}: tracing all of process {tgid}");
    }
    Ok(tgid)
}

/// Whether `pid` still runs (exists and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    Process::new(pid)
        .and_then(|p| p.stat())
        .is_ok_and(|stat| !matches!(stat.state, 'Z' | 'X' | 'x'))
}
