//! The socket tables of a network namespace: one reader for lsof inside the tracer (what each
//! socket fd of a process is) and for the knowledge base (who holds a port, who listens on a
//! unix path).
//!
//! `/proc/PID/fd/N` names a socket's inode; the kernel's socket tables of the namespace say what
//! that inode is:
//! - TCP and UDP over IPv4/IPv6, unix: sock_diag, from a netlink socket opened inside that
//!   namespace (`netns`, `diag`);
//! - netlink and packet: `/proc/PID/net/{netlink,packet}`, which show PID's namespace;
//! - anything else (VSOCK, raw IP, a socket never bound, one made in another namespace): the
//!   socket itself, through a copy of the fd (`dup`).

mod diag;
mod dup;
pub mod fds;
pub mod netns;
mod proc_tables;

use std::{
    collections::{HashMap, hash_map::Entry},
    net::SocketAddr,
};

use anyhow::Result;

pub use dup::ends;
pub use netns::Netns;

use crate::{
    decode::{names, state::SockState},
    event::SocketInfo,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A TCP or UDP socket of a table, for look-ups by port. TIME_WAIT sockets are here too
/// (with inode 0: no process holds them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InetSocket {
    pub proto: Proto,
    pub local: SocketAddr,
    pub state: SockState,
    pub inode: u64,
    /// sock_diag's (idiag_rqueue, idiag_wqueue); for a LISTEN socket: the connections waiting
    /// in its accept queue, and its backlog.
    pub queues: (u32, u32),
}

/// Every socket fd `pid` holds, sorted by fd.
pub fn snapshot(pid: u32) -> Result<Vec<SocketInfo>> {
    snapshot_with(pid, &mut HashMap::new())
}

/// [`snapshot`], with the tables of each network namespace (by inode) read once for all the
/// processes of a trace: a server's master and workers share theirs.
pub fn snapshot_with(pid: u32, tables: &mut HashMap<u64, Tables>) -> Result<Vec<SocketInfo>> {
    let fds = fds::socket_fds(pid)?;
    if fds.is_empty() {
        return Ok(Vec::new());
    }
    let netns = Netns::of_pid(pid)?;
    let tables = match tables.entry(netns.inode) {
        Entry::Occupied(held) => held.into_mut(),
        Entry::Vacant(slot) => slot.insert(Tables::read(&netns, pid)?),
    };
    Ok(fds.into_iter().map(|(fd, inode)| tables.describe(pid, fd, inode)).collect())
}

/// Every TCP and UDP socket on `port` in the caller's own network namespace (held by any
/// process), e.g. to see whether something serves a nameserver's port.
pub fn inet_sockets_here(port: u16) -> Result<Vec<SocketInfo>> {
    let mut diag = diag::Diag::open()?;
    let sockets = inet_tables(&mut diag, diag::Select::Port(port));
    // Port 0 selects nothing in the kernel: the whole table comes back.
    Ok(sockets.into_iter().filter(|(s, _)| s.local.port() == port).map(|(_, info)| info).collect())
}

/// The TCP or UDP sockets bound to `port` in the calling thread's network namespace, in every
/// state, or only the TCP listeners when `listening`. The kernel is asked for that port and
/// those states rather than for a dump of the whole table, which on a machine that makes many
/// connections holds tens of thousands of TIME_WAIT sockets.
pub fn inet_on_port(port: u16, proto: Proto, listening: bool) -> Result<Vec<InetSocket>> {
    let Some(&(protocol, ..)) = diag::IP_PROTOCOLS.iter().find(|(_, p, ..)| *p == proto) else {
        return Ok(Vec::new());
    };
    let select = if listening { diag::Select::Listening(port) } else { diag::Select::Port(port) };
    let mut diag = diag::Diag::open()?;
    let mut found = Vec::new();
    for family in [names::AF_INET as u8, names::AF_INET6 as u8] {
        match diag.inet(family, protocol, select) {
            Ok(replies) => found.extend(
                replies
                    .iter()
                    .filter_map(|r| diag::inet_socket(r, protocol))
                    // Port 0 selects nothing in the kernel: the whole table comes back.
                    .filter(|s| s.local.port() == port)
                    .filter(|s| !listening || s.state == SockState::Listen),
            ),
            Err(err) => tracing::debug!("sock_diag family {family} protocol {protocol}: {err:#}"),
        }
    }
    Ok(found)
}

/// The sock_diag tables of the calling thread's network namespace: TCP and UDP over IPv4 and
/// IPv6, then unix, by inode.
type DiagTables = (Vec<(InetSocket, SocketInfo)>, Vec<(u64, SocketInfo)>);

fn diag_tables() -> Result<DiagTables> {
    let mut diag = diag::Diag::open()?;
    let inet = inet_tables(&mut diag, diag::Select::Held);
    let unix = diag.unix().map(|replies| diag::unix_infos(&replies)).unwrap_or_else(|err| {
        tracing::debug!("sock_diag unix: {err:#}");
        Vec::new()
    });
    Ok((inet, unix))
}

/// The TCP and UDP sockets over IPv4 and IPv6 that `select` names; a table the kernel cannot
/// give (a diag module missing) is left out.
fn inet_tables(diag: &mut diag::Diag, select: diag::Select) -> Vec<(InetSocket, SocketInfo)> {
    let mut inet = Vec::new();
    for family in [names::AF_INET as u8, names::AF_INET6 as u8] {
        for (protocol, ..) in diag::IP_PROTOCOLS {
            match diag.inet(family, protocol, select) {
                Ok(replies) => {
                    inet.extend(replies.iter().filter_map(|r| diag::inet_info(r, protocol)));
                }
                Err(err) => {
                    tracing::debug!("sock_diag family {family} protocol {protocol}: {err:#}")
                }
            }
        }
    }
    inet
}

/// The socket tables of one network namespace.
pub struct Tables {
    by_inode: HashMap<u64, SocketInfo>,
}

impl Tables {
    /// Reads the tables of a network namespace; `pid` is a process in it. A table that cannot
    /// be read (a diag module missing from the kernel) is skipped: its sockets fall back to
    /// `dup`.
    pub fn read(netns: &Netns, pid: u32) -> Result<Tables> {
        let (inet, unix) = netns.run(diag_tables)?;
        let mut by_inode: HashMap<u64, SocketInfo> = unix.into_iter().collect();
        // TIME_WAIT sockets have no inode: no fd names them.
        by_inode.extend(inet.into_iter().filter(|(s, _)| s.inode != 0).map(|(s, i)| (s.inode, i)));
        for (table, parse) in [
            ("netlink", proc_tables::parse_netlink as fn(&str) -> Vec<(u64, SocketInfo)>),
            ("packet", proc_tables::parse_packet),
        ] {
            let path = format!("/proc/{pid}/net/{table}");
            match std::fs::read_to_string(&path) {
                Ok(text) => by_inode.extend(parse(&text)),
                Err(err) => tracing::debug!("{path}: {err}"),
            }
        }
        Ok(Tables { by_inode })
    }

    /// What socket `inode`, held by `fd` of `pid`, is: from the tables, else from the socket.
    pub fn describe(&self, pid: u32, fd: i32, inode: u64) -> SocketInfo {
        if let Some(info) = self.by_inode.get(&inode) {
            return SocketInfo { fd: Some(fd), ..info.clone() };
        }
        dup::describe(pid, fd, inode).unwrap_or_else(|err| {
            tracing::debug!("socket fd {fd} of {pid} (inode {inode}) is in no table: {err:#}");
            SocketInfo {
                fd: Some(fd),
                family: "unknown".into(),
                inode: Some(inode),
                ..SocketInfo::default()
            }
        })
    }
}

/// The unix sockets listening on a path in the calling thread's network namespace: (path,
/// inode). Only the listeners are asked for, not every unix socket and the TCP and UDP tables.
/// Without unix_diag in the kernel, none (as [`Tables::read`] has none then).
pub fn unix_listeners_here() -> Result<Vec<(String, u64)>> {
    use crate::event::{KnownAddr, SockAddr};
    let replies = diag::Diag::open()?.unix_listeners().unwrap_or_else(|err| {
        tracing::debug!("sock_diag unix: {err:#}");
        Vec::new()
    });
    Ok(diag::unix_infos(&replies)
        .into_iter()
        .filter(|(_, s)| s.state == Some(SockState::Listen))
        .filter_map(|(inode, s)| match s.local {
            Some(SockAddr::Known(KnownAddr::Unix(u))) => Some((u.path?, inode)),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::fd::AsRawFd as _;

    /// A connection closed by the accepting side: the TIME_WAIT socket it leaves on the
    /// listener's port (whose address this returns).
    pub(crate) fn time_wait_socket() -> std::net::SocketAddr {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        drop((accepted, listener));
        assert_eq!(client.read(&mut [0; 1]).unwrap(), 0);
        addr
    }

    use super::*;
    use crate::event::{KnownAddr, SockAddr, UnixAddr};

    /// Sockets this test process holds, as the kernel's tables describe them.
    #[test]
    fn snapshot_of_own_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let dir = std::env::temp_dir().join(format!("wsltrace-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let unix_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let unix_client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (unix_accepted, _) = unix_listener.accept().unwrap();

        let pid = std::process::id();
        let snap = snapshot(pid).unwrap();
        let by_fd = |fd: i32| {
            snap.iter().find(|s| s.fd == Some(fd)).unwrap_or_else(|| panic!("fd {fd}: {snap:#?}"))
        };
        let lo = |port| Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port }));

        let l = by_fd(listener.as_raw_fd());
        assert_eq!(
            (l.family.as_ref(), l.sock_type.as_deref(), l.state),
            ("AF_INET", Some("SOCK_STREAM"), Some(SockState::Listen))
        );
        assert_eq!((l.local.clone(), l.peer.clone()), (lo(port), None));
        let c = by_fd(client.as_raw_fd());
        let client_port = client.local_addr().unwrap().port();
        assert_eq!(c.state, Some(SockState::Established));
        assert_eq!((c.local.clone(), c.peer.clone()), (lo(client_port), lo(port)));
        let a = by_fd(accepted.as_raw_fd());
        assert_eq!((a.local.clone(), a.peer.clone()), (lo(port), lo(client_port)));

        let named = Some(SockAddr::Known(KnownAddr::Unix(UnixAddr {
            path: Some(path.display().to_string()),
            abstract_name: None,
        })));
        let unnamed = Some(SockAddr::Known(KnownAddr::Unix(UnixAddr::default())));
        let ul = by_fd(unix_listener.as_raw_fd());
        assert_eq!((ul.state, &ul.local), (Some(SockState::Listen), &named));
        let uc = by_fd(unix_client.as_raw_fd());
        let ua = by_fd(unix_accepted.as_raw_fd());
        assert_eq!((uc.state, &uc.local, &uc.peer), (Some(SockState::Connected), &unnamed, &named));
        assert_eq!((&ua.local, &ua.peer), (&named, &unnamed));
        assert_eq!((uc.peer_inode, ua.peer_inode), (ua.inode, uc.inode));

        assert!(snap.windows(2).all(|w| w[0].fd < w[1].fd));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Unix listeners by path: the listener alone, not the accepted connection that bears
    /// its name too.
    #[test]
    fn unix_listeners_by_path() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = std::env::temp_dir().join(format!("wsltrace-ulisten-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let inode = |fd: &dyn std::os::fd::AsRawFd| {
            std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap().ino()
        };
        let path = path.to_str().unwrap();
        let found: Vec<u64> = unix_listeners_here()
            .unwrap()
            .into_iter()
            .filter_map(|(p, inode)| (p == path).then_some(inode))
            .collect();
        assert_eq!(found, [inode(&listener)]);
        assert_ne!(inode(&accepted), inode(&listener));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A TIME_WAIT socket is on its port without inode, with its kernel name.
    #[test]
    fn time_wait_sockets_are_on_their_port() {
        let addr = time_wait_socket();
        let expected = InetSocket {
            proto: Proto::Tcp,
            local: addr,
            state: SockState::TimeWait,
            inode: 0,
            queues: (0, 0),
        };
        assert_eq!(inet_on_port(addr.port(), Proto::Tcp, false).unwrap(), [expected]);
        assert_eq!(inet_on_port(addr.port(), Proto::Tcp, true).unwrap(), []);
        assert_eq!(inet_on_port(addr.port(), Proto::Udp, false).unwrap(), []);
    }

    /// The kernel does the selecting (the replies, before any filter of ours, are the sockets
    /// asked for), and the answers are those of the table fds are described from (every
    /// state but TIME_WAIT), picked by port.
    #[test]
    fn the_kernel_selects_by_port_and_state() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let laddr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(laddr).unwrap();
        let (_accepted, _) = listener.accept().unwrap();
        let caddr = client.local_addr().unwrap();
        let taddr = time_wait_socket();

        let tcp = libc::IPPROTO_TCP as u8;
        let mut diag = diag::Diag::open().unwrap();
        let mut raw = |select| -> Vec<(std::net::SocketAddr, SockState)> {
            let replies = diag.inet(names::AF_INET as u8, tcp, select).unwrap();
            let mut found: Vec<_> = replies
                .iter()
                .filter_map(|r| diag::inet_socket(r, tcp))
                .map(|s| (s.local, s.state))
                .collect();
            found.sort_by_key(|&(local, state)| (local, state == SockState::Listen));
            found
        };
        use diag::Select::{Listening, Port};
        assert_eq!(raw(Listening(laddr.port())), [(laddr, SockState::Listen)]);
        assert_eq!(
            raw(Port(laddr.port())),
            [(laddr, SockState::Established), (laddr, SockState::Listen)]
        );
        assert_eq!(raw(Port(caddr.port())), [(caddr, SockState::Established)]);
        assert_eq!(raw(Port(taddr.port())), [(taddr, SockState::TimeWait)]);
        assert_eq!(raw(Listening(taddr.port())), []);
        assert_eq!(raw(Listening(caddr.port())), []);

        // The tables fds are described from leave TIME_WAIT out: no fd holds one.
        let (whole, _) = diag_tables().unwrap();
        assert!(!whole.iter().any(|(s, _)| s.state == SockState::TimeWait));
        for port in [laddr.port(), caddr.port(), taddr.port()] {
            for proto in [Proto::Tcp, Proto::Udp] {
                let picked: Vec<&InetSocket> = whole
                    .iter()
                    .map(|(s, _)| s)
                    .filter(|s| s.proto == proto && s.local.port() == port)
                    .collect();
                let asked = inet_on_port(port, proto, false).unwrap();
                let held: Vec<&InetSocket> =
                    asked.iter().filter(|s| s.state != SockState::TimeWait).collect();
                assert_eq!(picked, held, "port {port} {proto:?}");
                let listening = inet_on_port(port, proto, true).unwrap();
                let picked: Vec<&InetSocket> = picked
                    .into_iter()
                    .filter(|s| proto == Proto::Tcp && s.state == SockState::Listen)
                    .collect();
                assert_eq!(picked, listening.iter().collect::<Vec<_>>(), "port {port} {proto:?}");
            }
        }
    }
}
