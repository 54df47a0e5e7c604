//! A long recording's pages given back to the page cache as it grows, so that its writes keep
//! reusing the same memory instead of taking fresh pages all the way.
//!
//! Fresh memory is not free on a VM whose host takes back what the guest leaves unused
//! (virtio-balloon free page reporting, as on WSL2, whose "memory reclaim" is that feature): a
//! page the host took back is backed again at its first touch, inside the write that copies a
//! line into it. Measured on this project's bench VM, a recording of 1.5 M events (800 MB)
//! took 2.1-2.2 s of wsltrace's system time and lost events when every page was fresh,
//! 0.7-0.8 s with the pages given back. Given back also means a trace of many GB leaves the
//! machine's page cache (the traced server's files) where it was.

use std::{fs::File, sync::mpsc, thread};

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

/// The recording is given back by windows of this size, two windows behind its end.
const WINDOW: u64 = 8 << 20;

/// Where the range given back so far ends, and the thread that gives it back.
#[derive(Default)]
pub struct DropBehind {
    behind: u64,
    /// Started at the first window: a short recording never has one.
    worker: Option<mpsc::Sender<(u64, u64)>>,
}

impl DropBehind {
    /// After the file of a recording grew to `bytes`: once the end is a window past the last
    /// range given back, the two windows before the last one are advised away
    /// (`POSIX_FADV_DONTNEED`): the kernel starts writing back the dirty pages of the newer and
    /// drops the clean ones of both, the older having been written back since it was advised.
    /// From a thread of its own: starting the write-back can wait for the disk's queue, and the
    /// reader must not. A file that cannot be advised (a pipe, a device) is left alone.
    pub fn grown(&mut self, file: &File, bytes: u64) {
        let end = (bytes / WINDOW).saturating_sub(1) * WINDOW;
        if end <= self.behind {
            return;
        }
        self.behind = end;
        if self.worker.is_none() {
            self.worker = start(file);
        }
        let range = (end.saturating_sub(2 * WINDOW), end);
        if let Some(worker) = &self.worker
            && worker.send(range).is_err()
        {
            // The thread gave up on this file.
            self.worker = None;
        }
    }
}

/// The thread advising `file`'s ranges away; `None` where the file is not a regular file or no
/// thread can be had (the recording goes on without it).
fn start(file: &File) -> Option<mpsc::Sender<(u64, u64)>> {
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return None;
    }
    let file = file.try_clone().ok()?;
    let (tx, rx) = mpsc::channel::<(u64, u64)>();
    let spawned = thread::Builder::new().name("drop-behind".into()).spawn(move || {
        // Ends when the recording's part ends (its sender dropped).
        for (from, to) in rx {
            let advised = posix_fadvise(
                &file,
                from as i64,
                (to - from) as i64,
                PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
            if let Err(err) = advised {
                tracing::debug!("recording: pages not given back ({err})");
                return;
            }
        }
    });
    match spawned {
        Ok(_) => Some(tx),
        Err(err) => {
            tracing::debug!("recording: no thread to give pages back ({err})");
            None
        }
    }
}
