//! The figures, the targets next to them, and their two renderings: RESULTS.md for people,
//! results.json for tools.

use std::{fmt::Write as _, time::Duration};

use serde::Serialize;

use super::{
    RATE_REACHED, Settings,
    kernel::{KernelCost, Paired},
    machine::{self, Machine, Versions},
    median, min, ms,
    nginx::Server,
    runs::{Mode, Run},
};

#[derive(Serialize)]
pub struct Results {
    pub date: String,
    pub machine: Machine,
    pub versions: Versions,
    pub settings: Settings,
    pub overhead: Option<Overhead>,
    /// getppid, a syscall no kind traces, in a process wsltrace does not trace: untraced,
    /// with wsltrace attached with each probe kind.
    pub bystander: Option<Overhead>,
    /// Time in the kernel programs per call of the workload, by mode.
    pub kernel: Option<Vec<KernelCost>>,
    /// This build's programs against another build's on the same runs (`--against`).
    pub paired: Option<Paired>,
    pub saturation: Option<Saturation>,
    pub lossless: Option<Lossless>,
    /// nginx under ab: requests/s traced over untraced.
    pub server: Option<Server>,
    pub startup: Option<Startup>,
    /// The same launches with `pid_max` raised to systemd's 4,194,304 (the threads' slots
    /// from a pool), where the machine's is the kernel's default.
    pub startup_pool: Option<Startup>,
    /// wsltrace runs whose delivered + lost was checked against the calls made, and how many
    /// added up exactly.
    pub accounting: Accounting,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
}

#[derive(Default, Serialize)]
pub struct Accounting {
    pub checked: u64,
    pub exact: u64,
}

#[derive(Serialize)]
pub struct Overhead {
    pub workload: String,
    pub rounds: u64,
    pub modes: Vec<ModeSummary>,
}

#[derive(Serialize)]
pub struct ModeSummary {
    pub mode: Mode,
    pub label: &'static str,
    /// Loop time over the untraced loop time of the same round.
    pub ratio_median: f64,
    pub ratio_min: f64,
    pub loop_ms_median: f64,
    /// Median over rounds of (loop time - untraced loop time) / calls.
    pub added_ns_per_call: f64,
    /// Median over rounds of the tracer's CPU time, start-up and shutdown included.
    pub tracer_cpu_ms: Option<f64>,
    /// wsltrace's CPU per event delivered, less the floor's (start-up, shutdown): what its
    /// reader spends on each event.
    pub reader_ns_per_event: Option<f64>,
    /// Median over runs of the recording's size over its events (`-o FILE` modes).
    pub file_bytes_per_event: Option<f64>,
    /// Median over runs of the CPU the bench took to write the recording's bytes to a new file
    /// and sync it, over the run's events: the file system's share of the reader's CPU.
    pub page_cache_ns_per_event: Option<f64>,
    pub events: u64,
    pub lost: u64,
    pub made: u64,
    /// Runs whose account is right: delivered + lost = made for the modes that show every
    /// call, nothing shown for the others.
    pub exact_runs: Option<u64>,
    pub runs: Vec<Run>,
}

impl Overhead {
    /// Fills in each emitting mode's reader CPU per event, the floor's CPU taken off.
    pub fn reader_costs(&mut self) {
        let floor = self.modes.iter().find(|m| m.mode == Mode::AttachedFloor);
        let Some(floor_ms) = floor.and_then(|f| f.tracer_cpu_ms) else { return };
        for m in &mut self.modes {
            let per_run = m.events as f64 / m.runs.len().max(1) as f64;
            if let (Some(cpu_ms), true) = (m.tracer_cpu_ms, m.mode.is_wsltrace() && per_run > 0.0) {
                m.reader_ns_per_event = Some((cpu_ms - floor_ms) * 1e6 / per_run);
            }
        }
    }
}

/// Median over `runs` of `value` in ms, if any run has it.
fn median_of(runs: &[Run], value: fn(&Run) -> Option<u64>) -> Option<f64> {
    let values: Vec<f64> = runs.iter().filter_map(|r| Some(value(r)? as f64 / 1e6)).collect();
    (!values.is_empty()).then(|| median(&values))
}

/// Median over `runs` of `value` over the run's delivered events, if any run has it.
fn per_event(runs: &[Run], value: fn(&Run) -> Option<u64>) -> Option<f64> {
    let values: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some(value(r)? as f64 / r.account?.events.max(1) as f64))
        .collect();
    (!values.is_empty()).then(|| median(&values))
}

impl ModeSummary {
    pub fn new(mode: Mode, runs: Vec<Run>, untraced: &[Run]) -> ModeSummary {
        let loop_ns = |r: &Run| r.workload.loop_ns as f64;
        let ratios: Vec<f64> =
            runs.iter().zip(untraced).map(|(r, u)| loop_ns(r) / loop_ns(u)).collect();
        let added: Vec<f64> = runs
            .iter()
            .zip(untraced)
            .map(|(r, u)| (loop_ns(r) - loop_ns(u)) / r.workload.syscalls.max(1) as f64)
            .collect();
        let exact_runs = mode.is_wsltrace().then(|| {
            runs.iter()
                .filter(|r| {
                    r.account.is_some_and(|a| match mode {
                        Mode::File | Mode::FileRaw | Mode::JsonDevNull | Mode::JsonPipe => {
                            a.exact(r.workload.syscalls)
                        }
                        // Context records (fd-changing calls a filter hides) may be lost.
                        Mode::KernelNoOutput => a.events == 0,
                        _ => a.events == 0 && a.lost == 0,
                    })
                })
                .count() as u64
        });
        let sum = |f: fn(&Run) -> Option<u64>| runs.iter().filter_map(f).sum::<u64>();
        ModeSummary {
            mode,
            label: mode.label(),
            ratio_median: median(&ratios),
            ratio_min: min(&ratios),
            loop_ms_median: median(&runs.iter().map(loop_ns).collect::<Vec<_>>()) / 1e6,
            added_ns_per_call: median(&added),
            tracer_cpu_ms: median_of(&runs, |r| r.tracer_cpu_ns),
            reader_ns_per_event: None,
            file_bytes_per_event: per_event(&runs, |r| r.file_bytes),
            page_cache_ns_per_event: per_event(&runs, |r| r.page_cache_ns),
            events: sum(|r| r.account.map(|a| a.events)),
            lost: sum(|r| r.account.map(|a| a.lost).or(r.bpftrace_lost)),
            made: runs.iter().map(|r| r.workload.syscalls).sum(),
            exact_runs,
            runs,
        }
    }
}

#[derive(Serialize)]
pub struct Saturation {
    pub ring_size: String,
    pub threads: u64,
    pub secs: f64,
    pub exact: bool,
    pub run: Run,
}

#[derive(Clone, Serialize)]
pub struct Step {
    /// Calls per second asked of the workload; 0 for flat out.
    pub asked_rate: u64,
    pub achieved_rate: f64,
    pub made: u64,
    pub delivered: u64,
    pub lost: u64,
    pub exact: bool,
    pub maxrss_kb: u64,
    pub tracer_cpu_ns: u64,
}

impl Step {
    pub fn new(asked_rate: u64, run: Run) -> anyhow::Result<Step> {
        let account = run.account.ok_or_else(|| anyhow::anyhow!("wsltrace gave no account"))?;
        Ok(Step {
            asked_rate,
            achieved_rate: run.workload.rate(),
            made: run.workload.syscalls,
            delivered: account.events,
            lost: account.lost,
            exact: account.exact(run.workload.syscalls),
            maxrss_kb: run.tracer_maxrss_kb.unwrap_or(0),
            tracer_cpu_ns: run.tracer_cpu_ns.unwrap_or(0),
        })
    }
}

#[derive(Serialize)]
pub struct Lossless {
    pub ring_size: String,
    pub threads: u64,
    pub secs: f64,
    pub steps: Vec<Step>,
    /// The highest rate a run without loss reached.
    pub highest_rate: Option<f64>,
    /// True when even flat out nothing was lost: the figure is the workload's limit on this
    /// machine, and wsltrace's is higher.
    pub workload_bound: bool,
    /// wsltrace's peak RSS in that run.
    pub peak_rss_mb: Option<f64>,
}

impl Lossless {
    pub fn new(ring: &str, s: &Settings, steps: Vec<Step>, workload_bound: bool) -> Lossless {
        let best = steps
            .iter()
            .filter(|s| s.lost == 0)
            .max_by(|a, b| a.achieved_rate.total_cmp(&b.achieved_rate));
        Lossless {
            ring_size: ring.into(),
            threads: s.search_threads,
            secs: s.search_secs,
            highest_rate: best.map(|b| b.achieved_rate),
            peak_rss_mb: best.map(|b| b.maxrss_kb as f64 / 1024.0),
            workload_bound,
            steps,
        }
    }
}

#[derive(Serialize)]
pub struct Startup {
    pub samples_ms: Vec<f64>,
    pub median_ms: f64,
    pub min_ms: f64,
}

impl Startup {
    pub fn new(samples: &[Duration]) -> Startup {
        let samples_ms: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
        Startup { median_ms: median(&samples_ms), min_ms: min(&samples_ms), samples_ms }
    }

    /// Every sample in ms, comma-separated.
    fn samples(&self) -> String {
        self.samples_ms.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ")
    }
}

/// A target of issue 7 next to the figure measured.
#[derive(Serialize)]
pub struct Target {
    pub what: &'static str,
    pub figure: String,
    pub now: &'static str,
    pub met: bool,
    pub goal: Option<&'static str>,
    pub goal_met: Option<bool>,
}

impl Results {
    pub fn new(settings: &Settings) -> Results {
        Results {
            date: machine::now_utc(),
            machine: Machine::detect(),
            versions: Versions::detect(),
            settings: settings.clone(),
            overhead: None,
            bystander: None,
            kernel: None,
            paired: None,
            saturation: None,
            lossless: None,
            server: None,
            startup: None,
            startup_pool: None,
            accounting: Accounting::default(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Once everything is measured: the load at the end, the accounting tally, the targets.
    pub fn finish(&mut self) {
        self.machine.load_end = Some(machine::load());
        let mut tally = Accounting::default();
        if let Some(o) = &self.overhead {
            for m in o.modes.iter().filter(|m| {
                matches!(m.mode, Mode::File | Mode::FileRaw | Mode::JsonDevNull | Mode::JsonPipe)
            }) {
                tally.checked += m.runs.len() as u64;
                tally.exact += m.exact_runs.unwrap_or(0);
            }
        }
        if let Some(s) = &self.saturation {
            tally.checked += 1;
            tally.exact += u64::from(s.exact);
        }
        if let Some(l) = &self.lossless {
            tally.checked += l.steps.len() as u64;
            tally.exact += l.steps.iter().filter(|s| s.exact).count() as u64;
        }
        self.accounting = tally;
        self.targets = self.targets();
    }

    fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        let file =
            self.overhead.as_ref().and_then(|o| o.modes.iter().find(|m| m.mode == Mode::File));
        let floor = self
            .overhead
            .as_ref()
            .and_then(|o| o.modes.iter().find(|m| m.mode == Mode::AttachedFloor))
            .map(|m| m.ratio_median);
        if let Some(f) = file {
            let lossy =
                if f.lost > 0 { format!(", but {} events lost", f.lost) } else { String::new() };
            // Issue 15's targets: 1.22 now; the goal is the attach floor's own cost plus 0.05.
            targets.push(Target {
                what: "traced/untraced, every event written to a file (`wsltrace -o FILE`), median",
                figure: format!("{:.3} (min {:.3}){lossy}", f.ratio_median, f.ratio_min),
                now: "≤ 1.22",
                met: f.ratio_median <= 1.22 && f.lost == 0,
                goal: Some("≤ floor + 0.05"),
                goal_met: floor.map(|fl| f.ratio_median <= fl + 0.05 && f.lost == 0),
            });
        }
        if let Some(ns) = file.and_then(|f| f.reader_ns_per_event) {
            targets.push(Target {
                what: "reader CPU per event, every event to a file (`wsltrace -o FILE`)",
                figure: match file.and_then(|f| f.page_cache_ns_per_event) {
                    Some(p) => format!(
                        "{:.2} µs (writing the same bytes to a new file alone: {:.2} µs)",
                        ns / 1e3,
                        p / 1e3
                    ),
                    None => format!("{:.2} µs", ns / 1e3),
                },
                now: "≤ 0.7 µs",
                met: ns <= 700.0,
                goal: Some("≤ 0.4 µs"),
                goal_met: Some(ns <= 400.0),
            });
        }
        if let Some(l) = &self.lossless {
            let rate = l.highest_rate.unwrap_or(0.0);
            let bound = if l.workload_bound { "≥ " } else { "" };
            targets.push(Target {
                what: "lossless throughput, default ring, every event to a file (`-q -o FILE`)",
                figure: format!("{bound}{:.0} k events/s", rate / 1e3),
                now: "≥ 1.5 M/s",
                met: rate >= 1.5e6,
                goal: None,
                goal_met: None,
            });
        }
        if let Some(ratio) = self.server.as_ref().and_then(Server::worst_ratio) {
            targets.push(Target {
                what: "nginx under ab, requests/s traced/untraced (`-f --pid MASTER`), the worse \
                       of `-q -o FILE` and text to a file, median",
                figure: format!("{ratio:.3}"),
                now: "≥ 0.95",
                met: ratio >= 0.95,
                goal: Some("≥ 0.98"),
                goal_met: Some(ratio >= 0.98),
            });
        }
        // Only where some run was checked: `--only kernel` checks none.
        let a = &self.accounting;
        if a.checked > 0 {
            targets.push(Target {
                what: "loss accounting exact (delivered + lost = made)",
                figure: format!("{} of {} runs", a.exact, a.checked),
                now: "every run",
                met: a.exact == a.checked,
                goal: None,
                goal_met: None,
            });
        }
        if let Some(s) = &self.startup {
            targets.push(Target {
                what: "start-up: launch to attached, median",
                figure: format!("{:.0} ms", s.median_ms),
                now: "≤ 200 ms",
                met: s.median_ms <= 200.0,
                goal: None,
                goal_met: None,
            });
        }
        if let Some(rss) = self.lossless.as_ref().and_then(|l| l.peak_rss_mb) {
            targets.push(Target {
                what: "peak RSS of wsltrace at the highest lossless rate",
                figure: format!("{rss:.1} MB"),
                now: "≤ 40 MB",
                met: rss <= 40.0,
                goal: None,
                goal_met: None,
            });
        }
        targets
    }
}

fn mark(met: bool) -> &'static str {
    if met { "**met**" } else { "**MISSED**" }
}

fn goal_mark(met: bool) -> &'static str {
    if met { "met" } else { "not yet" }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// RESULTS.md.
pub fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let kind = if r.settings.quick { "a `--quick` run (rough figures)" } else { "a full run" };
    let _ = writeln!(md, "# wsltrace benchmark results\n");
    let _ = writeln!(
        md,
        "Measured by `cargo xtask bench` on {}, {kind}, {} rounds.\n",
        r.date, r.settings.rounds
    );
    let _ = writeln!(
        md,
        "Machine: {}, {} cores, {:.1} GiB, kernel {}, pid_max {}{}. Load average {:.2} at the \
         start, {} at the end (other work on the machine makes every figure noisier).  ",
        m.cpu_model,
        m.cores,
        m.memory_gib,
        m.kernel,
        opt(m.pid_max.map(f64::from), 0),
        if machine::slots_by_id(m.pid_max) {
            " (threads' slots by id)"
        } else {
            " (threads' slots from a pool)"
        },
        m.load_start,
        opt(m.load_end, 2)
    );
    let v = &r.versions;
    let _ = writeln!(md, "Versions: wsltrace {}; {}; {}.\n", v.wsltrace, v.strace, v.bpftrace);

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | measured | now | | goal | |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for t in &r.targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            t.what,
            t.figure,
            t.now,
            mark(t.met),
            t.goal.unwrap_or(""),
            t.goal_met.map_or("", goal_mark)
        );
    }
    let _ = writeln!(md, "\nNo target is a test: the bench measures and reports.\n");

    if let Some(o) = &r.overhead {
        overhead_section(&mut md, o, &r.settings);
        page_cache_section(&mut md, o);
    }
    if let Some(o) = &r.overhead {
        super::kinds::section(&mut md, o, r.bystander.as_ref());
    }
    if let Some(k) = &r.kernel {
        kernel_section(&mut md, k);
    }
    if let Some(p) = &r.paired {
        paired_section(&mut md, p);
    }
    if let Some(s) = &r.saturation {
        let a = s.run.account.unwrap_or_default();
        let _ = writeln!(md, "## Saturation: a deliberately small ring\n");
        let _ = writeln!(
            md,
            "`sockmix burst --threads {} --duration {}` (getsockopt(SO_TYPE) flat out) under \
             `wsltrace -q -o FILE --ring-size {}`:\n",
            s.threads, s.secs, s.ring_size
        );
        let _ = writeln!(
            md,
            "| calls made | rate | events delivered | lost | delivered + lost = made |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        let _ = writeln!(
            md,
            "| {} | {:.0} k/s | {} | {} | {} |\n",
            s.run.workload.syscalls,
            s.run.workload.rate() / 1e3,
            a.events,
            a.lost,
            if s.exact { "yes" } else { "**NO**" }
        );
        let _ = writeln!(
            md,
            "The kernel also emits one process-exit record for the workload; when the ring has \
             no room for it, it is counted apart (`lost_records`), not among the lost calls, \
             so the check reads delivered + lost = made.\n"
        );
    }
    if let Some(l) = &r.lossless {
        lossless_section(&mut md, l);
    }
    if let Some(s) = &r.server {
        server_section(&mut md, s);
    }
    if let Some(s) = &r.startup {
        let _ = writeln!(md, "## Start-up\n");
        let _ = writeln!(
            md,
            "Launch of `wsltrace --pid IDLE` to its `wsltrace: tracing` line (programs loaded \
             and attached), {} samples: median **{:.0} ms**, min {:.0} ms (all: {} ms).\n",
            s.samples_ms.len(),
            s.median_ms,
            s.min_ms,
            s.samples()
        );
        if let Some(p) = &r.startup_pool {
            let _ = writeln!(
                md,
                "Each followed by the same launch with `pid_max` raised to 4,194,304 (systemd's \
                 setting, where the threads' slots come from a pool; put back at once): median \
                 **{:.0} ms**, min {:.0} ms (all: {} ms).\n",
                p.median_ms,
                p.min_ms,
                p.samples()
            );
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push('\n');
    }
    md
}

fn overhead_section(md: &mut String, o: &Overhead, s: &Settings) {
    let made = o.modes.first().and_then(|m| m.runs.first()).map_or(0, |r| r.workload.syscalls);
    let _ = writeln!(md, "## Overhead on a socket mix\n");
    let _ = writeln!(
        md,
        "Workload: `{}`, one thread, {made} traced calls per run (per iteration: TCP socket, \
         setsockopt, bind 127.0.0.1:0, listen, getsockname, connect from a second socket, \
         accept4, getsockopt SO_ERROR, setsockopt SO_LINGER, 3 closes; AF_UNIX socketpair, \
         getsockopt SO_PEERCRED, 2 closes; a refused connect). It times its own loop, so \
         tracer start-up and shutdown are not counted. Each of the {} rounds runs every mode \
         once, in reverse order every other round; the ratio is the loop time over the \
         untraced loop time of the same round. The floor: wsltrace traces an idle process \
         while the workload runs, so every program runs on every call and stops at its first \
         check (the traced-tgid lookup). `-e 133`: an errno the workload never fails with, so \
         nothing is shown; the kernel still sends the fd-changing calls (socket, bind, \
         connect, accept, close...) as context records for the fd table. wsltrace formats \
         nothing for a stdout on /dev/null: `--format json > /dev/null` reads and judges every \
         event, `--format json | reader` also formats each one as JSON. wsltrace attaches \
         with `--pid` to the workload held at a gate; strace and bpftrace start it. Tracer CPU is the tracer \
         process's user + system time for the whole run, start-up and shutdown included \
         (the floor row is mostly start-up), the workload's own excluded; the reader's CPU \
         per event is wsltrace's CPU less the floor's, over the events delivered.\n",
        o.workload, s.rounds
    );
    let _ = writeln!(
        md,
        "| mode | ratio median | ratio min | loop (median) | added per call | tracer CPU \
         | reader CPU per event | events | lost | account right |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for m in &o.modes {
        let account = match m.exact_runs {
            Some(n) => format!("{n}/{}", m.runs.len()),
            None => "-".to_owned(),
        };
        let events = if m.mode.is_wsltrace() { m.events.to_string() } else { "-".to_owned() };
        let lost = if m.mode.is_wsltrace() || m.mode == Mode::Bpftrace {
            m.lost.to_string()
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:.1} ms | {:.0} ns | {} | {} | {events} | {lost} | {account} |",
            m.label,
            m.ratio_median,
            m.ratio_min,
            m.loop_ms_median,
            m.added_ns_per_call,
            m.tracer_cpu_ms.map_or_else(|| "-".to_owned(), |c| format!("{c:.0} ms")),
            m.reader_ns_per_event.map_or_else(|| "-".to_owned(), |c| format!("{c:.0} ns")),
        );
    }
    md.push('\n');
}

/// The file system's share of the reader's CPU per event: what writing a recording's bytes
/// costs on its own, measured beside each `-o FILE` run.
fn page_cache_section(md: &mut String, o: &Overhead) {
    let rows: Vec<(&str, f64, f64, f64)> = o
        .modes
        .iter()
        .filter_map(|m| {
            Some((
                m.label,
                m.reader_ns_per_event?,
                m.file_bytes_per_event?,
                m.page_cache_ns_per_event?,
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "### The file system's share of the reader's CPU\n");
    let _ = writeln!(
        md,
        "After each run that writes a recording, the bench writes as many bytes to a new file \
         on the same file system itself, in 256 KB writes (on ext4 into room reserved ahead), \
         its pages given back two 8 MB windows behind and a sync at the end as wsltrace does, \
         while the recording is still there, and times its own CPU: what the page cache and \
         the file system cost for those bytes on this machine, whoever writes them. Medians \
         over the rounds, per event delivered.\n"
    );
    let _ = writeln!(
        md,
        "| mode | reader CPU per event | recording, bytes per event | the same bytes written \
         by the bench | the reader less that |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (label, total, bytes, cache) in rows {
        let _ = writeln!(
            md,
            "| {label} | {total:.0} ns | {bytes:.0} | {cache:.0} ns | {:.0} ns |",
            total - cache
        );
    }
    md.push('\n');
}

fn kernel_section(md: &mut String, costs: &[KernelCost]) {
    let _ = writeln!(md, "## Time in the kernel programs\n");
    let _ = writeln!(
        md,
        "The same mix, once per mode, with the kernel's BPF run-time statistics on \
         (`BPF_ENABLE_STATS`, read with bpftool): time inside wsltrace's programs over the \
         calls the workload made. Unlike the ratios above this hardly depends on the load of \
         the machine. The statistics add a few tens of ns to each program run.\n"
    );
    let _ = writeln!(md, "| mode | per call | entry | exit | costliest programs (ns per run) |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for c in costs {
        let top: Vec<String> =
            c.programs.iter().take(4).map(|p| format!("{} {:.0}", p.name, p.ns_per_run)).collect();
        let _ = writeln!(
            md,
            "| {} | {:.0} ns | {:.0} ns | {:.0} ns | {} |",
            c.label,
            c.ns_per_call(),
            c.entry_ns_per_call,
            c.exit_ns_per_call,
            top.join(", ")
        );
    }
    md.push('\n');
}

fn paired_section(md: &mut String, p: &Paired) {
    let _ = writeln!(md, "## This build's programs against `{}`\n", p.against);
    let _ = writeln!(
        md,
        "Both builds trace the same runs of the mix at once (`-q -o FILE` each), attached one \
         after the other, with the BPF statistics on: each build's time in its programs over \
         the same calls, load and cache. The build attached second runs after the other on \
         every tracepoint, on warm cache lines, and comes out cheaper: the runs alternate the \
         order, and the ratio is the geometric mean over as many of each.\n"
    );
    let _ = writeln!(md, "| run | this build attached | this build | the other | ratio |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (i, r) in p.runs.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} ms | {:.1} ms | {:.3} |",
            i + 1,
            if r.this_second { "second" } else { "first" },
            r.this_ns as f64 / 1e6,
            r.against_ns as f64 / 1e6,
            r.this_ns as f64 / r.against_ns.max(1) as f64
        );
    }
    let _ = writeln!(md, "\nThis build's BPF time over the other's: **{:.3}**.\n", p.ratio());
    let programs: Vec<String> =
        p.programs().iter().map(|(name, ratio)| format!("{name} {ratio:.2}")).collect();
    let _ = writeln!(md, "Per program (ns per run, the same mean): {}.\n", programs.join(", "));
}

fn lossless_section(md: &mut String, l: &Lossless) {
    let _ = writeln!(md, "## Lossless throughput at the default ring ({})\n", l.ring_size);
    let _ = writeln!(
        md,
        "`sockmix burst --threads {} --rate R --duration {}` under `wsltrace -q -o FILE` \
         (every event to a file on disk, only findings on the terminal: how a tracer is left \
         attached to a busy server): flat out first; when that loses events, a bisection over \
         paced rates up to 1.3 times the flat-out rate. A run is \
         lossless when nothing was lost; a step counts as sustained when the workload made \
         at least {:.0}% of the rate asked. A {} s run detects a reader that falls short by \
         more than the ring's capacity (about 20,000 records) over {} s.\n",
        l.threads,
        l.secs,
        RATE_REACHED * 100.0,
        l.secs,
        l.secs
    );
    let _ = writeln!(
        md,
        "| asked | made | lost | account right | wsltrace CPU | per event delivered | peak RSS |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for s in &l.steps {
        let asked = if s.asked_rate == 0 {
            "flat out".to_owned()
        } else {
            format!("{:.0} k/s", s.asked_rate as f64 / 1e3)
        };
        let _ = writeln!(
            md,
            "| {asked} | {:.0} k/s | {} | {} | {:.2} s | {:.0} ns | {:.1} MB |",
            s.achieved_rate / 1e3,
            s.lost,
            if s.exact { "yes" } else { "**NO**" },
            s.tracer_cpu_ns as f64 / 1e9,
            s.tracer_cpu_ns as f64 / s.delivered.max(1) as f64,
            s.maxrss_kb as f64 / 1024.0
        );
    }
    let _ = writeln!(md);
    match l.highest_rate {
        Some(rate) if l.workload_bound => {
            let _ = writeln!(
                md,
                "Nothing was lost even flat out: wsltrace kept up with **{:.0} k events/s**, \
                 the most this workload made here; its own limit is higher.\n",
                rate / 1e3
            );
        }
        Some(rate) => {
            let _ = writeln!(md, "Highest lossless rate: **{:.0} k events/s**.\n", rate / 1e3);
        }
        None => {
            let _ = writeln!(md, "No run was lossless.\n");
        }
    }
    if let Some(rss) = l.peak_rss_mb {
        let _ = writeln!(
            md,
            "Peak RSS of wsltrace in that run (VmHWM, from wait4's ru_maxrss): **{rss:.1} MB**.\n"
        );
    }
}

fn server_section(md: &mut String, s: &Server) {
    let _ = writeln!(md, "## A real server: nginx\n");
    let _ = writeln!(
        md,
        "{}. wsltrace attaches to the running master with `-f --pid MASTER` (the workers \
         already run: the way a tracer is pointed at a live server), ab runs, then wsltrace \
         gets a Ctrl-C. Each of the {} rounds runs every mode once, in reverse order every \
         other round; the ratio is requests/s over the untraced requests/s of the same round \
         (1.00: no cost). Tracer CPU includes start-up and shutdown.\n",
        s.workload, s.rounds
    );
    let _ = writeln!(
        md,
        "| mode | ratio median | ratio min | requests/s (median) | tracer CPU | per event | \
         events | lost |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for m in &s.modes {
        let traced = m.mode != super::nginx::ServerMode::Untraced;
        let dash = || "-".to_owned();
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:.0} | {} | {} | {} | {} |",
            m.label,
            m.ratio_median,
            m.ratio_min,
            m.requests_per_s_median,
            m.tracer_cpu_ms.map_or_else(dash, |c| format!("{c:.0} ms")),
            m.tracer_ns_per_event.map_or_else(dash, |c| format!("{c:.0} ns")),
            if traced { m.events.to_string() } else { dash() },
            if traced { m.lost.to_string() } else { dash() },
        );
    }
    md.push('\n');
}
