//! `cargo xtask bench`: what wsltrace costs, next to strace and bpftrace, on one workload, in
//! one invocation. It measures and reports; no figure fails the command.

mod kernel;
mod kinds;
mod machine;
mod nginx;
mod page_cache;
mod process;
mod report;
mod runs;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::{cargo, prerequisites, require_root, run_cmd};
use report::{Lossless, ModeSummary, Overhead, Results, Saturation, Startup, Step};
use runs::{Mode, Run, Tools};

#[derive(Args)]
pub struct BenchArgs {
    /// Rounds of the interleaved comparison; each round runs every mode once
    /// [default: 7, with --quick 5]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: Option<u64>,

    /// Short runs while developing (figures are rougher): fewer iterations, start-up samples
    /// and rate-search steps
    #[arg(long)]
    quick: bool,

    /// Iterations of the socket mix per run, 20 traced calls each [default: 20000, with
    /// --quick 4000]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: Option<u64>,

    /// Leave these parts out (comma-separated), e.g. while working on one of the others
    #[arg(long, value_enum, value_delimiter = ',')]
    skip: Vec<Skip>,

    /// Measure only this part (with no overhead rounds): `kernel` reads the programs' BPF time
    /// per call in about a minute, for work on the kernel programs; `nginx` runs the server
    /// rounds alone
    #[arg(long, value_enum, conflicts_with = "skip")]
    only: Option<Only>,

    /// The wsltrace binary to measure instead of target/release/wsltrace (e.g. an older build,
    /// run alternately with the new one)
    #[arg(long, value_name = "PATH")]
    wsltrace: Option<PathBuf>,

    /// With --only kernel: another wsltrace build attached to the same runs of the mix as this
    /// one (`-q -o FILE` both, attached in alternating order), and the BPF time of this build
    /// over that one's, overall and per program: what a change to the programs did, on a
    /// machine whose wall-clock ratios move by more than that
    #[arg(long, value_name = "PATH", requires = "only")]
    against: Option<PathBuf>,

    /// Where RESULTS.md and results.json go
    #[arg(long, value_name = "DIR", default_value = "bench")]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Skip {
    /// The strace comparison (the slowest part)
    Strace,
    /// The bpftrace comparison
    Bpftrace,
    /// The small-ring saturation run
    Saturation,
    /// The lossless-rate search (and the memory figure taken in it)
    Lossless,
    /// nginx under ab, traced and untraced
    Nginx,
    /// The start-up samples
    Startup,
    /// The kernel programs' own run time (BPF statistics, read with bpftool)
    Kernel,
    /// The `--probe-kind raw` rows (floor, -o FILE) and the bystander cost of both kinds
    Raw,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    /// The kernel programs' own run time (BPF statistics, read with bpftool)
    Kernel,
    /// nginx under ab, traced and untraced
    Nginx,
}

/// How much of everything: `--quick` or not, with the user's overrides.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub quick: bool,
    pub rounds: u64,
    pub iterations: u64,
    pub startup_samples: usize,
    /// Saturation: threads, seconds and ring size of the deliberately small ring.
    pub saturation_threads: u64,
    pub saturation_secs: f64,
    pub small_ring: &'static str,
    /// Lossless-rate search at the default ring: threads, seconds per step, steps.
    pub search_threads: u64,
    pub search_secs: f64,
    pub search_steps: u32,
    /// getppid calls per bystander run.
    pub bystander_iterations: u64,
}

impl Settings {
    fn new(args: &BenchArgs) -> Settings {
        let quick = args.quick;
        Settings {
            quick,
            rounds: args.rounds.unwrap_or(if quick { 5 } else { 7 }),
            iterations: args.iterations.unwrap_or(if quick { 4_000 } else { 20_000 }),
            startup_samples: if quick { 5 } else { 10 },
            saturation_threads: 4,
            saturation_secs: if quick { 0.5 } else { 1.0 },
            small_ring: "64K",
            search_threads: 2,
            search_secs: if quick { 1.5 } else { 3.0 },
            search_steps: if quick { 4 } else { 6 },
            bystander_iterations: if quick { 500_000 } else { 2_000_000 },
        }
    }
}

/// The default `--ring-size` of wsltrace.
const DEFAULT_RING: &str = "8M";
/// A paced step counts as sustained when the workload reached this share of the asked rate.
const RATE_REACHED: f64 = 0.97;
/// The rate search's upper bound, over the flat-out rate.
const SEARCH_HEADROOM: f64 = 1.3;

pub fn run(args: BenchArgs) -> Result<()> {
    let settings = Settings::new(&args);
    prerequisites::install()?;
    require_root("the bench loads eBPF programs and runs tracers")?;
    ensure_tracefs()?;
    let bpftrace = match args.skip.contains(&Skip::Bpftrace) {
        true => Err("left out with --skip bpftrace".to_owned()),
        false => prerequisites::bpftrace(),
    };
    cargo(&["build", "--release", "--package", "tracer", "--package", "xtask"])?;
    let root = std::env::current_dir()?;
    let scratch = root.join("target/bench");
    std::fs::create_dir_all(&scratch).context("creating target/bench")?;
    let tools = Tools {
        wsltrace: args.wsltrace.clone().unwrap_or_else(|| root.join("target/release/wsltrace")),
        sockmix: root.join("target/release/sockmix"),
        scratch,
        bpftrace: bpftrace.is_ok(),
    };
    // wsltrace detaches in a child that outlives it: we wait for those before measuring on.
    process::become_subreaper()?;

    let mut results = Results::new(&settings);
    if let Err(why) = &bpftrace {
        results.notes.push(format!("bpftrace was not run: {why}."));
    }
    match args.only {
        Some(Only::Kernel) => {
            prerequisites::bpftool().map_err(|why| anyhow::anyhow!("bpftool {why}"))?;
            if let Some(against) = args.against.as_deref().filter(|path| !path.is_file()) {
                bail!(
                    "--against {}: no such file; give the path of a wsltrace build",
                    against.display()
                );
            }
            results.kernel = Some(kernel_costs(&tools, &settings)?);
            if let Some(against) = &args.against {
                let workload = runs::mix_args(settings.iterations);
                // An even number of runs: as many in each order.
                let runs = settings.rounds.next_multiple_of(2);
                let paired = kernel::measure_paired(&tools, against, &workload, runs)?;
                eprintln!("bench: this build's BPF time over the other's: {:.3}", paired.ratio());
                results.paired = Some(paired);
            }
            results.notes.push("Only the kernel programs were measured (--only kernel).".into());
            return write_results(&root, &args.out, results);
        }
        Some(Only::Nginx) if args.against.is_some() => {
            bail!("--against compares the kernel programs: use it with --only kernel");
        }
        Some(Only::Nginx) => {
            prerequisites::ab().map_err(|why| anyhow::anyhow!("ab {why}"))?;
            results.server = Some(nginx::measure(&tools, &settings)?);
            results.notes.push("Only the nginx rounds were run (--only nginx).".into());
            return write_results(&root, &args.out, results);
        }
        None => {}
    }
    let wanted = |phase: Skip| !args.skip.contains(&phase);
    let mut modes = vec![
        Mode::Untraced,
        Mode::AttachedFloor,
        Mode::KernelNoOutput,
        Mode::File,
        Mode::JsonDevNull,
        Mode::JsonPipe,
    ];
    if wanted(Skip::Raw) {
        modes.extend([Mode::AttachedFloorRaw, Mode::FileRaw]);
    }
    if !args.skip.contains(&Skip::Strace) {
        modes.push(Mode::Strace);
    } else {
        results.notes.push("strace was not run: left out with --skip strace.".into());
    }
    if tools.bpftrace {
        modes.push(Mode::Bpftrace);
    }

    let bpftool = prerequisites::bpftool();
    let foreign_before = bpftool.as_ref().ok().and_then(|()| kernel::foreign_syscall_programs());
    let mix = runs::mix_args(settings.iterations);
    let mix_name = format!("sockmix mix --iterations {}", settings.iterations);
    results.overhead = Some(overhead(&tools, &settings, &modes, &mix, mix_name)?);
    let foreign_after = bpftool.as_ref().ok().and_then(|()| kernel::foreign_syscall_programs());
    if let (Some(before), Some(after)) = (foreign_before, foreign_after)
        && before + after > 0
    {
        results.notes.push(format!(
            "Other syscall tracepoint programs were loaded by someone else ({before} before the \
             overhead runs, {after} after): they run on every socket call of the workload \
             too, so every ratio here includes their cost. Measure on a machine where no \
             other tracer is attached."
        ));
    }
    if wanted(Skip::Raw) {
        // A syscall neither kind traces, made by a process wsltrace does not trace.
        let modes = [Mode::Untraced, Mode::AttachedFloor, Mode::AttachedFloorRaw];
        let n = settings.bystander_iterations;
        let workload = runs::getppid_args(n);
        let name = format!("sockmix getppid --iterations {n}");
        results.bystander = Some(overhead(&tools, &settings, &modes, &workload, name)?);
    }
    if wanted(Skip::Kernel) {
        match &bpftool {
            Ok(()) => results.kernel = Some(kernel_costs(&tools, &settings)?),
            Err(why) => results
                .notes
                .push(format!("The kernel programs' cost was not read: bpftool {why}.")),
        }
    }
    if wanted(Skip::Saturation) {
        results.saturation = Some(saturation(&tools, &settings)?);
    }
    if wanted(Skip::Lossless) {
        results.lossless = Some(lossless(&tools, &settings)?);
    }
    if wanted(Skip::Nginx) {
        match prerequisites::ab() {
            Ok(()) => results.server = Some(nginx::measure(&tools, &settings)?),
            Err(why) => results.notes.push(format!("The nginx row was not measured: ab {why}.")),
        }
    }
    if wanted(Skip::Startup) {
        let (startup, pool) = startup(&tools, &settings)?;
        results.startup = Some(startup);
        results.startup_pool = pool;
    }
    for phase in
        [Skip::Raw, Skip::Kernel, Skip::Saturation, Skip::Lossless, Skip::Nginx, Skip::Startup]
    {
        if !wanted(phase) {
            let name = phase.to_possible_value().map(|v| v.get_name().to_owned());
            results.notes.push(format!(
                "The {} measurement was left out with --skip.",
                name.unwrap_or_default()
            ));
        }
    }
    write_results(&root, &args.out, results)
}

fn write_results(root: &Path, out_dir: &Path, mut results: Results) -> Result<()> {
    results.finish();
    let out = root.join(out_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let markdown = report::markdown(&results);
    std::fs::write(out.join("RESULTS.md"), &markdown).context("writing RESULTS.md")?;
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(out.join("results.json"), json + "\n").context("writing results.json")?;
    println!("{markdown}");
    eprintln!("bench: wrote {0}/RESULTS.md and {0}/results.json", out_dir.display());
    Ok(())
}

/// bpftrace finds tracepoints through tracefs, which wsltrace mounts for itself when it is
/// missing (as on a fresh machine) but bpftrace does not.
fn ensure_tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").exists() {
        return Ok(());
    }
    run_cmd(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))
        .context("mounting tracefs for bpftrace")
}

/// Every mode once per round, the order reversed every other round so that a slow drift of
/// the machine does not favour the modes that run first.
fn overhead(
    tools: &Tools,
    settings: &Settings,
    modes: &[Mode],
    workload: &[String],
    name: String,
) -> Result<Overhead> {
    let mut samples: Vec<Vec<Run>> = vec![Vec::new(); modes.len()];
    for round in 0..settings.rounds {
        let mut order: Vec<usize> = (0..modes.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let run = runs::run(tools, modes[i], workload)?;
            eprintln!(
                "bench: {} round {}/{}: {:<56} {:>8.1} ms{}",
                workload[0],
                round + 1,
                settings.rounds,
                modes[i].label(),
                run.workload.loop_ns as f64 / 1e6,
                run.account
                    .map(|a| format!(", {} events, {} lost", a.events, a.lost))
                    .unwrap_or_default()
            );
            samples[i].push(run);
        }
    }
    let untraced = samples[0].clone();
    let summaries = modes
        .iter()
        .zip(samples)
        .map(|(&mode, runs)| ModeSummary::new(mode, runs, &untraced))
        .collect();
    let mut overhead = Overhead { workload: name, rounds: settings.rounds, modes: summaries };
    overhead.reader_costs();
    Ok(overhead)
}

/// BPF time per call of the workload: filtered out, traced without output, traced.
fn kernel_costs(tools: &Tools, settings: &Settings) -> Result<Vec<kernel::KernelCost>> {
    let workload = runs::mix_args(settings.iterations);
    [Mode::AttachedFloor, Mode::KernelNoOutput, Mode::JsonPipe]
        .into_iter()
        .map(|mode| {
            let cost = kernel::measure(tools, mode, &workload)?;
            eprintln!(
                "bench: kernel programs, {}: {:.0} ns per call (entry {:.0}, exit {:.0})",
                mode.label(),
                cost.ns_per_call(),
                cost.entry_ns_per_call,
                cost.exit_ns_per_call
            );
            Ok(cost)
        })
        .collect()
}

/// Several threads flat out against a small ring: losses are expected, and must add up.
fn saturation(tools: &Tools, settings: &Settings) -> Result<Saturation> {
    let workload = runs::burst_args(settings.saturation_threads, 0, settings.saturation_secs);
    let run = runs::quiet_to_file(tools, settings.small_ring, &workload)?;
    let account = run.account.context("wsltrace gave no account")?;
    eprintln!(
        "bench: saturation, {} ring: {} calls made, {} delivered, {} lost",
        settings.small_ring, run.workload.syscalls, account.events, account.lost
    );
    Ok(Saturation {
        ring_size: settings.small_ring.into(),
        threads: settings.saturation_threads,
        secs: settings.saturation_secs,
        exact: account.exact(run.workload.syscalls),
        run,
    })
}

/// The highest rate wsltrace keeps up with at the default ring, writing every event to a file:
/// first flat out; if that loses events, a bisection over paced rates below it.
fn lossless(tools: &Tools, settings: &Settings) -> Result<Lossless> {
    let mut steps = Vec::new();
    let mut step = |rate: u64| -> Result<Step> {
        let workload = runs::burst_args(settings.search_threads, rate, settings.search_secs);
        let run = runs::quiet_to_file(tools, DEFAULT_RING, &workload)?;
        let step = Step::new(rate, run)?;
        eprintln!(
            "bench: lossless search: asked {:>9} calls/s, made {:>9.0}/s, {} lost",
            if rate == 0 { "max".to_owned() } else { rate.to_string() },
            step.achieved_rate,
            step.lost
        );
        steps.push(step.clone());
        Ok(step)
    };
    let flat_out = step(0)?;
    let mut workload_bound = false;
    if flat_out.lost == 0 {
        // The workload cannot go faster on this machine: the tracer's limit is higher still.
        workload_bound = true;
    } else {
        // Flat out against a full ring runs slower than paced below it (every record past a
        // quarter of the ring forces a wakeup): the search may go a little above it.
        let (mut lo, mut hi) = (0.0, flat_out.achieved_rate * SEARCH_HEADROOM);
        for _ in 0..settings.search_steps {
            let rate = (lo + hi) / 2.0;
            let s = step(rate as u64)?;
            if s.lost == 0 && s.achieved_rate >= rate * RATE_REACHED {
                lo = rate;
            } else {
                hi = rate;
            }
        }
    }
    Ok(Lossless::new(DEFAULT_RING, settings, steps, workload_bound))
}

/// Launch to the "tracing" line, with an idle process as the target. Where `pid_max` is the
/// kernel's default, each sample is followed by one with `pid_max` raised to systemd's
/// 4,194,304 (put back at once), where wsltrace keeps the threads' slots in a pool.
fn startup(tools: &Tools, settings: &Settings) -> Result<(Startup, Option<Startup>)> {
    let pool_too = machine::slots_by_id(machine::pid_max());
    let (mut samples, mut pool) = (Vec::new(), Vec::new());
    for i in 0..settings.startup_samples {
        let took = runs::attach_time(tools)?;
        let raised = match pool_too {
            true => {
                let _raised = machine::PidMax::raise(SYSTEMD_PID_MAX)?;
                Some(runs::attach_time(tools)?)
            }
            false => None,
        };
        eprintln!(
            "bench: start-up {}/{}: {:.1} ms{}",
            i + 1,
            settings.startup_samples,
            ms(took),
            raised.map_or(String::new(), |r| format!(", {:.1} ms with pid_max raised", ms(r)))
        );
        samples.push(took);
        pool.extend(raised);
    }
    if samples.is_empty() {
        bail!("no start-up sample");
    }
    Ok((Startup::new(&samples), pool_too.then(|| Startup::new(&pool))))
}

/// systemd's `pid_max` (its sysctl.d/50-pid-max.conf), where most distributions run.
const SYSTEMD_PID_MAX: u32 = 4_194_304;

/// Median of a non-empty slice (mean of the middle two for an even length).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
