use super::*;
use crate::event::Args;

fn ev(syscall: Syscall, args: Args, ret: i64) -> Event {
    Event { pid: 10, tid: 10, ..Event::for_test(syscall, args, ret) }
}

fn lo(port: u16) -> Option<SockAddr> {
    Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port }))
}

fn tcp_socket() -> Args {
    Args {
        domain: Some("AF_INET".into()),
        sock_type: Some("SOCK_STREAM".into()),
        protocol: Some("IPPROTO_TCP".into()),
        ..Args::default()
    }
}

/// socket, bind, listen, accept, close: each event says what its fd is.
#[test]
fn follows_a_server() {
    let mut table = FdTable::new(Box::new(NoLookup));
    let mut e = ev(Syscall::Socket, tcp_socket(), 3);
    table.apply(&mut e);
    assert_eq!(e.sock.as_ref().unwrap().fd, Some(3));

    let mut e = ev(Syscall::Bind, Args { fd: Some(3), addr: lo(8080), ..Args::default() }, 0);
    table.apply(&mut e);
    assert_eq!(e.sock.as_ref().unwrap().local, lo(8080));

    let mut e = ev(Syscall::Listen, Args { fd: Some(3), ..Args::default() }, 0);
    table.apply(&mut e);
    assert_eq!(e.sock.as_ref().unwrap().state, Some(SockState::Listen));

    let mut e = ev(Syscall::Accept4, Args { fd: Some(3), addr: lo(5555), ..Args::default() }, 4);
    table.apply(&mut e);
    let accepted = e.sock.unwrap();
    assert_eq!((accepted.fd, &accepted.local, &accepted.peer), (Some(4), &lo(8080), &lo(5555)));
    assert_eq!(accepted.family, "AF_INET");

    let mut e = ev(Syscall::Close, Args { fd: Some(4), ..Args::default() }, 0);
    table.apply(&mut e);
    assert_eq!(e.sock.unwrap().peer, lo(5555));
    assert!(table.get(10, 4).is_none());
    assert!(table.get(10, 3).is_some());
}

fn so_error(fd: i32, value: OptValue) -> Event {
    let args = Args {
        fd: Some(fd),
        level: Some("SOL_SOCKET".into()),
        optname: Some("SO_ERROR".into()),
        optlen: Some(4),
        value: Some(value),
        ..Args::default()
    };
    ev(Syscall::Getsockopt, args, 0)
}

fn connect(fd: i32, port: u16, ret: i64) -> Event {
    ev(Syscall::Connect, Args { fd: Some(fd), addr: lo(port), ..Args::default() }, ret)
}

/// connect = EINPROGRESS, then SO_ERROR reads ECONNREFUSED: that call carries the connect.
#[test]
fn async_connect_refused() {
    let mut table = FdTable::new(Box::new(NoLookup));
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
    let mut started = connect(3, 9, -115);
    started.ts_ns = 77;
    table.apply(&mut started);
    assert_eq!(started.sock.as_ref().unwrap().state, Some(SockState::SynSent));
    assert_eq!((started.async_error, started.connect), (None, None));

    let mut refused = so_error(3, OptValue::Name("ECONNREFUSED".into()));
    table.apply(&mut refused);
    assert_eq!(refused.async_error, Some(Errno(111)));
    assert_eq!(refused.connect, Some(PendingConnect { addr: lo(9).unwrap(), started_ns: 77 }));
    // The event shows where the socket was going; the table, that it is connected nowhere.
    assert_eq!(refused.sock.unwrap().peer, lo(9));
    let after = table.get(10, 3).unwrap();
    assert_eq!((after.peer.as_ref(), after.state), (None, Some(SockState::Closed)));

    // Read again: the error is gone, and the connect was settled.
    let mut again = so_error(3, OptValue::Int(0));
    table.apply(&mut again);
    assert_eq!((again.async_error, again.connect), (None, None));
}

/// A second connect after EINPROGRESS: EALREADY waits, a failure settles it.
#[test]
fn second_connect_reports_the_outcome() {
    let mut table = FdTable::new(Box::new(NoLookup));
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
    table.apply(&mut connect(3, 9, -115));
    let mut already = connect(3, 9, -114);
    table.apply(&mut already);
    assert_eq!((already.async_error, already.connect.is_some()), (None, false));
    let mut refused = connect(3, 9, -111);
    table.apply(&mut refused);
    assert_eq!(refused.async_error, Some(Errno(111)));
    assert_eq!(refused.connect.map(|c| c.addr), lo(9));
}

/// SO_ERROR = 0 after EINPROGRESS: connected; a later error is not the connect's.
#[test]
fn async_connect_success_and_later_errors() {
    let mut table = FdTable::new(Box::new(NoLookup));
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
    table.apply(&mut connect(3, 80, -115));
    table.apply(&mut so_error(3, OptValue::Int(0)));
    assert_eq!(table.get(10, 3).unwrap().state, Some(SockState::Established));
    let mut reset = so_error(3, OptValue::Name("ECONNRESET".into()));
    table.apply(&mut reset);
    assert_eq!((reset.async_error, reset.connect), (Some(Errno(104)), None));
    // Closing the fd forgets a connect in progress.
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 4));
    table.apply(&mut connect(4, 9, -115));
    table.apply(&mut ev(Syscall::Close, Args { fd: Some(4), ..Args::default() }, 0));
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 4));
    let mut fresh = so_error(4, OptValue::Name("ECONNREFUSED".into()));
    table.apply(&mut fresh);
    assert_eq!(fresh.connect, None);
}

#[test]
fn forks_inherit_and_exits_forget() {
    let mut table = FdTable::new(Box::new(NoLookup));
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
    // A pid that is not a thread of pid 10 on this machine.
    table.fork(10, 999_999);
    assert_eq!(table.get(999_999, 3).map(|s| s.family.as_ref()), Some("AF_INET"));
    table.exit(999_999);
    assert!(table.get(999_999, 3).is_none());
}

#[test]
fn unknown_fds_are_looked_up_once() {
    struct Counting(u32);
    impl SocketLookup for Counting {
        fn describe(&mut self, _: u32, fd: i32) -> Option<SocketInfo> {
            self.0 += 1;
            assert!(self.0 == 1, "looked up again");
            Some(SocketInfo { fd: Some(fd), family: "AF_UNIX".into(), ..SocketInfo::default() })
        }
    }
    let mut table = FdTable::new(Box::new(Counting(0)));
    for _ in 0..2 {
        let mut e = ev(Syscall::Getsockopt, Args { fd: Some(7), ..Args::default() }, 0);
        table.apply(&mut e);
        assert_eq!(e.sock.unwrap().family, "AF_UNIX");
    }
}

/// A live process as the look-up sees it: fd 3's ends, inodes 100 + fd, fd 5 a socket.
struct Live {
    ends: (Option<SockAddr>, Option<SockAddr>),
}

impl SocketLookup for Live {
    fn describe(&mut self, _: u32, fd: i32) -> Option<SocketInfo> {
        let (local, peer) = self.ends.clone();
        (fd == 5).then(|| SocketInfo {
            fd: Some(fd),
            family: "AF_INET".into(),
            local,
            peer,
            ..SocketInfo::default()
        })
    }

    fn ends(&mut self, _: u32, fd: i32) -> Option<(Option<SockAddr>, Option<SockAddr>)> {
        (fd == 3).then(|| self.ends.clone())
    }

    fn inode(&mut self, _: u32, fd: i32) -> Option<u64> {
        Some(100 + fd as u64)
    }
}

/// After a connect (done or under way) the socket's own port is asked of the socket; a
/// socket now connected elsewhere is not the one that connected.
#[test]
fn connect_learns_the_local_port() {
    for (peer, ret) in [(lo(8080), 0), (None, -115)] {
        let mut table = FdTable::new(Box::new(Live { ends: (lo(40000), peer) }));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
        let mut e = connect(3, 8080, ret);
        table.apply(&mut e);
        assert_eq!(e.sock.unwrap().local, lo(40000), "connect = {ret}");
    }
    let mut table = FdTable::new(Box::new(Live { ends: (lo(40000), lo(9)) }));
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
    let mut e = connect(3, 8080, 0);
    table.apply(&mut e);
    assert_eq!(e.sock.unwrap().local, None);
    // A refused connect is not asked about.
    let mut table = FdTable::new(Box::new(Live { ends: (lo(40000), None) }));
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
    let mut e = connect(3, 8080, -111);
    table.apply(&mut e);
    assert_eq!(e.sock.unwrap().local, None);
}

/// The local end the kernel read at connect exit wins; no look-up is made.
#[test]
fn connect_uses_the_local_end_the_kernel_read() {
    let mut table = FdTable::new(Box::new(Live { ends: (lo(40000), lo(8080)) }));
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
    let mut e = connect(3, 8080, 0);
    e.bound = lo(41000);
    table.apply(&mut e);
    assert_eq!(e.sock.unwrap().local, lo(41000));
    assert_eq!(table.get(10, 3).unwrap().local, lo(41000));
}

/// The fd an accept in flight at attach returned is looked up.
#[test]
fn accept_in_flight_at_attach_is_described() {
    let mut table = FdTable::new(Box::new(Live { ends: (lo(80), lo(5555)) }));
    let mut e = ev(Syscall::Accept4, Args::default(), 5);
    e.in_flight_at_attach = true;
    table.apply(&mut e);
    let sock = e.sock.unwrap();
    assert_eq!((sock.fd, &sock.local, &sock.peer), (Some(5), &lo(80), &lo(5555)));
}

/// socketpair ends name each other by inode.
#[test]
fn socketpair_ends_know_their_peer() {
    let mut table = FdTable::new(Box::new(Live { ends: (None, None) }));
    let args = Args {
        domain: Some("AF_UNIX".into()),
        sock_type: Some("SOCK_STREAM".into()),
        fds: Some([6, 7]),
        ..Args::default()
    };
    let mut e = ev(Syscall::Socketpair, args, 0);
    table.apply(&mut e);
    let first = e.sock.unwrap();
    assert_eq!((first.fd, first.inode, first.peer_inode), (Some(6), Some(106), Some(107)));
    let second = table.get(10, 7).unwrap();
    assert_eq!((second.inode, second.peer_inode), (Some(107), Some(106)));
}

#[test]
fn ebadf_forgets_a_stale_entry() {
    let mut table = FdTable::new(Box::new(NoLookup));
    table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
    let mut e = ev(Syscall::Getsockopt, Args { fd: Some(3), ..Args::default() }, -9);
    table.apply(&mut e);
    assert!(e.sock.is_none() && table.get(10, 3).is_none());
}

#[test]
fn context_calls_keep_the_known_namespace() {
    let mut table = FdTable::new(Box::new(NoLookup));
    let mut shown = ev(Syscall::Socket, tcp_socket(), 3);
    shown.ns = Some(crate::event::Namespaces { net: 42, ..Default::default() });
    table.apply(&mut shown);
    // The kernel reads no namespaces for a context-only call.
    let mut hidden = ev(Syscall::Socket, tcp_socket(), 4);
    hidden.context_only = true;
    table.apply(&mut hidden);
    let netns: Vec<_> = table.sockets().map(|t| (t.fd, t.netns)).collect();
    assert!(netns.contains(&(3, Some(42))) && netns.contains(&(4, Some(42))), "{netns:?}");
}
