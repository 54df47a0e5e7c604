//! Running code inside another process's network namespace.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling thread only, so it is done on a
//! short-lived thread: the rest of wsltrace stays where it is. Whatever that thread creates
//! keeps the namespace it was created in (a netlink socket answers about that namespace for
//! its whole life), and files under `/proc/sys/net` opened there show that namespace's values.

use std::{fs::File, os::unix::fs::MetadataExt as _};

use anyhow::{Context as _, Result, anyhow};
use nix::sched::{CloneFlags, setns};

/// A network namespace, held open by a file on `/proc/PID/ns/net`.
pub struct Netns {
    file: File,
    /// The namespace's inode number, as in `net:[INODE]`.
    pub inode: u64,
}

impl Netns {
    /// The network namespace `pid` lives in.
    pub fn of_pid(pid: u32) -> Result<Netns> {
        Self::open(&format!("/proc/{pid}/ns/net")).with_context(|| {
            format!("cannot open the network namespace of process {pid}: run wsltrace as root and check that the process exists")
        })
    }

    /// The calling thread's own network namespace.
    pub fn current() -> Result<Netns> {
        Self::open("/proc/thread-self/ns/net")
    }

    fn open(path: &str) -> Result<Netns> {
        let file = File::open(path).with_context(|| format!("opening {path}"))?;
        let inode = file.metadata().with_context(|| format!("stat {path}"))?.ino();
        Ok(Netns { file, inode })
    }

    /// Runs `f` inside this namespace: directly when the caller is already in it, else on a
    /// thread that enters it first and ends with `f`.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        if Netns::current().is_ok_and(|here| here.inode == self.inode) {
            return f();
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(&self.file, CloneFlags::CLONE_NEWNET).with_context(|| {
                        format!(
                            "cannot enter network namespace {}: run wsltrace as root (setns needs CAP_SYS_ADMIN)",
                            self.inode
                        )
                    })?;
                    f()
                })
                .join()
                .map_err(|_| anyhow!("the thread reading network namespace {} panicked", self.inode))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_runs_inline() {
        let here = Netns::current().unwrap();
        let me = Netns::of_pid(std::process::id()).unwrap();
        assert_eq!(here.inode, me.inode);
        let thread = std::thread::current().id();
        assert_eq!(me.run(|| Ok(std::thread::current().id())).unwrap(), thread);
        assert!(Netns::of_pid(u32::MAX).is_err());
    }
}
