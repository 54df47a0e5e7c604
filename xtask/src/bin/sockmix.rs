//! sockmix: the socket workload of `cargo xtask bench`.
//!
//! It makes only syscalls that wsltrace traces, counts every one of them (failures included),
//! and times its own loop, so a tracer's cost is read from the workload's point of view and
//! "events delivered + lost" can be checked against the calls it really made. It is a program
//! of its own, not `wsltrace demo`, so that the product under test is not also the load.

use std::{
    io::{self, BufRead as _, Write as _},
    mem::size_of,
    path::PathBuf,
    sync::{
        Arc, Barrier,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    about = "Socket workload for `cargo xtask bench`: counts its traced syscalls and times its loop"
)]
struct Cli {
    /// Write the outcome to FILE as one JSON object (it is also printed on stderr)
    #[arg(long, value_name = "FILE", global = true)]
    report: Option<PathBuf>,

    /// Print "ready PID" on stdout and wait for a line on stdin before starting (so a tracer
    /// can attach with --pid first)
    #[arg(long, global = true)]
    gate: bool,

    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// Per iteration, 20 traced calls: a TCP listener (socket, setsockopt SO_REUSEADDR,
    /// bind 127.0.0.1:0, listen, getsockname), a client (socket, connect) and its accept4,
    /// getsockopt SO_ERROR, setsockopt SO_LINGER, three closes; an AF_UNIX socketpair,
    /// getsockopt SO_PEERCRED, two closes; a refused connect (socket, connect, close)
    Mix {
        /// Iterations to run
        #[arg(long, default_value_t = 10_000)]
        iterations: u64,
    },
    /// THREADS threads calling getsockopt(SO_TYPE) on a socket of their own, paced to RATE
    /// calls per second in all, for SECS seconds
    Burst {
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
        threads: u64,
        /// Calls per second, all threads together; 0 for as fast as possible
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// How long to run
        #[arg(long, value_name = "SECS", default_value_t = 1.0)]
        duration: f64,
    },
    /// ITERATIONS getppid() calls, a syscall wsltrace never traces: what a bystander process
    /// pays while wsltrace is attached elsewhere (its report counts these calls)
    Getppid {
        #[arg(long, default_value_t = 1_000_000)]
        iterations: u64,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sockmix: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if cli.gate {
        println!("ready {}", std::process::id());
        io::stdout().flush()?;
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line).context("waiting for the go-ahead on stdin")?;
    }
    let (name, calls, elapsed) = match cli.workload {
        Workload::Mix { iterations } => {
            let started = Instant::now();
            let calls = mix(iterations)?;
            ("mix", calls, started.elapsed())
        }
        Workload::Burst { threads, rate, duration } => {
            let duration = Duration::try_from_secs_f64(duration)
                .context("--duration must be a positive number of seconds")?;
            let (calls, elapsed) = burst(threads, rate, duration)?;
            ("burst", calls, elapsed)
        }
        Workload::Getppid { iterations } => {
            let started = Instant::now();
            for _ in 0..iterations {
                // The raw syscall: nothing in libc may answer it from a cache.
                // SAFETY: getppid takes no arguments and cannot fail.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            ("getppid", iterations, started.elapsed())
        }
    };
    let report = format!(
        "{{\"workload\":\"{name}\",\"syscalls\":{calls},\"loop_ns\":{},\"cpu_ns\":{}}}",
        elapsed.as_nanos(),
        own_cpu_ns()
    );
    eprintln!(
        "sockmix: {name}: {calls} traced syscalls in {:.6} s ({:.0} calls/s)",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64()
    );
    if let Some(path) = cli.report {
        std::fs::write(&path, report)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok(())
}

/// Counts the traced syscalls this thread makes, failed ones included.
#[derive(Default)]
struct Calls(u64);

impl Calls {
    /// Counts a call and turns its -1 into the errno.
    fn check(&mut self, ret: libc::c_int, what: &str) -> Result<libc::c_int> {
        self.0 += 1;
        if ret < 0 {
            return Err(io::Error::last_os_error()).with_context(|| format!("{what} failed"));
        }
        Ok(ret)
    }

    fn socket(&mut self, domain: libc::c_int, kind: libc::c_int) -> Result<libc::c_int> {
        // SAFETY: no pointers.
        self.check(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) }, "socket")
    }

    fn close(&mut self, fd: libc::c_int) -> Result<()> {
        // SAFETY: fd is a socket this workload opened and closes once.
        self.check(unsafe { libc::close(fd) }, "close").map(drop)
    }

    fn setsockopt<T>(&mut self, fd: libc::c_int, name: libc::c_int, value: &T) -> Result<()> {
        // SAFETY: value is a live T and the length passed is its size.
        let ret = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (value as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        };
        self.check(ret, "setsockopt").map(drop)
    }

    /// Reads an option into `value` (plain data: any bytes the kernel writes are a valid T).
    fn getsockopt<T: Copy>(
        &mut self,
        fd: libc::c_int,
        name: libc::c_int,
        value: &mut T,
    ) -> Result<()> {
        let mut len = size_of::<T>() as libc::socklen_t;
        // SAFETY: value is a live T and len its size; the kernel writes at most len bytes.
        let ret = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, name, (value as *mut T).cast(), &mut len)
        };
        self.check(ret, "getsockopt").map(drop)
    }

    fn bind(&mut self, fd: libc::c_int, addr: &libc::sockaddr_in) -> Result<()> {
        // SAFETY: addr is a valid sockaddr_in and the length passed is its size.
        let ret = unsafe { libc::bind(fd, (addr as *const libc::sockaddr_in).cast(), SIN_LEN) };
        self.check(ret, "bind").map(drop)
    }

    fn connect(&mut self, fd: libc::c_int, addr: &libc::sockaddr_in) -> Result<libc::c_int> {
        // SAFETY: addr is a valid sockaddr_in and the length passed is its size.
        let ret = unsafe { libc::connect(fd, (addr as *const libc::sockaddr_in).cast(), SIN_LEN) };
        self.check(ret, "connect")
    }

    fn getsockname(&mut self, fd: libc::c_int) -> Result<libc::sockaddr_in> {
        // SAFETY: sockaddr_in is plain data, all zeroes is a valid value.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = SIN_LEN;
        // SAFETY: addr is a live sockaddr_in and len its size.
        let ret = unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) };
        self.check(ret, "getsockname")?;
        Ok(addr)
    }
}

const SIN_LEN: libc::socklen_t = size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn loopback_any_port() -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
        sin_zero: [0; 8],
    }
}

/// Runs the mixed workload; returns the traced calls made, set-up included.
fn mix(iterations: u64) -> Result<u64> {
    let mut calls = Calls::default();
    // A port bound but never listened on: connecting to it is refused, and nobody else can
    // start listening on it while we hold it.
    let reserved = calls.socket(libc::AF_INET, libc::SOCK_STREAM)?;
    calls.bind(reserved, &loopback_any_port())?;
    let refused = calls.getsockname(reserved)?;
    for _ in 0..iterations {
        iteration(&mut calls, &refused)?;
    }
    calls.close(reserved)?;
    Ok(calls.0)
}

/// The 20 calls of one iteration.
fn iteration(calls: &mut Calls, refused: &libc::sockaddr_in) -> Result<()> {
    let listener = calls.socket(libc::AF_INET, libc::SOCK_STREAM)?;
    calls.setsockopt(listener, libc::SO_REUSEADDR, &1_i32)?;
    calls.bind(listener, &loopback_any_port())?;
    // SAFETY: no pointers.
    calls.check(unsafe { libc::listen(listener, 8) }, "listen")?;
    let addr = calls.getsockname(listener)?;
    let client = calls.socket(libc::AF_INET, libc::SOCK_STREAM)?;
    calls.connect(client, &addr)?;
    // SAFETY: NULL address and length: the peer address is not wanted.
    let accepted = calls.check(
        unsafe {
            libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
        },
        "accept4",
    )?;
    let mut err: libc::c_int = -1;
    calls.getsockopt(client, libc::SO_ERROR, &mut err)?;
    if err != 0 {
        bail!("SO_ERROR is {err} after a successful connect");
    }
    // An abortive close (RST) leaves no TIME_WAIT behind: a long run would otherwise fill the
    // connection table and measure the kernel's table, not the tracer.
    calls.setsockopt(client, libc::SO_LINGER, &libc::linger { l_onoff: 1, l_linger: 0 })?;
    calls.close(client)?;
    calls.close(accepted)?;
    calls.close(listener)?;

    let mut pair = [0; 2];
    // SAFETY: pair has room for the two fds.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    calls.check(ret, "socketpair")?;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    calls.getsockopt(pair[0], libc::SO_PEERCRED, &mut cred)?;
    if cred.pid != std::process::id() as libc::pid_t {
        bail!("SO_PEERCRED names pid {}, not ours", cred.pid);
    }
    calls.close(pair[0])?;
    calls.close(pair[1])?;

    let doomed = calls.socket(libc::AF_INET, libc::SOCK_STREAM)?;
    match calls.connect(doomed, refused) {
        Err(err) if refused_error(&err) => {}
        Err(err) => return Err(err),
        Ok(_) => bail!("a connect to the reserved port succeeded"),
    }
    calls.close(doomed)
}

fn refused_error(err: &anyhow::Error) -> bool {
    err.downcast_ref::<io::Error>().is_some_and(|e| e.raw_os_error() == Some(libc::ECONNREFUSED))
}

/// Runs the getsockopt hammer; returns the calls made and the loop time.
fn burst(threads: u64, rate: u64, duration: Duration) -> Result<(u64, Duration)> {
    let start = Arc::new(Barrier::new(threads as usize + 1));
    let total = Arc::new(AtomicU64::new(0));
    // Each thread's share of the rate; 0 means unpaced.
    let per_thread = rate as f64 / threads as f64;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (start, total) = (Arc::clone(&start), Arc::clone(&total));
            thread::spawn(move || -> Result<()> {
                start.wait();
                let mut calls = Calls::default();
                let result = hammer(&mut calls, per_thread, duration);
                total.fetch_add(calls.0, Ordering::Relaxed);
                result
            })
        })
        .collect();
    let started = Instant::now();
    start.wait();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("a burst thread panicked"))??;
    }
    Ok((total.load(Ordering::Relaxed), started.elapsed()))
}

/// One thread of the burst: its own socket, getsockopt calls in small batches, each batch
/// started on schedule (the schedule is absolute: a late batch is followed by early ones).
fn hammer(calls: &mut Calls, rate: f64, duration: Duration) -> Result<()> {
    let sock = calls.socket(libc::AF_INET, libc::SOCK_STREAM)?;
    let mut kind: libc::c_int = 0;
    // Batches of about 0.5 ms of calls keep the clock reads and sleeps out of the profile.
    let batch = if rate > 0.0 { (rate / 2000.0).max(1.0) as u64 } else { 256 };
    let started = Instant::now();
    let mut done = 0_u64;
    while started.elapsed() < duration {
        for _ in 0..batch {
            calls.getsockopt(sock, libc::SO_TYPE, &mut kind)?;
        }
        done += batch;
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(done as f64 / rate);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
    }
    calls.close(sock)
}

/// User + system CPU time of the whole process (all threads) so far.
fn own_cpu_ns() -> u128 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let ns = |tv: libc::timeval| tv.tv_sec as u128 * 1_000_000_000 + tv.tv_usec as u128 * 1000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}
