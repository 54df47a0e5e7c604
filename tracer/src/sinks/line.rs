//! One JSON Lines record into a byte buffer. The `event` record, nearly every line of a trace,
//! is written by hand (through `cursor::Cursor`): the keys are static, numbers are written
//! straight into the line, strings are copied as they are unless they need escaping, the
//! timestamp's date and time are formatted once a second, and the caller's and the process's
//! pieces once per change of caller or process. The derive-based serializer spent 10 k
//! instructions an event on the same bytes, most of the reader's time. Every other record goes
//! through serde as before.
//!
//! The output is byte for byte what `serde_json::to_writer(&RecordRef::Event(ev))` writes:
//! key order, skipped keys, nulls and escapes (see the tests, and `docs/trace-format.md`).

use std::{io::Write as _, net::Ipv4Addr, sync::Arc};

use chrono::{DateTime, Datelike as _, NaiveDate, SecondsFormat, Timelike as _, Utc};

use self::cursor::{Cursor, Integer};
use crate::{
    decode::{errno::Errno, state::SockState},
    event::{
        Args, Comm, Event, Finding, KnownAddr, Namespaces, OptValue, PendingConnect, RecordRef,
        RefusedBy, Severity, SockAddr, SocketInfo,
    },
};

/// Writes records as JSON lines; keeps the formatted date and time of the last second seen,
/// and the pieces of the last event that the next one usually repeats (its socket's changes
/// too often to pay: tried, 70 instructions more per event on the mix).
pub struct LineWriter {
    /// The UTC date and second of the day of `second`, and its `"YYYY-MM-DDTHH:MM:SS.` (quote
    /// and dot included).
    last_second: Option<(NaiveDate, u32)>,
    second: [u8; 21],
    /// `,"pid":…,"cgroup_id":…`: the same for every call of a thread.
    caller: Memo<(CallerIds, Comm)>,
    /// `,"ns":{…},"cgroup":"…"`: the same for every call of a process.
    place: Memo<(Option<Namespaces>, Option<Arc<str>>)>,
}

impl Default for LineWriter {
    fn default() -> Self {
        let mut second = [0; 21];
        second[0] = b'"';
        second[20] = b'.';
        LineWriter { last_second: None, second, caller: Memo::default(), place: Memo::default() }
    }
}

/// An event's pid, tid, uid, gid and cgroup id.
type CallerIds = (u32, u32, u32, u32, u64);

/// A piece of a line as last written, and the values it was written from: while the events
/// carry the same values, the bytes are copied instead of formatted again (the caller's and
/// the process's pieces are ten numbers and two strings of every line).
struct Memo<K> {
    key: Option<K>,
    bytes: Vec<u8>,
}

impl<K> Default for Memo<K> {
    fn default() -> Self {
        Memo { key: None, bytes: Vec::new() }
    }
}

impl<K> Memo<K> {
    /// Appends the piece kept if `is_for` says its key is this event's, else the one `write`
    /// makes, then kept with `key()`.
    #[inline]
    fn put(
        &mut self,
        b: &mut Cursor<'_>,
        is_for: impl FnOnce(&K) -> bool,
        key: impl FnOnce() -> K,
        write: impl FnOnce(&mut Cursor<'_>),
    ) {
        if !self.key.as_ref().is_some_and(is_for) {
            self.bytes.clear();
            write(&mut Cursor::new(&mut self.bytes));
            self.key = Some(key());
        }
        b.bytes(&self.bytes);
    }
}

impl LineWriter {
    /// Appends `record` and its `\n` to `buf`.
    pub fn record(&mut self, buf: &mut Vec<u8>, record: RecordRef<'_>) -> serde_json::Result<()> {
        match record {
            RecordRef::Event(ev) => self.event(&mut Cursor::new(buf), ev),
            _ => serde_json::to_writer(&mut *buf, &record)?,
        }
        buf.push(b'\n');
        Ok(())
    }

    fn event(&mut self, b: &mut Cursor<'_>, ev: &Event) {
        b.bytes(br#"{"type":"event","ts":"#);
        self.ts(b, ev.ts);
        key_u64(b, br#","ts_ns":"#, ev.ts_ns);
        let ids = (ev.pid, ev.tid, ev.uid, ev.gid, ev.cgroup_id);
        self.caller.put(
            b,
            |(kept, comm)| *kept == ids && *comm == ev.comm,
            || (ids, ev.comm.clone()),
            |b| {
                key_u64(b, br#","pid":"#, ev.pid.into());
                key_u64(b, br#","tid":"#, ev.tid.into());
                b.bytes(br#","comm":"#);
                string(b, &ev.comm);
                key_u64(b, br#","uid":"#, ev.uid.into());
                key_u64(b, br#","gid":"#, ev.gid.into());
                key_u64(b, br#","cgroup_id":"#, ev.cgroup_id);
            },
        );
        b.bytes(br#","syscall":"#);
        string(b, ev.syscall.name());
        b.bytes(br#","args":"#);
        args(b, &ev.args);
        b.bytes(br#","ret":"#);
        int(b, ev.ret);
        b.bytes(br#","errno":"#);
        match ev.errno {
            Some(errno) => self::errno(b, errno),
            None => b.bytes(b"null"),
        }
        b.bytes(br#","duration_ns":"#);
        match ev.duration_ns {
            Some(ns) => int(b, ns),
            None => b.bytes(b"null"),
        }
        if ev.in_flight_at_attach {
            b.bytes(br#","in_flight_at_attach":true"#);
        }
        if let Some(errno) = ev.async_error {
            b.bytes(br#","async_error":"#);
            self::errno(b, errno);
        }
        if let Some(connect) = &ev.connect {
            b.bytes(br#","connect":"#);
            pending_connect(b, connect);
        }
        if let Some(by) = ev.refused_by {
            b.bytes(match by {
                RefusedBy::Seccomp => br#","refused_by":"seccomp""#.as_slice(),
                RefusedBy::Unknown => br#","refused_by":"unknown""#.as_slice(),
            });
        }
        self.place.put(
            b,
            |(ns, cgroup)| *ns == ev.ns && *cgroup == ev.cgroup,
            || (ev.ns, ev.cgroup.clone()),
            |b| {
                if let Some(ns) = &ev.ns {
                    key_u64(b, br#","ns":{"net":"#, ns.net.into());
                    key_u64(b, br#","mnt":"#, ns.mnt.into());
                    key_u64(b, br#","pid":"#, ns.pid.into());
                    key_u64(b, br#","user":"#, ns.user.into());
                    key_u64(b, br#","uts":"#, ns.uts.into());
                    b.byte(b'}');
                }
                if let Some(cgroup) = &ev.cgroup {
                    b.bytes(br#","cgroup":"#);
                    string(b, cgroup);
                }
            },
        );
        if let Some(sock) = &ev.sock {
            b.bytes(br#","sock":"#);
            socket(b, sock);
        }
        if !ev.anomalies.is_empty() {
            b.bytes(br#","anomalies":["#);
            for (i, finding) in ev.anomalies.iter().enumerate() {
                if i > 0 {
                    b.byte(b',');
                }
                self::finding(b, finding);
            }
            b.byte(b']');
        }
        b.byte(b'}');
    }

    /// `"2026-11-21T11:02:03.104512345Z"`, as `rfc3339_ns` writes it.
    fn ts(&mut self, b: &mut Cursor<'_>, ts: DateTime<Utc>) {
        // The UTC date and second of the day as stored (`ts.timestamp()` and `ts.nanosecond()`
        // went through the offset and a days-since-1970 sum, 60 instructions).
        let naive = ts.naive_utc();
        let nanos = naive.nanosecond();
        let second = (naive.date(), naive.num_seconds_from_midnight());
        // Years 1970 to 9999 only (chrono writes five-digit years with a sign), no leap second:
        // the fast path covers every clock this century; the rest are chrono's.
        if nanos >= 1_000_000_000 || !(1970..=9999).contains(&second.0.year()) {
            return string(b, &ts.to_rfc3339_opts(SecondsFormat::Nanos, true));
        }
        if self.last_second != Some(second) {
            let whole = ts.to_rfc3339_opts(SecondsFormat::Secs, true);
            self.second[1..20].copy_from_slice(&whole.as_bytes()[..19]);
            self.last_second = Some(second);
        }
        b.bytes(&self.second);
        b.nine_digits(nanos);
        b.bytes(b"Z\"");
    }
}

#[inline(always)]
fn int(b: &mut Cursor<'_>, n: impl Integer) {
    n.write(b);
}

/// `{"a":1,"b":2}`, the keys given with their punctuation.
fn int_pair(
    b: &mut Cursor<'_>,
    (first, a): (&[u8], impl Integer),
    (second, c): (&[u8], impl Integer),
) {
    b.bytes(first);
    int(b, a);
    b.bytes(second);
    int(b, c);
    b.byte(b'}');
}

#[inline(always)]
fn key_u64(b: &mut Cursor<'_>, key: &[u8], n: u64) {
    b.bytes(key);
    b.uint(n);
}

/// A JSON string: copied as it is when nothing in it needs escaping (the usual case: names,
/// commands, paths; checked as it is copied), else escaped by serde_json itself.
#[inline]
fn string(b: &mut Cursor<'_>, s: &str) {
    if !b.plain_string(s.as_bytes()) {
        escaped(b, s);
    }
}

/// Out of line: keeps `string` small enough to inline.
#[cold]
#[inline(never)]
fn escaped(b: &mut Cursor<'_>, s: &str) {
    // Writing to a Vec cannot fail.
    b.vec(|v| {
        let _ = serde_json::to_writer(v, s);
    });
}

fn errno(b: &mut Cursor<'_>, errno: Errno) {
    string(b, &errno.name());
}

/// `,"key":"value"` when the value is there.
fn opt_string(b: &mut Cursor<'_>, key: &[u8], value: &Option<impl AsRef<str>>) {
    if let Some(value) = value {
        b.bytes(key);
        string(b, value.as_ref());
    }
}

/// `,"key":n` when the number is there.
fn opt_int(b: &mut Cursor<'_>, key: &[u8], value: Option<impl Integer>) {
    if let Some(value) = value {
        b.bytes(key);
        int(b, value);
    }
}

/// An object of optional keys: each written with a leading comma, the first one's dropped.
fn object(b: &mut Cursor<'_>, fill: impl FnOnce(&mut Cursor<'_>)) {
    let start = b.pos();
    fill(b);
    if b.pos() == start {
        b.bytes(b"{}");
    } else {
        b.set(start, b'{');
        b.byte(b'}');
    }
}

fn args(b: &mut Cursor<'_>, a: &Args) {
    object(b, |b| {
        opt_int(b, br#","fd":"#, a.fd);
        if let Some(addr) = &a.addr {
            b.bytes(br#","addr":"#);
            sockaddr(b, addr);
        }
        opt_int(b, br#","addrlen":"#, a.addrlen);
        opt_string(b, br#","domain":"#, &a.domain);
        opt_string(b, br#","type":"#, &a.sock_type);
        opt_string(b, br#","protocol":"#, &a.protocol);
        opt_string(b, br#","flags":"#, &a.flags);
        opt_int(b, br#","backlog":"#, a.backlog);
        opt_string(b, br#","level":"#, &a.level);
        opt_string(b, br#","optname":"#, &a.optname);
        opt_int(b, br#","optlen":"#, a.optlen);
        if let Some(value) = &a.value {
            b.bytes(br#","value":"#);
            opt_value(b, value);
        }
        opt_string(b, br#","how":"#, &a.how);
        if let Some([first, second]) = a.fds {
            b.bytes(br#","fds":["#);
            int(b, first);
            b.byte(b',');
            int(b, second);
            b.byte(b']');
        }
    });
}

fn opt_value(b: &mut Cursor<'_>, value: &OptValue) {
    match value {
        OptValue::Int(n) => int(b, *n),
        OptValue::Name(name) => string(b, name),
        OptValue::Cred { pid, uid, gid } => {
            b.bytes(br#"{"pid":"#);
            int(b, *pid);
            key_u64(b, br#","uid":"#, (*uid).into());
            key_u64(b, br#","gid":"#, (*gid).into());
            b.byte(b'}');
        }
        OptValue::Linger { onoff, linger } => {
            int_pair(b, (br#"{"onoff":"#, *onoff), (br#","linger":"#, *linger));
        }
        OptValue::Timeval { sec, usec } => {
            int_pair(b, (br#"{"sec":"#, *sec), (br#","usec":"#, *usec));
        }
        OptValue::Bytes { hex, truncated } => {
            b.bytes(br#"{"hex":"#);
            string(b, hex);
            if *truncated {
                b.bytes(br#","truncated":true"#);
            }
            b.byte(b'}');
        }
    }
}

fn ipv4(b: &mut Cursor<'_>, ip: Ipv4Addr) {
    b.byte(b'"');
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            b.byte(b'.');
        }
        int(b, octet);
    }
    b.byte(b'"');
}

fn sockaddr(b: &mut Cursor<'_>, addr: &SockAddr) {
    let known = match addr {
        SockAddr::Known(known) => known,
        SockAddr::Other { family, hex } => {
            b.bytes(br#"{"family":"#);
            string(b, family);
            b.bytes(br#","hex":"#);
            string(b, hex);
            b.byte(b'}');
            return;
        }
    };
    match known {
        KnownAddr::Inet { ip, port } => {
            b.bytes(br#"{"family":"AF_INET","ip":"#);
            ipv4(b, *ip);
            key_u64(b, br#","port":"#, (*port).into());
        }
        KnownAddr::Inet6 { ip, port, scope_id, flowinfo } => {
            b.bytes(br#"{"family":"AF_INET6","ip":""#);
            // Writing to a Vec cannot fail.
            b.vec(|v| {
                let _ = write!(v, "{ip}");
            });
            b.byte(b'"');
            key_u64(b, br#","port":"#, (*port).into());
            key_u64(b, br#","scope_id":"#, (*scope_id).into());
            key_u64(b, br#","flowinfo":"#, (*flowinfo).into());
        }
        KnownAddr::Unix(unix) => {
            b.bytes(br#"{"family":"AF_UNIX""#);
            opt_string(b, br#","path":"#, &unix.path);
            opt_string(b, br#","abstract":"#, &unix.abstract_name);
        }
        KnownAddr::Vsock { cid, port } => {
            key_u64(b, br#"{"family":"AF_VSOCK","cid":"#, (*cid).into());
            key_u64(b, br#","port":"#, (*port).into());
        }
        KnownAddr::Netlink { portid, groups } => {
            key_u64(b, br#"{"family":"AF_NETLINK","portid":"#, (*portid).into());
            key_u64(b, br#","groups":"#, (*groups).into());
        }
        KnownAddr::Packet { protocol, ifindex, hatype, pkttype, addr } => {
            b.bytes(br#"{"family":"AF_PACKET","protocol":"#);
            string(b, protocol);
            b.bytes(br#","ifindex":"#);
            int(b, *ifindex);
            key_u64(b, br#","hatype":"#, (*hatype).into());
            key_u64(b, br#","pkttype":"#, (*pkttype).into());
            b.bytes(br#","addr":"#);
            string(b, addr);
        }
        KnownAddr::Unspec {} => b.bytes(br#"{"family":"AF_UNSPEC""#),
    }
    b.byte(b'}');
}

fn nullable_sockaddr(b: &mut Cursor<'_>, addr: &Option<SockAddr>) {
    match addr {
        Some(addr) => sockaddr(b, addr),
        None => b.bytes(b"null"),
    }
}

fn socket(b: &mut Cursor<'_>, s: &SocketInfo) {
    object(b, |b| {
        opt_int(b, br#","fd":"#, s.fd);
        b.bytes(br#","family":"#);
        string(b, &s.family);
        opt_string(b, br#","type":"#, &s.sock_type);
        opt_string(b, br#","protocol":"#, &s.protocol);
        opt_string(b, br#","flags":"#, &s.flags);
        if let Some(state) = s.state {
            b.bytes(br#","state":"#);
            sock_state(b, state);
        }
        b.bytes(br#","local":"#);
        nullable_sockaddr(b, &s.local);
        b.bytes(br#","peer":"#);
        nullable_sockaddr(b, &s.peer);
        opt_int(b, br#","inode":"#, s.inode);
        opt_int(b, br#","peer_inode":"#, s.peer_inode);
    });
}

fn sock_state(b: &mut Cursor<'_>, state: SockState) {
    match state.name() {
        Ok(name) => string(b, name),
        Err(n) => {
            b.bytes(b"\"STATE_");
            int(b, n);
            b.byte(b'"');
        }
    }
}

fn pending_connect(b: &mut Cursor<'_>, connect: &PendingConnect) {
    b.bytes(br#"{"addr":"#);
    sockaddr(b, &connect.addr);
    key_u64(b, br#","started_ns":"#, connect.started_ns);
    b.byte(b'}');
}

fn finding(b: &mut Cursor<'_>, f: &Finding) {
    b.bytes(br#"{"id":"#);
    string(b, &f.id);
    b.bytes(match f.severity {
        Severity::Info => br#","severity":"info","title":"#.as_slice(),
        Severity::Warning => br#","severity":"warning","title":"#.as_slice(),
        Severity::Error => br#","severity":"error","title":"#.as_slice(),
    });
    string(b, &f.title);
    b.bytes(br#","fix":"#);
    string(b, &f.fix);
    opt_string(b, br#","detail":"#, &f.detail);
    b.byte(b'}');
}

mod cursor;
#[cfg(test)]
mod tests;
