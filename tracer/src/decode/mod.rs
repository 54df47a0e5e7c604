//! Raw kernel records -> typed [`Event`]s.

pub mod errno;
pub mod names;
pub mod sockaddr;
pub mod sockopt;
pub mod state;
mod strerror;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use nix::time::{ClockId, clock_gettime};
use tracer_common::{
    PendingCall, ProcessRecord, Syscall, SyscallHead, SyscallView,
    record::{
        FLAG_CAPS, FLAG_CONTEXT, FLAG_FROM_SOCKET, FLAG_NO_ARGS, FLAG_NO_ENTRY, FLAG_REFUSED,
        FLAG_SECCOMP, SocketErrorRecord,
    },
};

use crate::event::{Args, Blocked, Comm, Event, Namespaces, ProcessExit, RefusedBy, SocketError};
use errno::Errno;
use names::{
    FAMILIES, LEVELS, SHUTDOWN_HOW, SOCK_FLAG_SETS, SOCK_FLAGS, SOCK_TYPE_MASK, SOCK_TYPES, flags,
    name_or_number, options_at, protocols_of,
};

/// Converts kernel timestamps (CLOCK_MONOTONIC, what bpf_ktime_get_ns returns) to wall time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// realtime - monotonic, in ns, sampled once at start.
    offset_ns: i128,
}

const NS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

impl Clock {
    pub fn now() -> anyhow::Result<Self> {
        let mono = clock_gettime(ClockId::CLOCK_MONOTONIC)?;
        let real = clock_gettime(ClockId::CLOCK_REALTIME)?;
        let ns = |t: nix::sys::time::TimeSpec| {
            i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
        };
        Ok(Clock { offset_ns: ns(real) - ns(mono) })
    }

    /// Wall time = kernel time + `offset_ns`.
    #[cfg(test)]
    pub fn with_offset(offset_ns: i128) -> Self {
        Clock { offset_ns }
    }

    fn wall_ns(&self, ktime_ns: u64) -> i64 {
        i64::try_from(i128::from(ktime_ns) + self.offset_ns).unwrap_or(i64::MAX)
    }

    pub fn wall(&self, ktime_ns: u64) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.wall_ns(ktime_ns))
    }

    /// What [`Clock::wall`] gives, with the date taken from `recent` when the day is the one
    /// it holds (chrono's calendar is worked out once a day, not for every event).
    pub fn wall_within(&self, ktime_ns: u64, recent: &mut Recent) -> DateTime<Utc> {
        let ns = self.wall_ns(ktime_ns);
        let (secs, nanos) = (ns.div_euclid(NS_PER_SEC), ns.rem_euclid(NS_PER_SEC) as u32);
        let (days, in_day) = (secs.div_euclid(SECS_PER_DAY), secs.rem_euclid(SECS_PER_DAY) as u32);
        let date = match recent.day {
            Some((day, date)) if day == days => date,
            _ => {
                let date = DateTime::from_timestamp_nanos(ns).date_naive();
                recent.day = Some((days, date));
                date
            }
        };
        match NaiveTime::from_num_seconds_from_midnight_opt(in_day, nanos) {
            Some(time) => NaiveDateTime::new(date, time).and_utc(),
            None => DateTime::from_timestamp_nanos(ns),
        }
    }
}

/// What the reader decoded last, kept for the next record: its day's date, the comm the
/// kernel sent and its text (a process's calls come in runs), the event's box once used.
#[derive(Debug, Default)]
pub struct Recent {
    day: Option<(i64, NaiveDate)>,
    comm: ([u8; 16], Comm),
    /// The box of an event the pipeline is done with, for the next event.
    spare: Option<Box<Event>>,
}

impl Recent {
    /// `ev` has been through the pipeline: its box carries the next event.
    pub fn recycle(&mut self, ev: Box<Event>) {
        self.spare = Some(ev);
    }

    /// `raw` as text, decoded again only when it is not the last one's.
    fn comm(&mut self, raw: &[u8; 16]) -> Comm {
        if *raw != self.comm.0 {
            self.comm = (*raw, comm_inline(raw));
        }
        self.comm.1.clone()
    }
}

/// The NUL-terminated comm as text.
pub fn comm(raw: &[u8]) -> String {
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// The NUL-terminated comm as an event's [`Comm`]: inline, no allocation for a kernel name.
pub fn comm_inline(raw: &[u8]) -> Comm {
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    Comm::from_utf8_lossy(&raw[..end])
}

/// Decodes a process exit, with its status as wait(2) reports it when the kernel could read it.
pub fn exit(rec: &ProcessRecord, clock: &Clock) -> ProcessExit {
    let mut exit = ProcessExit {
        ts: clock.wall(rec.ts_ns),
        ts_ns: rec.ts_ns,
        pid: rec.tgid,
        comm: comm(&rec.comm),
        code: None,
        signal: None,
        core_dumped: false,
    };
    if rec.flags & ProcessRecord::STATUS_KNOWN != 0 {
        let status = rec.exit_status;
        match status & 0x7f {
            0 => exit.code = Some(((status >> 8) & 0xff) as i32),
            signal => {
                exit.signal = Some(signal_name(signal));
                exit.core_dumped = status & 0x80 != 0;
            }
        }
    }
    exit
}

/// A socket error report; what the fd is and the connect it follows come from the fd table.
pub fn socket_error(rec: &SocketErrorRecord, clock: &Clock) -> SocketError {
    SocketError {
        ts: clock.wall(rec.ts_ns),
        ts_ns: rec.ts_ns,
        pid: rec.tgid,
        tid: rec.tid,
        comm: String::new(),
        fd: rec.fd as i32,
        sock: None,
        error: Errno(u16::try_from(rec.error).unwrap_or(u16::MAX)),
        connect: None,
        ns: None,
        anomalies: Vec::new(),
    }
}

/// `SIGKILL`; `SIG40` for a real-time signal.
fn signal_name(signal: u32) -> String {
    match nix::sys::signal::Signal::try_from(signal as i32) {
        Ok(signal) => signal.as_str().to_owned(),
        Err(_) => format!("SIG{signal}"),
    }
}

/// Decodes one syscall record; `None` for an unknown syscall id (a newer kernel object).
/// Boxed where it is made: the event is large and passed on by pointer (see `source::Record`).
pub fn decode(view: &SyscallView<'_>, clock: &Clock) -> Option<Box<Event>> {
    decode_after(view, clock, &mut Recent::default())
}

/// [`decode`], for a record that follows those `recent` has seen (the reader's stream).
pub fn decode_after(
    view: &SyscallView<'_>,
    clock: &Clock,
    recent: &mut Recent,
) -> Option<Box<Event>> {
    let rec = &view.head;
    let syscall = Syscall::from_id(rec.syscall)?;
    let no_entry = rec.flags & FLAG_NO_ENTRY != 0;
    let refused_by = (rec.flags & FLAG_REFUSED != 0).then_some(if rec.flags & FLAG_SECCOMP != 0 {
        RefusedBy::Seccomp
    } else {
        RefusedBy::Unknown
    });
    let args_known = !no_entry && rec.flags & FLAG_NO_ARGS == 0;
    let from_socket = rec.flags & FLAG_FROM_SOCKET != 0;
    let (ts, comm) = (clock.wall_within(rec.ts_ns, recent), recent.comm(&rec.comm));
    let bound = (syscall == Syscall::Connect && from_socket)
        .then(|| sockaddr::decode(view.value_copied()))
        .flatten();
    let pair_inodes = (syscall == Syscall::Socketpair && from_socket).then(|| {
        let ino = |at: usize| {
            view.value.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_ne_bytes)
        };
        [ino(8), ino(16)]
    });
    let (ts_ns, pid, tid, uid, gid, cgroup_id, ret) =
        (rec.ts_ns, rec.tgid, rec.tid, rec.uid, rec.gid, rec.cgroup_id, rec.ret);
    let errno = Errno::from_ret(ret);
    let duration_ns = (!no_entry && refused_by.is_none()).then_some(rec.duration_ns);
    // All zero when the kernel layout is unknown: the enrich stage falls back to /proc.
    let ns = (rec.ns.net != 0).then_some(Namespaces {
        net: rec.ns.net,
        mnt: rec.ns.mnt,
        pid: rec.ns.pid,
        user: rec.ns.user,
        uts: rec.ns.uts,
    });
    let cap_effective = (rec.flags & FLAG_CAPS != 0).then_some(rec.cap_effective);
    let context_only = rec.flags & FLAG_CONTEXT != 0;
    let mut ev = match recent.spare.take() {
        // The last event's box, given back by the pipeline: written over field by field (no
        // allocation, no free). Every field is named here, so one added to `Event` and not
        // set fails the build (an unused binding).
        Some(mut spare) => {
            let Event {
                ts: ts_,
                ts_ns: ts_ns_,
                pid: pid_,
                tid: tid_,
                comm: comm_,
                uid: uid_,
                gid: gid_,
                cgroup_id: cgroup_id_,
                syscall: syscall_,
                args: args_,
                ret: ret_,
                errno: errno_,
                duration_ns: duration_ns_,
                in_flight_at_attach: in_flight_at_attach_,
                async_error: async_error_,
                connect: connect_,
                refused_by: refused_by_,
                ns: ns_,
                cgroup: cgroup_,
                sock: sock_,
                cap_effective: cap_effective_,
                context_only: context_only_,
                bound: bound_,
                pair_inodes: pair_inodes_,
                blocked: blocked_,
                anomalies: anomalies_,
            } = &mut *spare;
            (*ts_, *ts_ns_, *pid_, *tid_, *comm_) = (ts, ts_ns, pid, tid, comm);
            (*uid_, *gid_, *cgroup_id_, *syscall_) = (uid, gid, cgroup_id, syscall);
            *args_ = Args::default();
            (*ret_, *errno_, *duration_ns_, *in_flight_at_attach_) =
                (ret, errno, duration_ns, no_entry);
            (*async_error_, *connect_, *refused_by_, *ns_) = (None, None, refused_by, ns);
            (*cgroup_, *sock_, *cap_effective_, *context_only_) =
                (None, None, cap_effective, context_only);
            (*bound_, *pair_inodes_, *blocked_) = (bound, pair_inodes, false);
            // Emptied, its room kept.
            anomalies_.clear();
            spare
        }
        // Allocated first, then written with values only (no call that could unwind in
        // between): the event is built in its box, not on the stack and copied there, as
        // `Box::new(Event { .. })` does.
        None => Box::write(
            Box::<Event>::new_uninit(),
            Event {
                ts,
                ts_ns,
                pid,
                tid,
                comm,
                uid,
                gid,
                cgroup_id,
                syscall,
                args: Args::default(),
                ret,
                errno,
                duration_ns,
                in_flight_at_attach: no_entry,
                // Set by the enrich stage, which knows the fd's pending connect.
                async_error: None,
                connect: None,
                refused_by,
                ns,
                cgroup: None,
                sock: None,
                cap_effective,
                context_only,
                bound,
                pair_inodes,
                blocked: false,
                anomalies: Vec::new(),
            },
        ),
    };
    // Filled in where they go: the arguments are not copied.
    if args_known {
        fill_args(&mut ev.args, syscall, view);
    }
    Some(ev)
}

/// The arguments of a call still in progress: its raw arguments (from the kernel's record of
/// the call in flight) and the address it passed, read from its memory. Nothing the call
/// writes back (an accepted peer, an option value) exists yet.
pub fn pending_args(syscall: Syscall, raw: [u64; 6], addr: &[u8]) -> Args {
    // SAFETY: SyscallHead is plain integers and byte arrays, valid when all zero.
    let mut head: SyscallHead = unsafe { std::mem::zeroed() };
    head.args = raw;
    let addr = &addr[..addr.len().min(tracer_common::record::ADDR_CAP)];
    head.addr_copied = addr.len() as u32;
    head.addr_len = addr.len() as u32;
    // Not finished: decoded as a call without a result (ERESTARTSYS, never seen by programs),
    // so no out-argument is read.
    head.ret = -512;
    args(syscall, &SyscallView { head, addr, value: &[] })
}

fn args(syscall: Syscall, view: &SyscallView<'_>) -> Args {
    let mut args = Args::default();
    fill_args(&mut args, syscall, view);
    args
}

/// Sets the arguments `syscall` has in `out` (empty when called): field by field, so that the
/// reader writes them in the event's box, not on the stack to be copied there.
fn fill_args(out: &mut Args, syscall: Syscall, view: &SyscallView<'_>) {
    let rec = &view.head;
    let a = rec.args;
    let int = |i: usize| a[i] as i32;
    let fd = Some(int(0));
    let (addr_bytes, value_bytes) = (view.addr_copied(), view.value_copied());
    let succeeded = rec.ret >= 0;
    match syscall {
        Syscall::Socket | Syscall::Socketpair => {
            let domain = i64::from(int(0));
            let ty = i64::from(int(1));
            let type_flags = ty & !SOCK_TYPE_MASK;
            out.domain = Some(name_or_number(FAMILIES, domain));
            out.sock_type = Some(name_or_number(SOCK_TYPES, ty & SOCK_TYPE_MASK));
            out.flags = (type_flags != 0).then(|| flags(SOCK_FLAGS, SOCK_FLAG_SETS, type_flags));
            out.protocol = Some(name_or_number(protocols_of(domain), i64::from(int(2))));
            out.fds = (syscall == Syscall::Socketpair && succeeded && value_bytes.len() == 8)
                .then(|| [int_at(value_bytes, 0), int_at(value_bytes, 4)]);
        }
        Syscall::Bind | Syscall::Connect => {
            out.fd = fd;
            out.addr = sockaddr::decode(addr_bytes);
            out.addrlen = Some(int(2) as u32);
        }
        Syscall::Listen => {
            out.fd = fd;
            out.backlog = Some(int(1));
        }
        Syscall::Accept | Syscall::Accept4 | Syscall::Getsockname | Syscall::Getpeername => {
            out.fd = fd;
            out.addr = if succeeded { sockaddr::decode(addr_bytes) } else { None };
            out.addrlen = (succeeded && a[1] != 0).then_some(rec.addr_len);
            out.flags = (syscall == Syscall::Accept4)
                .then(|| flags(SOCK_FLAGS, SOCK_FLAG_SETS, i64::from(int(3))));
        }
        Syscall::Getsockopt | Syscall::Setsockopt => {
            let level = i64::from(int(1));
            let optname = i64::from(int(2));
            // getsockopt's value exists only when the call succeeded; setsockopt's was passed in.
            let has_value = syscall == Syscall::Setsockopt || rec.ret == 0;
            out.fd = fd;
            out.level = Some(name_or_number(LEVELS, level));
            out.optname = Some(name_or_number(options_at(level), optname));
            out.optlen = has_value.then_some(rec.value_len);
            out.value = (has_value && a[3] != 0)
                .then(|| sockopt::decode(level, optname, value_bytes, rec.value_len));
        }
        Syscall::Shutdown => {
            out.fd = fd;
            out.how = Some(name_or_number(SHUTDOWN_HOW, i64::from(int(1))));
        }
        Syscall::Close => out.fd = fd,
    }
}

fn int_at(b: &[u8], at: usize) -> i32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(-1, i32::from_ne_bytes)
}

/// A call still in progress, from what the kernel keeps for it (`addr`: the address it
/// passed, read from the caller's memory; `comm` from /proc).
pub fn blocked(
    clock: &Clock,
    pid_tgid: u64,
    call: &PendingCall,
    syscall: Syscall,
    blocked_ns: u64,
    comm: Comm,
    addr: &[u8],
) -> Blocked {
    let id = call.identity;
    Blocked {
        ts: clock.wall(call.ts_ns),
        ts_ns: call.ts_ns,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        comm,
        syscall,
        args: pending_args(syscall, call.args, addr),
        sock: None,
        blocked_ns,
        nonblocking: false,
        in_flight_at_attach: false,
        ns: (id.known != 0 && id.ns.net != 0).then_some(Namespaces {
            net: id.ns.net,
            mnt: id.ns.mnt,
            pid: id.ns.pid,
            user: id.ns.user,
            uts: id.ns.uts,
        }),
        anomalies: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
