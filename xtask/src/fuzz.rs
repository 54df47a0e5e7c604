//! `cargo xtask fuzz`: every cargo-fuzz target of `fuzz/` for a bounded time, one after the
//! other on one core, with one line per target; fails when a target crashed. Not part of
//! `cargo xtask test`.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::{cargo, prerequisites, require_root, run_cmd};

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds each target runs
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    time: u64,

    /// Run only this target (repeatable); default: every target in fuzz/fuzz_targets
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,

    /// First rewrite the ring_record seeds from the real kernel: load wsltrace's programs,
    /// trace a socket workload, keep each ring record (as root)
    #[arg(long)]
    seeds: bool,
}

/// What one run did, from libFuzzer's final statistics.
struct Outcome {
    execs: Option<u64>,
    per_sec: Option<u64>,
    cov: Option<u64>,
    features: Option<u64>,
    corpus: Option<u64>,
    /// The input that crashed it, as libFuzzer saved it.
    crash: Option<String>,
}

pub fn run(args: FuzzArgs) -> Result<()> {
    prerequisites::install_for_fuzzing()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask/ has no parent directory")?
        .to_path_buf();
    let fuzz_dir = root.join("fuzz");
    if args.seeds {
        write_ring_seeds(&root)?;
    }
    let available = list_targets(&root)?;
    let targets = if args.targets.is_empty() { available } else { args.targets };
    for name in &targets {
        if !fuzz_dir.join("fuzz_targets").join(format!("{name}.rs")).exists() {
            bail!("no fuzz target {name} in fuzz/fuzz_targets");
        }
    }
    // One build for all targets, so that the time given is spent fuzzing.
    run_cmd(nightly_fuzz(&root).arg("build"))?;

    let mut crashed = Vec::new();
    for name in &targets {
        let started = Instant::now();
        let outcome = fuzz_one(&root, name, args.time)?;
        let secs = started.elapsed().as_secs();
        let n = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        let result = match &outcome.crash {
            Some(input) => format!("CRASH, input saved in {input}"),
            None => "no crash".to_owned(),
        };
        println!(
            "{name:<12} {secs:>5} s  {:>11} execs  {:>7}/s  cov {:>5}  ft {:>6}  corpus {:>5}  {result}",
            n(outcome.execs),
            n(outcome.per_sec),
            n(outcome.cov),
            n(outcome.features),
            n(outcome.corpus),
        );
        if outcome.crash.is_some() {
            crashed.push(name.as_str());
        }
    }
    if !crashed.is_empty() {
        bail!(
            "{} crashed: reproduce with `cargo +nightly fuzz run TARGET INPUT` and add the input to a unit test next to the code",
            crashed.join(", ")
        );
    }
    Ok(())
}

fn nightly_fuzz(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz"]).current_dir(root);
    cmd
}

/// The targets cargo-fuzz knows (fuzz/Cargo.toml), less the seed writer, which is no target.
fn list_targets(root: &Path) -> Result<Vec<String>> {
    let out = nightly_fuzz(root).arg("list").stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("cargo fuzz list failed: {}", out.status);
    }
    let targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| root.join("fuzz/fuzz_targets").join(format!("{name}.rs")).exists())
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("cargo fuzz list found no target in fuzz/fuzz_targets");
    }
    Ok(targets)
}

/// Runs one target for `secs` on one core. New inputs go to a scratch corpus under
/// fuzz/target; the committed seeds (fuzz/corpus/NAME) are read, never written.
fn fuzz_one(root: &Path, name: &str, secs: u64) -> Result<Outcome> {
    let scratch = root.join("fuzz/target/corpus").join(name);
    let logs = root.join("fuzz/target/logs");
    std::fs::create_dir_all(&scratch)?;
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{name}.log"));
    let log = File::create(&log_path)?;
    let seeds: PathBuf = root.join("fuzz/corpus").join(name);
    let status = nightly_fuzz(root)
        .args(["run", name])
        .arg(&scratch)
        .arg(&seeds)
        .args([
            "--",
            &format!("-max_total_time={secs}"),
            // One process, so one core (no -jobs: its worker would log to fuzz-N.log).
            "-print_final_stats=1",
            // An input that takes this long is a hang: reported like a crash.
            "-timeout=10",
        ])
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running cargo fuzz run {name}"))?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let crash = text
        .lines()
        .rev()
        .find_map(|line| line.split_once("Test unit written to ").map(|(_, p)| p.trim().to_owned()))
        .or_else(|| {
            (!status.success()).then(|| format!("(no input saved; see {})", log_path.display()))
        });
    let last_status = text.lines().rev().find(|line| line.contains(" cov: "));
    Ok(Outcome {
        execs: stat(&text, "stat::number_of_executed_units:"),
        per_sec: stat(&text, "stat::average_exec_per_sec:"),
        cov: last_status.and_then(|l| after(l, "cov: ")),
        features: last_status.and_then(|l| after(l, "ft: ")),
        corpus: last_status.and_then(|l| after(l, "corp: ")),
        crash,
    })
}

/// The number after `key` on the last line that has it.
fn stat(text: &str, key: &str) -> Option<u64> {
    text.lines().rev().find_map(|line| after(line, key))
}

fn after(line: &str, key: &str) -> Option<u64> {
    let (_, rest) = line.split_once(key)?;
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Rewrites fuzz/corpus/ring_record with records read from the kernel's ring buffer.
fn write_ring_seeds(root: &Path) -> Result<()> {
    require_root("writing ring_record seeds loads eBPF programs")?;
    let out = root.join("fuzz/corpus/ring_record");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    // A normal (not instrumented) build, in the workspace's target directory: the tracer
    // library's dependencies are built there already.
    let manifest = root.join("fuzz/Cargo.toml");
    let target_dir = root.join("target");
    let out_arg = out.to_string_lossy();
    cargo(&[
        "run",
        "--quiet",
        "--manifest-path",
        &manifest.to_string_lossy(),
        "--target-dir",
        &target_dir.to_string_lossy(),
        "--features",
        "seeds",
        "--bin",
        "ring_seeds",
        "--",
        &out_arg,
    ])
}
