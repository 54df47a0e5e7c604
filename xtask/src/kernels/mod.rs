//! `cargo xtask kernels`: the kernel-facing integration tests on the kernels users run
//! (Debian's 5.10, 6.1 and 6.12; WSL2 ships 5.10 to 6.18), each booted in a qemu guest that
//! shares this machine's files. The test binaries are built here and run there as root.

mod fetch;
mod initramfs;
mod results;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::Value;

use crate::{prerequisites, require_root};
use results::{Report, Row, print_table};
use vm::{Ending, Guest};

/// A kernel of the matrix: Debian's `linux-image-amd64` of one suite (all with BTF).
pub struct Kernel {
    pub name: &'static str,
    pub suite: &'static str,
}

pub const MATRIX: &[Kernel] = &[
    // Windows 10's inbox WSL2 kernel is 5.10; Debian 11.
    Kernel { name: "5.10", suite: "bullseye" },
    // Debian 12 (and between WSL's 5.15 and 6.6).
    Kernel { name: "6.1", suite: "bookworm" },
    // Debian 13.
    Kernel { name: "6.12", suite: "trixie" },
];

/// What each guest runs by default, suite and tests (none: all of it). Under emulation a test
/// of one or two wsltrace runs takes 10-40 s (the verifier and the test's own work run 10-20
/// times slower than on the host), so the subset is what exercises the kernel mechanisms most likely to differ between releases:
/// the demo workload decoded call by call (every syscall tracepoint program), a call refused
/// by seccomp (seen at exit only), the caller's namespaces (BTF offsets), a signal death and a
/// forked child's exit (sched tracepoints), a blocking and a non-blocking connect reported
/// while they hang (the in-flight map, the socket's state), the outcome of a
/// non-blocking connect read with getsockopt(SO_ERROR), per-syscall loss counting, the fd
/// table seeded over sock_diag, and emulate's feature probe and cgroup programs (one that
/// needs bpf_set_retval, one that does not).
pub const DEFAULT_SUITES: &[(&str, &[&str])] = &[
    (
        "trace",
        &[
            "demo_workload_is_decoded_exactly",
            "call_refused_by_seccomp_is_reported",
            "events_carry_the_callers_namespaces",
        ],
    ),
    ("exits", &["a_fatal_signal_is_reported", "only_processes_with_traced_calls_get_an_exit_line"]),
    (
        "blocked",
        &[
            "a_blocking_connect_to_a_full_accept_queue_is_reported_while_it_blocks",
            "curl_waiting_on_a_full_accept_queue_is_reported_as_a_nonblocking_connect",
        ],
    ),
    ("async_clients", &["non_blocking_connects_to_the_dns_stub"]),
    ("loss", &[]),
    ("context", &["snapshot_at_attach_seeds_the_fd_table"]),
    (
        "emulate",
        &[
            "the_emulate_probe_agrees_with_the_kernels_btf",
            "connect_enotconn_only_where_nothing_listens",
            "dns_tunnel_drop_leaves_queries_unanswered",
        ],
    ),
    ("probe_kind", &["both_kinds_record_the_demo_workload_alike"]),
];

#[derive(Args)]
pub struct KernelsArgs {
    /// Kernels of the matrix to boot (comma-separated): 5.10, 6.1, 6.12 [default: all]
    #[arg(long = "kernel", value_delimiter = ',', value_name = "NAME")]
    kernels: Vec<String>,

    /// Integration suites (tracer/tests/<NAME>.rs) to run whole in each guest (comma-separated)
    /// [default: a subset of trace, exits, blocked, async_clients, loss, context and emulate: the
    /// tests of the kernel mechanisms most likely to differ between releases]
    #[arg(long = "suite", value_delimiter = ',', value_name = "NAME")]
    suites: Vec<String>,

    /// Run every integration suite in each guest (several times longer)
    #[arg(long, conflicts_with = "suites")]
    all_suites: bool,

    /// Also boot a kernel image of your own (a bzImage, e.g. one built with WSL's
    /// Microsoft/config-wsl); virtio-pci, 9p and overlayfs must be built in, or their
    /// modules be in --modules
    #[arg(long, value_name = "BZIMAGE")]
    image: Option<PathBuf>,

    /// The modules tree of --image (`lib/modules/<release>`)
    #[arg(long, value_name = "DIR", requires = "image")]
    modules: Option<PathBuf>,

    /// Guests to run at once, one vCPU each
    #[arg(long, default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u64).range(1..=8))]
    jobs: u64,

    /// Minutes one guest may run before it is stopped and its kernel counted as failed
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MIN, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// What `cargo xtask test` runs: the whole matrix, the default suites.
impl Default for KernelsArgs {
    fn default() -> Self {
        KernelsArgs {
            kernels: Vec::new(),
            suites: Vec::new(),
            all_suites: false,
            image: None,
            modules: None,
            jobs: DEFAULT_JOBS,
            timeout: DEFAULT_TIMEOUT_MIN,
        }
    }
}

const DEFAULT_TIMEOUT_MIN: u64 = 20;

/// Two guests with one vCPU each finished in about the time one guest with two vCPUs took
/// (measured on this project's busy 2-core machine: 401 and 410 s against 428 s).
const DEFAULT_JOBS: u64 = 2;

/// One kernel to boot: from the matrix or the user's.
struct Target {
    name: String,
    vmlinuz: PathBuf,
    modules: Option<PathBuf>,
}

/// Why the matrix cannot run on this machine (nothing was tested).
pub struct Unavailable(pub anyhow::Error);

/// Runs the matrix: Err(Unavailable) when it could not start (no qemu, no packages), Err
/// of the inner result when a kernel failed.
pub fn run(args: &KernelsArgs) -> Result<Result<()>, Unavailable> {
    let root = workspace_root();
    let cache = root.join("target/kernels");
    let targets = prepare(args, &cache).map_err(Unavailable)?;
    let suites = suites(args).map_err(Unavailable)?;
    let binaries = test_binaries(&suites).map_err(Unavailable)?;
    Ok(boot_all(args, &root, &cache, &targets, &binaries))
}

fn prepare(args: &KernelsArgs, cache: &Path) -> Result<Vec<Target>> {
    require_root("the guests' tests load eBPF programs and the tools are installed with apt")?;
    prerequisites::vm_tools()?;
    let wanted: Vec<&Kernel> = if args.kernels.is_empty() {
        MATRIX.iter().collect()
    } else {
        args.kernels
            .iter()
            .map(|name| {
                MATRIX.iter().find(|k| k.name == name).with_context(|| {
                    let names: Vec<&str> = MATRIX.iter().map(|k| k.name).collect();
                    format!("no kernel {name:?} in the matrix ({})", names.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    let mut targets = Vec::new();
    for kernel in wanted {
        let unpacked = fetch::kernel(cache, kernel)
            .with_context(|| format!("fetching Debian {}'s kernel", kernel.suite))?;
        targets.push(Target {
            name: kernel.name.to_owned(),
            vmlinuz: unpacked.vmlinuz,
            modules: Some(unpacked.modules),
        });
    }
    if let Some(image) = &args.image {
        targets.push(Target {
            name: "own".to_owned(),
            vmlinuz: image.canonicalize().with_context(|| format!("{}", image.display()))?,
            modules: args.modules.clone(),
        });
    }
    Ok(targets)
}

fn suites(args: &KernelsArgs) -> Result<Vec<(String, Vec<String>)>> {
    let all = all_suites()?;
    let whole = |names: &[String]| names.iter().map(|n| (n.clone(), Vec::new())).collect();
    let chosen: Vec<(String, Vec<String>)> = if args.all_suites {
        whole(&all)
    } else if args.suites.is_empty() {
        DEFAULT_SUITES
            .iter()
            .map(|(s, tests)| ((*s).to_owned(), tests.iter().map(|t| (*t).to_owned()).collect()))
            .collect()
    } else {
        whole(&args.suites)
    };
    if let Some((unknown, _)) = chosen.iter().find(|(s, _)| !all.contains(s)) {
        bail!("no suite {unknown:?} in tracer/tests ({})", all.join(", "));
    }
    Ok(chosen)
}

/// Every integration suite: the files in tracer/tests.
fn all_suites() -> Result<Vec<String>> {
    let dir = workspace_root().join("tracer/tests");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rs").map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Builds the tracer's test binaries and returns the chosen suites' paths, in order.
fn test_binaries(suites: &[(String, Vec<String>)]) -> Result<Vec<vm::Suite>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["test", "--package", "tracer", "--tests", "--no-run", "--message-format", "json"])
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else { continue };
        let test = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"));
        if let (true, Some(name), Some(exe)) =
            (test, msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            found.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    suites
        .iter()
        .map(|(s, tests)| {
            let (name, binary) = found
                .iter()
                .find(|(name, _)| name == s)
                .cloned()
                .with_context(|| format!("cargo built no test binary {s}"))?;
            Ok(vm::Suite { name, binary, tests: tests.clone() })
        })
        .collect()
}

fn boot_all(
    args: &KernelsArgs,
    root: &Path,
    cache: &Path,
    targets: &[Target],
    binaries: &[vm::Suite],
) -> Result<()> {
    let names: Vec<String> = binaries.iter().map(|s| s.name.clone()).collect();
    let skipped: Vec<String> =
        all_suites().unwrap_or_default().into_iter().filter(|s| !names.contains(s)).collect();
    let jobs = (args.jobs as usize).min(targets.len()).max(1);
    // `jobs` workers take the next kernel as they come free; the verdicts are printed in the
    // matrix's order.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<Outcome>>>> =
        targets.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(target) = targets.get(i) else { break };
                    // One vCPU each, even for a guest left alone: with two, Debian's 6.12 once
                    // died of an int3 Oops in a code site being patched (a tracepoint's static
                    // key, at attach), the cross-vCPU code-patching race of TCG; one-vCPU
                    // guests never showed it.
                    let smp = 1;
                    eprintln!(
                        "xtask: booting kernel {} (TCG, {smp} vCPU) for {}",
                        target.name,
                        names.join(", ")
                    );
                    let outcome = boot(args, root, cache, target, binaries, smp);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(outcome);
                    }
                }
            });
        }
    });
    let outcomes = slots.into_iter().map(|slot| {
        slot.into_inner()
            .ok()
            .flatten()
            .unwrap_or_else(|| Err(anyhow::anyhow!("the guest's thread ended without a result")))
    });
    let mut rows = Vec::new();
    for (target, row) in targets.iter().zip(outcomes) {
        let (report, ending, wall) = match row {
            Ok(row) => row,
            Err(err) => {
                println!("kernel {}: 0 passed, 1 failed", target.name);
                println!("  could not boot it: {err:#}");
                rows.push(Row::failed(&target.name));
                continue;
            }
        };
        let release = report.release.clone().unwrap_or_else(|| target.name.clone());
        println!("kernel {release}: {} passed, {} failed", report.passed(), report.failed());
        if report.release.is_none() {
            println!(
                "  the guest never reached the tests: see {}",
                cache.join("runs").join(&target.name).join("console.log").display()
            );
        }
        if let Ending::TimedOut = ending {
            println!("  stopped after {} min (--timeout)", args.timeout);
        }
        for suite in &report.suites {
            for failure in &suite.failures {
                println!("  failed: {}::{failure}", suite.name);
            }
            if suite.ignored > 0 {
                println!(
                    "  skipped: {} ignored test(s) in {} (marked #[ignore])",
                    suite.ignored, suite.name
                );
            }
        }
        for suite in binaries.iter().filter(|s| !s.tests.is_empty()) {
            println!(
                "  skipped: the rest of suite {} (only {} in the default subset; --suite {} runs it all)",
                suite.name,
                suite.tests.join(", "),
                suite.name
            );
        }
        if !skipped.is_empty() {
            println!(
                "  skipped: suites {} (not kernel-facing enough to be worth the emulation time; --all-suites runs them)",
                skipped.join(", ")
            );
        }
        rows.push(Row { kernel: target.name.clone(), release, report: Some(report), wall });
    }
    print_table(&rows);
    let failed: Vec<&str> = rows.iter().filter(|r| !r.ok()).map(|r| r.kernel.as_str()).collect();
    if !failed.is_empty() {
        bail!("tests failed on kernel(s) {}", failed.join(", "));
    }
    Ok(())
}

/// What one guest left: its report, how it ended, its wall time.
type Outcome = (Report, Ending, Duration);

fn boot(
    args: &KernelsArgs,
    root: &Path,
    cache: &Path,
    target: &Target,
    binaries: &[vm::Suite],
    smp: usize,
) -> Result<Outcome> {
    let dir = cache.join("runs").join(&target.name);
    std::fs::create_dir_all(&dir)?;
    let initramfs = initramfs::build(&dir, target.modules.as_deref(), &workspace_root())?;
    let out = dir.join("out");
    let guest = Guest {
        vmlinuz: &target.vmlinuz,
        initramfs: &initramfs,
        out: &out,
        suites: binaries,
        cwd: &root.join("tracer"),
        timeout: Duration::from_secs(args.timeout * 60),
        smp,
    };
    let (ending, wall) = guest.run()?;
    let names: Vec<String> = binaries.iter().map(|s| s.name.clone()).collect();
    Ok((Report::read(&out, &names), ending, wall))
}

fn workspace_root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}
