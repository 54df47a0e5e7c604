//! Project tasks: `cargo xtask setup` (install what is missing, build, run the demo),
//! `cargo xtask test` (lints and every test, as root, then the kernel matrix), `cargo xtask
//! bench` (what tracing costs, next to strace and bpftrace), `cargo xtask deb` (the Debian
//! package), `cargo xtask kernels` (the kernel-facing tests on other kernels, in VMs) and
//! `cargo xtask fuzz` (the fuzz targets, for a bounded time each).

mod bench;
mod deb;
mod fuzz;
mod kernels;
mod prerequisites;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "wsltrace project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// What `kernels --help` adds below the options.
const KERNELS_HELP: &str = "\
By default each guest runs 14 tests of the kernel mechanisms most likely to differ between \
releases (syscall tracepoints, seccomp refusals, namespaces from BTF, sched exits, the \
in-flight map, SO_ERROR outcomes, loss counting, sock_diag, emulate's cgroup programs and \
its feature probe): 4-7 minutes per guest under TCG. The README's kernels section has the \
figures. Do not rebuild the workspace while guests run: they read its binaries live.

Examples:
  sudo cargo xtask kernels                       # the matrix, default tests
  sudo cargo xtask kernels --kernel 5.10 --suite emulate
  sudo cargo xtask kernels --all-suites --timeout 60";

#[derive(Subcommand)]
enum Task {
    /// Install what is missing (nightly rust-src, bpf-linker, strace), build the release
    /// binary and run it on the built-in demo workload
    Setup,
    /// Check formatting and lints, then run every test (unit and integration, as root)
    Test {
        /// Skip `cargo fmt --check` and clippy
        #[arg(long)]
        no_lint: bool,
        /// Skip the kernel matrix (`cargo xtask kernels`, run after the tests on this kernel)
        #[arg(long)]
        no_kernels: bool,
        /// Skip the second run of the kernel-facing suites under `--probe-kind raw`
        #[arg(long)]
        no_raw: bool,
        /// Extra arguments for `cargo test` (e.g. a test name); the kernel matrix is then
        /// skipped
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Run the kernel-facing integration tests on other kernels (Debian's 5.10, 6.1 and
    /// 6.12), each booted in a qemu guest sharing this machine's files; prints one line per
    /// kernel and a table, and fails if any kernel fails (as root; installs qemu, fetches
    /// the kernels into target/kernels, about 235 MB once)
    #[command(after_help = KERNELS_HELP)]
    Kernels(kernels::KernelsArgs),
    /// Measure wsltrace's overhead next to strace and bpftrace, its lossless throughput,
    /// loss accounting, start-up time and memory; writes bench/RESULTS.md and
    /// bench/results.json (as root; installs strace and bpftrace when missing)
    Bench(bench::BenchArgs),
    /// Build the Debian package target/debian/wsltrace_<version>_<arch>.deb: the release
    /// binary, man pages, bash/zsh/fish completions and docs (installs cargo-deb when missing)
    Deb,
    /// Run every fuzz target (fuzz/, cargo-fuzz on nightly) for a bounded time each, one
    /// after the other: one line per target with its executions and coverage; fails on a
    /// crash. Installs cargo-fuzz when missing
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.task {
        Task::Setup => {
            prerequisites::install()?;
            cargo(&["build", "--release", "--package", "tracer"])?;
            require_root("the demo loads eBPF programs")?;
            run_cmd(Command::new("target/release/wsltrace").arg("demo"))
        }
        Task::Test { no_lint, no_kernels, no_raw, cargo_args } => {
            prerequisites::install()?;
            if !no_lint {
                cargo(&["fmt", "--all", "--check"])?;
                cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
                // Runtime code never unwraps: a bad input or a gone process is an error
                // message, not a panic. (Tests fail by panicking; they may.)
                cargo(&[
                    "clippy",
                    "--bins",
                    "--lib",
                    "--",
                    "-D",
                    "warnings",
                    "-D",
                    "clippy::unwrap_used",
                ])?;
                clippy_ebpf()?;
            }
            require_root("the integration tests load eBPF programs into the kernel")?;
            let mut args = vec!["test"];
            if !cargo_args.is_empty() {
                args.push("--");
                args.extend(cargo_args.iter().map(String::as_str));
            }
            eprintln!("xtask: the tests, tracing with --probe-kind tracepoint (the default)");
            cargo(&args)?;
            if !no_raw && cargo_args.is_empty() {
                raw_pass()?;
            }
            if no_kernels {
                return Ok(());
            }
            if !cargo_args.is_empty() {
                eprintln!("xtask: kernel matrix skipped: a test filter was given");
                return Ok(());
            }
            // Here, a machine that cannot run guests is said, not a failure.
            match kernels::run(&kernels::KernelsArgs::default()) {
                Ok(verdict) => verdict,
                Err(kernels::Unavailable(why)) => {
                    eprintln!("xtask: the kernel matrix did not run: {why:#}");
                    Ok(())
                }
            }
        }
        Task::Kernels(args) => kernels::run(&args).unwrap_or_else(|kernels::Unavailable(why)| {
            Err(why.context("the kernel matrix cannot run here"))
        }),
        Task::Bench(args) => bench::run(args),
        Task::Deb => deb::run(),
        Task::Fuzz(args) => fuzz::run(args),
    }
}

/// The integration suites run a second time under `--probe-kind raw`: those whose tests load
/// the syscall programs and check what they record. (`probe_kind` runs both kinds itself;
/// the others read recordings, rule files or the machine.)
const RAW_SUITES: &[&str] = &[
    "trace",
    "blocked",
    "exits",
    "loss",
    "context",
    "differential",
    "emulate",
    "recording",
    "servers",
    "status",
    "metrics",
];

/// The kernel-facing suites again, every wsltrace they start given `--probe-kind raw` by the
/// tests' harness (`WSLTRACE_PROBE_KIND`, tracer/tests/common).
fn raw_pass() -> Result<()> {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("xtask: --probe-kind raw is x86_64-only: its second run is skipped here");
        return Ok(());
    }
    eprintln!(
        "xtask: the kernel-facing suites again, tracing with --probe-kind raw: {}",
        RAW_SUITES.join(", ")
    );
    let started = std::time::Instant::now();
    let mut cmd = Command::new(env_or("CARGO", "cargo"));
    cmd.args(["test", "--package", "tracer"]).env("WSLTRACE_PROBE_KIND", "raw");
    for suite in RAW_SUITES {
        cmd.args(["--test", suite]);
    }
    run_cmd(&mut cmd)?;
    eprintln!("xtask: --probe-kind raw run passed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The kernel programs build for the BPF target only: lint them there.
fn clippy_ebpf() -> Result<()> {
    run_cmd(
        Command::new("cargo")
            .args([
                "+nightly",
                "clippy",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
            ])
            .args(["--package", "tracer-ebpf", "--", "-D", "warnings"]),
    )
}

pub fn require_root(why: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{why}: run as root (e.g. `sudo -E cargo xtask ...`)");
    }
    Ok(())
}

pub fn cargo(args: &[&str]) -> Result<()> {
    run_cmd(Command::new(env_or("CARGO", "cargo")).args(args))
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
