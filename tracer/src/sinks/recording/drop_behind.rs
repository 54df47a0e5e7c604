//! A long recording's pages given back to the page cache as it grows, so that its writes keep
//! reusing the same memory instead of taking fresh pages all the way.
//!
//! Fresh memory is not free on a VM whose host takes back what the guest leaves unused
//! (virtio-balloon free page reporting; WSL2's "memory reclaim" is that feature): a page the
//! host took back is backed again at its first touch, inside the write that copies a line into
//! it. On this project's bench VM, recordings of 1.5 M events (800 MB) took 0.52-2.60 s of
//! wsltrace's system time, with events lost in 8 of 18 runs; with the pages given back,
//! 0.58-0.82 s and none lost (bench/PROFILE.md, round 10). And a trace of many GB leaves the
//! machine's page cache (the traced server's files) where it was.

use std::{fs::File, sync::mpsc, thread};

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

/// The recording is given back by windows of this size, two windows behind its end.
const WINDOW: u64 = 8 << 20;

/// Where the range given back so far ends, and the thread that gives it back.
#[derive(Default)]
pub struct DropBehind {
    behind: u64,
    worker: Worker,
}

/// The thread of a recording's part that advises its windows away.
#[derive(Default)]
enum Worker {
    /// Until the first window: a short recording never has one.
    #[default]
    NotYet,
    Running(mpsc::Sender<(u64, u64)>),
    /// The file cannot be advised (a pipe, a device), or no thread could be had: the recording
    /// goes on as it is.
    Off,
}

impl DropBehind {
    /// After the file of a recording grew to `bytes`: once the end is a window past the last
    /// range given back, the two windows before the last one are advised away
    /// (`POSIX_FADV_DONTNEED`): the kernel starts writing back the dirty pages of the newer and
    /// drops the clean ones of both, the older having been written back since it was advised.
    /// From a thread of its own: starting the write-back can wait for the disk's queue, and the
    /// reader must not.
    pub fn grown(&mut self, file: &File, bytes: u64) {
        let end = (bytes / WINDOW).saturating_sub(1) * WINDOW;
        if end <= self.behind {
            return;
        }
        self.behind = end;
        if let Worker::NotYet = self.worker {
            self.worker = start(file).map_or(Worker::Off, Worker::Running);
        }
        if let Worker::Running(worker) = &self.worker
            && worker.send((end.saturating_sub(2 * WINDOW), end)).is_err()
        {
            // The thread found the file cannot be advised.
            self.worker = Worker::Off;
        }
    }
}

/// The thread advising `file`'s ranges away; `None` where the file is not a regular file or no
/// thread can be had.
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
