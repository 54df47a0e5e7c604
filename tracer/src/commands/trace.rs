//! Live tracing: `wsltrace --pid PID` and `wsltrace -- CMD`.

use std::{
    io::{self, BufWriter},
    os::unix::process::ExitStatusExt as _,
    process::{ExitCode, ExitStatus},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{MapData, RingBuf};
use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::{SignalsInfo, exfiltrator::WithOrigin},
    low_level::siginfo::{Cause, Origin},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
    time::Instant,
};
use tracer_common::{Syscall, config::ErrnoSet};

use crate::{
    cli::{Format, KnowledgeArgs, OutputArgs, TraceArgs},
    decode::{self, Clock},
    detect::{Detector, env::Environment, rules},
    emulate::{self, session::Emulation},
    enrich::{Enricher, sockets::SystemLookup},
    event::{Loss, Snapshot},
    facts::{sockets, system::Live},
    filter::Filter,
    pipeline::Pipeline,
    recording::Header,
    sinks::{
        Quiet, Sink, Sinks, json::JsonSink, recording as recording_sink, summary::SummarySink,
        text::TextSink,
    },
    source::{
        kernel::{Kernel, KernelOptions},
        launch::{self, Launched},
        privileges,
        records::{self, Record},
        target,
    },
};

/// How often the ring is drained when no wakeup came: records are submitted without waking
/// the reader (see tracer-ebpf's output.rs), so this bounds the display latency.
const POLL: Duration = Duration::from_millis(10);
/// How often losses are checked and exited processes noticed.
const HOUSEKEEPING: Duration = Duration::from_millis(200);
/// Records read per drain at most: under a flood the ring refills as fast as it is read, and
/// an unbounded drain would never return to notice a signal, the deadline or flush the output.
const MAX_DRAIN: usize = 4096;

pub fn run(args: TraceArgs) -> Result<ExitCode> {
    if args.pids.is_empty() && args.command.is_empty() {
        bail!("nothing to trace: give --pid PID or -- CMD [ARGS...] (see wsltrace --help)");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(trace(args))
}

fn kernel_options(args: &TraceArgs) -> KernelOptions {
    let mut errnos = ErrnoSet::empty();
    for errno in &args.filter.errnos {
        if !errnos.insert(errno.0.into()) {
            tracing::warn!("{errno} cannot be filtered in the kernel and will never match");
        }
    }
    let syscalls = if args.filter.syscalls.is_empty() {
        Syscall::ALL.to_vec()
    } else {
        let mut s = args.filter.syscalls.clone();
        s.sort();
        s.dedup();
        s
    };
    KernelOptions {
        syscalls,
        failed_only: args.filter.failed,
        errnos,
        // Commands are often wrappers (go run, npm start): follow them unless told not to.
        follow_forks: args.follow_forks || (!args.command.is_empty() && !args.no_follow),
        ring_bytes: args.ring_size,
    }
}

/// What a traced process holds as tracing starts (an empty list, said so, when /proc cannot
/// tell: the process may have just exited).
fn snapshot(pid: u32) -> Snapshot {
    let sockets = sockets::snapshot(pid).unwrap_or_else(|err| {
        tracing::warn!("cannot list the sockets of pid {pid}: {err:#}");
        Vec::new()
    });
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Snapshot { ts: chrono::Utc::now(), pid, comm: comm.trim().to_owned(), sockets }
}

/// The knowledge base for a live trace: built-in rules plus --rules files, this machine's
/// environment unless --assume says otherwise.
pub fn detector(knowledge: &KnowledgeArgs, facts: &crate::facts::Facts) -> Result<Detector> {
    let specs = rules::load(&knowledge.rules).map_err(super::rules::describe)?;
    let mut env = Environment::from_facts(facts);
    if let Some(assumed) = &knowledge.assume {
        env.assume(assumed)?;
    }
    let initial_net = crate::facts::namespaces::initial().map(|ns| ns.net);
    Ok(Detector::new(specs, env, Box::new(Live::default()), initial_net))
}

/// The terminal's sink; the recording (`-o`) is added once tracing can start. Nothing is
/// formatted for a stdout sent to /dev/null (`-o FILE > /dev/null`, a service's output):
/// nobody reads it, and at high rates formatting it costs as much as the recording.
pub fn sinks(output: &OutputArgs, quiet: bool) -> Result<Sinks> {
    let mut sinks = Sinks::default();
    if stdout_is_dev_null() {
        return Ok(sinks);
    }
    let stdout = BufWriter::with_capacity(64 << 10, io::stdout());
    match output.format {
        // -c: the summary replaces the line per call, like strace -c.
        _ if output.summary => sinks.push(Box::new(SummarySink::new(stdout, output.format))),
        Format::Json => sinks.push(quieted(Box::new(JsonSink::new(stdout)), quiet)),
        Format::Text => {
            let color = output.color.on_stdout();
            let initial_net = crate::facts::namespaces::initial().map(|ns| ns.net);
            sinks.push(quieted(Box::new(TextSink::new(stdout, color, initial_net)), quiet));
        }
    }
    Ok(sinks)
}

fn stdout_is_dev_null() -> bool {
    use nix::sys::stat::{SFlag, fstat, stat};
    let (Ok(out), Ok(null)) = (fstat(io::stdout()), stat("/dev/null")) else { return false };
    SFlag::from_bits_truncate(out.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
        && out.st_rdev == null.st_rdev
}

fn quieted(sink: Box<dyn Sink>, quiet: bool) -> Box<dyn Sink> {
    if quiet { Box::new(Quiet::new(sink)) } else { sink }
}

/// Why tracing stopped before every traced process exited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Finished,
    Signal(i32),
    Deadline,
    OutputClosed,
}

async fn trace(args: TraceArgs) -> Result<ExitCode> {
    // First of all: a signal that arrives while the programs load must end the trace cleanly.
    let signals = signal_stream()?;
    privileges::check()?;
    let pids = args.pids.iter().map(|&p| target::resolve_pid(p)).collect::<Result<Vec<_>>>()?;
    // What this machine is: the knowledge base judges against it, recordings carry it.
    let facts = crate::facts::gather();
    // Before the kernel work: a bad rule file or output path fails fast.
    let plan = emulate::plan_for_trace(&args.emulation)?;
    // Emulating a platform means judging as on it: `--emulate wsl1` flags the WSL1-only
    // failures it injects. --assume still has the last word.
    let mut knowledge = args.knowledge.clone();
    let emulated_platform = emulate::platform(&args.emulation);
    if knowledge.assume.is_none() {
        knowledge.assume = emulated_platform.map(str::to_owned);
    }
    let detector = detector(&knowledge, &facts)?;
    let mut sinks = sinks(&args.output, args.knowledge.quiet)?;
    recording_sink::preflight(&args.output)?;
    let clock = Clock::now()?;
    let opts = kernel_options(&args);
    let (mut kernel, ring) = Kernel::load(&opts)?;
    // Traced first, then photographed: a socket made in between is in both, and the events
    // that follow the snapshot keep the fd table right.
    let mut snapshots = Vec::new();
    for &pid in &pids {
        kernel.trace(pid)?;
        if !args.no_snapshot {
            snapshots.push(snapshot(pid));
        }
    }
    // Userspace filters; relative --since/--until and the recording count from here. The
    // file is created only now, so a trace that cannot start leaves none behind.
    let start = chrono::Utc::now();
    let mut filter = Filter::new(&args.filter, &[]);
    filter.set_start(start);
    if let Some(sink) =
        recording_sink::from_args(&args.output, Header::new(start, filter.spec(), facts))?
    {
        eprintln!("wsltrace: recording to {}", sink.path().display());
        sinks.push(Box::new(sink));
    }
    let mut emulation = plan.map(|p| Emulation::start_traced(p, kernel.ebpf_mut())).transpose()?;
    let mut launched = match args.command.is_empty() {
        true => None,
        false => {
            let mut launched = match &emulation {
                Some(e) => launch::spawn_with(&args.command, |command| e.prepare(command))?,
                None => launch::spawn(&args.command)?,
            };
            emulation.iter_mut().try_for_each(Emulation::spawned)?;
            kernel.trace(launched.pid)?;
            launched.release()?;
            Some(launched)
        }
    };
    announce(&pids, launched.as_ref(), &args, &opts, &kernel);
    if let Some(e) = &emulation {
        eprintln!("wsltrace: emulating {}", e.describe());
    }
    if let (Some(platform), None) = (emulated_platform, &args.knowledge.assume) {
        eprintln!("wsltrace: judging the calls as on {platform} (--assume overrides)");
    }

    let enricher = Enricher::new(Box::new(SystemLookup::default()));
    let mut pipeline = Pipeline::new(enricher, Some(detector), sinks).with_filter(filter);
    for snap in &snapshots {
        output_ok(pipeline.snapshot(snap))?;
    }
    let mut session = Session { kernel, pipeline, clock, reported_lost: 0, backlog: false };
    let (stop, status) = session.run(ring, signals, launched.as_mut(), args.duration).await?;
    if let Some(e) = emulation {
        e.finish();
    }
    // Footer, summary table: also after SIGINT/SIGTERM, which end `run` normally.
    output_ok(session.pipeline.finish())?;
    // -c prints the findings in its table; otherwise they are listed here.
    if !args.output.summary
        && let Some(findings) = session.pipeline.findings_summary()
    {
        eprintln!("{findings}");
    }
    eprintln!("{}", session.pipeline.summary());
    session.kernel.detach();
    Ok(exit_code(stop, status, launched.is_some()))
}

fn announce(
    pids: &[u32],
    launched: Option<&Launched>,
    args: &TraceArgs,
    opts: &KernelOptions,
    kernel: &Kernel,
) {
    let mut what: Vec<String> = pids.iter().map(|p| format!("pid {p}")).collect();
    if let Some(l) = launched {
        let cmd = args.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        what.push(format!("`{cmd}` (pid {})", l.pid));
    }
    let follow = if opts.follow_forks { ", following forks" } else { "" };
    eprintln!(
        "wsltrace: tracing {}{follow} ({} syscalls); Ctrl-C to stop",
        what.join(", "),
        kernel.syscalls.len()
    );
}

/// The command's status, like strace; otherwise 0, or 128+signal when a signal stopped us.
fn exit_code(stop: Stop, status: Option<ExitStatus>, command_mode: bool) -> ExitCode {
    if let Some(status) = status.filter(|_| command_mode) {
        return match (status.code(), status.signal()) {
            (Some(code), _) => ExitCode::from(code as u8),
            (None, Some(signal)) => ExitCode::from(128 + signal as u8),
            (None, None) => ExitCode::FAILURE,
        };
    }
    match stop {
        Stop::Signal(signal) => ExitCode::from(128 + signal as u8),
        Stop::Finished | Stop::Deadline | Stop::OutputClosed => ExitCode::SUCCESS,
    }
}

struct Session {
    kernel: Kernel,
    pipeline: Pipeline,
    clock: Clock,
    reported_lost: u64,
    /// The last drain stopped at MAX_DRAIN with records left in the ring.
    backlog: bool,
}

impl Session {
    async fn run(
        &mut self,
        ring: RingBuf<MapData>,
        mut signals: mpsc::UnboundedReceiver<Origin>,
        mut launched: Option<&mut Launched>,
        duration: Option<Duration>,
    ) -> Result<(Stop, Option<ExitStatus>)> {
        // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, until dropped with
        // the AsyncFd.
        let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)
            .context("polling the ring buffer")?;
        let mut poll = tokio::time::interval(POLL);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        let deadline = duration.map(|d| Instant::now() + d);
        let mut status = None;
        let mut signalled = false;

        let stop = loop {
            let backlog = self.backlog;
            tokio::select! {
                guard = ring.readable_mut() => guard?.clear_ready(),
                // Records left over: drain again at once (after any signal that is ready).
                () = std::future::ready(()), if backlog => {}
                _ = poll.tick() => {}
                _ = housekeeping.tick() => {
                    self.report_losses()?;
                    if self.all_exited() {
                        break Stop::Finished;
                    }
                }
                exit = wait(launched.as_deref_mut()), if status.is_none() && launched.is_some() => {
                    status = Some(exit?);
                }
                Some(origin) = signals.recv() => {
                    match launched.as_deref_mut() {
                        // The command gets the signal (unless the terminal already sent it to
                        // the whole group) and tracing goes on until it exits.
                        Some(l) if !signalled && status.is_none() => {
                            signalled = true;
                            forward(origin, l);
                        }
                        _ => break Stop::Signal(origin.signal),
                    }
                }
                _ = sleep_until(deadline) => break Stop::Deadline,
            }
            if !self.drain(ring.get_mut())? {
                break Stop::OutputClosed;
            }
        };
        // Whatever the kernel submitted before we stopped is still delivered: stop recording
        // first (processes still running would otherwise refill the ring forever), then drain.
        for pid in self.kernel.traced() {
            self.kernel.untrace(pid);
        }
        while self.drain(ring.get_mut())? && self.backlog {}
        self.report_losses()?;
        if let (Stop::Finished, Some(l), None) = (stop, launched, status) {
            status = Some(l.child.wait().await?);
        }
        Ok((stop, status))
    }

    /// Reads every record waiting in the ring; false when the output went away (EPIPE).
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Result<bool> {
        self.backlog = false;
        let mut read = 0;
        while let Some(item) = ring.next() {
            let parsed = records::parse(&item);
            drop(item);
            let written = match parsed {
                Ok(Record::Syscall(rec)) => match decode::decode(&rec, &self.clock) {
                    Some(mut ev) => self.pipeline.event(&mut ev),
                    None => {
                        tracing::warn!("skipped a record with unknown syscall id {}", rec.syscall);
                        Ok(())
                    }
                },
                Ok(Record::Exit(rec)) => self.pipeline.exit(&decode::exit(&rec, &self.clock)),
                Ok(Record::Fork(rec)) => {
                    self.pipeline.fork(rec.parent_tgid, rec.tgid);
                    Ok(())
                }
                Err(err) => {
                    tracing::warn!("skipped a malformed record from the kernel: {err}");
                    Ok(())
                }
            };
            if !output_ok(written)? {
                return Ok(false);
            }
            read += 1;
            if read == MAX_DRAIN {
                self.backlog = true;
                break;
            }
        }
        output_ok(self.pipeline.flush())
    }

    /// Turns growth of the kernel's drop counter into a visible loss record.
    fn report_losses(&mut self) -> Result<()> {
        let lost = self.kernel.counters()?.lost;
        if lost > self.reported_lost {
            let loss =
                Loss { ts: chrono::Utc::now(), lost: lost - self.reported_lost, total_lost: lost };
            self.reported_lost = lost;
            output_ok(self.pipeline.loss(&loss))?;
        }
        Ok(())
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

/// Ok(false) when the reader of our stdout went away: stop quietly, like other CLI tools.
pub(crate) fn output_ok(result: io::Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err).context("writing the trace"),
    }
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

/// SIGINT/SIGTERM with their origin (kill vs terminal), read on a thread of their own.
pub(crate) fn signal_stream() -> Result<mpsc::UnboundedReceiver<Origin>> {
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM])?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for origin in signals.forever() {
            if tx.send(origin).is_err() {
                break;
            }
        }
    })?;
    Ok(rx)
}

/// Passes a signal sent with kill on to the command. A Ctrl-C from the terminal reached the
/// whole foreground group already, command included: sending it again could turn a graceful
/// shutdown into a forced one.
pub(crate) fn forward(origin: Origin, launched: &Launched) {
    if matches!(origin.cause, Cause::Kernel) {
        return;
    }
    if let Ok(signal) = nix::sys::signal::Signal::try_from(origin.signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(launched.pid as i32), signal);
    }
}
