//! Rules on how long a socket lived (DNS lookups left unanswered) and on unix connects to a
//! Windows drive, on synthetic events.

use std::time::Duration;

use super::*;

const SECOND: u64 = 1_000_000_000;

/// A UDP socket connected to `server`:53 at time 0 and closed `after_ns` later, judged by one
/// detector in `wsl`/`mode` with a resolver timeout of `timeout` (from the caller's resolv.conf).
fn lookup(server: [u8; 4], after_ns: u64, wsl: WslKind, mode: Option<&str>) -> Vec<String> {
    let system = Fake { resolver_timeout: Some(Duration::from_secs(1)), ..Fake::default() };
    let mut detector = detector(wsl, mode, system);
    let table = FdTable::new(Box::new(NoLookup));
    let peer = inet(server, 53);
    let mut connect =
        event(Syscall::Connect, Args { fd: Some(4), addr: peer.clone(), ..Args::default() }, 0);
    connect.ts_ns = 10 * SECOND;
    detector.detect(&mut connect, &table);
    assert!(connect.anomalies.is_empty());
    let mut close = event(Syscall::Close, Args { fd: Some(4), ..Args::default() }, 0);
    close.ts_ns = 10 * SECOND + after_ns;
    close.sock = Some(
        SocketInfo {
            fd: Some(4),
            family: "AF_INET".into(),
            sock_type: Some("SOCK_DGRAM".into()),
            peer,
            ..SocketInfo::default()
        }
        .into(),
    );
    detector.detect(&mut close, &table);
    close.anomalies.into_iter().map(|f| f.id).collect()
}

#[test]
fn dns_socket_closed_after_the_resolver_timeout() {
    let tunnel = [10, 255, 255, 254];
    assert_eq!(
        lookup([192, 0, 2, 1], SECOND + SECOND / 100, WslKind::None, None),
        ["DNS-NO-ANSWER"]
    );
    // 5% under the timeout still counts (the resolver's own rounding), 10% under does not.
    assert_eq!(lookup([192, 0, 2, 1], SECOND * 96 / 100, WslKind::None, None), ["DNS-NO-ANSWER"]);
    assert!(lookup([192, 0, 2, 1], SECOND * 90 / 100, WslKind::None, None).is_empty());
    // An answered lookup closes within milliseconds.
    assert!(lookup(tunnel, 3_000_000, WslKind::Wsl2, Some("nat")).is_empty());
    for mode in ["nat", "mirrored"] {
        let ids = lookup(tunnel, 2 * SECOND, WslKind::Wsl2, Some(mode));
        assert_eq!(ids, ["WSL2-DNS-TUNNEL-NO-ANSWER"], "{mode}");
    }
    // Another nameserver on WSL2, or the tunnel address on Linux: the generic rule.
    assert_eq!(lookup([192, 0, 2, 1], 2 * SECOND, WslKind::Wsl2, Some("nat")), ["DNS-NO-ANSWER"]);
    assert_eq!(lookup(tunnel, 2 * SECOND, WslKind::None, None), ["DNS-NO-ANSWER"]);
}

/// Without a traced connect on the fd (attached later), its lifetime is unknown: no finding.
#[test]
fn dns_socket_without_a_traced_connect() {
    let system = Fake { resolver_timeout: Some(Duration::from_secs(1)), ..Fake::default() };
    let mut close = event(Syscall::Close, Args { fd: Some(4), ..Args::default() }, 0);
    close.ts_ns = 100 * SECOND;
    close.sock = Some(
        SocketInfo {
            family: "AF_INET".into(),
            sock_type: Some("SOCK_DGRAM".into()),
            peer: inet([192, 0, 2, 1], 53),
            ..SocketInfo::default()
        }
        .into(),
    );
    assert!(linux(close, system).is_empty());
}

#[test]
fn unix_connect_to_a_windows_drive() {
    let args = Args { fd: Some(3), addr: unix("/mnt/c/Users/me/agent.sock"), ..Args::default() };
    let drvfs = || Fake { fstype: Some("9p".into()), ..Fake::default() };
    for errno in [-111, -95] {
        let ids = linux(event(Syscall::Connect, args.clone(), errno), drvfs());
        assert_eq!(ids, ["UNIX-CONNECT-DRVFS"], "{errno}");
    }
    // No file there at all, or a socket on the Linux side: the ordinary unix-connect rules.
    assert_eq!(linux(event(Syscall::Connect, args.clone(), -2), drvfs()), ["UNIX-CONNECT-NO-FILE"]);
    let ext4 = Fake { fstype: Some("ext4".into()), ..Fake::default() };
    assert_eq!(
        linux(event(Syscall::Connect, args.clone(), -111), ext4),
        ["UNIX-CONNECT-STALE-SOCKET"]
    );
    assert!(linux(event(Syscall::Connect, args, 0), drvfs()).is_empty());
}
