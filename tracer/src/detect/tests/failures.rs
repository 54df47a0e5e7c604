//! One finding per failed connect: the kernel's report of the error (a socket error) and the
//! call that reads it (SO_ERROR, a second connect) do not both carry it.

use super::*;
use crate::{
    decode::errno::Errno,
    event::{PendingConnect, SocketError},
};

const REFUSED: Errno = Errno(111);

/// A detector and an fd table where pid 42 started a non-blocking connect on fd 3 to the DNS
/// stub (127.0.0.53:53) at `started_ns`; the refusal matches DNS-STUB-UNREACHABLE.
fn connecting(detector: &mut Detector, table: &mut FdTable, started_ns: u64) {
    let stub = inet([127, 0, 0, 53], 53);
    let mut connect =
        event(Syscall::Connect, Args { fd: Some(3), addr: stub, ..Args::default() }, -115);
    connect.ts_ns = started_ns;
    table.apply(&mut connect);
    detector.detect(&mut connect, table);
    assert!(connect.anomalies.is_empty(), "EINPROGRESS is no failure");
}

/// The kernel's report of the refusal, judged; `shown` if the filters pass it.
fn socket_error(detector: &mut Detector, table: &mut FdTable, shown: bool) -> Vec<String> {
    let connect = table.connecting(42, 3);
    let error = SocketError {
        ts: Event::for_test(Syscall::Connect, Args::default(), 0).ts,
        ts_ns: connect.as_ref().map_or(0, |c| c.started_ns + 50),
        pid: 42,
        tid: 42,
        comm: String::new(),
        fd: 3,
        sock: None,
        error: REFUSED,
        connect,
        ns: Some(Namespaces { net: NET, ..Namespaces::default() }),
        anomalies: Vec::new(),
    };
    let mut view = error.as_failed_connect();
    detector.judge_failed_connect(&mut view, table);
    if shown {
        detector.shown();
    }
    view.anomalies.into_iter().map(|f| f.id).collect()
}

/// getsockopt(SO_ERROR) reading the refusal, through the fd table as live.
fn so_error(detector: &mut Detector, table: &mut FdTable) -> Vec<String> {
    let args = Args {
        fd: Some(3),
        level: Some("SOL_SOCKET".into()),
        optname: Some("SO_ERROR".into()),
        value: Some(crate::event::OptValue::Name("ECONNREFUSED".into())),
        ..Args::default()
    };
    let mut read = event(Syscall::Getsockopt, args, 0);
    table.apply(&mut read);
    assert_eq!(read.async_error, Some(REFUSED));
    detector.detect(&mut read, table);
    detector.shown();
    read.anomalies.into_iter().map(|f| f.id).collect()
}

fn setup() -> (Detector, FdTable) {
    let detector = detector(WslKind::None, None, Fake::default());
    let mut table = FdTable::new(Box::new(NoLookup));
    let mut socket =
        event(Syscall::Socket, Args { domain: Some("AF_INET".into()), ..Args::default() }, 3);
    table.apply(&mut socket);
    (detector, table)
}

#[test]
fn the_socket_error_carries_the_finding_the_read_does_not_repeat_it() {
    let (mut detector, mut table) = setup();
    connecting(&mut detector, &mut table, 1_000);
    assert_eq!(socket_error(&mut detector, &mut table, true), ["DNS-STUB-UNREACHABLE"]);
    assert!(so_error(&mut detector, &mut table).is_empty());

    // The next connect on the same fd fails again: a new failure, judged again.
    connecting(&mut detector, &mut table, 2_000);
    assert_eq!(socket_error(&mut detector, &mut table, true), ["DNS-STUB-UNREACHABLE"]);
    assert!(so_error(&mut detector, &mut table).is_empty());
}

/// A socket error the filters hide leaves the finding to the call that reads the error.
#[test]
fn a_hidden_socket_error_leaves_the_finding_to_the_read() {
    let (mut detector, mut table) = setup();
    connecting(&mut detector, &mut table, 1_000);
    assert_eq!(socket_error(&mut detector, &mut table, false), ["DNS-STUB-UNREACHABLE"]);
    assert_eq!(so_error(&mut detector, &mut table), ["DNS-STUB-UNREACHABLE"]);
}

/// The read can come first (the kernel reports the error after it wakes the poller): the
/// socket error that follows does not repeat its finding.
#[test]
fn a_read_that_comes_first_carries_the_finding() {
    let (mut detector, mut table) = setup();
    connecting(&mut detector, &mut table, 1_000);
    let pending = table.connecting(42, 3);
    assert_eq!(so_error(&mut detector, &mut table), ["DNS-STUB-UNREACHABLE"]);
    // The fd table no longer waits on the connect: the detector knows which one it was.
    assert!(table.connecting(42, 3).is_none());
    assert_eq!(pending.map(|p: PendingConnect| p.started_ns), Some(1_000));
    assert!(socket_error(&mut detector, &mut table, true).is_empty());
}
