//! The hand-written event line against serde_json's, byte for byte: on real events (captured
//! from `wsltrace demo -o` runs and a curl to closed ports, written by serde_json at the time)
//! and on many made-up ones that reach every key, variant and escape.

use chrono::{DateTime, Utc};
use tracer_common::Syscall;

use super::*;
use crate::{
    decode::state::SockState,
    event::{Loss, Name, Namespaces, ProcessExit, Snapshot, SocketError, UnixAddr},
};

fn fast(writer: &mut LineWriter, record: RecordRef<'_>) -> String {
    let mut buf = Vec::new();
    writer.record(&mut buf, record).unwrap();
    String::from_utf8(buf).unwrap()
}

fn serde(record: RecordRef<'_>) -> String {
    serde_json::to_string(&record).unwrap() + "\n"
}

#[test]
fn real_events_come_out_as_serde_wrote_them() {
    let lines = include_str!("real-events.jsonl");
    let mut writer = LineWriter::default();
    let mut count = 0;
    for line in lines.lines() {
        let ev: Event = serde_json::from_str(line).unwrap();
        let written = fast(&mut writer, RecordRef::Event(&ev));
        assert_eq!(written, format!("{line}\n"));
        assert_eq!(written, serde(RecordRef::Event(&ev)));
        count += 1;
    }
    assert!(count >= 100, "{count} real events");
}

/// xorshift64*: made-up events that are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn maybe<T>(&mut self, make: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        self.chance().then(|| make(self))
    }

    /// Any integer of the type, small ones and the extremes more often.
    fn int<T: TryFrom<i128> + Copy>(&mut self, min: T, max: T) -> T
    where
        i128: From<T>,
    {
        let (lo, hi) = (i128::from(min), i128::from(max));
        let n = match self.below(4) {
            0 => lo,
            1 => hi,
            2 => (self.below(100) as i128).clamp(lo, hi),
            _ => lo + (self.next() as i128) % (hi - lo + 1),
        };
        T::try_from(n).unwrap_or(min)
    }

    /// A constant's name: any string, as a recording read back may hold.
    fn name(&mut self) -> Name {
        self.string().into()
    }

    /// Plain names most of the time; also every escape serde_json writes, quotes, backslashes,
    /// DEL, non-ASCII and an empty string.
    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "AF_INET",
            "SOCK_STREAM",
            "nginx",
            "/run/x.sock",
            "\"",
            "\\",
            "\n",
            "\t",
            "\r",
            "\u{8}",
            "\u{c}",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            "é",
            "🦀",
            "/",
            " ",
            "",
        ];
        let n = self.below(4);
        (0..n).map(|_| PIECES[self.below(PIECES.len() as u64) as usize]).collect()
    }

    fn ts(&mut self) -> DateTime<Utc> {
        let secs: i64 = match self.below(8) {
            // Before 1970, after 9999 (chrono writes a sign), and the last second of 9999.
            0 => -self.int(0, 70_000_000_000_i64),
            1 => 253_402_300_800 + self.int(0, 1_000_000_000_i64),
            2 => 253_402_300_799,
            // Mostly a few distinct seconds: the date cache is used and renewed.
            _ => 1_764_650_000 + self.int(0, 3_i64),
        };
        // Now and then a leap second (chrono: nanoseconds past 1e9 at hh:mm:59).
        let nanos = match self.below(10) {
            0 => 1_000_000_000 + self.int(0, 999_999_999_u32),
            _ => self.int(0, 999_999_999_u32),
        };
        let secs = if nanos >= 1_000_000_000 { secs - secs.rem_euclid(60) + 59 } else { secs };
        DateTime::from_timestamp(secs, nanos)
            .or_else(|| DateTime::from_timestamp(secs, 0))
            .unwrap_or_default()
    }

    fn addr(&mut self) -> SockAddr {
        let known = match self.below(8) {
            0 => KnownAddr::Inet { ip: (self.next() as u32).into(), port: self.int(0, u16::MAX) },
            1 => KnownAddr::Inet6 {
                ip: (u128::from(self.next()) << self.below(64)).into(),
                port: self.int(0, u16::MAX),
                scope_id: self.int(0, u32::MAX),
                flowinfo: self.int(0, u32::MAX),
            },
            2 => KnownAddr::Unix(UnixAddr {
                path: self.maybe(Rng::string),
                abstract_name: self.maybe(Rng::string),
            }),
            3 => KnownAddr::Vsock { cid: self.int(0, u32::MAX), port: self.int(0, u32::MAX) },
            4 => {
                KnownAddr::Netlink { portid: self.int(0, u32::MAX), groups: self.int(0, u32::MAX) }
            }
            5 => KnownAddr::Packet {
                protocol: self.name(),
                ifindex: self.int(i32::MIN, i32::MAX),
                hatype: self.int(0, u16::MAX),
                pkttype: self.int(0, u8::MAX),
                addr: self.string(),
            },
            6 => KnownAddr::Unspec {},
            _ => return SockAddr::Other { family: self.name(), hex: self.string() },
        };
        SockAddr::Known(known)
    }

    fn value(&mut self) -> OptValue {
        match self.below(6) {
            0 => OptValue::Int(self.int(i64::MIN, i64::MAX)),
            1 => OptValue::Name(self.name()),
            2 => OptValue::Cred {
                pid: self.int(i32::MIN, i32::MAX),
                uid: self.int(0, u32::MAX),
                gid: self.int(0, u32::MAX),
            },
            3 => OptValue::Linger {
                onoff: self.int(i32::MIN, i32::MAX),
                linger: self.int(i32::MIN, i32::MAX),
            },
            4 => OptValue::Timeval {
                sec: self.int(i64::MIN, i64::MAX),
                usec: self.int(i64::MIN, i64::MAX),
            },
            _ => OptValue::Bytes { hex: self.string(), truncated: self.chance() },
        }
    }

    fn args(&mut self) -> Args {
        Args {
            fd: self.maybe(|r| r.int(i32::MIN, i32::MAX)),
            addr: self.maybe(Rng::addr),
            addrlen: self.maybe(|r| r.int(0, u32::MAX)),
            domain: self.maybe(Rng::name),
            sock_type: self.maybe(Rng::name),
            protocol: self.maybe(Rng::name),
            flags: self.maybe(Rng::name),
            backlog: self.maybe(|r| r.int(i32::MIN, i32::MAX)),
            level: self.maybe(Rng::name),
            optname: self.maybe(Rng::name),
            optlen: self.maybe(|r| r.int(0, u32::MAX)),
            value: self.maybe(Rng::value),
            how: self.maybe(Rng::name),
            fds: self.maybe(|r| [r.int(i32::MIN, i32::MAX), r.int(i32::MIN, i32::MAX)]),
        }
    }

    fn errno(&mut self) -> Errno {
        // Named ones, kernel-internal ones and numbers without a name.
        Errno(match self.below(3) {
            0 => self.int(1, 133),
            1 => self.int(512, 530),
            _ => self.int(1, 4095),
        })
    }

    fn socket(&mut self) -> SocketInfo {
        SocketInfo {
            fd: self.maybe(|r| r.int(i32::MIN, i32::MAX)),
            family: self.name(),
            sock_type: self.maybe(Rng::name),
            protocol: self.maybe(Rng::name),
            flags: self.maybe(Rng::name),
            state: self.maybe(|r| match r.below(3) {
                0 => SockState::Connected,
                1 => SockState::Unconnected,
                // Named TCP states and numbers without a name.
                _ => SockState::tcp(r.int(0, u8::MAX)),
            }),
            local: self.maybe(Rng::addr),
            peer: self.maybe(Rng::addr),
            inode: self.maybe(|r| r.int(0, u64::MAX)),
            peer_inode: self.maybe(|r| r.int(0, u64::MAX)),
        }
    }

    fn finding(&mut self) -> Finding {
        Finding {
            id: self.string(),
            severity: [Severity::Info, Severity::Warning, Severity::Error][self.below(3) as usize],
            title: self.string(),
            fix: self.string(),
            detail: self.maybe(Rng::string),
        }
    }

    fn event(&mut self) -> Event {
        let syscalls = [Syscall::Socket, Syscall::Connect, Syscall::Getsockopt, Syscall::Close];
        let syscall = syscalls[self.below(syscalls.len() as u64) as usize];
        let ret = self.int(i64::MIN, i64::MAX);
        let mut ev = Event::made_up(
            self.ts(),
            self.int(0, u64::MAX),
            self.int(0, u32::MAX),
            self.int(0, u32::MAX),
            self.string(),
            syscall,
            self.args(),
            ret,
        );
        ev.uid = self.int(0, u32::MAX);
        ev.gid = self.int(0, u32::MAX);
        ev.cgroup_id = self.int(0, u64::MAX);
        ev.errno = self.maybe(Rng::errno);
        ev.duration_ns = self.maybe(|r| r.int(0, u64::MAX));
        ev.in_flight_at_attach = self.chance();
        ev.async_error = self.maybe(Rng::errno);
        ev.connect =
            self.maybe(|r| PendingConnect { addr: r.addr(), started_ns: r.int(0, u64::MAX) });
        ev.refused_by =
            self.maybe(|r| if r.chance() { RefusedBy::Seccomp } else { RefusedBy::Unknown });
        ev.ns = self.maybe(|r| Namespaces {
            net: r.int(0, u32::MAX),
            mnt: r.int(0, u32::MAX),
            pid: r.int(0, u32::MAX),
            user: r.int(0, u32::MAX),
            uts: r.int(0, u32::MAX),
        });
        ev.cgroup = self.maybe(Rng::string).map(Into::into);
        ev.sock = self.maybe(Rng::socket).map(Into::into);
        ev.anomalies = (0..self.below(3)).map(|_| self.finding()).collect();
        // Never written: must not change the line.
        ev.cap_effective = self.maybe(Rng::next);
        ev.context_only = self.chance();
        ev.bound = self.maybe(Rng::addr);
        ev.blocked = self.chance();
        ev
    }
}

#[test]
fn made_up_events_come_out_as_serde_writes_them() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut writer = LineWriter::default();
    for _ in 0..20_000 {
        let ev = rng.event();
        assert_eq!(
            fast(&mut writer, RecordRef::Event(&ev)),
            serde(RecordRef::Event(&ev)),
            "{ev:?}"
        );
    }
}

/// The caller's and the process's pieces are kept from the last event (`Memo`): events that
/// repeat the last one's but for one of their values, each value in turn, as a server's calls
/// do, come out as serde writes them (a stale piece would show here).
#[test]
fn pieces_kept_from_the_last_event_follow_every_change() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut writer = LineWriter::default();
    let mut ev = rng.event();
    for i in 0..20_000 {
        match rng.below(11) {
            0 => ev.pid = rng.int(0, u32::MAX),
            1 => ev.tid = rng.int(0, u32::MAX),
            2 => ev.comm = rng.string().into(),
            3 => ev.uid = rng.int(0, u32::MAX),
            4 => ev.gid = rng.int(0, u32::MAX),
            5 => ev.cgroup_id = rng.int(0, u64::MAX),
            6 => {
                ev.ns = rng
                    .maybe(|r| Namespaces { net: r.int(0, u32::MAX), ..ev.ns.unwrap_or_default() })
            }
            7 => ev.cgroup = rng.maybe(Rng::string).map(Into::into),
            // The same path in another allocation: kept bytes stay right.
            8 => ev.cgroup = ev.cgroup.as_deref().map(Into::into),
            9 => ev.ts_ns = rng.int(0, u64::MAX),
            // A new event altogether.
            _ => ev = rng.event(),
        }
        let written = fast(&mut writer, RecordRef::Event(&ev));
        assert_eq!(written, serde(RecordRef::Event(&ev)), "event {i}: {ev:?}");
        // The same event again: every piece from the kept bytes.
        assert_eq!(fast(&mut writer, RecordRef::Event(&ev)), written, "event {i} again");
    }
}

#[test]
fn other_records_are_serde_s() {
    let ts = DateTime::from_timestamp(1_764_650_000, 5).unwrap();
    let loss = Loss { ts, lost: 3, total_lost: 7, ..Loss::default() };
    let exit = ProcessExit {
        ts,
        ts_ns: 9,
        pid: 4242,
        comm: "a\"b".into(),
        code: Some(3),
        signal: None,
        core_dumped: false,
    };
    let snap = Snapshot { ts, pid: 1, comm: "x".into(), sockets: vec![SocketInfo::default()] };
    let error = SocketError {
        ts,
        ts_ns: 1,
        pid: 2,
        tid: 3,
        comm: String::new(),
        fd: 4,
        sock: None,
        error: Errno(111),
        connect: None,
        ns: None,
        anomalies: Vec::new(),
    };
    let mut writer = LineWriter::default();
    for record in [
        RecordRef::Loss(&loss),
        RecordRef::Exit(&exit),
        RecordRef::Snapshot(&snap),
        RecordRef::SocketError(&error),
    ] {
        let line = fast(&mut writer, record);
        assert_eq!(line, serde(record));
        assert!(line.starts_with("{\"type\":"), "{line}");
    }
}

/// `s` written by `Cursor::plain_string` after `prefix`, into a Vec of no spare capacity (so
/// every write grows it): the bytes, and whether it took `s`.
fn plain_string(prefix: &[u8], s: &[u8]) -> (Vec<u8>, bool) {
    let mut buf = prefix.to_vec();
    buf.shrink_to_fit();
    let took = Cursor::new(&mut buf).plain_string(s);
    (buf, took)
}

/// The copy's word-at-a-time test agrees with the byte rule for every byte value at every
/// position of strings of 1 to 40 bytes (each size class of the copy and their edges), among
/// plain bytes and bytes just around the limits; a plain string is copied whole between quotes,
/// anything else leaves the line as it was.
#[test]
fn plain_string_agrees_with_the_byte_rule() {
    let byte_rule = |s: &[u8]| s.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\');
    for filler in [b'a', b'!', b']', 0x7f, 0xff] {
        for len in 1..=40 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut s = vec![filler; len];
                    s[at] = c;
                    let (line, took) = plain_string(b"{", &s);
                    assert_eq!(took, byte_rule(&s), "{c:#x} at {at} of {len} in {filler:#x}");
                    let expected =
                        if took { [&b"{\""[..], &s, b"\""].concat() } else { b"{".to_vec() };
                    assert_eq!(line, expected, "{c:#x} at {at} of {len} in {filler:#x}");
                }
            }
        }
    }
    assert_eq!(plain_string(b"", b""), (b"\"\"".to_vec(), true));
}

/// Strings of every length from 0 to 40, plain or with a character to escape (at the start,
/// the middle, the end), ASCII or not, as serde_json writes them.
#[test]
fn strings_of_every_length_as_serde_writes_them() {
    for len in 0..=40 {
        let plain: String =
            "abcdefghijklmnopqrstuvwxyz0123456789-_/.".chars().cycle().take(len).collect();
        let mut cases = vec![plain.clone(), plain.replace('a', "\u{e9}")];
        for escaped in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}'] {
            for at in [0, len / 2, len.saturating_sub(1)] {
                let mut s: Vec<char> = plain.chars().collect();
                if let Some(c) = s.get_mut(at) {
                    *c = escaped;
                }
                cases.push(s.into_iter().collect());
            }
        }
        for s in cases {
            let mut buf = b"x".to_vec();
            string(&mut Cursor::new(&mut buf), &s);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                format!("x{}", serde_json::to_string(&s).unwrap()),
                "{s:?}"
            );
        }
    }
}

/// Integers of every digit count, at its edges, negative ones and the types' limits, as
/// serde_json writes them; the timestamp's nine digits zero-padded.
#[test]
fn integers_of_every_digit_count_as_serde_writes_them() {
    let mut unsigned = vec![0, u64::MAX, u64::from(u32::MAX), u64::from(u16::MAX)];
    let mut rng = Rng(0x1234_5678);
    for digits in 1..=19 {
        let low = 10_u64.pow(digits - 1);
        unsigned.extend([low, low + 1, 10 * low - 1, low + rng.below(9 * low)]);
    }
    unsigned.extend([10_u64.pow(19), 10_u64.pow(19) + 7]);
    for n in unsigned {
        let mut buf = Vec::new();
        Cursor::new(&mut buf).uint(n);
        assert_eq!(buf, serde_json::to_vec(&n).unwrap(), "{n}");
    }
    let mut signed = vec![i64::MIN, i64::MAX, i64::from(i32::MIN), i64::from(i32::MAX), -1, 0];
    for digits in 1..=18 {
        let low = 10_i64.pow(digits - 1);
        signed.extend([low, -low, 10 * low - 1, -(10 * low - 1), -(low + 1)]);
    }
    for n in signed {
        let mut buf = b"[".to_vec();
        Cursor::new(&mut buf).int(n);
        assert_eq!(buf, [&b"["[..], &serde_json::to_vec(&n).unwrap()].concat(), "{n}");
    }
    for n in [0, 7, 10, 99, 100, 12_345, 100_000_000, 999_999_999] {
        let mut buf = Vec::new();
        Cursor::new(&mut buf).nine_digits(n);
        assert_eq!(String::from_utf8(buf).unwrap(), format!("{n:09}"));
    }
}

/// The portable word trick (what other architectures use instead of SSE2) agrees with the
/// byte rule for every byte value in every lane, among plain bytes and bytes near the limits.
#[test]
fn word_trick_agrees_with_the_byte_rule() {
    let byte_rule = |s: &[u8]| s.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\');
    for filler in [b'a', b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff] {
        for at in 0..8 {
            for c in 0..=255u8 {
                let mut w = [filler; 8];
                w[at] = c;
                let word = u64::from_ne_bytes(w);
                assert_eq!(
                    cursor::special(word) == 0,
                    byte_rule(&w),
                    "{c:#x} at {at} in {filler:#x}"
                );
            }
        }
    }
}
