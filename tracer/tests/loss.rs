//! Losses against the running kernel: a ring buffer far too small for the workload, and what
//! the user is told was lost. `lost` counts the calls the user selected, exactly; the context
//! records the kernel sends besides (for the fd table) are counted apart.

mod common;

use std::collections::BTreeMap;

use common::{demo_command, parse_records, parse_summary, run, wsltrace};
use serde_json::Value;

fn counts(value: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

/// `-s getsockopt` on a loop of socketpair, getsockopt and two closes, with a 16K ring: the
/// kernel also sends the socketpairs and closes (context, for the fd table) and loses most of
/// everything. For getsockopt, the events in the file plus the `lost` of the loss records are
/// the calls made, exactly; the context records lost are reported as such, apart.
#[test]
fn lost_counts_the_selected_calls_exactly_and_context_apart() {
    let (rounds, threads) = (200_000_u64, 2_u64);
    // Left behind only by a failure, to look at.
    let file = std::env::temp_dir().join(format!("wsltrace-loss-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let demo = ["pairs", "--count", &rounds.to_string(), "--threads", &threads.to_string()];
    let out = run(wsltrace()
        .args(["--ring-size", "16K", "-s", "getsockopt", "-o"])
        .arg(&file)
        .arg("--")
        .args(demo_command(&demo)));
    assert!(out.status.success(), "{}", out.stderr);

    let text = std::fs::read_to_string(&file).expect("read the recording");
    let _ = std::fs::remove_file(&file);
    let records = parse_records(&text);
    let footer = records.last().expect("records");
    assert_eq!(footer["type"], "footer");
    let events: Vec<&Value> = records.iter().filter(|r| r["type"] == "event").collect();
    assert!(events.iter().all(|e| e["syscall"] == "getsockopt"), "only getsockopt is shown");
    let delivered = events.len() as u64;
    let losses: Vec<&Value> = records.iter().filter(|r| r["type"] == "loss").collect();
    let sum = |key: &str| losses.iter().map(|l| l[key].as_u64().unwrap_or(0)).sum::<u64>();
    let lost = sum("lost");

    assert!(lost > 0, "a 16K ring cannot hold {rounds} rounds");
    assert_eq!(delivered + lost, rounds, "events + lost = getsockopt calls made");
    assert_eq!(footer["lost"], lost);
    assert_eq!(counts(&footer["lost_by_syscall"]), BTreeMap::from([("getsockopt".into(), lost)]));
    assert_eq!(losses.last().map(|l| &l["total_lost"]), Some(&footer["lost"]));

    // The socketpairs and closes lost were hidden calls: counted apart, per syscall.
    let lost_context = sum("lost_context");
    assert!(lost_context > 0, "context records were lost too");
    assert_eq!(footer["lost_context"], lost_context);
    let by_syscall = counts(&footer["lost_context_by_syscall"]);
    assert!(by_syscall.keys().all(|s| s == "socketpair" || s == "close"), "{by_syscall:?}");
    assert_eq!(by_syscall.values().sum::<u64>(), lost_context);
    // Never more than the hidden calls made (a socketpair and two closes a round).
    assert!(by_syscall.get("socketpair").copied().unwrap_or(0) <= rounds);
    assert!(by_syscall.get("close").copied().unwrap_or(0) <= 2 * rounds);

    // The last line says the same, and what losing context costs.
    let last = out.stderr.lines().last().unwrap_or_default();
    assert_eq!(parse_summary(last), Some((delivered, lost)), "{}", out.stderr);
    assert!(last.contains(&format!("{lost_context} context records lost too")), "{last}");
    // So does the terminal: a line for each loss record of each kind.
    let lines = |what: &str| out.stdout.lines().filter(|l| l.contains(what)).count();
    let records_with = |key: &str| losses.iter().filter(|l| l[key].as_u64() > Some(0)).count();
    assert_eq!(lines(" events (getsockopt "), records_with("lost"), "{}", out.stdout);
    assert_eq!(lines(" context records ("), records_with("lost_context"), "{}", out.stdout);
}
