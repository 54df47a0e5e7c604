//! The workloads that make every traced call, succeeding and failing (`all` and its parts),
//! and small servers and clients with nothing unusual about them.

use std::{
    mem::{size_of, zeroed},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, UnixAddr,
    bind, connect, getsockname, listen, setsockopt, socket, socketpair, sockopt,
};

use super::{accept4_with_peer, loopback, tcp_listener, tcp_socket};

/// The same thread before and after changing namespace and credentials: what its events
/// carry must follow.
pub fn identity_changes() -> Result<()> {
    use nix::{
        sched::{CloneFlags, unshare},
        unistd::{Uid, setresuid},
    };
    drop(tcp_socket()?);
    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET) (run as root)")?;
    drop(tcp_socket()?);
    let nobody = Uid::from_raw(65534);
    setresuid(nobody, nobody, nobody).context("setresuid(nobody) (run as root)")?;
    let sock = tcp_socket()?;
    let any_80 = SockaddrIn::new(0, 0, 0, 0, 80);
    match bind(sock.as_raw_fd(), &any_80) {
        Err(nix::errno::Errno::EACCES) => Ok(()),
        other => anyhow::bail!("bind to port 80 as nobody: expected EACCES, got {other:?}"),
    }
}

/// The life of a TCP connection over loopback, and a second bind to a taken address.
pub fn tcp() -> Result<()> {
    let (listener, addr) = tcp_listener()?;
    let client = tcp_socket()?;
    connect(client.as_raw_fd(), &addr)?;
    let conn = accept4_with_peer(&listener)?;
    let _: SockaddrIn = nix::sys::socket::getpeername(conn.as_raw_fd())?;
    let _ = nix::sys::socket::getsockopt(&client, sockopt::SocketError)?;
    let _ = nix::sys::socket::getsockopt(&conn, sockopt::RcvBuf)?;
    setsockopt(&client, sockopt::TcpNoDelay, &true)?;
    nix::sys::socket::shutdown(client.as_raw_fd(), nix::sys::socket::Shutdown::Write)?;
    // EADDRINUSE: the listener still holds the address.
    let second = tcp_socket()?;
    let _ = bind(second.as_raw_fd(), &addr);
    drop((second, conn, client, listener));
    Ok(())
}

/// ECONNREFUSED: connect to a port that was just freed.
pub fn refused() -> Result<()> {
    let port = {
        let probe = tcp_socket()?;
        bind(probe.as_raw_fd(), &loopback(0))?;
        getsockname::<SockaddrIn>(probe.as_raw_fd())?.port()
    };
    let client = tcp_socket()?;
    let _ = connect(client.as_raw_fd(), &loopback(port));
    Ok(())
}

/// A unix socket server on a path: accept, SO_PEERCRED; then ENOENT for a missing path.
pub fn unix_path() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wsltrace-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("app.sock");
    let _ = std::fs::remove_file(&path);
    let addr = UnixAddr::new(&path)?;
    let server = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(server.as_raw_fd(), &addr)?;
    listen(&server, Backlog::new(8)?)?;
    let client = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    connect(client.as_raw_fd(), &addr)?;
    // Plain accept(2), with the peer address (unnamed for a client that did not bind).
    // SAFETY: plain-data buffer and its length.
    let mut peer: libc::sockaddr_un = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: valid pointers to the buffer and its length.
    let fd = unsafe { libc::accept(server.as_raw_fd(), (&raw mut peer).cast(), &mut len) };
    // SAFETY: a new fd owned by nobody else.
    let conn = nix::errno::Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })?;
    let _ = nix::sys::socket::getsockopt(&conn, sockopt::PeerCredentials)?;
    drop((conn, client, server));
    std::fs::remove_file(&path)?;
    let missing = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let _ = connect(missing.as_raw_fd(), &UnixAddr::new(&dir.join("missing.sock"))?);
    drop(missing);
    std::fs::remove_dir(&dir)?;
    Ok(())
}

/// An abstract unix name, and a socketpair whose peer credentials are read.
pub fn unix_abstract_and_pair() -> Result<()> {
    let name = format!("wsltrace-demo-{}", std::process::id());
    let sock = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(sock.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes())?)?;
    let _: UnixAddr = getsockname(sock.as_raw_fd())?;
    drop(sock);
    let (a, b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;
    let _ = nix::sys::socket::getsockopt(&a, sockopt::PeerCredentials)?;
    drop((a, b));
    Ok(())
}

/// UDP on 127.0.0.1 and TCP on [::1] (which fails cleanly where IPv6 is off).
pub fn udp_and_v6() -> Result<()> {
    let udp = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    bind(udp.as_raw_fd(), &loopback(0))?;
    // listen(2) on a datagram socket: EOPNOTSUPP.
    let _ = listen(&udp, Backlog::new(1)?);
    drop(udp);
    let v6 = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let _ = bind(
        v6.as_raw_fd(),
        &SockaddrIn6::from(std::net::SocketAddrV6::new(std::net::Ipv6Addr::LOCALHOST, 0, 0, 0)),
    );
    let _ = getsockname::<SockaddrIn6>(v6.as_raw_fd());
    drop(v6);
    Ok(())
}

/// A netlink route socket, and a vsock socket (EAFNOSUPPORT outside VMs without vsock).
pub fn netlink_and_vsock() -> Result<()> {
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(nl.as_raw_fd(), &nix::sys::socket::NetlinkAddr::new(0, 0))?;
    let _: nix::sys::socket::NetlinkAddr = getsockname(nl.as_raw_fd())?;
    drop(nl);
    if let Ok(vsock) = socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
    {
        let any = nix::sys::socket::VsockAddr::new(libc::VMADDR_CID_ANY, libc::VMADDR_PORT_ANY);
        let _ = bind(vsock.as_raw_fd(), &any);
        drop(vsock);
    }
    Ok(())
}

/// EINVAL, ENOPROTOOPT, ENOTCONN: arguments the kernel refuses.
pub fn invalid_arguments() -> Result<()> {
    let sock = tcp_socket()?;
    let fd = sock.as_raw_fd();
    // SAFETY: raw calls with deliberately invalid arguments; no memory is passed, or a valid
    // local buffer is.
    unsafe {
        libc::shutdown(fd, 99); // EINVAL: no such `how`
        libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()); // EINVAL: not listening
        let small: u16 = 1;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&raw const small).cast(), 2); // EINVAL
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        libc::getsockopt(fd, libc::SOL_TCP, 9999, (&raw mut value).cast(), &mut len); // ENOPROTOOPT
        let mut addr: libc::sockaddr_in = zeroed();
        let mut alen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        libc::getpeername(fd, (&raw mut addr).cast(), &mut alen); // ENOTCONN
    }
    drop(sock);
    Ok(())
}

/// Listens on 127.0.0.1, says where, and blocks in accept() for one client.
pub fn server() -> Result<()> {
    let (listener, addr) = tcp_listener()?;
    eprintln!("listening {} {}", std::process::id(), addr.port());
    let conn = std::net::TcpStream::from(accept4_with_peer(&listener)?);
    // Held until the client hangs up: a tracer that attached during the accept can still
    // look up what the accepted fd is.
    let _ = std::io::Read::read(&mut &conn, &mut [0; 1]);
    Ok(())
}

/// An echo server on 0.0.0.0 and a client on 127.0.0.1 that sends one line: nothing to flag.
pub fn echo() -> Result<()> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("0.0.0.0:0")?;
    let port = listener.local_addr()?.port();
    let client = std::thread::spawn(move || -> Result<()> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.write_all(b"hello\n")?;
        let mut back = [0_u8; 6];
        stream.read_exact(&mut back)?;
        anyhow::ensure!(&back == b"hello\n", "echo came back as {back:?}");
        Ok(())
    });
    let (mut conn, _) = listener.accept()?;
    let mut buf = [0_u8; 6];
    conn.read_exact(&mut buf)?;
    conn.write_all(&buf)?;
    client.join().map_err(|_| anyhow::anyhow!("client panicked"))?
}
