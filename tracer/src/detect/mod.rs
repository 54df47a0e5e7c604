//! The knowledge base at work: rules (data) matched against every event, findings attached to
//! the events that match.

pub mod args;
pub mod details;
pub mod env;
pub mod environ;
pub mod failures;
pub mod matchers;
pub mod rules;
pub mod values;
pub mod vocabulary;

use std::time::Duration;

use foldhash::{HashMap, HashMapExt as _};
use tracer_common::Syscall;

use crate::{
    enrich::FdTable,
    event::{Args, Blocked, Event, Finding},
    facts::system::System,
};
use env::Environment;
use failures::{Failure, Reported};
use matchers::Ctx;
use rules::{Rule, RuleSpec};
use values::MinAge;
use vocabulary::Matcher;

pub struct Detector {
    /// The rules that apply to this environment, in file order.
    rules: Vec<Rule>,
    /// The rules that may fire on an event (indices into `rules`, in file order), by what the
    /// event is ([`Detector::kind`]: a call in progress or finished, with an errno or not,
    /// refused or not, its syscall id): an event passes over no other rule, and most (a
    /// socket, a setsockopt, any call that succeeded...) over none.
    rules_for: Vec<Vec<usize>>,
    /// The syscall ids `rules_for` has room for.
    ids: usize,
    env: Environment,
    system: Box<dyn System>,
    initial_net: Option<u32>,
    /// What the trace saw last on each (pid, fd) (one look-up per event for both).
    seen: HashMap<(u32, i32), Seen>,
    /// Each process's resolver timeout, read at its first connect while it surely lives (a
    /// short-lived client has often exited when its last close is judged); only when a rule
    /// asks for `connected_at_least = "resolver_timeout"`.
    resolver_timeouts: Option<HashMap<u32, Option<Duration>>>,
    /// Failed connects whose findings a shown record carried (one finding per failure).
    reported: Reported,
}

impl Detector {
    pub fn new(
        specs: Vec<RuleSpec>,
        env: Environment,
        system: Box<dyn System>,
        initial_net: Option<u32>,
    ) -> Self {
        let rules: Vec<Rule> =
            specs.into_iter().map(Rule::new).filter(|r| r.applies_to(&env)).collect();
        let wants_timeout = |m: &Matcher| *m == Matcher::ConnectedAtLeast(MinAge::ResolverTimeout);
        let resolver_timeouts = rules
            .iter()
            .any(|r| r.spec.when.matchers().iter().any(wants_timeout))
            .then(HashMap::new);
        let ids = Syscall::ALL.iter().map(|&s| s as usize).max().map_or(0, |max| max + 1);
        // In the order of `kind`'s numbers: blocked, errno, refused, then the syscall id.
        let mut rules_for = Vec::with_capacity(8 * ids);
        for blocked in [false, true] {
            for errno in [false, true] {
                for refused in [false, true] {
                    for id in 0..ids {
                        let fires = |r: &&Rule| {
                            Syscall::from_id(id as u32).is_some_and(|s| r.may_fire_on(s))
                                && r.judges_blocked() == blocked
                                && r.may_fire_with(errno, refused)
                        };
                        let list = rules.iter().enumerate().filter(|(_, r)| fires(r));
                        rules_for.push(list.map(|(i, _)| i).collect());
                    }
                }
            }
        }
        Detector {
            rules_for,
            ids,
            rules,
            env,
            system,
            initial_net,
            seen: HashMap::new(),
            resolver_timeouts,
            reported: Reported::default(),
        }
    }

    /// Adds the findings of every matching rule to `ev.anomalies`.
    /// `traced` is the fd table as of this event: what the traced processes hold.
    pub fn detect(&mut self, ev: &mut Event, traced: &FdTable) {
        self.reported.start();
        let fd = ev.args.fd;
        // What the fd saw before this call, and what it has seen after it: one look-up (the
        // rules read the values before, passed to them).
        let connects = ev.syscall == Syscall::Connect && !ev.failed();
        let before = match fd {
            None => Seen::default(),
            Some(fd) if ev.syscall == Syscall::Close => {
                self.seen.remove(&(ev.pid, fd)).unwrap_or_default()
            }
            Some(fd) => {
                let seen = self.seen.entry((ev.pid, fd)).or_default();
                let before = *seen;
                seen.previous = Some(ev.syscall);
                // A connect that returned 0 or EINPROGRESS: the socket has a peer from now.
                if connects {
                    seen.connected = Some(ev.ts_ns);
                }
                before
            }
        };
        let (previous, connected) = (before.previous, before.connected);
        self.judge(ev, traced, previous, connected);
        // The failure of a non-blocking connect, reported by this call: the connect rules
        // judge it as the connect that failed (same ids, details and fixes).
        if let Some(mut connect) = as_failed_connect(ev) {
            self.judge(&mut connect, traced, Some(Syscall::Connect), connected);
            for finding in connect.anomalies {
                if !ev.anomalies.iter().any(|f| f.id == finding.id) {
                    ev.anomalies.push(finding);
                }
            }
        }
        // A call that reads a connect's failure (SO_ERROR, a second connect): the kernel's
        // report of it may have carried the findings already.
        if let (Some(fd), Some(pending), Some(error)) = (fd, &ev.connect, ev.async_error) {
            let failure = Failure { started_ns: pending.started_ns, error };
            self.reported.judge((ev.pid, fd), failure, &mut ev.anomalies);
        }
        if let Some(fd) = fd {
            if ev.syscall == Syscall::Close {
                self.reported.close((ev.pid, fd));
            } else if connects
                && let Some(timeouts) = &mut self.resolver_timeouts
                && !timeouts.contains_key(&ev.pid)
            {
                let timeout = environ::resolver_timeout(ev, self.system.as_mut());
                timeouts.insert(ev.pid, timeout);
            }
        }
    }

    /// Judges `ev`, a connect failing with an error the kernel reported on its socket (see
    /// `SocketError`), as a connect that just failed.
    pub fn judge_failed_connect(&mut self, ev: &mut Event, traced: &FdTable) {
        self.reported.start();
        let (_, connected) = self.seen(ev.pid, ev.args.fd);
        self.judge(ev, traced, Some(Syscall::Connect), connected);
        // The call that reads the error may have carried the findings already (when it came
        // first); the connect is the one the fd table still waits on, else the last one seen.
        let Some(fd) = ev.args.fd else { return };
        let started_ns = traced.connecting(ev.pid, fd).map(|c| c.started_ns).or(connected);
        if let (Some(started_ns), Some(error)) = (started_ns, ev.errno) {
            let failure = Failure { started_ns, error };
            self.reported.judge((ev.pid, fd), failure, &mut ev.anomalies);
        }
    }

    /// The record judged last (an event, a socket error) passed the filters: its findings
    /// are shown, and the other record of the same failure does not repeat them.
    pub fn shown(&mut self) {
        self.reported.shown();
    }

    /// Adds the findings of the rules written for calls in progress (`blocked = true`).
    pub fn detect_blocked(&mut self, b: &mut Blocked, traced: &FdTable) {
        let mut ev = b.as_event();
        let (previous, connected) = self.seen(b.pid, b.args.fd);
        self.judge(&mut ev, traced, previous, connected);
        b.anomalies = ev.anomalies;
    }

    /// Where the rules that may fire on `ev` are listed in `rules_for`.
    fn kind(&self, ev: &Event) -> usize {
        let (id, ids) = (ev.syscall as usize, self.ids);
        if id >= ids {
            return usize::MAX;
        }
        let class = usize::from(ev.blocked) * 4
            + usize::from(ev.errno.is_some()) * 2
            + usize::from(ev.refused_by.is_some());
        class * ids + id
    }

    /// The previous call on `fd` of `pid` and when it last connected.
    fn seen(&self, pid: u32, fd: Option<i32>) -> (Option<Syscall>, Option<u64>) {
        let seen = fd.and_then(|fd| self.seen.get(&(pid, fd)));
        (seen.and_then(|s| s.previous), seen.and_then(|s| s.connected))
    }

    fn judge(
        &mut self,
        ev: &mut Event,
        traced: &FdTable,
        previous: Option<Syscall>,
        connected_ns: Option<u64>,
    ) {
        let candidates = self.rules_for.get(self.kind(ev)).map_or(&[][..], Vec::as_slice);
        if candidates.is_empty() {
            return;
        }
        let mut ctx = Ctx::new(&self.env, self.system.as_mut(), traced, self.initial_net, previous);
        ctx.connected_ns = connected_ns;
        ctx.resolver_timeout =
            self.resolver_timeouts.as_ref().and_then(|t| t.get(&ev.pid).copied().flatten());
        // Findings already on the event (a recording) count for their groups: an offline
        // re-evaluation must not add a generic rule next to a specific one seen live. (A few
        // groups at most: a Vec, which allocates nothing while empty.)
        let mut fired_groups: Vec<&str> = if ev.anomalies.is_empty() {
            Vec::new()
        } else {
            self.rules
                .iter()
                .filter(|r| ev.anomalies.iter().any(|f| f.id == r.spec.id))
                .filter_map(|r| r.spec.group.as_deref())
                .collect()
        };
        for rule in candidates.iter().map(|&i| &self.rules[i]) {
            if rule.spec.group.as_deref().is_some_and(|g| fired_groups.contains(&g)) {
                continue;
            }
            if !rule.matches(ev, &mut ctx) {
                continue;
            }
            if let Some(group) = &rule.spec.group {
                fired_groups.push(group);
            }
            let detail = rule.spec.detail.and_then(|d| details::describe(d, ev, &mut ctx));
            if !ev.anomalies.iter().any(|f| f.id == rule.spec.id) {
                ev.anomalies.push(Finding {
                    id: rule.spec.id.clone(),
                    severity: rule.spec.severity,
                    title: rule.spec.title.clone(),
                    fix: rule.fix.clone(),
                    detail,
                });
            }
        }
    }

    /// A process exited: forget its fds.
    pub fn exit(&mut self, pid: u32) {
        self.seen.retain(|(p, _), _| *p != pid);
        self.reported.exit(pid);
        if let Some(timeouts) = &mut self.resolver_timeouts {
            timeouts.remove(&pid);
        }
    }
}

/// What the trace saw last on an fd; forgotten when it is closed.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// The last traced call on it, for `previous_syscall`.
    previous: Option<Syscall>,
    /// When it last connected (or started connecting), for `connected_at_least`.
    connected: Option<u64>,
}

/// A call that reports the failure of a non-blocking connect (getsockopt(SO_ERROR)), seen as
/// that connect failing with the reported error; `None` for other calls. A second connect
/// that fails is a connect already, judged as itself.
fn as_failed_connect(ev: &Event) -> Option<Event> {
    let pending = ev.connect.as_ref().filter(|_| ev.syscall != Syscall::Connect)?;
    let errno = ev.async_error?;
    Some(Event {
        syscall: Syscall::Connect,
        args: Args { fd: ev.args.fd, addr: Some(pending.addr.clone()), ..Args::default() },
        ret: -i64::from(errno.0),
        errno: Some(errno),
        async_error: None,
        connect: None,
        ..ev.clone()
    })
}

/// Rule texts are wrapped in the file; findings carry them as one line.
pub fn one_paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
