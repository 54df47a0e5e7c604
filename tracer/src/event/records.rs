//! The records of the JSON stream besides events: calls still in progress, socket errors no
//! call asked for, losses, exits, snapshots; and `RecordRef`, one line of the stream.

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracer_common::Syscall;

use super::{
    Args, Comm, Event, Finding, Namespaces, PendingConnect, SocketInfo, rfc3339_ns, syscall_name,
};
use crate::decode::errno::Errno;

/// A traced call still in progress after `--blocked-after`: reported while it blocks, once per
/// call; its event follows when it returns. It has no result yet, so no `ret`/`errno`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    /// Wall-clock time of the call's entry.
    #[serde(with = "rfc3339_ns")]
    pub ts: DateTime<Utc>,
    /// Kernel monotonic time of the entry, as the call's event will carry it.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
    #[serde(with = "syscall_name")]
    pub syscall: Syscall,
    pub args: Args,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock: Option<Arc<SocketInfo>>,
    /// How long it had been in progress when it was reported.
    pub blocked_ns: u64,
    /// A non-blocking connect that returned EINPROGRESS and whose socket is still connecting
    /// (SYN_SENT): the program waits for it with poll/epoll, not in the call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nonblocking: bool,
    /// The call was in progress when tracing started: `ts` is that start and `blocked_ns`
    /// counts from it, a lower bound (since 1.4).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_flight_at_attach: bool,
    /// The caller's namespaces, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<Namespaces>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<Finding>,
}

impl Blocked {
    /// `ev`'s call, in progress for `blocked_ns`.
    #[cfg(test)]
    pub fn for_test(ev: Event, blocked_ns: u64) -> Blocked {
        Blocked {
            ts: ev.ts,
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            tid: ev.tid,
            comm: ev.comm,
            syscall: ev.syscall,
            args: ev.args,
            sock: ev.sock,
            blocked_ns,
            nonblocking: false,
            in_flight_at_attach: false,
            ns: ev.ns,
            anomalies: ev.anomalies,
        }
    }

    /// The call as an event without a result, for the filters and the rules.
    pub fn as_event(&self) -> Event {
        let (comm, args) = (self.comm.clone(), self.args.clone());
        let ev =
            Event::made_up(self.ts, self.ts_ns, self.pid, self.tid, comm, self.syscall, args, 0);
        Event {
            ns: self.ns,
            sock: self.sock.clone(),
            blocked: true,
            anomalies: self.anomalies.clone(),
            ..ev
        }
    }
}

/// Records the kernel could not deliver (ring buffer full) since the previous loss record.
/// `lost` counts the events the user asked for only: for each selected syscall, the events
/// delivered plus those lost are the calls made. What else was lost is counted apart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Loss {
    #[serde(with = "rfc3339_ns")]
    pub ts: DateTime<Utc>,
    /// Events of the selected calls lost.
    pub lost: u64,
    /// `lost` since tracing started.
    pub total_lost: u64,
    #[serde(flatten)]
    pub detail: LostDetail,
    /// Calls, selected or context, made meanwhile by threads the kernel had no slot for
    /// (more traced threads at once than it keeps, or `pid_max` raised during the trace):
    /// lost, but not for want of room in the ring. Live only, for the message's cause; the
    /// warning at the end of the trace says the rest.
    #[serde(skip)]
    pub without_slot: u64,
}

/// What a loss was made of, beyond the count of selected events (schema 1.2); summed in the
/// footer as they are in each loss record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LostDetail {
    /// `lost` by syscall name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lost_by_syscall: BTreeMap<String, u64>,
    /// Context records lost: calls the filters hide, sent only to say what the fds of the
    /// shown calls are; without them an fd may be described wrongly or not at all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_context: u64,
    /// `lost_context` by syscall name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lost_context_by_syscall: BTreeMap<String, u64>,
    /// Other records lost, by record type: `exit`, `socket_error`, and `fork` (a child the
    /// kernel still traces, whose parent is then unknown).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lost_records: BTreeMap<String, u64>,
}

impl Loss {
    /// What losing context records costs, said wherever their count is shown.
    pub const CONTEXT_COST: &str = "hidden calls sent only to say what fds are: the fds they created, named or closed may be described wrongly or not at all";

    /// Whether anything at all was lost.
    pub fn is_empty(&self) -> bool {
        self.lost == 0
            && self.detail.lost_context == 0
            && self.detail.lost_records.values().all(|n| *n == 0)
    }
}

impl LostDetail {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &LostDetail) {
        let add = |to: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>| {
            for (key, n) in from {
                *to.entry(key.clone()).or_default() += n;
            }
        };
        add(&mut self.lost_by_syscall, &other.lost_by_syscall);
        self.lost_context += other.lost_context;
        add(&mut self.lost_context_by_syscall, &other.lost_context_by_syscall);
        add(&mut self.lost_records, &other.lost_records);
    }
}

/// For `skip_serializing_if`: counts that are absent when zero.
pub fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A traced process ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessExit {
    #[serde(with = "rfc3339_ns")]
    pub ts: DateTime<Utc>,
    pub ts_ns: u64,
    pub pid: u32,
    pub comm: String,
    /// The exit code, for a process that exited (`exit(3)`: 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal that killed it (`SIGKILL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
}

/// The sockets a process held at one moment (taken when tracing starts), as lsof shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(with = "rfc3339_ns")]
    pub ts: DateTime<Utc>,
    pub pid: u32,
    pub comm: String,
    pub sockets: Vec<SocketInfo>,
}

/// A socket error the kernel reported on a socket a traced thread connected, without any call
/// asking for it (the program only polls, reads or writes): a refused or timed-out connect, a
/// reset. Judged as the failure of the connect it follows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SocketError {
    /// Wall-clock time of the report.
    #[serde(with = "rfc3339_ns")]
    pub ts: DateTime<Utc>,
    /// Kernel monotonic time of the report.
    pub ts_ns: u64,
    /// The process and thread that connected the socket.
    pub pid: u32,
    pub tid: u32,
    /// The process's command, as of its last event (empty when none was seen).
    #[serde(default)]
    pub comm: String,
    /// The fd the socket was connected through.
    pub fd: i32,
    /// What the fd is, from the fd table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock: Option<Arc<SocketInfo>>,
    /// The error (`sk_err`).
    pub error: Errno,
    /// The connect it follows: its destination and when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<PendingConnect>,
    /// The process's namespaces, for the knowledge base (not written out).
    #[serde(skip)]
    pub ns: Option<Namespaces>,
    /// Knowledge-base rules the failed connect matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<Finding>,
}

impl SocketError {
    /// The error seen as the connect on `fd` failing with it: what the filters and the rules
    /// judge (the same rules as a blocking connect that fails).
    pub fn as_failed_connect(&self) -> Event {
        let addr = self
            .connect
            .as_ref()
            .map(|c| c.addr.clone())
            .or_else(|| self.sock.as_ref().and_then(|s| s.peer.clone()));
        let ret = -i64::from(self.error.0);
        let args = Args { fd: Some(self.fd), addr, ..Args::default() };
        let comm = Comm::from(self.comm.as_str());
        let ev = Event::made_up(
            self.ts,
            self.ts_ns,
            self.pid,
            self.tid,
            comm,
            Syscall::Connect,
            args,
            ret,
        );
        Event { ns: self.ns, sock: self.sock.clone(), anomalies: self.anomalies.clone(), ..ev }
    }
}

/// One line of the JSON stream.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordRef<'a> {
    Event(&'a Event),
    Loss(&'a Loss),
    Exit(&'a ProcessExit),
    Snapshot(&'a Snapshot),
    SocketError(&'a SocketError),
    Blocked(&'a Blocked),
}
