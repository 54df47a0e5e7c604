use super::*;
use crate::event::{KnownAddr, OptValue, SockAddr};
use chrono::DateTime;
use tracer_common::{Header, RecordKind};

/// A record with full tails, as the tests build it; the head's fields are reached through it.
struct Rec {
    head: SyscallHead,
    addr: [u8; 128],
    value: [u8; 128],
}

impl std::ops::Deref for Rec {
    type Target = SyscallHead;
    fn deref(&self) -> &SyscallHead {
        &self.head
    }
}

impl std::ops::DerefMut for Rec {
    fn deref_mut(&mut self) -> &mut SyscallHead {
        &mut self.head
    }
}

/// Decodes `rec` as the reader does, by reference.
fn decode(rec: &Rec, clock: &Clock) -> Option<Event> {
    super::decode(&SyscallView { head: rec.head, addr: &rec.addr, value: &rec.value }, clock)
        .map(|ev| *ev)
}

fn record(syscall: Syscall, args: [u64; 6], ret: i64) -> Rec {
    let head = SyscallHead {
        header: Header::new(RecordKind::Syscall),
        ts_ns: 1_000,
        duration_ns: 31_000,
        cgroup_id: 1,
        ret,
        args,
        tgid: 4242,
        tid: 4251,
        uid: 0,
        gid: 0,
        syscall: syscall as u32,
        flags: 0,
        addr_len: 0,
        value_len: 0,
        addr_copied: 0,
        value_copied: 0,
        comm: *b"server\0\0\0\0\0\0\0\0\0\0",
        ns: Default::default(),
        cap_effective: 0,
        addr_cap: 128,
        value_cap: 128,
        _pad: 0,
    };
    Rec { head, addr: [0; 128], value: [0; 128] }
}

fn clock() -> Clock {
    Clock::with_offset(0)
}

/// The date kept from the last record gives the times `from_timestamp_nanos` gives: within a
/// day, across midnight (both ways), before 1970, at the ends of the range.
#[test]
fn wall_time_is_chronos_across_days() {
    let day = 86_400 * 1_000_000_000_i64;
    let at = |offset_ns: i128, ktimes: &[u64]| {
        let (clock, mut recent) = (Clock::with_offset(offset_ns), Recent::default());
        for &k in ktimes {
            let ns = i64::try_from(i128::from(k) + offset_ns).unwrap_or(i64::MAX);
            let wall = clock.wall_within(k, &mut recent);
            assert_eq!(wall, DateTime::from_timestamp_nanos(ns), "{offset_ns} + {k}");
            assert_eq!(wall, clock.wall(k));
        }
    };
    let today = 1_764_650_000 * 1_000_000_000_i128;
    let ks = [0, 1, 5_000, 999_999_999, 1_000_000_000, 3_600_000_000_123, 86_399_999_999_999];
    at(today, &ks);
    let to_midnight = (day as i128 - today.rem_euclid(day as i128)) as u64;
    at(today, &[to_midnight - 1, to_midnight, to_midnight + 1, to_midnight - 1, 5, to_midnight]);
    at(-(day as i128) * 400, &[0, 1, day as u64 - 1, day as u64, 2 * day as u64 + 7, 3]);
    at(i128::from(i64::MAX) - 10, &[0, 9, 10, 11, u64::MAX]);
    at(i128::from(i64::MIN), &[0, 1, day as u64]);
}

/// The reader's stream, each record decoded after the ones before it (in the box of the one
/// before), gives each record's own comm and time: a comm or a day that changes is not taken
/// from the record before, nor anything else the box held.
#[test]
fn records_decoded_in_a_stream_are_decoded_alone() {
    let (clock, mut recent) =
        (Clock::with_offset(1_764_650_000 * 1_000_000_000), Recent::default());
    let day = 86_400 * 1_000_000_000;
    let mut stream = Vec::new();
    let calls = [
        (Syscall::Socket, [2, 1 | 0o4000, 6, 0, 0, 0], 3),
        (Syscall::Connect, [3, 0, 16, 0, 0, 0], -111),
        (Syscall::Getsockopt, [3, 1, 4, 1, 1, 0], 0),
        (Syscall::Close, [3, 0, 0, 0, 0, 0], 0),
    ];
    for (i, (comm, ts_ns)) in [
        (&b"server"[..], 5),
        (b"server", 7),
        (b"", 8),
        (b"client-with-15c", 9),
        (b"client-with-15c", day + 9),
        (b"server", day + 10),
        (b"\xff\xfeodd", 2 * day),
        (b"server", 3),
    ]
    .into_iter()
    .enumerate()
    {
        let (syscall, args, ret) = calls[i % calls.len()];
        let mut rec = record(syscall, args, ret);
        rec.comm = [0; 16];
        rec.comm[..comm.len()].copy_from_slice(comm);
        rec.ts_ns = ts_ns;
        let view = SyscallView { head: rec.head, addr: &rec.addr, value: &rec.value };
        let alone = super::decode(&view, &clock).unwrap();
        let after = decode_after(&view, &clock, &mut recent).unwrap();
        assert_eq!(after, alone);
        stream.push((after.comm.to_string(), after.ts));
        // The next one is made in this one's box: nothing of this one, nor what the stages
        // after the reader added, may stay.
        let mut used = after;
        used.cgroup = Some("/user.slice".into());
        used.sock = Some(crate::event::SocketInfo::default().into());
        used.async_error = Some(Errno(111));
        (used.blocked, used.context_only, used.in_flight_at_attach) = (true, true, true);
        used.anomalies.push(crate::event::Finding {
            id: "X".into(),
            severity: crate::event::Severity::Info,
            title: "t".into(),
            fix: "f".into(),
            detail: None,
        });
        recent.recycle(used);
    }
    assert_eq!(stream[3].0, "client-with-15c");
    assert_eq!(stream[6].0, "\u{fffd}\u{fffd}odd");
    assert_eq!(stream[7].0, "server");
}

#[test]
fn socket_with_type_flags() {
    let rec = record(Syscall::Socket, [2, 1 | 0o2000000, 6, 0, 0, 0], 3);
    let ev = decode(&rec, &clock()).unwrap();
    assert_eq!(ev.args.domain.as_deref(), Some("AF_INET"));
    assert_eq!(ev.args.sock_type.as_deref(), Some("SOCK_STREAM"));
    assert_eq!(ev.args.flags.as_deref(), Some("SOCK_CLOEXEC"));
    assert_eq!(ev.args.protocol.as_deref(), Some("IPPROTO_TCP"));
    assert_eq!((ev.pid, ev.tid, ev.comm.as_str(), ev.errno), (4242, 4251, "server", None));
}

#[test]
fn refused_connect() {
    let mut rec = record(Syscall::Connect, [7, 0x7fff_0000, 16, 0, 0, 0], -111);
    rec.addr[..2].copy_from_slice(&2_u16.to_ne_bytes());
    rec.addr[2..4].copy_from_slice(&8080_u16.to_be_bytes());
    rec.addr[4..8].copy_from_slice(&[127, 0, 0, 1]);
    rec.addr_len = 16;
    rec.addr_copied = 16;
    let ev = decode(&rec, &clock()).unwrap();
    assert_eq!(ev.errno, Some(Errno(111)));
    assert_eq!(ev.args.fd, Some(7));
    assert_eq!(
        ev.args.addr,
        Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 8080 }))
    );
    let json = serde_json::to_value(&ev).unwrap();
    assert_eq!(json["errno"], "ECONNREFUSED");
    assert_eq!(json["syscall"], "connect");
    assert_eq!(json["duration_ns"], 31_000);
    assert_eq!(json["args"]["addr"]["port"], 8080);
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, ev);
}

#[test]
fn getsockopt_value_only_on_success() {
    let mut rec = record(Syscall::Getsockopt, [5, 1, 17, 0x7fff_0000, 0x7fff_0100, 0], 0);
    rec.value[..12]
        .copy_from_slice(&[1_i32, 0, 0].iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<_>>());
    rec.value_len = 12;
    rec.value_copied = 12;
    let ok = decode(&rec, &clock()).unwrap();
    assert_eq!(ok.args.optname.as_deref(), Some("SO_PEERCRED"));
    assert_eq!(ok.args.value, Some(OptValue::Cred { pid: 1, uid: 0, gid: 0 }));
    rec.ret = -92;
    let failed = decode(&rec, &clock()).unwrap();
    assert_eq!((failed.args.value, failed.args.optlen), (None, None));
    assert_eq!(failed.errno.map(|e| e.name().into_owned()).as_deref(), Some("ENOPROTOOPT"));
}

#[test]
fn socketpair_fds() {
    let mut rec = record(Syscall::Socketpair, [1, 1, 0, 0x7fff_0000, 0, 0], 0);
    rec.value[..8]
        .copy_from_slice(&[3_i32, 4].iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<_>>());
    rec.value_len = 8;
    rec.value_copied = 8;
    let ev = decode(&rec, &clock()).unwrap();
    assert_eq!(ev.args.fds, Some([3, 4]));
    assert_eq!(ev.args.protocol.as_deref(), Some("0"));
    assert_eq!(ev.pair_inodes, None);
    // The inodes the kernel read follow the fds.
    rec.value[8..16].copy_from_slice(&77_u64.to_ne_bytes());
    rec.value[16..24].copy_from_slice(&78_u64.to_ne_bytes());
    rec.flags |= FLAG_FROM_SOCKET;
    let ev = decode(&rec, &clock()).unwrap();
    assert_eq!((ev.args.fds, ev.pair_inodes), (Some([3, 4]), Some([77, 78])));
}

/// The local end the kernel read at connect exit, a sockaddr_in in `value`.
#[test]
fn connect_local_end() {
    let mut rec = record(Syscall::Connect, [5, 0x7fff_0000, 16, 0, 0, 0], 0);
    let local = [2, 0, 0x9d, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    rec.value[..16].copy_from_slice(&local);
    (rec.value_len, rec.value_copied) = (16, 16);
    assert_eq!(decode(&rec, &clock()).unwrap().bound, None, "no flag, no local end");
    rec.flags |= FLAG_FROM_SOCKET;
    let ev = decode(&rec, &clock()).unwrap();
    let expected = KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 40336 };
    assert_eq!(ev.bound, Some(SockAddr::Known(expected)));
    assert_eq!(ev.args.value, None);
}

#[test]
fn exit_without_entry_has_no_args() {
    let mut rec = record(Syscall::Accept4, [0; 6], 5);
    rec.flags = FLAG_NO_ENTRY;
    let ev = decode(&rec, &clock()).unwrap();
    assert!(ev.in_flight_at_attach);
    assert_eq!((ev.args, ev.duration_ns), (Args::default(), None));
}

#[test]
fn refused_calls_keep_their_args_and_lose_their_duration() {
    let mut rec = record(Syscall::Listen, [3, 50, 0, 0, 0, 0], -98);
    rec.flags = FLAG_REFUSED | FLAG_SECCOMP;
    let ev = decode(&rec, &clock()).unwrap();
    assert_eq!((ev.args.fd, ev.args.backlog), (Some(3), Some(50)));
    assert_eq!((ev.refused_by, ev.duration_ns), (Some(RefusedBy::Seccomp), None));
    assert!(!ev.in_flight_at_attach);
    rec.flags = FLAG_REFUSED | FLAG_NO_ARGS;
    let ev = decode(&rec, &clock()).unwrap();
    assert_eq!((ev.refused_by, ev.args), (Some(RefusedBy::Unknown), Args::default()));
}

#[test]
fn unknown_syscall_id_is_skipped() {
    let mut rec = record(Syscall::Close, [3, 0, 0, 0, 0, 0], 0);
    rec.syscall = 999;
    assert!(decode(&rec, &clock()).is_none());
}

#[test]
fn shutdown_and_listen() {
    let ev = decode(&record(Syscall::Shutdown, [3, 1, 0, 0, 0, 0], 0), &clock()).unwrap();
    assert_eq!(ev.args.how.as_deref(), Some("SHUT_WR"));
    let ev = decode(&record(Syscall::Listen, [3, 128, 0, 0, 0, 0], 0), &clock()).unwrap();
    assert_eq!(ev.args.backlog, Some(128));
}
