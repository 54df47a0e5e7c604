//! Issue 12's DNS and DrvFs rules against the running kernel, with real clients: glibc's
//! resolver (`getent hosts`) against a nameserver that never answers, and AF_UNIX calls on a
//! Windows drive. This machine is native Linux, so the WSL side is reproduced, and each test
//! says how: a network namespace with 10.255.255.254 on lo (WSL's DNS tunnel address), a
//! nameserver there that reads queries and never answers (as the tunnel does when Windows
//! cannot resolve), `wsltrace --emulate` for the tunnel's dropped replies and for the Windows
//! drives (the emulated profile declares /mnt/ as DrvFs). The calls and errnos are the kernel's.

mod common;

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
};

use common::{Output, python, run, wsltrace};
use serde_json::Value;

/// Emulated runs clean up each other's stale cgroups: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A UDP nameserver on 10.255.255.254:53 that answers NXDOMAIN or never answers.
const NAMESERVER: &str = r#"
import os, socket, sys
answer = sys.argv[1] == "answer"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.255.255.254", 53))
print("ready", os.getpid(), file=sys.stderr, flush=True)
while True:
    q, peer = s.recvfrom(512)
    if not answer or len(q) < 12:
        continue
    end = 12
    while end < len(q) and q[end] != 0:
        end += q[end] + 1
    # The question (name, type, class), flags QR, RD as asked, RA, RCODE 3 (NXDOMAIN).
    flags = bytes([0x80 | (q[2] & 0x01), 0x83])
    s.sendto(q[:2] + flags + q[4:6] + bytes(6) + q[12:end + 5], peer)
"#;

/// A process started in new namespaces by `unshare`, which printed "ready PID"; killed on drop.
struct Holder {
    child: Child,
    pid: String,
    dir: Option<PathBuf>,
}

impl Holder {
    fn start(unshare: &[&str], script: &str, dir: Option<PathBuf>) -> Holder {
        let mut child = Command::new("unshare")
            .args(unshare)
            .args(["sh", "-c", script])
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().expect("stderr")).read_line(&mut line).expect("read");
        let pid = line.strip_prefix("ready ").unwrap_or_else(|| panic!("holder said {line:?}"));
        Holder { pid: pid.trim().to_owned(), child, dir }
    }

    /// The nameserver, in a network namespace with 10.255.255.254/32 on lo (where WSL's
    /// tunnel listens) and a mount namespace whose /etc/resolv.conf names it with
    /// `options timeout:1 attempts:1` (this machine's own says nothing of timeouts: 5 s).
    fn nameserver(answer: bool) -> Holder {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("wsltrace-dns-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("resolv.conf");
        std::fs::write(&conf, "nameserver 10.255.255.254\noptions timeout:1 attempts:1\n").unwrap();
        let server = dir.join("server.py");
        std::fs::write(&server, NAMESERVER).unwrap();
        let mode = if answer { "answer" } else { "silent" };
        let script = format!(
            "ip link set lo up && ip addr add 10.255.255.254/32 dev lo && mount --bind {} /etc/resolv.conf && exec {} {} {mode}",
            conf.display(),
            python(),
            server.display()
        );
        Holder::start(&["-n", "-m"], &script, Some(dir))
    }

    /// A mount namespace with a tmpfs on /mnt holding /mnt/c/agent.sock: a socket file whose
    /// listener is gone (the process that bound it exited), standing for one Windows made,
    /// whose listener Linux cannot reach either.
    fn drive() -> Holder {
        let bind = "import socket; socket.socket(socket.AF_UNIX).bind('/mnt/c/agent.sock')";
        let script = format!(
            "mount -t tmpfs wsltrace-drive /mnt && mkdir /mnt/c && {} -c \"{bind}\" && echo ready $$ >&2 && exec sleep 120",
            python()
        );
        Holder::start(&["-m"], &script, None)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `wsltrace OPTS --format json -- nsenter -t PID -n -m getent hosts wsltrace.test`.
fn lookup(ns: &Holder, opts: &[&str]) -> Output {
    run(wsltrace().args(opts).args(["--format", "json", "--", "nsenter", "-t", &ns.pid]).args([
        "-n",
        "-m",
        "getent",
        "hosts",
        "wsltrace.test",
    ]))
}

fn ids(ev: &Value) -> Vec<String> {
    let found = ev["anomalies"].as_array().into_iter().flatten();
    found.map(|a| a["id"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Each UDP socket connected to the nameserver: (seconds from its connect to its close, the
/// findings on the close).
fn lookups(out: &Output) -> Vec<(f64, Vec<String>)> {
    let events = out.events();
    let to_server = |e: &&Value| {
        e["sock"]["type"] == "SOCK_DGRAM"
            && e["sock"]["peer"]
                == serde_json::json!({"family":"AF_INET","ip":"10.255.255.254","port":53})
    };
    let mut connected = None;
    let mut found = Vec::new();
    for ev in events.iter().filter(to_server) {
        let ts = ev["ts_ns"].as_u64().unwrap();
        match ev["syscall"].as_str() {
            Some("connect") => connected = Some(ts),
            Some("close") => {
                let since = connected.take().expect("a connect before the close");
                found.push(((ts - since) as f64 / 1e9, ids(ev)));
            }
            _ => {}
        }
    }
    assert!(
        !found.is_empty(),
        "no lookup to 10.255.255.254:53 in:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    found
}

/// glibc connects a UDP socket per lookup and, with no answer, closes it after the caller's
/// `options timeout:1`: every such close is flagged, by the WSL2 rule when judged as on WSL2.
#[test]
fn silent_nameserver_leaves_lookups_unanswered() {
    let ns = Holder::nameserver(false);
    for (assume, rule) in [("linux", "DNS-NO-ANSWER"), ("wsl2,nat", "WSL2-DNS-TUNNEL-NO-ANSWER")] {
        let out = lookup(&ns, &["--assume", assume]);
        for (secs, ids) in lookups(&out) {
            assert!((0.95..3.0).contains(&secs), "{assume}: closed after {secs} s");
            assert_eq!(ids, [rule], "{assume}");
        }
    }
}

/// The same lookups answered (NXDOMAIN) close within milliseconds: no finding anywhere.
#[test]
fn answered_lookups_are_not_flagged() {
    let ns = Holder::nameserver(true);
    for assume in ["linux", "wsl2,nat", "wsl2,mirrored"] {
        let out = lookup(&ns, &["--assume", assume]);
        for (secs, ids) in lookups(&out) {
            assert!(secs < 0.5, "{assume}: an answered lookup took {secs} s");
            assert!(ids.is_empty(), "{assume}: {ids:?}");
        }
        let flagged: Vec<Vec<String>> =
            out.events().iter().map(ids).filter(|ids| !ids.is_empty()).collect();
        // glibc looks for nscd first; its absence is no finding either.
        assert!(flagged.is_empty(), "{assume}: {flagged:?}");
    }
}

/// Emulated: the nameserver answers, but the dns-tunnel-drop quirk drops its replies to the
/// emulated command (as WSL's tunnel drops what Windows could not resolve): the run judged as
/// on WSL2 flags the lookups.
#[test]
fn emulated_tunnel_drop_is_flagged() {
    let _serial = serial();
    let ns = Holder::nameserver(true);
    let opts = ["--emulate", "wsl2,dns-tunnel-drop", "--dns-server", "10.255.255.254"];
    let out = lookup(&ns, &opts);
    assert!(
        out.stderr.contains("dns-tunnel-drop (nameserver 10.255.255.254:53)"),
        "{}",
        out.stderr
    );
    for (secs, ids) in lookups(&out) {
        assert!(secs >= 0.95, "closed after {secs} s");
        assert_eq!(ids, ["WSL2-DNS-TUNNEL-NO-ANSWER"]);
    }
    let dropped = out.stderr.lines().find_map(|l| {
        l.strip_prefix("wsltrace: emulated (replies dropped): dns-tunnel-drop ")?
            .parse::<u64>()
            .ok()
    });
    assert!(dropped.is_some_and(|n| n >= 1), "{}", out.stderr);
}

/// A unix connect and its events: `wsltrace OPTS --format json -- nsenter -t PID -m python3 -c
/// CONNECT` in the drive's mount namespace.
fn connect_on_drive(drive: &Holder, opts: &[&str]) -> Vec<(String, Vec<String>, String)> {
    let code = "import socket\ntry:\n    socket.socket(socket.AF_UNIX).connect('/mnt/c/agent.sock')\nexcept OSError as e:\n    print(e)";
    let out = run(wsltrace().args(opts).args([
        "--format",
        "json",
        "--",
        "nsenter",
        "-t",
        &drive.pid,
        "-m",
        python(),
        "-c",
        code,
    ]));
    assert!(out.status.success(), "{}", out.stderr);
    let connects = out
        .events()
        .into_iter()
        .filter(|e| e["syscall"] == "connect" && e["args"]["addr"]["path"] == "/mnt/c/agent.sock");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let found: Vec<_> = connects
        .map(|e| (text(&e["errno"]), ids(&e), text(&e["anomalies"][0]["detail"])))
        .collect();
    assert_eq!(found.len(), 1, "{}", out.stdout);
    found
}

/// A real connect to a socket file nobody listens on, under the emulated Windows drive:
/// refused by the kernel, flagged as a Windows-made socket; the same path on a plain tmpfs
/// (no emulation) is an ordinary stale socket.
#[test]
fn unix_connect_on_a_windows_drive() {
    let drive = Holder::drive();
    {
        let _serial = serial();
        let found = connect_on_drive(&drive, &["--emulate", "wsl2"]);
        assert_eq!(
            (found[0].0.as_str(), found[0].1.as_slice()),
            ("ECONNREFUSED", &["UNIX-CONNECT-DRVFS".to_owned()][..])
        );
    }
    let plain = connect_on_drive(&drive, &["--assume", "wsl2"]);
    assert_eq!(plain[0].1, ["UNIX-CONNECT-STALE-SOCKET"]);
}

/// `--emulate wsl2`: the unix-bind-drvfs quirk refuses a bind under /mnt/ with EOPNOTSUPP, and
/// the DrvFs rule explains it, since the run declares /mnt/ a Windows drive; a bind under /tmp
/// goes through without a finding.
#[test]
fn emulated_drvfs_bind_is_explained() {
    let _serial = serial();
    let tmp = std::env::temp_dir().join(format!("wsltrace-drvfs-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let linux_path = tmp.join("app.sock").display().to_string();
    let drive_path = format!("/mnt/wsltrace-test-{}/app.sock", std::process::id());
    let code = "import socket, sys\nfor p in sys.argv[1:]:\n    try:\n        socket.socket(socket.AF_UNIX).bind(p)\n    except OSError as e:\n        print(e)";
    let out = run(wsltrace()
        .args(["--emulate", "wsl2", "--format", "json", "--", python(), "-c", code])
        .args([&drive_path, &linux_path]));
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "unix paths under /mnt/ stand for a Windows drive (DrvFs, 9p) in the rules (emulated)"
        ),
        "{}",
        out.stderr
    );
    let binds: Vec<Value> = out.events().into_iter().filter(|e| e["syscall"] == "bind").collect();
    let on = |path: &str| {
        binds
            .iter()
            .find(|e| e["args"]["addr"]["path"] == path)
            .unwrap_or_else(|| panic!("no bind of {path}: {}", out.stdout))
    };
    let refused = on(&drive_path);
    assert_eq!(
        (refused["errno"].as_str(), refused["refused_by"].as_str()),
        (Some("EOPNOTSUPP"), Some("seccomp"))
    );
    assert!(ids(refused).contains(&"BIND-EACCES-UNIX-DRVFS".to_owned()), "{refused}");
    let bound = on(&linux_path);
    assert!(bound["errno"].is_null() && ids(bound).is_empty(), "{bound}");
}
