//! One measured run: the workload, alone or under a tracer, and what each side reports.
//!
//! wsltrace attaches with `--pid` to a workload held at a gate (`sockmix --gate`), so its own
//! resource usage is not mixed with the workload's and every traced call of the workload
//! happens after the programs are attached. strace and bpftrace start the workload themselves,
//! as their users would.

use std::{
    ffi::OsString,
    fs::{self, File},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::{
    page_cache,
    process::{self, Lines},
};

/// The stderr line wsltrace prints once its programs are attached.
pub const ATTACHED: &str = "wsltrace: tracing";
const LAST_LINE: &str = "wsltrace: ";
/// An errno the workload never fails with: `-e 133` keeps every program's entry work but lets
/// nothing through (EHWPOISON, "memory page has hardware error").
const NEVER_ERRNO: &str = "133";

const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Where things are.
pub struct Tools {
    pub wsltrace: PathBuf,
    pub sockmix: PathBuf,
    /// Scratch space on disk: reports and the traced events file.
    pub scratch: PathBuf,
    pub bpftrace: bool,
}

impl Tools {
    fn report_path(&self) -> PathBuf {
        self.scratch.join("sockmix.json")
    }

    pub fn events_path(&self) -> PathBuf {
        self.scratch.join("events.jsonl")
    }
}

/// Ways to run the workload, in the order of the overhead table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Untraced,
    /// Every program attached, the workload not in the traced set: each traced syscall of the
    /// machine costs the programs' first check (the tgid lookup) and nothing more.
    AttachedFloor,
    /// The workload traced, an errno filter that never matches: the entry programs do all
    /// their work (record, namespaces, user copies, pending map) and nothing is shown. (Where
    /// wsltrace sends hidden fd-changing calls as context records, those still cross the ring.)
    KernelNoOutput,
    /// `wsltrace -o FILE > /dev/null`: every event as JSON Lines to a file on disk (wsltrace
    /// formats nothing for a stdout on /dev/null).
    File,
    /// `wsltrace --format json > /dev/null`: every event read and judged, nothing formatted.
    JsonDevNull,
    /// `wsltrace --format json | reader`: every event formatted as JSON and read.
    JsonPipe,
    /// [`Mode::AttachedFloor`] with `--probe-kind raw`: the raw `sys_enter`/`sys_exit`
    /// programs see every syscall of the machine and return at once for the others.
    AttachedFloorRaw,
    /// [`Mode::File`] with `--probe-kind raw`.
    FileRaw,
    Strace,
    Bpftrace,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::AttachedFloor => "wsltrace attached, workload filtered out (floor)",
            Mode::KernelNoOutput => "wsltrace -e 133 (kernel work, nothing shown)",
            Mode::File => "wsltrace -o FILE > /dev/null (every event to a file)",
            Mode::JsonDevNull => "wsltrace --format json > /dev/null",
            Mode::JsonPipe => "wsltrace --format json | reader",
            Mode::AttachedFloorRaw => "wsltrace --probe-kind raw, workload filtered out (floor)",
            Mode::FileRaw => "wsltrace --probe-kind raw -o FILE > /dev/null",
            Mode::Strace => "strace -f -e trace=%network -o /dev/null",
            Mode::Bpftrace => "bpftrace, per-pid script, > /dev/null",
        }
    }

    pub fn is_wsltrace(self) -> bool {
        matches!(
            self,
            Mode::AttachedFloor
                | Mode::KernelNoOutput
                | Mode::File
                | Mode::JsonDevNull
                | Mode::JsonPipe
                | Mode::AttachedFloorRaw
                | Mode::FileRaw
        )
    }

    /// The mode `--probe-kind raw` compares with this one, for the modes run under both kinds.
    pub fn raw_twin(self) -> Option<Mode> {
        match self {
            Mode::AttachedFloor => Some(Mode::AttachedFloorRaw),
            Mode::File => Some(Mode::FileRaw),
            _ => None,
        }
    }
}

/// What the workload reports about itself.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
pub struct Workload {
    pub syscalls: u64,
    pub loop_ns: u64,
    /// The workload's own CPU time (all threads).
    pub cpu_ns: u64,
}

impl Workload {
    pub fn rate(&self) -> f64 {
        self.syscalls as f64 * 1e9 / self.loop_ns.max(1) as f64
    }
}

/// What a wsltrace run reports: its last stderr line, and the file it wrote.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Account {
    /// Events delivered to the outputs (`wsltrace: N events, M lost`).
    pub events: u64,
    pub lost: u64,
    /// In the `-o FILE` file: event lines and process-exit lines.
    pub file_events: Option<u64>,
    pub file_exits: Option<u64>,
}

impl Account {
    /// Delivered + lost = made. `lost` counts the workload's calls only (schema 1.2): the
    /// process-exit record the kernel also emits is counted apart (`lost_records`) when it does
    /// not fit, so it takes no part here.
    pub fn exact(&self, made: u64) -> bool {
        if let Some(file_events) = self.file_events
            && file_events != self.events
        {
            return false;
        }
        self.events + self.lost == made
    }
}

/// One measured run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Run {
    pub workload: Workload,
    /// The tracer's CPU time, the workload's excluded.
    pub tracer_cpu_ns: Option<u64>,
    /// The tracer's peak RSS in KiB (with strace and bpftrace: the larger of tracer and workload).
    pub tracer_maxrss_kb: Option<u64>,
    pub account: Option<Account>,
    /// Events bpftrace said it lost.
    pub bpftrace_lost: Option<u64>,
    /// The size of wsltrace's recording (`-o FILE` modes).
    pub file_bytes: Option<u64>,
    /// CPU time the bench took to write as many bytes to a new file and sync it, right after
    /// the run (`-o FILE` modes): the file system's share of the reader's CPU.
    pub page_cache_ns: Option<u64>,
}

/// sockmix's arguments after the global ones.
pub fn mix_args(iterations: u64) -> Vec<String> {
    vec!["mix".into(), "--iterations".into(), iterations.to_string()]
}

/// `getppid --iterations N`: a syscall no kind traces, for the bystander cost.
pub fn getppid_args(iterations: u64) -> Vec<String> {
    vec!["getppid".into(), "--iterations".into(), iterations.to_string()]
}

pub fn burst_args(threads: u64, rate: u64, secs: f64) -> Vec<String> {
    vec![
        "burst".into(),
        "--threads".into(),
        threads.to_string(),
        "--rate".into(),
        rate.to_string(),
        "--duration".into(),
        secs.to_string(),
    ]
}

/// Runs `workload` (sockmix arguments) in `mode`.
pub fn run(tools: &Tools, mode: Mode, workload: &[String]) -> Result<Run> {
    let _ = fs::remove_file(tools.report_path());
    let run = match mode {
        Mode::Untraced => untraced(tools, workload),
        Mode::AttachedFloor => wsltrace(tools, &[], Target::Idle, Stdout::DevNull, workload),
        Mode::AttachedFloorRaw => {
            wsltrace(tools, &["--probe-kind", "raw"], Target::Idle, Stdout::DevNull, workload)
        }
        Mode::KernelNoOutput => {
            wsltrace(tools, &["-e", NEVER_ERRNO], Target::Workload, Stdout::DevNull, workload)
        }
        Mode::File | Mode::FileRaw => {
            let file = tools.events_path();
            let file = file.to_str().context("the scratch path is not UTF-8")?;
            let kind = if mode == Mode::FileRaw { "raw" } else { "tracepoint" };
            let args = ["-o", file, "--probe-kind", kind];
            wsltrace(tools, &args, Target::Workload, Stdout::DevNull, workload).and_then(
                |mut run| {
                    // Written while the recording is still there, so that both take fresh memory.
                    let bytes = fs::metadata(tools.events_path())?.len();
                    let reference = tools.scratch.join("page-cache-reference");
                    run.file_bytes = Some(bytes);
                    run.page_cache_ns = Some(page_cache::write_cost(&reference, bytes)?);
                    Ok(run)
                },
            )
        }
        Mode::JsonDevNull => {
            wsltrace(tools, &["--format", "json"], Target::Workload, Stdout::DevNull, workload)
        }
        Mode::JsonPipe => {
            wsltrace(tools, &["--format", "json"], Target::Workload, Stdout::Pipe, workload)
        }
        Mode::Strace => strace(tools, workload),
        Mode::Bpftrace => bpftrace(tools, workload),
    };
    let _ = fs::remove_file(tools.events_path());
    run.with_context(|| format!("running the workload {}", mode.label()))
}

/// `wsltrace -q -o FILE --ring-size SIZE`: every event to the file, only findings on the
/// terminal, the way a tracer is left attached to a busy server.
pub fn quiet_to_file(tools: &Tools, ring_size: &str, workload: &[String]) -> Result<Run> {
    let _ = fs::remove_file(tools.report_path());
    let file = tools.events_path();
    let file = file.to_str().context("the scratch path is not UTF-8")?;
    let args = ["-q", "-o", file, "--ring-size", ring_size];
    let run = wsltrace(tools, &args, Target::Workload, Stdout::DevNull, workload);
    let _ = fs::remove_file(tools.events_path());
    run
}

/// sockmix waiting at its gate.
pub struct Gated {
    child: Child,
    stdin: ChildStdin,
    pid: u32,
    /// Its stderr: its summary line, or why it failed.
    stderr: Lines,
}

impl Gated {
    pub fn spawn(tools: &Tools, workload: &[String]) -> Result<Gated> {
        let mut child = Command::new(&tools.sockmix)
            .arg("--gate")
            .arg("--report")
            .arg(tools.report_path())
            .args(workload)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting sockmix")?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("sockmix's pipes were not set up");
        };
        let stderr = Lines::watch(stderr);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading sockmix's ready line")?;
        let pid = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("sockmix said {line:?} instead of `ready PID`"))?;
        Ok(Gated { child, stdin, pid, stderr })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn go_and_wait(mut self, tools: &Tools) -> Result<Workload> {
        self.stdin.write_all(b"go\n").context("starting sockmix")?;
        let done = process::wait(&mut self.child, RUN_TIMEOUT, "sockmix")?;
        if done.code != 0 {
            bail!("sockmix failed (exit {}):\n{}", done.code, self.stderr.finish().join("\n"));
        }
        read_report(tools)
    }
}

fn read_report(tools: &Tools) -> Result<Workload> {
    let text = fs::read_to_string(tools.report_path()).context("sockmix wrote no report")?;
    serde_json::from_str(&text).with_context(|| format!("sockmix's report {text:?}"))
}

fn untraced(tools: &Tools, workload: &[String]) -> Result<Run> {
    let workload = Gated::spawn(tools, workload)?.go_and_wait(tools)?;
    process::reap_orphans(Duration::from_secs(30));
    Ok(Run {
        workload,
        tracer_cpu_ns: None,
        tracer_maxrss_kb: None,
        account: None,
        bpftrace_lost: None,
        file_bytes: None,
        page_cache_ns: None,
    })
}

/// What wsltrace's `--pid` names.
#[derive(PartialEq)]
enum Target {
    Workload,
    /// An idle process: the workload runs outside the traced set.
    Idle,
}

/// Where wsltrace's stdout goes.
#[derive(PartialEq)]
enum Stdout {
    /// /dev/null, for which wsltrace formats nothing.
    DevNull,
    /// A pipe, read and discarded by a thread of the bench: every event is formatted.
    Pipe,
}

fn wsltrace(
    tools: &Tools,
    args: &[&str],
    target: Target,
    stdout: Stdout,
    workload: &[String],
) -> Result<Run> {
    let gated = Gated::spawn(tools, workload)?;
    let mut idle = match target {
        Target::Idle => Some(
            Command::new("sleep").arg("infinity").spawn().context("starting an idle process")?,
        ),
        Target::Workload => None,
    };
    let pid = idle.as_ref().map_or(gated.pid, Child::id);
    let mut tracer = Command::new(&tools.wsltrace)
        .args(args)
        .arg("--pid")
        .arg(pid.to_string())
        .stdout(match stdout {
            Stdout::DevNull => Stdio::null(),
            Stdout::Pipe => Stdio::piped(),
        })
        .stderr(Stdio::piped())
        .spawn()
        .context("starting wsltrace")?;
    let reader = tracer
        .stdout
        .take()
        .map(|mut out| std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink())));
    let mut lines = Lines::watch(tracer.stderr.take().context("wsltrace's stderr")?);
    let attached = lines.wait_for(ATTACHED, ATTACH_TIMEOUT, "wsltrace");
    // Whatever happened, the workload is released so that nothing is left waiting.
    let workload = gated.go_and_wait(tools);
    if let Some(idle) = &mut idle {
        let _ = idle.kill();
        process::wait(idle, RUN_TIMEOUT, "the idle process")?;
    }
    if let Err(err) = attached {
        let _ = tracer.kill();
        let _ = process::wait(&mut tracer, RUN_TIMEOUT, "wsltrace");
        process::reap_orphans(Duration::from_secs(60));
        return Err(err);
    }
    let workload = workload?;
    let done = process::wait(&mut tracer, RUN_TIMEOUT, "wsltrace")?;
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    let stderr = lines.finish();
    process::reap_orphans(Duration::from_secs(60));
    if done.code != 0 {
        bail!("wsltrace failed (exit {}):\n{}", done.code, stderr.join("\n"));
    }
    let mut account = last_line(&stderr)?;
    if args.contains(&"-o") {
        let (events, exits) = count_file(&tools.events_path())?;
        account.file_events = Some(events);
        account.file_exits = Some(exits);
    }
    Ok(Run {
        workload,
        tracer_cpu_ns: Some(done.cpu_ns),
        tracer_maxrss_kb: Some(done.maxrss_kb),
        account: Some(account),
        bpftrace_lost: None,
        file_bytes: None,
        page_cache_ns: None,
    })
}

/// `wsltrace: 123 events, 4 lost` (possibly with more after it).
pub fn last_line(stderr: &[String]) -> Result<Account> {
    let line = stderr
        .iter()
        .rev()
        .find(|l| l.starts_with(LAST_LINE) && l.contains(" events, "))
        .with_context(|| format!("wsltrace printed no summary line:\n{}", stderr.join("\n")))?;
    let mut words = line[LAST_LINE.len()..].split([' ', ',']).filter(|w| !w.is_empty());
    let events = words.next().and_then(|w| w.parse().ok());
    let lost = words.nth(1).and_then(|w| w.parse().ok());
    match (events, lost) {
        (Some(events), Some(lost)) => Ok(Account { events, lost, ..Account::default() }),
        _ => bail!("cannot read wsltrace's summary line {line:?}"),
    }
}

/// Event and process-exit lines in a JSON Lines file.
fn count_file(path: &Path) -> Result<(u64, u64)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (mut events, mut exits) = (0, 0);
    for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
        let line = line?;
        if line.starts_with(br#"{"type":"event""#) {
            events += 1;
        } else if line.starts_with(br#"{"type":"exit""#) {
            exits += 1;
        }
    }
    Ok((events, exits))
}

/// A tracer that starts the workload itself and is waited for with it.
fn parent_tracer(tools: &Tools, program: &str, args: Vec<OsString>) -> Result<(Run, Vec<String>)> {
    let mut tracer = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let lines = Lines::watch(tracer.stderr.take().context("the tracer's stderr")?);
    let done = process::wait(&mut tracer, RUN_TIMEOUT, program)?;
    let stderr = lines.finish();
    process::reap_orphans(Duration::from_secs(60));
    if done.code != 0 {
        bail!("{program} failed (exit {}):\n{}", done.code, stderr.join("\n"));
    }
    let workload = read_report(tools)?;
    let run = Run {
        workload,
        // The workload is the tracer's child: its usage is included in the tracer's.
        tracer_cpu_ns: Some(done.cpu_ns.saturating_sub(workload.cpu_ns)),
        tracer_maxrss_kb: Some(done.maxrss_kb),
        account: None,
        bpftrace_lost: None,
        file_bytes: None,
        page_cache_ns: None,
    };
    Ok((run, stderr))
}

fn sockmix_command(tools: &Tools, workload: &[String]) -> Vec<OsString> {
    let mut cmd = vec![tools.sockmix.clone().into_os_string(), "--report".into()];
    cmd.push(tools.report_path().into_os_string());
    cmd.extend(workload.iter().map(OsString::from));
    cmd
}

fn strace(tools: &Tools, workload: &[String]) -> Result<Run> {
    let mut args: Vec<OsString> =
        ["-f", "-e", "trace=%network", "-o", "/dev/null", "--"].map(OsString::from).to_vec();
    args.extend(sockmix_command(tools, workload));
    Ok(parent_tracer(tools, "strace", args)?.0)
}

/// The same 13 syscalls as wsltrace, entry and exit paired per thread, one line per call with
/// process, thread, syscall, result and duration, for the command's process only.
pub fn bpftrace_script() -> String {
    const SYSCALLS: [&str; 13] = [
        "socket",
        "socketpair",
        "bind",
        "listen",
        "connect",
        "accept",
        "accept4",
        "getsockopt",
        "setsockopt",
        "getsockname",
        "getpeername",
        "shutdown",
        "close",
    ];
    let probes =
        |dir: &str| SYSCALLS.map(|s| format!("tracepoint:syscalls:sys_{dir}_{s}")).join(",\n");
    let line = r#"printf("%s[%d/%d] %s = %d <%dns>\n", comm, pid, tid, probe, args->ret,
         nsecs - @start[tid]);"#;
    format!(
        "{enter}\n/pid == cpid/ {{ @start[tid] = nsecs; }}\n\
         {exit}\n/pid == cpid/ {{\n  {line}\n  delete(@start[tid]);\n}}\n\
         END {{ clear(@start); }}\n",
        enter = probes("enter"),
        exit = probes("exit"),
    )
}

fn bpftrace(tools: &Tools, workload: &[String]) -> Result<Run> {
    let command = sockmix_command(tools, workload);
    let command: Vec<&str> = command
        .iter()
        .map(|a| a.to_str().filter(|a| !a.contains(char::is_whitespace)))
        .collect::<Option<_>>()
        .context("bpftrace -c splits its command at spaces: use a checkout path without any")?;
    let args =
        vec![OsString::from("-c"), command.join(" ").into(), "-e".into(), bpftrace_script().into()];
    let (mut run, stderr) = parent_tracer(tools, "bpftrace", args)?;
    // "Lost 123 events" when its perf buffers overflow.
    run.bpftrace_lost = Some(
        stderr
            .iter()
            .filter_map(|l| l.strip_prefix("Lost ")?.split(' ').next()?.parse::<u64>().ok())
            .sum(),
    );
    Ok(run)
}

/// Time from launching `wsltrace --pid IDLE` to its "tracing" line (programs loaded and
/// attached).
pub fn attach_time(tools: &Tools) -> Result<Duration> {
    let mut idle =
        Command::new("sleep").arg("infinity").spawn().context("starting an idle process")?;
    let launched = std::time::Instant::now();
    let tracer = Command::new(&tools.wsltrace)
        .arg("--pid")
        .arg(idle.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting wsltrace");
    let measured = tracer.and_then(|mut tracer| {
        let mut lines = Lines::watch(tracer.stderr.take().context("wsltrace's stderr")?);
        let attached = lines.wait_for(ATTACHED, ATTACH_TIMEOUT, "wsltrace");
        // The traced process going away ends the trace.
        let _ = idle.kill();
        let done = process::wait(&mut tracer, RUN_TIMEOUT, "wsltrace");
        let stderr = lines.finish();
        let attached = attached?;
        if done?.code != 0 {
            bail!("wsltrace failed:\n{}", stderr.join("\n"));
        }
        Ok(attached - launched)
    });
    let _ = idle.kill();
    process::wait(&mut idle, RUN_TIMEOUT, "the idle process")?;
    process::reap_orphans(Duration::from_secs(60));
    measured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftrace_script_pairs_every_syscall() {
        let script = bpftrace_script();
        println!("{script}");
        assert_eq!(script.matches("tracepoint:syscalls:sys_enter_").count(), 13);
        assert_eq!(script.matches("tracepoint:syscalls:sys_exit_").count(), 13);
    }

    #[test]
    fn summary_line() {
        let lines =
            ["wsltrace: tracing pid 1".to_owned(), "wsltrace: 12 events, 3 lost".to_owned()];
        let account = last_line(&lines).unwrap();
        assert_eq!((account.events, account.lost), (12, 3));
        let account = Account { events: 10, lost: 2, file_events: Some(10), file_exits: Some(0) };
        assert!(account.exact(12), "a lost exit record is no lost call");
        assert!(!account.exact(13));
        let account = Account { events: 10, lost: 2, file_events: Some(9), file_exits: Some(1) };
        assert!(!account.exact(12), "the file must hold every event said delivered");
        let account = Account { events: 12, lost: 0, ..Account::default() };
        assert!(account.exact(12));
    }
}
