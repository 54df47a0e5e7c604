//! Workloads aimed at an address given with `--addr`: `listen` holds it, `connect` tries it.

use std::{
    io::BufRead as _,
    os::fd::{AsRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr, bind, connect,
    getsockname, listen, socket,
};

use super::Params;

/// Where `listen` and `connect` go: `127.0.0.1:8080`, `[::1]:8080`, `/path.sock`, `@name`.
pub enum Target {
    Inet(std::net::SocketAddr),
    Unix(UnixAddr),
}

pub fn target(params: &Params) -> Result<Target> {
    let addr = params
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
pub fn listen_on(target: &Target) -> Result<()> {
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

/// A listener whose accept queue is full: listen(backlog 0) takes one connection (the kernel
/// drops a SYN once more wait than the backlog), which is never accepted.
pub fn full_queue() -> Result<()> {
    let listener = super::tcp_socket()?;
    bind(listener.as_raw_fd(), &super::loopback(0))?;
    listen(&listener, Backlog::new(0)?)?;
    let addr: SockaddrIn = getsockname(listener.as_raw_fd())?;
    let waiting = super::tcp_socket()?;
    connect(waiting.as_raw_fd(), &addr).context("filling the accept queue")?;
    eprintln!("listening {} {}", std::process::id(), addr.port());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    drop((waiting, listener));
    Ok(())
}

/// `count` connections to `target`, each closed at once; failures are the point.
pub fn connect_to(target: &Target, count: u64) -> Result<()> {
    for _ in 0..count {
        let sock = target_socket(target)?;
        let _ = connect_fd(&sock, target);
    }
    Ok(())
}

/// Connects to a local listener, holding every connection, until a connect fails or `max` have
/// succeeded; says which on stderr (`exhaust: N connections, then ERRNO`).
pub fn exhaust_ports(max: u64) -> Result<()> {
    let (listener, addr) = super::tcp_listener()?;
    let mut held = Vec::new();
    let mut failure = None;
    while (held.len() as u64) < max {
        let sock = super::tcp_socket()?;
        match connect(sock.as_raw_fd(), &addr) {
            Ok(()) => held.push(sock),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    match failure {
        Some(err) => eprintln!("exhaust: {} connections, then {err}", held.len()),
        None => eprintln!("exhaust: {} connections, no failure", held.len()),
    }
    drop((held, listener));
    Ok(())
}

/// bind() failed by a seccomp filter before it enters the kernel: from this thread, and from a
/// thread started after the filter (which it inherits).
pub fn seccomp_refused(target: &Target) -> Result<()> {
    let sock = target_socket(target)?;
    let action = libc::SECCOMP_RET_ERRNO | libc::EADDRINUSE as u32;
    let mut filter = crate::emulate::supervisor::bind_filter(action);
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
