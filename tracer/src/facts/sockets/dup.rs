//! The fallback for sockets no table lists (VSOCK, raw IP, SCTP, a TCP socket never bound, a
//! socket created in another network namespace): borrow the fd with `pidfd_getfd(2)` and ask
//! the socket itself (`SO_DOMAIN`, `SO_TYPE`, `SO_PROTOCOL`, `SO_ACCEPTCONN`, `TCP_INFO`,
//! getsockname, getpeername). The copy is closed at once; the socket is not touched otherwise.
//! This needs ptrace rights over the process (root, or its owner under Yama scope 0/1).

use std::{
    mem::{size_of, zeroed},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result};

use crate::{
    decode::{names, sockaddr, state::SockState},
    event::{SockAddr, SocketInfo},
};

/// What the socket behind `fd` of `pid` says about itself.
pub fn describe(pid: u32, fd: i32, inode: u64) -> Result<SocketInfo> {
    let sock = borrow(pid, fd)?;
    let int = |level, name| int_option(&sock, level, name);
    let family = int(libc::SOL_SOCKET, libc::SO_DOMAIN).context("SO_DOMAIN")?;
    let sock_type = int(libc::SOL_SOCKET, libc::SO_TYPE).ok();
    let protocol = int(libc::SOL_SOCKET, libc::SO_PROTOCOL).ok();
    let listening = int(libc::SOL_SOCKET, libc::SO_ACCEPTCONN).is_ok_and(|v| v != 0);
    let local = address(&sock, libc::getsockname);
    let peer = address(&sock, libc::getpeername);
    let family = i64::from(family);
    let is_tcp =
        matches!(family, names::AF_INET | names::AF_INET6) && protocol == Some(libc::IPPROTO_TCP);
    let state = match tcp_state(&sock) {
        Some(state) if is_tcp => SockState::tcp(state),
        _ if listening => SockState::Listen,
        _ if peer.is_some() => SockState::Connected,
        _ => SockState::Unconnected,
    };
    Ok(SocketInfo {
        flags: None,
        fd: Some(fd),
        family: names::name_or_number(names::FAMILIES, family),
        sock_type: sock_type.map(|t| names::name_or_number(names::SOCK_TYPES, t.into())),
        protocol: protocol
            .filter(|&p| p != 0)
            .map(|p| names::name_or_number(names::protocols_of(family), p.into())),
        state: Some(state),
        local,
        peer,
        inode: Some(inode),
        peer_inode: None,
    })
}

/// The local and remote ends of the socket behind `fd` of `pid` (getsockname, getpeername):
/// the few calls it takes to learn the port a connect was given, without dumping a table.
pub fn ends(pid: u32, fd: i32) -> Result<(Option<SockAddr>, Option<SockAddr>)> {
    let sock = borrow(pid, fd)?;
    Ok((address(&sock, libc::getsockname), address(&sock, libc::getpeername)))
}

/// A copy of `fd` from process `pid`.
fn borrow(pid: u32, fd: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let pidfd = nix::errno::Errno::result(pidfd)
        .with_context(|| format!("pidfd_open({pid}): the process has exited"))?;
    // SAFETY: a new fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: pidfd_getfd takes a pidfd, a target fd and flags; it returns a new fd or -1.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    let copy = nix::errno::Errno::result(copy).with_context(|| {
        format!("pidfd_getfd({pid}, {fd}): run wsltrace as root (it needs ptrace rights over the process)")
    })?;
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(copy as i32) })
}

fn int_option(sock: &OwnedFd, level: libc::c_int, name: libc::c_int) -> Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid pointers to a local int and its length.
    let ret = unsafe {
        libc::getsockopt(sock.as_raw_fd(), level, name, (&raw mut value).cast(), &mut len)
    };
    nix::errno::Errno::result(ret)?;
    Ok(value)
}

/// `tcpi_state`, the first byte of `struct tcp_info`, when the socket is TCP.
fn tcp_state(sock: &OwnedFd) -> Option<u8> {
    let mut info = [0_u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: valid pointers to a local buffer and its length; the kernel copies at most `len`.
    let ret = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (ret == 0 && len >= 1).then_some(info[0])
}

type NameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// getsockname or getpeername, decoded like a traced address; `None` when there is none.
fn address(sock: &OwnedFd, call: NameFn) -> Option<SockAddr> {
    // SAFETY: sockaddr_storage is plain data.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid pointers to the buffer and its length; the kernel writes at most `len`.
    let ret = unsafe { call(sock.as_raw_fd(), (&raw mut storage).cast(), &mut len) };
    if ret != 0 {
        return None;
    }
    // SAFETY: the storage is initialised plain data of this size.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&raw const storage).cast::<u8>(),
            size_of::<libc::sockaddr_storage>(),
        )
    };
    sockaddr::decode(&bytes[..(len as usize).min(bytes.len())])
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

    use super::*;
    use crate::event::KnownAddr;

    /// A TCP socket that was never bound is in no kernel table: only the socket knows itself.
    #[test]
    fn describes_a_socket_no_table_lists() {
        let sock = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet6,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let info = describe(std::process::id(), sock.as_raw_fd(), 42).unwrap();
        assert_eq!(info.family, "AF_INET6");
        assert_eq!(info.sock_type.as_deref(), Some("SOCK_STREAM"));
        assert_eq!(info.protocol.as_deref(), Some("IPPROTO_TCP"));
        assert_eq!(info.state, Some(SockState::Closed));
        assert!(matches!(info.local, Some(SockAddr::Known(KnownAddr::Inet6 { port: 0, .. }))));
        assert_eq!(info.peer, None);
        assert_eq!((info.fd, info.inode), (Some(sock.as_raw_fd()), Some(42)));
    }

    #[test]
    fn ends_of_a_connected_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (local, peer) = ends(std::process::id(), client.as_raw_fd()).unwrap();
        let inet = |a: std::net::SocketAddr| {
            Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: a.port() }))
        };
        assert_eq!(local, inet(client.local_addr().unwrap()));
        assert_eq!(peer, inet(listener.local_addr().unwrap()));
        assert!(ends(std::process::id(), 999_999).is_err());
    }

    #[test]
    fn unix_pair_is_connected() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let info = describe(std::process::id(), a.as_raw_fd(), 1).unwrap();
        assert_eq!(info.family, "AF_UNIX");
        assert_eq!(info.state, Some(SockState::Connected));
        assert_eq!(info.protocol, None);
        assert!(describe(std::process::id(), 999_999, 1).is_err());
    }
}
