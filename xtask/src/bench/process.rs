//! The bench's children: waiting for them with their resource usage and a deadline, watching
//! their stderr, and reaping what they leave behind (wsltrace detaches in a forked child that
//! outlives it; the next measurement must not run while it is still detaching).

use std::{
    io::{self, BufRead as _, BufReader, Read},
    process::Child,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// How a child ended and what it used (itself and the descendants it waited for).
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    /// The exit code, or 128 + the signal that killed it.
    pub code: i32,
    /// User + system CPU time.
    pub cpu_ns: u64,
    /// Peak resident set size (the kernel's VmHWM, as wait4 reports it), in KiB.
    pub maxrss_kb: u64,
}

/// Makes orphans of our descendants our children, so [`reap_orphans`] can wait for them.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error()).context("prctl(PR_SET_CHILD_SUBREAPER)");
    }
    Ok(())
}

/// Waits for `child`, killing it if it runs past `timeout`. The child is reaped here: do not
/// call `Child::wait` on it afterwards.
pub fn wait(child: &mut Child, timeout: Duration, what: &str) -> Result<Finished> {
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to a status word and a rusage.
        let ret = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if ret == pid {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
            return Ok(Finished {
                code,
                cpu_ns: cpu_ns(&usage),
                maxrss_kb: usage.ru_maxrss as u64,
            });
        }
        if ret < 0 {
            return Err(io::Error::last_os_error()).with_context(|| format!("waiting for {what}"));
        }
        if Instant::now() > deadline {
            // Still our unreaped child: the pid cannot have been reused.
            let _ = child.kill();
            bail!("{what} was still running after {} s and was killed", timeout.as_secs());
        }
        // Exit times are not measured here (the workload times itself): a coarse poll is fine.
        thread::sleep(Duration::from_millis(5));
    }
}

/// The user + system CPU time in `usage`.
pub fn cpu_ns(usage: &libc::rusage) -> u64 {
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// Waits for every orphan handed to us (a detaching wsltrace child). Call only when no child
/// of ours that is still wanted is running.
pub fn reap_orphans(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: a valid pointer to a status word.
        let ret = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match ret {
            0 if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            0 => {
                eprintln!("bench: warning: a tracer's child is still running; going on");
                return;
            }
            pid if pid > 0 => {}
            // ECHILD: nothing left.
            _ => return,
        }
    }
}

/// [`reap_orphans`] while `running`, a child still wanted (a server under test), goes on:
/// waits for every other child of ours.
pub fn reap_orphans_besides(running: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let others: Vec<u32> = children().into_iter().filter(|&pid| pid != running).collect();
        if others.is_empty() {
            return;
        }
        for pid in others {
            let mut status = 0;
            // SAFETY: a valid pointer to a status word; `pid` is a child of ours.
            unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        }
        if Instant::now() > deadline {
            eprintln!("bench: warning: a tracer's child is still running; going on");
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Our children (orphans handed to us included), from every thread's `children` list.
fn children() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<_>>())
        .collect()
}

/// The lines a child writes to a pipe, read on a thread of their own and timestamped as they
/// arrive.
pub struct Lines {
    rx: mpsc::Receiver<(Instant, String)>,
    seen: Vec<String>,
}

impl Lines {
    pub fn watch(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// Waits for a line starting with `prefix`; returns when it arrived.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration, what: &str) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((at, line)) => {
                    let found = line.starts_with(prefix);
                    self.seen.push(line);
                    if found {
                        return Ok(at);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("{what} did not print `{prefix}` within {} s", timeout.as_secs())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("{what} ended before printing `{prefix}`:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Every line, up to the end of the stream (call once the child has exited).
    pub fn finish(mut self) -> Vec<String> {
        while let Ok((_, line)) = self.rx.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        self.seen
    }
}
