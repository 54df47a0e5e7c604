//! Non-blocking connects that hang: a connect that returned EINPROGRESS leaves the program
//! waiting in poll/epoll, where no traced call shows it. The fd table knows the connects under
//! way; one still connecting (SYN_SENT in the socket tables) after `--blocked-after` is
//! reported as a `blocked` connect, once, with `nonblocking`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use tracer_common::Syscall;

use super::FdTable;
use crate::{
    decode::{errno::Errno, state::SockState},
    event::{Args, Blocked, Comm, Event},
};

const EINPROGRESS: u16 = 115;

pub struct ConnectWatch {
    after_ns: u64,
    /// The connect call that started each connect under way, by (pid, fd): thread, time and
    /// arguments.
    starts: HashMap<(u32, i32), (u32, DateTime<Utc>, Args)>,
    /// Connects already settled by the watch, by (pid, fd, start): reported, or found not to
    /// be connecting any more (a program that never asks SO_ERROR leaves them in the table).
    settled: HashSet<(u32, i32, u64)>,
}

impl ConnectWatch {
    pub fn new(after_ns: u64) -> Self {
        ConnectWatch { after_ns, starts: HashMap::new(), settled: HashSet::new() }
    }

    /// Notes which thread started a connect under way.
    pub fn event(&mut self, ev: &Event) {
        if let (Syscall::Connect, Some(Errno(EINPROGRESS)), Some(fd)) =
            (ev.syscall, ev.errno, ev.args.fd)
        {
            self.starts.insert((ev.pid, fd), (ev.tid, ev.ts, ev.args.clone()));
        }
    }

    /// The connects under way for longer than the delay at `now_ns` whose socket is still
    /// connecting, each reported once.
    pub fn tick(&mut self, now_ns: u64, fds: &mut FdTable) -> Vec<Blocked> {
        let due: Vec<(u32, i32, Args, u64, Comm)> = fds
            .all_connecting()
            .filter(|(pid, fd, c)| {
                now_ns.saturating_sub(c.started_ns) >= self.after_ns
                    && !self.settled.contains(&(*pid, *fd, c.started_ns))
            })
            .map(|(pid, fd, c)| {
                let args = Args { fd: Some(fd), addr: Some(c.addr.clone()), ..Args::default() };
                (pid, fd, args, c.started_ns, Comm::from(fds.comm(pid).unwrap_or_default()))
            })
            .collect();
        let mut blocked = Vec::new();
        for (pid, fd, args, started_ns, comm) in due {
            self.settled.insert((pid, fd, started_ns));
            // Confirmed by the socket tables, now: the table entry alone may be a connect that
            // completed unasked.
            let sock = fds.look_up(pid, fd);
            if sock.as_ref().and_then(|s| s.state) != Some(SockState::SynSent) {
                continue;
            }
            let blocked_ns = now_ns.saturating_sub(started_ns);
            // The connect's own event said who, when and how; the table may have it from a
            // fork.
            let (tid, ts, args) = self.starts.get(&(pid, fd)).cloned().unwrap_or_else(|| {
                (pid, Utc::now() - chrono::Duration::nanoseconds(blocked_ns as i64), args)
            });
            blocked.push(Blocked {
                ts,
                ts_ns: started_ns,
                pid,
                tid,
                comm,
                syscall: Syscall::Connect,
                args,
                sock: sock.map(Into::into),
                blocked_ns,
                nonblocking: true,
                in_flight_at_attach: false,
                ns: None,
                anomalies: Vec::new(),
            });
        }
        // Forget what the table forgot.
        let under_way: HashSet<(u32, i32, u64)> =
            fds.all_connecting().map(|(p, f, c)| (p, f, c.started_ns)).collect();
        self.settled.retain(|key| under_way.contains(key));
        self.starts.retain(|(pid, fd), _| under_way.iter().any(|(p, f, _)| (p, f) == (pid, fd)));
        blocked
    }
}
