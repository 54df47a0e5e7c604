//! Time spent in wsltrace's kernel programs, from the kernel's own BPF run-time statistics:
//! far steadier than wall-clock ratios on a busy machine, and it says which program costs what.
//!
//! Statistics are on (for every BPF program of the machine, a few ns each) only while the
//! workload runs. bpftool reads them; the program ids come from wsltrace's fds.

use std::{
    collections::HashSet,
    ffi::OsString,
    os::fd::{FromRawFd as _, OwnedFd},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::{
    process::{self, Lines},
    runs::{ATTACHED, Gated, Mode, Tools, Workload},
};

/// `bpf(2)` command `BPF_ENABLE_STATS` and its only statistics type.
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

/// Keeps the kernel's BPF run-time statistics on while alive.
struct StatsOn(#[expect(dead_code, reason = "held for its Drop: closing turns them off")] OwnedFd);

impl StatsOn {
    fn enable() -> Result<StatsOn> {
        // union bpf_attr, enable_stats member: one u32, the rest zero.
        let attr: [u32; 4] = [BPF_STATS_RUN_TIME, 0, 0, 0];
        // SAFETY: BPF_ENABLE_STATS reads `size` bytes of `attr`, a live local of that size.
        let fd = unsafe {
            libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), size_of_val(&attr))
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("bpf(BPF_ENABLE_STATS) failed: run as root on kernel 5.8 or later");
        }
        // SAFETY: the kernel just returned this fd to us and nothing else owns it.
        Ok(StatsOn(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }
}

/// One program's figures over the run.
#[derive(Clone, Debug, Serialize)]
pub struct Program {
    pub name: String,
    pub runs: u64,
    pub ns_per_run: f64,
}

impl Program {
    /// Its time over the run.
    fn run_time_ns(&self) -> u64 {
        (self.ns_per_run * self.runs as f64) as u64
    }
}

/// The kernel side of one mode.
#[derive(Clone, Debug, Serialize)]
pub struct KernelCost {
    pub mode: Mode,
    pub label: &'static str,
    pub calls_made: u64,
    /// Program time over the calls the workload made: what each traced call pays in BPF.
    pub entry_ns_per_call: f64,
    pub exit_ns_per_call: f64,
    pub programs: Vec<Program>,
}

impl KernelCost {
    pub fn ns_per_call(&self) -> f64 {
        self.entry_ns_per_call + self.exit_ns_per_call
    }
}

#[derive(Deserialize)]
struct BpftoolProg {
    id: u32,
    name: String,
    #[serde(default)]
    run_time_ns: u64,
    #[serde(default)]
    run_cnt: u64,
}

/// Runs `workload` under wsltrace in `mode` with statistics on. The traced set also holds an
/// idle process, so that wsltrace (and its programs) outlive the workload until read.
pub fn measure(tools: &Tools, mode: Mode, workload: &[String]) -> Result<KernelCost> {
    let extra: &[&str] = match mode {
        Mode::KernelNoOutput => &["-e", "133"],
        Mode::JsonPipe => &["--format", "json"],
        Mode::AttachedFloor => &[],
        other => bail!("no kernel measurement for {}", other.label()),
    };
    let tracer = Tracer {
        build: &tools.wsltrace,
        args: extra.iter().map(OsString::from).collect(),
        reads_stdout: mode == Mode::JsonPipe,
    };
    let (workload, mut programs) =
        programs_over_run(tools, workload, &[tracer], mode == Mode::AttachedFloor)?;
    let programs = programs.pop().context("one build was attached")?;
    let per_call = |prefix: &str| {
        let ns: u64 =
            programs.iter().filter(|p| p.name.starts_with(prefix)).map(Program::run_time_ns).sum();
        ns as f64 / workload.syscalls.max(1) as f64
    };
    Ok(KernelCost {
        mode,
        label: mode.label(),
        calls_made: workload.syscalls,
        entry_ns_per_call: per_call("sys_enter_"),
        exit_ns_per_call: per_call("sys_exit_"),
        programs,
    })
}

/// A wsltrace to attach for a measured run: its binary, its arguments before `--pid`, and
/// whether its stdout is read (to the end, as a pipe's reader would) or thrown away.
struct Tracer<'a> {
    build: &'a Path,
    args: Vec<OsString>,
    reads_stdout: bool,
}

/// Runs `workload` with statistics on while each of `tracers`, attached one after the other,
/// traces it (with `floor`, an idle process only, so that their programs run on every call
/// and stop at the first check); returns the workload's report and each tracer's programs.
/// The traced set also holds an idle process, so that the tracers (and their programs)
/// outlive the workload until read.
fn programs_over_run(
    tools: &Tools,
    workload: &[String],
    tracers: &[Tracer<'_>],
    floor: bool,
) -> Result<(Workload, Vec<Vec<Program>>)> {
    let gated = Gated::spawn(tools, workload)?;
    let mut idle =
        Command::new("sleep").arg("infinity").spawn().context("starting an idle process")?;
    let pids = if floor { idle.id().to_string() } else { format!("{},{}", gated.pid(), idle.id()) };
    let mut running = Vec::new();
    let attached = tracers.iter().try_for_each(|t| {
        let mut child = Command::new(t.build)
            .args(&t.args)
            .args(["--pid", &pids])
            .stdout(if t.reads_stdout { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", t.build.display()))?;
        let reader = child.stdout.take().map(|mut out| {
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()))
        });
        let lines = Lines::watch(child.stderr.take().context("wsltrace's stderr")?);
        running.push((child, lines, reader));
        let (_, lines, _) = running.last_mut().context("the tracer just started")?;
        lines.wait_for(ATTACHED, Duration::from_secs(60), "wsltrace").map(|_| ())
    });
    let measured = attached.and_then(|()| {
        let ids = running
            .iter()
            .map(|(child, _, _)| program_ids(child.id()))
            .collect::<Result<Vec<_>>>()?;
        let stats = StatsOn::enable()?;
        let workload = gated.go_and_wait(tools)?;
        let programs = ids.iter().map(read_programs).collect::<Result<Vec<_>>>()?;
        drop(stats);
        Ok((workload, programs))
    });
    let _ = idle.kill();
    let _ = process::wait(&mut idle, Duration::from_secs(60), "the idle process");
    for (mut child, lines, reader) in running {
        // Each ends with its traced processes; one that failed to attach may not.
        if measured.is_err() {
            let _ = child.kill();
        }
        let _ = process::wait(&mut child, Duration::from_secs(60), "wsltrace");
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        lines.finish();
    }
    process::reap_orphans(Duration::from_secs(60));
    measured
}

/// The BPF programs wsltrace holds, from its fds' fdinfo.
fn program_ids(pid: u32) -> Result<HashSet<u32>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = HashSet::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else { continue };
        ids.extend(
            text.lines().filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse::<u32>().ok()),
        );
    }
    if ids.is_empty() {
        bail!("wsltrace holds no BPF program");
    }
    Ok(ids)
}

/// Every BPF program loaded on the machine.
fn all_programs() -> Result<Vec<BpftoolProg>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .stderr(Stdio::null())
        .output()
        .context("running bpftool")?;
    if !out.status.success() {
        bail!("bpftool prog show failed");
    }
    serde_json::from_slice(&out.stdout).context("reading bpftool's JSON")
}

/// Syscall tracepoint programs loaded while none of ours is: another tracer (another
/// wsltrace, a test run) whose programs run on every socket call the bench makes.
pub fn foreign_syscall_programs() -> Option<usize> {
    let programs = all_programs().ok()?;
    Some(
        programs
            .iter()
            .filter(|p| p.name.starts_with("sys_enter_") || p.name.starts_with("sys_exit_"))
            .count(),
    )
}

fn read_programs(ids: &HashSet<u32>) -> Result<Vec<Program>> {
    let all = all_programs()?;
    let mut programs: Vec<Program> = all
        .into_iter()
        .filter(|p| ids.contains(&p.id) && p.run_cnt > 0)
        .map(|p| Program {
            ns_per_run: p.run_time_ns as f64 / p.run_cnt as f64,
            runs: p.run_cnt,
            name: p.name,
        })
        .collect();
    programs.sort_by_key(|p| std::cmp::Reverse(p.run_time_ns()));
    Ok(programs)
}

/// One run of the mix traced by this build and another one at once, each recording every
/// event to a file: the BPF time of each build's programs over the same calls.
#[derive(Clone, Debug, Serialize)]
pub struct PairedRun {
    /// This build's programs were attached second: on every tracepoint they run after the
    /// other's, on cache lines those just warmed.
    pub this_second: bool,
    pub this_ns: u64,
    pub against_ns: u64,
    this_programs: Vec<Program>,
    against_programs: Vec<Program>,
}

/// This build against another one (`--against`), run after run in both orders.
#[derive(Clone, Debug, Serialize)]
pub struct Paired {
    pub against: String,
    pub runs: Vec<PairedRun>,
}

impl Paired {
    /// This build's BPF time over the other's: the geometric mean over the runs, which hold
    /// as many of each order (the order's bias cancels).
    pub fn ratio(&self) -> f64 {
        geometric_mean(self.runs.iter().map(|r| r.this_ns as f64 / r.against_ns.max(1) as f64))
    }

    /// The same per program (ns per run), for the programs both builds ran in every run.
    pub fn programs(&self) -> Vec<(String, f64)> {
        let Some(first) = self.runs.first() else { return Vec::new() };
        let ns = |programs: &[Program], name: &str| {
            programs.iter().find(|p| p.name == name).map(|p| p.ns_per_run)
        };
        let mut ratios: Vec<(String, f64)> = first
            .this_programs
            .iter()
            .filter_map(|p| {
                let per_run: Option<Vec<f64>> = self
                    .runs
                    .iter()
                    .map(|r| {
                        Some(ns(&r.this_programs, &p.name)? / ns(&r.against_programs, &p.name)?)
                    })
                    .collect();
                Some((p.name.clone(), geometric_mean(per_run?.into_iter())))
            })
            .collect();
        ratios.sort_by(|a, b| a.0.cmp(&b.0));
        ratios
    }
}

fn geometric_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0), |(sum, n), v| (sum + v.ln(), n + 1));
    if n == 0 { f64::NAN } else { (sum / f64::from(n)).exp() }
}

/// `runs` runs of `workload` traced by this build (`tools.wsltrace`) and by `against` at once
/// (`-q -o FILE`), attached one after the other in alternating order, with statistics on.
/// Both see the same calls, the same load and the same cache: what a change to the programs
/// did, where wall-clock ratios of a busy machine move by more than that.
pub fn measure_paired(
    tools: &Tools,
    against: &Path,
    workload: &[String],
    runs: u64,
) -> Result<Paired> {
    let mut paired = Paired { against: against.display().to_string(), runs: Vec::new() };
    for run in 0..runs {
        let this_second = run % 2 == 1;
        let (this_programs, against_programs) = paired_run(tools, against, workload, this_second)?;
        let total = |programs: &[Program]| programs.iter().map(Program::run_time_ns).sum::<u64>();
        let (this_ns, against_ns) = (total(&this_programs), total(&against_programs));
        eprintln!(
            "bench: paired run {}/{runs} (this build {}): {:.1} ms against {:.1} ms, {:.3}",
            run + 1,
            if this_second { "attached second" } else { "attached first" },
            this_ns as f64 / 1e6,
            against_ns as f64 / 1e6,
            this_ns as f64 / against_ns.max(1) as f64
        );
        paired.runs.push(PairedRun {
            this_second,
            this_ns,
            against_ns,
            this_programs,
            against_programs,
        });
    }
    Ok(paired)
}

/// One run of [`measure_paired`]: this build's programs and the other's.
fn paired_run(
    tools: &Tools,
    against: &Path,
    workload: &[String],
    this_second: bool,
) -> Result<(Vec<Program>, Vec<Program>)> {
    let builds: [&Path; 2] =
        if this_second { [against, &tools.wsltrace] } else { [&tools.wsltrace, against] };
    let files = [0, 1].map(|i| tools.scratch.join(format!("paired-{i}.jsonl")));
    let tracers = builds.iter().zip(&files).map(|(build, file)| {
        let _ = std::fs::remove_file(file);
        Tracer { build, args: vec!["-q".into(), "-o".into(), file.into()], reads_stdout: false }
    });
    let measured = programs_over_run(tools, workload, &tracers.collect::<Vec<_>>(), false);
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    let mut programs = measured?.1.into_iter();
    let (Some(first), Some(second)) = (programs.next(), programs.next()) else {
        bail!("two builds were attached, not their programs read");
    };
    Ok(if this_second { (second, first) } else { (first, second) })
}
