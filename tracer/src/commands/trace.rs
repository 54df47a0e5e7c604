//! Live tracing: `wsltrace --pid PID` and `wsltrace -- CMD`. Wiring only: the live source
//! (`source::live`) runs through the pipeline in `pipeline::run`, as recordings do.

use std::{
    collections::HashMap, ffi::OsString, net::SocketAddr, os::fd::AsFd as _, process::ExitCode,
    time::Duration,
};

use anyhow::{Result, bail};
use clap::Args;
use tracer_common::{Syscall, config::ErrnoSet};

use crate::{
    decode::Clock,
    detect::{Detector, args::KnowledgeArgs, env::Environment, rules},
    emulate::{self, args::TraceEmulation, session::Emulation},
    enrich::{Enricher, sockets::SystemLookup},
    event::Snapshot,
    facts::{sockets, system::Live as LiveSystem},
    filter::{Filter, FilterArgs},
    pipeline::{self, Pipeline, output_ok},
    recording::Header,
    sinks::{
        self,
        args::OutputArgs,
        metrics::{self, Metrics, MetricsSink},
        recording as recording_sink,
        status::{StatusLine, StatusSink},
    },
    source::{
        kernel::{Kernel, KernelOptions, ProbeKind},
        launch::{self, Launched},
        live::{Live, Stop},
        privileges, target,
    },
};

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Trace these running processes, all their threads (repeat or comma-separate). This
    /// chooses what to trace; in `wsltrace analyze`, --pid filters a recording instead
    #[arg(
        short = 'p',
        long = "pid",
        value_name = "PID",
        value_delimiter = ',',
        help_heading = "What to trace"
    )]
    pub pids: Vec<u32>,

    /// Also trace the children they fork from now on and, with --pid, the descendants they
    /// already have (default with -- CMD)
    #[arg(short = 'f', long, help_heading = "What to trace")]
    pub follow_forks: bool,

    /// With -- CMD, trace only the command itself, not its children
    #[arg(long, conflicts_with = "follow_forks", help_heading = "What to trace")]
    pub no_follow: bool,

    /// Do not list the sockets each --pid process holds when tracing starts
    #[arg(long, help_heading = "What to trace")]
    pub no_snapshot: bool,

    /// Run this command and trace it from its very first syscall. When the trace goes to a pipe
    /// or a file, the command's own output goes to stderr, so the trace stream stays clean
    #[arg(last = true, value_name = "CMD", help_heading = "What to trace")]
    pub command: Vec<OsString>,

    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    /// Serve Prometheus metrics at http://ADDR/metrics while tracing (ADDR is IP:PORT, e.g.
    /// 127.0.0.1:9464; port 0 picks a free one): calls, errors by errno, findings by rule,
    /// lost events, blocked calls, latency per syscall
    #[arg(long, value_name = "ADDR", value_parser = metrics::parse_listen_addr, help_heading = "Output")]
    pub metrics: Option<SocketAddr>,

    #[command(flatten)]
    pub knowledge: KnowledgeArgs,

    #[command(flatten)]
    pub emulation: TraceEmulation,

    /// Stop tracing after this many seconds (e.g. 10, 0.5)
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Report a traced call still in progress after this many seconds (e.g. 2, 0.5), once,
    /// while it blocks; its event follows when it returns. A non-blocking connect whose socket
    /// is still connecting is reported too. accept/accept4 are not (waiting is their job).
    /// 0 turns it off
    #[arg(long, value_name = "SECS", default_value = "2s", value_parser = parse_blocked_after)]
    pub blocked_after: Duration,

    /// Kernel ring buffer size: a power of two, e.g. 8M (the default), 512K, 64M
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_ring_size)]
    pub ring_size: u32,

    #[command(flatten)]
    pub probe: ProbeArgs,
}

/// How the kernel hooks the socket calls (`wsltrace` and `wsltrace demo`).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ProbeArgs {
    /// How the socket calls are hooked. raw (x86_64 only) lowers the floor for socket-heavy
    /// load, but adds ~50 ns to every syscall of every process on the machine; tracepoint
    /// costs nothing to the calls it does not trace
    #[arg(long, value_enum, value_name = "KIND", default_value_t = ProbeKind::Tracepoint)]
    pub probe_kind: ProbeKind,
}

pub fn run(args: TraceArgs) -> Result<ExitCode> {
    if args.pids.is_empty() && args.command.is_empty() {
        bail!("nothing to trace: give --pid PID or -- CMD [ARGS...] (see wsltrace --help)");
    }
    // As a shell does: a command that cannot be run is said so before tracing starts, with
    // status 127 (not found) or 126 (not executable).
    if let Some(program) = args.command.first()
        && which::which(program).is_err()
    {
        let name = program.to_string_lossy();
        let path = std::path::Path::new(program);
        if name.contains('/') && path.is_file() {
            eprintln!(
                "wsltrace: error: {name}: not executable: chmod +x it, or run its interpreter"
            );
            return Ok(ExitCode::from(126));
        }
        eprintln!("wsltrace: error: {name}: command not found: check the name and PATH");
        return Ok(ExitCode::from(127));
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
        probe_kind: args.probe.probe_kind,
    }
}

/// What a traced process holds as tracing starts (an empty list, said so, when /proc cannot
/// tell: the process may have just exited). `tables`: the socket tables read so far, by
/// network namespace.
fn snapshot(pid: u32, tables: &mut HashMap<u64, sockets::Tables>) -> Snapshot {
    let sockets = sockets::snapshot_with(pid, tables).unwrap_or_else(|err| {
        tracing::warn!("cannot list the sockets of pid {pid}: {err:#}");
        Vec::new()
    });
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Snapshot { ts: chrono::Utc::now(), pid, comm: comm.trim().to_owned(), sockets }
}

/// The knowledge base for a live trace: built-in rules plus --rules files, this machine's
/// environment unless --assume says otherwise.
fn detector(
    knowledge: &KnowledgeArgs,
    facts: &crate::facts::Facts,
    launching: bool,
    emulated_drvfs: Vec<std::path::PathBuf>,
) -> Result<Detector> {
    let specs = rules::load(&knowledge.rules).map_err(super::rules::describe)?;
    let mut env = Environment::from_facts(facts);
    if let Some(assumed) = &knowledge.assume {
        env.assume(assumed)?;
    }
    let initial_net = crate::facts::namespaces::initial().map(|ns| ns.net);
    let mut system = LiveSystem::default().with_emulated_drvfs(emulated_drvfs);
    if launching {
        // The command inherits ours: what a process that exited too soon to be read had.
        system = system.with_launch_environment();
    }
    Ok(Detector::new(specs, env, Box::new(system), initial_net))
}

async fn trace(args: TraceArgs) -> Result<ExitCode> {
    // First of all: a signal that arrives while the programs load must end the trace cleanly.
    let signals = launch::signal_stream()?;
    privileges::check()?;
    let pids = args.pids.iter().map(|&p| target::resolve_pid(p)).collect::<Result<Vec<_>>>()?;
    // What this machine is: the knowledge base judges against it, recordings carry it.
    let facts = crate::facts::gather();
    // Before the kernel work: a bad rule file or output path fails fast.
    let plan = emulate::plan_for_trace(&args.emulation)?;
    // And a kernel that cannot run the quirks says so in one line, before the programs load.
    if let Some(plan) = &plan {
        emulate::features::check(plan, crate::source::kernel::PROGRAMS)?;
    }
    // Emulating a platform means judging as on it: `--emulate wsl1` flags the WSL1-only
    // failures it injects. --assume still has the last word.
    let mut knowledge = args.knowledge.clone();
    let emulated_platform = emulate::platform(&args.emulation);
    if knowledge.assume.is_none() {
        knowledge.assume = emulated_platform.map(str::to_owned);
    }
    // The emulated Windows drives are DrvFs for the rules as well as for the quirks.
    let drvfs = plan.as_ref().map(emulate::plan::Plan::drvfs_stand_ins).unwrap_or_default();
    let detector = detector(&knowledge, &facts, !args.command.is_empty(), drvfs.clone())?;
    let status = StatusLine::for_trace(&args.output, args.knowledge.quiet);
    let mut sinks = sinks::terminal(&args.output, args.knowledge.quiet, status.as_ref());
    recording_sink::preflight(&args.output)?;
    // Before the kernel work too: a port in use is said at once.
    let metrics_listener = args.metrics.map(metrics::bind).transpose()?;
    let clock = Clock::now()?;
    let opts = kernel_options(&args);
    let (mut kernel, ring) = Kernel::load(&opts)?;
    // Traced first, then photographed: a socket made in between is in both, and the events
    // that follow the snapshot keep the fd table right.
    for &pid in &pids {
        kernel.trace(pid)?;
    }
    // -f takes in the processes' existing descendants too (an nginx master's workers): listed
    // after the roots are traced, so a child forked meanwhile is seen by the fork tracepoint
    // or by the next round of the walk.
    let mut added = Vec::new();
    if opts.follow_forks && !pids.is_empty() {
        for _ in 0..3 {
            let known: Vec<u32> = pids.iter().chain(&added).copied().collect();
            let new: Vec<u32> =
                target::descendants(&pids).into_iter().filter(|p| !known.contains(p)).collect();
            if new.is_empty() {
                break;
            }
            for &pid in &new {
                kernel.trace(pid)?;
            }
            added.extend(new);
        }
        added.sort_unstable();
        if !added.is_empty() {
            let list = added.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
            eprintln!("wsltrace: -f: also tracing existing descendants: pids {list}");
        }
    }
    let mut snapshots = Vec::new();
    if !args.no_snapshot {
        let mut tables = HashMap::new();
        snapshots.extend(pids.iter().chain(&added).map(|&pid| snapshot(pid, &mut tables)));
    }
    // Userspace filters; relative --since/--until and the recording count from here. The
    // file is created only now, so a trace that cannot start leaves none behind.
    let start = chrono::Utc::now();
    let mut filter = Filter::new(&args.filter, &[]);
    filter.set_start(start);
    let mut file_bytes = None;
    let header = Header {
        probe_kind: Some(opts.probe_kind.name().to_owned()),
        ..Header::new(start, filter.spec(), facts)
    };
    if let Some(sink) = recording_sink::from_args(&args.output, header)? {
        eprintln!("wsltrace: recording to {}", sink.path().display());
        file_bytes = Some(sink.written());
        sinks.push(Box::new(sink));
    }
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr()?;
        let metrics = Metrics::new(&opts.syscalls);
        metrics::serve(listener, metrics.registry())?;
        eprintln!("wsltrace: serving metrics on http://{addr}/metrics");
        sinks.push(Box::new(MetricsSink::new(metrics)));
    }
    if let Some(line) = status {
        sinks.push(Box::new(StatusSink::new(line, file_bytes)));
    }
    let mut emulation = plan.map(|p| Emulation::start_traced(p, kernel.ebpf_mut())).transpose()?;
    let launched = match args.command.is_empty() {
        true => None,
        false => {
            // The trace has stdout to itself when it goes to a pipe or a file: the command
            // writes its own output to stderr then (as under strace, the other way round).
            let own_stdout = sinks::stdout_carries_the_trace();
            let stderr = match own_stdout {
                true => Some(std::io::stderr().as_fd().try_clone_to_owned()?),
                false => None,
            };
            let mut launched = launch::spawn_with(&args.command, |command| {
                if let Some(stderr) = stderr {
                    command.stdout(std::process::Stdio::from(stderr));
                }
                if let Some(e) = &emulation {
                    e.prepare(command);
                }
            })?;
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
    if !drvfs.is_empty() {
        let dirs: Vec<String> = drvfs.iter().map(|d| d.display().to_string()).collect();
        eprintln!(
            "wsltrace: unix paths under {} stand for a Windows drive (DrvFs, 9p) in the rules (emulated)",
            dirs.join(", ")
        );
    }
    if let (Some(platform), None) = (emulated_platform, &args.knowledge.assume) {
        eprintln!("wsltrace: judging the calls as on {platform} (--assume overrides)");
    }

    let mut live = Live::new(kernel, ring, clock, snapshots, signals, launched, args.duration)?
        .with_blocked_after(args.blocked_after);
    let enricher = Enricher::new(Box::new(SystemLookup::default()));
    let blocked_after = u64::try_from(args.blocked_after.as_nanos()).unwrap_or(u64::MAX);
    let mut pipeline = Pipeline::new(enricher, Some(detector), sinks)
        .with_filter(filter)
        .with_blocked_after(blocked_after);
    let traced = pipeline::run(&mut live, &mut pipeline).await;
    if traced.is_err() {
        // The error is printed next, on a line of its own.
        pipeline.make_way();
    }
    traced?;
    if let Some(e) = emulation {
        e.finish();
    }
    // Footer, summary table: also after SIGINT/SIGTERM, which end the source normally.
    output_ok(pipeline.finish())?;
    // -c prints the findings in its table; otherwise they are listed here.
    if !args.output.summary
        && let Some(findings) = pipeline.findings_summary()
    {
        eprintln!("{findings}");
    }
    eprintln!("{}", pipeline.summary());
    let (stop, status) = live.outcome();
    live.detach();
    Ok(exit_code(stop, status))
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
    // The default goes unsaid; raw is said, since every process on the machine pays for it.
    let kind = match opts.probe_kind {
        ProbeKind::Tracepoint => "",
        ProbeKind::Raw => ", raw sys_enter/sys_exit",
    };
    eprintln!(
        "wsltrace: tracing {}{follow} ({} syscalls{kind}); Ctrl-C to stop",
        what.join(", "),
        kernel.syscalls.len()
    );
}

/// The command's status (known only with -- CMD), like strace; otherwise 0, or 128+signal
/// when a signal stopped us.
fn exit_code(stop: Stop, status: Option<std::process::ExitStatus>) -> ExitCode {
    if let Some(status) = status {
        return launch::exit_code(status);
    }
    match stop {
        Stop::Signal(signal) => ExitCode::from(128 + signal as u8),
        Stop::Finished | Stop::Deadline | Stop::OutputClosed => ExitCode::SUCCESS,
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds (e.g. 10 or 0.5)"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{s}' must be a positive number of seconds"))
}

/// `--duration`'s format, or 0 (off).
fn parse_blocked_after(s: &str) -> Result<Duration, String> {
    match s.trim_end_matches('s').parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_duration(s),
    }
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let (digits, unit) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_owned(), 1_u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_owned(), 1 << 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_owned(), 1 << 30),
        t => (t, 1),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("'{s}' is not a size (e.g. 8M, 512K)"))?;
    if !bytes.is_power_of_two() || !(4096..=(1 << 30)).contains(&bytes) {
        return Err(format!("ring size {s} must be a power of two between 4K and 1G (e.g. 8M)"));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_ring_size("8M"), Ok(8 << 20));
        assert_eq!(parse_ring_size("4k"), Ok(4096));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_blocked_after("0"), Ok(Duration::ZERO));
        assert_eq!(parse_blocked_after("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_blocked_after("soon").unwrap_err().contains("not a number"));
        assert!(parse_blocked_after("-1").is_err());
    }
}
