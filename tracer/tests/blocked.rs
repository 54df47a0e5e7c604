//! Calls that hang, reported while they block (`--blocked-after`): a blocking connect and curl's
//! non-blocking one against a listener whose accept queue is full (the kernel drops their SYNs),
//! judged by the knowledge base, kept by recordings and `analyze`; nothing for calls shorter
//! than the delay or with the report turned off. Real kernel, real programs, run as root.

mod common;

use std::{
    path::PathBuf,
    sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use common::{Output, Tracer, Workload, run, wsltrace};
use serde_json::Value;

const QUEUE_FULL: &str = "CONNECT-BLOCKED-ACCEPT-QUEUE-FULL";

/// The tests that raise `pid_max` run alone: a process of another test given an id past the
/// slot array meanwhile would have its calls counted as lost (see the last test).
static PID_MAX: RwLock<()> = RwLock::new(());

fn pid_max_as_it_is() -> RwLockReadGuard<'static, ()> {
    PID_MAX.read().unwrap_or_else(PoisonError::into_inner)
}

fn pid_max_mine() -> RwLockWriteGuard<'static, ()> {
    PID_MAX.write().unwrap_or_else(PoisonError::into_inner)
}

fn blocked(out: &Output) -> Vec<Value> {
    out.records().into_iter().filter(|r| r["type"] == "blocked").collect()
}

fn finding_ids(record: &Value) -> Vec<&str> {
    let anomalies = record["anomalies"].as_array().map(Vec::as_slice).unwrap_or_default();
    anomalies.iter().filter_map(|f| f["id"].as_str()).collect()
}

/// A listener with a full accept queue, and a client (waiting for `go`) whose blocking
/// connect to it hangs. Both are killed when dropped.
fn full_queue_and_client() -> (Workload, Workload, u16) {
    let listener = Workload::start(&["full-queue"]);
    let port = listener.port.expect("the listener's port");
    let addr = format!("127.0.0.1:{port}");
    let client = Workload::start(&["--wait", "connect", "--addr", &addr]);
    (listener, client, port)
}

/// Traces the client's hanging connect for 3 s with `opts`.
fn trace_hanging_connect(opts: &[&str]) -> (Output, u32, u16) {
    let (_listener, mut client, port) = full_queue_and_client();
    let pid = client.pid.to_string();
    let mut args = vec!["--pid", &pid, "--format", "json", "--duration", "3"];
    args.extend_from_slice(opts);
    let tracer = Tracer::attach(&args);
    client.go();
    let out = tracer.finish();
    assert!(out.status.success(), "{}", out.stderr);
    (out, client.pid, port)
}

#[test]
fn a_blocking_connect_to_a_full_accept_queue_is_reported_while_it_blocks() {
    let _pid_max = pid_max_as_it_is();
    let (out, pid, port) = trace_hanging_connect(&[]);
    let records = blocked(&out);
    assert_eq!(records.len(), 1, "one record per call:\n{}", out.stdout);
    let b = &records[0];
    assert_eq!(
        (b["syscall"].as_str(), b["pid"].as_u64(), b["tid"].as_u64()),
        (Some("connect"), Some(u64::from(pid)), Some(u64::from(pid)))
    );
    // The address was read from the caller's memory while the call was in progress.
    assert_eq!(b["args"]["addr"]["ip"], "127.0.0.1");
    assert_eq!(b["args"]["addr"]["port"], port);
    assert_eq!(b["args"]["addrlen"], 16);
    assert!(b.get("nonblocking").is_none(), "a blocking call");
    assert!(b.get("ret").is_none() && b.get("errno").is_none(), "no result yet: {b}");
    // Reported within the 3 s traced, after the 2 s default.
    let blocked_ns = b["blocked_ns"].as_u64().expect("blocked_ns");
    assert!((2_000_000_000..3_000_000_000).contains(&blocked_ns), "{blocked_ns}");
    assert_eq!(finding_ids(b), [QUEUE_FULL]);
    let detail = b["anomalies"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("1 connection(s) waiting to be accepted, backlog 0"), "{detail}");
    // After the calls before it, so its fd is known.
    assert_eq!(b["sock"]["type"], "SOCK_STREAM", "{b}");
    let records = out.records();
    let at = |ty: &str, syscall: &str| {
        records.iter().position(|r| r["type"] == ty && r["syscall"] == syscall).expect(syscall)
    };
    assert!(at("event", "socket") < at("blocked", "connect"), "{}", out.stdout);
    // The call has not returned: no connect event.
    let events = out.events();
    assert!(!events.iter().any(|e| e["syscall"] == "connect"), "{}", out.stdout);
    assert!(out.stderr.contains("(1 blocked calls reported)"), "{}", out.stderr);
}

/// Waits until thread `pid` is inside connect(2) (x86_64 number 42), by its own /proc file.
fn wait_in_connect(pid: u32) {
    let file = format!("/proc/{pid}/syscall");
    for _ in 0..100 {
        if std::fs::read_to_string(&file).is_ok_and(|s| s.starts_with("42 ")) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("pid {pid} never blocked in connect: {:?}", std::fs::read_to_string(&file));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_connect_already_hanging_when_tracing_starts_is_reported_blocked() {
    let _pid_max = pid_max_as_it_is();
    let (_listener, mut client, port) = full_queue_and_client();
    client.go();
    wait_in_connect(client.pid);
    let pid = client.pid.to_string();
    let tracer = Tracer::attach(&["--pid", &pid, "--format", "json", "--duration", "3"]);
    let out = tracer.finish();
    assert!(out.status.success(), "{}", out.stderr);
    let records = blocked(&out);
    assert_eq!(records.len(), 1, "one record per call:\n{}", out.stdout);
    let b = &records[0];
    assert_eq!(b["syscall"], "connect");
    assert_eq!(b["in_flight_at_attach"], true, "{b}");
    // The arguments came from /proc, the address from the caller's memory.
    assert_eq!(
        (&b["args"]["addr"]["ip"], &b["args"]["addr"]["port"]),
        (&"127.0.0.1".into(), &port.into())
    );
    assert_eq!(b["args"]["addrlen"], 16);
    // Counted from the start of tracing: at least the 2 s default, within the 3 s traced.
    let blocked_ns = b["blocked_ns"].as_u64().expect("blocked_ns");
    assert!((2_000_000_000..3_000_000_000).contains(&blocked_ns), "{blocked_ns}");
    assert_eq!(finding_ids(b), [QUEUE_FULL]);
    // The fd table knew the socket from the snapshot at attach.
    assert_eq!(b["sock"]["type"], "SOCK_STREAM", "{b}");

    // The text says what the time means.
    let tracer = Tracer::attach(&["--pid", &pid, "--duration", "3"]);
    let out = tracer.finish();
    let line = out.stdout.lines().find(|l| l.contains("blocked for")).unwrap_or_default();
    assert!(
        line.contains(&format!("127.0.0.1:{port}}}, 16) ... blocked for at least 2.")),
        "{line}"
    );
    assert!(line.contains("s (in progress when tracing started)"), "{line}");
}

#[test]
fn curl_waiting_on_a_full_accept_queue_is_reported_as_a_nonblocking_connect() {
    let _pid_max = pid_max_as_it_is();
    let listener = Workload::start(&["full-queue"]);
    let url = format!("http://127.0.0.1:{}/", listener.port.expect("port"));
    // curl gives up after 3 s (exit 28), which ends the trace.
    let out =
        run(wsltrace().args(["--format", "json", "--", "curl", "-s", "--max-time", "3", &url]));
    assert_eq!(out.status.code(), Some(28), "curl's timeout:\n{}", out.stderr);
    let records = blocked(&out);
    assert_eq!(records.len(), 1, "{}", out.stdout);
    let b = &records[0];
    assert_eq!((b["syscall"].as_str(), b["nonblocking"].as_bool()), (Some("connect"), Some(true)));
    assert_eq!(b["comm"], "curl");
    assert_eq!(b["sock"]["state"], "SYN_SENT", "confirmed by the socket tables: {b}");
    assert_eq!(b["args"]["addrlen"], 16);
    assert!(b["blocked_ns"].as_u64().expect("blocked_ns") >= 2_000_000_000);
    assert_eq!(finding_ids(b), [QUEUE_FULL]);
    // The connect that started it came first, with its EINPROGRESS and the same start.
    let connect = out
        .events()
        .into_iter()
        .find(|e| e["syscall"] == "connect" && e["errno"] == "EINPROGRESS")
        .expect("curl's connect");
    assert_eq!((&connect["ts_ns"], &connect["tid"]), (&b["ts_ns"], &b["tid"]));
}

#[test]
fn calls_shorter_than_the_delay_or_with_the_report_off_give_none() {
    let _pid_max = pid_max_as_it_is();
    for opts in [&["--blocked-after", "4"][..], &["--blocked-after", "0"]] {
        let (out, ..) = trace_hanging_connect(opts);
        assert!(blocked(&out).is_empty(), "{opts:?}:\n{}", out.stdout);
        assert!(!out.stderr.contains("blocked calls"), "{}", out.stderr);
    }
    let bad = run(wsltrace().args(["--blocked-after", "soon", "--pid", "1"]));
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("'soon' is not a number of seconds"), "{}", bad.stderr);
}

#[test]
fn blocked_records_are_recorded_counted_and_analyzed() {
    let _pid_max = pid_max_as_it_is();
    let dir = std::env::temp_dir().join(format!("wsltrace-blocked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file: PathBuf = dir.join("hang.jsonl");
    let path = file.to_str().expect("utf-8 path");
    let (out, pid, _) = trace_hanging_connect(&["-o", path]);
    assert_eq!(blocked(&out).len(), 1, "{}", out.stdout);

    let text = std::fs::read_to_string(&file).expect("the recording");
    let recorded = common::parse_records(&text);
    let footer = recorded.iter().find(|r| r["type"] == "footer").expect("footer");
    assert_eq!(footer["blocked"], 1);

    let analyzed = run(wsltrace().args(["analyze", "--format", "json", path]));
    assert!(analyzed.status.success(), "{}", analyzed.stderr);
    let records = blocked(&analyzed);
    assert_eq!(records.len(), 1, "{}", analyzed.stdout);
    assert_eq!(records[0]["pid"], pid);
    assert_eq!(finding_ids(&records[0]), [QUEUE_FULL], "the finding made live is kept");

    // -c counts them per syscall; -e selects by errno, which a blocked call does not have yet.
    let summary = run(wsltrace().args(["analyze", "-c", "--format", "json", path]));
    let report: Value = serde_json::from_str(summary.stdout.trim()).expect("one JSON object");
    assert_eq!(report["blocked"]["connect"], 1, "{report}");
    let by_errno = run(wsltrace().args(["analyze", "--format", "json", "-e", "ETIMEDOUT", path]));
    assert!(blocked(&by_errno).is_empty(), "{}", by_errno.stdout);
    let failed = run(wsltrace().args(["analyze", "--format", "json", "--failed", path]));
    assert_eq!(blocked(&failed).len(), 1, "--failed keeps calls that hang");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Raises `pid_max` to `at_least` and moves the next pid past `next` (root, the initial pid
/// namespace); puts `pid_max` back when dropped.
struct PidsFrom {
    pid_max: String,
}

impl PidsFrom {
    const PID_MAX: &str = "/proc/sys/kernel/pid_max";

    fn new(at_least: u32, next: u32) -> PidsFrom {
        let pid_max = std::fs::read_to_string(Self::PID_MAX).expect("pid_max");
        if pid_max.trim().parse::<u32>().expect("a number") < at_least {
            std::fs::write(Self::PID_MAX, at_least.to_string()).expect("raising pid_max");
        }
        std::fs::write("/proc/sys/kernel/ns_last_pid", next.to_string()).expect("ns_last_pid");
        PidsFrom { pid_max }
    }
}

impl Drop for PidsFrom {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PID_MAX, self.pid_max.trim());
    }
}

/// Where `pid_max` is past 32,768 at start, the slots are a pool and a thread's id says which
/// one is its own: a thread with a large id still has its calls pair entry and exit, and its
/// hanging call is still found.
#[test]
fn a_thread_with_an_id_past_the_slot_array_is_traced_the_same() {
    let _alone = pid_max_mine();
    let ((out, port), pid) = past_32768(|| {
        let _pids = PidsFrom::new(1 << 17, 100_000);
        let (out, pid, port) = trace_hanging_connect(&[]);
        ((out, port), u64::from(pid))
    });
    let events = out.events();
    let socket = events.iter().find(|e| e["syscall"] == "socket").expect("the socket call");
    assert_eq!(socket["pid"], pid, "{socket}");
    assert!(socket["duration_ns"].as_u64().is_some(), "entry and exit paired: {socket}");
    let records = blocked(&out);
    assert_eq!(records.len(), 1, "{}", out.stdout);
    assert_eq!(records[0]["pid"], pid);
    assert_eq!(records[0]["args"]["addr"]["port"], port);
}

/// Runs `traced` (which asks for pids past 100,000 with [`PidsFrom`] and returns what it got
/// and its client's pid) until the client's pid is past 32,768, three times at most: another
/// process on the machine can take the ids asked for between the request and the client's
/// fork (seen once in a whole run of the suite).
fn past_32768<T>(mut traced: impl FnMut() -> (T, u64)) -> (T, u64) {
    let mut pids = Vec::new();
    for _ in 0..3 {
        let (got, pid) = traced();
        if pid > 32_768 {
            return (got, pid);
        }
        eprintln!("the client got pid {pid}, not one past 32,768: once more");
        pids.push(pid);
    }
    panic!("the clients got pids {pids:?}: other processes took the ids asked for each time");
}

/// The pid the client wrote on stderr (`client PID`), of a successful trace.
fn client_pid(out: &Output) -> u64 {
    assert!(out.status.success(), "{}", out.stderr);
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("client ")?.parse().ok())
        .expect("the client's pid")
}

/// The pool holds 32,767 slots; a thread that exits gives its slot back. More threads than
/// that, one after the other, each making a socket call, all have their calls seen whole,
/// none counted as lost.
#[test]
fn more_threads_than_the_pool_holds_reuse_the_slots_of_exited_ones() {
    const THREADS: u32 = 40_000;
    let _alone = pid_max_mine();
    let client = format!(
        "import os, socket, sys, threading\n\
         sys.stderr.write(f'client {{os.getpid()}}\\n')\n\
         for _ in range({THREADS}):\n    \
             t = threading.Thread(target=lambda: socket.socket().close()); t.start(); t.join()"
    );
    let (out, client) = past_32768(|| {
        let _pids = PidsFrom::new(1 << 18, 100_000);
        let out = common::trace(&[
            "-s",
            "socket",
            "--format",
            "json",
            "--",
            common::python(),
            "-c",
            &client,
        ]);
        let pid = client_pid(&out);
        (out, pid)
    });
    let sockets: Vec<_> = out
        .events()
        .into_iter()
        .filter(|e| e["pid"] == client && e["syscall"] == "socket")
        .collect();
    let paired = sockets.iter().filter(|e| e["duration_ns"].as_u64().is_some()).count();
    assert_eq!(sockets.len(), THREADS as usize, "one socket call per thread");
    assert_eq!(paired, sockets.len(), "every call's entry and exit paired");
    let (_, lost) = out.summary();
    assert_eq!(lost, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("beyond the"), "{}", out.stderr);
}

/// Where `pid_max` fits the slot array at start, the programs keep no hash of slots (see
/// `GLOBAL_SLOTS_COVER_ALL`). Raised during the trace, it lets a thread get an id past the
/// array, with no slot: its calls are counted as lost, and said why, never shown as calls
/// refused before their entry.
#[test]
fn pid_max_raised_during_a_trace_makes_calls_counted_as_lost() {
    let _alone = pid_max_mine();
    let pid_max: u32 = std::fs::read_to_string(PidsFrom::PID_MAX)
        .expect("pid_max")
        .trim()
        .parse()
        .expect("a number");
    if pid_max > 32_768 {
        eprintln!("skipped: pid_max is {pid_max}, past the slot array already at start");
        return;
    }
    // The shell is forked before the raise; python after it, by the shell (`; true` keeps the
    // shell from exec'ing it).
    let client = format!(
        "import os, socket, sys; sys.stderr.write(f'client {{os.getpid()}}\\n'); socket.socket().connect_ex(('127.0.0.1', {port}))",
        port = common::findings::free_port()
    );
    let script = format!("sleep 1; {} -c \"{client}\"; true", common::python());
    let (out, client) = past_32768(|| {
        let tracer = Tracer::attach(&["-f", "--format", "json", "--", "sh", "-c", &script]);
        let out = {
            let _pids = PidsFrom::new(1 << 17, 100_000);
            tracer.finish()
        };
        let pid = client_pid(&out);
        (out, pid)
    });
    let shown: Vec<_> = out.events().into_iter().filter(|e| e["pid"] == client).collect();
    let calls: Vec<_> = shown.iter().filter(|e| e["syscall"] != "close").collect();
    assert!(calls.is_empty(), "calls of a thread without a slot shown: {calls:?}");
    let (_, lost) = out.stderr.lines().find_map(common::parse_summary).expect("the summary line");
    assert!(lost >= 2, "socket and connect counted as lost, {lost} in all:\n{}", out.stderr);
    assert!(out.stderr.contains("pid_max was raised to"), "{}", out.stderr);
}
