//! Socket snapshots and `wsltrace doctor` against the real kernel, checked against what `ss`
//! (iproute2) reports for the same process.

mod common;

use std::{collections::BTreeMap, process::Command};

use common::{Workload, run, wsltrace};
use serde_json::Value;

/// One socket, in the terms both `ss` and the snapshot can be put in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Sock {
    fd: i64,
    family: String,
    state: String,
    local: String,
    /// Inet: the peer address (`None` when ss prints `*` for the port). Unix: not compared
    /// (ss always prints `*`), the peer inode is.
    peer: Option<String>,
    inode: u64,
    peer_inode: Option<u64>,
}

/// `ss -anpHe` lines of `pid`, as `Sock`s. Unix lines read
/// `u_str STATE RQ SQ LOCAL INODE PEER PEER_INODE users:(("comm",pid=P,fd=F)) ...`, inet ones
/// `tcp STATE RQ SQ LOCAL PEER users:(...) ... ino:INODE ...`.
fn ss_sockets(ss_output: &str, pid: u32) -> Vec<Sock> {
    let marker = format!("pid={pid},fd=");
    let mut out = Vec::new();
    for line in ss_output.lines().filter(|l| l.contains(&marker)) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let fd = line.split(&marker).nth(1).and_then(|r| r.split(')').next()).unwrap();
        let fd: i64 = fd.parse().unwrap();
        let (netid, ss_state) = (words[0], words[1]);
        let sock = match netid {
            "u_str" | "u_dgr" | "u_seq" => {
                let peer_inode: u64 = words[7].parse().unwrap();
                Sock {
                    fd,
                    family: "AF_UNIX".into(),
                    state: state(netid, ss_state),
                    local: words[4].into(),
                    peer: None,
                    inode: words[5].parse().unwrap(),
                    peer_inode: (peer_inode != 0).then_some(peer_inode),
                }
            }
            "tcp" | "udp" => {
                let ino = words.iter().find_map(|w| w.strip_prefix("ino:")).unwrap();
                let family = if words[4].starts_with('[') { "AF_INET6" } else { "AF_INET" };
                Sock {
                    fd,
                    family: family.into(),
                    state: state(netid, ss_state),
                    local: words[4].into(),
                    peer: (!words[5].ends_with(":*")).then(|| words[5].to_owned()),
                    inode: ino.parse().unwrap(),
                    peer_inode: None,
                }
            }
            other => panic!("unexpected socket kind {other} in {line:?}"),
        };
        out.push(sock);
    }
    out.sort();
    out
}

/// ss's state names in the snapshot's terms (documented in enrich/sockets/states.rs).
fn state(netid: &str, ss: &str) -> String {
    match (netid, ss) {
        (_, "LISTEN") => "LISTEN",
        ("tcp", "ESTAB") => "ESTABLISHED",
        ("tcp", "UNCONN") => "CLOSED",
        (_, "ESTAB") => "CONNECTED",
        (_, "UNCONN") => "UNCONNECTED",
        (_, other) => panic!("unexpected ss state {other}"),
    }
    .to_owned()
}

/// An address of the snapshot in ss's notation.
fn ss_addr(addr: &Value) -> String {
    match addr["family"].as_str().unwrap() {
        "AF_INET" => format!("{}:{}", addr["ip"].as_str().unwrap(), addr["port"]),
        "AF_INET6" => format!("[{}]:{}", addr["ip"].as_str().unwrap(), addr["port"]),
        "AF_UNIX" => match (addr["path"].as_str(), addr["abstract"].as_str()) {
            (Some(path), _) => path.to_owned(),
            (None, Some(name)) => format!("@{name}"),
            (None, None) => "*".to_owned(),
        },
        other => panic!("no ss notation for {other}"),
    }
}

/// The snapshot's sockets of the families ss lists with their process, as `Sock`s.
fn snapshot_sockets(sockets: &[Value]) -> Vec<Sock> {
    let mut out: Vec<Sock> = sockets
        .iter()
        .filter(|s| matches!(s["family"].as_str(), Some("AF_INET" | "AF_INET6" | "AF_UNIX")))
        .map(|s| {
            let unix = s["family"] == "AF_UNIX";
            Sock {
                fd: s["fd"].as_i64().unwrap(),
                family: s["family"].as_str().unwrap().into(),
                state: s["state"].as_str().unwrap().into(),
                local: ss_addr(&s["local"]),
                peer: if unix || s["peer"].is_null() { None } else { Some(ss_addr(&s["peer"])) },
                inode: s["inode"].as_u64().unwrap(),
                peer_inode: s["peer_inode"].as_u64(),
            }
        })
        .collect();
    out.sort();
    out
}

/// `wsltrace doctor --pid PID --format json`, parsed.
fn doctor(pid: u32) -> Value {
    let out = run(wsltrace().args(["doctor", "--pid", &pid.to_string(), "--format", "json"]));
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn sockets_of(report: &Value) -> Vec<Value> {
    report["process"]["sockets"].as_array().expect("a socket list").clone()
}

fn checks<'a>(report: &'a Value, id: &str) -> Vec<&'a Value> {
    report["checks"].as_array().unwrap().iter().filter(|c| c["id"] == id).collect()
}

/// `ss -anpHe`, run through `prefix` (e.g. nsenter) when given.
fn ss(prefix: &[&str]) -> String {
    let mut words: Vec<&str> = prefix.to_vec();
    words.extend(["ss", "-anpHe"]);
    let out = Command::new(words[0]).args(&words[1..]).output().expect("run ss");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `/proc/PID/fd/N -> socket:[INODE]`, read independently of wsltrace.
fn fd_inodes(pid: u32) -> BTreeMap<i64, u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            let inode =
                target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()?;
            Some((e.file_name().to_str()?.parse().ok()?, inode))
        })
        .collect()
}

/// The snapshot and ss agree socket for socket; every socket fd is in the snapshot, sorted.
fn assert_matches_ss(pid: u32, sockets: &[Value], ss_output: &str) {
    let expected = ss_sockets(ss_output, pid);
    assert!(expected.len() >= 7, "ss saw too little of {pid}:\n{ss_output}");
    assert_eq!(snapshot_sockets(sockets), expected, "snapshot vs ss -anpHe\n{ss_output}");
    let fds: Vec<(i64, u64)> =
        sockets.iter().map(|s| (s["fd"].as_i64().unwrap(), s["inode"].as_u64().unwrap())).collect();
    assert_eq!(fds, fd_inodes(pid).into_iter().collect::<Vec<_>>());
}

/// The netlink socket ss does not attribute to a process: checked against the namespace's
/// /proc table instead.
fn assert_netlink_route(pid: u32, sockets: &[Value]) {
    let netlink: Vec<&Value> = sockets.iter().filter(|s| s["family"] == "AF_NETLINK").collect();
    let [nl] = netlink[..] else { panic!("one netlink socket expected: {sockets:#?}") };
    assert_eq!(nl["protocol"], "NETLINK_ROUTE");
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/netlink")).unwrap();
    let row: Vec<&str> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.get(9).and_then(|i| i.parse::<u64>().ok()) == nl["inode"].as_u64())
        .map(|cols| cols.into_iter().collect())
        .expect("the socket in /proc/PID/net/netlink");
    assert_eq!(nl["local"]["portid"].as_u64(), row[2].parse().ok());
}

/// TCP listener + connection on 127.0.0.1, UDP on ::1, unix path listener + connection,
/// abstract unix datagram, netlink: the snapshot says what ss says.
#[test]
fn snapshot_matches_ss() {
    let mut holder = Workload::start(&["holder"]);
    let pid = holder.pid;
    let report = doctor(pid);
    let sockets = sockets_of(&report);
    assert_matches_ss(pid, &sockets, &ss(&[]));
    assert_netlink_route(pid, &sockets);
    // VSOCK has no table here (no vsock_diag): the socket describes itself.
    if let Some(vsock) = sockets.iter().find(|s| s["family"] == "AF_VSOCK") {
        assert_eq!(vsock["state"], "LISTEN");
        assert_eq!(vsock["type"], "SOCK_STREAM");
        assert_eq!(vsock["local"]["port"], 40_000 + pid % 20_000);
        assert_eq!(vsock["local"]["cid"], u32::MAX, "VMADDR_CID_ANY");
    }

    // Each end of the unix connection names the other; the client's peer address is the
    // listener's path (what getpeername() returns).
    let by_inode = |inode: &Value| sockets.iter().find(|s| s["inode"] == *inode).unwrap();
    let client = sockets
        .iter()
        .find(|s| {
            s["family"] == "AF_UNIX" && s["state"] == "CONNECTED" && s["local"]["path"].is_null()
        })
        .expect("the unix client");
    let server_end = by_inode(&client["peer_inode"]);
    assert_eq!(server_end["peer_inode"], client["inode"]);
    assert_eq!(client["peer"], server_end["local"]);
    assert_eq!(server_end["local"]["path"], format!("/tmp/wsltrace-holder-{pid}/holder.sock"));

    // The same process, as the static findings see it.
    // 127.0.0.1 only is said (normal for a local service); ::1 only is a warning (IPv4
    // clients of localhost are refused).
    let loopback = checks(&report, "process.loopback_only");
    assert_eq!(loopback.len(), 2, "{report:#}");
    let verdict_of = |proto: &str| {
        let check =
            loopback.iter().find(|c| c["summary"].as_str().unwrap_or("").starts_with(proto));
        check.map(|c| (c["verdict"].clone(), c["fix"].is_string()))
    };
    assert_eq!(verdict_of("TCP"), Some(("ok".into(), false)), "{report:#}");
    assert_eq!(verdict_of("UDP"), Some(("warn".into(), true)), "{report:#}");
    assert!(checks(&report, "process.private_netns").is_empty());
    holder.go();
    assert!(holder.wait().success());
}

/// A server in its own network namespace (`unshare -n`, lo up, its own port sysctl): the
/// snapshot is read from that namespace, and doctor flags it.
#[test]
fn server_in_private_network_namespace() {
    // Inside the new namespace: lo up and its own port threshold, then exec the holder.
    let script = "ip link set lo up && echo 2000 > /proc/sys/net/ipv4/ip_unprivileged_port_start && exec \"$@\"";
    let mut holder =
        Workload::start_in(&["unshare", "--net", "--", "sh", "-c", script, "sh"], &["holder"]);
    let pid = holder.pid;
    let report = doctor(pid);
    let process = &report["process"];
    let net = process["ns"]["net"].as_u64().unwrap();
    assert_ne!(Some(net), process["initial_ns"]["net"].as_u64(), "{process:#}");
    let own_net = std::fs::metadata("/proc/self/ns/net")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert_ne!(net, own_net);

    // Read in the process's namespace: ss run inside it agrees, ss out here sees none of it.
    let sockets = sockets_of(&report);
    let pid_arg = pid.to_string();
    assert_matches_ss(pid, &sockets, &ss(&["nsenter", "-t", &pid_arg, "-n"]));
    assert!(ss_sockets(&ss(&[]), pid).iter().all(|s| s.family == "AF_UNIX"), "inet sockets leaked");
    assert_netlink_route(pid, &sockets);
    // The sysctl is the namespace's own.
    assert_eq!(process["ip_unprivileged_port_start"], 2000);
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    assert_ne!(host.trim(), "2000");

    let private = checks(&report, "process.private_netns");
    let [finding] = private[..] else { panic!("{report:#}") };
    assert_eq!(finding["verdict"], "warn");
    let listener =
        sockets.iter().find(|s| s["state"] == "LISTEN" && s["family"] == "AF_INET").unwrap();
    let port = listener["local"]["port"].as_u64().unwrap();
    let summary = finding["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("namespace {net}"))
            && summary.contains(&format!("127.0.0.1:{port}")),
        "{summary}"
    );
    assert!(finding["fix"].as_str().unwrap().contains(&format!("nsenter -t {pid} -n")));
    holder.go();
    assert!(holder.wait().success());
}

/// The text report: a verdict per line, a fix under every warning, no colour with NO_COLOR.
#[test]
fn doctor_text_report() {
    let mut holder = Workload::start(&["holder"]);
    let out = run(wsltrace().args(["doctor", "--pid", &holder.pid.to_string()]));
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let verdicts: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("  ok ") || l.starts_with("  warn ") || l.starts_with("  fail "))
        .collect();
    assert!(verdicts.len() >= 8, "{}", out.stdout);
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("  warn ") || line.starts_with("  fail ") {
            assert!(lines[i + 1].trim_start().starts_with("fix: "), "no fix after {line:?}");
        }
    }
    assert!(out.stdout.contains(&format!("process {} (wsltrace)", holder.pid)));
    assert!(out.stdout.contains("UNIX/STREAM") && out.stdout.contains("@wsltrace-holder-"));
    assert!(!out.stdout.contains('\x1b'), "colour with NO_COLOR set");
    let coloured = run(wsltrace().args(["doctor", "--color", "always"]));
    assert!(coloured.stdout.contains("\x1b["));
    holder.go();
    assert!(holder.wait().success());
}

#[test]
fn doctor_names_a_missing_process() {
    let out = run(wsltrace().args(["doctor", "--pid", "999999999"]));
    assert!(!out.status.success());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].starts_with("wsltrace: error: no process 999999999: check the pid"),
        "{}",
        lines[0]
    );
}

/// At attach, the stream starts with what the process holds; calls on those fds later say
/// what they are (the fd table starts from the snapshot), and --no-snapshot skips it.
#[test]
fn snapshot_at_attach_seeds_the_fd_table() {
    let mut holder = Workload::start(&["holder"]);
    let pid = holder.pid.to_string();
    let tracer = common::Tracer::attach(&["--pid", &pid, "--format", "json"]);
    holder.go();
    assert!(holder.wait().success());
    let out = tracer.finish();
    let records = out.records();
    let snapshot = &records[0];
    assert_eq!(snapshot["type"], "snapshot", "{}", out.stdout);
    assert_eq!(snapshot["pid"].to_string(), pid);
    let sockets = snapshot["sockets"].as_array().unwrap();
    assert!(sockets.len() >= 9, "{sockets:?}");
    // The holder closes every socket it opened before tracing started: each close says what
    // it closed, exactly as the snapshot described it.
    let closes: Vec<&Value> = records.iter().filter(|r| r["syscall"] == "close").collect();
    assert_eq!(closes.len(), sockets.len(), "{}", out.stdout);
    for close in closes {
        let fd = &close["args"]["fd"];
        let held = sockets.iter().find(|s| &s["fd"] == fd).expect("a socket from the snapshot");
        assert_eq!(&close["sock"], held, "fd {fd}");
    }

    let mut holder = Workload::start(&["holder"]);
    let tracer = common::Tracer::attach(&[
        "--pid",
        &holder.pid.to_string(),
        "--format",
        "json",
        "--no-snapshot",
    ]);
    holder.go();
    assert!(holder.wait().success());
    assert!(tracer.finish().records().iter().all(|r| r["type"] != "snapshot"));
}

/// This machine is native Linux: doctor says so, and runs none of the WSL networking checks
/// (mode, port tracker, DNS tunnelling).
#[test]
fn doctor_says_this_machine_is_not_wsl() {
    let out = run(wsltrace().args(["doctor", "--format", "json"]));
    let report: Value = serde_json::from_str(&out.stdout).expect("doctor JSON");
    assert_eq!(report["facts"]["wsl"]["kind"], "none");
    assert!(report["facts"]["wsl"].get("network").is_none(), "{}", report["facts"]["wsl"]);
    let kind = checks(&report, "wsl.kind");
    assert_eq!(kind.len(), 1);
    assert!(kind[0]["summary"].as_str().unwrap().starts_with("not WSL"), "{}", kind[0]);
    for id in ["wsl.networking", "wsl.port_tracker", "wsl.dns_tunneling"] {
        assert!(checks(&report, id).is_empty(), "{id} on native Linux");
    }
}
