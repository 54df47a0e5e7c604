//! `--metrics ADDR`: the metrics of a real trace, checked by Debian's promtool and scraped by a
//! real Prometheus server, with values that match the events wsltrace printed.

mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use common::{parse_records, python, wsltrace};
use serde_json::Value;

/// Five refused connects to a port nobody listens on (just freed), then waits for a line on
/// stdin: the metrics are read while it waits.
const WORKLOAD: &str = r#"
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
for _ in range(5):
    c = socket.socket()
    try:
        c.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        pass
    c.close()
sys.stderr.write("done\n"); sys.stderr.flush()
sys.stdin.readline()
"#;

/// `wsltrace --metrics 127.0.0.1:0 --format json -- python WORKLOAD`, once the workload has
/// made its calls.
struct Traced {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Where wsltrace serves its metrics (it said so on stderr).
    addr: String,
    stderr: String,
}

impl Traced {
    fn start() -> Traced {
        Traced::start_with(&[], WORKLOAD, &[])
    }

    /// `wsltrace --metrics 127.0.0.1:0 --format json OPTIONS -- python -c CODE ARGS`: CODE
    /// says "done" on stderr, then waits for a line on stdin.
    fn start_with(options: &[&str], code: &str, args: &[&str]) -> Traced {
        let mut child = wsltrace()
            .args(["--metrics", "127.0.0.1:0", "--format", "json"])
            .args(options)
            .args(["--", python(), "-c", code])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wsltrace");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
        let mut stderr = String::new();
        let mut addr = None;
        loop {
            let mut line = String::new();
            assert!(lines.read_line(&mut line).expect("read") > 0, "wsltrace ended:\n{stderr}");
            stderr.push_str(&line);
            if let Some(url) = line.strip_prefix("wsltrace: serving metrics on http://") {
                addr = url.trim_end().strip_suffix("/metrics").map(str::to_owned);
            }
            if line == "done\n" {
                break;
            }
        }
        child.stderr = Some(lines.into_inner());
        let addr = addr.unwrap_or_else(|| panic!("no metrics address in:\n{stderr}"));
        Traced { child, stdin, addr, stderr }
    }

    /// Lets the workload end; returns the JSON records wsltrace printed and its stderr.
    fn finish(mut self) -> (Vec<Value>, String) {
        let mut stdin = self.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("write");
        drop(stdin);
        let mut stdout = String::new();
        self.child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read");
        let mut stderr = std::mem::take(&mut self.stderr);
        self.child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "{status}:\n{stderr}");
        (parse_records(&stdout), stderr)
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.1: (status line, content type, body).
fn get(addr: &str, path: &str, accept: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Reads the metrics until `series` reaches `want` (the reader drains every 10 ms).
fn metrics_when(addr: &str, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = get(addr, "/metrics", "*/*");
        assert_eq!(status, "HTTP/1.1 200 OK");
        if sample(&body, series) == Some(want) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const REFUSED: &str = r#"wsltrace_errors_total{syscall="connect",errno="ECONNREFUSED"}"#;

#[test]
fn promtool_accepts_the_metrics_and_they_match_the_events() {
    let traced = Traced::start();
    let text = metrics_when(&traced.addr, REFUSED, 5.0);
    let (_, openmetrics_type, openmetrics) =
        get(&traced.addr, "/metrics", "application/openmetrics-text;version=1.0.0");
    let (not_found, _, _) = get(&traced.addr, "/", "*/*");
    let (records, stderr) = traced.finish();

    // Debian's promtool: the format, and its lint rules (names, units, help texts).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (cargo xtask setup installs Debian's prometheus package)");
    promtool.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let checked = promtool.wait_with_output().expect("promtool");
    let said = String::from_utf8_lossy(&checked.stdout).into_owned()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success() && said.trim().is_empty(), "promtool: {said}\n{text}");

    // The values are what wsltrace printed.
    let events: Vec<&Value> = records.iter().filter(|r| r["type"] == "event").collect();
    let count = |syscall: &str, errno: Option<&str>| {
        events
            .iter()
            .filter(|e| e["syscall"] == syscall && errno.is_none_or(|n| e["errno"] == n))
            .count() as f64
    };
    assert_eq!(count("connect", Some("ECONNREFUSED")), 5.0, "{stderr}");
    assert_eq!(sample(&text, REFUSED), Some(5.0), "{text}");
    for syscall in ["socket", "bind", "connect", "close"] {
        let series = format!(r#"wsltrace_events_total{{syscall="{syscall}"}}"#);
        assert_eq!(sample(&text, &series), Some(count(syscall, None)), "{syscall}: {text}");
    }
    // Latency: the five connects' durations, in seconds.
    let connect_ns: u64 = events
        .iter()
        .filter(|e| e["syscall"] == "connect")
        .filter_map(|e| e["duration_ns"].as_u64())
        .sum();
    let series = r#"wsltrace_syscall_duration_seconds_count{syscall="connect"}"#;
    assert_eq!(sample(&text, series), Some(5.0));
    let sum = sample(&text, r#"wsltrace_syscall_duration_seconds_sum{syscall="connect"}"#);
    let sum = sum.expect("a latency sum");
    assert!((sum - connect_ns as f64 / 1e9).abs() < 1e-9, "{sum} s, events say {connect_ns} ns");
    // Findings by rule, as on the events.
    let mut findings = std::collections::BTreeMap::<(String, String), f64>::new();
    for finding in events.iter().filter_map(|e| e["anomalies"].as_array()).flatten() {
        let key = (
            finding["id"].as_str().unwrap_or_default().to_owned(),
            finding["severity"].as_str().unwrap_or_default().to_owned(),
        );
        *findings.entry(key).or_default() += 1.0;
    }
    assert!(!findings.is_empty(), "refused connects have findings: {stderr}");
    for ((rule, severity), n) in &findings {
        let series = format!(r#"wsltrace_findings_total{{rule="{rule}",severity="{severity}"}}"#);
        assert_eq!(sample(&text, &series), Some(*n), "{series}: {text}");
    }
    assert_eq!(sample(&text, "wsltrace_lost_events_total"), Some(0.0));
    assert_eq!(sample(&text, "wsltrace_blocked_calls"), Some(0.0));
    // Bounded labels: no pid, port or path of the trace appears in the text.
    let pid = events[0]["pid"].to_string();
    assert!(!text.contains(&format!("\"{pid}\"")), "{text}");
    assert!(!text.contains("127.0.0.1"), "{text}");

    // A scraper asking for OpenMetrics gets it.
    assert!(openmetrics_type.starts_with("application/openmetrics-text"), "{openmetrics_type}");
    assert!(openmetrics.ends_with("# EOF\n"));
    assert_eq!(sample(&openmetrics, REFUSED), Some(5.0));
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
}

/// A port nobody uses now, for the Prometheus server (released just before it binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// A Prometheus server on loopback with its own configuration and storage, stopped (and its
/// directory removed) when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("wsltrace-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: wsltrace\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("log"))
            .spawn()
            .expect("prometheus (cargo xtask setup installs Debian's prometheus package)");
        Prometheus { child, dir, addr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `/api/v1/query?query=QUERY` until it returns a sample (Prometheus starts, then
    /// scrapes every second).
    fn query(&self, query: &str) -> Value {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(&self.addr).is_ok() {
                let (_, _, body) =
                    get(&self.addr, &format!("/api/v1/query?query={encoded}"), "*/*");
                let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if let Some(first) = answer["data"]["result"].get(0) {
                    return first.clone();
                }
            }
            assert!(Instant::now() < deadline, "no {query} in Prometheus:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_prometheus_server_scrapes_wsltrace() {
    let traced = Traced::start();
    // What wsltrace saw, before Prometheus is asked.
    let text = metrics_when(&traced.addr, REFUSED, 5.0);
    let prometheus = Prometheus::start(&traced.addr);
    let series = prometheus.query(REFUSED);
    let (records, _) = traced.finish();
    drop(prometheus);

    assert_eq!(series["metric"]["job"], "wsltrace", "{series}");
    assert_eq!(series["metric"]["syscall"], "connect");
    assert_eq!(series["metric"]["errno"], "ECONNREFUSED");
    let refused =
        records.iter().filter(|r| r["type"] == "event" && r["errno"] == "ECONNREFUSED").count();
    assert_eq!(refused, 5);
    // `value` is [time, "5"].
    assert_eq!(series["value"][1], refused.to_string(), "{series}");
    assert_eq!(sample(&text, REFUSED), Some(refused as f64));
}

/// A connect that hangs (a listener whose accept queue is full drops the SYN), in a thread;
/// the main thread waits for a line on stdin, then exits.
const HANGING_CONNECT: &str = r#"
import socket, sys, threading
def hang():
    socket.socket().connect(("127.0.0.1", int(sys.argv[1])))
threading.Thread(target=hang, daemon=True).start()
sys.stderr.write("done\n"); sys.stderr.flush()
sys.stdin.readline()
"#;

#[test]
fn a_hanging_connect_is_a_blocked_call_while_it_hangs() {
    let listener = common::Workload::start(&["full-queue"]);
    let port = listener.port.expect("a port").to_string();
    let traced = Traced::start_with(&["--blocked-after", "0.3"], HANGING_CONNECT, &[&port]);
    let text = metrics_when(&traced.addr, "wsltrace_blocked_calls", 1.0);
    let (records, stderr) = traced.finish();
    drop(listener);

    let blocked: Vec<&Value> = records.iter().filter(|r| r["type"] == "blocked").collect();
    assert_eq!(blocked.len(), 1, "{stderr}");
    assert_eq!(blocked[0]["syscall"], "connect");
    assert_eq!(sample(&text, "wsltrace_blocked_calls"), Some(1.0), "{text}");
    // Still in progress: no event for it, so no latency either.
    assert_eq!(sample(&text, r#"wsltrace_events_total{syscall="connect"}"#), Some(0.0));
}

#[test]
fn bad_addresses_are_refused_before_tracing() {
    let out = common::trace(&["--metrics", "localhost", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--metrics") && out.stderr.contains("IP:PORT"), "{}", out.stderr);

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = common::trace(&["--metrics", &addr, "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "wsltrace: error: --metrics {addr}: cannot listen there: Address already in use (os error 98)\n"
        )
    );
}
