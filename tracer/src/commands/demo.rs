//! `wsltrace demo`: built-in socket workloads, traced (default) or run plainly (`--untraced`,
//! which is what the traced child runs). They make exact, known syscalls, failures included,
//! so they double as the integration tests' workloads.

use std::{
    ffi::OsString,
    io::BufRead as _,
    mem::{size_of, zeroed},
    os::fd::{AsFd, AsRawFd as _, FromRawFd as _, OwnedFd},
    process::ExitCode,
    sync::{Arc, Barrier},
};

use anyhow::{Context as _, Result};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, UnixAddr,
    bind, connect, getsockname, listen, setsockopt, socket, socketpair, sockopt,
};

use crate::cli::{DemoArgs, Scenario, TraceArgs};

// SO_TYPE, read in the burst loop.
const SO_TYPE: libc::c_int = libc::SO_TYPE;

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    if args.untraced {
        let ready = if args.wait { wait_for_go } else { || Ok(()) };
        run_scenario(&args, ready)?;
        return Ok(ExitCode::SUCCESS);
    }
    let scenario = clap::ValueEnum::to_possible_value(&args.scenario)
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    // The binary's own path rather than /proc/self/exe, so that its comm reads "wsltrace".
    let exe = std::env::current_exe().context("locating the wsltrace binary")?;
    let mut command = vec![exe.into_os_string()];
    command.extend(
        ["demo", "--untraced", &scenario, "--threads", &args.threads.to_string()]
            .map(OsString::from),
    );
    if let Some(count) = args.count {
        command.extend(["--count".into(), count.to_string().into()]);
    }
    if let Some(addr) = &args.addr {
        command.extend(["--addr".into(), OsString::from(addr)]);
    }
    super::trace::run(TraceArgs {
        pids: Vec::new(),
        follow_forks: true,
        no_follow: false,
        no_snapshot: true,
        command,
        filter: Default::default(),
        output: args.output,
        knowledge: args.knowledge,
        emulation: Default::default(),
        duration: None,
        ring_size: tracer_common::config::DEFAULT_RING_BYTES,
    })
}

/// `--wait`: tell the tester our pid, then block until it says go (it attaches meanwhile).
/// Announcements go to stderr: stdout may be a tracer's JSON stream.
fn wait_for_go() -> Result<()> {
    eprintln!("ready {}", std::process::id());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(())
}

/// Runs a workload; `ready` is called once it is set up (threads started), before any
/// socket call.
pub fn run_scenario(args: &DemoArgs, ready: fn() -> Result<()>) -> Result<()> {
    match args.scenario {
        Scenario::Threads => return threads(4, ready),
        Scenario::Burst => {
            return burst(args.count.unwrap_or(100_000), args.threads as usize, ready);
        }
        Scenario::Listen => return listen_on(&target(args)?),
        // Holding is the point: it always says where it is and waits.
        Scenario::Holder => return holder(),
        _ => ready()?,
    }
    match args.scenario {
        Scenario::All => {
            tcp()?;
            refused()?;
            unix_path()?;
            unix_abstract_and_pair()?;
            udp_and_v6()?;
            netlink_and_vsock()?;
            invalid_arguments()
        }
        Scenario::Refused => refused(),
        Scenario::Fork => fork_grandchild(),
        Scenario::Server => server(),
        Scenario::Connect => connect_to(&target(args)?, args.count.unwrap_or(1)),
        Scenario::Echo => echo(),
        Scenario::Quirks => crate::emulate::probe::run(),
        Scenario::Identity => identity_changes(),
        Scenario::Seccomp => seccomp_refused(&target(args)?),
        Scenario::Threads | Scenario::Burst | Scenario::Listen | Scenario::Holder => Ok(()),
    }
}

/// The same thread before and after changing namespace and credentials: what its events
/// carry must follow.
fn identity_changes() -> Result<()> {
    use nix::{
        sched::{CloneFlags, unshare},
        unistd::{Uid, setresuid},
    };
    drop(tcp_socket()?);
    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET) (run as root)")?;
    drop(tcp_socket()?);
    let nobody = Uid::from_raw(65534);
    setresuid(nobody, nobody, nobody).context("setresuid(nobody) (run as root)")?;
    let sock = tcp_socket()?;
    let any_80 = SockaddrIn::new(0, 0, 0, 0, 80);
    match bind(sock.as_raw_fd(), &any_80) {
        Err(nix::errno::Errno::EACCES) => Ok(()),
        other => anyhow::bail!("bind to port 80 as nobody: expected EACCES, got {other:?}"),
    }
}

/// bind() failed by a seccomp filter before it enters the kernel: from this thread, and from a
/// thread started after the filter (which it inherits).
fn seccomp_refused(target: &Target) -> Result<()> {
    let sock = target_socket(target)?;
    let action = libc::SECCOMP_RET_ERRNO | libc::EADDRINUSE as u32;
    let mut filter = crate::emulate::unix_bind::bind_filter(action);
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    // SAFETY: prctl with integer arguments; then a valid filter program that outlives the call.
    let installed = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &raw const prog)
                == 0
    };
    if !installed {
        return Err(std::io::Error::last_os_error()).context("installing the seccomp filter");
    }
    let refused = |who: &str| match bind_to(&sock, target) {
        Err(nix::errno::Errno::EADDRINUSE) => Ok(()),
        other => Err(anyhow::anyhow!("bind from {who}: expected EADDRINUSE, got {other:?}")),
    };
    refused("the main thread")?;
    std::thread::scope(|s| s.spawn(|| refused("a new thread")).join())
        .map_err(|_| anyhow::anyhow!("the binding thread panicked"))?
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

/// The life of a TCP connection over loopback, and a second bind to a taken address.
fn tcp() -> Result<()> {
    let (listener, addr) = tcp_listener()?;
    let client = tcp_socket()?;
    connect(client.as_raw_fd(), &addr)?;
    let conn = accept4_with_peer(&listener)?;
    let _: SockaddrIn = nix::sys::socket::getpeername(conn.as_raw_fd())?;
    let _ = nix::sys::socket::getsockopt(&client, sockopt::SocketError)?;
    let _ = nix::sys::socket::getsockopt(&conn, sockopt::RcvBuf)?;
    setsockopt(&client, sockopt::TcpNoDelay, &true)?;
    nix::sys::socket::shutdown(client.as_raw_fd(), nix::sys::socket::Shutdown::Write)?;
    // EADDRINUSE: the listener still holds the address.
    let second = tcp_socket()?;
    let _ = bind(second.as_raw_fd(), &addr);
    drop((second, conn, client, listener));
    Ok(())
}

/// ECONNREFUSED: connect to a port that was just freed.
fn refused() -> Result<()> {
    let port = {
        let probe = tcp_socket()?;
        bind(probe.as_raw_fd(), &loopback(0))?;
        getsockname::<SockaddrIn>(probe.as_raw_fd())?.port()
    };
    let client = tcp_socket()?;
    let _ = connect(client.as_raw_fd(), &loopback(port));
    Ok(())
}

/// A unix socket server on a path: accept, SO_PEERCRED; then ENOENT for a missing path.
fn unix_path() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wsltrace-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("app.sock");
    let _ = std::fs::remove_file(&path);
    let addr = UnixAddr::new(&path)?;
    let server = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(server.as_raw_fd(), &addr)?;
    listen(&server, Backlog::new(8)?)?;
    let client = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    connect(client.as_raw_fd(), &addr)?;
    // Plain accept(2), with the peer address (unnamed for a client that did not bind).
    // SAFETY: plain-data buffer and its length.
    let mut peer: libc::sockaddr_un = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: valid pointers to the buffer and its length.
    let fd = unsafe { libc::accept(server.as_raw_fd(), (&raw mut peer).cast(), &mut len) };
    // SAFETY: a new fd owned by nobody else.
    let conn = nix::errno::Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })?;
    let _ = nix::sys::socket::getsockopt(&conn, sockopt::PeerCredentials)?;
    drop((conn, client, server));
    std::fs::remove_file(&path)?;
    let missing = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let _ = connect(missing.as_raw_fd(), &UnixAddr::new(&dir.join("missing.sock"))?);
    drop(missing);
    std::fs::remove_dir(&dir)?;
    Ok(())
}

/// An abstract unix name, and a socketpair whose peer credentials are read.
fn unix_abstract_and_pair() -> Result<()> {
    let name = format!("wsltrace-demo-{}", std::process::id());
    let sock = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(sock.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes())?)?;
    let _: UnixAddr = getsockname(sock.as_raw_fd())?;
    drop(sock);
    let (a, b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;
    let _ = nix::sys::socket::getsockopt(&a, sockopt::PeerCredentials)?;
    drop((a, b));
    Ok(())
}

/// UDP on 127.0.0.1 and TCP on [::1] (which fails cleanly where IPv6 is off).
fn udp_and_v6() -> Result<()> {
    let udp = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    bind(udp.as_raw_fd(), &loopback(0))?;
    // listen(2) on a datagram socket: EOPNOTSUPP.
    let _ = listen(&udp, Backlog::new(1)?);
    drop(udp);
    let v6 = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let _ = bind(
        v6.as_raw_fd(),
        &SockaddrIn6::from(std::net::SocketAddrV6::new(std::net::Ipv6Addr::LOCALHOST, 0, 0, 0)),
    );
    let _ = getsockname::<SockaddrIn6>(v6.as_raw_fd());
    drop(v6);
    Ok(())
}

/// A netlink route socket, and a vsock socket (EAFNOSUPPORT outside VMs without vsock).
fn netlink_and_vsock() -> Result<()> {
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(nl.as_raw_fd(), &nix::sys::socket::NetlinkAddr::new(0, 0))?;
    let _: nix::sys::socket::NetlinkAddr = getsockname(nl.as_raw_fd())?;
    drop(nl);
    if let Ok(vsock) = socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
    {
        let any = nix::sys::socket::VsockAddr::new(libc::VMADDR_CID_ANY, libc::VMADDR_PORT_ANY);
        let _ = bind(vsock.as_raw_fd(), &any);
        drop(vsock);
    }
    Ok(())
}

/// EINVAL, ENOPROTOOPT, ENOTCONN: arguments the kernel refuses.
fn invalid_arguments() -> Result<()> {
    let sock = tcp_socket()?;
    let fd = sock.as_raw_fd();
    // SAFETY: raw calls with deliberately invalid arguments; no memory is passed, or a valid
    // local buffer is.
    unsafe {
        libc::shutdown(fd, 99); // EINVAL: no such `how`
        libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()); // EINVAL: not listening
        let small: u16 = 1;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&raw const small).cast(), 2); // EINVAL
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        libc::getsockopt(fd, libc::SOL_TCP, 9999, (&raw mut value).cast(), &mut len); // ENOPROTOOPT
        let mut addr: libc::sockaddr_in = zeroed();
        let mut alen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        libc::getpeername(fd, (&raw mut addr).cast(), &mut alen); // ENOTCONN
    }
    drop(sock);
    Ok(())
}

/// `n` threads, started before `ready`, each connect to a listener the main thread accepts on.
fn threads(n: usize, ready: fn() -> Result<()>) -> Result<()> {
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
fn fork_grandchild() -> Result<()> {
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

/// Listens on 127.0.0.1, says where, and blocks in accept() for one client.
fn server() -> Result<()> {
    let (listener, addr) = tcp_listener()?;
    eprintln!("listening {} {}", std::process::id(), addr.port());
    drop(accept4_with_peer(&listener)?);
    Ok(())
}

/// `threads` threads make `count` getsockopt(SO_TYPE) calls in all, as fast as they can.
/// Each thread also makes one socket() and one close(): `count + 2 * threads` calls.
fn burst(count: u64, threads: usize, ready: fn() -> Result<()>) -> Result<()> {
    let start = Arc::new(Barrier::new(threads + 1));
    let per_thread = count / threads as u64;
    let extra = count % threads as u64;
    let workers: Vec<_> = (0..threads as u64)
        .map(|i| {
            let start = Arc::clone(&start);
            let calls = per_thread + u64::from(i < extra);
            std::thread::spawn(move || -> Result<()> {
                start.wait();
                let sock = tcp_socket()?;
                let mut value: libc::c_int = 0;
                for _ in 0..calls {
                    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
                    // SAFETY: valid pointers to a local int and its length.
                    unsafe {
                        libc::getsockopt(
                            sock.as_raw_fd(),
                            libc::SOL_SOCKET,
                            SO_TYPE,
                            (&raw mut value).cast(),
                            &mut len,
                        )
                    };
                }
                drop(sock);
                Ok(())
            })
        })
        .collect();
    ready()?;
    let started = std::time::Instant::now();
    start.wait();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("worker thread panicked"))??;
    }
    // On stderr, for benchmarks: the loop's own time, without any tracer start-up.
    let secs = started.elapsed().as_secs_f64();
    let calls = count + 2 * threads as u64;
    eprintln!("burst: {calls} calls in {secs:.6} s ({:.0} calls/s)", calls as f64 / secs);
    Ok(())
}

/// Where `listen` and `connect` go: `127.0.0.1:8080`, `[::1]:8080`, `/path.sock`, `@name`.
enum Target {
    Inet(std::net::SocketAddr),
    Unix(UnixAddr),
}

fn target(args: &DemoArgs) -> Result<Target> {
    let addr = args
        .addr
        .as_deref()
        .context("this workload needs --addr (e.g. 127.0.0.1:8080, /tmp/s.sock, @name)")?;
    Ok(match addr.strip_prefix('@') {
        Some(name) => Target::Unix(UnixAddr::new_abstract(name.as_bytes())?),
        None if addr.starts_with('/') => Target::Unix(UnixAddr::new(addr)?),
        None => Target::Inet(
            addr.parse().with_context(|| format!("--addr {addr}: not ip:port, /path or @name"))?,
        ),
    })
}

fn target_socket(target: &Target) -> Result<OwnedFd> {
    let family = match target {
        Target::Inet(a) if a.is_ipv6() => AddressFamily::Inet6,
        Target::Inet(_) => AddressFamily::Inet,
        Target::Unix(_) => AddressFamily::Unix,
    };
    Ok(socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?)
}

fn bind_to(fd: &OwnedFd, target: &Target) -> nix::Result<()> {
    match target {
        Target::Inet(std::net::SocketAddr::V4(a)) => bind(fd.as_raw_fd(), &SockaddrIn::from(*a)),
        Target::Inet(std::net::SocketAddr::V6(a)) => bind(fd.as_raw_fd(), &SockaddrIn6::from(*a)),
        Target::Unix(a) => bind(fd.as_raw_fd(), a),
    }
}

fn connect_fd(fd: &OwnedFd, target: &Target) -> nix::Result<()> {
    match target {
        Target::Inet(std::net::SocketAddr::V4(a)) => connect(fd.as_raw_fd(), &SockaddrIn::from(*a)),
        Target::Inet(std::net::SocketAddr::V6(a)) => {
            connect(fd.as_raw_fd(), &SockaddrIn6::from(*a))
        }
        Target::Unix(a) => connect(fd.as_raw_fd(), a),
    }
}

/// Binds and listens on `target`, says so, and holds it until a line (or EOF) on stdin. A bind
/// that fails is reported and the workload exits with 1: tests use it to provoke errors.
fn listen_on(target: &Target) -> Result<()> {
    let sock = target_socket(target)?;
    if let Err(err) = bind_to(&sock, target).and_then(|()| listen(&sock, Backlog::new(16)?)) {
        eprintln!("listen: {err}");
        std::process::exit(1);
    }
    let port = match target {
        Target::Inet(a) if a.is_ipv6() => getsockname::<SockaddrIn6>(sock.as_raw_fd())?.port(),
        Target::Inet(_) => getsockname::<SockaddrIn>(sock.as_raw_fd())?.port(),
        Target::Unix(_) => 0,
    };
    eprintln!("listening {} {port}", std::process::id());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(())
}

/// `count` connections to `target`, each closed at once; failures are the point.
fn connect_to(target: &Target, count: u64) -> Result<()> {
    for _ in 0..count {
        let sock = target_socket(target)?;
        let _ = connect_fd(&sock, target);
    }
    Ok(())
}

/// An echo server on 0.0.0.0 and a client on 127.0.0.1 that sends one line: nothing to flag.
fn echo() -> Result<()> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("0.0.0.0:0")?;
    let port = listener.local_addr()?.port();
    let client = std::thread::spawn(move || -> Result<()> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.write_all(b"hello\n")?;
        let mut back = [0_u8; 6];
        stream.read_exact(&mut back)?;
        anyhow::ensure!(&back == b"hello\n", "echo came back as {back:?}");
        Ok(())
    });
    let (mut conn, _) = listener.accept()?;
    let mut buf = [0_u8; 6];
    conn.read_exact(&mut buf)?;
    conn.write_all(&buf)?;
    client.join().map_err(|_| anyhow::anyhow!("client panicked"))?
}

/// Opens one socket of each kind a snapshot must describe, says "ready PID", and holds them
/// until a line arrives on stdin.
fn holder() -> Result<()> {
    let pid = std::process::id();
    // TCP: a listener on 127.0.0.1, a client connected to it and the accepted connection.
    let (listener, addr) = tcp_listener()?;
    let client = tcp_socket()?;
    connect(client.as_raw_fd(), &addr)?;
    let accepted = accept4_with_peer(&listener)?;
    // UDP on ::1, not connected.
    let udp6 = socket(AddressFamily::Inet6, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    bind(
        udp6.as_raw_fd(),
        &SockaddrIn6::from(std::net::SocketAddrV6::new(std::net::Ipv6Addr::LOCALHOST, 0, 0, 0)),
    )?;
    // Unix: a listener on a path, a client connected to it and the accepted end.
    let dir = std::env::temp_dir().join(format!("wsltrace-holder-{pid}"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("holder.sock");
    let _ = std::fs::remove_file(&path);
    let unix_addr = UnixAddr::new(&path)?;
    let unix_listener =
        socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(unix_listener.as_raw_fd(), &unix_addr)?;
    listen(&unix_listener, Backlog::new(8)?)?;
    let unix_client = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    connect(unix_client.as_raw_fd(), &unix_addr)?;
    let unix_accepted = accept4_with_peer(&unix_listener)?;
    // Unix: a datagram socket on an abstract name.
    let name = format!("wsltrace-holder-{pid}");
    let abstract_dgram =
        socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    bind(abstract_dgram.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes())?)?;
    // Netlink: a route socket with a kernel-assigned port id.
    let netlink = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(netlink.as_raw_fd(), &nix::sys::socket::NetlinkAddr::new(0, 0))?;
    // VSOCK, where the kernel has it: a listener on port 40000 + pid % 20000.
    let vsock = socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .ok()
        .filter(|v| {
            let port = 40_000 + pid % 20_000;
            let addr = nix::sys::socket::VsockAddr::new(libc::VMADDR_CID_ANY, port);
            bind(v.as_raw_fd(), &addr).is_ok() && listen(v, Backlog::MAXCONN).is_ok()
        });

    let waited = wait_for_go();
    drop((listener, client, accepted, udp6, vsock));
    drop((unix_listener, unix_client, unix_accepted, abstract_dgram, netlink));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    waited
}
