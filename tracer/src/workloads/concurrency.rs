//! Workloads about threads and processes: several threads at once, forks, and a flood of
//! calls for the benchmarks.

use std::{
    mem::size_of,
    os::fd::AsRawFd as _,
    sync::{Arc, Barrier},
};

use anyhow::Result;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, connect, getsockname, socketpair,
};

use super::{accept4_with_peer, tcp_listener, tcp_socket};

// SO_TYPE, read in the burst loop.
const SO_TYPE: libc::c_int = libc::SO_TYPE;

/// `n` threads, started before `ready`, each connect to a listener the main thread accepts on.
pub fn threads(n: usize, ready: fn() -> Result<()>) -> Result<()> {
    let start = Arc::new(Barrier::new(n + 1));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SockaddrIn>();
    let addr_rx = Arc::new(std::sync::Mutex::new(addr_rx));
    let workers: Vec<_> = (0..n)
        .map(|_| {
            let start = Arc::clone(&start);
            let addr_rx = Arc::clone(&addr_rx);
            std::thread::spawn(move || -> Result<()> {
                start.wait();
                let addr = addr_rx.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.recv()?;
                let sock = tcp_socket()?;
                connect(sock.as_raw_fd(), &addr)?;
                drop(sock);
                Ok(())
            })
        })
        .collect();
    ready()?;
    let (listener, addr) = tcp_listener()?;
    for _ in 0..n {
        addr_tx.send(addr)?;
    }
    start.wait();
    for _ in 0..n {
        drop(accept4_with_peer(&listener)?);
    }
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("worker thread panicked"))??;
    }
    Ok(())
}

/// The process forks a child, which uses the inherited listener and forks a grandchild that
/// connects at once.
pub fn fork_grandchild() -> Result<()> {
    use nix::{
        sys::wait::waitpid,
        unistd::{ForkResult, fork},
    };
    let (listener, addr) = tcp_listener()?;
    // SAFETY: single-threaded here; the children only make syscalls and exit.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // A call on the inherited listener: its fd is known to the child too.
            let _ = getsockname::<SockaddrIn>(listener.as_raw_fd());
            // SAFETY: as above.
            let code = match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let ok = tcp_socket().and_then(|s| Ok(connect(s.as_raw_fd(), &addr)?)).is_ok();
                    i32::from(!ok)
                }
                Ok(ForkResult::Parent { child }) => waitpid(child, None).map_or(1, |_| 0),
                Err(_) => 1,
            };
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(accept4_with_peer(&listener)?);
            waitpid(child, None)?;
        }
    }
    Ok(())
}

/// `threads` threads make `count` getsockopt(SO_TYPE) calls in all, as fast as they can.
/// Each thread also makes one socket() and one close(): `count + 2 * threads` calls.
pub fn burst(count: u64, threads: usize, ready: fn() -> Result<()>) -> Result<()> {
    let secs = on_threads(count, threads, ready, |calls| {
        let sock = tcp_socket()?;
        for _ in 0..calls {
            so_type(sock.as_raw_fd());
        }
        drop(sock);
        Ok(())
    })?;
    // On stderr, for benchmarks: the loop's own time, without any tracer start-up.
    let calls = count + 2 * threads as u64;
    eprintln!("burst: {calls} calls in {secs:.6} s ({:.0} calls/s)", calls as f64 / secs);
    Ok(())
}

/// `threads` threads make `count` rounds in all of socketpair(AF_UNIX), getsockopt(SO_TYPE)
/// on its first end and a close() of each end: `count` calls of getsockopt and socketpair,
/// `2 * count` of close, nothing else.
pub fn pairs(count: u64, threads: usize, ready: fn() -> Result<()>) -> Result<()> {
    let secs = on_threads(count, threads, ready, |rounds| {
        for _ in 0..rounds {
            let (a, b) =
                socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;
            so_type(a.as_raw_fd());
            drop(a);
            drop(b);
        }
        Ok(())
    })?;
    eprintln!("pairs: {count} rounds in {secs:.6} s ({:.0} rounds/s)", count as f64 / secs);
    Ok(())
}

/// getsockopt(SOL_SOCKET, SO_TYPE) on `fd`, its result unused.
fn so_type(fd: libc::c_int) {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid pointers to a local int and its length.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, SO_TYPE, (&raw mut value).cast(), &mut len) };
}

/// Splits `count` among `threads` threads started before `ready`, which run `work` with
/// their share all at once; returns the seconds they took.
fn on_threads(
    count: u64,
    threads: usize,
    ready: fn() -> Result<()>,
    work: fn(u64) -> Result<()>,
) -> Result<f64> {
    let start = Arc::new(Barrier::new(threads + 1));
    let per_thread = count / threads as u64;
    let extra = count % threads as u64;
    let workers: Vec<_> = (0..threads as u64)
        .map(|i| {
            let start = Arc::clone(&start);
            let share = per_thread + u64::from(i < extra);
            std::thread::spawn(move || -> Result<()> {
                start.wait();
                work(share)
            })
        })
        .collect();
    ready()?;
    let started = std::time::Instant::now();
    start.wait();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("worker thread panicked"))??;
    }
    Ok(started.elapsed().as_secs_f64())
}
