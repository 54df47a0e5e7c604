//! The filter stage: which records reach the sinks. Live, the kernel already applied what it
//! can (`-s`, `--failed`, `-e`: see `commands::trace::kernel_options`); this stage applies every
//! filter, so a recording analysed later with the same filters gives the same events.

pub mod addr;
pub mod args;
pub mod time;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracer_common::Syscall;

use crate::{
    decode::errno::Errno,
    event::{Blocked, Event, Loss, ProcessExit, Snapshot},
};
pub use addr::AddrPattern;
pub use args::FilterArgs;
pub use time::TimeBound;

/// The kernel's comm is at most 15 bytes: a longer `--comm` matches its truncation.
const COMM_LEN: usize = 15;

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pids: Vec<u32>,
    comms: Vec<String>,
    syscalls: Vec<Syscall>,
    failed: bool,
    errnos: Vec<Errno>,
    since: Option<TimeBound>,
    until: Option<TimeBound>,
    addrs: Vec<AddrPattern>,
    anomalies_only: bool,
    /// What `+30s` counts from: the trace's (or the recording's) start.
    start: Option<DateTime<Utc>>,
}

/// The filters as written in a recording's header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errnos: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub anomalies_only: bool,
}

impl Filter {
    /// `pids` filters by process (analyze's `--pid`); live, `--pid` chooses what to trace
    /// instead and is not a filter.
    pub fn new(args: &FilterArgs, pids: &[u32]) -> Filter {
        Filter {
            pids: pids.to_vec(),
            comms: args.comms.iter().map(|c| truncate_comm(c).to_owned()).collect(),
            syscalls: args.syscalls.clone(),
            failed: args.failed,
            errnos: args.errnos.clone(),
            since: args.since,
            until: args.until,
            addrs: args.addrs.clone(),
            anomalies_only: args.anomalies_only,
            start: None,
        }
    }

    /// Where relative `--since/--until` count from.
    pub fn set_start(&mut self, start: DateTime<Utc>) {
        self.start = Some(start);
    }

    pub fn needs_start(&self) -> bool {
        self.start.is_none()
            && [self.since, self.until]
                .iter()
                .flatten()
                .any(|b| matches!(b, TimeBound::AfterStart(_)))
    }

    pub fn event(&self, ev: &Event) -> bool {
        self.call(ev)
            // As in the kernel: on the call's outcome (SO_ERROR's error; EINPROGRESS is none).
            && (!self.failed || ev.failed())
            && (self.errnos.is_empty() || ev.outcome_errno().is_some_and(|e| self.errnos.contains(&e)))
    }

    /// Every filter but those on the result.
    fn call(&self, ev: &Event) -> bool {
        self.process(ev.pid, &ev.comm)
            && self.in_window(ev.ts)
            && (self.syscalls.is_empty() || self.syscalls.contains(&ev.syscall))
            && (!self.anomalies_only || !ev.anomalies.is_empty())
            && (self.addrs.is_empty() || self.touches_addr(ev))
    }

    /// A call still in progress: the process, time, syscall and address filters apply as to
    /// an event. It has no result yet: `--failed` keeps it (a call that hangs is what one
    /// hunts failures for; its event follows, and is kept if it fails), `-e` drops it (no
    /// errno to match; its event is selected when it returns with one).
    pub fn blocked(&self, b: &Blocked) -> bool {
        self.errnos.is_empty() && self.call(&b.as_event())
    }

    /// Process ends pass the process and time filters (the kernel's result filters do not
    /// apply to them live either).
    pub fn exit(&self, exit: &ProcessExit) -> bool {
        self.process(exit.pid, &exit.comm) && self.in_window(exit.ts)
    }

    pub fn snapshot(&self, snap: &Snapshot) -> bool {
        self.process(snap.pid, &snap.comm) && self.in_window(snap.ts)
    }

    /// Lost events might have matched any filter: only the time window applies.
    pub fn loss(&self, loss: &Loss) -> bool {
        self.in_window(loss.ts)
    }

    fn process(&self, pid: u32, comm: &str) -> bool {
        (self.pids.is_empty() || self.pids.contains(&pid))
            && (self.comms.is_empty() || self.comms.iter().any(|c| c == comm))
    }

    fn in_window(&self, ts: DateTime<Utc>) -> bool {
        // Without a start (a file without header, before its first record) relative bounds
        // cannot be placed: analyze sets the start from the first record then.
        let resolve = |b: TimeBound| match (b, self.start) {
            (TimeBound::At(t), _) => Some(t),
            (b, Some(start)) => Some(b.resolve(start)),
            (TimeBound::AfterStart(_), None) => None,
        };
        self.since.and_then(resolve).is_none_or(|since| ts >= since)
            && self.until.and_then(resolve).is_none_or(|until| ts <= until)
    }

    /// The call's address argument or, once enrichment fills it, its socket's ends (and the
    /// destination of the failed connect it reports).
    fn touches_addr(&self, ev: &Event) -> bool {
        let sock = ev.sock.as_ref();
        let addrs = [
            ev.args.addr.as_ref(),
            sock.and_then(|s| s.local.as_ref()),
            sock.and_then(|s| s.peer.as_ref()),
            ev.connect.as_ref().map(|c| &c.addr),
        ];
        addrs.into_iter().flatten().any(|a| self.addrs.iter().any(|p| p.matches(a)))
    }

    pub fn spec(&self) -> FilterSpec {
        FilterSpec {
            pids: self.pids.clone(),
            comms: self.comms.clone(),
            syscalls: self.syscalls.iter().map(|s| s.name().to_owned()).collect(),
            failed: self.failed,
            errnos: self.errnos.iter().map(|e| e.name().into_owned()).collect(),
            since: self.since.map(|b| b.to_string()),
            until: self.until.map(|b| b.to_string()),
            addrs: self.addrs.iter().map(ToString::to_string).collect(),
            anomalies_only: self.anomalies_only,
        }
    }
}

fn truncate_comm(comm: &str) -> &str {
    let mut end = comm.len().min(COMM_LEN);
    while !comm.is_char_boundary(end) {
        end -= 1;
    }
    &comm[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Args, Blocked, Finding, KnownAddr, Severity, SockAddr, SocketInfo};

    fn event(syscall: Syscall, ret: i64, secs: i64) -> Event {
        Event {
            ts: DateTime::from_timestamp(secs, 0).unwrap(),
            pid: 10,
            tid: 11,
            comm: "a-very-long-server-name".chars().take(15).collect(),
            duration_ns: Some(1),
            ..Event::for_test(syscall, Args::default(), ret)
        }
    }

    fn filter(args: &[&str]) -> Filter {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            filter: FilterArgs,
            #[arg(long, value_delimiter = ',')]
            pid: Vec<u32>,
        }
        let cli = Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
        Filter::new(&cli.filter, &cli.pid)
    }

    #[test]
    fn empty_filter_keeps_everything() {
        assert!(filter(&[]).event(&event(Syscall::Connect, 0, 0)));
    }

    #[test]
    fn syscalls_errnos_failed() {
        let refused = event(Syscall::Connect, -111, 0);
        let ok = event(Syscall::Connect, 0, 0);
        assert!(filter(&["-s", "connect,bind"]).event(&refused));
        assert!(!filter(&["-s", "bind"]).event(&refused));
        assert!(filter(&["--failed"]).event(&refused));
        assert!(!filter(&["--failed"]).event(&ok));
        assert!(filter(&["-e", "ECONNREFUSED,ENOTCONN"]).event(&refused));
        assert!(!filter(&["-e", "ENOTCONN"]).event(&refused));
        assert!(!filter(&["-e", "ENOTCONN"]).event(&ok));
    }

    /// As the kernel filters judge them: EINPROGRESS is no failure; an error read with
    /// SO_ERROR is the call's errno.
    /// A call in progress has no result: `-e` drops it, `--failed` keeps it; the other
    /// filters apply as to its event.
    #[test]
    fn blocked_calls() {
        let lo = SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 9999 });
        let args = Args { fd: Some(5), addr: Some(lo), ..Args::default() };
        let b =
            Blocked::for_test(Event { args, ..event(Syscall::Connect, 0, 1_000) }, 2_000_000_000);
        assert!(filter(&[]).blocked(&b));
        assert!(filter(&["--failed"]).blocked(&b));
        assert!(!filter(&["-e", "ETIMEDOUT"]).blocked(&b));
        assert!(filter(&["-s", "connect", "--addr", "127.0.0.1:9999", "--pid", "10"]).blocked(&b));
        assert!(!filter(&["-s", "bind"]).blocked(&b));
        assert!(!filter(&["--addr", "127.0.0.1:80"]).blocked(&b));
        assert!(!filter(&["--pid", "11"]).blocked(&b));
        assert!(!filter(&["--anomalies-only"]).blocked(&b));
    }

    #[test]
    fn async_connect_outcomes() {
        let in_progress = event(Syscall::Connect, -115, 0);
        assert!(!filter(&["--failed"]).event(&in_progress));
        assert!(filter(&["-e", "EINPROGRESS"]).event(&in_progress));
        assert!(!filter(&["-e", "EINPROGRESS", "--failed"]).event(&in_progress));
        let mut so_error = event(Syscall::Getsockopt, 0, 0);
        assert!(!filter(&["--failed"]).event(&so_error));
        so_error.async_error = Some(Errno(111));
        assert!(filter(&["--failed"]).event(&so_error));
        assert!(filter(&["-e", "ECONNREFUSED"]).event(&so_error));
        assert!(!filter(&["-e", "ENOTCONN"]).event(&so_error));
        // A second connect that fails reports its own errno.
        let mut again = event(Syscall::Connect, -111, 0);
        again.async_error = Some(Errno(111));
        assert!(filter(&["--failed", "-e", "ECONNREFUSED"]).event(&again));
    }

    #[test]
    fn pid_and_comm_including_truncated_names() {
        let ev = event(Syscall::Close, 0, 0);
        assert!(filter(&["--pid", "9,10"]).event(&ev));
        assert!(!filter(&["--pid", "9"]).event(&ev));
        assert!(filter(&["--comm", "a-very-long-server-name"]).event(&ev));
        assert!(filter(&["--comm", "x,a-very-long-ser"]).event(&ev));
        assert!(!filter(&["--comm", "a-very"]).event(&ev));
    }

    #[test]
    fn time_window_absolute_and_relative() {
        let ev = event(Syscall::Close, 0, 100);
        assert!(filter(&["--since", "1970-01-01T00:01:40Z"]).event(&ev));
        assert!(!filter(&["--since", "1970-01-01T00:01:41Z"]).event(&ev));
        assert!(filter(&["--until", "1970-01-01T00:01:40Z"]).event(&ev));
        let mut f = filter(&["--since", "+30s", "--until", "+1m"]);
        assert!(f.needs_start());
        f.set_start(DateTime::from_timestamp(60, 0).unwrap());
        assert!(!f.needs_start());
        assert!(f.event(&ev));
        f.set_start(DateTime::from_timestamp(71, 0).unwrap());
        assert!(!f.event(&ev));
        f.set_start(DateTime::from_timestamp(39, 0).unwrap());
        assert!(!f.event(&ev));
    }

    #[test]
    fn addresses_in_arguments_or_socket() {
        let mut ev = event(Syscall::Connect, -111, 0);
        let lo = |port| SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port });
        ev.args.addr = Some(lo(8080));
        assert!(filter(&["--addr", "127.0.0.1:8080"]).event(&ev));
        assert!(filter(&["--addr", ":9,:8080"]).event(&ev));
        assert!(!filter(&["--addr", ":9"]).event(&ev));
        ev.args.addr = None;
        assert!(!filter(&["--addr", ":8080"]).event(&ev));
        ev.sock = Some(SocketInfo { peer: Some(lo(8080)), ..SocketInfo::default() }.into());
        assert!(filter(&["--addr", ":8080"]).event(&ev));
    }

    #[test]
    fn anomalies_only() {
        let mut ev = event(Syscall::Bind, -13, 0);
        assert!(!filter(&["--anomalies-only"]).event(&ev));
        ev.anomalies.push(Finding {
            id: "X".into(),
            severity: Severity::Warning,
            title: "t".into(),
            fix: "f".into(),
            detail: None,
        });
        assert!(filter(&["--anomalies-only"]).event(&ev));
    }

    #[test]
    fn exits_and_losses_ignore_result_filters() {
        let f = filter(&["-e", "ECONNREFUSED", "--addr", ":80", "--pid", "10"]);
        let ts = DateTime::from_timestamp(0, 0).unwrap();
        let exit = |pid| ProcessExit {
            ts,
            ts_ns: 0,
            pid,
            comm: "x".into(),
            code: Some(0),
            signal: None,
            core_dumped: false,
        };
        assert!(f.exit(&exit(10)));
        assert!(!f.exit(&exit(11)));
        assert!(f.loss(&Loss { ts, lost: 1, total_lost: 1, ..Loss::default() }));
    }

    #[test]
    fn spec_lists_what_is_set() {
        let spec = filter(&["-e", "111", "--since", "+30s", "--addr", ":80"]).spec();
        assert_eq!(
            serde_json::to_string(&spec).unwrap(),
            r#"{"errnos":["ECONNREFUSED"],"since":"+30s","addrs":[":80"]}"#
        );
        assert_eq!(serde_json::to_string(&filter(&[]).spec()).unwrap(), "{}");
    }
}
