//! The probes' calls. Each tries one behaviour with real sockets and says what happened,
//! errnos by name, waits bounded by the probe timeout.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::{
        socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, VsockAddr, bind, connect, getsockname,
            getsockopt, setsockopt, socket, socketpair, sockopt,
        },
        time::TimeVal,
        wait::{WaitStatus, waitpid},
    },
    unistd::ForkResult,
};

use super::{Ctx, Outcome};
use crate::decode::errno;

fn name(e: Errno) -> String {
    errno::Errno(e as u16).name().into_owned()
}

fn io_name(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(|| e.to_string(), |n| name(Errno::from_raw(n)))
}

fn took(d: Duration) -> String {
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

fn timeout_timespec(timeout: Duration) -> libc::timeval {
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

/// `Seccomp:` of /proc/self/status (0 none, 1 strict, 2 filter).
pub fn seccomp_mode() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Seccomp:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// In a child: a filter that allows everything, installed with SECCOMP_FILTER_FLAG_NEW_LISTENER.
/// The kernel refuses a second user-notification listener in one filter chain (EBUSY): WSL's
/// port tracker holds the one its init installed for every process (mirrored, consomme).
pub fn seccomp_listener(_: &Ctx) -> Outcome {
    let mode = seccomp_mode().map_or("unknown".into(), |m| m.to_string());
    // SAFETY: the probes run on one thread; the child only makes raw syscalls and _exits.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => install_listener_and_exit(),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Outcome::Skipped(format!("fork: {}", name(e))),
    };
    let what = "a child's seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER)";
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, 0)) => Outcome::NotSeen(format!(
            "{what} succeeded: no filter of this process has a supervisor (Seccomp: {mode})"
        )),
        Ok(WaitStatus::Exited(_, code)) if code == Errno::EBUSY as i32 => Outcome::Seen(format!(
            "{what} failed with EBUSY: a supervisor already listens on this process's filters \
             (Seccomp: {mode}; WSL's port tracker in mirrored/consomme mode, or a container \
             runtime, or wsltrace emulate)"
        )),
        Ok(WaitStatus::Exited(_, code)) => {
            Outcome::Skipped(format!("{what} failed with {}", name(Errno::from_raw(code))))
        }
        other => Outcome::Skipped(format!("the probing child ended as {other:?}")),
    }
}

/// The child of [`seccomp_listener`]: exits 0 on success, else with the errno.
fn install_listener_and_exit() -> ! {
    let mut allow = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog { len: 1, filter: allow.as_mut_ptr() };
    // SAFETY: prctl with integer arguments, then seccomp with a valid one-instruction program
    // that outlives the call; _exit ends the child without running the parent's destructors.
    unsafe {
        let failed = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &raw const prog,
            ) < 0;
        libc::_exit(if failed { Errno::last_raw() } else { 0 })
    }
}

/// A DNS query for the root's NS records (any recursive resolver answers it, even with an
/// error) sent to the first nameserver of resolv.conf.
const ROOT_NS_QUERY: [u8; 17] = [0x57, 0x54, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];

const RCODES: [&str; 6] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/// WSL's DNS tunnel drops a query Windows fails to answer: the client times out instead of
/// getting SERVFAIL.
pub fn dns_answer(ctx: &Ctx) -> Outcome {
    let Some(&(ns, tunnel)) = ctx.nameservers.first() else {
        return Outcome::Skipped("no nameserver in /etc/resolv.conf".into());
    };
    let server = SocketAddr::new(ns, 53);
    let what = format!("a DNS query (. NS) to {server}");
    let asked = (|| {
        let local: SocketAddr = if ns.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let sock = UdpSocket::bind(local).ok()?;
        sock.set_read_timeout(Some(ctx.timeout)).ok()?;
        sock.connect(server).ok()?;
        Some(sock)
    })();
    let Some(sock) = asked else { return Outcome::Skipped(format!("{what}: no UDP socket")) };
    let start = Instant::now();
    let mut answer = [0_u8; 512];
    let result = sock.send(&ROOT_NS_QUERY).and_then(|_| sock.recv(&mut answer));
    let elapsed = took(start.elapsed());
    let not_tunnel = |s: String| {
        Outcome::Skipped(format!(
            "{s}; {ns} is not WSL's DNS tunnel, so this says nothing about it"
        ))
    };
    match result {
        Ok(n) if n >= 4 && answer[..2] == ROOT_NS_QUERY[..2] => {
            let rcode = RCODES.get(usize::from(answer[3] & 0x0f)).copied().unwrap_or("other");
            Outcome::NotSeen(format!("{what} was answered in {elapsed} ({rcode})"))
        }
        Ok(n) => Outcome::Skipped(format!("{what}: a {n}-byte reply that is not an answer")),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            let s = format!("{what} got no answer within {elapsed}");
            if tunnel {
                Outcome::Seen(format!("{s}: the tunnel dropped it"))
            } else {
                not_tunnel(s)
            }
        }
        Err(e) => {
            let s = format!("{what} failed with {}", io_name(&e));
            if tunnel { Outcome::Seen(s) } else { not_tunnel(s) }
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

/// A unix socket bound in a writable directory of /mnt/c when it is a Windows drive.
pub fn unix_on_drvfs(_: &Ctx) -> Outcome {
    let drive = Path::new("/mnt/c");
    if !drive.is_dir() {
        return Outcome::Skipped("no /mnt/c here".into());
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let fstype = mounts.lines().find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        (fields.get(1) == Some(&"/mnt/c")).then(|| fields.get(2).copied().unwrap_or_default())
    });
    match fstype {
        Some("9p" | "drvfs" | "virtiofs" | "fuse.drvfs") => {}
        Some(other) => return Outcome::Skipped(format!("/mnt/c is {other}, not a Windows drive")),
        None => return Outcome::Skipped("/mnt/c is not a mount point".into()),
    }
    let file = format!("wsltrace-probe-{}.sock", std::process::id());
    let mut refusals = Vec::new();
    for dir in ["/mnt/c/Users/Public", "/mnt/c/Windows/Temp", "/mnt/c/tmp", "/mnt/c"] {
        let path = Path::new(dir).join(&file);
        match std::os::unix::net::UnixListener::bind(&path) {
            Ok(listener) => {
                drop(listener);
                let _ = std::fs::remove_file(&path);
                return Outcome::NotSeen(format!(
                    "bind of a unix socket at {} worked",
                    path.display()
                ));
            }
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                return Outcome::Seen(format!("bind at {} failed with EOPNOTSUPP", path.display()));
            }
            Err(e) => refusals.push(format!("{dir}: {}", io_name(&e))),
        }
    }
    Outcome::Skipped(format!("no directory of /mnt/c took the socket ({})", refusals.join(", ")))
}

/// The vsock port the probe and `demo vsock-host` connect to: nothing listens on it.
pub const VSOCK_PORT: u32 = 0x5754_5052;

/// A blocking vsock connect to the host (CID 2) at `port`, bounded by
/// SO_VM_SOCKETS_CONNECT_TIMEOUT: its result and how long it took.
pub fn vsock_connect_host(port: u32, timeout: Duration) -> nix::Result<Duration> {
    let sock = socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let timeout = timeout_timespec(timeout);
    // SAFETY: a valid fd, a pointer to a timeval and its size (SO_VM_SOCKETS_CONNECT_TIMEOUT_OLD,
    // 6, takes a struct timeval on 64-bit kernels).
    let set = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::AF_VSOCK,
            6,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Errno::result(set)?;
    let start = Instant::now();
    connect(sock.as_raw_fd(), &VsockAddr::new(libc::VMADDR_CID_HOST, port))?;
    Ok(start.elapsed())
}

/// A vsock connect to the host (CID 2) on a port nothing listens on: Hyper-V gives no
/// refusal unless a Windows listener bound this VM's id, so WSL2's connects time out.
pub fn vsock_host(ctx: &Ctx) -> Outcome {
    let start = Instant::now();
    let result = vsock_connect_host(VSOCK_PORT, ctx.timeout);
    let what = format!("a vsock connect to CID 2 port {VSOCK_PORT} (nothing listens)");
    let elapsed = took(start.elapsed());
    match result {
        Err(e @ (Errno::EAFNOSUPPORT | Errno::ENODEV)) => {
            Outcome::Skipped(format!("{what}: {}: no vsock transport here", name(e)))
        }
        Err(Errno::ETIMEDOUT) => Outcome::Seen(format!("{what} timed out after {elapsed}")),
        Err(e @ (Errno::ECONNRESET | Errno::ECONNREFUSED)) => {
            Outcome::NotSeen(format!("{what} was refused at once ({}, {elapsed})", name(e)))
        }
        Err(e) => Outcome::Skipped(format!("{what} failed with {}", name(e))),
        Ok(_) => Outcome::Skipped(format!("{what} succeeded: something listens there")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_query_is_well_formed() {
        // Header: id, RD, one question; question: the root name, type NS (2), class IN (1).
        assert_eq!(&ROOT_NS_QUERY[2..6], &[0x01, 0x00, 0, 1]);
        assert_eq!(&ROOT_NS_QUERY[12..], &[0, 0, 2, 0, 1]);
    }
}
