//! The two probe kinds side by side in RESULTS.md: what each costs the traced socket load
//! (floor, `-o FILE`, from the overhead rounds, where they run interleaved with the other
//! modes) and what each costs everyone else (the bystander: getppid in an untraced process).

use std::fmt::Write as _;

use super::{
    report::{ModeSummary, Overhead},
    runs::Mode,
};

pub fn section(md: &mut String, mix: &Overhead, bystander: Option<&Overhead>) {
    let pairs: Vec<(&str, &ModeSummary, &ModeSummary)> = [
        ("floor on the mix (workload filtered out), ratio median (min)", Mode::AttachedFloor),
        ("`-o FILE` on the mix, ratio median (min)", Mode::File),
    ]
    .into_iter()
    .filter_map(|(what, mode)| Some((what, find(mix, mode)?, find(mix, mode.raw_twin()?)?)))
    .collect();
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Probe kinds: `--probe-kind tracepoint` and `raw`\n");
    let _ = writeln!(
        md,
        "tracepoint attaches `syscalls:sys_enter_*`/`sys_exit_*` of the traced syscalls only; \
         raw attaches the raw `sys_enter`/`sys_exit` tracepoints, which run for every syscall \
         of every process and return at once unless its number is a traced one. The mix rows \
         come from the overhead rounds above (same rounds, interleaved). The bystander: \
         `{}` in a process wsltrace does not trace (a syscall neither kind traces), untraced \
         and with wsltrace attached to an idle process with each kind, interleaved the same \
         way; the figure is the time added to each getppid call, the median over rounds of \
         (loop time - untraced loop time of the same round) / calls.\n",
        bystander.map_or("getppid", |b| b.workload.as_str())
    );
    let _ = writeln!(md, "| | tracepoint | raw |");
    let _ = writeln!(md, "|---|---|---|");
    let ratio = |m: &ModeSummary| format!("{:.3} ({:.3})", m.ratio_median, m.ratio_min);
    for (what, tracepoint, raw) in pairs {
        let _ = writeln!(md, "| {what} | {} | {} |", ratio(tracepoint), ratio(raw));
    }
    if let Some(b) = bystander
        && let (Some(untraced), Some(tracepoint), Some(raw)) =
            (find(b, Mode::Untraced), find(b, Mode::AttachedFloor), find(b, Mode::AttachedFloorRaw))
    {
        let per_call = |m: &ModeSummary| m.loop_ms_median * 1e6 / per_run(m);
        let _ = writeln!(
            md,
            "| bystander: ns added per getppid (untraced: {:.1} ns per call) | {:+.1} ns | {:+.1} ns |",
            per_call(untraced),
            tracepoint.added_ns_per_call,
            raw.added_ns_per_call
        );
    }
    md.push('\n');
}

fn find(o: &Overhead, mode: Mode) -> Option<&ModeSummary> {
    o.modes.iter().find(|m| m.mode == mode)
}

/// Calls per run of the mode.
fn per_run(m: &ModeSummary) -> f64 {
    m.made as f64 / m.runs.len().max(1) as f64
}
