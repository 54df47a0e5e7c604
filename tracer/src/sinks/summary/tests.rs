use tracer_common::Syscall;

use super::*;
use crate::event::{Args, Event, Finding, Loss};

fn event(pid: u32, syscall: Syscall, ret: i64, duration_ns: Option<u64>) -> Event {
    Event {
        ts: DateTime::from_timestamp(100, 0).unwrap(),
        pid,
        tid: pid,
        comm: format!("p{pid}").into(),
        duration_ns,
        in_flight_at_attach: duration_ns.is_none(),
        ..Event::for_test(syscall, Args::default(), ret)
    }
}

#[test]
fn counts_latencies_processes_findings_and_losses() {
    let mut summary = Summary::default();
    // 100 connects of 1..=100 us, every tenth refused.
    for i in 1..=100_u64 {
        let ret = if i % 10 == 0 { -111 } else { 0 };
        summary.add(RecordRef::Event(&event(1, Syscall::Connect, ret, Some(i * 1000))));
    }
    let mut flagged = event(2, Syscall::Getsockopt, -92, None);
    flagged.ts = DateTime::from_timestamp(103, 0).unwrap();
    flagged.anomalies.push(Finding {
        id: "WSL-PEERCRED-ENOPROTOOPT".into(),
        severity: Severity::Error,
        title: "no SO_PEERCRED".into(),
        fix: "f".into(),
        detail: None,
    });
    summary.add(RecordRef::Event(&flagged));
    let ts = DateTime::from_timestamp(101, 0).unwrap();
    summary.add(RecordRef::Loss(&Loss { ts, lost: 7, total_lost: 7, ..Loss::default() }));

    let report = summary.report();
    assert_eq!((report.events, report.lost, report.duration_ns), (101, 7, 3_000_000_000));
    let connect = &report.syscalls[0];
    assert_eq!((connect.syscall.as_str(), connect.calls, connect.errors), ("connect", 100, 10));
    assert_eq!(connect.errnos, BTreeMap::from([("ECONNREFUSED".to_owned(), 10)]));
    let lat = connect.latency_ns.unwrap();
    // Within hdrhistogram's 0.1% of the exact percentiles.
    let near = |got: u64, want: u64| got.abs_diff(want) <= want / 1000;
    assert!(near(lat.p50, 50_000) && near(lat.p90, 90_000) && near(lat.p99, 99_000), "{lat:?}");
    assert_eq!(lat.max, 100_000);
    let getsockopt = &report.syscalls[1];
    assert_eq!(getsockopt.latency_ns, None);
    assert_eq!(getsockopt.errnos["ENOPROTOOPT"], 1);
    let pids: Vec<(u32, u64, u64)> =
        report.processes.iter().map(|p| (p.pid, p.calls, p.errors)).collect();
    assert_eq!(pids, [(1, 100, 10), (2, 1, 1)]);
    assert_eq!(report.findings[0].id, "WSL-PEERCRED-ENOPROTOOPT");
    assert_eq!(report.findings[0].count, 1);

    let text = report.render(false);
    let connect_row = text.lines().find(|l| l.trim_start().starts_with("connect")).unwrap();
    for cell in ["100", "10", "ECONNREFUSED 10", "50us", "100us"] {
        assert!(connect_row.contains(cell), "{cell} in {connect_row}");
    }
    assert!(text.contains("WSL-PEERCRED-ENOPROTOOPT"));
    assert!(text.contains("lost events: 7"));
}

#[test]
fn json_is_one_object() {
    let mut sink = SummarySink::new(Vec::new(), Format::Json, false);
    sink.write(RecordRef::Event(&event(1, Syscall::Close, 0, Some(5)))).unwrap();
    sink.finish().unwrap();
    sink.finish().unwrap();
    let text = String::from_utf8(sink.out).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with(r#"{"type":"summary","events":1,"#), "{text}");
    let report: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(report.syscalls[0].latency_ns, Some(Latency { p50: 5, p90: 5, p99: 5, max: 5 }));
}

/// A loop of 200 curls is one row by command name; `--per-pid` gives one per process.
#[test]
fn processes_are_grouped_by_command_name() {
    let mut summary = Summary::default();
    for pid in 10..210 {
        let ev = Event { comm: "curl".into(), ..event(pid, Syscall::Connect, -111, Some(5)) };
        summary.add(RecordRef::Event(&ev));
    }
    summary.add(RecordRef::Event(&event(7, Syscall::Accept4, 3, Some(5))));
    let report = summary.report();
    let commands: Vec<(&str, u64, u64, u64)> = (report.commands.iter())
        .map(|c| (c.comm.as_str(), c.processes, c.calls, c.errors))
        .collect();
    assert_eq!(commands, [("curl", 200, 200, 200), ("p7", 1, 1, 0)]);
    assert_eq!(report.processes.len(), 201);

    let rows = |text: &str| text.lines().filter(|l| l.contains("curl")).count();
    assert_eq!(rows(&report.render(false)), 1);
    assert_eq!(rows(&report.render(true)), 200);
}
