//! The typed event every stage after the source works on. Serialized, it is the JSON Lines
//! contract: field names here are what users' scripts read.

use std::{
    borrow::Cow,
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tracer_common::{Syscall, syscall::Outcome};

pub use self::records::{
    Blocked, Loss, LostDetail, ProcessExit, RecordRef, Snapshot, SocketError, is_zero,
};
use crate::{decode::errno::Errno, decode::state::SockState};

mod records;

/// A constant's name (`AF_INET`, `SOCK_STREAM`, `SOL_SOCKET`...): borrowed from the name tables
/// when decoded from the kernel, so an event, and the fd table's copy of a socket, allocates
/// nothing for it; owned when read back from a recording, or for a number without a name.
pub type Name = Cow<'static, str>;

/// A process's name (`comm`): inline up to 24 bytes, so the kernel's 15-byte names cost an
/// event no allocation; written and read as a plain JSON string.
pub type Comm = compact_str::CompactString;

/// One socket syscall, entry and exit together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time of the call's entry.
    #[serde(with = "rfc3339_ns")]
    pub ts: DateTime<Utc>,
    /// Kernel monotonic time of the entry, for ordering and deltas.
    pub ts_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub comm: Comm,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    #[serde(with = "syscall_name")]
    pub syscall: Syscall,
    pub args: Args,
    pub ret: i64,
    /// Set when the call failed.
    pub errno: Option<Errno>,
    /// Unknown (null) when the entry was not seen.
    pub duration_ns: Option<u64>,
    /// The call was already in progress when tracing started: arguments are unknown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_flight_at_attach: bool,
    /// The error this call reports on behalf of the socket, not its own: what a successful
    /// getsockopt(SO_ERROR) read, or the failure of a second connect after an EINPROGRESS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_error: Option<Errno>,
    /// The non-blocking connect whose outcome this call reports (`async_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<PendingConnect>,
    /// The call never entered the kernel: it was refused before the syscall tracepoints ran
    /// (its duration is unknown), by a seccomp filter when the thread runs under one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_by: Option<RefusedBy>,
    /// The caller's namespaces at the time of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<Namespaces>,
    /// The caller's cgroup (v2) path, e.g. `/system.slice/nginx.service`: shared with the
    /// cgroup table (serde's `rc` feature writes and reads it as a plain string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Arc<str>>,
    /// What the call's fd is (or, for socket/accept, the fd it returned): shared with the fd
    /// table, not copied per event (written and read as the plain object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock: Option<Arc<SocketInfo>>,
    /// The caller's effective capabilities at the time of the call, when the kernel could read
    /// them. Kept for the knowledge base, not written out.
    #[serde(skip)]
    pub cap_effective: Option<u64>,
    /// The filters hide this call; it only keeps the fd table current (never shown or written).
    #[serde(skip)]
    pub context_only: bool,
    /// The local end the kernel read from the socket as a connect returned (its ephemeral
    /// port): for the fd table, which puts it in `sock.local`.
    #[serde(skip)]
    pub bound: Option<SockAddr>,
    /// The inodes of a socketpair's two sockets, read by the kernel: for the fd table.
    #[serde(skip)]
    pub pair_inodes: Option<[u64; 2]>,
    /// Not a finished call: a call still in progress, seen as an event only for the rules
    /// (see [`Blocked::as_event`]); only rules that say `blocked = true` judge it.
    #[serde(skip)]
    pub blocked: bool,
    /// Knowledge-base rules this call matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<Finding>,
}

/// What refused a call before it entered the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefusedBy {
    /// The thread runs under a seccomp filter (`Seccomp:` 1 or 2 in /proc/PID/status).
    Seccomp,
    /// The thread runs under no seccomp filter: something else skipped the call.
    Unknown,
}

/// A knowledge-base rule that matched an event: what it means and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable rule id, e.g. `WSL-PEERCRED-ENOPROTOOPT`.
    pub id: String,
    pub severity: Severity,
    pub title: String,
    pub fix: String,
    /// What this occurrence adds to the rule's text (who holds the port, which listener...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How bad a finding is; ordered from the least to the most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`: tables align it with `{:<7}`.
        f.pad(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A connect that returned EINPROGRESS: where it was going and when it started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingConnect {
    pub addr: SockAddr,
    /// `ts_ns` of the connect.
    pub started_ns: u64,
}

/// Namespace inode numbers, as in `/proc/PID/ns/*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Namespaces {
    pub net: u32,
    pub mnt: u32,
    pub pid: u32,
    pub user: u32,
    pub uts: u32,
}

/// A socket as lsof or `ss` would describe it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SocketInfo {
    /// The fd in the process that holds it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    /// `AF_INET`, `AF_UNIX`...
    pub family: Name,
    /// `SOCK_STREAM`, `SOCK_DGRAM`...
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub sock_type: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Name>,
    /// Flags it was created with: `SOCK_NONBLOCK|SOCK_CLOEXEC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Name>,
    /// `LISTEN`, `ESTABLISHED`, `UNCONNECTED`, `SYN_SENT`, `CLOSE_WAIT`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SockState>,
    pub local: Option<SockAddr>,
    pub peer: Option<SockAddr>,
    /// The socket's inode (`socket:[N]` in /proc/PID/fd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// For AF_UNIX: the inode of the connected peer socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_inode: Option<u64>,
}

impl Event {
    /// How the call ended for the filters and the rules: as the kernel filters judge it
    /// ([`Syscall::outcome`]).
    pub fn outcome(&self) -> Outcome {
        self.syscall.outcome(self.ret, self.async_error.map_or(0, |e| e.0.into()))
    }

    /// The call failed, or reported a failure (SO_ERROR); a connect in progress did not fail.
    pub fn failed(&self) -> bool {
        self.outcome().failed
    }

    /// The errno the call failed with or reported (`-e` selects on it).
    pub fn outcome_errno(&self) -> Option<Errno> {
        u16::try_from(self.outcome().errno).ok().filter(|&e| e != 0).map(Errno)
    }

    /// A call made by the tracer's own reasoning, not read from the kernel (a blocked call, a
    /// socket error seen as the connect it ends): the given fields, no result details, nothing
    /// known of its caller beyond them.
    #[expect(clippy::too_many_arguments, reason = "one field each; a builder would add nothing")]
    pub fn made_up(
        ts: DateTime<Utc>,
        ts_ns: u64,
        pid: u32,
        tid: u32,
        comm: impl Into<Comm>,
        syscall: Syscall,
        args: Args,
        ret: i64,
    ) -> Event {
        Event {
            ts,
            ts_ns,
            pid,
            tid,
            comm: comm.into(),
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            syscall,
            args,
            ret,
            errno: Errno::from_ret(ret),
            duration_ns: None,
            in_flight_at_attach: false,
            async_error: None,
            connect: None,
            refused_by: None,
            ns: None,
            cgroup: None,
            sock: None,
            cap_effective: None,
            context_only: false,
            bound: None,
            pair_inodes: None,
            blocked: false,
            anomalies: Vec::new(),
        }
    }

    /// A call by `server[4242/4251]` at 00:00:00.104512 UTC that took 31us: tests change
    /// what they need with struct update syntax.
    #[cfg(test)]
    pub fn for_test(syscall: Syscall, args: Args, ret: i64) -> Event {
        let ts = DateTime::from_timestamp(0, 104_512_000).expect("a valid time");
        Event {
            cgroup_id: 1,
            duration_ns: Some(31_000),
            ..Event::made_up(ts, 1, 4242, 4251, "server", syscall, args, ret)
        }
    }
}

/// Decoded arguments; absent keys do not apply to the syscall.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Args {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<SockAddr>,
    /// The address length passed in (bind, connect) or reported back (accept, getsockname...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addrlen: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Name>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub sock_type: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Name>,
    /// `SOCK_CLOEXEC|SOCK_NONBLOCK` style flags (socket type flags, accept4 flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optname: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optlen: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<OptValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fds: Option<[i32; 2]>,
}

/// A socket address as the kernel saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SockAddr {
    Known(KnownAddr),
    /// A family wsltrace does not decode: the raw bytes after the family field.
    Other {
        family: Name,
        hex: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family")]
pub enum KnownAddr {
    #[serde(rename = "AF_INET")]
    Inet { ip: Ipv4Addr, port: u16 },
    #[serde(rename = "AF_INET6")]
    Inet6 { ip: Ipv6Addr, port: u16, scope_id: u32, flowinfo: u32 },
    #[serde(rename = "AF_UNIX")]
    Unix(UnixAddr),
    #[serde(rename = "AF_VSOCK")]
    Vsock { cid: u32, port: u32 },
    #[serde(rename = "AF_NETLINK")]
    Netlink { portid: u32, groups: u32 },
    #[serde(rename = "AF_PACKET")]
    Packet { protocol: Name, ifindex: i32, hatype: u16, pkttype: u8, addr: String },
    /// `AF_UNSPEC`: connect() to it dissolves a UDP association.
    #[serde(rename = "AF_UNSPEC")]
    Unspec {},
}

/// An AF_UNIX address: a filesystem path, an abstract name, or unnamed (neither key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixAddr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The abstract name, without its leading NUL; bytes that are not printable are escaped.
    #[serde(default, rename = "abstract", skip_serializing_if = "Option::is_none")]
    pub abstract_name: Option<String>,
}

/// A decoded socket option value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OptValue {
    Int(i64),
    /// A named constant: SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ERROR (an errno name).
    Name(Name),
    Cred {
        pid: i32,
        uid: u32,
        gid: u32,
    },
    Linger {
        onoff: i32,
        linger: i32,
    },
    Timeval {
        sec: i64,
        usec: i64,
    },
    /// Anything else, as hex; `truncated` when the value was longer than the copy.
    Bytes {
        hex: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
}

/// Serializes a time as RFC3339 in UTC with nanoseconds, e.g. `2026-11-21T11:02:03.104512345Z`.
pub(crate) mod rfc3339_ns {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Nanos, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod syscall_name {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(syscall: &Syscall, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(syscall.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Syscall, D::Error> {
        let name = String::deserialize(d)?;
        crate::decode::names::syscall_by_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown syscall {name:?}")))
    }
}
