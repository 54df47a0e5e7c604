use chrono::DateTime;
use tracer_common::Syscall;

use super::*;
use crate::event::{Args, Loss, ProcessExit, Severity};

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn finding() -> Finding {
    Finding {
        id: "CONNECT-REFUSED-NOTHING-LISTENS".into(),
        severity: Severity::Warning,
        title: "t".into(),
        fix: "f".into(),
        detail: Some("port 9 (a detail, not a label)".into()),
    }
}

#[test]
fn counts_errors_findings_losses_and_latency() {
    let mut sink = MetricsSink::new(Metrics::new(&[Syscall::Connect, Syscall::Bind]));
    for i in 0..5_u64 {
        let mut ev = Event::for_test(Syscall::Connect, Args::default(), -111);
        ev.duration_ns = Some(10_000 + i);
        ev.anomalies.push(finding());
        sink.write(RecordRef::Event(&ev)).unwrap();
    }
    let ok = Event { duration_ns: None, ..Event::for_test(Syscall::Connect, Args::default(), 0) };
    sink.write(RecordRef::Event(&ok)).unwrap();
    let ts = DateTime::from_timestamp(1, 0).unwrap();
    sink.write(RecordRef::Loss(&Loss { ts, lost: 3, total_lost: 3, ..Loss::default() })).unwrap();
    sink.write(RecordRef::Loss(&Loss { ts, lost: 4, total_lost: 7, ..Loss::default() })).unwrap();

    let text = encode(&sink.metrics.registry, Exposition::OpenMetrics);
    assert_eq!(sample(&text, r#"wsltrace_events_total{syscall="connect"}"#), Some(6.0), "{text}");
    // Traced syscalls start at zero.
    assert_eq!(sample(&text, r#"wsltrace_events_total{syscall="bind"}"#), Some(0.0));
    assert_eq!(
        sample(&text, r#"wsltrace_errors_total{syscall="connect",errno="ECONNREFUSED"}"#),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"wsltrace_findings_total{rule="CONNECT-REFUSED-NOTHING-LISTENS",severity="warning"}"#
        ),
        Some(5.0)
    );
    assert_eq!(sample(&text, "wsltrace_lost_events_total"), Some(7.0));
    // Five calls of about 10 us: above the 4 us bucket, within the 16 us one; the call with no
    // duration is not observed.
    let bucket = |le: &str| {
        let series =
            format!(r#"wsltrace_syscall_duration_seconds_bucket{{le="{le}",syscall="connect"}}"#);
        sample(&text, &series)
    };
    assert_eq!(bucket("4e-6").or_else(|| bucket("0.000004")), Some(0.0), "{text}");
    assert_eq!(bucket("1.6e-5").or_else(|| bucket("0.000016")), Some(5.0), "{text}");
    assert_eq!(
        sample(&text, r#"wsltrace_syscall_duration_seconds_count{syscall="connect"}"#),
        Some(5.0)
    );
    // Details, pids and addresses are never labels.
    assert!(!text.contains("port 9") && !text.contains("4242"), "{text}");
    assert!(text.ends_with("# EOF\n"));
    // The classic text format: the same samples, each family typed under its sample name.
    let classic = encode(&sink.metrics.registry, Exposition::PrometheusText);
    assert!(classic.contains("# TYPE wsltrace_errors_total counter"), "{classic}");
    assert_eq!(
        sample(&classic, r#"wsltrace_errors_total{syscall="connect",errno="ECONNREFUSED"}"#),
        Some(5.0)
    );
    assert!(!classic.contains("# EOF"));
}

#[test]
fn formats_by_accept_header() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Exposition::from_accept(Some(prometheus)), Exposition::OpenMetrics);
    assert_eq!(Exposition::from_accept(Some("*/*")), Exposition::PrometheusText);
    assert_eq!(Exposition::from_accept(None), Exposition::PrometheusText);
}

#[test]
fn blocked_calls_until_they_return_or_their_process_ends() {
    let mut sink = MetricsSink::new(Metrics::new(Syscall::ALL));
    let gauge = |sink: &MetricsSink| {
        sample(&encode(&sink.metrics.registry, Exposition::OpenMetrics), "wsltrace_blocked_calls")
    };
    let connect = Event::for_test(Syscall::Connect, Args { fd: Some(5), ..Args::default() }, 0);
    sink.write(RecordRef::Blocked(&Blocked::for_test(connect.clone(), 2_000_000_000))).unwrap();
    // A non-blocking connect still connecting, in another process.
    let mut nonblocking = Blocked::for_test(connect.clone(), 2_000_000_000);
    nonblocking.pid = 7;
    nonblocking.nonblocking = true;
    sink.write(RecordRef::Blocked(&nonblocking)).unwrap();
    assert_eq!(gauge(&sink), Some(2.0));
    // Another call of the same thread does not end the blocked one; its own event does.
    let other = Event { ts_ns: 99, ..connect.clone() };
    sink.write(RecordRef::Event(&other)).unwrap();
    assert_eq!(gauge(&sink), Some(2.0));
    sink.write(RecordRef::Event(&connect)).unwrap();
    assert_eq!(gauge(&sink), Some(1.0));
    let ts = DateTime::from_timestamp(1, 0).unwrap();
    let exit = ProcessExit {
        ts,
        ts_ns: 5,
        pid: 7,
        comm: "c".into(),
        code: Some(0),
        signal: None,
        core_dumped: false,
    };
    sink.write(RecordRef::Exit(&exit)).unwrap();
    assert_eq!(gauge(&sink), Some(0.0));
}

#[test]
fn listen_addresses() {
    assert_eq!(parse_listen_addr("127.0.0.1:9464"), Ok(([127, 0, 0, 1], 9464).into()));
    assert!(parse_listen_addr("[::1]:9464").is_ok());
    for bad in ["9464", "localhost:9464", "127.0.0.1", ":9464"] {
        assert!(parse_listen_addr(bad).unwrap_err().contains("use IP:PORT"), "{bad}");
    }
}
