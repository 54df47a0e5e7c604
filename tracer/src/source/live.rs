//! The live source: records read from the kernel's ring buffer as the traced processes make
//! their calls, drained in bounded batches, with the kernel's drop counter turned into loss
//! records. It ends when every traced process has exited, at the deadline, on a signal, or
//! when the output goes away; whatever the kernel submitted before that is still delivered.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    io,
    os::unix::fs::FileExt as _,
    process::ExitStatus,
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use signal_hook::low_level::siginfo::Origin;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
    time::{Instant, Interval},
};

use super::{
    Record, Source,
    in_flight::{self, CallAtAttach},
    kernel::{Kernel, Lost, monotonic_ns},
    launch::{self, Launched},
    records::{self, RecordError},
    target,
};
use tracer_common::{PendingCall, Syscall, record::ADDR_CAP};

use crate::{
    decode::{self, Clock},
    event::{Blocked, Event, Loss, LostDetail, Snapshot},
};

/// How often the ring is drained when no wakeup came: records are submitted without waking
/// the reader (see tracer-ebpf's output.rs), so this bounds the display latency.
const POLL: Duration = Duration::from_millis(10);
/// How often losses are checked and exited processes noticed.
const HOUSEKEEPING: Duration = Duration::from_millis(200);
/// Records read per drain at most: under a flood the ring refills as fast as it is read, and
/// an unbounded drain would never return to notice a signal, the deadline or flush the output.
const MAX_DRAIN: usize = 4096;
/// Malformed records named one by one; the rest are only counted (see `report_malformed`).
const MALFORMED_NAMED: u64 = 10;

/// Why tracing stopped before every traced process exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Finished,
    Signal(i32),
    Deadline,
    OutputClosed,
}

/// Where the source is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for records, a signal, the deadline or the end of the traced processes.
    Tracing,
    /// Stopped recording: the ring is drained to the end.
    Draining,
    /// The last drops are reported.
    Losses,
    /// The command is waited for, where it is still running.
    Ending,
    Done,
}

pub struct Live {
    kernel: Kernel,
    ring: AsyncFd<RingBuf<MapData>>,
    clock: Clock,
    /// The last record's day and comm, for the next one.
    recent: decode::Recent,
    signals: mpsc::UnboundedReceiver<Origin>,
    launched: Option<Launched>,
    /// The command's exit status, once known.
    status: Option<ExitStatus>,
    /// A signal was passed on to the command: the next one stops tracing.
    signalled: bool,
    poll: Interval,
    housekeeping: Interval,
    deadline: Option<Instant>,
    phase: Phase,
    stop: Stop,
    /// Records to hand out before reading on: the snapshots, then any loss.
    queued: VecDeque<Record>,
    /// Records read in the drain under way; `None` between drains.
    drain: Option<usize>,
    /// The last drain stopped at MAX_DRAIN with records left in the ring.
    backlog: bool,
    /// The kernel's drop counters as of the last loss record.
    reported_lost: Lost,
    /// `--blocked-after`: calls in flight longer than this are reported; zero: never.
    blocked_after: Duration,
    /// The calls reported as blocked, by (pid_tgid, entry time): each once.
    reported_blocked: HashSet<(u64, u64)>,
    /// Calls in progress when tracing started, not reported yet (see `in_flight`).
    at_attach: Vec<CallAtAttach>,
    /// Housekeeping came: look for blocked calls once the ring is drained.
    blocked_due: bool,
    /// Records from the kernel that could not be parsed (see `decode`).
    malformed: u64,
    /// Records and bytes read from the ring.
    ring_records: u64,
    ring_bytes: u64,
}

impl Live {
    /// Reads `ring` of `kernel` until `duration` (if given) or the end of the traced processes;
    /// `snapshots` come first. The command, if there is one, receives the signals that are
    /// sent to wsltrace with kill. Call inside the runtime.
    pub fn new(
        kernel: Kernel,
        ring: RingBuf<MapData>,
        clock: Clock,
        snapshots: Vec<Snapshot>,
        signals: mpsc::UnboundedReceiver<Origin>,
        launched: Option<Launched>,
        duration: Option<Duration>,
    ) -> Result<Live> {
        // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, until dropped with
        // the AsyncFd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)
            .context("polling the ring buffer")?;
        Ok(Live {
            kernel,
            ring,
            clock,
            recent: decode::Recent::default(),
            signals,
            launched,
            status: None,
            signalled: false,
            poll: tokio::time::interval(POLL),
            housekeeping: tokio::time::interval(HOUSEKEEPING),
            deadline: duration.map(|d| Instant::now() + d),
            phase: Phase::Tracing,
            stop: Stop::Finished,
            queued: snapshots.into_iter().map(Record::Snapshot).collect(),
            drain: None,
            backlog: false,
            reported_lost: Lost::default(),
            blocked_after: Duration::ZERO,
            reported_blocked: HashSet::new(),
            at_attach: Vec::new(),
            blocked_due: false,
            malformed: 0,
            ring_records: 0,
            ring_bytes: 0,
        })
    }

    /// Reports the calls still in progress after `after` (zero: never).
    pub fn with_blocked_after(mut self, after: Duration) -> Self {
        self.blocked_after = after;
        if !after.is_zero() {
            let syscalls: Vec<Syscall> =
                Syscall::ALL.iter().copied().filter(|&s| self.shown_when_blocked(s)).collect();
            match monotonic_ns() {
                Ok(now) => self.at_attach = in_flight::scan(&self.kernel.traced(), &syscalls, now),
                Err(err) => tracing::warn!("cannot look for calls already in progress: {err:#}"),
            }
        }
        self
    }

    /// Why tracing stopped, and the command's exit status if it exited.
    pub fn outcome(&self) -> (Stop, Option<ExitStatus>) {
        (self.stop, self.status)
    }

    /// Detaches the programs (see [`Kernel::detach`]).
    pub fn detach(self) {
        self.kernel.detach();
    }

    /// Waits for the next thing to do; `Some` when tracing must stop.
    async fn wait(&mut self) -> Result<Option<Stop>> {
        let backlog = self.backlog;
        tokio::select! {
            ready = readable(&mut self.ring) => ready?,
            // Records left over: drain again at once (after any signal that is ready).
            () = std::future::ready(()), if backlog => {}
            _ = self.poll.tick() => {}
            _ = self.housekeeping.tick() => {
                self.report_losses()?;
                // After the drain this round starts: the records already in the ring (the
                // socket a blocked call uses) come before.
                self.blocked_due = !self.blocked_after.is_zero();
                if self.all_exited() {
                    return Ok(Some(Stop::Finished));
                }
            }
            exit = wait(self.launched.as_mut()), if self.status.is_none() && self.launched.is_some() => {
                self.status = Some(exit?);
            }
            Some(origin) = self.signals.recv() => {
                match &self.launched {
                    // The command gets the signal (unless the terminal already sent it to
                    // the whole group) and tracing goes on until it exits.
                    Some(l) if !self.signalled && self.status.is_none() => {
                        self.signalled = true;
                        launch::forward(origin, l);
                    }
                    _ => return Ok(Some(Stop::Signal(origin.signal))),
                }
            }
            _ = sleep_until(self.deadline) => return Ok(Some(Stop::Deadline)),
        }
        Ok(None)
    }

    fn start_drain(&mut self) {
        self.backlog = false;
        self.drain = Some(0);
    }

    /// Whatever the kernel submitted before we stopped is still delivered: stop recording
    /// first (processes still running would otherwise refill the ring forever), then drain.
    fn stop(&mut self, stop: Stop) {
        self.stop = stop;
        for pid in self.kernel.traced() {
            self.kernel.untrace(pid);
        }
        self.phase = Phase::Draining;
        self.start_drain();
    }

    /// The next record of the drain under way, if the ring holds one; `Flush` ends the drain.
    fn read(&mut self, read: usize) -> Option<Record> {
        if read == MAX_DRAIN {
            self.backlog = true;
            self.drain = None;
            return Some(Record::Flush);
        }
        let Some(item) = self.ring.get_mut().next() else {
            self.drain = None;
            if std::mem::take(&mut self.blocked_due) {
                self.report_blocked();
            }
            return Some(Record::Flush);
        };
        // By reference: a syscall record's head is copied out of the ring, its tails are
        // decoded where they are.
        self.ring_records += 1;
        self.ring_bytes += item.len() as u64;
        let parsed = records::parse(&item);
        let record = decode(parsed, &self.clock, &mut self.recent, &mut self.malformed);
        drop(item);
        self.drain = Some(read + 1);
        record
    }

    /// Warns once, at the end, of every malformed record skipped (and says, for RUST_LOG=debug,
    /// how much the ring carried).
    fn report_malformed(&self) {
        tracing::debug!(
            "read {} records, {} bytes from the ring ({} bytes per record)",
            self.ring_records,
            self.ring_bytes,
            self.ring_bytes.checked_div(self.ring_records).unwrap_or(0)
        );
        if self.malformed > 0 {
            tracing::warn!("skipped {} malformed records from the kernel in all", self.malformed);
        }
    }

    /// Turns growth of the kernel's drop counters into a visible loss record.
    fn report_losses(&mut self) -> Result<()> {
        let lost = self.kernel.counters()?.lost;
        if let Some(loss) = loss_since(&self.reported_lost, &lost, chrono::Utc::now()) {
            self.reported_lost = lost;
            self.queued.push_back(Record::Loss(loss));
        }
        Ok(())
    }

    /// Queues a `blocked` record for each traced call in flight for longer than
    /// `--blocked-after` not reported yet, then a tick for the pipeline's own watch.
    fn report_blocked(&mut self) {
        let now = match monotonic_ns() {
            Ok(now) => now,
            Err(err) => return tracing::warn!("cannot look for blocked calls: {err:#}"),
        };
        let after = u64::try_from(self.blocked_after.as_nanos()).unwrap_or(u64::MAX);
        let traced: HashSet<u32> = self.kernel.traced().into_iter().collect();
        let scan = std::time::Instant::now();
        let calls = self.kernel.calls_in_flight(&traced);
        tracing::debug!("{} calls in flight, read in {:?}", calls.len(), scan.elapsed());
        // Forget the calls that returned: only the ones still in flight can repeat.
        let in_flight: HashSet<(u64, u64)> = calls.iter().map(|(k, c)| (*k, c.ts_ns)).collect();
        self.reported_blocked.retain(|key| in_flight.contains(key));
        for (pid_tgid, call) in calls {
            let Some(syscall) = Syscall::from_id(call.syscall) else { continue };
            let blocked_ns = now.saturating_sub(call.ts_ns);
            if blocked_ns < after
                || !self.shown_when_blocked(syscall)
                || !traced.contains(&((pid_tgid >> 32) as u32))
                || !self.reported_blocked.insert((pid_tgid, call.ts_ns))
            {
                continue;
            }
            let blocked = self.blocked(pid_tgid, &call, syscall, blocked_ns);
            self.queued.push_back(Record::Blocked(Box::new(blocked)));
        }
        self.report_blocked_at_attach(now, after);
        self.queued.push_back(Record::Tick(now));
    }

    /// Whether a call of `syscall` still in progress is reported: a selected one, but for
    /// accept/accept4, which wait by design (unselected calls are context, never shown).
    fn shown_when_blocked(&self, syscall: Syscall) -> bool {
        !matches!(syscall, Syscall::Accept | Syscall::Accept4)
            && self.kernel.syscalls.contains(&syscall)
    }

    /// The calls in progress when tracing started that still are, once `after` has passed
    /// since the scan (one scan: they are all due at once), each reported then or never. A
    /// thread that made a traced call since has left its call: its entry gave it a slot.
    fn report_blocked_at_attach(&mut self, now: u64, after: u64) {
        if self.at_attach.first().is_none_or(|c| now.saturating_sub(c.seen_ns) < after) {
            return;
        }
        for call in std::mem::take(&mut self.at_attach) {
            if self.kernel.has_slot(call.pid_tgid) || !in_flight::still_in(&call) {
                continue;
            }
            let blocked_ns = now.saturating_sub(call.seen_ns);
            let pending = call.as_pending();
            let mut blocked = self.blocked(call.pid_tgid, &pending, call.syscall, blocked_ns);
            blocked.in_flight_at_attach = true;
            self.queued.push_back(Record::Blocked(Box::new(blocked)));
        }
    }

    fn blocked(&self, pid_tgid: u64, call: &PendingCall, syscall: Syscall, ns: u64) -> Blocked {
        let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
            .map(|c| c.trim_end().into())
            .unwrap_or_default();
        let addr = match syscall {
            Syscall::Connect | Syscall::Bind => read_user(pid, call.args[1], call.args[2]),
            _ => Vec::new(),
        };
        decode::blocked(&self.clock, pid_tgid, call, syscall, ns, comm, &addr)
    }

    /// True once no traced process is left. The kernel removes processes as they exit; a
    /// process that died before it could be added is removed here.
    fn all_exited(&mut self) -> bool {
        let mut alive = false;
        for pid in self.kernel.traced() {
            if target::is_alive(pid) {
                alive = true;
            } else {
                self.kernel.untrace(pid);
            }
        }
        !alive
    }
}

impl Source for Live {
    async fn next(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(record) = self.queued.pop_front() {
                return Ok(Some(record));
            }
            if let Some(read) = self.drain {
                match self.read(read) {
                    Some(record) => return Ok(Some(record)),
                    None => continue,
                }
            }
            match self.phase {
                Phase::Tracing => match self.wait().await? {
                    None => self.start_drain(),
                    Some(stop) => self.stop(stop),
                },
                Phase::Draining if self.backlog => self.start_drain(),
                Phase::Draining => self.phase = Phase::Losses,
                Phase::Losses => {
                    self.report_losses()?;
                    self.report_malformed();
                    self.phase = Phase::Ending;
                }
                Phase::Ending => {
                    if let (Stop::Finished, Some(l), None) =
                        (self.stop, self.launched.as_mut(), self.status)
                    {
                        self.status = Some(l.child.wait().await?);
                    }
                    self.phase = Phase::Done;
                }
                Phase::Done => return Ok(None),
            }
        }
    }

    fn recycle(&mut self, ev: Box<Event>) {
        self.recent.recycle(ev);
    }

    /// Stops tracing if it still runs (the last records are drained all the same, until a
    /// write fails); while draining, ends the drain.
    fn output_closed(&mut self) {
        self.queued.clear();
        match self.phase {
            Phase::Tracing => self.stop(Stop::OutputClosed),
            Phase::Draining => {
                self.drain = None;
                self.phase = Phase::Losses;
            }
            Phase::Losses | Phase::Ending | Phase::Done => {}
        }
    }
}

/// One record read from the ring, decoded; `None` for a record skipped: malformed ones
/// (wrong length, version or kind) are counted in `malformed`, the first few named.
fn decode(
    parsed: Result<records::Record<'_>, RecordError>,
    clock: &Clock,
    recent: &mut decode::Recent,
    malformed: &mut u64,
) -> Option<Record> {
    match parsed {
        Ok(records::Record::Syscall(rec)) => {
            let event = decode::decode_after(&rec, clock, recent).map(Record::Event);
            if event.is_none() {
                tracing::warn!("skipped a record with unknown syscall id {}", rec.head.syscall);
            }
            event
        }
        Ok(records::Record::Exit(rec)) => Some(Record::Exit(decode::exit(&rec, clock))),
        Ok(records::Record::SocketError(rec)) => {
            Some(Record::SocketError(Box::new(decode::socket_error(&rec, clock))))
        }
        Ok(records::Record::Fork(rec)) => {
            Some(Record::Fork { parent: rec.parent_tgid, child: rec.tgid })
        }
        Err(err) => {
            *malformed += 1;
            if *malformed <= MALFORMED_NAMED {
                tracing::warn!("skipped a malformed record from the kernel: {err}");
            }
            None
        }
    }
}

/// Waits until the ring has records, and takes note: the drain reads them.
async fn readable(ring: &mut AsyncFd<RingBuf<MapData>>) -> io::Result<()> {
    ring.readable_mut().await?.clear_ready();
    Ok(())
}

/// `len` bytes (at most a sockaddr_storage) at `ptr` in process `pid`'s memory, through
/// /proc/PID/mem: the address a call in progress passed. Empty when it cannot be read.
fn read_user(pid: u32, ptr: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0; usize::try_from(len).unwrap_or(0).min(ADDR_CAP)];
    let read = std::fs::File::open(format!("/proc/{pid}/mem"))
        .and_then(|mem| mem.read_at(&mut buf, ptr))
        .unwrap_or(0);
    buf.truncate(read);
    buf
}

/// The loss record for what the kernel counted between `before` and `now`; `None` when
/// nothing more was lost.
fn loss_since(before: &Lost, now: &Lost, ts: chrono::DateTime<chrono::Utc>) -> Option<Loss> {
    let by_syscall = |before: &[u64], now: &[u64]| -> BTreeMap<String, u64> {
        Syscall::ALL
            .iter()
            .zip(before.iter().zip(now))
            .filter(|(_, (before, now))| now > before)
            .map(|(syscall, (before, now))| (syscall.name().to_owned(), now - before))
            .collect()
    };
    let lost_by_syscall = by_syscall(&before.selected, &now.selected);
    let lost_context_by_syscall = by_syscall(&before.context, &now.context);
    let records = [
        ("exit", before.exits, now.exits),
        ("fork", before.forks, now.forks),
        ("socket_error", before.socket_errors, now.socket_errors),
    ];
    let loss = Loss {
        ts,
        lost: lost_by_syscall.values().sum(),
        total_lost: now.selected.iter().sum(),
        detail: LostDetail {
            lost_by_syscall,
            lost_context: lost_context_by_syscall.values().sum(),
            lost_context_by_syscall,
            lost_records: records
                .into_iter()
                .filter(|(_, before, now)| now > before)
                .map(|(kind, before, now)| (kind.to_owned(), now - before))
                .collect(),
        },
        without_slot: now.no_slot - before.no_slot,
    };
    (!loss.is_empty()).then_some(loss)
}

async fn wait(launched: Option<&mut Launched>) -> io::Result<ExitStatus> {
    match launched {
        Some(l) => l.child.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(syscall: Syscall, n: u64) -> [u64; Syscall::ALL.len()] {
        let mut counts = [0; Syscall::ALL.len()];
        counts[syscall as usize] = n;
        counts
    }

    #[test]
    fn losses_are_split_into_selected_context_and_other_records() {
        let ts = chrono::Utc::now();
        let before = Lost { selected: at(Syscall::Getsockopt, 5), ..Lost::default() };
        assert_eq!(loss_since(&before, &before, ts), None, "nothing more lost");
        let now = Lost {
            selected: at(Syscall::Getsockopt, 12),
            context: at(Syscall::Close, 30),
            exits: 1,
            ..Lost::default()
        };
        let loss = loss_since(&before, &now, ts).expect("a loss");
        assert_eq!((loss.lost, loss.total_lost, loss.detail.lost_context), (7, 12, 30));
        let map = |name: &str, n: u64| BTreeMap::from([(name.to_owned(), n)]);
        assert_eq!(loss.detail.lost_by_syscall, map("getsockopt", 7));
        assert_eq!(loss.detail.lost_context_by_syscall, map("close", 30));
        assert_eq!(loss.detail.lost_records, map("exit", 1));
        // Context alone is a loss record too, with no selected event lost.
        let only_context = Lost { context: at(Syscall::Socketpair, 1), ..before };
        let loss = loss_since(&before, &only_context, ts).expect("a loss");
        assert_eq!((loss.lost, loss.total_lost, loss.detail.lost_context), (0, 5, 1));
    }
}
