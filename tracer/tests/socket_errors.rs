//! The kernel's socket error reports (`socket_error` records): a refusal or a reset that no
//! call asks for, and one finding per refusal when a call reads it too.

mod common;

use common::{
    Output, Workload,
    findings::{failure_findings, findings, free_port, trace_client},
    python, run, wsltrace,
};
use serde_json::{Value, json};

/// A client that never asks how its connect ended: a non-blocking connect to HOST PORT,
/// select() until the socket is writable, then exit without getsockopt(SO_ERROR) or a second
/// connect. It prints the socket's fd on stderr.
const NEVER_ASKS_CLIENT: &str = "\
import select, socket, sys
s = socket.socket()
s.setblocking(False)
print(s.fileno(), file=sys.stderr)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except BlockingIOError:
    pass
select.select([], [s], [], 2)
";

/// The `socket_error` records of a JSON trace.
fn socket_errors(out: &Output) -> Vec<Value> {
    out.records().into_iter().filter(|r| r["type"] == "socket_error").collect()
}

/// A client that only polls is refused by a [::1]-only listener: the kernel's socket error
/// report is a `socket_error` record on the connect's fd, with the connect's destination and
/// the finding a refused blocking connect gets; `-e`, `--failed` and `-c` take it in.
#[test]
fn socket_errors_no_call_asks_for() {
    let server = Workload::start(&["listen", "--addr", "[::1]:0"]);
    let port = server.port.unwrap();
    let client = [python(), "-c", NEVER_ASKS_CLIENT, "127.0.0.1", &port.to_string()]
        .map(str::to_owned)
        .to_vec();
    let out = trace_client(&[], &client);
    assert!(out.status.success(), "{}", out.stderr);
    let fd: i64 = out.stderr.lines().find_map(|l| l.trim().parse().ok()).expect("the fd");
    let errors = socket_errors(&out);
    assert_eq!(errors.len(), 1, "{}", out.stdout);
    let error = &errors[0];
    let connect = out
        .events()
        .into_iter()
        .find(|e| e["syscall"] == "connect" && e["errno"] == "EINPROGRESS")
        .unwrap_or_else(|| panic!("no connect in progress: {}", out.stdout));
    assert_eq!(error["error"], "ECONNREFUSED");
    assert_eq!((&error["pid"], &error["tid"]), (&connect["pid"], &connect["tid"]));
    assert_eq!((&error["fd"], &connect["args"]["fd"]), (&json!(fd), &json!(fd)));
    let dest = json!({"family":"AF_INET","ip":"127.0.0.1","port":port});
    assert_eq!(error["connect"]["addr"], dest);
    assert_eq!(error["connect"]["started_ns"], connect["ts_ns"]);
    assert_eq!(error["sock"]["peer"], dest);
    assert!(error["ts_ns"].as_u64() >= connect["ts_ns"].as_u64());
    let detail = format!(
        "port {port} listens on [::1]:{port} (wsltrace[{}] fd 3) in this namespace, not on 127.0.0.1",
        server.pid
    );
    assert_eq!(error["anomalies"][0]["id"], "CONNECT-REFUSED-OTHER-ADDRESS", "{error}");
    assert_eq!(error["anomalies"][0]["detail"], detail.as_str());
    // The program asked for nothing: no event carries the refusal.
    assert!(findings(&out).is_empty(), "{:?}", findings(&out));
    assert!(!out.events().iter().any(|e| e["async_error"] == "ECONNREFUSED"));

    // The filters select it, in the kernel and in userspace.
    for filter in [&["-e", "ECONNREFUSED"][..], &["--failed"]] {
        let selected = trace_client(filter, &client);
        let errors = socket_errors(&selected);
        assert_eq!(errors.len(), 1, "{filter:?}: {}", selected.stdout);
        assert_eq!(errors[0]["connect"]["addr"], dest, "{filter:?}");
        // Judged in the client's namespace, though no call of it was shown before.
        assert_eq!(
            errors[0]["anomalies"][0]["id"], "CONNECT-REFUSED-OTHER-ADDRESS",
            "{filter:?}: {}",
            errors[0]
        );
        assert!(
            !selected.events().iter().any(|e| e["errno"] == "EINPROGRESS"),
            "{filter:?}: {}",
            selected.stdout
        );
    }
    let other = trace_client(&["-e", "ETIMEDOUT"], &client);
    assert!(socket_errors(&other).is_empty(), "{}", other.stdout);

    // -c counts it, with its finding.
    let counted = trace_client(&["-c"], &client);
    let report: Value = serde_json::from_str(&counted.stdout).expect("one JSON object");
    assert_eq!(report["socket_errors"], json!({"ECONNREFUSED": 1}), "{}", counted.stdout);
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "CONNECT-REFUSED-OTHER-ADDRESS" && f["count"] == 1),
        "{}",
        counted.stdout
    );

    // Text, strace-like, with the finding under it.
    let text = run(wsltrace().arg("--").args(&client));
    let line = text.stdout.lines().find(|l| l.contains("socket error")).unwrap_or_default();
    let (_, described) = line.split_once(&format!(" {fd}<TCP:")).unwrap_or_default();
    let (local, rest) = described.split_once("->").unwrap_or_default();
    assert_eq!(
        rest,
        format!("127.0.0.1:{port}> +++ socket error ECONNREFUSED (Connection refused) +++"),
        "{}",
        text.stdout
    );
    // The local end: `?` when the reset had released the port before the tracer could read
    // it (the kernel reads it as connect returns; else the tracer asks the socket while the
    // client still holds it), else the port the connect used. Either way the socket error
    // describes the fd as the connect line does.
    let port_used = local.strip_prefix("127.0.0.1:").and_then(|p| p.parse::<u16>().ok());
    assert!(local == "?" || port_used.is_some_and(|p| p != 0), "{}", text.stdout);
    let on_connect = format!("connect({fd}<TCP:{local}->127.0.0.1:{port}>, ");
    assert!(text.stdout.contains(&on_connect), "{on_connect} in {}", text.stdout);
    assert!(text.stdout.contains("CONNECT-REFUSED-OTHER-ADDRESS (warning)"), "{}", text.stdout);
    assert!(text.stderr.trim_end().ends_with(", 1 socket errors"), "{}", text.stderr);

    // Recorded and read back by analyze, filters and finding included.
    let file = std::env::temp_dir().join(format!("wsltrace-sockerr-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let recorded = run(wsltrace().arg("-q").arg("-o").arg(&file).arg("--").args(&client));
    assert!(recorded.status.success(), "{}", recorded.stderr);
    let analysed =
        run(wsltrace().args(["analyze", "--format", "json", "-e", "ECONNREFUSED"]).arg(&file));
    std::fs::remove_file(&file).unwrap();
    assert!(analysed.status.success(), "{}", analysed.stderr);
    assert!(!analysed.stderr.contains("error:"), "{}", analysed.stderr);
    let errors = socket_errors(&analysed);
    assert_eq!(errors.len(), 1, "{}", analysed.stdout);
    assert_eq!(errors[0]["connect"]["addr"], dest);
    assert_eq!(errors[0]["anomalies"][0]["id"], "CONNECT-REFUSED-OTHER-ADDRESS");
}

/// A blocking connect that is refused reports the refusal itself: no `socket_error` besides.
/// A reset of an established connection, reported while the client sleeps (in the server's
/// context, where the current task is not the client), is one.
#[test]
fn socket_errors_of_blocking_connects_and_resets() {
    let refused = trace_client(
        &[],
        &[
            python().to_owned(),
            "-c".to_owned(),
            "import socket\ntry: socket.create_connection(('127.0.0.1', 9))\nexcept OSError: pass"
                .to_owned(),
        ],
    );
    assert!(
        refused.events().iter().any(|e| e["syscall"] == "connect" && e["errno"] == "ECONNREFUSED")
    );
    assert!(socket_errors(&refused).is_empty(), "{}", refused.stdout);

    // The server resets the connection it accepts (SO_LINGER 0), untraced.
    let server = "\
import socket, struct, sys
l = socket.socket()
l.bind(('127.0.0.1', 0))
l.listen()
print(l.getsockname()[1], flush=True)
c, _ = l.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
c.close()
";
    let mut server = std::process::Command::new(python())
        .args(["-c", server])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let client = format!(
        "import socket, time\ns = socket.create_connection(('127.0.0.1', {port}))\ntime.sleep(0.5)"
    );
    let out = trace_client(&[], &[python().to_owned(), "-c".to_owned(), client]);
    server.wait().unwrap();
    let errors = socket_errors(&out);
    assert_eq!(errors.len(), 1, "{}", out.stdout);
    assert_eq!(errors[0]["error"], "ECONNRESET");
    assert_eq!(errors[0]["sock"]["peer"]["port"], port);
    assert!(errors[0].get("connect").is_none(), "the connect succeeded: {}", errors[0]);
}

/// A non-blocking connect to `127.0.0.1:PORT`, poll() until the socket is writable, then the
/// outcome read with getsockopt(SO_ERROR) (`so_error`) or a second connect (`connect`); the
/// errno read is printed on stderr.
const READS_ITS_ERROR_CLIENT: &str = "\
import select, socket, sys
port = int(sys.argv[1])
s = socket.socket()
s.setblocking(False)
try:
    s.connect(('127.0.0.1', port))
except BlockingIOError:
    pass
p = select.poll()
p.register(s, select.POLLOUT)
p.poll(2000)
if sys.argv[2] == 'so_error':
    print(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), file=sys.stderr)
else:
    print(s.connect_ex(('127.0.0.1', port)), file=sys.stderr)
";

/// One refusal, two records: the kernel's report of it (`socket_error`) and the call that
/// reads it (getsockopt(SO_ERROR), a second connect). Both are shown; the finding is given
/// once, on the first of them in the stream, and counted once. When the socket error is not
/// traced (`-s getsockopt`), the call that reads the error carries the finding.
#[test]
fn one_finding_per_refused_non_blocking_connect() {
    let port = free_port();
    let detail =
        format!("nothing listens on port {port} in any network namespace wsltrace can see");
    for reader in ["so_error", "connect"] {
        let client = [python(), "-c", READS_ITS_ERROR_CLIENT, &port.to_string(), reader]
            .map(str::to_owned)
            .to_vec();
        let out = trace_client(&[], &client);
        assert!(out.status.success(), "{reader}: {}", out.stderr);
        assert!(out.stderr.lines().any(|l| l.trim() == "111"), "{reader}: {}", out.stderr);
        let records = out.records();
        let reported: Vec<usize> =
            (0..records.len()).filter(|&i| records[i]["type"] == "socket_error").collect();
        let read: Vec<usize> = (0..records.len())
            .filter(|&i| {
                let r = &records[i];
                r["type"] == "event"
                    && r["async_error"] == "ECONNREFUSED"
                    && r["syscall"] == if reader == "so_error" { "getsockopt" } else { "connect" }
            })
            .collect();
        assert_eq!((reported.len(), read.len()), (1, 1), "{reader}: {}", out.stdout);
        let (error, call) = (&records[reported[0]], &records[read[0]]);
        assert_eq!(error["error"], "ECONNREFUSED", "{reader}");
        assert_eq!(error["connect"], call["connect"], "{reader}: the same connect failed");
        if reader == "connect" {
            assert_eq!(call["errno"], "ECONNREFUSED", "{reader}");
        }
        let found = failure_findings(&out);
        assert_eq!(
            found.iter().map(|(_, id, d)| (id.as_str(), d.as_str())).collect::<Vec<_>>(),
            [("CONNECT-REFUSED", detail.as_str())],
            "{reader}: {}",
            out.stdout
        );
        let (first, second) = if reported[0] < read[0] { (error, call) } else { (call, error) };
        assert_eq!(first["anomalies"][0]["id"], "CONNECT-REFUSED", "{reader}: {first}");
        assert!(second.get("anomalies").is_none(), "{reader}: {second}");

        let counted = trace_client(&["-c"], &client);
        let report: Value = serde_json::from_str(&counted.stdout).expect("one JSON object");
        assert_eq!(report["socket_errors"], json!({"ECONNREFUSED": 1}), "{}", counted.stdout);
        let refused: Vec<&Value> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["id"] == "CONNECT-REFUSED")
            .collect();
        assert_eq!(refused.len(), 1, "{}", counted.stdout);
        assert_eq!(refused[0]["count"], 1, "{reader}: {}", counted.stdout);
    }

    let client = [python(), "-c", READS_ITS_ERROR_CLIENT, &port.to_string(), "so_error"]
        .map(str::to_owned)
        .to_vec();
    let reads_only = trace_client(&["-s", "getsockopt"], &client);
    assert!(socket_errors(&reads_only).is_empty(), "{}", reads_only.stdout);
    assert_eq!(
        findings(&reads_only),
        [("getsockopt".to_owned(), "CONNECT-REFUSED".to_owned(), detail)],
        "{}",
        reads_only.stdout
    );
}

/// Non-blocking connects refused one after another, each socket closed before the next is
/// made, on fds that take turns (a spare socket is kept open every other round): the kernel
/// mostly gives each new socket the address of the one just closed, under which the programs
/// keep who connected it. Every refusal is reported once, on its own fd and connect.
const REFUSED_IN_TURN_CLIENT: &str = "\
import select, socket, sys
port, rounds = int(sys.argv[1]), int(sys.argv[2])
spare = None
for i in range(rounds):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(('127.0.0.1', port))
    select.select([], [s], [], 2)
    print(s.fileno(), file=sys.stderr)
    s.close()
    if spare is None:
        spare = socket.socket()
    else:
        spare.close()
        spare = None
";

#[test]
fn each_refusal_on_a_reused_socket_is_reported_on_its_own_connect() {
    const ROUNDS: usize = 200;
    let port = free_port();
    let client = [python(), "-c", REFUSED_IN_TURN_CLIENT, &port.to_string(), &ROUNDS.to_string()]
        .map(str::to_owned)
        .to_vec();
    let out = trace_client(&[], &client);
    assert!(out.status.success(), "{}", out.stderr);
    let fds: Vec<i64> = out.stderr.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(fds.len(), ROUNDS, "{}", out.stderr);
    assert!(fds.windows(2).any(|w| w[0] != w[1]), "the fds take turns: {fds:?}");
    let records = out.records();
    let connects: Vec<&Value> =
        records.iter().filter(|r| r["type"] == "event" && r["syscall"] == "connect").collect();
    let errors: Vec<&Value> = records.iter().filter(|r| r["type"] == "socket_error").collect();
    assert_eq!((connects.len(), errors.len()), (ROUNDS, ROUNDS), "{}", out.stdout);
    for (i, ((connect, error), fd)) in connects.iter().zip(&errors).zip(&fds).enumerate() {
        assert_eq!(connect["errno"], "EINPROGRESS", "round {i}: {connect}");
        assert_eq!(connect["args"]["fd"], json!(fd), "round {i}: {connect}");
        assert_eq!(error["error"], "ECONNREFUSED", "round {i}: {error}");
        assert_eq!(error["fd"], json!(fd), "round {i}: {error}");
        assert_eq!(error["connect"]["started_ns"], connect["ts_ns"], "round {i}: {error}");
    }
}
