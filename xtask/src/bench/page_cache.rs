//! What the file system alone costs a recording: the same number of bytes written by the bench
//! to a new file on the same file system, in writes of the size wsltrace makes, synced at the
//! end as wsltrace syncs its recording. Part of the reader's CPU per event is this copy into
//! the page cache, and on a VM whose fresh memory the host backs on first touch it is a large
//! part; measured in the same round, it says how much.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write as _},
    path::Path,
};

use anyhow::{Context as _, Result};

/// wsltrace's writes to a plain recording are about this size (strace: a median of 261,575
/// bytes per write on the mix).
const WRITE_SIZE: usize = 256 * 1024;

/// CPU time (user + system, this thread's) to write `bytes` to the new file `path` and sync
/// it; the file is removed afterwards.
pub fn write_cost(path: &Path, bytes: u64) -> Result<u64> {
    let _ = fs::remove_file(path);
    // Line-like bytes: what is written does not change the copy's cost, but a page of zeros
    // could be treated specially some day.
    let block: Vec<u8> = b"{\"type\":\"event\",\"ts_ns\":123456789}\n"
        .iter()
        .copied()
        .cycle()
        .take(WRITE_SIZE)
        .collect();
    let before = thread_cpu_ns()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(WRITE_SIZE as u64) as usize;
        file.write_all(&block[..n]).with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    file.sync_data().with_context(|| format!("syncing {}", path.display()))?;
    drop(file);
    let cost = thread_cpu_ns()? - before;
    let _ = fs::remove_file(path);
    Ok(cost)
}

/// This thread's user + system CPU time so far.
fn thread_cpu_ns() -> Result<u64> {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return Err(io::Error::last_os_error()).context("getrusage(RUSAGE_THREAD)");
    }
    Ok(super::process::cpu_ns(&usage))
}
