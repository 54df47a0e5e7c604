//! `quirks` (`wsltrace demo quirks`): each call the emulation quirks can change, made once,
//! and its result printed on stderr as `quirks: LABEL = 0` or `quirks: LABEL = ERRNO` (stdout
//! stays free for a trace's JSON). Run it plainly, then under `wsltrace emulate`, and compare.
//!
//! Bind targets come from the environment: `WSLTRACE_DEMO_PORTS` (comma list of TCP ports
//! bound on 127.0.0.1, label `bind-port-N`) and `WSLTRACE_DEMO_DIR` (a directory; it binds
//! unix sockets `DIR/in/a.sock` and `DIR/out.sock`, labels `bind-unix-in` and `bind-unix-out`).

use std::{
    io::Write as _,
    net::{Ipv6Addr, SocketAddrV6},
    os::fd::{AsRawFd as _, OwnedFd},
    path::PathBuf,
};

use anyhow::Result;
use nix::{
    errno::Errno,
    sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike,
        UnixAddr, bind, connect, getsockname, listen, socket, socketpair,
    },
};

use crate::decode::errno;

pub fn run() -> Result<()> {
    let mut results: Vec<(String, String)> = Vec::new();
    let mut record = |label: &str, result: Result<(), Errno>| {
        let shown = match result {
            Ok(()) => "0".to_owned(),
            Err(e) => errno::Errno(e as u16).name().into_owned(),
        };
        results.push((label.to_owned(), shown));
    };

    // Socket options, on a unix socketpair and on a TCP socket.
    let (unix, _peer) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;
    record("peercred", getsockopt(&unix, libc::SOL_SOCKET, libc::SO_PEERCRED, 12));
    record("rcvbuf", getsockopt(&unix, libc::SOL_SOCKET, libc::SO_RCVBUF, 4));
    record("type", getsockopt(&unix, libc::SOL_SOCKET, libc::SO_TYPE, 4));
    let tcp = tcp4(SockFlag::empty())?;
    record("peercred-tcp", getsockopt(&tcp, libc::SOL_SOCKET, libc::SO_PEERCRED, 12));
    record("tcp-info", getsockopt(&tcp, libc::SOL_TCP, libc::TCP_INFO, 104));
    record("tcp-nodelay", getsockopt(&tcp, libc::SOL_TCP, libc::TCP_NODELAY, 4));

    // Connects: to listeners and to a port nobody listens on, blocking or not.
    let listener4 = tcp4(SockFlag::empty())?;
    bind(listener4.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))?;
    listen(&listener4, Backlog::new(8)?)?;
    let live4: SockaddrIn = getsockname(listener4.as_raw_fd())?;
    let dead = free_port()?;
    let dead4 = SockaddrIn::new(127, 0, 0, 1, dead);
    record("connect4-live", connect_new(AddressFamily::Inet, SockFlag::empty(), &live4));
    record("connect4-dead", connect_new(AddressFamily::Inet, SockFlag::empty(), &dead4));
    let nonblock = SockFlag::SOCK_NONBLOCK;
    record("connect4-nonblock-live", connect_new(AddressFamily::Inet, nonblock, &live4));
    record("connect4-nonblock-dead", connect_new(AddressFamily::Inet, nonblock, &dead4));
    let udp = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    record("udp-connect-dead", connect(udp.as_raw_fd(), &dead4).map(drop));
    let listener6 = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let v6 = |port| SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0));
    if bind(listener6.as_raw_fd(), &v6(0)).is_ok() {
        listen(&listener6, Backlog::new(8)?)?;
        let live6: SockaddrIn6 = getsockname(listener6.as_raw_fd())?;
        record("connect6-live", connect_new(AddressFamily::Inet6, SockFlag::empty(), &live6));
        record("connect6-dead", connect_new(AddressFamily::Inet6, SockFlag::empty(), &v6(dead)));
        let mapped = SockaddrIn6::from(SocketAddrV6::new(
            std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped(),
            dead,
            0,
            0,
        ));
        record(
            "connect6-mapped-dead",
            connect_new(AddressFamily::Inet6, SockFlag::empty(), &mapped),
        );
    }

    // Binds: the configured ports, and unix paths in and out of the configured directory.
    let ports = std::env::var("WSLTRACE_DEMO_PORTS").unwrap_or_default();
    for port in ports.split(',').filter_map(|p| p.trim().parse::<u16>().ok()) {
        let sock = tcp4(SockFlag::empty())?;
        record(
            &format!("bind-port-{port}"),
            bind(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)),
        );
    }
    let (dir, own_dir) = match std::env::var_os("WSLTRACE_DEMO_DIR") {
        Some(dir) => (PathBuf::from(dir), false),
        None => {
            (std::env::temp_dir().join(format!("wsltrace-quirks-{}", std::process::id())), true)
        }
    };
    std::fs::create_dir_all(dir.join("in"))?;
    for (label, path) in
        [("bind-unix-in", dir.join("in/a.sock")), ("bind-unix-out", dir.join("out.sock"))]
    {
        let _ = std::fs::remove_file(&path);
        let sock = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
        record(label, bind(sock.as_raw_fd(), &UnixAddr::new(&path)?));
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(dir.join("in"));
    if own_dir {
        let _ = std::fs::remove_dir(&dir);
    }
    let sock = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let name = format!("wsltrace-quirks-{}", std::process::id());
    record("bind-unix-abstract", bind(sock.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes())?));

    let mut err = std::io::stderr().lock();
    for (label, result) in results {
        writeln!(err, "quirks: {label} = {result}")?;
    }
    Ok(())
}

fn tcp4(flags: SockFlag) -> Result<OwnedFd> {
    Ok(socket(AddressFamily::Inet, SockType::Stream, flags | SockFlag::SOCK_CLOEXEC, None)?)
}

/// A port that was free a moment ago (bound, then released).
fn free_port() -> Result<u16> {
    let probe = tcp4(SockFlag::empty())?;
    bind(probe.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))?;
    Ok(getsockname::<SockaddrIn>(probe.as_raw_fd())?.port())
}

/// How long a blocking connect may hang: longer than `--blocked-after`'s default, so a trace
/// reports the call as blocked.
const CONNECT_LIMIT_SECS: i64 = 3;

fn connect_new(
    family: AddressFamily,
    flags: SockFlag,
    addr: &dyn SockaddrLike,
) -> Result<(), Errno> {
    let sock = socket(family, SockType::Stream, flags | SockFlag::SOCK_CLOEXEC, None)?;
    // Bounded: under the mirrored loopback hang a connect to a dead port would wait for
    // TCP's retries (over two minutes); after this it fails with EINPROGRESS, which says so.
    let limit = nix::sys::time::TimeVal::new(CONNECT_LIMIT_SECS, 0);
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::SendTimeout, &limit)?;
    // SAFETY: `addr` is a valid sockaddr of `addr.len()` bytes.
    let ret = unsafe { libc::connect(sock.as_raw_fd(), addr.as_ptr(), addr.len()) };
    Errno::result(ret).map(drop)
}

/// getsockopt with a buffer of `len` bytes; only the result matters.
fn getsockopt(sock: &OwnedFd, level: i32, name: i32, len: usize) -> Result<(), Errno> {
    let mut buf = [0_u8; 128];
    let mut optlen = len.min(buf.len()) as libc::socklen_t;
    // SAFETY: a valid buffer of at least `optlen` bytes and its length.
    let ret = unsafe {
        libc::getsockopt(sock.as_raw_fd(), level, name, buf.as_mut_ptr().cast(), &mut optlen)
    };
    Errno::result(ret).map(drop)
}
