//! Every shipped rule on synthetic events: what native Linux cannot produce (DrvFs, WSL1)
//! is covered here; the integration tests reproduce the rest for real.

use super::*;
use crate::{
    decode::state::SockState,
    enrich::fds::NoLookup,
    event::{Args, KnownAddr, Namespaces, SockAddr, SocketInfo, UnixAddr},
    facts::{
        sockets::Proto,
        system::{Owner, TableSocket},
    },
};
use rules::WslKind;

/// A system whose facts the test sets.
#[derive(Default)]
struct Fake {
    fstype: Option<String>,
    caps: Option<u64>,
    listeners: Vec<TableSocket>,
    resolver_timeout: Option<std::time::Duration>,
}

impl System for Fake {
    fn capabilities(&mut self, _pid: u32) -> Option<u64> {
        self.caps
    }
    fn mount_fstype(&mut self, _pid: u32, _path: &str) -> Option<String> {
        self.fstype.clone()
    }
    fn sockets_on_port(&mut self, port: u16, _proto: Proto) -> Option<Vec<TableSocket>> {
        Some(self.listeners.iter().filter(|s| s.addr.port() == port).cloned().collect())
    }
    fn resolver_timeout(&mut self, _pid: u32, _mnt: Option<u32>) -> Option<std::time::Duration> {
        self.resolver_timeout
    }
}

mod failures;
mod lifetimes;

const NET: u32 = 4026531833;

fn event(syscall: Syscall, args: Args, ret: i64) -> Event {
    Event {
        pid: 42,
        tid: 42,
        uid: 1000,
        gid: 1000,
        ns: Some(Namespaces { net: NET, ..Namespaces::default() }),
        ..Event::for_test(syscall, args, ret)
    }
}

fn inet(ip: [u8; 4], port: u16) -> Option<SockAddr> {
    Some(SockAddr::Known(KnownAddr::Inet { ip: ip.into(), port }))
}

fn unix(path: &str) -> Option<SockAddr> {
    Some(SockAddr::Known(KnownAddr::Unix(UnixAddr {
        path: Some(path.into()),
        abstract_name: None,
    })))
}

/// The built-in rules in `wsl` (networking `mode`) on `system`.
fn detector(wsl: WslKind, mode: Option<&str>, system: Fake) -> Detector {
    let env = Environment {
        wsl,
        networking_mode: mode.map(str::to_owned),
        nameservers: Vec::new(),
        unprivileged_port_start: 1024,
    };
    let specs = rules::parse(rules::BUILTIN_NAME, rules::BUILTIN).unwrap();
    Detector::new(specs, env, Box::new(system), Some(NET))
}

/// The rule ids that fire on `ev` in `env` with `system`.
fn fired(mut ev: Event, wsl: WslKind, mode: Option<&str>, system: Fake) -> Vec<String> {
    let mut detector = detector(wsl, mode, system);
    detector.detect(&mut ev, &FdTable::new(Box::new(NoLookup)));
    ev.anomalies.into_iter().map(|f| f.id).collect()
}

fn linux(ev: Event, system: Fake) -> Vec<String> {
    fired(ev, WslKind::None, None, system)
}

#[test]
fn peercred_refused() {
    let args = Args {
        fd: Some(5),
        level: Some("SOL_SOCKET".into()),
        optname: Some("SO_PEERCRED".into()),
        ..Args::default()
    };
    assert_eq!(
        linux(event(Syscall::Getsockopt, args.clone(), -92), Fake::default()),
        ["PEERCRED-UNAVAILABLE"]
    );
    assert_eq!(
        linux(event(Syscall::Getsockopt, args.clone(), -22), Fake::default()),
        ["PEERCRED-UNAVAILABLE"]
    );
    assert!(linux(event(Syscall::Getsockopt, args, 0), Fake::default()).is_empty());
}

#[test]
fn enotconn_instead_of_econnrefused() {
    let args = Args { fd: Some(3), addr: inet([127, 0, 0, 1], 8080), ..Args::default() };
    assert_eq!(
        linux(event(Syscall::Connect, args, -107), Fake::default()),
        ["CONNECT-ENOTCONN-NOT-ECONNREFUSED"]
    );
}

#[test]
fn unix_bind_on_a_windows_drive() {
    let args = Args { fd: Some(3), addr: unix("/mnt/c/app/app.sock"), ..Args::default() };
    let drvfs = Fake { fstype: Some("9p".into()), ..Fake::default() };
    assert_eq!(linux(event(Syscall::Bind, args.clone(), -13), drvfs), ["BIND-EACCES-UNIX-DRVFS"]);
    let ext4 = Fake { fstype: Some("ext4".into()), ..Fake::default() };
    assert!(linux(event(Syscall::Bind, args, -13), ext4).is_empty());
}

/// WSL2 has no EACCES path of its own (a Windows refusal is EADDRINUSE): an EACCES that
/// Linux does not explain gets no WSL finding.
#[test]
fn eacces_on_wsl_without_a_linux_cause_is_not_blamed_on_windows() {
    // Port 8080 is not privileged and the caller has every capability.
    let args = Args { fd: Some(3), addr: inet([0, 0, 0, 0], 8080), ..Args::default() };
    let mut ev = event(Syscall::Bind, args, -13);
    ev.cap_effective = Some(u64::MAX);
    for mode in ["nat", "mirrored"] {
        assert!(fired(ev.clone(), WslKind::Wsl2, Some(mode), Fake::default()).is_empty());
    }
    assert!(linux(ev, Fake::default()).is_empty());
}

/// ENOSYS from bind/listen: the port tracker's seccomp supervisor is gone (mirrored and
/// consomme only; NAT has no such filter).
#[test]
fn enosys_from_bind_or_listen_in_mirrored_mode() {
    let args = Args { fd: Some(3), addr: inet([0, 0, 0, 0], 8080), ..Args::default() };
    let bind = event(Syscall::Bind, args, -38);
    for mode in ["mirrored", "consomme"] {
        assert_eq!(
            fired(bind.clone(), WslKind::Wsl2, Some(mode), Fake::default()),
            ["WSL2-PORT-TRACKER-GONE"]
        );
    }
    let listen =
        event(Syscall::Listen, Args { fd: Some(3), backlog: Some(8), ..Args::default() }, -38);
    assert_eq!(
        fired(listen, WslKind::Wsl2, Some("mirrored"), Fake::default()),
        ["WSL2-PORT-TRACKER-GONE"]
    );
    assert!(fired(bind.clone(), WslKind::Wsl2, Some("nat"), Fake::default()).is_empty());
    assert!(linux(bind, Fake::default()).is_empty());
}

#[test]
fn privileged_port_wins_over_unexplained() {
    let args = Args { fd: Some(3), addr: inet([0, 0, 0, 0], 80), ..Args::default() };
    let mut ev = event(Syscall::Bind, args, -13);
    ev.cap_effective = Some(0);
    assert_eq!(
        fired(ev, WslKind::Wsl2, Some("nat"), Fake::default()),
        ["BIND-EACCES-PRIVILEGED-PORT"]
    );
}

#[test]
fn wsl1_only_rules() {
    let mut ev = event(
        Syscall::Connect,
        Args { fd: Some(3), addr: inet([127, 0, 0, 1], 9), ..Args::default() },
        -111,
    );
    ev.sock = Some(
        SocketInfo {
            family: "AF_INET".into(),
            flags: Some("SOCK_NONBLOCK|SOCK_CLOEXEC".into()),
            ..SocketInfo::default()
        }
        .into(),
    );
    let wsl1 = fired(ev.clone(), WslKind::Wsl1, None, Fake::default());
    assert!(wsl1.contains(&"WSL1-NONBLOCKING-CONNECT-REFUSED".to_owned()), "{wsl1:?}");
    assert!(!linux(ev, Fake::default()).contains(&"WSL1-NONBLOCKING-CONNECT-REFUSED".to_owned()));

    let args = Args {
        fd: Some(3),
        level: Some("SOL_TCP".into()),
        optname: Some("TCP_INFO".into()),
        ..Args::default()
    };
    assert_eq!(
        fired(event(Syscall::Getsockopt, args.clone(), -92), WslKind::Wsl1, None, Fake::default()),
        ["WSL1-TCP-INFO-ENOPROTOOPT"]
    );
    assert!(linux(event(Syscall::Getsockopt, args, -92), Fake::default()).is_empty());
}

/// A successful listen on `local`, in the initial network namespace.
fn listening(local: Option<SockAddr>) -> Event {
    let mut ev =
        event(Syscall::Listen, Args { fd: Some(3), backlog: Some(16), ..Args::default() }, 0);
    ev.sock = Some(SocketInfo { family: "AF_INET".into(), local, ..SocketInfo::default() }.into());
    ev
}

fn inet6(ip: &str, port: u16) -> Option<SockAddr> {
    Some(SockAddr::Known(KnownAddr::Inet6 {
        ip: ip.parse().unwrap(),
        port,
        scope_id: 0,
        flowinfo: 0,
    }))
}

/// WSL's relay table (NAT): 0.0.0.0 and 127.0.0.1 are relayed (no finding); :: and ::1
/// reach Windows at [::1] only; every other address is not relayed.
#[test]
fn listeners_by_what_the_relay_forwards() {
    let nat = |ev: Event| fired(ev, WslKind::Wsl2, Some("nat"), Fake::default());
    assert!(nat(listening(inet([0, 0, 0, 0], 8080))).is_empty());
    assert!(nat(listening(inet([127, 0, 0, 1], 8080))).is_empty());
    for local in [
        inet([127, 0, 0, 2], 8080),
        inet([172, 29, 16, 5], 8080),
        inet6("::ffff:127.0.0.1", 8080),
        inet6("fd00::5", 8080),
    ] {
        assert_eq!(nat(listening(local.clone())), ["WSL2-RELAY-ADDRESS-NOT-RELAYED"], "{local:?}");
    }
    for local in [inet6("::", 8080), inet6("::1", 8080)] {
        assert_eq!(nat(listening(local)), ["WSL2-RELAY-IPV6-ONLY"]);
    }
    // Bridged mode uses the same relay; mirrored and native Linux have none.
    let v6 = listening(inet6("::1", 8080));
    assert_eq!(
        fired(v6.clone(), WslKind::Wsl2, Some("bridged"), Fake::default()),
        ["WSL2-RELAY-IPV6-ONLY"]
    );
    assert!(fired(v6.clone(), WslKind::Wsl2, Some("mirrored"), Fake::default()).is_empty());
    assert!(linux(v6, Fake::default()).is_empty());
}

/// In another network namespace the namespace is the reason, whatever the address: one
/// finding, the WSL one on WSL2 and the generic one elsewhere.
#[test]
fn listener_in_another_namespace_is_never_relayed() {
    let mut ev = listening(inet([127, 0, 0, 2], 8080));
    ev.ns = Some(Namespaces { net: NET + 1, ..Namespaces::default() });
    assert_eq!(
        fired(ev.clone(), WslKind::Wsl2, Some("nat"), Fake::default()),
        ["WSL2-RELAY-OTHER-NETNS"]
    );
    assert_eq!(linux(ev, Fake::default()), ["LISTENER-IN-PRIVATE-NETNS"]);
}

#[test]
fn udp_is_never_relayed() {
    let mut ev = event(
        Syscall::Bind,
        Args { fd: Some(3), addr: inet([0, 0, 0, 0], 5353), ..Args::default() },
        0,
    );
    ev.sock = Some(
        SocketInfo {
            family: "AF_INET".into(),
            sock_type: Some("SOCK_DGRAM".into()),
            ..SocketInfo::default()
        }
        .into(),
    );
    assert_eq!(fired(ev.clone(), WslKind::Wsl2, Some("nat"), Fake::default()), ["WSL2-RELAY-UDP"]);
    let mut client = ev.clone();
    client.args.addr = inet([0, 0, 0, 0], 0);
    assert!(fired(client, WslKind::Wsl2, Some("nat"), Fake::default()).is_empty(), "port 0");
    assert!(linux(ev, Fake::default()).is_empty());
}

#[test]
fn refused_connects_by_where_the_port_listens() {
    let connect = || {
        event(
            Syscall::Connect,
            Args { fd: Some(3), addr: inet([127, 0, 0, 1], 8080), ..Args::default() },
            -111,
        )
    };
    let listener = |addr: &str, netns: u32| TableSocket {
        netns,
        addr: addr.parse().unwrap(),
        state: Some(SockState::Listen),
        inode: 1,
        owner: Some(Owner { pid: 7, comm: "srv".into(), fd: 3 }),
        accept_queue: None,
    };
    let elsewhere = Fake { listeners: vec![listener("[::1]:8080", NET)], ..Fake::default() };
    assert_eq!(linux(connect(), elsewhere), ["CONNECT-REFUSED-OTHER-ADDRESS"]);
    let other_ns = Fake { listeners: vec![listener("0.0.0.0:8080", 99)], ..Fake::default() };
    assert_eq!(linux(connect(), other_ns), ["CONNECT-REFUSED-OTHER-NETNS"]);
    assert_eq!(
        linux(connect(), Fake { listeners: Vec::new(), ..Fake::default() }),
        ["CONNECT-REFUSED"]
    );
}

/// The rules ids that fire on a connect to `dest` still in progress.
fn fired_blocked(dest: [u8; 4], wsl: WslKind, mode: Option<&str>, system: Fake) -> Vec<String> {
    let mut detector = detector(wsl, mode, system);
    let ev =
        event(Syscall::Connect, Args { fd: Some(3), addr: inet(dest, 8080), ..Args::default() }, 0);
    let mut blocked = Blocked::for_test(ev, 2_000_000_000);
    detector.detect_blocked(&mut blocked, &FdTable::new(Box::new(NoLookup)));
    blocked.anomalies.into_iter().map(|f| f.id).collect()
}

/// Calls still in progress are judged by the rules written for them only: a full accept
/// queue (the kernel's test: more waiting than the backlog), WSL2 mirrored's loopback hang.
#[test]
fn blocked_connects() {
    let listener = |queue: (u32, u32)| Fake {
        listeners: vec![TableSocket {
            netns: NET,
            addr: "127.0.0.1:8080".parse().unwrap(),
            state: Some(SockState::Listen),
            inode: 1,
            owner: Some(Owner { pid: 7, comm: "srv".into(), fd: 3 }),
            accept_queue: Some(queue),
        }],
        ..Fake::default()
    };
    let lo = [127, 0, 0, 1];
    assert_eq!(
        fired_blocked(lo, WslKind::None, None, listener((1, 0))),
        ["CONNECT-BLOCKED-ACCEPT-QUEUE-FULL"]
    );
    assert!(fired_blocked(lo, WslKind::None, None, listener((16, 16))).is_empty());
    assert!(fired_blocked(lo, WslKind::None, None, Fake::default()).is_empty());
    let hang = ["WSL2-MIRRORED-LOOPBACK-CONNECT-HANG"];
    assert_eq!(fired_blocked(lo, WslKind::Wsl2, Some("mirrored"), Fake::default()), hang);
    assert!(fired_blocked(lo, WslKind::Wsl2, Some("nat"), Fake::default()).is_empty());
    assert!(
        fired_blocked([127, 0, 0, 2], WslKind::Wsl2, Some("mirrored"), Fake::default()).is_empty()
    );
    // A finished connect is not judged by them, nor a blocked one by the others.
    let done = event(
        Syscall::Connect,
        Args { fd: Some(3), addr: inet(lo, 8080), ..Args::default() },
        -110,
    );
    assert!(!linux(done, listener((1, 0))).iter().any(|id| id.contains("BLOCKED")));
}

/// getsockopt(SO_ERROR) reading ECONNREFUSED after a connect in progress: judged as that
/// connect, with the findings a blocking connect gets.
#[test]
fn async_connect_outcomes_are_judged_as_the_connect() {
    let listener = TableSocket {
        netns: NET,
        addr: "[::1]:8080".parse().unwrap(),
        state: Some(SockState::Listen),
        inode: 1,
        owner: Some(Owner { pid: 7, comm: "srv".into(), fd: 3 }),
        accept_queue: None,
    };
    let args = Args {
        fd: Some(3),
        level: Some("SOL_SOCKET".into()),
        optname: Some("SO_ERROR".into()),
        ..Args::default()
    };
    let mut ev = event(Syscall::Getsockopt, args, 0);
    ev.async_error = Some(crate::decode::errno::Errno(111));
    ev.connect = Some(crate::event::PendingConnect {
        addr: inet([127, 0, 0, 1], 8080).unwrap(),
        started_ns: 1,
    });
    ev.sock = Some(
        SocketInfo {
            family: "AF_INET".into(),
            flags: Some("SOCK_NONBLOCK".into()),
            ..SocketInfo::default()
        }
        .into(),
    );
    let system = || Fake { listeners: vec![listener.clone()], ..Fake::default() };
    assert_eq!(linux(ev.clone(), system()), ["CONNECT-REFUSED-OTHER-ADDRESS"]);
    // WSL1's immediate refusal is not this one.
    assert!(
        !fired(ev.clone(), WslKind::Wsl1, None, system())
            .contains(&"WSL1-NONBLOCKING-CONNECT-REFUSED".to_owned())
    );
    // Without the connect (not traced), nothing to judge.
    ev.connect = None;
    assert!(linux(ev, system()).is_empty());
}

/// A non-blocking connect to the local DNS stub is under way, not failed.
#[test]
fn einprogress_is_no_failure() {
    let args = Args { fd: Some(3), addr: inet([127, 0, 0, 53], 53), ..Args::default() };
    assert!(linux(event(Syscall::Connect, args.clone(), -115), Fake::default()).is_empty());
    assert_eq!(
        linux(event(Syscall::Connect, args, -111), Fake::default()),
        ["DNS-STUB-UNREACHABLE"]
    );
}

/// Offline (no system to ask), rules that need live facts stay silent rather than guess.
#[test]
fn unknown_facts_never_match() {
    struct Nothing;
    impl System for Nothing {}
    let env = Environment::default();
    let specs = rules::parse(rules::BUILTIN_NAME, rules::BUILTIN).unwrap();
    let mut detector = Detector::new(specs, env, Box::new(Nothing), Some(NET));
    let args = Args { fd: Some(3), addr: unix("/mnt/c/app.sock"), ..Args::default() };
    let mut ev = event(Syscall::Bind, args, -13);
    detector.detect(&mut ev, &FdTable::new(Box::new(NoLookup)));
    assert!(ev.anomalies.is_empty(), "{:?}", ev.anomalies);
}
