//! Rules compiled for evaluation: each `when` key becomes a matcher. Code implements matchers,
//! never individual anomalies.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
};

use tracer_common::Syscall;

use super::{
    env::Environment,
    rules::{
        AddrClass, ListenerKind, NetnsKind, Platform, RuleSpec, When, WslKind, parse_port_range,
    },
    system::{Owner, Proto, System, TableSocket},
};
use crate::{
    decode::{errno::Errno, names},
    enrich::FdTable,
    event::{Event, KnownAddr, RefusedBy, SockAddr},
};

/// One condition of a rule.
#[derive(Clone, Debug)]
enum Matcher {
    Syscall(HashSet<Syscall>),
    Errno(HashSet<u16>),
    Failed(bool),
    Level(Vec<String>),
    Optname(Vec<String>),
    Family(Vec<String>),
    SockType(Vec<String>),
    SockFlags(Vec<String>),
    Addr(Vec<SocketAddr>),
    AddrClass(HashSet<AddrClass>),
    Port(u16, u16),
    BelowUnprivilegedPort(bool),
    PathPrefix(Vec<String>),
    PathFstype(Vec<String>),
    DirWritable(bool),
    PreviousSyscall(HashSet<Syscall>),
    LacksCapability(Vec<u32>),
    Netns(NetnsKind),
    Listener(HashSet<ListenerKind>),
    Wsl(HashSet<WslKind>),
    NetworkingMode(Vec<String>),
    Nameserver(Vec<IpAddr>),
    RefusedBy(HashSet<RefusedBy>),
    PortHeld(bool),
}

/// A rule ready to evaluate.
#[derive(Clone, Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    matchers: Vec<Matcher>,
    /// The rule's exceptions: it does not fire when all of these hold.
    unless: Option<Vec<Matcher>>,
    /// Bit n set when the rule can fire on the syscall with id n (its `syscall` matcher allows
    /// it). Evaluating every rule's matchers on every event, each hashing the syscall into its
    /// set, was a fifth of the reader's time at high event rates.
    syscalls: u64,
}

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
        Ctx { env, system, traced, initial_net, previous, listeners: None }
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
                    state: t.sock.state.clone().unwrap_or_else(|| "BOUND".into()),
                    inode: t.sock.inode.unwrap_or(0),
                    owner: Some(Owner { pid: t.pid, comm: t.comm.to_owned(), fd: t.fd }),
                })
            })
            .collect();
        let system = self.system.sockets_on_port(port, proto);
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

impl Rule {
    pub fn compile(spec: RuleSpec) -> Rule {
        let matchers = compile_when(&spec.when);
        let unless = spec.unless.as_ref().map(compile_when);
        let syscalls = matchers.iter().fold(u64::MAX, |mask, m| match m {
            Matcher::Syscall(set) => mask & set.iter().fold(0, |bits, &s| bits | syscall_bit(s)),
            _ => mask,
        });
        Rule { spec, matchers, unless, syscalls }
    }

    pub fn applies_to(&self, env: &Environment) -> bool {
        self.spec.platforms.iter().any(|p| match p {
            Platform::Any => true,
            Platform::Linux => env.wsl == WslKind::None,
            Platform::Wsl1 => env.wsl == WslKind::Wsl1,
            Platform::Wsl2 => env.wsl == WslKind::Wsl2,
        })
    }

    /// Whether the rule can fire on `syscall` at all: false when its `syscall` matcher
    /// leaves it out.
    pub fn may_fire_on(&self, syscall: Syscall) -> bool {
        self.syscalls & syscall_bit(syscall) != 0
    }

    /// Every matcher holds (and not every exception). A fact that cannot be known (offline,
    /// process gone) does not hold.
    pub fn matches(&self, ev: &Event, ctx: &mut Ctx<'_>) -> bool {
        let all = |matchers: &[Matcher], ctx: &mut Ctx<'_>| {
            matchers.iter().all(|m| m.holds(ev, ctx) == Some(true))
        };
        all(&self.matchers, ctx) && !self.unless.as_deref().is_some_and(|unless| all(unless, ctx))
    }
}

/// A syscall's bit in [`Rule::syscalls`]; ids past 63 share every bit (never skipped).
fn syscall_bit(syscall: Syscall) -> u64 {
    1_u64.checked_shl(syscall as u32).unwrap_or(u64::MAX)
}

fn compile_when(w: &When) -> Vec<Matcher> {
    let mut m = Vec::new();
    let syscalls =
        |names: &[String]| names.iter().filter_map(|n| names::syscall_by_name(n)).collect();
    if let Some(v) = &w.syscall {
        m.push(Matcher::Syscall(syscalls(v)));
    }
    if let Some(v) = &w.errno {
        m.push(Matcher::Errno(
            v.iter().filter_map(|e| Errno::parse(e).ok()).map(|e| e.0).collect(),
        ));
    }
    if let Some(v) = w.failed {
        m.push(Matcher::Failed(v));
    }
    let list = |v: &Option<Vec<String>>| v.clone();
    if let Some(v) = list(&w.level) {
        m.push(Matcher::Level(v));
    }
    if let Some(v) = list(&w.optname) {
        m.push(Matcher::Optname(v));
    }
    if let Some(v) = list(&w.family) {
        m.push(Matcher::Family(v));
    }
    if let Some(v) = list(&w.sock_type) {
        m.push(Matcher::SockType(v));
    }
    if let Some(v) = list(&w.sock_flags) {
        m.push(Matcher::SockFlags(v));
    }
    if let Some(v) = &w.addr {
        m.push(Matcher::Addr(v.iter().filter_map(|a| a.parse().ok()).collect()));
    }
    if let Some(v) = &w.addr_class {
        m.push(Matcher::AddrClass(v.iter().copied().collect()));
    }
    if let Some((lo, hi)) = w.port.as_deref().and_then(parse_port_range) {
        m.push(Matcher::Port(lo, hi));
    }
    if let Some(v) = w.below_unprivileged_port {
        m.push(Matcher::BelowUnprivilegedPort(v));
    }
    if let Some(v) = list(&w.path_prefix) {
        m.push(Matcher::PathPrefix(v));
    }
    if let Some(v) = list(&w.path_fstype) {
        m.push(Matcher::PathFstype(v));
    }
    if let Some(v) = w.dir_writable {
        m.push(Matcher::DirWritable(v));
    }
    if let Some(v) = &w.previous_syscall {
        m.push(Matcher::PreviousSyscall(syscalls(v)));
    }
    if let Some(v) = &w.lacks_capability {
        let bits =
            v.iter().filter_map(|c| names::lookup_value(names::CAPABILITIES, c)).map(|b| b as u32);
        m.push(Matcher::LacksCapability(bits.collect()));
    }
    if let Some(v) = w.netns {
        m.push(Matcher::Netns(v));
    }
    if let Some(v) = &w.listener {
        m.push(Matcher::Listener(v.iter().copied().collect()));
    }
    if let Some(v) = &w.wsl {
        m.push(Matcher::Wsl(v.iter().copied().collect()));
    }
    if let Some(v) = list(&w.networking_mode) {
        m.push(Matcher::NetworkingMode(v));
    }
    if let Some(v) = &w.nameserver {
        m.push(Matcher::Nameserver(v.iter().filter_map(|a| a.parse().ok()).collect()));
    }
    if let Some(v) = &w.refused_by {
        m.push(Matcher::RefusedBy(v.iter().copied().collect()));
    }
    if let Some(v) = w.port_held {
        m.push(Matcher::PortHeld(v));
    }
    // Cheap matchers first: most events are rejected by the syscall or errno test; the
    // ones that read /proc or socket tables run last, on the few events that got there.
    m.sort_by_key(Matcher::cost);
    m
}

impl Matcher {
    fn cost(&self) -> u8 {
        match self {
            Matcher::Syscall(_) | Matcher::Errno(_) | Matcher::Failed(_) => 0,
            Matcher::PathFstype(_)
            | Matcher::DirWritable(_)
            | Matcher::LacksCapability(_)
            | Matcher::Listener(_)
            | Matcher::PortHeld(_) => 2,
            _ => 1,
        }
    }

    fn holds(&self, ev: &Event, ctx: &mut Ctx<'_>) -> Option<bool> {
        let any =
            |names: &[String], value: Option<&str>| value.map(|v| names.iter().any(|n| n == v));
        Some(match self {
            Matcher::Syscall(set) => set.contains(&ev.syscall),
            Matcher::Errno(set) => ev.errno.is_some_and(|e| set.contains(&e.0)),
            Matcher::Failed(failed) => ev.failed() == *failed,
            Matcher::Level(names) => any(names, ev.args.level.as_deref())?,
            Matcher::Optname(names) => any(names, ev.args.optname.as_deref())?,
            Matcher::Family(names) => any(names, family(ev))?,
            Matcher::SockType(names) => {
                let ty = ev
                    .sock
                    .as_ref()
                    .and_then(|s| s.sock_type.as_deref())
                    .or(ev.args.sock_type.as_deref());
                any(names, ty)?
            }
            Matcher::SockFlags(names) => {
                let flags = ev
                    .sock
                    .as_ref()
                    .and_then(|s| s.flags.as_deref())
                    .or(ev.args.flags.as_deref())?;
                names.iter().any(|n| flags.split('|').any(|f| f == n))
            }
            Matcher::Addr(addrs) => addrs.contains(&inet(target(ev)?)?),
            Matcher::AddrClass(classes) => classes.contains(&class(target(ev)?)),
            Matcher::Port(lo, hi) => (*lo..=*hi).contains(&inet(target(ev)?)?.port()),
            Matcher::BelowUnprivilegedPort(below) => {
                let port = inet(target(ev)?)?.port();
                (port != 0 && port < ctx.env.unprivileged_port_start) == *below
            }
            Matcher::PathPrefix(prefixes) => {
                let path = unix_path(target(ev)?)?;
                prefixes.iter().any(|p| path.starts_with(p.as_str()))
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
            Matcher::LacksCapability(bits) => {
                // As the kernel saw them at the call; /proc only if it could not.
                let caps = ev.cap_effective.or_else(|| ctx.system.capabilities(ev.pid))?;
                bits.iter().any(|bit| caps & (1 << bit) == 0)
            }
            Matcher::Netns(kind) => {
                let private = ev.ns?.net != ctx.initial_net?;
                private == (*kind == NetnsKind::Private)
            }
            Matcher::Listener(kinds) => kinds.contains(&ctx.listeners(ev)?.0),
            Matcher::Wsl(kinds) => kinds.contains(&ctx.env.wsl),
            Matcher::NetworkingMode(modes) => any(modes, ctx.env.networking_mode.as_deref())?,
            Matcher::Nameserver(ips) => ctx.env.nameservers.iter().any(|ns| ips.contains(ns)),
            Matcher::RefusedBy(set) => ev.refused_by.is_some_and(|by| set.contains(&by)),
            Matcher::PortHeld(held) => port_holders(ev, ctx)?.is_empty() != *held,
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
        Some(SockAddr::Other { family, .. }) => Some(family.as_str()),
        None => ev.sock.as_ref().map(|s| s.family.as_str()).or(ev.args.domain.as_deref()),
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
    holders.sort_by_key(|s| s.state != "LISTEN");
    Some(holders)
}

fn classify_listeners(ctx: &mut Ctx<'_>, ev: &Event) -> Option<(ListenerKind, Vec<TableSocket>)> {
    if ev.syscall != Syscall::Connect {
        return None;
    }
    let dest = inet(ev.args.addr.as_ref()?)?;
    let netns = ev.ns.map(|ns| ns.net).or_else(|| ctx.system.netns_of(ev.pid))?;
    let listening: Vec<TableSocket> = ctx
        .sockets_on_port(dest.port(), Proto::Tcp)?
        .into_iter()
        .filter(|s| s.state == "LISTEN")
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rules_say_which_syscalls_they_can_fire_on() {
        use super::super::rules::{BUILTIN, BUILTIN_NAME, parse};
        let rules: Vec<Rule> =
            parse(BUILTIN_NAME, BUILTIN).unwrap().into_iter().map(Rule::compile).collect();
        let refused = rules.iter().find(|r| r.spec.id == "CONNECT-REFUSED").unwrap();
        assert!(refused.may_fire_on(Syscall::Connect));
        assert!(!refused.may_fire_on(Syscall::Bind));
        assert!(!refused.may_fire_on(Syscall::Close));
        let anywhere = Rule::compile(RuleSpec { when: When::default(), ..refused.spec.clone() });
        assert!(Syscall::ALL.iter().all(|&s| anywhere.may_fire_on(s)));
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
