//! `--probe-kind tracepoint|raw`: both kinds run the same program logic, so the same workload
//! gives the same records call by call. Needs root (loads the programs into the running
//! kernel); raw needs x86_64.
mod common;

use common::{Output, run, wsltrace};
use serde_json::Value;

/// `wsltrace demo --format json --probe-kind KIND`: every traced syscall, failures among them.
fn demo(kind: &str) -> Output {
    // Its own kind, whatever WSLTRACE_PROBE_KIND says (the wrapper leaves an explicit one).
    let out = run(wsltrace().args(["demo", "--format", "json", "--probe-kind", kind]));
    assert!(out.status.success(), "{kind}: {}", out.stderr);
    out
}

/// What two runs of the workload share: the record less its times, with what differs from run
/// to run by nature (the pid, ephemeral ports, socket inodes) replaced by a marker, and the
/// findings by their rule ids (their text quotes ports).
fn normalized(out: &Output) -> Vec<Value> {
    let events = out.events();
    let pid = events.first().and_then(|e| e["pid"].as_u64()).expect("no events");
    events.iter().map(|e| normalize(e, None, pid)).collect()
}

fn normalize(value: &Value, key: Option<&str>, pid: u64) -> Value {
    match (key, value) {
        (Some("port"), Value::Number(n)) if n.as_u64() != Some(0) => "PORT".into(),
        (Some("inode" | "peer_inode"), Value::Number(_)) => "INODE".into(),
        (Some("anomalies"), Value::Array(found)) => found.iter().map(|a| a["id"].clone()).collect(),
        (_, Value::Number(n)) if n.as_u64() == Some(pid) => "PID".into(),
        (_, Value::String(s)) => s.replace(&pid.to_string(), "PID").into(),
        (_, Value::Array(items)) => items.iter().map(|v| normalize(v, None, pid)).collect(),
        (_, Value::Object(fields)) => fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "ts" | "ts_ns" | "duration_ns"))
            .map(|(k, v)| (k.clone(), normalize(v, Some(k), pid)))
            .collect(),
        _ => value.clone(),
    }
}

#[test]
fn both_kinds_record_the_demo_workload_alike() {
    let tracepoint = demo("tracepoint");
    let raw = demo("raw");
    let (a, b) = (normalized(&tracepoint), normalized(&raw));
    // The whole workload: every traced syscall appears.
    for syscall in tracer_common::Syscall::ALL {
        assert!(a.iter().any(|e| e["syscall"] == syscall.name()), "no {} event", syscall.name());
    }
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_eq!(a, b, "event {i} differs between tracepoint (left) and raw (right)");
    }
    assert_eq!(a.len(), b.len(), "event counts differ: tracepoint {}, raw {}", a.len(), b.len());
    // Durations are measured the same way: from entry to exit, never 0 for a call seen whole.
    for ev in raw.events() {
        assert!(ev["duration_ns"].as_u64().is_some_and(|d| d > 0), "{ev}");
    }
    assert_eq!((tracepoint.summary().1, raw.summary().1), (0, 0), "lost events");
}

#[test]
fn raw_reports_the_socket_calls_only() {
    // Under raw every syscall of the machine reaches the programs: a getppid loop (number
    // 110), reads and closes of a file (0 and 3) must not become events, one socket's
    // socket and close (41, 3) must.
    let python = common::python();
    let script = "import os, socket\nfor _ in range(1000): os.getppid()\n\
                  fd = os.open('/dev/null', 0); os.read(fd, 1); os.close(fd)\n\
                  s = socket.socket(); s.close()";
    let out = run(wsltrace()
        .args(["--probe-kind", "raw", "--format", "json", "--", python, "-c"])
        .arg(script));
    assert!(out.status.success(), "{}", out.stderr);
    let names: Vec<String> =
        out.events().iter().map(|e| e["syscall"].as_str().unwrap_or("?").to_owned()).collect();
    assert_eq!(names, ["socket", "close"], "{}", out.stdout);
}
