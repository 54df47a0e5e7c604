//! The WSL2 rules of issue 12's second half against the running kernel. This machine is native
//! Linux: `--assume wsl2,MODE` makes wsltrace judge as on WSL2, while the calls, their errnos,
//! the sockets and the environments are real. Where WSL2's situation needs a network set-up
//! this machine lacks, a network namespace reproduces it (said at each test): a narrowed
//! ip_local_port_range (mirrored mode's window), no IPv6 route (NAT mode), a socket on
//! 10.255.255.254:53 set up as WSL's DNS tunnel sets up its own.

mod common;

use common::{
    Output, WSLTRACE, Workload, findings::findings_with_errno as findings, python, run, traced_in,
    wsltrace,
};
use serde_json::Value;

fn ids(out: &Output) -> Vec<String> {
    let mut ids: Vec<String> = findings(out).into_iter().map(|f| f.2).collect();
    ids.dedup();
    ids
}

fn json(opts: &[&str], wrapper: &[&str], demo: &[&str]) -> Output {
    traced_in(opts, &["--format", "json"], wrapper, demo)
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A shell in a new network namespace with lo up, running `setup` and then the command after it.
fn netns_with(setup: &str) -> Vec<String> {
    let script = format!("ip link set lo up && {setup} exec \"$0\" \"$@\"");
    ["unshare", "-n", "sh", "-c"].into_iter().map(str::to_owned).chain([script]).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A real HTTP client (curl) told to use a proxy on 127.0.0.1 where nothing listens, as a
/// localhost proxy variable that WSL's NAT mode does not carry over leaves it. curl exits at
/// once: its environment is known from the command wsltrace started.
#[test]
fn refused_localhost_proxy_on_wsl2_nat() {
    let port = free_port();
    let proxy = format!("http://127.0.0.1:{port}");
    let curl = |assume: &str| {
        run(wsltrace()
            .env("http_proxy", &proxy)
            .args(["--assume", assume, "--format", "json", "--", "curl", "-s", "-m", "5"])
            .arg("http://wsltrace.invalid/"))
    };
    let out = curl("wsl2,nat");
    let found = findings(&out);
    assert!(!found.is_empty(), "{}", out.stderr);
    for (_, errno, id, detail) in &found {
        assert_eq!((errno.as_str(), id.as_str()), ("ECONNREFUSED", "WSL2-NAT-LOCALHOST-PROXY"));
        assert_eq!(detail, &format!("http_proxy={proxy} in the process's environment"));
    }
    // On Linux, or in mirrored mode (127.0.0.1 is Windows' too there), a plain refusal.
    for assume in ["linux", "wsl2,mirrored"] {
        assert_eq!(ids(&curl(assume)), ["CONNECT-REFUSED"], "{assume}");
    }
}

/// A long-lived client (Python's urllib, which reads HTTPS_PROXY and connects without
/// blocking): its own /proc/PID/environ names the proxy. The same refused connect without
/// a proxy variable is an ordinary refusal.
#[test]
fn proxy_read_from_the_process_environment() {
    // Two distinct free ports: both bound at once, then released.
    let held = [(); 2].map(|()| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let [port, other] = held.each_ref().map(|l| l.local_addr().unwrap().port());
    drop(held);
    let script = format!(
        "import urllib.request, time\ntry:\n    urllib.request.urlopen('https://wsltrace.invalid/', timeout=5)\nexcept Exception as e:\n    print(e)\ntime.sleep(0.5)\nimport socket\ntry:\n    socket.create_connection(('127.0.0.1', {other}))\nexcept OSError:\n    pass\n"
    );
    let proxy = format!("http://user:secret@localhost:{port}/");
    let out = run(wsltrace()
        .env_remove("https_proxy")
        .args(["--assume", "wsl2,nat", "--format", "json", "--", "env"])
        .arg(format!("HTTPS_PROXY={proxy}"))
        .args([python(), "-c", &script]));
    assert!(out.status.success(), "{}", out.stderr);
    let found = findings(&out);
    let proxied: Vec<_> = found.iter().filter(|f| f.2 == "WSL2-NAT-LOCALHOST-PROXY").collect();
    assert!(!proxied.is_empty(), "{found:?}");
    assert!(
        proxied.iter().all(|f| f.3 == format!("HTTPS_PROXY={proxy} in the process's environment"))
    );
    // A direct (blocking) connect to another port is an ordinary refusal.
    let direct = found.iter().filter(|f| f.0 == "connect" && f.1 == "ECONNREFUSED");
    assert!(direct.clone().all(|f| f.2 == "CONNECT-REFUSED"), "{found:?}");
    assert_eq!(direct.count(), 1, "{found:?}");
}

/// WSL's DNS tunnel holds 10.255.255.254:53 without SO_REUSEADDR (DnsServer.cpp): a server
/// binding 0.0.0.0:53 fails. Reproduced in a network namespace where a TCP listener holds
/// 10.255.255.254:53 as the tunnel's does; the second server's bind is real.
#[test]
fn dns_server_on_port_53_collides_with_the_tunnel() {
    let tunnel = netns_with("ip addr add 10.255.255.254/32 dev lo &&");
    let holder = Workload::start_in(&strs(&tunnel), &["listen", "--addr", "10.255.255.254:53"]);
    let pid = holder.pid.to_string();
    let enter = ["nsenter", "-t", pid.as_str(), "-n"];
    let server = ["listen", "--addr", "0.0.0.0:53"];
    let out = json(&["--assume", "wsl2,nat"], &enter, &server);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    let (syscall, errno, id, detail) = &found[0];
    assert_eq!(
        (syscall.as_str(), errno.as_str(), id.as_str()),
        ("bind", "EADDRINUSE", "WSL2-DNS-TUNNEL-HOLDS-PORT-53")
    );
    assert_eq!(detail, &format!("held by 10.255.255.254:53 LISTEN (wsltrace[{pid}] fd 3)"));
    // On Linux the generic rule names the same holder.
    let linux = json(&["--assume", "linux"], &enter, &server);
    assert_eq!(ids(&linux), ["ADDRESS-IN-USE"]);
}

/// Port 53 held on another address (127.0.0.53, systemd-resolved's stub): not the tunnel.
#[test]
fn port_53_held_elsewhere_is_not_the_tunnel() {
    let ns = netns_with("");
    let holder = Workload::start_in(&strs(&ns), &["listen", "--addr", "127.0.0.53:53"]);
    let pid = holder.pid.to_string();
    let out = json(
        &["--assume", "wsl2,nat"],
        &["nsenter", "-t", &pid, "-n"],
        &["listen", "--addr", "0.0.0.0:53"],
    );
    assert_eq!(ids(&out), ["ADDRESS-IN-USE"], "{}", out.stderr);
}

/// Mirrored mode gives Linux a 4096-port ephemeral window; the same exhaustion, at 3 ports in a
/// network namespace, makes the real connect fail with EADDRNOTAVAIL.
#[test]
fn ephemeral_window_exhausted_on_wsl2_mirrored() {
    let narrow = netns_with("echo '40000 40002' > /proc/sys/net/ipv4/ip_local_port_range &&");
    let out = json(&["--assume", "wsl2,mirrored"], &strs(&narrow), &["exhaust"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("then EADDRNOTAVAIL"), "{}", out.stderr);
    let on_connect: Vec<_> = findings(&out).into_iter().filter(|f| f.0 == "connect").collect();
    assert_eq!(on_connect.len(), 1, "{on_connect:?}");
    assert_eq!(
        (on_connect[0].1.as_str(), on_connect[0].2.as_str()),
        ("EADDRNOTAVAIL", "WSL2-MIRRORED-EPHEMERAL-PORTS-EXHAUSTED")
    );
    // NAT mode has Linux's own range: the same failure is not blamed on WSL.
    let nat = json(&["--assume", "wsl2,nat"], &strs(&narrow), &["exhaust"]);
    assert!(nat.stderr.contains("then EADDRNOTAVAIL"), "{}", nat.stderr);
    assert!(!ids(&nat).contains(&"WSL2-MIRRORED-EPHEMERAL-PORTS-EXHAUSTED".to_owned()));
    // Connections that do not run out: nothing on the connects.
    let fine = json(&["--assume", "wsl2,mirrored"], &[], &["exhaust", "--count", "16"]);
    assert!(fine.stderr.contains("16 connections, no failure"), "{}", fine.stderr);
    assert!(findings(&fine).is_empty(), "{:?}", findings(&fine));
}

/// NAT mode has no IPv6 route: a real connect to a global IPv6 address fails with
/// ENETUNREACH in a network namespace that has only lo (as WSL2's NAT VM has no IPv6 route).
#[test]
fn ipv6_unreachable_on_wsl2_nat() {
    let no_v6 = netns_with("");
    let connect = ["connect", "--addr", "[2001:db8::1]:80"];
    let out = json(&["--assume", "wsl2,nat"], &strs(&no_v6), &connect);
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1.as_str(), found[0].2.as_str()),
        ("connect", "ENETUNREACH", "WSL2-NAT-NO-IPV6")
    );
    // Mirrored mode has Windows' IPv6, Linux has its own configuration: no WSL finding.
    for assume in ["wsl2,mirrored", "linux"] {
        let out = json(&["--assume", assume], &strs(&no_v6), &connect);
        assert!(findings(&out).is_empty(), "{assume}: {:?}", findings(&out));
    }
}

/// A vsock connect to the host that times out. This machine's host answers a connect to a
/// port nobody listens on with a reset within milliseconds (Hyper-V would not answer): the
/// timeout is provoked by a connect timeout of one kernel tick, shorter than the reset takes,
/// so a connect may still be reset first; the workload tries until one times out. The
/// ETIMEDOUT is the kernel's own.
#[test]
fn vsock_connect_to_the_host_timing_out() {
    let demo = ["vsock-host", "--timeout-ms", "1", "--count", "500"];
    let out = json(&["--assume", "wsl2"], &[], &demo);
    assert!(
        out.stderr.contains("vsock-host: ETIMEDOUT"),
        "this test needs a vsock transport to the host (CID 2): {}",
        out.stderr
    );
    let connects: Vec<Value> =
        out.events().into_iter().filter(|e| e["syscall"] == "connect").collect();
    let timed_out = connects.iter().filter(|e| e["errno"] == "ETIMEDOUT").count();
    assert_eq!(timed_out, 1, "{}", out.stdout);
    for ev in &connects {
        let ids: Vec<&str> = ev["anomalies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["id"].as_str())
            .collect();
        let expected: &[&str] =
            if ev["errno"] == "ETIMEDOUT" { &["WSL2-VSOCK-HOST-CONNECT-TIMEOUT"] } else { &[] };
        assert_eq!(ids, expected, "{ev}");
    }
    let linux = json(&["--assume", "linux"], &[], &demo);
    assert!(findings(&linux).is_empty(), "{:?}", findings(&linux));
}

/// The new rules stay silent on clean workloads in every WSL2 mode: an echo server and
/// client, and a demo making every traced call (its failures are Linux's own findings).
#[test]
fn clean_workloads_have_no_wsl_findings() {
    for mode in ["nat", "mirrored", "consomme", "bridged"] {
        let assume = format!("wsl2,{mode}");
        let echo = json(&["--assume", &assume], &[], &["echo"]);
        assert!(echo.status.success(), "{}", echo.stderr);
        assert!(findings(&echo).is_empty(), "{mode}: {:?}", findings(&echo));
        let all = json(&["--assume", &assume], &[], &["all"]);
        let new_rules = [
            "WSL2-NAT-LOCALHOST-PROXY",
            "WSL2-DNS-TUNNEL-HOLDS-PORT-53",
            "WSL2-MIRRORED-EPHEMERAL-PORTS-EXHAUSTED",
            "WSL2-NAT-NO-IPV6",
            "WSL2-VSOCK-HOST-CONNECT-TIMEOUT",
            "WSL2-DNS-TUNNEL-NO-ANSWER",
            "DNS-NO-ANSWER",
            "UNIX-CONNECT-DRVFS",
        ];
        let flagged: Vec<String> =
            ids(&all).into_iter().filter(|id| new_rules.contains(&id.as_str())).collect();
        assert!(flagged.is_empty(), "{mode}: {flagged:?}");
    }
    assert!(std::path::Path::new(WSLTRACE).exists());
}
