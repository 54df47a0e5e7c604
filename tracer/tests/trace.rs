//! The core tracer against the running kernel: real programs, real syscalls, exact events.

mod common;

use common::{
    Tracer, Workload, demo_command, outcome, python, run, run_cmd_json, settle, trace, wsltrace,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn args_of(ev: &Value) -> &Value {
    &ev["args"]
}

fn port_of(ev: &Value) -> u64 {
    ev["args"]["addr"]["port"].as_u64().unwrap_or_else(|| panic!("no port in {ev}"))
}

/// Every traced syscall, succeeding and failing, decoded argument by argument.
#[test]
fn demo_workload_is_decoded_exactly() {
    let out = trace(&["demo", "--format", "json"]);
    assert!(out.status.success(), "{}", out.stderr);
    let events = out.events();
    let pid = events[0]["pid"].as_u64().unwrap();
    for ev in &events {
        // One process, one thread: the workload; the exec gate made no socket call.
        assert_eq!((ev["pid"].as_u64(), ev["tid"].as_u64()), (Some(pid), Some(pid)), "{ev}");
        assert_eq!(ev["comm"], "wsltrace");
        assert!(ev["duration_ns"].as_u64().unwrap() > 0, "{ev}");
        assert!(ev["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(ev["uid"], 0);
    }

    let find = |syscall: &str, family: &str, nth: usize| {
        let matching = events
            .iter()
            .filter(|e| e["syscall"] == syscall && e["args"]["addr"]["family"] == family);
        port_of(matching.clone().nth(nth).unwrap_or_else(|| panic!("no {syscall} #{nth}")))
    };
    let port = find("getsockname", "AF_INET", 0);
    let peer = find("accept4", "AF_INET", 0);
    let refused = find("getsockname", "AF_INET", 1);
    let v6_port = find("getsockname", "AF_INET6", 0);
    let rcvbuf = events[10]["args"]["value"].clone();
    assert!(rcvbuf.as_i64().is_some_and(|b| b > 0), "SO_RCVBUF {rcvbuf}");
    let dir = format!("/tmp/wsltrace-demo-{pid}");
    let abstract_name = format!("wsltrace-demo-{pid}");
    let tcp = json!({"domain":"AF_INET","type":"SOCK_STREAM","protocol":"IPPROTO_TCP","flags":"SOCK_CLOEXEC"});
    let unix =
        json!({"domain":"AF_UNIX","type":"SOCK_STREAM","protocol":"0","flags":"SOCK_CLOEXEC"});
    let lo = |port: u64| json!({"family":"AF_INET","ip":"127.0.0.1","port":port});
    let path = |name: &str| json!({"family":"AF_UNIX","path":format!("{dir}/{name}")});
    let cred = json!({"pid":pid,"uid":0,"gid":0});
    let close = |fd: i32| ("close", json!({"fd":fd}), json!(0));

    let mut expected: Vec<(&str, Value, Value)> = vec![
        // TCP over loopback
        ("socket", tcp.clone(), json!(3)),
        (
            "setsockopt",
            json!({"fd":3,"level":"SOL_SOCKET","optname":"SO_REUSEADDR","optlen":4,"value":1}),
            json!(0),
        ),
        ("bind", json!({"fd":3,"addr":lo(0),"addrlen":16}), json!(0)),
        ("listen", json!({"fd":3,"backlog":16}), json!(0)),
        ("getsockname", json!({"fd":3,"addr":lo(port),"addrlen":16}), json!(0)),
        ("socket", tcp.clone(), json!(4)),
        ("connect", json!({"fd":4,"addr":lo(port),"addrlen":16}), json!(0)),
        ("accept4", json!({"fd":3,"addr":lo(peer),"addrlen":16,"flags":"SOCK_CLOEXEC"}), json!(5)),
        ("getpeername", json!({"fd":5,"addr":lo(peer),"addrlen":16}), json!(0)),
        (
            "getsockopt",
            json!({"fd":4,"level":"SOL_SOCKET","optname":"SO_ERROR","optlen":4,"value":0}),
            json!(0),
        ),
        (
            "getsockopt",
            json!({"fd":5,"level":"SOL_SOCKET","optname":"SO_RCVBUF","optlen":4,"value":rcvbuf}),
            json!(0),
        ),
        (
            "setsockopt",
            json!({"fd":4,"level":"SOL_TCP","optname":"TCP_NODELAY","optlen":4,"value":1}),
            json!(0),
        ),
        ("shutdown", json!({"fd":4,"how":"SHUT_WR"}), json!(0)),
        ("socket", tcp.clone(), json!(6)),
        ("bind", json!({"fd":6,"addr":lo(port),"addrlen":16}), json!("EADDRINUSE")),
        close(6),
        close(5),
        close(4),
        close(3),
        // A refused connect
        ("socket", tcp.clone(), json!(3)),
        ("bind", json!({"fd":3,"addr":lo(0),"addrlen":16}), json!(0)),
        ("getsockname", json!({"fd":3,"addr":lo(refused),"addrlen":16}), json!(0)),
        close(3),
        ("socket", tcp.clone(), json!(3)),
        ("connect", json!({"fd":3,"addr":lo(refused),"addrlen":16}), json!("ECONNREFUSED")),
        close(3),
        // AF_UNIX on a path: accept(2) with an unnamed peer, SO_PEERCRED; a missing path
        ("socket", unix.clone(), json!(3)),
        ("bind", json!({"fd":3,"addr":path("app.sock"),"addrlen":dir.len() + 11}), json!(0)),
        ("listen", json!({"fd":3,"backlog":8}), json!(0)),
        ("socket", unix.clone(), json!(4)),
        ("connect", json!({"fd":4,"addr":path("app.sock"),"addrlen":dir.len() + 11}), json!(0)),
        ("accept", json!({"fd":3,"addr":{"family":"AF_UNIX"},"addrlen":2}), json!(5)),
        (
            "getsockopt",
            json!({"fd":5,"level":"SOL_SOCKET","optname":"SO_PEERCRED","optlen":12,"value":cred}),
            json!(0),
        ),
        close(5),
        close(4),
        close(3),
        ("socket", unix.clone(), json!(3)),
        (
            "connect",
            json!({"fd":3,"addr":path("missing.sock"),"addrlen":dir.len() + 15}),
            json!("ENOENT"),
        ),
        close(3),
        // Abstract name; socketpair with SO_PEERCRED
        ("socket", unix.clone(), json!(3)),
        (
            "bind",
            json!({"fd":3,"addr":{"family":"AF_UNIX","abstract":abstract_name},"addrlen":abstract_name.len() + 3}),
            json!(0),
        ),
        (
            "getsockname",
            json!({"fd":3,"addr":{"family":"AF_UNIX","abstract":abstract_name},"addrlen":abstract_name.len() + 3}),
            json!(0),
        ),
        close(3),
        (
            "socketpair",
            json!({"domain":"AF_UNIX","type":"SOCK_STREAM","protocol":"0","flags":"SOCK_CLOEXEC","fds":[3,4]}),
            json!(0),
        ),
        (
            "getsockopt",
            json!({"fd":3,"level":"SOL_SOCKET","optname":"SO_PEERCRED","optlen":12,"value":cred}),
            json!(0),
        ),
        close(3),
        close(4),
        // UDP (listen: EOPNOTSUPP) and IPv6
        (
            "socket",
            json!({"domain":"AF_INET","type":"SOCK_DGRAM","protocol":"IPPROTO_IP","flags":"SOCK_CLOEXEC"}),
            json!(3),
        ),
        ("bind", json!({"fd":3,"addr":lo(0),"addrlen":16}), json!(0)),
        ("listen", json!({"fd":3,"backlog":1}), json!("EOPNOTSUPP")),
        close(3),
        (
            "socket",
            json!({"domain":"AF_INET6","type":"SOCK_STREAM","protocol":"IPPROTO_IP","flags":"SOCK_CLOEXEC"}),
            json!(3),
        ),
        (
            "bind",
            json!({"fd":3,"addr":{"family":"AF_INET6","ip":"::1","port":0,"scope_id":0,"flowinfo":0},"addrlen":28}),
            json!(0),
        ),
        (
            "getsockname",
            json!({"fd":3,"addr":{"family":"AF_INET6","ip":"::1","port":v6_port,"scope_id":0,"flowinfo":0},"addrlen":28}),
            json!(0),
        ),
        close(3),
        // Netlink, vsock
        (
            "socket",
            json!({"domain":"AF_NETLINK","type":"SOCK_RAW","protocol":"NETLINK_ROUTE","flags":"SOCK_CLOEXEC"}),
            json!(3),
        ),
        (
            "bind",
            json!({"fd":3,"addr":{"family":"AF_NETLINK","portid":0,"groups":0},"addrlen":12}),
            json!(0),
        ),
        (
            "getsockname",
            json!({"fd":3,"addr":{"family":"AF_NETLINK","portid":pid,"groups":0},"addrlen":12}),
            json!(0),
        ),
        close(3),
        (
            "socket",
            json!({"domain":"AF_VSOCK","type":"SOCK_STREAM","protocol":"0","flags":"SOCK_CLOEXEC"}),
            json!(3),
        ),
        (
            "bind",
            json!({"fd":3,"addr":{"family":"AF_VSOCK","cid":u32::MAX,"port":u32::MAX},"addrlen":16}),
            json!(0),
        ),
        close(3),
        // Arguments the kernel refuses
        ("socket", tcp.clone(), json!(3)),
        ("shutdown", json!({"fd":3,"how":"99"}), json!("EINVAL")),
        ("accept", json!({"fd":3}), json!("EINVAL")),
        (
            "setsockopt",
            json!({"fd":3,"level":"SOL_SOCKET","optname":"SO_RCVBUF","optlen":2,"value":{"hex":"0100"}}),
            json!("EINVAL"),
        ),
        ("getsockopt", json!({"fd":3,"level":"SOL_TCP","optname":"9999"}), json!("ENOPROTOOPT")),
        ("getpeername", json!({"fd":3}), json!("ENOTCONN")),
        close(3),
    ];
    // A kernel without vsock refuses the socket: then there is no bind or close.
    if events.iter().any(|e| e["args"]["domain"] == "AF_VSOCK" && e["errno"] == "EAFNOSUPPORT") {
        let at = expected.iter().position(|e| e.1["domain"] == "AF_VSOCK").unwrap();
        expected[at].2 = json!("EAFNOSUPPORT");
        expected.drain(at + 1..at + 3);
    }

    let actual: Vec<(&str, &Value, Value)> = events
        .iter()
        .map(|ev| {
            let result = match ev["errno"].as_str() {
                Some(errno) => json!(errno),
                None => ev["ret"].clone(),
            };
            (ev["syscall"].as_str().unwrap(), args_of(ev), result)
        })
        .collect();
    assert_eq!(actual.len(), expected.len(), "event count; got:\n{}", out.stdout);
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_eq!((a.0, a.1, &a.2), (e.0, &e.1, &e.2), "event {i}");
    }
    // What each fd is, from the fd table: the accepted connection, and the unix server's
    // accepted socket when its peer credentials are read.
    let accepted = events.iter().find(|e| e["syscall"] == "accept4").unwrap();
    assert_eq!(
        accepted["sock"],
        json!({"fd":5,"family":"AF_INET","type":"SOCK_STREAM","protocol":"IPPROTO_TCP",
               "flags":"SOCK_CLOEXEC","state":"ESTABLISHED","local":lo(port),"peer":lo(peer)})
    );
    let peercred = events.iter().find(|e| e["args"]["optname"] == "SO_PEERCRED").unwrap();
    assert_eq!(peercred["sock"]["family"], "AF_UNIX");
    assert_eq!(peercred["sock"]["local"], path("app.sock"));
    // A refused connect leaves the socket unconnected: the destination is only in the args.
    let refused_ev = events.iter().find(|e| e["errno"] == "ECONNREFUSED").unwrap();
    assert_eq!(
        (refused_ev["sock"]["fd"].as_i64(), &refused_ev["sock"]["peer"]),
        (Some(3), &Value::Null)
    );
    let closes = events.iter().filter(|e| e["syscall"] == "close");
    assert!(
        closes.clone().all(|e| e["sock"]["fd"] == e["args"]["fd"]),
        "every close says what it closed"
    );

    let (count, lost) = out.summary();
    assert_eq!((count, lost), (events.len() as u64, 0));
    // The last record says the process exited.
    let records = out.records();
    assert_eq!(records.last().unwrap()["type"], "exit");
    assert_eq!(records.last().unwrap()["pid"], pid);
}

/// The text line a user reads for a refused connect.
#[test]
fn refused_connect_reads_like_strace() {
    let out = trace(&["demo", "refused"]);
    assert!(out.status.success(), "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("connect("))
        .unwrap_or_else(|| panic!("no connect line in:\n{}", out.stdout));
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(
        time.len() == 15 && time.as_bytes()[2] == b':' && time.as_bytes()[8] == b'.',
        "time {time:?}"
    );
    let (who, call) = rest.split_once(' ').unwrap();
    let pid = who.trim_start_matches("wsltrace[").split('/').next().unwrap();
    assert_eq!(who, format!("wsltrace[{pid}/{pid}]"));
    // The fd says what it is: a TCP socket that was never bound.
    assert!(call.starts_with("connect(3<TCP>, {AF_INET, 127.0.0.1:"), "{call}");
    assert!(call.contains("}, 16) = -1 ECONNREFUSED (Connection refused) <"), "{call}");
    assert!(call.ends_with("us>") || call.ends_with("ns>") || call.ends_with("ms>"), "{call}");
    // Piped output never carries colour codes.
    assert!(!out.stdout.contains('\u{1b}'));
    assert!(out.stderr.lines().last().unwrap().starts_with("wsltrace: 7 events, 0 lost"));
}

/// `--pid` on a process whose threads exist before attach: every thread is seen.
#[test]
fn pid_attach_sees_every_thread() {
    let mut workload = Workload::start(&["threads", "--wait"]);
    let tracer = Tracer::attach(&["--pid", &workload.pid.to_string(), "--format", "json"]);
    workload.go();
    assert!(workload.wait().success());
    let out = tracer.finish();
    assert!(out.status.success(), "{}", out.stderr);
    let events = out.events();
    // The workers' sockets share the fd table, so an accepted fd is 4 or whatever is free next.
    let main = events
        .iter()
        .filter(|e| e["tid"] == e["pid"])
        .map(|e| match e["syscall"] == "accept4" && e["ret"].as_i64().is_some_and(|fd| fd >= 4) {
            true => "accept4=FD".to_owned(),
            false => outcome(e),
        })
        .collect::<Vec<_>>();
    assert_eq!(
        main,
        [
            "socket=3",
            "setsockopt=0",
            "bind=0",
            "listen=0",
            "getsockname=0",
            "accept4=FD",
            "close=0",
            "accept4=FD",
            "close=0",
            "accept4=FD",
            "close=0",
            "accept4=FD",
            "close=0",
            "close=0",
        ]
        .map(str::to_owned)
    );
    let mut workers: Vec<u64> = events
        .iter()
        .filter(|e| e["tid"] != e["pid"])
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    workers.sort_unstable();
    workers.dedup();
    assert_eq!(workers.len(), 4, "four worker threads");
    for tid in workers {
        let calls: Vec<String> = events.iter().filter(|e| e["tid"] == tid).map(outcome).collect();
        assert_eq!(calls.len(), 3, "thread {tid}: {calls:?}");
        assert!(calls[0].starts_with("socket="), "{calls:?}");
        assert_eq!(calls[1..], ["connect=0".to_owned(), "close=0".to_owned()]);
    }
}

/// With -f (default for -- CMD), a grandchild that connects right after fork is traced.
#[test]
fn follow_forks_catches_a_grandchild() {
    let out = trace(&["demo", "fork", "--format", "json"]);
    assert!(out.status.success(), "{}", out.stderr);
    let records = out.records();
    let top = records[0]["pid"].clone();
    let exits: Vec<&Value> = records.iter().filter(|r| r["type"] == "exit").collect();
    assert_eq!(exits.len(), 3, "the workload, its child and grandchild exit");
    // The child's only call is on the listener it inherited; the grandchild connects.
    let (grandchild, child) = (&exits[0]["pid"], &exits[1]["pid"]);
    let calls_of = |pid: &Value| -> Vec<String> {
        records.iter().filter(|r| r["type"] == "event" && &r["pid"] == pid).map(outcome).collect()
    };
    assert_eq!(calls_of(child), ["getsockname=0"]);
    assert_eq!(calls_of(grandchild), ["socket=4", "connect=0", "close=0"].map(str::to_owned));
    assert!(calls_of(&top).contains(&"accept4=4".to_owned()));
}

/// The fd table follows fork: the child's call on an inherited fd says what the fd is.
#[test]
fn fd_identity_survives_fork() {
    let out = trace(&["demo", "fork", "--format", "json"]);
    let records = out.records();
    let top = records[0]["pid"].clone();
    let listen = records.iter().find(|r| r["syscall"] == "listen").expect("listen");
    let inherited = records
        .iter()
        .find(|r| r["type"] == "event" && r["pid"] != top && r["syscall"] == "getsockname")
        .unwrap_or_else(|| panic!("no getsockname in a child:\n{}", out.stdout));
    let sock = &inherited["sock"];
    assert_eq!(sock["fd"], listen["args"]["fd"]);
    assert_eq!(sock["family"], "AF_INET");
    assert_eq!(sock["type"], "SOCK_STREAM");
    assert_eq!(sock["state"], "LISTEN");
    assert_eq!(sock["local"]["ip"], "127.0.0.1");
    assert_eq!(sock["local"]["port"], inherited["args"]["addr"]["port"]);
}

/// A server in its own network namespace: its events carry that namespace, read in the kernel
/// at event time, and it differs from the initial one.
#[test]
fn events_carry_the_callers_namespaces() {
    let mut workload = Workload::start_in(&["unshare", "-n", "-u"], &["refused", "--wait"]);
    let link = |kind: &str| {
        let link = std::fs::read_link(format!("/proc/{}/ns/{kind}", workload.pid)).unwrap();
        let link = link.to_str().unwrap().to_owned();
        link.split_once(":[").unwrap().1.trim_end_matches(']').parse::<u64>().unwrap()
    };
    let (net, uts, mnt) = (link("net"), link("uts"), link("mnt"));
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(!ours.to_str().unwrap().contains(&net.to_string()), "unshare -n made a new netns");
    let tracer = Tracer::attach(&["--pid", &workload.pid.to_string(), "--format", "json"]);
    workload.go();
    assert!(workload.wait().success());
    let out = tracer.finish();
    let events = out.events();
    assert_eq!(events.len(), 7, "{}", out.stdout);
    for ev in &events {
        assert_eq!((ev["ns"]["net"].as_u64(), ev["ns"]["uts"].as_u64()), (Some(net), Some(uts)));
        assert_eq!(ev["ns"]["mnt"].as_u64(), Some(mnt));
        assert!(ev["ns"]["pid"].as_u64().unwrap() > 0 && ev["ns"]["user"].as_u64().unwrap() > 0);
        assert!(ev["cgroup"].as_str().unwrap().starts_with('/'), "{ev}");
    }

    // Text output marks the other network namespace on every line.
    let mut workload = Workload::start_in(&["unshare", "-n"], &["refused", "--wait"]);
    let tracer = Tracer::attach(&["--pid", &workload.pid.to_string()]);
    workload.go();
    assert!(workload.wait().success());
    let text = tracer.finish().stdout;
    let calls: Vec<&str> = text.lines().filter(|l| l.contains(") = ")).collect();
    assert_eq!(calls.len(), 7, "{text}");
    assert!(calls.iter().all(|l| l.contains(" [netns ")), "{text}");
}

/// A thread's namespaces and capabilities are kept in the kernel between its calls: a thread
/// that moves to another network namespace and drops root must show both on its next calls.
#[test]
fn events_follow_a_thread_that_changes_namespace_and_credentials() {
    let out = run_cmd_json(&[], &["identity"]);
    let events = out.events();
    let sockets: Vec<&Value> = events.iter().filter(|e| e["syscall"] == "socket").collect();
    assert_eq!(sockets.len(), 3, "{}", out.stdout);
    let net = |ev: &Value| ev["ns"]["net"].as_u64().unwrap_or_else(|| panic!("no netns in {ev}"));
    let ours =
        std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    assert_eq!(net(sockets[0]), ours.unwrap(), "{}", out.stdout);
    assert_ne!(net(sockets[1]), net(sockets[0]), "unshare(CLONE_NEWNET) not seen: {}", out.stdout);
    assert_eq!(net(sockets[2]), net(sockets[1]));
    assert_eq!(sockets[2]["uid"], 65534);

    // Root's capabilities, kept from the first calls, would hide the cause of this EACCES.
    let bind = events.iter().find(|e| e["syscall"] == "bind").expect("bind event");
    assert_eq!(outcome(bind), "bind=EACCES");
    assert_eq!(bind["anomalies"][0]["id"], "BIND-EACCES-PRIVILEGED-PORT", "{bind}");
}

/// The kernel also keeps a thread's gid and cgroup between its calls: a thread that changes
/// gid, and one moved to another cgroup (which the programs learn from
/// `cgroup:cgroup_attach_task`, not from a call of the thread), must show the new ones on
/// their next calls, and the name a thread gives itself shows at once.
#[test]
fn events_follow_a_gid_change_a_cgroup_move_and_a_rename() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let Some(root) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2").then(|| left.split(' ').nth(4))?
    }) else {
        panic!("no cgroup2 mount in /proc/self/mountinfo");
    };
    let cgroup =
        std::path::Path::new(root).join(format!("wsltrace-identity-{}", std::process::id()));
    std::fs::create_dir(&cgroup).expect("creating a cgroup (run as root)");
    let moved_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cgroup).unwrap());
    // Each socket() is one event: kept identity, new gid, new cgroup, back, new name.
    let script = "import os, socket, sys, ctypes\n\
        s = lambda: socket.socket().close()\n\
        s()\n\
        os.setresgid(65534, 65534, 65534)\n\
        s()\n\
        home = open('/proc/self/cgroup').read().split('0::', 1)[1].split('\\n')[0]\n\
        open(sys.argv[1] + '/cgroup.procs', 'w').write(str(os.getpid()))\n\
        s()\n\
        open(sys.argv[2] + home + '/cgroup.procs', 'w').write(str(os.getpid()))\n\
        s()\n\
        ctypes.CDLL(None).prctl(15, b'renamed', 0, 0, 0)\n\
        s()\n";
    let cgroup_arg = cgroup.to_str().unwrap();
    let out = trace(&["--format", "json", "--", common::python(), "-c", script, cgroup_arg, root]);
    let _ = std::fs::remove_dir(&cgroup);
    assert!(out.status.success(), "{}", out.stderr);
    let events = out.events();
    let sockets: Vec<&Value> = events.iter().filter(|e| e["syscall"] == "socket").collect();
    assert_eq!(sockets.len(), 5, "{}", out.stdout);
    let gids: Vec<&Value> = sockets.iter().map(|e| &e["gid"]).collect();
    assert_eq!(gids, [&json!(0), &json!(65534), &json!(65534), &json!(65534), &json!(65534)]);
    let cgroups: Vec<u64> = sockets.iter().map(|e| e["cgroup_id"].as_u64().unwrap()).collect();
    assert_eq!(cgroups[1], cgroups[0], "{}", out.stdout);
    assert_eq!(cgroups[2], moved_id, "the move to {cgroup_arg} not seen: {}", out.stdout);
    assert_eq!(cgroups[3], cgroups[0], "the move back not seen: {}", out.stdout);
    let comms: Vec<&Value> = sockets.iter().map(|e| &e["comm"]).collect();
    assert_ne!(comms[3], "renamed", "{}", out.stdout);
    assert_eq!(comms[4], "renamed", "{}", out.stdout);
}

/// The kernel keeps a thread's name between its calls too, so a rename must reach its slot
/// however it is made: a thread renamed by another thread of its process, through
/// /proc/self/task/TID/comm or pthread_setname_np (which writes there), shows its new name on
/// its next call, though the rename happened outside any call of its own
/// (`task:task_rename` fires before the name is written: re-reading the task there would
/// keep the old name); and so does a thread that renames itself with prctl.
#[test]
fn a_thread_renamed_by_another_thread_shows_its_new_name() {
    // The worker makes one socket() after each rename; the main thread renames it between.
    let script = r#"
import ctypes, socket, threading
libc = ctypes.CDLL(None)
turn, done = threading.Semaphore(0), threading.Semaphore(0)
def worker():
    for i in range(4):
        if i == 3:
            libc.prctl(15, b'by-itself', 0, 0, 0)
        socket.socket().close()
        done.release()
        if not turn.acquire(timeout=20): return
t = threading.Thread(target=worker, daemon=True); t.start()
def step():
    assert done.acquire(timeout=20), 'the worker is stuck'
step()
open('/proc/self/task/%d/comm' % t.native_id, 'w').write('by-proc-file')
turn.release(); step()
assert libc.pthread_setname_np(ctypes.c_ulong(t.ident), b'by-pthread') == 0
turn.release(); step()
turn.release(); step()
turn.release(); t.join()
"#;
    let out = trace(&["--format", "json", "--", common::python(), "-c", script]);
    assert!(out.status.success(), "{}", out.stderr);
    let events = out.events();
    let comms: Vec<&Value> = events
        .iter()
        .filter(|e| e["syscall"] == "socket" && e["tid"] != e["pid"])
        .map(|e| &e["comm"])
        .collect();
    assert_eq!(comms.len(), 4, "{}", out.stdout);
    assert_ne!(comms[0], "by-proc-file", "{}", out.stdout);
    assert_eq!(comms[1..], [&json!("by-proc-file"), &json!("by-pthread"), &json!("by-itself")]);
}

#[test]
fn no_follow_traces_the_command_only() {
    let out = run_cmd_json(&["--no-follow"], &["fork"]);
    let events = out.events();
    let top = &events[0]["pid"];
    assert!(events.iter().all(|e| &e["pid"] == top), "{}", out.stdout);
    assert!(events.iter().any(|e| e["syscall"] == "accept4"));
}

/// A server blocked in accept() when wsltrace attaches: its accept is reported when it
/// returns, flagged, instead of being lost.
#[test]
fn call_in_flight_at_attach_is_reported() {
    let workload = Workload::start(&["server"]);
    settle();
    let tracer = Tracer::attach(&["--pid", &workload.pid.to_string(), "--format", "json"]);
    let port = workload.port.unwrap();
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the server"));
    assert!(workload.wait().success());
    let out = tracer.finish();
    let events = out.events();
    let accept = &events[0];
    assert_eq!(accept["syscall"], "accept4", "{}", out.stdout);
    assert_eq!(accept["in_flight_at_attach"], true);
    // The thread existed before the attach and made no traced call since: not "refused".
    assert_eq!(accept.get("refused_by"), None, "{accept}");
    assert!(accept["ret"].as_i64().unwrap() >= 0);
    assert_eq!(accept["duration_ns"], Value::Null);
    assert_eq!(accept["args"], json!({}));
    assert!(out.stderr.contains("(1 already in progress at attach)"), "{}", out.stderr);
}

/// A bind failed by a seccomp filter (SECCOMP_RET_ERRNO) never fires `sys_enter`, only
/// `sys_exit`: it is reported from its exit, arguments read from the saved registers, both from
/// the thread that made traced calls before (it has a slot) and from a thread started while
/// traced (its first call). The kernel-side filters apply to it like to any call.
#[test]
fn call_refused_by_seccomp_is_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let demo = ["seccomp", "--addr", addr.as_str()];
    let binds = |opts: &[&str]| -> Vec<Value> {
        let out = run_cmd_json(opts, &demo);
        out.events().into_iter().filter(|e| e["syscall"] == "bind").collect()
    };
    let all = binds(&[]);
    assert_eq!(all.len(), 2, "{all:?}");
    for bind in &all {
        assert_eq!(outcome(bind), "bind=EADDRINUSE");
        assert_eq!(bind["refused_by"], "seccomp", "{bind}");
        assert_eq!(bind["duration_ns"], Value::Null);
        assert_eq!(bind.get("in_flight_at_attach"), None);
        assert_eq!(
            bind["args"],
            json!({"fd": bind["args"]["fd"], "addr": {"family": "AF_INET", "ip": "127.0.0.1", "port": port}, "addrlen": 16})
        );
        assert!(bind["args"]["fd"].as_i64().unwrap() >= 3);
    }
    assert_eq!(all[0]["pid"], all[0]["tid"], "the main thread first");
    assert_ne!(all[0]["tid"], all[1]["tid"], "then a new thread");

    assert_eq!(binds(&["-e", "EADDRINUSE"]).len(), 2);
    assert_eq!(binds(&["--failed", "-s", "bind"]).len(), 2);
    assert!(binds(&["-e", "ECONNREFUSED"]).is_empty());
    // Unselected, a failed bind is not even sent as context.
    assert!(binds(&["-s", "listen"]).is_empty());

    let out = common::run(wsltrace().arg("--").args(common::demo_command(&demo)));
    assert!(out.status.success(), "{}", out.stderr);
    let line = format!(
        "bind(3<TCP>, {{AF_INET, {addr}}}, 16) = -1 EADDRINUSE (Address already in use) <refused by seccomp>"
    );
    assert_eq!(out.stdout.matches(&line).count(), 2, "{}", out.stdout);
}

/// A ring buffer far too small for a burst: every call is either delivered or counted lost,
/// and the loss is visible in the stream.
#[test]
fn ring_overflow_is_counted_exactly() {
    let (count, threads) = (200_000_u64, 2_u64);
    let out = run_cmd_json(
        &["--ring-size", "16K"],
        &["burst", "--count", &count.to_string(), "--threads", &threads.to_string()],
    );
    let (events, lost) = out.summary();
    // Each thread also made one socket() and one close().
    assert_eq!(events + lost, count + 2 * threads, "{}", out.stderr);
    assert!(lost > 0, "a 16K ring cannot hold a 200k burst");
    let records = out.records();
    let reported: u64 =
        records.iter().filter(|r| r["type"] == "loss").map(|r| r["lost"].as_u64().unwrap()).sum();
    assert_eq!(reported, lost, "loss records add up to the total");
    assert_eq!(records.iter().filter(|r| r["type"] == "event").count() as u64, events);
}

#[test]
fn command_exit_status_is_passed_through() {
    let out = trace(&["--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    let out = trace(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
}

/// SIGTERM ends a --pid trace at once, with the summary line.
#[test]
fn sigterm_stops_a_pid_trace() {
    let workload = Workload::start(&["server"]);
    let tracer = Tracer::attach(&["--pid", &workload.pid.to_string()]);
    tracer.signal(Signal::SIGTERM);
    let out = tracer.finish();
    assert_eq!(out.status.code(), Some(128 + 15));
    assert_eq!(out.summary(), (0, 0));
    // The traced server was left alone.
    let port = workload.port.unwrap();
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).expect("server still up"));
    assert!(workload.wait().success());
}

/// With -- CMD, a SIGTERM sent to wsltrace with kill reaches the command; tracing goes on
/// until it exits, and wsltrace exits with its status.
#[test]
fn sigterm_is_passed_on_to_the_command() {
    // The server prints its "listening" line after its socket calls, then blocks in accept.
    let args = [&["--format", "json", "--"][..], &demo_command(&["server"])].concat();
    let tracer = Tracer::start_until(&args, "listening");
    tracer.signal(Signal::SIGTERM);
    let out = tracer.finish();
    assert_eq!(out.status.code(), Some(128 + 15), "{}", out.stderr);
    let exit = out.records().into_iter().find(|r| r["type"] == "exit");
    assert_eq!(exit.map(|e| e["signal"].clone()), Some("SIGTERM".into()), "the command's exit");
}

/// --duration ends a trace whose process never exits (the server waits for a client forever).
#[test]
fn duration_stops_tracing() {
    let workload = Workload::start(&["server"]);
    let started = std::time::Instant::now();
    let out = trace(&["--pid", &workload.pid.to_string(), "--duration", "0.5"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    assert_eq!(out.summary(), (0, 0));
    assert!(
        std::path::Path::new(&format!("/proc/{}", workload.pid)).exists(),
        "the trace ended by itself, the server still runs"
    );
}

/// --failed, --errno and --syscall are applied in the kernel.
#[test]
fn kernel_filters() {
    let failed = run_cmd_json(&["--failed"], &["all"]).events();
    assert!(!failed.is_empty() && failed.iter().all(|e| e["errno"].is_string()));
    assert_eq!(failed.len(), 9, "{failed:?}");

    let refused = run_cmd_json(&["-e", "ECONNREFUSED,enoent"], &["all"]).events();
    let outcomes: Vec<String> = refused.iter().map(outcome).collect();
    assert_eq!(outcomes, ["connect=ECONNREFUSED", "connect=ENOENT"].map(str::to_owned));

    let numeric = run_cmd_json(&["-e", "111"], &["all"]).events();
    assert_eq!(numeric.iter().map(outcome).collect::<Vec<_>>(), ["connect=ECONNREFUSED"]);

    let listens = run_cmd_json(&["-s", "listen,shutdown"], &["all"]).events();
    let outcomes: Vec<String> = listens.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        ["listen=0", "shutdown=0", "listen=0", "listen=EOPNOTSUPP", "shutdown=EINVAL"]
            .map(str::to_owned)
    );
}

/// An option value is what the kernel wrote back, whatever the size of the caller's buffer:
/// SO_PEERCRED asked into 64 bytes is its 12, SO_RCVBUF into 2 bytes its first 2. The child
/// prints what it got (lengths, the short value's bytes) for the trace to be checked against.
#[test]
fn option_values_are_what_the_kernel_wrote_back() {
    let client = "\
import os, socket, sys
a, b = socket.socketpair()
cred = a.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 64)
short = a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2)
print(len(cred), len(short), int.from_bytes(short, sys.byteorder), os.getpid(), file=sys.stderr)
";
    let out = run(wsltrace()
        .args(["--format", "json", "-s", "getsockopt", "--", python(), "-c"])
        .arg(client));
    assert!(out.status.success(), "{}", out.stderr);
    let got: Vec<u64> = out
        .stderr
        .lines()
        .find_map(|l| l.split(' ').map(str::parse).collect::<Result<Vec<u64>, _>>().ok())
        .unwrap_or_else(|| panic!("the child's line is missing: {}", out.stderr));
    let [cred_len, short_len, short_value, pid] = got[..] else { panic!("{got:?}") };
    assert_eq!((cred_len, short_len), (12, 2));
    let events = out.events();
    let [cred, short] = &events[..] else { panic!("two getsockopt events: {}", out.stdout) };
    assert_eq!(cred["args"]["optname"], "SO_PEERCRED");
    assert_eq!(cred["args"]["optlen"], 12, "{cred}");
    assert_eq!(cred["args"]["value"]["pid"], pid, "{cred}");
    assert_eq!(short["args"]["optname"], "SO_RCVBUF");
    assert_eq!(short["args"]["optlen"], 2, "{short}");
    // Too short for an int: its bytes as written.
    let bytes = (short_value as u16).to_ne_bytes();
    assert_eq!(short["args"]["value"], json!({"hex": format!("{:02x}{:02x}", bytes[0], bytes[1])}));
}

/// -o writes JSON Lines to a file while the terminal gets text; both hold the same events.
#[test]
fn output_file_and_terminal_agree() {
    let dir = std::env::temp_dir().join(format!("wsltrace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.jsonl");
    let out = common::run(wsltrace().args(["demo", "refused", "-o", file.to_str().unwrap()]));
    assert!(out.status.success(), "{}", out.stderr);
    let recorded = common::parse_records(&std::fs::read_to_string(&file).unwrap());
    let events: Vec<&Value> = recorded.iter().filter(|r| r["type"] == "event").collect();
    // Event lines only: findings are indented lines under them.
    let text: Vec<&str> = out.stdout.lines().filter(|l| l.contains(") = ")).collect();
    assert_eq!(events.len(), text.len());
    for (ev, line) in events.iter().zip(&text) {
        assert!(line.contains(&format!("{}(", ev["syscall"].as_str().unwrap())), "{line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad input: one line naming the problem and the fix, non-zero exit.
#[test]
fn errors_are_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--pid", "999999999"], "no such process: 999999999"),
        (&["-e", "ECONNREFUSD", "--pid", "1"], "did you mean ECONNREFUSED?"),
        (&["-s", "conect", "--pid", "1"], "unknown syscall 'conect'"),
        (&[], "nothing to trace: give --pid PID or -- CMD"),
        (&["--ring-size", "3M", "--pid", "1"], "must be a power of two"),
    ];
    for (args, message) in cases {
        let out = trace(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }
}

/// Without privileges: refuse with the fix, before touching the kernel.
#[test]
fn unprivileged_users_are_told_to_use_sudo() {
    use std::os::unix::process::CommandExt as _;
    let out = common::run(wsltrace().args(["--pid", "1"]).uid(65534).gid(65534));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr.trim(),
        "wsltrace: error: wsltrace needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) to load eBPF programs: run it with sudo"
    );
}
