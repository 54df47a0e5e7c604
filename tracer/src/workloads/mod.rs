//! Built-in socket workloads: exact, known syscalls, failures included. `wsltrace demo` traces
//! them (or runs them plainly with `--untraced`, which is what the traced child runs), and the
//! integration tests use them as the programs they watch.

mod addressed;
mod calls;
mod concurrency;
mod holder;
mod quirks;

use std::{
    io::BufRead as _,
    mem::{size_of, zeroed},
    os::fd::{AsFd, AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrIn, bind, getsockname,
    listen, setsockopt, socket, sockopt,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Every traced syscall, succeeding and failing: TCP, UDP, IPv6, AF_UNIX (path, abstract,
    /// socketpair with SO_PEERCRED), netlink, vsock, a refused connect, EADDRINUSE, ENOENT, EINVAL
    All,
    /// One connect to a port nobody listens on
    Refused,
    /// Four threads connecting to a listener at once
    Threads,
    /// A child that forks a grandchild which connects immediately
    Fork,
    /// A server blocked in accept() until one client connects (prints its port), then holding
    /// the connection until the client hangs up
    Server,
    /// --threads threads making --count getsockopt(SO_TYPE) calls as fast as they can
    Burst,
    /// --threads threads making --count rounds of socketpair, getsockopt(SO_TYPE) and two
    /// closes as fast as they can (with -s getsockopt, the others are context)
    Pairs,
    /// Listen on --addr, print "listening PID PORT" and hold it until a line arrives on stdin
    Listen,
    /// Connect to --addr (--count times, default once)
    Connect,
    /// A plain echo server on 0.0.0.0 and a client: nothing unusual at all
    Echo,
    /// A TCP listener on 127.0.0.1 whose accept queue is full (backlog 0, one connection
    /// waiting, never accepted): the SYN of any further connect is dropped, so it hangs. Prints
    /// "listening PID PORT" and holds it until a line arrives on stdin
    FullQueue,
    /// Holds sockets of every kind (TCP listener and connection on 127.0.0.1, UDP on ::1, unix
    /// path, abstract and connected, netlink), prints "ready PID" and waits for a line on stdin
    Holder,
    /// Each call `wsltrace emulate` can change, with its result on stderr (see WSLTRACE_DEMO_PORTS
    /// and WSLTRACE_DEMO_DIR in the README)
    Quirks,
    /// A socket; one more after moving to a new network namespace; then, after dropping root
    /// for nobody, a bind to port 80 that fails with EACCES (run as root)
    Identity,
    /// Under a seccomp filter that fails bind() with EADDRINUSE (as WSL2's mirrored networking
    /// does when Windows holds the port), a bind to --addr from the main thread, then one from
    /// a thread started afterwards
    Seccomp,
    /// Connections to a listener on 127.0.0.1, all held open, until connect() fails (at most
    /// --count, default 64): with a narrowed net.ipv4.ip_local_port_range (in a network
    /// namespace of its own) the local ports run out with EADDRNOTAVAIL, as in WSL2 mirrored
    /// networking's 4096-port window
    Exhaust,
    /// vsock connects to the host (CID 2) on a port nothing listens on, each bounded by
    /// --timeout-ms (SO_VM_SOCKETS_CONNECT_TIMEOUT), until one times out (at most --count,
    /// default 1); prints `vsock-host: ERRNO` for each on stderr
    VsockHost,
    /// Under a seccomp filter with a user-notification listener (the kind WSL's init gives
    /// every process in mirrored mode; this one traps no call), runs `wsltrace probe`
    Supervised,
}

/// What some workloads take besides their name.
#[derive(Debug, Clone, Args)]
pub struct Params {
    /// listen, connect: the address: 127.0.0.1:8080, [::1]:8080, /path/to.sock, @abstract
    #[arg(long, value_name = "ADDR")]
    pub addr: Option<String>,

    /// burst: getsockopt calls to make in all (default 100000); pairs: rounds (default
    /// 100000); connect: connections to try (default 1); exhaust, vsock-host: the most
    /// connects to make
    #[arg(long)]
    pub count: Option<u64>,

    /// vsock-host: the connect timeout in milliseconds (the kernel counts in ticks)
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,

    /// burst, pairs: threads making them
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: u64,
}

/// `--wait`: tell the tester our pid, then block until it says go (it attaches meanwhile).
/// Announcements go to stderr: stdout may be a tracer's JSON stream.
pub fn wait_for_go() -> Result<()> {
    eprintln!("ready {}", std::process::id());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(())
}

/// Runs a workload; `ready` is called once it is set up (threads started), before any
/// socket call.
pub fn run(scenario: Scenario, params: &Params, ready: fn() -> Result<()>) -> Result<()> {
    match scenario {
        Scenario::Threads => return concurrency::threads(4, ready),
        Scenario::Burst => {
            let count = params.count.unwrap_or(100_000);
            return concurrency::burst(count, params.threads as usize, ready);
        }
        Scenario::Pairs => {
            let count = params.count.unwrap_or(100_000);
            return concurrency::pairs(count, params.threads as usize, ready);
        }
        Scenario::Listen => return addressed::listen_on(&addressed::target(params)?),
        // Holding is the point: it always says where it is and waits.
        Scenario::Holder => return holder::holder(),
        Scenario::FullQueue => return addressed::full_queue(),
        _ => ready()?,
    }
    match scenario {
        Scenario::All => {
            calls::tcp()?;
            calls::refused()?;
            calls::unix_path()?;
            calls::unix_abstract_and_pair()?;
            calls::udp_and_v6()?;
            calls::netlink_and_vsock()?;
            calls::invalid_arguments()
        }
        Scenario::Refused => calls::refused(),
        Scenario::Fork => concurrency::fork_grandchild(),
        Scenario::Server => calls::server(),
        Scenario::Connect => {
            addressed::connect_to(&addressed::target(params)?, params.count.unwrap_or(1))
        }
        Scenario::Echo => calls::echo(),
        Scenario::Quirks => quirks::run(),
        Scenario::Identity => calls::identity_changes(),
        Scenario::Seccomp => addressed::seccomp_refused(&addressed::target(params)?),
        Scenario::Exhaust => addressed::exhaust_ports(params.count.unwrap_or(64)),
        Scenario::Supervised => {
            let _listener = crate::probe::install_listener()?;
            let report = crate::probe::run(std::time::Duration::from_secs(1));
            print!("{}", crate::probe::render(&report));
            Ok(())
        }
        Scenario::VsockHost => {
            let timeout = std::time::Duration::from_millis(params.timeout_ms);
            for _ in 0..params.count.unwrap_or(1) {
                match crate::probe::vsock_connect_host(crate::probe::VSOCK_PORT, timeout) {
                    Ok(took) => eprintln!("vsock-host: connected in {took:?}"),
                    Err(e) => {
                        eprintln!("vsock-host: {}", crate::decode::errno::Errno(e as u16).name());
                        if e == nix::errno::Errno::ETIMEDOUT {
                            break;
                        }
                    }
                }
            }
            Ok(())
        }
        Scenario::Threads
        | Scenario::Burst
        | Scenario::Pairs
        | Scenario::Listen
        | Scenario::Holder
        | Scenario::FullQueue => Ok(()),
    }
}

fn tcp_socket() -> Result<OwnedFd> {
    Ok(socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp)?)
}

fn loopback(port: u16) -> SockaddrIn {
    SockaddrIn::new(127, 0, 0, 1, port)
}

/// A listening TCP socket on 127.0.0.1 and its address.
fn tcp_listener() -> Result<(OwnedFd, SockaddrIn)> {
    let listener = tcp_socket()?;
    setsockopt(&listener, sockopt::ReuseAddr, &true)?;
    bind(listener.as_raw_fd(), &loopback(0))?;
    listen(&listener, Backlog::new(16)?)?;
    let addr: SockaddrIn = getsockname(listener.as_raw_fd())?;
    Ok((listener, addr))
}

/// accept4 with the peer address asked for (nix's passes NULL).
fn accept4_with_peer(listener: &impl AsFd) -> Result<OwnedFd> {
    // SAFETY: sockaddr_storage is plain data; the kernel writes at most `len` bytes into it.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid pointers to the buffer and its length.
    let fd = unsafe {
        libc::accept4(
            listener.as_fd().as_raw_fd(),
            (&raw mut storage).cast(),
            &mut len,
            libc::SOCK_CLOEXEC,
        )
    };
    // SAFETY: a new fd owned by nobody else.
    nix::errno::Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).context("accept4")
}
