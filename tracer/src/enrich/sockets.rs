//! The fd table's look-up for fds it has not seen created (inherited, dup'ed, passed over a
//! unix socket): the socket tables of the process's own network namespace
//! ([`crate::facts::sockets`]).

use anyhow::Result;

use crate::{
    event::{SockAddr, SocketInfo},
    facts::{
        fresh::Fresh,
        sockets::{self, Netns, Tables, fds},
    },
};

/// The namespace's tables are reused while [`Fresh`]: a reader that fell behind (events lost,
/// so many fds it never saw created) would otherwise dump every socket of the namespace once
/// per event. A socket newer than the tables read last is described through a copy of its fd
/// instead.
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

impl super::SocketLookup for SystemLookup {
    fn describe(&mut self, pid: u32, fd: i32) -> Option<SocketInfo> {
        self.try_describe(pid, fd).unwrap_or_else(|err| {
            tracing::debug!("cannot describe fd {fd} of pid {pid}: {err:#}");
            None
        })
    }

    fn ends(&mut self, pid: u32, fd: i32) -> Option<(Option<SockAddr>, Option<SockAddr>)> {
        sockets::ends(pid, fd)
            .inspect_err(|err| tracing::debug!("ends of fd {fd} of pid {pid}: {err:#}"))
            .ok()
    }

    fn inode(&mut self, pid: u32, fd: i32) -> Option<u64> {
        fds::socket_inode(pid, fd).ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

    use super::*;
    use crate::{
        enrich::SocketLookup as _,
        event::{KnownAddr, SockAddr},
        facts::sockets::snapshot,
    };

    /// An fd is described as the snapshot describes it; one made after the tables were read
    /// is described through its fd; an fd that is not open is nothing.
    #[test]
    fn describes_fds_of_a_live_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let pid = std::process::id();
        let mut lookup = SystemLookup::default();
        let described = lookup.describe(pid, a.as_raw_fd());
        let snap = snapshot(pid).unwrap();
        assert_eq!(described.as_ref(), snap.iter().find(|s| s.fd == Some(a.as_raw_fd())));
        let late = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let described = lookup.describe(pid, late.as_raw_fd()).unwrap();
        let port = late.local_addr().unwrap().port();
        let lo = SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port });
        assert_eq!((described.family.as_ref(), described.local), ("AF_INET", Some(lo)));
        assert!(lookup.describe(pid, 10_000).is_none(), "not an open fd");
    }
}
