//! What a traced server's sockets are: a client's local port (to match it with the server's
//! accept), socketpair ends, and an nginx master's workers that already run when wsltrace
//! attaches with `-f --pid`.

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Tracer, Workload, run_cmd_json, settle, traced};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

fn port(addr: &Value) -> u64 {
    addr["port"].as_u64().unwrap_or_else(|| panic!("no port in {addr}"))
}

/// The connect of the demo's TCP client shows the port the kernel gave it, and it is the port
/// the server's accept4 reports for its peer.
#[test]
fn client_local_port_matches_the_servers_accept() {
    let out = run_cmd_json(&[], &["all"]);
    let events = out.events();
    let connect = events
        .iter()
        .find(|e| e["syscall"] == "connect" && e["ret"] == 0 && e["sock"]["family"] == "AF_INET")
        .unwrap_or_else(|| panic!("no TCP connect:\n{}", out.stdout));
    let accept = events
        .iter()
        .find(|e| e["syscall"] == "accept4" && e["ret"].as_i64().is_some_and(|r| r >= 0))
        .expect("an accept4");
    let local = port(&connect["sock"]["local"]);
    assert_ne!(local, 0);
    assert_eq!(connect["sock"]["local"]["ip"], "127.0.0.1");
    assert_eq!(local, port(&accept["args"]["addr"]), "{connect}\n{accept}");
    assert_eq!(local, port(&accept["sock"]["peer"]));
}

/// socketpair ends name each other by inode, as strace -yy does.
#[test]
fn socketpair_ends_show_peer_inodes() {
    let out = traced(&[], &[], &["all"]);
    assert!(out.status.success(), "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("socketpair("))
        .unwrap_or_else(|| panic!("no socketpair:\n{}", out.stdout));
    // [3<UNIX:[A->B]>, 4<UNIX:[B->A]>]
    let ends: Vec<(u64, u64)> = line
        .split("UNIX:[")
        .skip(1)
        .map(|rest| {
            let (a, b) = rest.split_once(']').and_then(|(pair, _)| pair.split_once("->")).unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    let [(a, b), (c, d)] = ends[..] else { panic!("{line}") };
    assert!(line.contains(&format!("[3<UNIX:[{a}->{b}]>, 4<UNIX:[{c}->{d}]>]")), "{line}");
    assert_ne!(a, b);
    assert_eq!((a, b), (d, c), "{line}");
    // Later calls on the fds show the same.
    let tag = format!("(3<UNIX:[{a}->{b}]>");
    assert!(out.stdout.lines().any(|l| l.contains("getsockopt") && l.contains(&tag)));
}

/// The accept a server was blocked in when wsltrace attached: its fd is described.
#[test]
fn accept_in_flight_at_attach_is_described() {
    let workload = Workload::start(&["server"]);
    settle();
    let mut tracer = Tracer::attach(&["--pid", &workload.pid.to_string(), "--format", "json"]);
    let server_port = u64::from(workload.port.unwrap());
    let client = std::net::TcpStream::connect(("127.0.0.1", workload.port.unwrap())).unwrap();
    let client_port = u64::from(client.local_addr().unwrap().port());
    // The connection is up (the server holds it until the client hangs up) while wsltrace
    // reports the accept: read up to its first event, a byte at a time so nothing else is
    // taken.
    let stdout = tracer.child.stdout.as_mut().unwrap();
    let accept = loop {
        let mut line = Vec::new();
        let mut byte = [0_u8; 1];
        while std::io::Read::read(stdout, &mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let record: Value = serde_json::from_slice(&line).unwrap();
        if record["type"] == "event" {
            break record;
        }
    };
    drop(client);
    assert!(workload.wait().success());
    tracer.finish();
    assert_eq!(
        (&accept["syscall"], &accept["in_flight_at_attach"]),
        (&"accept4".into(), &true.into())
    );
    let sock = &accept["sock"];
    assert_eq!((port(&sock["local"]), port(&sock["peer"])), (server_port, client_port), "{accept}");
}

/// An nginx master with its workers, in a temporary prefix; stopped (workers too) on drop,
/// also when the test fails.
struct Nginx {
    master: Child,
    workers: Vec<u32>,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    fn start() -> Nginx {
        let dir = std::env::temp_dir().join(format!("wsltrace-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A free loopback port (freed again for nginx).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 2;\nuser root;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let master = Command::new("nginx")
            .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c"])
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx (installed by `cargo xtask test`)");
        let mut nginx = Nginx { master, workers: Vec::new(), port, dir };
        // Up when it answers and both workers exist.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            nginx.workers = children(nginx.master.id());
            let answers = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if answers && nginx.workers.len() == 2 {
                return nginx;
            }
            let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "nginx did not come up:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers and exits; anything left is killed.
        let _ = kill(Pid::from_raw(self.master.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.master.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
        for &worker in &self.workers {
            let _ = kill(Pid::from_raw(worker as i32), Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut found: Vec<u32> = procfs::process::all_processes()
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|p| p.stat().ok())
        .filter(|s| s.ppid == parent as i32)
        .map(|s| s.pid as u32)
        .collect();
    found.sort_unstable();
    found
}

/// `-f --pid <master>` takes in the workers that already run: their accepts of curl's
/// connections are traced, and stderr names the pids added.
#[test]
fn follow_forks_takes_in_existing_nginx_workers() {
    let nginx = Nginx::start();
    let master = nginx.master.id().to_string();
    let tracer = Tracer::attach(&["-f", "--pid", &master, "--format", "json"]);
    let workers = nginx.workers.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    assert!(
        tracer.head().contains(&format!("also tracing existing descendants: pids {workers}")),
        "{}",
        tracer.head()
    );
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    for _ in 0..3 {
        let curl = Command::new("curl").args(["-sf", &url]).output().expect("run curl");
        assert_eq!(String::from_utf8_lossy(&curl.stdout), "ok\n");
    }
    settle();
    tracer.signal(Signal::SIGINT);
    let out = tracer.finish();
    let events = out.events();
    let accepted: Vec<&Value> = events
        .iter()
        .filter(|e| e["syscall"] == "accept4" && e["ret"].as_i64().is_some_and(|r| r >= 0))
        .collect();
    assert_eq!(accepted.len(), 3, "{}\n{}", out.stdout, out.stderr);
    for ev in accepted {
        let pid = ev["pid"].as_u64().unwrap() as u32;
        assert!(nginx.workers.contains(&pid), "accepted by {pid}, not a worker: {ev}");
        assert_eq!(port(&ev["sock"]["local"]), u64::from(nginx.port), "{ev}");
    }
}
