//! The knowledge base against real reproductions: each rule that native Linux can produce fires
//! on a real failure, with the detail of the occurrence; a clean workload produces nothing.
//! WSL's localhost relay is in wsl_relay.rs, non-blocking clients in async_clients.rs, the
//! kernel's socket error reports in socket_errors.rs.

mod common;

use common::{
    WSLTRACE, Workload,
    findings::{findings, free_port, ids},
    run, run_cmd_json, traced, traced_in, wsltrace,
};
use serde_json::Value;

/// Runs the workload as nobody: no capabilities, no write access to root's directories.
const AS_NOBODY: &[&str] = &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

#[test]
fn privileged_port_without_the_capability() {
    let out =
        traced_in(&[], &["--format", "json"], AS_NOBODY, &["listen", "--addr", "127.0.0.1:81"]);
    let bind = out.events().into_iter().find(|e| e["syscall"] == "bind").expect("a bind");
    assert_eq!(bind["errno"], "EACCES", "{}", out.stdout);
    assert_eq!(bind["anomalies"][0]["id"], "BIND-EACCES-PRIVILEGED-PORT");
    assert_eq!(bind["anomalies"][0]["severity"], "error");
    assert!(bind["anomalies"][0]["fix"].as_str().unwrap().contains("setcap cap_net_bind_service"));
    assert_eq!(bind["anomalies"].as_array().unwrap().len(), 1, "one cause per failure (group)");
}

#[test]
fn unix_socket_in_an_unwritable_directory() {
    let dir = std::env::temp_dir().join(format!("wsltrace-kb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.sock");
    let out = traced_in(
        &[],
        &["--format", "json"],
        AS_NOBODY,
        &["listen", "--addr", path.to_str().unwrap()],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    let (syscall, id, detail) = &found[0];
    assert_eq!((syscall.as_str(), id.as_str()), ("bind", "BIND-EACCES-UNIX-DIRECTORY"));
    assert!(detail.contains("mode 0755") && detail.contains("uid 65534"), "{detail}");
}

#[test]
fn listener_in_a_private_network_namespace() {
    let out = traced_in(
        &[],
        &["--format", "json"],
        &["unshare", "-n"],
        &["listen", "--addr", "127.0.0.1:0"],
    );
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0.as_str(), found[0].1.as_str()), ("listen", "LISTENER-IN-PRIVATE-NETNS"));
    assert!(found[0].2.contains("the initial one is"), "{}", found[0].2);
}

#[test]
fn refused_connect_says_nothing_listens() {
    let port = free_port();
    let out = run_cmd_json(&[], &["connect", "--addr", &format!("127.0.0.1:{port}")]);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "CONNECT-REFUSED");
    assert_eq!(
        found[0].2,
        format!("nothing listens on port {port} in any network namespace wsltrace can see")
    );
}

/// The port listens on ::1 only; the client tries 127.0.0.1.
#[test]
fn refused_connect_names_the_listener_on_another_address() {
    let server = Workload::start(&["listen", "--addr", "[::1]:0"]);
    let port = server.port.unwrap();
    let out = run_cmd_json(&[], &["connect", "--addr", &format!("127.0.0.1:{port}")]);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "CONNECT-REFUSED-OTHER-ADDRESS");
    let expected = format!(
        "port {port} listens on [::1]:{port} (wsltrace[{}] fd 3) in this namespace, not on 127.0.0.1",
        server.pid
    );
    assert_eq!(found[0].2, expected);
}

/// The port listens in another network namespace only.
#[test]
fn refused_connect_names_the_listener_in_another_namespace() {
    let server = Workload::start_in(&["unshare", "-n"], &["listen", "--addr", "127.0.0.1:0"]);
    let port = server.port.unwrap();
    let out = run_cmd_json(&[], &["connect", "--addr", &format!("127.0.0.1:{port}")]);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "CONNECT-REFUSED-OTHER-NETNS");
    assert!(
        found[0].2.contains(&format!("127.0.0.1:{port} (wsltrace[{}] fd 3) in netns", server.pid)),
        "{}",
        found[0].2
    );
}

/// Another process holds the port: the finding names it.
#[test]
fn address_in_use_names_the_holder() {
    let holder = Workload::start(&["listen", "--addr", "127.0.0.1:0"]);
    let addr = format!("127.0.0.1:{}", holder.port.unwrap());
    let out = traced(&[], &["--format", "json"], &["listen", "--addr", &addr]);
    assert!(!out.status.success(), "the second listener cannot bind");
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "ADDRESS-IN-USE");
    assert_eq!(found[0].2, format!("held by {addr} LISTEN (wsltrace[{}] fd 3)", holder.pid));
}

/// Only a TIME_WAIT socket, which no process holds, is left on the port: a bind without
/// SO_REUSEADDR fails and the finding says so. The socket is found in the system's tables only
/// (the trace never saw it).
#[test]
fn address_in_use_by_a_time_wait_socket() {
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    // The side that closes first keeps the TIME_WAIT: the accepted one, on the listener's port.
    accepted.shutdown(Shutdown::Both).unwrap();
    drop((accepted, listener));
    let mut eof = [0_u8; 1];
    assert_eq!(std::io::Read::read(&mut &client, &mut eof).unwrap(), 0, "the server closed");
    drop(client);
    let out = traced(&[], &["--format", "json"], &["listen", "--addr", &addr.to_string()]);
    assert!(!out.status.success(), "the TIME_WAIT socket keeps the port: {}", out.stderr);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "ADDRESS-IN-USE");
    assert_eq!(
        found[0].2,
        format!(
            "held by {addr} in TIME_WAIT from an earlier connection (no process; SO_REUSEADDR lets a server rebind)"
        )
    );
}

#[test]
fn bind_to_an_address_the_namespace_does_not_have() {
    // 192.0.2.0/24 is TEST-NET-1: never configured.
    let out = traced(&[], &["--format", "json"], &["listen", "--addr", "192.0.2.1:0"]);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "BIND-ADDRESS-NOT-AVAILABLE");
    assert!(
        found[0].2.starts_with("this network namespace has ") && found[0].2.contains("127.0.0.1"),
        "{}",
        found[0].2
    );
}

#[test]
fn unix_connects_missing_and_stale() {
    let dir = std::env::temp_dir().join(format!("wsltrace-kb-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.sock");
    let out = run_cmd_json(&[], &["connect", "--addr", missing.to_str().unwrap()]);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "UNIX-CONNECT-NO-FILE");
    assert_eq!(
        found[0].2,
        format!("no file at {} in the caller's mount namespace", missing.display())
    );

    // A socket file left behind by a listener that is gone.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = run_cmd_json(&[], &["connect", "--addr", stale.to_str().unwrap()]);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "UNIX-CONNECT-STALE-SOCKET");
    assert!(
        found[0].2.ends_with("is a socket file but nothing listens on it: stale"),
        "{}",
        found[0].2
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// glibc probes for nscd on every user lookup: not worth a finding.
#[test]
fn the_nscd_probe_is_not_flagged() {
    let out = run_cmd_json(&[], &["connect", "--addr", "/var/run/nscd/socket"]);
    let connect = out.events().into_iter().find(|e| e["syscall"] == "connect").unwrap();
    assert_eq!(connect["errno"], "ENOENT", "nscd runs here?");
    assert!(findings(&out).is_empty());
}

#[test]
fn failing_local_dns_resolver() {
    if std::net::TcpStream::connect("127.0.0.53:53").is_ok() {
        panic!("a resolver listens on 127.0.0.53 on this machine: the test needs it absent");
    }
    let out = run_cmd_json(&[], &["connect", "--addr", "127.0.0.53:53"]);
    assert_eq!(ids(&out), ["DNS-STUB-UNREACHABLE"], "the DNS rule wins its group");
}

/// A plain echo server and client: nothing to flag, on Linux or assuming WSL2.
#[test]
fn a_clean_workload_has_no_findings() {
    for assume in [&[][..], &["--assume", "wsl2,nat"]] {
        let out = run_cmd_json(assume, &["echo"]);
        assert!(out.events().len() >= 8, "{}", out.stdout);
        assert!(findings(&out).is_empty(), "{assume:?}: {:?}", findings(&out));
        assert!(!out.stderr.contains("findings by rule"));
    }
}

/// The same finding on the same call site is printed once, then counted; JSON keeps all.
#[test]
fn repeated_findings_are_folded_in_text() {
    let addr = format!("127.0.0.1:{}", free_port());
    let json = run_cmd_json(&[], &["connect", "--addr", &addr, "--count", "25"]);
    assert_eq!(ids(&json).len(), 25);
    let text = traced(&[], &[], &["connect", "--addr", &addr, "--count", "25"]).stdout;
    assert_eq!(text.matches("CONNECT-REFUSED (info)").count(), 1, "{text}");
    assert_eq!(text.matches("fix: ").count(), 1);
    assert!(text.contains("CONNECT-REFUSED again: 2 times on this call site"), "{text}");
    assert!(text.contains("CONNECT-REFUSED again: 10 times on this call site"), "{text}");
    let out = traced(&[], &[], &["connect", "--addr", &addr, "--count", "25"]);
    assert!(
        out.stderr.contains("info     CONNECT-REFUSED     25x  Connection refused"),
        "{}",
        out.stderr
    );
}

/// --quiet: on the terminal, only the calls with findings.
#[test]
fn quiet_shows_only_findings() {
    let out = traced(&["--quiet"], &[], &["refused"]);
    let calls: Vec<&str> = out.stdout.lines().filter(|l| l.contains(") = ")).collect();
    assert_eq!(calls.len(), 1, "{}", out.stdout);
    assert!(calls[0].contains("connect(") && calls[0].contains("ECONNREFUSED"));
}

#[test]
fn rules_lists_and_checks() {
    let out = run(wsltrace().arg("rules"));
    assert!(out.status.success());
    assert!(
        out.stdout.lines().any(|l| l.starts_with("PEERCRED-UNAVAILABLE ") && l.contains("error"))
    );
    let json: Value =
        serde_json::from_str(&run(wsltrace().args(["rules", "--format", "json"])).stdout).unwrap();
    let rules = json.as_array().unwrap();
    assert!(rules.len() >= 10);
    assert!(rules.iter().all(|r| r["references"].as_array().is_some_and(|v| !v.is_empty())));
    // The provenance: each level is used, and `source` rules carry a permalink at a commit.
    for level in ["verified", "reported", "source"] {
        assert!(rules.iter().any(|r| r["confidence"] == level), "no {level} rule");
    }
    let source = rules.iter().find(|r| r["id"] == "WSL2-RELAY-IPV6-ONLY").unwrap();
    assert_eq!(source["confidence"], "source");
    assert!(source["references"].as_array().unwrap().iter().any(|r| {
        r.as_str().unwrap().starts_with(
            "https://github.com/microsoft/WSL/blob/3e27a6a50177ce4e32e72f7b957aef5db5768062/src/",
        )
    }));
    let text = run(wsltrace().arg("rules")).stdout;
    let line = text.lines().find(|l| l.starts_with("WSL2-RELAY-IPV6-ONLY ")).unwrap();
    assert!(line.contains("source"), "{line}");
    assert!(text.contains("see https://github.com/microsoft/WSL/blob/"), "{text}");

    let dir = std::env::temp_dir().join(format!("wsltrace-kb-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "schema = 1\n\n[[rule]]\nid = \"MINE\"\ntitle = \"t\"\nseverity = \"info\"\nplatforms = [\"any\"]\nconfidence = \"reported\"\nexplanation = \"e\"\nfix = \"f\"\nreferences = [\"x\"]\n[rule.when]\nerrno = [\"ECONNREFUSD\"]\n").unwrap();
    let out = run(wsltrace().args(["rules", "--check", bad.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr.trim(),
        format!(
            "{}:13: rule MINE: when.errno: unknown errno name 'ECONNREFUSD' (did you mean ECONNREFUSED?): use a name like ECONNREFUSED or a number",
            bad.display()
        )
    );
    // A malformed --rules file stops start-up before anything is traced.
    let out = traced(&["--rules", bad.to_str().unwrap()], &[], &["refused"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains(&format!("{}:13: rule MINE", bad.display())), "{}", out.stderr);
    assert!(out.stdout.is_empty());

    // A good user rule fires alongside the built-in ones.
    let good = dir.join("good.toml");
    std::fs::write(&good, "schema = 1\n[[rule]]\nid = \"MY-REFUSED\"\ntitle = \"mine\"\nseverity = \"warning\"\nplatforms = [\"any\"]\nconfidence = \"verified\"\nexplanation = \"e\"\nfix = \"f\"\nreferences = [\"x\"]\n[rule.when]\nsyscall = [\"connect\"]\nerrno = [\"ECONNREFUSED\"]\n").unwrap();
    let out = run(wsltrace().args(["rules", "--check", good.to_str().unwrap()]));
    assert_eq!(out.stdout.trim(), format!("{}: 1 rule OK", good.display()));
    let out = run_cmd_json(&["--rules", good.to_str().unwrap()], &["refused"]);
    assert_eq!(ids(&out), ["CONNECT-REFUSED", "MY-REFUSED"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A bind that a seccomp filter fails with EADDRINUSE: no socket is to blame. On a WSL2
/// mirrored machine that is Windows holding the port; elsewhere a seccomp profile, and
/// Windows is never mentioned.
#[test]
fn bind_refused_by_seccomp() {
    let addr = format!("127.0.0.1:{}", free_port());
    let demo = ["seccomp", "--addr", addr.as_str()];
    let file = std::env::temp_dir().join(format!("wsltrace-seccomp-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let recorded = ["--assume", "linux", "-o", file.to_str().unwrap()];
    let linux = traced(&recorded, &["--format", "json"], &demo);
    assert!(linux.status.success(), "{}", linux.stderr);
    assert_eq!(ids(&linux), ["SECCOMP-REFUSED", "SECCOMP-REFUSED"], "{}", linux.stdout);
    assert!(!linux.stdout.contains("Windows"), "{}", linux.stdout);
    // The recording reads back with the refusal.
    let analyzed =
        run(wsltrace().args(["analyze", "--format", "json", "--assume", "linux"]).arg(&file));
    std::fs::remove_file(&file).unwrap();
    assert!(analyzed.status.success(), "{}", analyzed.stderr);
    let binds: Vec<Value> =
        analyzed.events().into_iter().filter(|e| e["syscall"] == "bind").collect();
    assert_eq!(binds.len(), 2, "{}", analyzed.stdout);
    assert!(binds.iter().all(|b| b["refused_by"] == "seccomp" && b["duration_ns"].is_null()));
    assert_eq!(ids(&analyzed), ["SECCOMP-REFUSED", "SECCOMP-REFUSED"]);

    let mirrored = traced(&["--assume", "wsl2,mirrored"], &["--format", "json"], &demo);
    let windows = "WSL2-MIRRORED-PORT-HELD-BY-WINDOWS";
    assert_eq!(ids(&mirrored), [windows, windows], "{}", mirrored.stdout);
    let bind = mirrored.events().into_iter().find(|e| e["syscall"] == "bind").unwrap();
    let fix = bind["anomalies"][0]["fix"].as_str().unwrap();
    for advice in ["excludedportrange protocol=tcp", "ignoredPorts", "127.0.0.2"] {
        assert!(fix.contains(advice), "{advice} in {fix}");
    }
    // NAT mode has no such filter: a refusal there is some profile's.
    let nat = traced(&["--assume", "wsl2,nat"], &["--format", "json"], &demo);
    assert_eq!(ids(&nat), ["SECCOMP-REFUSED", "SECCOMP-REFUSED"], "{}", nat.stdout);
}

#[test]
fn wsltrace_binary_is_there() {
    assert!(std::path::Path::new(WSLTRACE).exists());
}
