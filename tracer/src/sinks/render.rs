//! How the text output writes things: durations, fds (strace -yy style), arguments,
//! addresses, sockets and option values. Shared by the text sink and the summary.

use std::fmt::{self, Write as _};

use tracer_common::Syscall;

use crate::event::{Event, KnownAddr, Name, OptValue, SockAddr, SocketInfo};

/// A duration in nanoseconds, displayed `31us`, `850ns`, `1.25ms`, `3.00s`.
pub struct Duration(pub u64);

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

/// What an fd is, strace -yy style: `TCP:127.0.0.1:5555->127.0.0.1:8080`, `UNIX:/tmp/app.sock`.
pub fn sock_tag(sock: &SocketInfo) -> String {
    let v6 = sock.family == "AF_INET6";
    let mut tag = match (sock.family.as_ref(), sock.sock_type.as_deref()) {
        ("AF_INET" | "AF_INET6", Some("SOCK_STREAM")) => {
            if v6 { "TCPv6" } else { "TCP" }.to_owned()
        }
        ("AF_INET" | "AF_INET6", Some("SOCK_DGRAM")) => if v6 { "UDPv6" } else { "UDP" }.to_owned(),
        (family, _) => family.trim_start_matches("AF_").to_owned(),
    };
    // Unnamed unix sockets (socketpair ends, a client's end) are told apart by inode.
    let unnamed = |a: &Option<SockAddr>| match a {
        None => true,
        Some(SockAddr::Known(KnownAddr::Unix(u))) => u.path.is_none() && u.abstract_name.is_none(),
        Some(_) => false,
    };
    if let (Some(inode), "AF_UNIX") = (sock.inode, sock.family.as_ref())
        && unnamed(&sock.local)
        && unnamed(&sock.peer)
    {
        match sock.peer_inode {
            Some(peer) => {
                let _ = write!(tag, ":[{inode}->{peer}]");
            }
            None => {
                let _ = write!(tag, ":[{inode}]");
            }
        }
        return tag;
    }
    let endpoints: Vec<String> = [&sock.local, &sock.peer]
        .into_iter()
        .map(|a| a.as_ref().map_or_else(|| "?".into(), render_endpoint))
        .collect();
    match (&sock.local, &sock.peer) {
        (_, Some(_)) => {
            let _ = write!(tag, ":{}->{}", endpoints[0], endpoints[1]);
        }
        (Some(_), None) => {
            let _ = write!(tag, ":{}", endpoints[0]);
        }
        (None, None) => {}
    }
    tag
}

/// An address without its family: `127.0.0.1:8080`, `[::1]:53`, `/tmp/s.sock`, `@name`.
pub fn render_endpoint(addr: &SockAddr) -> String {
    match addr {
        SockAddr::Known(KnownAddr::Inet { ip, port }) => format!("{ip}:{port}"),
        SockAddr::Known(KnownAddr::Inet6 { ip, port, .. }) => format!("[{ip}]:{port}"),
        SockAddr::Known(KnownAddr::Unix(unix)) => match (&unix.path, &unix.abstract_name) {
            (Some(path), _) => path.clone(),
            (None, Some(name)) => format!("@{name}"),
            (None, None) => String::new(),
        },
        other => render_addr(other),
    }
}

/// The argument list, in the syscall's own order, as strace shows it.
pub fn render_args(ev: &Event) -> String {
    let a = &ev.args;
    fn opt(s: &Option<Name>) -> &str {
        s.as_deref().unwrap_or("?")
    }
    let fd = match (a.fd, &ev.sock) {
        (Some(fd), Some(sock)) if !returns_fd(ev.syscall) => format!("{fd}<{}>", sock_tag(sock)),
        (Some(fd), _) => fd.to_string(),
        (None, _) => "?".into(),
    };
    let failed = ev.failed();
    // An out-address: decoded, NULL when none was asked for, unknown when the call failed.
    let addr_out = || match (&a.addr, a.addrlen) {
        (Some(addr), len) => format!("{}, [{}]", render_addr(addr), len.unwrap_or(0)),
        (None, _) if failed => "?, ?".into(),
        (None, _) => "NULL, NULL".into(),
    };
    match ev.syscall {
        Syscall::Socket | Syscall::Socketpair => {
            let ty = match &a.flags {
                Some(flags) => format!("{}|{flags}", opt(&a.sock_type)),
                None => opt(&a.sock_type).to_owned(),
            };
            let mut s = format!("{}, {ty}, {}", opt(&a.domain), opt(&a.protocol));
            if ev.syscall == Syscall::Socketpair {
                match (a.fds, &ev.sock) {
                    // The event describes the first end; the second is its mirror.
                    (Some([x, y]), Some(first)) if first.peer_inode.is_some() => {
                        let second = SocketInfo {
                            inode: first.peer_inode,
                            peer_inode: first.inode,
                            ..SocketInfo::clone(first)
                        };
                        let _ =
                            write!(s, ", [{x}<{}>, {y}<{}>]", sock_tag(first), sock_tag(&second));
                    }
                    (Some([x, y]), _) => {
                        let _ = write!(s, ", [{x}, {y}]");
                    }
                    (None, _) => s.push_str(", ?"),
                }
            }
            s
        }
        Syscall::Bind | Syscall::Connect => {
            let addr = a.addr.as_ref().map_or_else(|| "?".into(), render_addr);
            format!("{fd}, {addr}, {}", a.addrlen.unwrap_or(0))
        }
        Syscall::Listen => format!("{fd}, {}", a.backlog.unwrap_or(0)),
        Syscall::Accept | Syscall::Getsockname | Syscall::Getpeername => {
            format!("{fd}, {}", addr_out())
        }
        Syscall::Accept4 => format!("{fd}, {}, {}", addr_out(), opt(&a.flags)),
        Syscall::Getsockopt => {
            let value = a.value.as_ref().map_or_else(|| "?".into(), render_value);
            let len = a.optlen.map_or_else(|| "?".into(), |l| format!("[{l}]"));
            format!("{fd}, {}, {}, {value}, {len}", opt(&a.level), opt(&a.optname))
        }
        Syscall::Setsockopt => {
            let value = a.value.as_ref().map_or_else(|| "NULL".into(), render_value);
            format!(
                "{fd}, {}, {}, {value}, {}",
                opt(&a.level),
                opt(&a.optname),
                a.optlen.unwrap_or(0)
            )
        }
        Syscall::Shutdown => format!("{fd}, {}", opt(&a.how)),
        Syscall::Close => fd,
    }
}

pub fn render_addr(addr: &SockAddr) -> String {
    match addr {
        SockAddr::Known(KnownAddr::Inet { ip, port }) => format!("{{AF_INET, {ip}:{port}}}"),
        SockAddr::Known(KnownAddr::Inet6 { ip, port, scope_id, .. }) => match scope_id {
            0 => format!("{{AF_INET6, [{ip}]:{port}}}"),
            scope => format!("{{AF_INET6, [{ip}%{scope}]:{port}}}"),
        },
        SockAddr::Known(KnownAddr::Unix(unix)) => match (&unix.path, &unix.abstract_name) {
            (Some(path), _) => format!("{{AF_UNIX, \"{path}\"}}"),
            (None, Some(name)) => format!("{{AF_UNIX, @\"{name}\"}}"),
            (None, None) => "{AF_UNIX}".into(),
        },
        SockAddr::Known(KnownAddr::Vsock { cid, port }) => {
            // -1 is the wildcard of both, as strace names it.
            let any =
                |n: u32, name: &str| if n == u32::MAX { name.to_owned() } else { n.to_string() };
            let (cid, port) = (any(*cid, "VMADDR_CID_ANY"), any(*port, "VMADDR_PORT_ANY"));
            format!("{{AF_VSOCK, cid={cid}, port={port}}}")
        }
        SockAddr::Known(KnownAddr::Netlink { portid, groups }) => {
            format!("{{AF_NETLINK, portid={portid}, groups={groups:#x}}}")
        }
        SockAddr::Known(KnownAddr::Packet { protocol, ifindex, addr, .. }) => {
            format!("{{AF_PACKET, {protocol}, ifindex={ifindex}, addr={addr}}}")
        }
        SockAddr::Known(KnownAddr::Unspec {}) => "{AF_UNSPEC}".into(),
        SockAddr::Other { family, hex } => format!("{{{family}, hex={hex}}}"),
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
        s.push_str(&render_addr(local));
    }
    if let Some(peer) = &sock.peer {
        s.push_str(" -> ");
        s.push_str(&render_addr(peer));
    }
    if let Some(inode) = sock.inode {
        let _ = write!(s, " inode={inode}");
    }
    if let Some(peer) = sock.peer_inode {
        let _ = write!(s, " peer_inode={peer}");
    }
    s
}

pub fn render_value(value: &OptValue) -> String {
    match value {
        OptValue::Int(v) => format!("[{v}]"),
        OptValue::Name(name) => format!("[{name}]"),
        OptValue::Cred { pid, uid, gid } => format!("{{pid={pid}, uid={uid}, gid={gid}}}"),
        OptValue::Linger { onoff, linger } => format!("{{onoff={onoff}, linger={linger}}}"),
        OptValue::Timeval { sec, usec } => format!("{{tv_sec={sec}, tv_usec={usec}}}"),
        OptValue::Bytes { hex, truncated } => {
            format!("\"{hex}\"{}", if *truncated { "..." } else { "" })
        }
    }
}

/// socket/accept/accept4 return an fd rather than act on one.
pub fn returns_fd(syscall: Syscall) -> bool {
    matches!(syscall, Syscall::Socket | Syscall::Accept | Syscall::Accept4)
}
