//! What each matcher tests, and what it may look up about an event (once per event). Code
//! implements matchers, never individual anomalies.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tracer_common::Syscall;

use super::{
    env::Environment,
    environ,
    values::{AddrClass, ListenerKind, MinAge, NetnsKind},
    vocabulary::Matcher,
};
use crate::{
    decode::state::SockState,
    enrich::FdTable,
    event::{Event, KnownAddr, SockAddr},
    facts::{
        sockets::Proto,
        system::{Owner, System, TableSocket},
    },
};

/// What evaluating one event may look up, computed at most once per event.
pub struct Ctx<'a> {
    pub env: &'a Environment,
    pub system: &'a mut dyn System,
    /// The traced processes' sockets as of this event (consistent with the event stream,
    /// unlike /proc, which shows the system some milliseconds later).
    pub traced: &'a FdTable,
    pub initial_net: Option<u32>,
    /// The previous traced call on the same fd.
    pub previous: Option<Syscall>,
    /// `ts_ns` of the last traced connect on the same fd (successful or in progress).
    pub connected_ns: Option<u64>,
    /// The caller's resolver timeout as read at its first connect, when a rule needs it.
    pub resolver_timeout: Option<Duration>,
    listeners: Option<Option<(ListenerKind, Vec<TableSocket>)>>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        env: &'a Environment,
        system: &'a mut dyn System,
        traced: &'a FdTable,
        initial_net: Option<u32>,
        previous: Option<Syscall>,
    ) -> Self {
        Ctx {
            env,
            system,
            traced,
            initial_net,
            previous,
            connected_ns: None,
            resolver_timeout: None,
            listeners: None,
        }
    }

    /// Who listens on the destination port of a connect, classified from the caller's view.
    pub fn listeners(&mut self, ev: &Event) -> Option<(ListenerKind, Vec<TableSocket>)> {
        if self.listeners.is_none() {
            self.listeners = Some(classify_listeners(self, ev));
        }
        self.listeners.clone().flatten()
    }

    /// Sockets on `port`: the traced processes' (from the trace), then the system's (from
    /// /proc) without repeating those; `None` when neither source can say.
    pub fn sockets_on_port(&mut self, port: u16, proto: Proto) -> Option<Vec<TableSocket>> {
        let system = self.system.sockets_on_port(port, proto);
        self.with_traced(port, proto, system)
    }

    /// The TCP listeners on `port`, the traced processes' and the system's (which is asked for
    /// listeners only: cheaper than every socket on the port).
    pub fn listeners_on_port(&mut self, port: u16) -> Option<Vec<TableSocket>> {
        let system = self.system.listeners_on_port(port);
        let mut found = self.with_traced(port, Proto::Tcp, system)?;
        found.retain(|s| s.state == Some(SockState::Listen));
        Some(found)
    }

    /// The traced processes' sockets on `port`, then `system`'s without repeating those.
    fn with_traced(
        &self,
        port: u16,
        proto: Proto,
        system: Option<Vec<TableSocket>>,
    ) -> Option<Vec<TableSocket>> {
        let ty = match proto {
            Proto::Tcp => "SOCK_STREAM",
            Proto::Udp => "SOCK_DGRAM",
        };
        let mut found: Vec<TableSocket> = self
            .traced
            .sockets()
            .filter(|t| t.sock.sock_type.as_deref() == Some(ty))
            .filter_map(|t| {
                let addr = inet(t.sock.local.as_ref()?)?;
                (addr.port() == port).then(|| TableSocket {
                    netns: t.netns.unwrap_or(0),
                    addr,
                    state: t.sock.state,
                    inode: t.sock.inode.unwrap_or(0),
                    owner: Some(Owner { pid: t.pid, comm: t.comm.to_owned(), fd: t.fd }),
                    accept_queue: None,
                })
            })
            .collect();
        if system.is_none() && found.is_empty() {
            return None;
        }
        for s in system.into_iter().flatten() {
            let known = found.iter().any(|f| match (&f.owner, &s.owner) {
                (Some(a), Some(b)) => a.pid == b.pid && a.fd == b.fd,
                _ => false,
            });
            if !known {
                found.push(s);
            }
        }
        Some(found)
    }
}

impl Matcher {
    /// Whether the matcher holds on `ev`; `None` when a fact it needs cannot be known.
    pub fn holds(&self, ev: &Event, ctx: &mut Ctx<'_>) -> Option<bool> {
        Some(match self {
            Matcher::Syscall(list) => list.contains(&ev.syscall),
            Matcher::Errno(list) => ev.errno.is_some_and(|e| list.contains(&e)),
            Matcher::Failed(failed) => ev.failed() == *failed,
            Matcher::Blocked(blocked) => ev.blocked == *blocked,
            Matcher::AcceptQueueFull(full) => accept_queue_full(ev, ctx)? == *full,
            Matcher::Level(names) => names.has(ev.args.level.as_deref()?),
            Matcher::Optname(names) => names.has(ev.args.optname.as_deref()?),
            Matcher::Family(names) => names.has(family(ev)?),
            Matcher::SockType(names) => {
                let ty = ev
                    .sock
                    .as_ref()
                    .and_then(|s| s.sock_type.as_deref())
                    .or(ev.args.sock_type.as_deref());
                names.has(ty?)
            }
            Matcher::SockFlags(names) => {
                let flags = ev
                    .sock
                    .as_ref()
                    .and_then(|s| s.flags.as_deref())
                    .or(ev.args.flags.as_deref())?;
                flags.split('|').any(|f| names.has(f))
            }
            Matcher::Addr(addrs) => addrs.contains(&inet(target(ev)?)?),
            Matcher::AddrClass(classes) => classes.contains(&class(target(ev)?)),
            Matcher::Ip(nets) => {
                let ip = inet(target(ev)?)?.ip();
                nets.0.iter().any(|net| net.contains(ip))
            }
            Matcher::Port(range) => range.contains(inet(target(ev)?)?.port()),
            Matcher::PeerIp(nets) => {
                let ip = inet(ev.sock.as_ref()?.peer.as_ref()?)?.ip();
                nets.0.iter().any(|net| net.contains(ip))
            }
            Matcher::PeerPort(range) => {
                range.contains(inet(ev.sock.as_ref()?.peer.as_ref()?)?.port())
            }
            Matcher::ConnectedAtLeast(age) => {
                let since = Duration::from_nanos(ev.ts_ns.checked_sub(ctx.connected_ns?)?);
                let min = match age {
                    MinAge::Fixed(min) => *min,
                    MinAge::ResolverTimeout => ctx
                        .resolver_timeout
                        .or_else(|| environ::resolver_timeout(ev, ctx.system))?,
                };
                // 5% under: the resolver's own clock reads and ms rounding of its poll.
                since >= min - min / 20
            }
            Matcher::BelowUnprivilegedPort(below) => {
                let port = inet(target(ev)?)?.port();
                (port != 0 && port < ctx.env.unprivileged_port_start) == *below
            }
            Matcher::PathPrefix(prefixes) => {
                let path = unix_path(target(ev)?)?;
                prefixes.0.iter().any(|p| path.starts_with(p.as_str()))
            }
            Matcher::PathFstype(types) => {
                let fstype = ctx.system.mount_fstype(ev.pid, unix_path(target(ev)?)?)?;
                types.contains(&fstype)
            }
            Matcher::DirWritable(writable) => {
                let path = unix_path(target(ev)?)?;
                ctx.system.dir_writable(ev.pid, ev.ns.map(|ns| ns.mnt), ev.uid, ev.gid, path)?
                    == *writable
            }
            Matcher::PreviousSyscall(set) => set.contains(&ctx.previous?),
            Matcher::LacksCapability(caps_needed) => {
                // As the kernel saw them at the call; /proc only if it could not.
                let caps = ev.cap_effective.or_else(|| ctx.system.capabilities(ev.pid))?;
                caps_needed.0.iter().any(|cap| caps & (1 << cap.value) == 0)
            }
            Matcher::Netns(kind) => {
                let private = ev.ns?.net != ctx.initial_net?;
                private == (*kind == NetnsKind::Private)
            }
            Matcher::Listener(kinds) => kinds.contains(&ctx.listeners(ev)?.0),
            Matcher::Wsl(kinds) => kinds.contains(&ctx.env.wsl),
            Matcher::NetworkingMode(modes) => modes.has(ctx.env.networking_mode.as_deref()?),
            Matcher::Nameserver(ips) => ctx.env.nameservers.iter().any(|ns| ips.contains(ns)),
            Matcher::RefusedBy(set) => ev.refused_by.is_some_and(|by| set.contains(&by)),
            Matcher::PortHeld(held) => port_holders(ev, ctx)?.is_empty() != *held,
            Matcher::PortHeldOn(nets) => port_holders(ev, ctx)?
                .iter()
                .any(|s| nets.0.iter().any(|n| n.contains(s.addr.ip()))),
            Matcher::Proxy(is) => environ::proxy_of(ev, ctx).is_some() == *is,
        })
    }
}

/// The address a call is about: its address argument, or (listen, accept...) the fd's local
/// address from the fd table.
pub fn target(ev: &Event) -> Option<&SockAddr> {
    ev.args
        .addr
        .as_ref()
        .filter(|_| !matches!(ev.syscall, Syscall::Accept | Syscall::Accept4))
        .or_else(|| ev.sock.as_ref().and_then(|s| s.local.as_ref()))
}

/// The address family a call is about.
pub fn family(ev: &Event) -> Option<&str> {
    match ev.args.addr.as_ref() {
        Some(SockAddr::Known(known)) => Some(known_family(known)),
        Some(SockAddr::Other { family, .. }) => Some(family.as_ref()),
        None => ev.sock.as_ref().map(|s| s.family.as_ref()).or(ev.args.domain.as_deref()),
    }
}

fn known_family(addr: &KnownAddr) -> &'static str {
    match addr {
        KnownAddr::Inet { .. } => "AF_INET",
        KnownAddr::Inet6 { .. } => "AF_INET6",
        KnownAddr::Unix(_) => "AF_UNIX",
        KnownAddr::Vsock { .. } => "AF_VSOCK",
        KnownAddr::Netlink { .. } => "AF_NETLINK",
        KnownAddr::Packet { .. } => "AF_PACKET",
        KnownAddr::Unspec {} => "AF_UNSPEC",
    }
}

pub fn inet(addr: &SockAddr) -> Option<SocketAddr> {
    match addr {
        SockAddr::Known(KnownAddr::Inet { ip, port }) => Some(SocketAddr::new((*ip).into(), *port)),
        SockAddr::Known(KnownAddr::Inet6 { ip, port, .. }) => {
            Some(SocketAddr::new((*ip).into(), *port))
        }
        _ => None,
    }
}

pub fn unix_path(addr: &SockAddr) -> Option<&str> {
    match addr {
        SockAddr::Known(KnownAddr::Unix(unix)) => unix.path.as_deref(),
        _ => None,
    }
}

pub fn class(addr: &SockAddr) -> AddrClass {
    match addr {
        SockAddr::Known(KnownAddr::Inet { ip, .. }) if ip.is_loopback() => AddrClass::Loopback4,
        SockAddr::Known(KnownAddr::Inet { ip, .. }) if ip.is_unspecified() => AddrClass::Any4,
        SockAddr::Known(KnownAddr::Inet6 { ip, .. }) if ip.is_loopback() => AddrClass::Loopback6,
        SockAddr::Known(KnownAddr::Inet6 { ip, .. }) if ip.is_unspecified() => AddrClass::Any6,
        SockAddr::Known(KnownAddr::Inet6 { ip, .. })
            if ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) =>
        {
            AddrClass::Loopback4
        }
        SockAddr::Known(KnownAddr::Unix(unix)) if unix.path.is_some() => AddrClass::UnixPath,
        SockAddr::Known(KnownAddr::Unix(unix)) if unix.abstract_name.is_some() => {
            AddrClass::UnixAbstract
        }
        SockAddr::Known(KnownAddr::Unix(_)) => AddrClass::Unnamed,
        _ => AddrClass::Specific,
    }
}

/// Whether a socket bound to `bound` receives connections for `dest`.
pub fn covers(bound: SocketAddr, dest: SocketAddr) -> bool {
    let same_ip = |a: IpAddr, b: IpAddr| {
        a == b
            || matches!((a, b), (IpAddr::V6(v6), IpAddr::V4(v4)) | (IpAddr::V4(v4), IpAddr::V6(v6)) if v6.to_ipv4_mapped() == Some(v4))
    };
    bound.port() == dest.port()
        && (same_ip(bound.ip(), dest.ip())
            || bound.ip().is_unspecified() && (bound.is_ipv6() || dest.is_ipv4()))
}

/// The sockets in the caller's network namespace that hold the port of the address a call is
/// about (bind's argument, listen's bound address), listeners first, the caller's own socket
/// left out; `None` when the socket tables cannot be read.
pub fn port_holders(ev: &Event, ctx: &mut Ctx<'_>) -> Option<Vec<TableSocket>> {
    let wanted = inet(target(ev)?)?;
    let proto = match ev.sock.as_ref().and_then(|s| s.sock_type.as_deref()) {
        Some("SOCK_DGRAM") => Proto::Udp,
        _ => Proto::Tcp,
    };
    let netns = ev.ns.map(|n| n.net).or_else(|| ctx.system.netns_of(ev.pid))?;
    let own_fd = ev.args.fd;
    let mut holders: Vec<TableSocket> = ctx
        .sockets_on_port(wanted.port(), proto)?
        .into_iter()
        .filter(|s| s.netns == netns && (covers(s.addr, wanted) || covers(wanted, s.addr)))
        // The socket that tried to bind is not its own obstacle.
        .filter(|s| !s.owner.as_ref().is_some_and(|o| o.pid == ev.pid && Some(o.fd) == own_fd))
        .collect();
    // Listeners first: they are what a user stops; accepted connections share their port.
    holders.sort_by_key(|s| s.state != Some(SockState::Listen));
    Some(holders)
}

fn classify_listeners(ctx: &mut Ctx<'_>, ev: &Event) -> Option<(ListenerKind, Vec<TableSocket>)> {
    if ev.syscall != Syscall::Connect {
        return None;
    }
    let dest = inet(ev.args.addr.as_ref()?)?;
    let netns = ev.ns.map(|ns| ns.net).or_else(|| ctx.system.netns_of(ev.pid))?;
    let listening: Vec<TableSocket> = ctx.listeners_on_port(dest.port())?;
    let here: Vec<&TableSocket> = listening.iter().filter(|s| s.netns == netns).collect();
    let kind = if here.iter().any(|s| covers(s.addr, dest)) {
        ListenerKind::Here
    } else if !here.is_empty() {
        ListenerKind::OtherAddress
    } else if !listening.is_empty() {
        ListenerKind::OtherNetns
    } else {
        ListenerKind::None
    };
    Some((kind, listening))
}

/// Whether the listeners that would take a connect to the destination, in the caller's
/// namespace, have full accept queues (the kernel drops a SYN once more connections wait than
/// the backlog: `sk_acceptq_is_full`); `None` without such a listener or its queue.
fn accept_queue_full(ev: &Event, ctx: &mut Ctx<'_>) -> Option<bool> {
    if ev.syscall != Syscall::Connect {
        return None;
    }
    let dest = inet(ev.args.addr.as_ref()?)?;
    let netns = ev.ns.map(|ns| ns.net).or_else(|| ctx.system.netns_of(ev.pid))?;
    let queues: Vec<(u32, u32)> = ctx
        .system
        .listeners_on_port(dest.port())?
        .into_iter()
        .filter(|s| s.netns == netns && s.state == Some(SockState::Listen) && covers(s.addr, dest))
        .filter_map(|s| s.accept_queue)
        .collect();
    if queues.is_empty() {
        return None;
    }
    Some(queues.iter().all(|(waiting, backlog)| waiting > backlog))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcards_and_mapped_addresses_cover() {
        assert!(covers(sa("0.0.0.0:80"), sa("127.0.0.1:80")));
        assert!(covers(sa("[::]:80"), sa("127.0.0.1:80")));
        assert!(!covers(sa("0.0.0.0:80"), sa("[::1]:80")));
        assert!(!covers(sa("[::1]:80"), sa("127.0.0.1:80")));
        assert!(covers(sa("[::ffff:127.0.0.1]:80"), sa("127.0.0.1:80")));
        assert!(!covers(sa("127.0.0.1:81"), sa("127.0.0.1:80")));
    }

    #[test]
    fn address_classes() {
        let inet = |ip: [u8; 4]| SockAddr::Known(KnownAddr::Inet { ip: ip.into(), port: 1 });
        assert_eq!(class(&inet([127, 0, 0, 1])), AddrClass::Loopback4);
        assert_eq!(class(&inet([127, 1, 2, 3])), AddrClass::Loopback4);
        assert_eq!(class(&inet([0, 0, 0, 0])), AddrClass::Any4);
        assert_eq!(class(&inet([10, 0, 0, 1])), AddrClass::Specific);
        let v6 = |ip: &str| {
            SockAddr::Known(KnownAddr::Inet6 {
                ip: ip.parse().unwrap(),
                port: 1,
                scope_id: 0,
                flowinfo: 0,
            })
        };
        assert_eq!(class(&v6("::1")), AddrClass::Loopback6);
        assert_eq!(class(&v6("::")), AddrClass::Any6);
    }
}
