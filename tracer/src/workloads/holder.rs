//! `holder`: one socket of each kind a snapshot must describe, held until told to let go.

use std::os::fd::AsRawFd as _;

use anyhow::Result;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrIn6, UnixAddr, bind, connect,
    listen, socket,
};

use super::{accept4_with_peer, tcp_listener, tcp_socket, wait_for_go};

/// Opens one socket of each kind a snapshot must describe, says "ready PID", and holds them
/// until a line arrives on stdin.
pub fn holder() -> Result<()> {
    let pid = std::process::id();
    // TCP: a listener on 127.0.0.1, a client connected to it and the accepted connection.
    let (listener, addr) = tcp_listener()?;
    let client = tcp_socket()?;
    connect(client.as_raw_fd(), &addr)?;
    let accepted = accept4_with_peer(&listener)?;
    // UDP on ::1, not connected.
    let udp6 = socket(AddressFamily::Inet6, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    bind(
        udp6.as_raw_fd(),
        &SockaddrIn6::from(std::net::SocketAddrV6::new(std::net::Ipv6Addr::LOCALHOST, 0, 0, 0)),
    )?;
    // Unix: a listener on a path, a client connected to it and the accepted end.
    let dir = std::env::temp_dir().join(format!("wsltrace-holder-{pid}"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("holder.sock");
    let _ = std::fs::remove_file(&path);
    let unix_addr = UnixAddr::new(&path)?;
    let unix_listener =
        socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(unix_listener.as_raw_fd(), &unix_addr)?;
    listen(&unix_listener, Backlog::new(8)?)?;
    let unix_client = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    connect(unix_client.as_raw_fd(), &unix_addr)?;
    let unix_accepted = accept4_with_peer(&unix_listener)?;
    // Unix: a datagram socket on an abstract name.
    let name = format!("wsltrace-holder-{pid}");
    let abstract_dgram =
        socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    bind(abstract_dgram.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes())?)?;
    // Netlink: a route socket with a kernel-assigned port id.
    let netlink = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(netlink.as_raw_fd(), &nix::sys::socket::NetlinkAddr::new(0, 0))?;
    // VSOCK, where the kernel has it: a listener on port 40000 + pid % 20000.
    let vsock = socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .ok()
        .filter(|v| {
            let port = 40_000 + pid % 20_000;
            let addr = nix::sys::socket::VsockAddr::new(libc::VMADDR_CID_ANY, port);
            bind(v.as_raw_fd(), &addr).is_ok() && listen(v, Backlog::MAXCONN).is_ok()
        });

    let waited = wait_for_go();
    drop((listener, client, accepted, udp6, vsock));
    drop((unix_listener, unix_client, unix_accepted, abstract_dgram, netlink));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    waited
}
