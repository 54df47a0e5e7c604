//! lsof inside the tracer: what each socket fd of a process is.
//!
//! `/proc/PID/fd/N` names the socket's inode; the kernel's socket tables of the process's own
//! network namespace say what that inode is:
//! - TCP and UDP over IPv4/IPv6, unix: sock_diag, from a netlink socket opened inside that
//!   namespace (`netns`, `diag`);
//! - netlink and packet: `/proc/PID/net/{netlink,packet}`, which show PID's namespace;
//! - anything else (VSOCK, raw IP, a socket never bound, one made in another namespace): the
//!   socket itself, through a copy of the fd (`dup`).

mod diag;
mod dup;
mod fds;
pub mod netns;
mod proc_tables;
pub mod states;

use std::collections::HashMap;

use anyhow::Result;

use crate::{decode::names, event::SocketInfo, fresh::Fresh};
pub use netns::Netns;

/// Every socket fd `pid` holds, sorted by fd.
pub fn snapshot(pid: u32) -> Result<Vec<SocketInfo>> {
    let fds = fds::socket_fds(pid)?;
    if fds.is_empty() {
        return Ok(Vec::new());
    }
    let tables = Tables::read(&Netns::of_pid(pid)?, pid)?;
    Ok(fds.into_iter().map(|(fd, inode)| tables.describe(pid, fd, inode)).collect())
}

/// The fd table's look-up for fds it has not seen created (inherited, dup'ed, passed over a
/// unix socket): this module, in the process's own network namespace. The namespace's tables
/// are reused while [`Fresh`]: a reader that fell behind (events lost, so many fds it never
/// saw created) would otherwise dump every socket of the namespace once per event. A socket
/// newer than the tables read last is described through a copy of its fd instead.
#[derive(Default)]
pub struct SystemLookup {
    /// netns inode -> its tables.
    recent: Fresh<u64, Tables>,
}

impl SystemLookup {
    fn try_describe(&mut self, pid: u32, fd: i32) -> Result<Option<SocketInfo>> {
        let Some(inode) = fds::socket_inode(pid, fd)? else { return Ok(None) };
        let netns = Netns::of_pid(pid)?;
        let tables = self.recent.get(netns.inode, || Tables::read(&netns, pid))?;
        Ok(Some(tables.describe(pid, fd, inode)))
    }
}

impl crate::enrich::SocketLookup for SystemLookup {
    fn describe(&mut self, pid: u32, fd: i32) -> Option<SocketInfo> {
        self.try_describe(pid, fd).unwrap_or_else(|err| {
            tracing::debug!("cannot describe fd {fd} of pid {pid}: {err:#}");
            None
        })
    }
}

/// Every TCP and UDP socket of the caller's own network namespace (held by any process), e.g.
/// to see whether something listens on a nameserver's port.
pub fn inet_sockets_here() -> Result<Vec<SocketInfo>> {
    Ok(diag_tables()?
        .into_iter()
        .map(|(_, info)| info)
        .filter(|info| info.family != "AF_UNIX")
        .collect())
}

/// The sock_diag tables (TCP and UDP over IPv4 and IPv6, unix) of the calling thread's
/// network namespace, by inode.
fn diag_tables() -> Result<Vec<(u64, SocketInfo)>> {
    let mut diag = diag::Diag::open()?;
    let mut found = Vec::new();
    for family in [names::AF_INET as u8, names::AF_INET6 as u8] {
        for (protocol, ..) in diag::IP_PROTOCOLS {
            match diag.inet(family, protocol) {
                Ok(replies) => {
                    found.extend(replies.iter().filter_map(|r| diag::inet_info(r, protocol)));
                }
                Err(err) => {
                    tracing::debug!("sock_diag family {family} protocol {protocol}: {err:#}")
                }
            }
        }
    }
    match diag.unix() {
        Ok(replies) => found.extend(diag::unix_infos(&replies)),
        Err(err) => tracing::debug!("sock_diag unix: {err:#}"),
    }
    Ok(found)
}

/// The socket tables of one network namespace, by inode.
struct Tables {
    by_inode: HashMap<u64, SocketInfo>,
}

impl Tables {
    /// Reads the tables of `pid`'s network namespace. A table that cannot be read (a diag
    /// module missing from the kernel) is skipped: its sockets fall back to `dup`.
    fn read(netns: &Netns, pid: u32) -> Result<Tables> {
        let mut by_inode: HashMap<u64, SocketInfo> = netns.run(diag_tables)?.into_iter().collect();
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

    fn describe(&self, pid: u32, fd: i32, inode: u64) -> SocketInfo {
        if let Some(info) = self.by_inode.get(&inode) {
            return SocketInfo { fd: Some(fd), ..info.clone() };
        }
        dup::describe(pid, fd, inode).unwrap_or_else(|err| {
            tracing::debug!("socket fd {fd} of {pid} (inode {inode}) is in no table: {err:#}");
            SocketInfo {
                fd: Some(fd),
                family: "unknown".to_owned(),
                inode: Some(inode),
                ..SocketInfo::default()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

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
            (l.family.as_str(), l.sock_type.as_deref(), l.state.as_deref()),
            ("AF_INET", Some("SOCK_STREAM"), Some("LISTEN"))
        );
        assert_eq!((l.local.clone(), l.peer.clone()), (lo(port), None));
        let c = by_fd(client.as_raw_fd());
        let client_port = client.local_addr().unwrap().port();
        assert_eq!(c.state.as_deref(), Some("ESTABLISHED"));
        assert_eq!((c.local.clone(), c.peer.clone()), (lo(client_port), lo(port)));
        let a = by_fd(accepted.as_raw_fd());
        assert_eq!((a.local.clone(), a.peer.clone()), (lo(port), lo(client_port)));

        let named = Some(SockAddr::Known(KnownAddr::Unix(UnixAddr {
            path: Some(path.display().to_string()),
            abstract_name: None,
        })));
        let unnamed = Some(SockAddr::Known(KnownAddr::Unix(UnixAddr::default())));
        let ul = by_fd(unix_listener.as_raw_fd());
        assert_eq!((ul.state.as_deref(), &ul.local), (Some("LISTEN"), &named));
        let uc = by_fd(unix_client.as_raw_fd());
        let ua = by_fd(unix_accepted.as_raw_fd());
        assert_eq!(
            (uc.state.as_deref(), &uc.local, &uc.peer),
            (Some("CONNECTED"), &unnamed, &named)
        );
        assert_eq!((&ua.local, &ua.peer), (&named, &unnamed));
        assert_eq!((uc.peer_inode, ua.peer_inode), (ua.inode, uc.inode));

        use crate::enrich::SocketLookup as _;
        let mut lookup = SystemLookup::default();
        assert_eq!(lookup.describe(pid, unix_client.as_raw_fd()).as_ref(), Some(uc));
        // A socket made after the tables were read is described through its fd.
        let late = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let described = lookup.describe(pid, late.as_raw_fd()).unwrap();
        assert_eq!(
            (described.family.as_str(), described.local),
            ("AF_INET", lo(late.local_addr().unwrap().port()))
        );
        assert!(lookup.describe(pid, 10_000).is_none(), "not an open fd");
        assert!(snap.windows(2).all(|w| w[0].fd < w[1].fd));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
