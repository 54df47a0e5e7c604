//! The programs' attachments, and how they are let go.
//!
//! Detaching a syscall tracepoint waits for RCU grace periods under the kernel's event mutex
//! (`perf_trace_event_unreg`: 35-70 ms each on this 6.18 VM): the ~40 links of a trace took
//! 2-3.5 s one after the other. At the end of a trace a forked child holds the links until
//! wsltrace has exited ([`hand_over`]); elsewhere (an error, a failed fork) they are dropped
//! from a thread each, which halves the wait.

use std::{os::fd::RawFd, thread, time::Duration};

/// Enough for a thread that only closes a descriptor.
const STACK_BYTES: usize = 64 * 1024;

/// Links of any kind (aya's `TracePointLink`, `RawTracePointLink`): dropping one detaches it.
#[derive(Default)]
pub struct Links(Vec<Box<dyn Send>>);

impl Links {
    pub fn push(&mut self, link: impl Send + 'static) {
        self.0.push(Box::new(link));
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.0);
        thread::scope(|scope| {
            for link in links {
                // A thread that cannot be made drops its closure, link included, here: the
                // detach is then only slower.
                let _ = thread::Builder::new()
                    .name("wsltrace-detach".to_owned())
                    .stack_size(STACK_BYTES)
                    .spawn_scoped(scope, move || drop(link));
            }
        });
    }
}

/// Leaves the links' last references to a forked child that lets them go once this process
/// has exited, so the user does not wait for the detach. The child closes everything else at
/// once (stdout and stderr too: a reader of our pipes sees them close when we exit) and holds
/// nothing but the links, which keep their programs and maps alive. The caller has emptied the
/// traced set: the programs are quiet meanwhile.
pub fn hand_over() {
    let keep = link_fds();
    let parent = std::process::id();
    // SAFETY: the child makes only raw syscalls (close_range, getppid, nanosleep, _exit), all
    // async-signal-safe, and reads `keep`, allocated before the fork.
    if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
        let pause = libc::timespec { tv_sec: 0, tv_nsec: POLL_PARENT.as_nanos() as libc::c_long };
        // SAFETY: raw syscalls in the forked child, see above.
        unsafe {
            let mut from = 0;
            for &fd in &keep {
                if fd > from {
                    libc::close_range(from, fd - 1, 0);
                }
                from = fd + 1;
            }
            libc::close_range(from, u32::MAX, 0);
            // Reparented when the parent exits.
            while libc::getppid() as u32 == parent {
                libc::nanosleep(&pause, std::ptr::null_mut());
            }
            libc::_exit(0);
        }
    }
    // Parent (or fork failed): dropping the links closes our copies; with a child holding
    // them this is instant.
}

/// How often the child looks whether wsltrace has exited.
const POLL_PARENT: Duration = Duration::from_millis(5);

/// This process's descriptors of links (`bpf_link`; `perf_event` where the kernel attaches
/// programs to perf events by ioctl), ascending.
fn link_fds() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let mut fds: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| {
            let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let link =
                matches!(target.to_str()?, "anon_inode:bpf_link" | "anon_inode:[perf_event]");
            link.then_some(u32::try_from(fd).ok()?)
        })
        .collect();
    fds.sort_unstable();
    fds
}
