//! Live facts read from this test process and the children it starts.

use super::*;

#[test]
fn local_addresses_from_proc_files() {
    let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n  +-- 127.0.0.0/8 2 0 2\n     +-- 127.0.0.0/31 1 0 0\n        |-- 127.0.0.0\n           /8 host LOCAL\n        |-- 127.0.0.1\n           /32 host LOCAL\n     |-- 172.17.0.2\n        /32 host LOCAL\n";
    assert_eq!(local_ipv4(fib), ["127.0.0.1", "172.17.0.2"].map(|a| a.parse::<IpAddr>().unwrap()));
    let v6 = "00000000000000000000000000000001 01 80 10 80       lo\n";
    assert_eq!(local_ipv6(v6), vec!["::1".parse::<IpAddr>().unwrap()]);
}

#[test]
fn live_reads_our_own_process() {
    let mut live = Live::default();
    let me = std::process::id();
    assert!(live.capabilities(me).is_some());
    assert_eq!(live.mount_fstype(me, "/proc/self").as_deref(), Some("proc"));
    assert!(live.netns_of(me).is_some());
    let addrs = live.addresses(me, None).unwrap();
    assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
}

#[test]
fn finds_a_listener_and_its_owner() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut live = Live::default();
    let found = live.sockets_on_port(port, Proto::Tcp).unwrap();
    let ours = found.iter().find(|s| s.state == Some(SockState::Listen)).expect("our listener");
    assert_eq!(ours.addr, listener.local_addr().unwrap());
    assert_eq!(ours.owner.as_ref().map(|o| o.pid), Some(std::process::id()));
}

/// A listener in another network namespace is found with its namespace and owner; a
/// TIME_WAIT socket on the same port here is a socket on the port, not a listener.
#[test]
fn listeners_in_other_namespaces_and_time_wait_here() {
    use std::os::unix::process::CommandExt as _;
    let addr = crate::facts::sockets::tests::time_wait_socket();
    let port = addr.port();

    // `sleep` in a namespace of its own, holding a listener on 0.0.0.0:PORT made before
    // exec (without CLOEXEC, so that it is inherited).
    let mut command = std::process::Command::new("sleep");
    command.arg("30");
    // SAFETY: between fork and exec the child only makes system calls on its own memory.
    unsafe {
        command.pre_exec(move || {
            let any = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr { s_addr: 0 },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let fd = if libc::unshare(libc::CLONE_NEWNET) == 0 {
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0)
            } else {
                -1
            };
            if fd < 0
                || libc::bind(fd, (&raw const any).cast(), len) != 0
                || libc::listen(fd, 8) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut live = Live::default();
    let here = live.netns_of(std::process::id()).unwrap();
    let theirs = live.netns_of(child.id()).unwrap();
    assert_ne!(here, theirs);
    let ours = |found: Vec<TableSocket>| -> Vec<TableSocket> {
        found.into_iter().filter(|s| s.netns == here || s.netns == theirs).collect()
    };

    let listeners = ours(live.listeners_on_port(port).unwrap());
    let [listening] = &listeners[..] else { panic!("{listeners:#?}") };
    assert_eq!(listening.netns, theirs);
    assert_eq!(listening.addr, SocketAddr::from(([0, 0, 0, 0], port)));
    assert_eq!(listening.state, Some(SockState::Listen));
    assert_eq!(listening.accept_queue, Some((0, 8)));
    let owner = listening.owner.as_ref().expect("the listener's owner");
    assert_eq!((owner.pid, owner.comm.as_str()), (child.id(), "sleep"));

    let mut all = ours(live.sockets_on_port(port, Proto::Tcp).unwrap());
    all.sort_by_key(|s| s.netns != here);
    let [time_wait, other] = &all[..] else { panic!("{all:#?}") };
    let expected = TableSocket {
        netns: here,
        addr,
        state: Some(SockState::TimeWait),
        inode: 0,
        owner: None,
        accept_queue: None,
    };
    assert_eq!((time_wait, other), (&expected, listening));
    // What the trait's own answer from all the sockets gives.
    struct AllOnly<'a>(&'a mut Live);
    impl System for AllOnly<'_> {
        fn sockets_on_port(&mut self, port: u16, proto: Proto) -> Option<Vec<TableSocket>> {
            self.0.sockets_on_port(port, proto)
        }
    }
    assert_eq!(ours(AllOnly(&mut live).listeners_on_port(port).unwrap()), listeners);

    child.kill().unwrap();
    child.wait().unwrap();
}

/// The unix listener is found in the caller's namespace's tables, with its owner.
#[test]
fn finds_a_unix_listener_and_its_owner() {
    let dir = std::env::temp_dir().join(format!("wsltrace-system-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l.sock");
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let me = std::process::id();
    let path = path.to_str().unwrap();
    let target = Live::default().unix_target(me, None, path).unwrap();
    assert!(target.exists && target.is_socket && target.listener_same_file, "{target:?}");
    assert_eq!(target.listener.map(|o| o.pid), Some(me));
    drop(listener);
    // A test forking at the same time (pre_exec) holds our fds until its child execs: the
    // socket lives on in that child for a moment.
    let mut stale = Live::default().unix_target(me, None, path).unwrap();
    for _ in 0..100 {
        if stale.listener.is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        stale = Live::default().unix_target(me, None, path).unwrap();
    }
    assert!(stale.exists && stale.listener.is_none(), "{stale:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A caller that has exited (a zombie has no /proc/PID/root) from our mount namespace
/// still sees the file: what the look-up falls back to when the caller exits mid-way.
#[test]
fn an_exited_caller_sees_the_file_through_our_namespace() {
    let path = std::env::temp_dir().join(format!("wsltrace-exited-{}", std::process::id()));
    std::fs::write(&path, "").unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    let zombie = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
    };
    while !zombie() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let ours = super::super::namespaces::read(std::process::id()).map(|ns| ns.mnt);
    let target = Live::default().unix_target(pid, ours, path.to_str().unwrap()).unwrap();
    assert!(target.exists && !target.is_socket, "{target:?}");
    assert!(Live::default().unix_target(pid, None, path.to_str().unwrap()).is_none());
    child.wait().unwrap();
    std::fs::remove_file(&path).unwrap();
}
