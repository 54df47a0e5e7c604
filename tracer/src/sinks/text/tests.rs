use tracer_common::Syscall;

use super::*;
use crate::decode::state::SockState;
use crate::event::{KnownAddr, OptValue, SockAddr, SocketInfo};

fn event(syscall: Syscall, args: Args, ret: i64) -> Event {
    Event::for_test(syscall, args, ret)
}

fn line(ev: &Event) -> String {
    let mut sink = TextSink::new(Vec::new(), false, Some(1));
    sink.tz = FixedOffset::east_opt(0).unwrap();
    sink.write(RecordRef::Event(ev)).unwrap();
    String::from_utf8(sink.out).unwrap()
}

#[test]
fn blocked_calls_say_for_how_long() {
    let lo = SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 9999 });
    let args = Args { fd: Some(5), addr: Some(lo.clone()), addrlen: Some(16), ..Args::default() };
    let sock = SocketInfo {
        fd: Some(5),
        family: "AF_INET".into(),
        sock_type: Some("SOCK_STREAM".into()),
        peer: Some(lo),
        ..SocketInfo::default()
    };
    let ev = Event { sock: Some(sock.into()), ..event(Syscall::Connect, args, 0) };
    let mut b = Blocked::for_test(ev, 2_040_000_000);
    let text = |b: &Blocked| {
        let mut sink = TextSink::new(Vec::new(), false, Some(1));
        sink.tz = FixedOffset::east_opt(0).unwrap();
        sink.write(RecordRef::Blocked(b)).unwrap();
        String::from_utf8(sink.out).unwrap()
    };
    assert_eq!(
        text(&b),
        "00:00:00.104512 server[4242/4251] connect(5<TCP:?->127.0.0.1:9999>, {AF_INET, 127.0.0.1:9999}, 16) ... blocked for 2.0s\n"
    );
    b.nonblocking = true;
    assert!(text(&b).ends_with("blocked for 2.0s (non-blocking: still connecting)\n"));
}

#[test]
fn refused_connect_reads_like_strace() {
    let args = Args {
        fd: Some(7),
        addr: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 8080 })),
        addrlen: Some(16),
        ..Args::default()
    };
    assert_eq!(
        line(&event(Syscall::Connect, args, -111)),
        "00:00:00.104512 server[4242/4251] connect(7, {AF_INET, 127.0.0.1:8080}, 16) = -1 ECONNREFUSED (Connection refused) <31us>\n"
    );
}

/// A socket error: the fd as strace -yy shows it, the error, the connect's finding.
#[test]
fn socket_errors_read_like_strace_signals() {
    let ev = event(Syscall::Connect, Args::default(), 0);
    let error = SocketError {
        ts: ev.ts,
        ts_ns: 2,
        pid: 4242,
        tid: 4251,
        comm: "client".into(),
        fd: 5,
        sock: None,
        error: crate::decode::errno::Errno(111),
        connect: None,
        ns: None,
        anomalies: Vec::new(),
    };
    let mut sink = TextSink::new(Vec::new(), false, Some(1));
    sink.tz = FixedOffset::east_opt(0).unwrap();
    sink.write(RecordRef::SocketError(&error)).unwrap();
    assert_eq!(
        String::from_utf8(sink.out).unwrap(),
        "00:00:00.104512 client[4242/4251] 5 +++ socket error ECONNREFUSED (Connection refused) +++\n"
    );
}

#[test]
fn async_connect_failure_shows_the_destination() {
    let args = Args {
        fd: Some(5),
        level: Some("SOL_SOCKET".into()),
        optname: Some("SO_ERROR".into()),
        optlen: Some(4),
        value: Some(OptValue::Name("ECONNREFUSED".into())),
        ..Args::default()
    };
    let dest = SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 18080 });
    let mut ev = event(Syscall::Getsockopt, args, 0);
    ev.sock = Some(
        SocketInfo {
            fd: Some(5),
            family: "AF_INET".into(),
            sock_type: Some("SOCK_STREAM".into()),
            peer: Some(dest.clone()),
            ..SocketInfo::default()
        }
        .into(),
    );
    ev.async_error = Some(crate::decode::errno::Errno(111));
    ev.connect = Some(crate::event::PendingConnect { addr: dest, started_ns: 0 });
    assert!(
        line(&ev).contains(
            "getsockopt(5<TCP:?->127.0.0.1:18080>, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0 (connect to 127.0.0.1:18080 failed: ECONNREFUSED) <31us>"
        ),
        "{}",
        line(&ev)
    );
}

#[test]
fn getsockopt_peercred() {
    let args = Args {
        fd: Some(5),
        level: Some("SOL_SOCKET".into()),
        optname: Some("SO_PEERCRED".into()),
        optlen: Some(12),
        value: Some(OptValue::Cred { pid: 1, uid: 0, gid: 0 }),
        ..Args::default()
    };
    assert!(line(&event(Syscall::Getsockopt, args, 0)).contains(
        "getsockopt(5, SOL_SOCKET, SO_PEERCRED, {pid=1, uid=0, gid=0}, [12]) = 0 <31us>"
    ));
}

#[test]
fn in_flight_calls_say_so() {
    let mut ev = event(Syscall::Accept4, Args::default(), 5);
    ev.in_flight_at_attach = true;
    ev.duration_ns = None;
    assert!(line(&ev).ends_with("accept4(<in flight at attach>) = 5\n"));
}

#[test]
fn refused_calls_say_by_what() {
    let args = Args {
        fd: Some(3),
        addr: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 8080 })),
        addrlen: Some(16),
        ..Args::default()
    };
    let mut ev = event(Syscall::Bind, args, -98);
    ev.refused_by = Some(RefusedBy::Seccomp);
    ev.duration_ns = None;
    assert!(line(&ev).ends_with(
        "bind(3, {AF_INET, 127.0.0.1:8080}, 16) = -1 EADDRINUSE (Address already in use) <refused by seccomp>\n"
    ));
    ev.refused_by = Some(RefusedBy::Unknown);
    ev.args = Args::default();
    assert!(line(&ev).ends_with("bind(<arguments unknown>) = -1 EADDRINUSE (Address already in use) <refused before entry>\n"));
}

#[test]
fn socket_type_with_flags() {
    let args = Args {
        domain: Some("AF_UNIX".into()),
        sock_type: Some("SOCK_STREAM".into()),
        flags: Some("SOCK_CLOEXEC".into()),
        protocol: Some("0".into()),
        fds: Some([3, 4]),
        ..Args::default()
    };
    assert!(
        line(&event(Syscall::Socketpair, args, 0))
            .contains("socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0, [3, 4]) = 0")
    );
}

#[test]
fn fds_say_what_they_are() {
    let unix = SocketInfo {
        fd: Some(5),
        family: "AF_UNIX".into(),
        sock_type: Some("SOCK_STREAM".into()),
        local: Some(SockAddr::Known(KnownAddr::Unix(crate::event::UnixAddr {
            path: Some("/tmp/app.sock".into()),
            abstract_name: None,
        }))),
        ..SocketInfo::default()
    };
    let mut ev = event(Syscall::Getsockopt, Args { fd: Some(5), ..Args::default() }, 0);
    ev.sock = Some(unix.into());
    assert!(line(&ev).contains("getsockopt(5<UNIX:/tmp/app.sock>, ?, ?"), "{}", line(&ev));

    let tcp = SocketInfo {
        fd: Some(4),
        family: "AF_INET".into(),
        sock_type: Some("SOCK_STREAM".into()),
        local: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 80 })),
        peer: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 5555 })),
        ..SocketInfo::default()
    };
    let mut ev = event(Syscall::Accept4, Args { fd: Some(3), ..Args::default() }, 4);
    ev.sock = Some(tcp.into());
    assert!(line(&ev).contains(") = 4<TCP:127.0.0.1:80->127.0.0.1:5555> <31us>"), "{}", line(&ev));
}

#[test]
fn snapshots_list_their_sockets() {
    let listener = SocketInfo {
        fd: Some(3),
        family: "AF_INET".into(),
        sock_type: Some("SOCK_STREAM".into()),
        state: Some(SockState::Listen),
        local: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 80 })),
        inode: Some(99),
        ..SocketInfo::default()
    };
    let snap = Snapshot {
        ts: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        pid: 7,
        comm: "nginx".into(),
        sockets: vec![listener],
    };
    let mut sink = TextSink::new(Vec::new(), false, Some(1));
    sink.tz = FixedOffset::east_opt(0).unwrap();
    sink.write(RecordRef::Snapshot(&snap)).unwrap();
    assert_eq!(
        String::from_utf8(sink.out).unwrap(),
        "00:00:00.000000 nginx[7] +++ holds 1 socket +++\n    fd 3 AF_INET SOCK_STREAM LISTEN {AF_INET, 127.0.0.1:80} inode=99\n"
    );
}

#[test]
fn other_network_namespaces_are_marked() {
    let mut ev = event(Syscall::Close, Args { fd: Some(3), ..Args::default() }, 0);
    ev.ns = Some(crate::event::Namespaces { net: 4026532561, ..Default::default() });
    assert!(line(&ev).contains("server[4242/4251] [netns 4026532561] close(3)"), "{}", line(&ev));
    ev.ns = Some(crate::event::Namespaces { net: 1, ..Default::default() });
    assert!(!line(&ev).contains("netns"));
}

#[test]
fn vsock_wildcards_are_named() {
    let any = SockAddr::Known(KnownAddr::Vsock { cid: u32::MAX, port: u32::MAX });
    assert_eq!(Addr(&any).to_string(), "{AF_VSOCK, cid=VMADDR_CID_ANY, port=VMADDR_PORT_ANY}");
    let host = SockAddr::Known(KnownAddr::Vsock { cid: 2, port: 5000 });
    assert_eq!(Addr(&host).to_string(), "{AF_VSOCK, cid=2, port=5000}");
}

#[test]
fn latencies() {
    assert_eq!(Duration(850).to_string(), "850ns");
    assert_eq!(Duration(31_400).to_string(), "31us");
    assert_eq!(Duration(1_250_000).to_string(), "1.25ms");
    assert_eq!(Duration(3_000_000_000).to_string(), "3.00s");
}

#[test]
fn colour_only_when_asked() {
    let ev = event(Syscall::Close, Args { fd: Some(3), ..Args::default() }, -9);
    let mut sink = TextSink::new(Vec::new(), true, Some(1));
    sink.write(RecordRef::Event(&ev)).unwrap();
    assert!(String::from_utf8(sink.out).unwrap().contains("\u{1b}["));
    assert!(!line(&ev).contains('\u{1b}'));
}

/// The caller's `name[pid/tid]` is kept from the last line: each change of name, pid or tid
/// shows on the next line, through one sink.
#[test]
fn each_line_names_its_own_caller() {
    let mut sink = TextSink::new(Vec::new(), false, Some(1));
    sink.tz = FixedOffset::east_opt(0).unwrap();
    let first =
        event(Syscall::Listen, Args { fd: Some(3), backlog: Some(8), ..Args::default() }, 0);
    let callers = [
        ("server", 4242, 4251),
        ("server", 4242, 4252),
        ("worker", 4242, 4252),
        ("worker", 4243, 4252),
        ("worker", 4243, 4252),
    ];
    for (comm, pid, tid) in callers {
        let ev = Event { comm: comm.into(), pid, tid, ..first.clone() };
        sink.write(RecordRef::Event(&ev)).unwrap();
    }
    let out = String::from_utf8(sink.out).unwrap();
    let shown: Vec<&str> = out.lines().map(|l| l.split(' ').nth(1).unwrap_or_default()).collect();
    assert_eq!(
        shown,
        [
            "server[4242/4251]",
            "server[4242/4252]",
            "worker[4242/4252]",
            "worker[4243/4252]",
            "worker[4243/4252]"
        ]
    );
}
