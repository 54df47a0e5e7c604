//! What the file system alone costs a recording: the same number of bytes written by the bench
//! to a new file on the same file system, in writes of the size wsltrace makes, on ext4 into
//! room reserved ahead as wsltrace reserves it, its pages given back two 8 MB windows behind as
//! wsltrace gives them back (from a thread of its own there, from this one here: both are the
//! process's CPU), synced at the end as wsltrace syncs its recording. Part of the reader's CPU
//! per event is this copy into the page cache; measured in the same round, it says how much.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::fd::AsRawFd as _,
    path::Path,
};

use anyhow::{Context as _, Result};

/// wsltrace's writes to a plain recording are about this size (strace: a median of 261,575
/// bytes per write on the mix).
const WRITE_SIZE: usize = 256 * 1024;

/// wsltrace keeps between half of this and all of it reserved past a recording's writes on
/// ext4 (`sinks/recording/output.rs`).
const RESERVE_STEP: u64 = 8 << 20;

/// wsltrace gives a recording's pages back by windows of this size, the two before the last
/// one each time its end passes a window (`sinks/recording/drop_behind.rs`).
const WINDOW: u64 = 8 << 20;

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
    let ext4 = is_ext4(&file);
    let (mut written, mut reserved) = (0, 0);
    while written < bytes {
        let n = (bytes - written).min(WRITE_SIZE as u64) as usize;
        let to = written + n as u64;
        if ext4 && to + RESERVE_STEP / 2 > reserved {
            reserve(&file, reserved, to + RESERVE_STEP)?;
            reserved = to + RESERVE_STEP;
        }
        file.write_all(&block[..n]).with_context(|| format!("writing {}", path.display()))?;
        if to / WINDOW > written / WINDOW {
            give_back(&file, (to / WINDOW).saturating_sub(1) * WINDOW);
        }
        written += n as u64;
    }
    if ext4 {
        // What is left of the reservation given back, as wsltrace does at the end.
        file.set_len(written).with_context(|| format!("trimming {}", path.display()))?;
    }
    file.sync_data().with_context(|| format!("syncing {}", path.display()))?;
    drop(file);
    let cost = thread_cpu_ns()? - before;
    let _ = fs::remove_file(path);
    Ok(cost)
}

fn is_ext4(file: &File) -> bool {
    // SAFETY: statfs is plain data; fstatfs fills it from an open descriptor.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid pointer to a statfs.
    unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) == 0 && fs.f_type == libc::EXT4_SUPER_MAGIC }
}

/// The bytes from `from` up to `to` allocated without changing the file's size.
fn reserve(file: &File, from: u64, to: u64) -> Result<()> {
    // SAFETY: a valid descriptor; fallocate only reads its integer arguments.
    let done = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            from as libc::off_t,
            (to - from) as libc::off_t,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error()).context("fallocate(FALLOC_FL_KEEP_SIZE)");
    }
    Ok(())
}

/// The two windows before `end` advised away: written back, then dropped from the page cache.
fn give_back(file: &File, end: u64) {
    if end == 0 {
        // Less than two windows written (and a length of 0 would mean "to the end").
        return;
    }
    let from = end.saturating_sub(2 * WINDOW);
    // SAFETY: a valid descriptor; posix_fadvise only reads its integer arguments. Its outcome
    // is ignored, as wsltrace ignores it.
    let _ = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            from as libc::off_t,
            (end - from) as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        )
    };
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
