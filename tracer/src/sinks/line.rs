//! One JSON Lines record into a byte buffer. The `event` record, nearly every line of a trace,
//! is written by hand: the keys are static, numbers go through `itoa`, strings are copied as
//! they are unless they need escaping, and the timestamp's date and time are formatted once a
//! second. The derive-based serializer spent 10 k instructions an event on the same bytes,
//! most of the reader's time. Every other record goes through serde as before.
//!
//! The output is byte for byte what `serde_json::to_writer(&RecordRef::Event(ev))` writes:
//! key order, skipped keys, nulls and escapes (see the tests, and `docs/trace-format.md`).

use std::{io::Write as _, net::Ipv4Addr};

use chrono::{DateTime, SecondsFormat, Timelike as _, Utc};

use crate::{
    decode::{errno::Errno, state::SockState},
    event::{
        Args, Event, Finding, KnownAddr, OptValue, PendingConnect, RecordRef, RefusedBy, Severity,
        SockAddr, SocketInfo,
    },
};

/// Writes records as JSON lines; keeps the formatted date and time of the last second seen.
#[derive(Default)]
pub struct LineWriter {
    /// Unix time of `second`, and its `YYYY-MM-DDTHH:MM:SS`.
    last_second: Option<i64>,
    second: Vec<u8>,
}

impl LineWriter {
    /// Appends `record` and its `\n` to `buf`.
    pub fn record(&mut self, buf: &mut Vec<u8>, record: RecordRef<'_>) -> serde_json::Result<()> {
        match record {
            RecordRef::Event(ev) => self.event(buf, ev),
            _ => serde_json::to_writer(&mut *buf, &record)?,
        }
        buf.push(b'\n');
        Ok(())
    }

    fn event(&mut self, b: &mut Vec<u8>, ev: &Event) {
        b.extend_from_slice(br#"{"type":"event","ts":"#);
        self.ts(b, ev.ts);
        key_u64(b, br#","ts_ns":"#, ev.ts_ns);
        key_u64(b, br#","pid":"#, ev.pid.into());
        key_u64(b, br#","tid":"#, ev.tid.into());
        b.extend_from_slice(br#","comm":"#);
        string(b, &ev.comm);
        key_u64(b, br#","uid":"#, ev.uid.into());
        key_u64(b, br#","gid":"#, ev.gid.into());
        key_u64(b, br#","cgroup_id":"#, ev.cgroup_id);
        b.extend_from_slice(br#","syscall":"#);
        string(b, ev.syscall.name());
        b.extend_from_slice(br#","args":"#);
        args(b, &ev.args);
        b.extend_from_slice(br#","ret":"#);
        int(b, ev.ret);
        b.extend_from_slice(br#","errno":"#);
        match ev.errno {
            Some(errno) => self::errno(b, errno),
            None => b.extend_from_slice(b"null"),
        }
        b.extend_from_slice(br#","duration_ns":"#);
        match ev.duration_ns {
            Some(ns) => int(b, ns),
            None => b.extend_from_slice(b"null"),
        }
        if ev.in_flight_at_attach {
            b.extend_from_slice(br#","in_flight_at_attach":true"#);
        }
        if let Some(errno) = ev.async_error {
            b.extend_from_slice(br#","async_error":"#);
            self::errno(b, errno);
        }
        if let Some(connect) = &ev.connect {
            b.extend_from_slice(br#","connect":"#);
            pending_connect(b, connect);
        }
        if let Some(by) = ev.refused_by {
            b.extend_from_slice(match by {
                RefusedBy::Seccomp => br#","refused_by":"seccomp""#.as_slice(),
                RefusedBy::Unknown => br#","refused_by":"unknown""#.as_slice(),
            });
        }
        if let Some(ns) = &ev.ns {
            key_u64(b, br#","ns":{"net":"#, ns.net.into());
            key_u64(b, br#","mnt":"#, ns.mnt.into());
            key_u64(b, br#","pid":"#, ns.pid.into());
            key_u64(b, br#","user":"#, ns.user.into());
            key_u64(b, br#","uts":"#, ns.uts.into());
            b.push(b'}');
        }
        if let Some(cgroup) = &ev.cgroup {
            b.extend_from_slice(br#","cgroup":"#);
            string(b, cgroup);
        }
        if let Some(sock) = &ev.sock {
            b.extend_from_slice(br#","sock":"#);
            socket(b, sock);
        }
        if !ev.anomalies.is_empty() {
            b.extend_from_slice(br#","anomalies":["#);
            for (i, finding) in ev.anomalies.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                self::finding(b, finding);
            }
            b.push(b']');
        }
        b.push(b'}');
    }

    /// `"2026-11-21T11:02:03.104512345Z"`, as `rfc3339_ns` writes it.
    fn ts(&mut self, b: &mut Vec<u8>, ts: DateTime<Utc>) {
        let nanos = ts.nanosecond();
        let second = ts.timestamp();
        // Four-digit years only (chrono writes others with a sign), no leap second: the fast
        // path covers every clock this century; the rest are chrono's.
        if nanos >= 1_000_000_000 || !(0..=253_402_300_799).contains(&second) {
            return string(b, &ts.to_rfc3339_opts(SecondsFormat::Nanos, true));
        }
        if self.last_second != Some(second) {
            self.second.clear();
            let whole = ts.to_rfc3339_opts(SecondsFormat::Secs, true);
            self.second.extend_from_slice(&whole.as_bytes()[..19]);
            self.last_second = Some(second);
        }
        b.push(b'"');
        b.extend_from_slice(&self.second);
        b.push(b'.');
        // Nine digits, zero-padded.
        let mut digits = [b'0'; 9];
        let mut n = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        b.extend_from_slice(&digits);
        b.extend_from_slice(b"Z\"");
    }
}

fn int(b: &mut Vec<u8>, n: impl itoa::Integer) {
    b.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `{"a":1,"b":2}`, the keys given with their punctuation.
fn int_pair(
    b: &mut Vec<u8>,
    (first, a): (&[u8], impl itoa::Integer),
    (second, c): (&[u8], impl itoa::Integer),
) {
    b.extend_from_slice(first);
    int(b, a);
    b.extend_from_slice(second);
    int(b, c);
    b.push(b'}');
}

fn key_u64(b: &mut Vec<u8>, key: &[u8], n: u64) {
    b.extend_from_slice(key);
    int(b, n);
}

/// A JSON string: copied as it is when nothing in it needs escaping (the usual case: names,
/// commands, paths), else escaped by serde_json itself. Inlined: ten calls an event.
#[inline]
fn string(b: &mut Vec<u8>, s: &str) {
    if plain(s.as_bytes()) {
        b.push(b'"');
        b.extend_from_slice(s.as_bytes());
        b.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(b, s);
    }
}

/// Nothing in `s` needs escaping: no control character (< 0x20), quote or backslash. Eight
/// bytes at a time with the "has a byte less than n" and "has a zero byte" word tricks: a
/// byte-by-byte test was a tenth of the reader.
fn plain(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Exact as a yes/no for any word (the lanes past the first hit may be wrong, not the answer).
    let less_than = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let special = |x: u64| {
        less_than(x, 0x20) | less_than(x ^ (ONES * 0x22), 1) | less_than(x ^ (ONES * 0x5c), 1)
    };
    let word_plain = |word: &[u8]| {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        special(u64::from_ne_bytes(w)) == 0
    };
    match s.len() {
        // Short names (`connect`, `AF_INET`): their first and last four bytes, overlapping, as
        // one word: no padded copy, no loop.
        4..8 => {
            let mut w = [0; 8];
            w[..4].copy_from_slice(&s[..4]);
            w[4..].copy_from_slice(&s[s.len() - 4..]);
            special(u64::from_ne_bytes(w)) == 0
        }
        0..4 => s.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\'),
        // The whole words, then the last eight bytes (overlapping them): the tail without a
        // copy.
        _ => s.chunks_exact(8).all(word_plain) && word_plain(&s[s.len() - 8..]),
    }
}

fn errno(b: &mut Vec<u8>, errno: Errno) {
    string(b, &errno.name());
}

/// `,"key":"value"` when the value is there.
fn opt_string(b: &mut Vec<u8>, key: &[u8], value: &Option<impl AsRef<str>>) {
    if let Some(value) = value {
        b.extend_from_slice(key);
        string(b, value.as_ref());
    }
}

/// `,"key":n` when the number is there.
fn opt_int(b: &mut Vec<u8>, key: &[u8], value: Option<impl itoa::Integer>) {
    if let Some(value) = value {
        b.extend_from_slice(key);
        int(b, value);
    }
}

/// An object of optional keys: each written with a leading comma, the first one's dropped.
fn object(b: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = b.len();
    fill(b);
    if b.len() == start {
        b.extend_from_slice(b"{}");
    } else {
        b[start] = b'{';
        b.push(b'}');
    }
}

fn args(b: &mut Vec<u8>, a: &Args) {
    object(b, |b| {
        opt_int(b, br#","fd":"#, a.fd);
        if let Some(addr) = &a.addr {
            b.extend_from_slice(br#","addr":"#);
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
            b.extend_from_slice(br#","value":"#);
            opt_value(b, value);
        }
        opt_string(b, br#","how":"#, &a.how);
        if let Some([first, second]) = a.fds {
            b.extend_from_slice(br#","fds":["#);
            int(b, first);
            b.push(b',');
            int(b, second);
            b.push(b']');
        }
    });
}

fn opt_value(b: &mut Vec<u8>, value: &OptValue) {
    match value {
        OptValue::Int(n) => int(b, *n),
        OptValue::Name(name) => string(b, name),
        OptValue::Cred { pid, uid, gid } => {
            b.extend_from_slice(br#"{"pid":"#);
            int(b, *pid);
            key_u64(b, br#","uid":"#, (*uid).into());
            key_u64(b, br#","gid":"#, (*gid).into());
            b.push(b'}');
        }
        OptValue::Linger { onoff, linger } => {
            int_pair(b, (br#"{"onoff":"#, *onoff), (br#","linger":"#, *linger));
        }
        OptValue::Timeval { sec, usec } => {
            int_pair(b, (br#"{"sec":"#, *sec), (br#","usec":"#, *usec));
        }
        OptValue::Bytes { hex, truncated } => {
            b.extend_from_slice(br#"{"hex":"#);
            string(b, hex);
            if *truncated {
                b.extend_from_slice(br#","truncated":true"#);
            }
            b.push(b'}');
        }
    }
}

fn ipv4(b: &mut Vec<u8>, ip: Ipv4Addr) {
    b.push(b'"');
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            b.push(b'.');
        }
        int(b, octet);
    }
    b.push(b'"');
}

fn sockaddr(b: &mut Vec<u8>, addr: &SockAddr) {
    let known = match addr {
        SockAddr::Known(known) => known,
        SockAddr::Other { family, hex } => {
            b.extend_from_slice(br#"{"family":"#);
            string(b, family);
            b.extend_from_slice(br#","hex":"#);
            string(b, hex);
            b.push(b'}');
            return;
        }
    };
    match known {
        KnownAddr::Inet { ip, port } => {
            b.extend_from_slice(br#"{"family":"AF_INET","ip":"#);
            ipv4(b, *ip);
            key_u64(b, br#","port":"#, (*port).into());
        }
        KnownAddr::Inet6 { ip, port, scope_id, flowinfo } => {
            b.extend_from_slice(br#"{"family":"AF_INET6","ip":""#);
            // Writing to a Vec cannot fail.
            let _ = write!(b, "{ip}");
            b.push(b'"');
            key_u64(b, br#","port":"#, (*port).into());
            key_u64(b, br#","scope_id":"#, (*scope_id).into());
            key_u64(b, br#","flowinfo":"#, (*flowinfo).into());
        }
        KnownAddr::Unix(unix) => {
            b.extend_from_slice(br#"{"family":"AF_UNIX""#);
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
            b.extend_from_slice(br#"{"family":"AF_PACKET","protocol":"#);
            string(b, protocol);
            b.extend_from_slice(br#","ifindex":"#);
            int(b, *ifindex);
            key_u64(b, br#","hatype":"#, (*hatype).into());
            key_u64(b, br#","pkttype":"#, (*pkttype).into());
            b.extend_from_slice(br#","addr":"#);
            string(b, addr);
        }
        KnownAddr::Unspec {} => b.extend_from_slice(br#"{"family":"AF_UNSPEC""#),
    }
    b.push(b'}');
}

fn nullable_sockaddr(b: &mut Vec<u8>, addr: &Option<SockAddr>) {
    match addr {
        Some(addr) => sockaddr(b, addr),
        None => b.extend_from_slice(b"null"),
    }
}

fn socket(b: &mut Vec<u8>, s: &SocketInfo) {
    object(b, |b| {
        opt_int(b, br#","fd":"#, s.fd);
        b.extend_from_slice(br#","family":"#);
        string(b, &s.family);
        opt_string(b, br#","type":"#, &s.sock_type);
        opt_string(b, br#","protocol":"#, &s.protocol);
        opt_string(b, br#","flags":"#, &s.flags);
        if let Some(state) = s.state {
            b.extend_from_slice(br#","state":"#);
            sock_state(b, state);
        }
        b.extend_from_slice(br#","local":"#);
        nullable_sockaddr(b, &s.local);
        b.extend_from_slice(br#","peer":"#);
        nullable_sockaddr(b, &s.peer);
        opt_int(b, br#","inode":"#, s.inode);
        opt_int(b, br#","peer_inode":"#, s.peer_inode);
    });
}

fn sock_state(b: &mut Vec<u8>, state: SockState) {
    match state.name() {
        Ok(name) => string(b, name),
        Err(n) => {
            b.extend_from_slice(b"\"STATE_");
            int(b, n);
            b.push(b'"');
        }
    }
}

fn pending_connect(b: &mut Vec<u8>, connect: &PendingConnect) {
    b.extend_from_slice(br#"{"addr":"#);
    sockaddr(b, &connect.addr);
    key_u64(b, br#","started_ns":"#, connect.started_ns);
    b.push(b'}');
}

fn finding(b: &mut Vec<u8>, f: &Finding) {
    b.extend_from_slice(br#"{"id":"#);
    string(b, &f.id);
    b.extend_from_slice(match f.severity {
        Severity::Info => br#","severity":"info","title":"#.as_slice(),
        Severity::Warning => br#","severity":"warning","title":"#.as_slice(),
        Severity::Error => br#","severity":"error","title":"#.as_slice(),
    });
    string(b, &f.title);
    b.extend_from_slice(br#","fix":"#);
    string(b, &f.fix);
    opt_string(b, br#","detail":"#, &f.detail);
    b.push(b'}');
}

#[cfg(test)]
mod tests;
