//! Clients that connect without blocking (curl, Python's asyncio): the refusal arrives through
//! getsockopt(SO_ERROR) or a second connect, and gets the finding a blocking connect gets.

mod common;

use common::{
    Output, Workload,
    findings::{failure_findings, findings, trace_client},
    python, run, wsltrace,
};
use serde_json::{Value, json};

/// A Python asyncio client of HOST PORT: connect() returns EINPROGRESS, the event loop
/// polls, then reads the outcome with getsockopt(SO_ERROR).
const ASYNCIO_CLIENT: &str = "\
import asyncio, sys
async def main(host, port):
    try:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        print('connected', file=sys.stderr)
    except ConnectionRefusedError:
        print('refused', file=sys.stderr)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
";

/// The clients that connect without blocking: curl and Python's asyncio.
fn async_clients(port: u16) -> Vec<Vec<String>> {
    vec![
        ["curl", "-s", "--max-time", "1", &format!("http://127.0.0.1:{port}/")]
            .map(str::to_owned)
            .to_vec(),
        asyncio_client("127.0.0.1", port),
    ]
}

fn asyncio_client(host: &str, port: u16) -> Vec<String> {
    [python(), "-c", ASYNCIO_CLIENT, host, &port.to_string()].map(str::to_owned).to_vec()
}

/// A non-blocking connect to a local DNS resolver (127.0.0.42, WSL's early tunnel address:
/// `failing_local_dns_resolver` uses 127.0.0.53 at the same time): while it is in progress
/// nothing is wrong; its refusal, read with SO_ERROR, is the resolver's failure.
#[test]
fn non_blocking_connects_to_the_dns_stub() {
    if std::net::TcpStream::connect("127.0.0.42:53").is_ok() {
        panic!("a resolver listens on 127.0.0.42 on this machine: the test needs it absent");
    }
    let refused = trace_client(&[], &asyncio_client("127.0.0.42", 53));
    assert_eq!(
        failure_findings(&refused).into_iter().map(|(_, id, _)| id).collect::<Vec<_>>(),
        ["DNS-STUB-UNREACHABLE"],
        "{}",
        refused.stdout
    );
    let _resolver = Workload::start(&["listen", "--addr", "127.0.0.42:53"]);
    let answered = trace_client(&[], &asyncio_client("127.0.0.42", 53));
    assert!(answered.events().iter().any(|e| e["errno"] == "EINPROGRESS"), "{}", answered.stdout);
    assert!(findings(&answered).is_empty(), "{:?}", findings(&answered));
}

/// The events that read SO_ERROR.
fn so_error_reads(out: &Output) -> Vec<Value> {
    out.events().into_iter().filter(|e| e["args"]["optname"] == "SO_ERROR").collect()
}

/// curl and asyncio refused by a [::1]-only listener: the getsockopt(SO_ERROR) that reads
/// ECONNREFUSED carries the connect and gets the finding a blocking connect gets; `-e` and
/// `--failed` select it, and `--failed` leaves the EINPROGRESS out.
#[test]
fn non_blocking_connects_refused_by_a_v6_only_listener() {
    let server = Workload::start(&["listen", "--addr", "[::1]:0"]);
    let port = server.port.unwrap();
    let detail = format!(
        "port {port} listens on [::1]:{port} (wsltrace[{}] fd 3) in this namespace, not on 127.0.0.1",
        server.pid
    );
    for client in async_clients(port) {
        let name = &client[0];
        let out = trace_client(&[], &client);
        let refused: Vec<Value> = so_error_reads(&out)
            .into_iter()
            .filter(|e| e["async_error"] == "ECONNREFUSED")
            .collect();
        assert_eq!(refused.len(), 1, "{name}: {}", out.stdout);
        let read = &refused[0];
        assert_eq!((&read["ret"], &read["errno"]), (&json!(0), &Value::Null), "{name}");
        assert_eq!(
            read["connect"]["addr"],
            json!({"family":"AF_INET","ip":"127.0.0.1","port":port})
        );
        let started = out
            .events()
            .into_iter()
            .find(|e| e["syscall"] == "connect" && e["errno"] == "EINPROGRESS")
            .unwrap_or_else(|| panic!("{name}: no connect in progress: {}", out.stdout));
        assert_eq!(read["connect"]["started_ns"], started["ts_ns"], "{name}");
        assert!(started.get("anomalies").is_none(), "{name}: EINPROGRESS is no failure");
        let found: Vec<(String, String)> =
            failure_findings(&out).into_iter().map(|(_, id, detail)| (id, detail)).collect();
        assert_eq!(
            found,
            [("CONNECT-REFUSED-OTHER-ADDRESS".to_owned(), detail.clone())],
            "{name}: {}",
            out.stdout
        );

        // The kernel filters judge the call by the error it read.
        let selected = trace_client(&["-e", "ECONNREFUSED"], &client);
        let events = selected.events();
        assert!(!events.is_empty(), "{name}: -e ECONNREFUSED shows nothing");
        assert!(
            events
                .iter()
                .all(|e| e["errno"] == "ECONNREFUSED" || e["async_error"] == "ECONNREFUSED"),
            "{name}: {}",
            selected.stdout
        );
        assert_eq!(so_error_reads(&selected).len(), 1, "{name}: {}", selected.stdout);
        assert_eq!(so_error_reads(&selected)[0]["connect"]["addr"], read["connect"]["addr"]);
        // One finding for the refusal. The socket error comes first and carries it; with the
        // process's other calls filtered out in the kernel it is judged with less context and
        // may get the generic CONNECT-REFUSED (a known gap, not settled here).
        let selected_ids: Vec<String> =
            failure_findings(&selected).into_iter().map(|(_, id, _)| id).collect();
        assert_eq!(selected_ids.len(), 1, "{name}: {}", selected.stdout);
        assert!(selected_ids[0].starts_with("CONNECT-REFUSED"), "{name}: {selected_ids:?}");

        let failed = trace_client(&["--failed"], &client);
        assert_eq!(so_error_reads(&failed).len(), 1, "{name}: {}", failed.stdout);
        assert!(
            !failed.events().iter().any(|e| e["errno"] == "EINPROGRESS"),
            "{name}: --failed shows the EINPROGRESS: {}",
            failed.stdout
        );
        let in_progress = trace_client(&["-e", "EINPROGRESS"], &client);
        let events = in_progress.events();
        assert!(
            !events.is_empty() && events.iter().all(|e| e["errno"] == "EINPROGRESS"),
            "{name}: {}",
            in_progress.stdout
        );
    }
}

/// Text shows where the failed connect was going, and `analyze` derives the outcome again
/// from a recording that lacks it (schema 1.0).
#[test]
fn non_blocking_refusal_in_text_and_in_recordings() {
    let server = Workload::start(&["listen", "--addr", "[::1]:0"]);
    let port = server.port.unwrap();
    let client = &asyncio_client("127.0.0.1", port);
    let text = run(wsltrace().arg("--").args(client));
    let line = text.stdout.lines().find(|l| l.contains("SO_ERROR")).unwrap_or_default();
    // The local end is `?` when the refusal had already released the port as connect()
    // returned, the port it had otherwise (which of the two depends on when loopback's reset
    // is processed).
    let (_, rest) = line.split_once("<TCP:").unwrap_or_default();
    let (local, rest) = rest.split_once("->").unwrap_or_default();
    assert!(local == "?" || local.starts_with("127.0.0.1:"), "{}", text.stdout);
    assert!(
        rest.starts_with(&format!("127.0.0.1:{port}>, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0 (connect to 127.0.0.1:{port} failed: ECONNREFUSED)")),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("CONNECT-REFUSED-OTHER-ADDRESS (warning)"), "{}", text.stdout);

    let file = std::env::temp_dir().join(format!("wsltrace-async-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let recorded = run(wsltrace().arg("-q").arg("-o").arg(&file).arg("--").args(client));
    assert!(recorded.status.success(), "{}", recorded.stderr);
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            let mut record: Value = serde_json::from_str(l).unwrap();
            if let Some(obj) = record.as_object_mut() {
                obj.remove("async_error");
                obj.remove("connect");
            }
            record.to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let analysed =
        run(wsltrace().args(["analyze", "--format", "json", "-e", "ECONNREFUSED"]).arg(&file));
    std::fs::remove_file(&file).unwrap();
    assert!(analysed.status.success(), "{}", analysed.stderr);
    let reads = so_error_reads(&analysed);
    assert_eq!(reads.len(), 1, "{}", analysed.stdout);
    assert_eq!(reads[0]["async_error"], "ECONNREFUSED");
    assert_eq!(reads[0]["connect"]["addr"]["port"], port);
    let analysed_ids: Vec<String> =
        failure_findings(&analysed).into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(analysed_ids, ["CONNECT-REFUSED-OTHER-ADDRESS"], "the recorded finding is kept");
}

/// A non-blocking connect that succeeds: SO_ERROR reads 0, nothing to flag, nothing failed.
#[test]
fn successful_non_blocking_connects_have_no_finding() {
    let server = Workload::start(&["listen", "--addr", "127.0.0.1:0"]);
    for client in async_clients(server.port.unwrap()) {
        let name = &client[0];
        let out = trace_client(&[], &client);
        let reads = so_error_reads(&out);
        assert!(!reads.is_empty(), "{name}: {}", out.stdout);
        assert!(reads.iter().all(|e| e["args"]["value"] == 0 && e.get("connect").is_none()));
        assert!(out.events().iter().any(|e| e["errno"] == "EINPROGRESS"), "{name}");
        assert!(findings(&out).is_empty(), "{name}: {:?}", findings(&out));
        let failed = trace_client(&["--failed"], &client);
        assert!(
            failed.events().iter().all(|e| e["syscall"] == "connect" && e["errno"] == "ENOENT"),
            "{name}: only the nscd probes failed: {}",
            failed.stdout
        );
    }
}
