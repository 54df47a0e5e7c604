//! How the text output writes things: durations, fds (strace -yy style), arguments,
//! addresses, sockets and option values. Shared by the text sink and the summary.

use std::{
    fmt::{self, Write as _},
    net::Ipv4Addr,
};

use tracer_common::Syscall;

use crate::event::{Event, KnownAddr, Name, OptValue, SockAddr, SocketInfo};

/// A duration in nanoseconds, displayed `31us`, `850ns`, `1.25ms`, `3.00s`.
pub struct Duration(pub u64);

impl Duration {
    pub fn push_to(&self, out: &mut String) {
        match self.0 {
            ns @ 0..1_000 => {
                push_uint(out, ns);
                out.push_str("ns");
            }
            ns @ 1_000..1_000_000 => {
                push_uint(out, ns / 1_000);
                out.push_str("us");
            }
            _ => {
                let _ = write!(out, "{self}");
            }
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        match ns {
            0..1_000 => write!(f, "{ns}ns"),
            1_000..1_000_000 => write!(f, "{}us", ns / 1_000),
            1_000_000..1_000_000_000 => write!(f, "{:.2}ms", ns as f64 / 1e6),
            _ => write!(f, "{:.2}s", ns as f64 / 1e9),
        }
    }
}

/// Decimal digits of `n`, without `core::fmt` (its `Formatter` machinery was a fifth of the
/// text sink's time).
pub fn push_uint(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // SAFETY: ASCII digits only (checking them was a third of this function's time).
    out.push_str(unsafe { std::str::from_utf8_unchecked(&digits[at..]) });
}

pub fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_uint(out, n.unsigned_abs());
}

fn push_ipv4(out: &mut String, ip: &Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_uint(out, u64::from(octet));
    }
}

/// `Display` for the pieces below, for tests and the rare line built with `format!`. The text
/// sink writes them with `push_to`, straight into its line.
macro_rules! display_by_push {
    ($($piece:ident),*) => {$(
        impl fmt::Display for $piece<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut s = String::new();
                self.push_to(&mut s);
                f.write_str(&s)
            }
        }
    )*};
}

display_by_push!(SockTag, Endpoint, ArgList, Addr, Value);

/// What an fd is, strace -yy style: `TCP:127.0.0.1:5555->127.0.0.1:8080`, `UNIX:/tmp/app.sock`.
pub struct SockTag<'a>(pub &'a SocketInfo);

impl SockTag<'_> {
    pub fn push_to(&self, out: &mut String) {
        let sock = self.0;
        let v6 = sock.family == "AF_INET6";
        out.push_str(match (sock.family.as_ref(), sock.sock_type.as_deref()) {
            ("AF_INET" | "AF_INET6", Some("SOCK_STREAM")) => {
                if v6 {
                    "TCPv6"
                } else {
                    "TCP"
                }
            }
            ("AF_INET" | "AF_INET6", Some("SOCK_DGRAM")) => {
                if v6 {
                    "UDPv6"
                } else {
                    "UDP"
                }
            }
            (family, _) => family.trim_start_matches("AF_"),
        });
        // Unnamed unix sockets (socketpair ends, a client's end) are told apart by inode.
        let unnamed = |a: &Option<SockAddr>| match a {
            None => true,
            Some(SockAddr::Known(KnownAddr::Unix(u))) => {
                u.path.is_none() && u.abstract_name.is_none()
            }
            Some(_) => false,
        };
        if let (Some(inode), "AF_UNIX") = (sock.inode, sock.family.as_ref())
            && unnamed(&sock.local)
            && unnamed(&sock.peer)
        {
            out.push_str(":[");
            push_uint(out, inode);
            if let Some(peer) = sock.peer_inode {
                out.push_str("->");
                push_uint(out, peer);
            }
            out.push(']');
            return;
        }
        let endpoint = |out: &mut String, a: &Option<SockAddr>| match a {
            Some(addr) => Endpoint(addr).push_to(out),
            None => out.push('?'),
        };
        match (&sock.local, &sock.peer) {
            (_, Some(_)) => {
                out.push(':');
                endpoint(out, &sock.local);
                out.push_str("->");
                endpoint(out, &sock.peer);
            }
            (Some(_), None) => {
                out.push(':');
                endpoint(out, &sock.local);
            }
            (None, None) => {}
        }
    }
}

/// An address without its family: `127.0.0.1:8080`, `[::1]:53`, `/tmp/s.sock`, `@name`.
pub struct Endpoint<'a>(pub &'a SockAddr);

impl Endpoint<'_> {
    pub fn push_to(&self, out: &mut String) {
        match self.0 {
            SockAddr::Known(KnownAddr::Inet { ip, port }) => {
                push_ipv4(out, ip);
                out.push(':');
                push_uint(out, u64::from(*port));
            }
            SockAddr::Known(KnownAddr::Inet6 { ip, port, .. }) => {
                let _ = write!(out, "[{ip}]:{port}");
            }
            SockAddr::Known(KnownAddr::Unix(unix)) => match (&unix.path, &unix.abstract_name) {
                (Some(path), _) => out.push_str(path),
                (None, Some(name)) => {
                    out.push('@');
                    out.push_str(name);
                }
                (None, None) => {}
            },
            other => Addr(other).push_to(out),
        }
    }
}

/// The argument list, in the syscall's own order, as strace shows it.
pub struct ArgList<'a>(pub &'a Event);

impl ArgList<'_> {
    pub fn push_to(&self, out: &mut String) {
        let ev = self.0;
        let a = &ev.args;
        fn opt(s: &Option<Name>) -> &str {
            s.as_deref().unwrap_or("?")
        }
        let fd = |out: &mut String| match (a.fd, &ev.sock) {
            (Some(fd), sock) => {
                push_int(out, i64::from(fd));
                if let Some(sock) = sock.as_ref().filter(|_| !returns_fd(ev.syscall)) {
                    out.push('<');
                    SockTag(sock).push_to(out);
                    out.push('>');
                }
            }
            (None, _) => out.push('?'),
        };
        let failed = ev.failed();
        // An out-address: decoded, NULL when none was asked for, unknown when the call failed.
        let addr_out = |out: &mut String| match (&a.addr, a.addrlen) {
            (Some(addr), len) => {
                Addr(addr).push_to(out);
                out.push_str(", [");
                push_uint(out, u64::from(len.unwrap_or(0)));
                out.push(']');
            }
            (None, _) if failed => out.push_str("?, ?"),
            (None, _) => out.push_str("NULL, NULL"),
        };
        match ev.syscall {
            Syscall::Socket | Syscall::Socketpair => {
                out.push_str(opt(&a.domain));
                out.push_str(", ");
                out.push_str(opt(&a.sock_type));
                if let Some(flags) = &a.flags {
                    out.push('|');
                    out.push_str(flags);
                }
                out.push_str(", ");
                out.push_str(opt(&a.protocol));
                if ev.syscall == Syscall::Socketpair {
                    match (a.fds, &ev.sock) {
                        // The event describes the first end; the second is its mirror.
                        (Some([x, y]), Some(first)) if first.peer_inode.is_some() => {
                            let second = SocketInfo {
                                inode: first.peer_inode,
                                peer_inode: first.inode,
                                ..SocketInfo::clone(first)
                            };
                            let _ = write!(
                                out,
                                ", [{x}<{}>, {y}<{}>]",
                                SockTag(first),
                                SockTag(&second)
                            );
                        }
                        (Some([x, y]), _) => {
                            let _ = write!(out, ", [{x}, {y}]");
                        }
                        (None, _) => out.push_str(", ?"),
                    }
                }
            }
            Syscall::Bind | Syscall::Connect => {
                fd(out);
                out.push_str(", ");
                match &a.addr {
                    Some(addr) => Addr(addr).push_to(out),
                    None => out.push('?'),
                }
                out.push_str(", ");
                push_uint(out, u64::from(a.addrlen.unwrap_or(0)));
            }
            Syscall::Listen => {
                fd(out);
                out.push_str(", ");
                push_int(out, i64::from(a.backlog.unwrap_or(0)));
            }
            Syscall::Accept | Syscall::Getsockname | Syscall::Getpeername => {
                fd(out);
                out.push_str(", ");
                addr_out(out);
            }
            Syscall::Accept4 => {
                fd(out);
                out.push_str(", ");
                addr_out(out);
                out.push_str(", ");
                out.push_str(opt(&a.flags));
            }
            Syscall::Getsockopt | Syscall::Setsockopt => {
                fd(out);
                out.push_str(", ");
                out.push_str(opt(&a.level));
                out.push_str(", ");
                out.push_str(opt(&a.optname));
                out.push_str(", ");
                let get = ev.syscall == Syscall::Getsockopt;
                match &a.value {
                    Some(value) => Value(value).push_to(out),
                    None => out.push_str(if get { "?" } else { "NULL" }),
                }
                out.push_str(", ");
                match a.optlen {
                    // getsockopt's length is a pointer to it.
                    Some(len) if get => {
                        out.push('[');
                        push_uint(out, u64::from(len));
                        out.push(']');
                    }
                    None if get => out.push('?'),
                    len => push_uint(out, u64::from(len.unwrap_or(0))),
                }
            }
            Syscall::Shutdown => {
                fd(out);
                out.push_str(", ");
                out.push_str(opt(&a.how));
            }
            Syscall::Close => fd(out),
        }
    }
}

/// An address as strace shows it: `{AF_INET, 127.0.0.1:8080}`.
pub struct Addr<'a>(pub &'a SockAddr);

impl Addr<'_> {
    pub fn push_to(&self, out: &mut String) {
        match self.0 {
            SockAddr::Known(KnownAddr::Inet { .. }) => {
                out.push_str("{AF_INET, ");
                Endpoint(self.0).push_to(out);
                out.push('}');
            }
            SockAddr::Known(KnownAddr::Inet6 { ip, port, scope_id, .. }) => {
                let _ = match scope_id {
                    0 => write!(out, "{{AF_INET6, [{ip}]:{port}}}"),
                    scope => write!(out, "{{AF_INET6, [{ip}%{scope}]:{port}}}"),
                };
            }
            SockAddr::Known(KnownAddr::Unix(unix)) => {
                let _ = match (&unix.path, &unix.abstract_name) {
                    (Some(path), _) => write!(out, "{{AF_UNIX, \"{path}\"}}"),
                    (None, Some(name)) => write!(out, "{{AF_UNIX, @\"{name}\"}}"),
                    (None, None) => write!(out, "{{AF_UNIX}}"),
                };
            }
            SockAddr::Known(KnownAddr::Vsock { cid, port }) => {
                // -1 is the wildcard of both, as strace names it.
                let any = |out: &mut String, n: u32, name: &str| {
                    if n == u32::MAX { out.push_str(name) } else { push_uint(out, u64::from(n)) }
                };
                out.push_str("{AF_VSOCK, cid=");
                any(out, *cid, "VMADDR_CID_ANY");
                out.push_str(", port=");
                any(out, *port, "VMADDR_PORT_ANY");
                out.push('}');
            }
            SockAddr::Known(KnownAddr::Netlink { portid, groups }) => {
                let _ = write!(out, "{{AF_NETLINK, portid={portid}, groups={groups:#x}}}");
            }
            SockAddr::Known(KnownAddr::Packet { protocol, ifindex, addr, .. }) => {
                let _ = write!(out, "{{AF_PACKET, {protocol}, ifindex={ifindex}, addr={addr}}}");
            }
            SockAddr::Known(KnownAddr::Unspec {}) => out.push_str("{AF_UNSPEC}"),
            SockAddr::Other { family, hex } => {
                let _ = write!(out, "{{{family}, hex={hex}}}");
            }
        }
    }
}

/// `fd 3 AF_INET SOCK_STREAM LISTEN {AF_INET, 127.0.0.1:8080}`, with the peer after `->`.
pub fn render_socket(sock: &SocketInfo) -> String {
    let mut s = match sock.fd {
        Some(fd) => format!("fd {fd} {}", sock.family),
        None => sock.family.to_string(),
    };
    for part in [&sock.sock_type, &sock.protocol].into_iter().flatten() {
        s.push(' ');
        s.push_str(part);
    }
    if let Some(state) = sock.state {
        s.push(' ');
        s.push_str(&state.to_string());
    }
    if let Some(local) = &sock.local {
        s.push(' ');
        let _ = write!(s, "{}", Addr(local));
    }
    if let Some(peer) = &sock.peer {
        s.push_str(" -> ");
        let _ = write!(s, "{}", Addr(peer));
    }
    if let Some(inode) = sock.inode {
        let _ = write!(s, " inode={inode}");
    }
    if let Some(peer) = sock.peer_inode {
        let _ = write!(s, " peer_inode={peer}");
    }
    s
}

/// An option value: `[1]`, `[SOCK_STREAM]`, `{onoff=1, linger=0}`, `"0a0b"...`.
pub struct Value<'a>(pub &'a OptValue);

impl Value<'_> {
    pub fn push_to(&self, out: &mut String) {
        let _ = match self.0 {
            OptValue::Int(v) => {
                out.push('[');
                push_int(out, *v);
                out.push(']');
                Ok(())
            }
            OptValue::Name(name) => write!(out, "[{name}]"),
            OptValue::Cred { pid, uid, gid } => write!(out, "{{pid={pid}, uid={uid}, gid={gid}}}"),
            OptValue::Linger { onoff, linger } => {
                write!(out, "{{onoff={onoff}, linger={linger}}}")
            }
            OptValue::Timeval { sec, usec } => write!(out, "{{tv_sec={sec}, tv_usec={usec}}}"),
            OptValue::Bytes { hex, truncated } => {
                write!(out, "\"{hex}\"{}", if *truncated { "..." } else { "" })
            }
        };
    }
}

/// socket/accept/accept4 return an fd rather than act on one.
pub fn returns_fd(syscall: Syscall) -> bool {
    matches!(syscall, Syscall::Socket | Syscall::Accept | Syscall::Accept4)
}
