//! wsltrace and strace watch the same workload at the same time and must agree, thread by
//! thread, on every traced call and its result.

mod common;

use std::collections::BTreeMap;

use common::{demo_command, outcome, wsltrace};

const TRACED: &str = "socket,socketpair,bind,listen,connect,accept,accept4,getsockopt,setsockopt,getsockname,getpeername,shutdown,close";

/// `1234 connect(3<socket:[99]>, ...) = -1 ECONNREFUSED (...)` -> (1234, "connect=ECONNREFUSED").
/// close() lines count only for sockets: wsltrace traces socket closes only.
fn parse_strace_line(line: &str) -> Option<(u64, String)> {
    let (pid, call) = line.split_once(' ')?;
    let pid = pid.parse().ok()?;
    let call = call.trim_start();
    let (name, rest) = call.split_once('(')?;
    if !TRACED.split(',').any(|t| t == name) {
        return None;
    }
    if name == "close" && !rest.contains("<socket:[") {
        return None;
    }
    // strace pads the result into a column: split on the last " = ".
    let (_, result) = rest.rsplit_once(" = ")?;
    let mut words = result.split_whitespace();
    let ret = words.next()?;
    let value = match (ret, words.next()) {
        ("-1", Some(errno)) => errno.to_owned(),
        (ret, _) => ret.split('<').next()?.to_owned(),
    };
    Some((pid, format!("{name}={value}")))
}

#[test]
fn agrees_with_strace_call_for_call() {
    let dir = std::env::temp_dir().join(format!("wsltrace-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("strace.txt");
    let out = common::run(
        wsltrace()
            .args(["--format", "json", "--", "strace", "-f", "-qq", "-y"])
            .args(["-o", log.to_str().unwrap(), "-e", &format!("trace={TRACED}"), "--"])
            .args(demo_command(&["all"])),
    );
    assert!(out.status.success(), "{}", out.stderr);

    let mut by_strace: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        if let Some((tid, call)) = parse_strace_line(line) {
            by_strace.entry(tid).or_default().push(call);
        }
    }
    let mut by_wsltrace: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for ev in out.events() {
        let tid = ev["tid"].as_u64().unwrap();
        // strace itself runs under wsltrace too: compare the threads strace watched.
        if by_strace.contains_key(&tid) {
            by_wsltrace.entry(tid).or_default().push(outcome(&ev));
        }
    }
    assert!(!by_strace.is_empty(), "strace saw nothing");
    let calls: usize = by_strace.values().map(Vec::len).sum();
    assert!(calls > 60, "the workload makes every traced call ({calls} seen)");
    assert_eq!(by_wsltrace, by_strace);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn strace_lines_parse() {
    assert_eq!(
        parse_strace_line(
            "77 connect(3<socket:[5]>, {sa_family=AF_INET}, 16) = -1 ECONNREFUSED (Connection refused)"
        ),
        Some((77, "connect=ECONNREFUSED".into()))
    );
    assert_eq!(
        parse_strace_line("77 socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3<socket:[9]>"),
        Some((77, "socket=3".into()))
    );
    assert_eq!(parse_strace_line("77 close(3</etc/ld.so.cache>) = 0"), None);
    assert_eq!(parse_strace_line("77 close(3<socket:[9]>) = 0"), Some((77, "close=0".into())));
    assert_eq!(parse_strace_line("77 +++ exited with 0 +++"), None);
}
