//! `wsltrace probe` on this machine, which is native Linux: every probe runs for real, none
//! may report a WSL quirk present, as root and as an unprivileged user.

mod common;

use common::{WSLTRACE, run, wsltrace};
use serde_json::Value;

const AS_NOBODY: &[&str] = &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

fn probe_json(wrapper: &[&str]) -> Value {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(rest).arg(WSLTRACE);
            cmd
        }
        None => wsltrace(),
    };
    let out = run(cmd.args(["probe", "--format", "json", "--timeout", "1"]));
    assert!(out.status.success(), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn check_report(report: &Value, uid: u64) {
    let object = report.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["environment", "probes"]);
    let probes = report["probes"].as_array().unwrap();
    assert!(probes.len() >= 8, "{} probes", probes.len());
    for p in probes {
        let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["detail", "id", "platforms", "rule", "status"], "{p}");
        assert!(p["rule"].is_string() || p["rule"].is_null(), "{p}");
        assert!(!p["platforms"].as_array().unwrap().is_empty(), "{p}");
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{p}");
        let status = p["status"].as_str().unwrap();
        assert!(["absent", "skipped"].contains(&status), "not WSL, yet present: {p}");
    }
    let env = &report["environment"];
    assert_eq!(env["wsl"], "none");
    assert_eq!(env["uid"], uid);
    assert!(env["kernel"].as_str().unwrap().starts_with(char::is_numeric), "{env}");
    assert_eq!(env["timeout_ms"], 1000);
}

fn status<'a>(report: &'a Value, id: &str) -> (&'a str, &'a str) {
    let probe = report["probes"].as_array().unwrap().iter().find(|p| p["id"] == id);
    let probe = probe.unwrap_or_else(|| panic!("no probe {id}"));
    (probe["status"].as_str().unwrap(), probe["detail"].as_str().unwrap())
}

/// The behaviours Linux defines are measured, not assumed: these probes must come back
/// `absent` with what the kernel answered.
fn check_linux_answers(report: &Value) {
    let (s, detail) = status(report, "peercred-socketpair");
    assert_eq!(s, "absent", "{detail}");
    assert!(detail.contains("gave pid "), "{detail}");
    let (s, detail) = status(report, "connect-closed-loopback-errno");
    assert_eq!(s, "absent");
    assert!(detail.contains("failed with ECONNREFUSED"), "{detail}");
    assert_eq!(status(report, "connect-closed-loopback-hang").0, "absent");
    let (s, detail) = status(report, "bind-loopback-pair");
    assert_eq!(s, "absent");
    assert!(detail.ends_with("both bound"), "{detail}");
    let (s, detail) = status(report, "seccomp-listener-taken");
    assert_eq!(s, "absent", "{detail}");
    assert!(detail.contains("succeeded"), "{detail}");
    assert_eq!(status(report, "ipv6-loopback").0, "absent");
    assert_eq!(status(report, "unix-bind-drvfs"), ("skipped", "no /mnt/c here"));
}

#[test]
fn probe_as_root_finds_no_wsl_quirk() {
    let report = probe_json(&[]);
    check_report(&report, 0);
    check_linux_answers(&report);
}

#[test]
fn probe_runs_unprivileged() {
    let report = probe_json(AS_NOBODY);
    check_report(&report, 65534);
    check_linux_answers(&report);
}

/// Under a seccomp filter that has a user-notification listener (what WSL's init gives every
/// process in mirrored mode; `wsltrace demo supervised` installs one, then probes), the
/// listener probe sees it: the probe is not blind. Off WSL it says so and stays `skipped`.
#[test]
fn the_listener_probe_sees_a_supervisor() {
    let out = run(wsltrace().args(["demo", "--untraced", "supervised"]));
    assert!(out.status.success(), "{}", out.stderr);
    let line = out.stdout.lines().find(|l| l.contains("seccomp-listener-taken")).unwrap();
    assert!(line.starts_with("skipped"), "{}", out.stdout);
    assert!(out.stdout.contains("failed with EBUSY"), "{}", out.stdout);
    assert!(out.stdout.contains("(Seccomp: 2;"), "{}", out.stdout);
    assert!(!out.stdout.lines().any(|l| l.starts_with("present")), "{}", out.stdout);
}

#[test]
fn text_output_is_readable() {
    let out = run(wsltrace().args(["probe", "--timeout", "1"]));
    assert!(out.status.success(), "{}", out.stderr);
    let first = out.stdout.lines().next().unwrap();
    assert!(first.starts_with("wsltrace probe: 11 probes, kernel "), "{first}");
    assert!(first.contains("(not WSL)"), "{first}");
    for id in ["peercred-socketpair", "seccomp-listener-taken", "dns-nameserver-answer"] {
        let line = out.stdout.lines().find(|l| l.contains(id)).unwrap();
        assert!(line.starts_with("absent ") || line.starts_with("skipped "), "{line}");
    }
    assert!(out.stdout.contains("0 present, "), "{}", out.stdout);
    assert!(out.stdout.contains("wsltrace probe --format json"));
    assert!(
        run(wsltrace().args(["probe", "--timeout", "0"])).stderr.contains("between 0.1 and 30")
    );
}
