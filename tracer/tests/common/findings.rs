//! What wsltrace judged: the findings of a JSON trace, and the runs the knowledge tests share.

use serde_json::Value;

use super::{Output, run, wsltrace};

/// The findings on the events of a JSON trace: (syscall, rule id, detail).
pub fn findings(out: &Output) -> Vec<(String, String, String)> {
    out.events()
        .iter()
        .flat_map(|ev| {
            ev["anomalies"].as_array().cloned().unwrap_or_default().into_iter().map(move |f| {
                (
                    ev["syscall"].as_str().unwrap_or_default().to_owned(),
                    f["id"].as_str().unwrap_or_default().to_owned(),
                    f["detail"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect()
}

pub fn ids(out: &Output) -> Vec<String> {
    findings(out).into_iter().map(|(_, id, _)| id).collect()
}
/// `wsltrace OPTS --format json -- CLIENT...`.
pub fn trace_client(opts: &[&str], client: &[String]) -> Output {
    run(wsltrace().args(opts).args(["--format", "json", "--"]).args(client))
}

/// The findings on the events and the socket errors of a JSON trace, in stream order:
/// (syscall or `socket_error`, rule id, detail).
pub fn failure_findings(out: &Output) -> Vec<(String, String, String)> {
    findings_with_errno(out).into_iter().map(|(what, _, id, detail)| (what, id, detail)).collect()
}

/// (syscall or `socket_error`, errno or async error, rule id, detail) of every finding on the
/// events and socket errors of a JSON trace, in stream order.
pub fn findings_with_errno(out: &Output) -> Vec<(String, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut found = Vec::new();
    for record in out.records() {
        let what = match record["type"].as_str() {
            Some("event") => text(&record["syscall"]),
            Some("socket_error") => "socket_error".to_owned(),
            _ => continue,
        };
        // A call's errno; a non-blocking connect's outcome read later (SO_ERROR); a socket error.
        let errno = ["errno", "async_error", "error"]
            .iter()
            .map(|key| text(&record[*key]))
            .find(|e| !e.is_empty())
            .unwrap_or_default();
        for f in record["anomalies"].as_array().into_iter().flatten() {
            found.push((what.clone(), errno.clone(), text(&f["id"]), text(&f["detail"])));
        }
    }
    found
}

/// A TCP port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
