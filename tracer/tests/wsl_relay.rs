//! WSL's localhost relay (NAT mode) rules, run on this native Linux machine with
//! `--assume wsl2,nat`: the WSL environment is assumed, not real. The listeners, namespaces and
//! sockets are real; what is assumed is only that WSL's relay would be looking at them.

mod common;

use common::{
    Output,
    findings::{findings, free_port, ids},
    python, run, traced, traced_in, wsltrace,
};
use serde_json::Value;

/// `wsltrace --assume wsl2,nat --format json -- wsltrace demo --untraced listen --addr ADDR`.
fn listen_on_wsl2_nat(addr: &str) -> Output {
    traced(&["--assume", "wsl2,nat"], &["--format", "json"], &["listen", "--addr", addr])
}

/// 0.0.0.0 and 127.0.0.1 TCP listeners are what WSL's relay forwards to Windows 127.0.0.1:
/// no finding.
#[test]
fn relayed_listeners_have_no_finding_on_wsl2_nat() {
    for addr in ["0.0.0.0:0", "127.0.0.1:0"] {
        let out = listen_on_wsl2_nat(addr);
        assert!(out.events().iter().any(|e| e["syscall"] == "listen"), "{}", out.stdout);
        assert!(ids(&out).is_empty(), "{addr}: {:?}", findings(&out));
    }
}

/// 127.0.0.2 (the rest of 127/8) is never relayed: Windows cannot reach it.
#[test]
fn listener_on_127_0_0_2_is_not_relayed_on_wsl2_nat() {
    let out = listen_on_wsl2_nat("127.0.0.2:0");
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1.as_str()),
        ("listen", "WSL2-RELAY-ADDRESS-NOT-RELAYED")
    );
    // The same listener on real Linux, or assumed mirrored: nothing.
    for others in [&["--assume", "wsl2,mirrored"][..], &["--assume", "linux"], &[]] {
        let out = traced(others, &["--format", "json"], &["listen", "--addr", "127.0.0.2:0"]);
        assert!(ids(&out).is_empty(), "{others:?}");
    }
}

/// A specific (non-loopback) address of this machine: the relay ignores it.
#[test]
fn listener_on_a_specific_address_is_not_relayed_on_wsl2_nat() {
    let Some(ip) = a_non_loopback_ipv4() else {
        panic!("this machine has no non-loopback IPv4 address: the test needs one (eth0)");
    };
    let out = listen_on_wsl2_nat(&format!("{ip}:0"));
    assert_eq!(ids(&out), ["WSL2-RELAY-ADDRESS-NOT-RELAYED"], "{}", out.stderr);
}

/// `[::]` and `[::1]` listeners reach Windows at [::1] only.
#[test]
fn ipv6_listeners_reach_windows_at_ipv6_loopback_only() {
    for addr in ["[::]:0", "[::1]:0"] {
        let out = listen_on_wsl2_nat(addr);
        let found = findings(&out);
        assert_eq!(found.len(), 1, "{addr}: {found:?}");
        assert_eq!((found[0].0.as_str(), found[0].1.as_str()), ("listen", "WSL2-RELAY-IPV6-ONLY"));
    }
    let json: Value =
        serde_json::from_str(&run(wsltrace().args(["rules", "--format", "json"])).stdout).unwrap();
    let rule = json.as_array().unwrap().iter().find(|r| r["id"] == "WSL2-RELAY-IPV6-ONLY").unwrap();
    assert!(rule["fix"].as_str().unwrap().contains("http://[::1]:PORT"));
}

/// A listener in another network namespace: the namespace is the reason (one finding).
#[test]
fn listener_in_another_netns_is_not_relayed_on_wsl2_nat() {
    let out = traced_in(
        &["--assume", "wsl2,nat"],
        &["--format", "json"],
        &["unshare", "-n"],
        &["listen", "--addr", "127.0.0.1:0"],
    );
    assert_eq!(ids(&out), ["WSL2-RELAY-OTHER-NETNS"], "{}", out.stderr);
}

/// A UDP server: the relay only looks at TCP listeners. A real bind of a UDP socket to a
/// port (python3), and a UDP client socket (port 0) that is not flagged.
#[test]
fn udp_server_is_not_relayed_on_wsl2_nat() {
    let port = free_port();
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', {port}))\nc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nc.bind(('127.0.0.1', 0))\n"
    );
    let out =
        common::trace(&["--assume", "wsl2,nat", "--format", "json", "--", python(), "-c", &script]);
    assert!(out.status.success(), "{}", out.stderr);
    let binds = out.events().into_iter().filter(|e| e["syscall"] == "bind").count();
    assert_eq!(binds, 2, "{}", out.stdout);
    assert_eq!(ids(&out), ["WSL2-RELAY-UDP"]);
    let out =
        common::trace(&["--assume", "linux", "--format", "json", "--", python(), "-c", &script]);
    assert!(ids(&out).is_empty());
}

/// The first IPv4 address of this machine that is not loopback.
fn a_non_loopback_ipv4() -> Option<std::net::Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        let v4 = ifa.address?.as_sockaddr_in()?.ip();
        (!v4.is_loopback()).then_some(v4)
    })
}
