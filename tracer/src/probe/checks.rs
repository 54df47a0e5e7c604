//! The probes' calls on Linux's own sockets (the rest in host.rs). Each tries one behaviour
//! with real sockets and says what happened, errnos by name, waits bounded by the probe timeout.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::{
        socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, getsockname, getsockopt,
            setsockopt, socket, socketpair, sockopt,
        },
        time::TimeVal,
    },
};

use super::{Ctx, Outcome};
use crate::decode::errno;

pub(super) fn name(e: Errno) -> String {
    errno::Errno(e as u16).name().into_owned()
}

pub(super) fn io_name(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(|| e.to_string(), |n| name(Errno::from_raw(n)))
}

pub(super) fn took(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn tcp4() -> nix::Result<OwnedFd> {
    socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
}

/// SO_PEERCRED on a connected unix socketpair: Linux always answers.
pub fn peercred(_: &Ctx) -> Outcome {
    let pair = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC);
    let (sock, _peer) = match pair {
        Ok(pair) => pair,
        Err(e) => return Outcome::Skipped(format!("socketpair(AF_UNIX): {}", name(e))),
    };
    let what = "getsockopt(SO_PEERCRED) on a unix socketpair";
    match getsockopt(&sock, sockopt::PeerCredentials) {
        Ok(c) => Outcome::NotSeen(format!(
            "{what} gave pid {} uid {} gid {}, as Linux does",
            c.pid(),
            c.uid(),
            c.gid()
        )),
        Err(e @ (Errno::ENOPROTOOPT | Errno::EINVAL)) => {
            Outcome::Seen(format!("{what} failed with {}", name(e)))
        }
        Err(e) => {
            Outcome::Skipped(format!("{what} failed with {}, not the reported errno", name(e)))
        }
    }
}

/// A blocking connect to a 127.0.0.1 port nothing listens on, bounded by SO_SNDTIMEO.
pub struct Connect {
    pub port: u16,
    /// `EINPROGRESS`: no answer within the timeout.
    pub result: nix::Result<()>,
    pub took: Duration,
}

pub fn connect_closed_loopback(timeout: Duration) -> Result<Connect, String> {
    let fail = |what: &str, e: Errno| format!("{what}: {}", name(e));
    let port = {
        let probe = tcp4().map_err(|e| fail("socket", e))?;
        bind(probe.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).map_err(|e| fail("bind", e))?;
        getsockname::<SockaddrIn>(probe.as_raw_fd()).map_err(|e| fail("getsockname", e))?.port()
    };
    let sock = tcp4().map_err(|e| fail("socket", e))?;
    setsockopt(&sock, sockopt::SendTimeout, &TimeVal::from(timeout_timespec(timeout)))
        .map_err(|e| fail("setsockopt(SO_SNDTIMEO)", e))?;
    let start = Instant::now();
    let result = connect(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port));
    Ok(Connect { port, result, took: start.elapsed() })
}

pub(super) fn timeout_timespec(timeout: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    }
}

/// Refused (Linux), ENOTCONN (the WSL2 claim), or no answer (the next probe's business).
pub fn closed_port_errno(ctx: &Ctx) -> Outcome {
    let c = match ctx.loopback_connect() {
        Ok(c) => c,
        Err(e) => return Outcome::Skipped(e.clone()),
    };
    let what = format!("connect to 127.0.0.1:{} (nothing listens)", c.port);
    match c.result {
        Err(Errno::ECONNREFUSED) => Outcome::NotSeen(format!(
            "{what} failed with ECONNREFUSED in {}, as Linux does",
            took(c.took)
        )),
        Err(Errno::ENOTCONN) => {
            Outcome::Seen(format!("{what} failed with ENOTCONN in {}", took(c.took)))
        }
        Err(Errno::EINPROGRESS) => Outcome::Skipped(format!(
            "{what} had no answer within {}: see connect-closed-loopback-hang",
            took(c.took)
        )),
        Ok(()) => Outcome::Skipped(format!("{what} succeeded: something started listening")),
        Err(e) => Outcome::Skipped(format!("{what} failed with {}", name(e))),
    }
}

/// WSL2 mirrored: the refusal never comes back, the connect waits in SYN_SENT.
pub fn closed_port_hang(ctx: &Ctx) -> Outcome {
    let c = match ctx.loopback_connect() {
        Ok(c) => c,
        Err(e) => return Outcome::Skipped(e.clone()),
    };
    let what = format!("connect to 127.0.0.1:{} (nothing listens)", c.port);
    match c.result {
        Err(Errno::EINPROGRESS) => {
            Outcome::Seen(format!("{what} was still waiting after {}", took(c.took)))
        }
        Ok(()) => Outcome::Skipped(format!("{what} succeeded: something started listening")),
        Err(e) => {
            Outcome::NotSeen(format!("{what} failed at once ({}, {})", name(e), took(c.took)))
        }
    }
}

/// The local TCP ports in use (every state, IPv4 and IPv6) in this network namespace.
fn ports_in_use() -> HashSet<u16> {
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let local = line.split_whitespace().nth(1).unwrap_or_default();
            let port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            ports.extend(port);
        }
    }
    ports
}

/// Binds 127.0.0.1:P, then 127.0.0.2:P, P a port no Linux socket uses, in Windows' default
/// ephemeral range (49152-65535) and outside Linux's own: a mirrored port tracker asks Windows
/// for 127.0.0.1 (and may refuse with EADDRINUSE), never for 127.0.0.2.
pub fn bind_pair(_: &Ctx) -> Outcome {
    let (low, high) = local_port_range().unwrap_or((32768, 60999));
    let used = ports_in_use();
    let start = 49152 + (std::process::id() % 4096) as u16;
    let candidates = (start..=65535).chain(49152..start);
    let Some(port) =
        candidates.into_iter().find(|p| !(low..=high).contains(p) && !used.contains(p))
    else {
        return Outcome::Skipped("no free port in 49152-65535 outside the local range".into());
    };
    let timed_bind = |a, b, c, d| -> nix::Result<(OwnedFd, Duration)> {
        let sock = tcp4()?;
        let start = Instant::now();
        bind(sock.as_raw_fd(), &SockaddrIn::new(a, b, c, d, port))?;
        Ok((sock, start.elapsed()))
    };
    let first = timed_bind(127, 0, 0, 1);
    let second = timed_bind(127, 0, 0, 2);
    match (&first, &second) {
        (Ok((_, t1)), Ok((_, t2))) => Outcome::NotSeen(format!(
            "bind 127.0.0.1:{port} ({}) then 127.0.0.2:{port} ({}): both bound",
            took(*t1),
            took(*t2)
        )),
        (Err(Errno::EADDRINUSE), Ok(_)) => Outcome::Seen(format!(
            "bind 127.0.0.1:{port} failed with EADDRINUSE though no Linux socket used the port, \
             while 127.0.0.2:{port} bound: the refusal came from outside Linux's socket tables \
             (in mirrored mode, Windows refusing the port)"
        )),
        (Err(e), _) => Outcome::Skipped(format!("bind 127.0.0.1:{port} failed with {}", name(*e))),
        (Ok(_), Err(e)) => {
            Outcome::Skipped(format!("bind 127.0.0.2:{port} failed with {}", name(*e)))
        }
    }
}

/// A TCP listener on [::1] and a connect to it.
pub fn ipv6_loopback(ctx: &Ctx) -> Outcome {
    let listener = match TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
        Ok(l) => l,
        Err(e) => {
            return Outcome::Seen(format!(
                "bind [::1]:0 failed with {}: no IPv6 loopback",
                io_name(&e)
            ));
        }
    };
    let Ok(addr) = listener.local_addr() else {
        return Outcome::Skipped("getsockname of the [::1] listener failed".into());
    };
    match TcpStream::connect_timeout(&addr, ctx.timeout) {
        Ok(_) => Outcome::NotSeen(format!(
            "a connect to a listener on {addr} succeeded (inside Linux; from Windows, NAT's relay \
             reaches [::] and [::1] listeners at [::1] only)"
        )),
        Err(e) => {
            Outcome::Seen(format!("a connect to a listener on {addr} failed: {}", io_name(&e)))
        }
    }
}

/// A route lookup only: connecting a UDP socket sends nothing.
pub fn ipv6_route(_: &Ctx) -> Outcome {
    let target: SocketAddr =
        SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888)), 53);
    let sock = match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Seen(format!("an IPv6 UDP socket: {}: IPv6 is off", io_name(&e)));
        }
    };
    let what = format!("a UDP connect to {target} (a route lookup, no packet sent)");
    match sock.connect(target) {
        Ok(()) => Outcome::NotSeen(format!("{what} found a route")),
        Err(e) => Outcome::Seen(format!("{what} failed with {}: no IPv6 route", io_name(&e))),
    }
}

/// net.ipv4.ip_local_port_range (as read by this process's network namespace).
pub fn local_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Mirrored mode writes a 4096-port window into ip_local_port_range.
pub fn ephemeral_window(_: &Ctx) -> Outcome {
    let Some((low, high)) = local_port_range() else {
        return Outcome::Skipped("/proc/sys/net/ipv4/ip_local_port_range cannot be read".into());
    };
    let width = u32::from(high).saturating_sub(u32::from(low)) + 1;
    let what = format!("ip_local_port_range is {low}-{high}: {width} ephemeral ports");
    if width == 4096 {
        Outcome::Seen(format!("{what}, the window WSL's mirrored mode reserves"))
    } else {
        Outcome::NotSeen(what)
    }
}
