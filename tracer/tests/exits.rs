//! How traced processes end: exit codes and signals, and which exits are worth a line.

mod common;

use std::collections::BTreeSet;

use common::{WSLTRACE, python, trace};
use serde_json::Value;

fn exits(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["type"] == "exit").collect()
}

/// `sys.exit(3)`: the exit record carries the code, the text says `exited with 3`, and
/// wsltrace exits with the command's status.
#[test]
fn an_exit_code_is_reported() {
    let script = "import socket, sys; socket.socket().close(); sys.exit(3)";
    let out = trace(&["--format", "json", "--", python(), "-c", script]);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    let records = out.records();
    let exits = exits(&records);
    assert_eq!(exits.len(), 1, "{records:?}");
    assert_eq!((exits[0]["code"].as_i64(), &exits[0]["signal"]), (Some(3), &Value::Null));

    let out = trace(&["--", python(), "-c", script]);
    assert!(out.stdout.contains("] +++ exited with 3 +++"), "{}", out.stdout);
}

/// A process killed by a signal: `"signal":"SIGKILL"`, `+++ killed by SIGKILL +++`.
#[test]
fn a_fatal_signal_is_reported() {
    let script = "import os, signal, socket; socket.socket(); os.kill(os.getpid(), signal.SIGKILL)";
    let out = trace(&["--format", "json", "--", python(), "-c", script]);
    assert_eq!(out.status.code(), Some(128 + 9), "{}", out.stderr);
    let records = out.records();
    let exits = exits(&records);
    assert_eq!(exits.len(), 1, "{records:?}");
    assert_eq!((&exits[0]["signal"], &exits[0]["code"]), (&Value::from("SIGKILL"), &Value::Null));

    let out = trace(&["--", python(), "-c", script]);
    assert!(out.stdout.contains("] +++ killed by SIGKILL +++"), "{}", out.stdout);
}

/// A shell wrapper forks helpers that never touch a socket: only the process that made traced
/// calls gets an exit line, with -q too (where only calls with findings are shown).
#[test]
fn only_processes_with_traced_calls_get_an_exit_line() {
    let script = format!("/bin/true; /bin/true; {WSLTRACE} demo --untraced refused; /bin/true");
    let out = trace(&["--format", "json", "--", "sh", "-c", &script]);
    assert!(out.status.success(), "{}", out.stderr);
    let records = out.records();
    let pids = |records: &mut dyn Iterator<Item = &Value>| -> BTreeSet<u64> {
        records.filter_map(|r| r["pid"].as_u64()).collect()
    };
    let with_events = pids(&mut records.iter().filter(|r| r["type"] == "event"));
    let exited = pids(&mut exits(&records).into_iter());
    assert_eq!(exited.len(), 1, "{records:?}");
    assert_eq!(exited, with_events);

    // -q: the refused connect has a finding, so its process's exit is shown...
    let out = trace(&["-q", "--", "sh", "-c", &script]);
    let exit_lines: Vec<&str> = out.stdout.lines().filter(|l| l.contains("+++ exited")).collect();
    assert_eq!(exit_lines.len(), 1, "{}", out.stdout);
    assert!(exit_lines[0].contains("wsltrace["), "{}", out.stdout);
    // ...and a process whose calls had none is not.
    let quiet = trace(&["-q", "--", "sh", "-c", &format!("{WSLTRACE} demo --untraced echo")]);
    assert!(!quiet.stdout.contains("+++"), "{}", quiet.stdout);
}
