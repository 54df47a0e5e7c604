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

/// The processes that descend from `roots` (children, their children...), as /proc shows them
/// now: not the roots themselves, each once, sorted. Threads are not listed: tracing a process
/// traces all its threads.
pub fn descendants(roots: &[u32]) -> Vec<u32> {
    let Ok(all) = procfs::process::all_processes() else { return Vec::new() };
    // A process that exits while /proc is listed is simply not there.
    let parents: Vec<(u32, u32)> = all
        .filter_map(Result::ok)
        .filter_map(|p| p.stat().ok())
        .filter_map(|s| Some((u32::try_from(s.pid).ok()?, u32::try_from(s.ppid).ok()?)))
        .collect();
    descendants_in(&parents, roots)
}

/// [`descendants`] over `(pid, parent pid)` pairs.
fn descendants_in(parents: &[(u32, u32)], roots: &[u32]) -> Vec<u32> {
    let mut found: Vec<u32> = Vec::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in parents {
            if ppid == parent && !roots.contains(&pid) && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_of_a_tree() {
        // 1 -> 10 -> {11, 12 -> 13}; 20 is elsewhere.
        let tree = [(10, 1), (11, 10), (12, 10), (13, 12), (20, 1), (21, 20)];
        assert_eq!(descendants_in(&tree, &[10]), [11, 12, 13]);
        assert_eq!(descendants_in(&tree, &[12, 20]), [13, 21]);
        assert!(descendants_in(&tree, &[13]).is_empty());
    }

    /// A child this test starts is a descendant of this process.
    #[test]
    fn finds_a_live_child() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = descendants(&[std::process::id()]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
    }
}
