//! Per-process fd table, kept current from the traced calls, so any event with an fd also says
//! what the fd is (lsof inside the tracer).
//!
//! Seeded from the snapshot at attach; socket/socketpair/accept create entries, bind/listen/
//! connect/getsockname/getpeername refine them, close removes them, fork copies the table.
//! dup/dup2/fcntl(F_DUPFD) are not traced: an fd the table has never seen is looked up once in
//! /proc (through [`SocketLookup`]); an fd that dup2 replaced keeps its old entry until a call on
//! it fails with EBADF/ENOTSOCK or the fd is closed or reused by socket/accept.

use std::collections::HashMap;

use tracer_common::Syscall;

use crate::{
    decode::{errno::Errno, state::SockState},
    event::{Event, KnownAddr, OptValue, PendingConnect, SockAddr, SocketInfo},
};

/// Looks up what an fd of a live process is (lazily, for fds the table has not seen created).
pub trait SocketLookup {
    fn describe(&mut self, pid: u32, fd: i32) -> Option<SocketInfo>;

    /// The local and remote ends of a live socket now (the port a connect was given).
    fn ends(&mut self, _pid: u32, _fd: i32) -> Option<(Option<SockAddr>, Option<SockAddr>)> {
        None
    }

    /// The inode of a live socket (the peer of its socketpair twin).
    fn inode(&mut self, _pid: u32, _fd: i32) -> Option<u64> {
        None
    }
}

/// No look-up: only what the traced calls tell.
pub struct NoLookup;

impl SocketLookup for NoLookup {
    fn describe(&mut self, _pid: u32, _fd: i32) -> Option<SocketInfo> {
        None
    }
}

pub struct FdTable {
    procs: HashMap<u32, HashMap<i32, SocketInfo>>,
    /// comm and network namespace of each process, as of its last event.
    who: HashMap<u32, (String, Option<u32>)>,
    /// Non-blocking connects under way (EINPROGRESS), by (pid, fd): the call that reports
    /// their outcome (SO_ERROR, a second connect) carries them.
    connecting: HashMap<(u32, i32), PendingConnect>,
    lookup: Box<dyn SocketLookup>,
}

/// A socket a traced process holds, as the trace knows it at this point of the stream.
pub struct Tracked<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub netns: Option<u32>,
    pub fd: i32,
    pub sock: &'a SocketInfo,
}

const EBADF: u16 = 9;
const ENOTSOCK: u16 = 88;
const EINPROGRESS: u16 = 115;
const EALREADY: u16 = 114;
const EISCONN: u16 = 106;

impl FdTable {
    pub fn new(lookup: Box<dyn SocketLookup>) -> Self {
        FdTable { procs: HashMap::new(), who: HashMap::new(), connecting: HashMap::new(), lookup }
    }

    /// What the process held when tracing started.
    pub fn seed(&mut self, pid: u32, sockets: &[SocketInfo]) {
        let table = self.procs.entry(pid).or_default();
        for sock in sockets {
            if let Some(fd) = sock.fd {
                table.insert(fd, sock.clone());
            }
        }
    }

    pub fn get(&self, pid: u32, fd: i32) -> Option<&SocketInfo> {
        self.procs.get(&pid)?.get(&fd)
    }

    /// What `fd` of `pid` is now, from the system (live; nothing offline), without changing
    /// the table.
    pub fn look_up(&mut self, pid: u32, fd: i32) -> Option<SocketInfo> {
        self.lookup.describe(pid, fd)
    }

    /// The non-blocking connects under way: (pid, fd, the connect).
    pub fn all_connecting(&self) -> impl Iterator<Item = (u32, i32, &PendingConnect)> {
        self.connecting.iter().map(|((pid, fd), c)| (*pid, *fd, c))
    }

    /// A forked child inherits its parent's fds.
    pub fn fork(&mut self, parent: u32, child: u32) {
        // Threads share the table already; their creation fires the fork tracepoint too.
        if std::path::Path::new(&format!("/proc/{parent}/task/{child}")).exists() {
            return;
        }
        if let Some(table) = self.procs.get(&parent).cloned() {
            self.procs.insert(child, table);
        }
        let inherited: Vec<(i32, PendingConnect)> = (self.connecting.iter())
            .filter(|((pid, _), _)| *pid == parent)
            .map(|((_, fd), pending)| (*fd, pending.clone()))
            .collect();
        for (fd, pending) in inherited {
            self.connecting.insert((child, fd), pending);
        }
    }

    pub fn exit(&mut self, pid: u32) {
        self.procs.remove(&pid);
        self.who.remove(&pid);
        self.connecting.retain(|(p, _), _| *p != pid);
    }

    /// What `fd` of `pid` is (looked up in /proc the first time it is seen).
    pub fn socket(&mut self, pid: u32, fd: i32) -> Option<SocketInfo> {
        self.entry(pid, fd).map(|sock| sock.clone())
    }

    /// The non-blocking connect under way on `fd` of `pid`, if any.
    pub fn connecting(&self, pid: u32, fd: i32) -> Option<PendingConnect> {
        self.connecting.get(&(pid, fd)).cloned()
    }

    /// The command of `pid`, as of its last event.
    pub fn comm(&self, pid: u32) -> Option<&str> {
        self.who.get(&pid).map(|(comm, _)| comm.as_str())
    }

    /// Every socket the traced processes hold, in no particular order.
    pub fn sockets(&self) -> impl Iterator<Item = Tracked<'_>> {
        self.procs.iter().flat_map(move |(pid, table)| {
            let (comm, netns) = self.who.get(pid).map_or(("?", None), |(c, n)| (c.as_str(), *n));
            table.iter().map(move |(fd, sock)| Tracked { pid: *pid, comm, netns, fd: *fd, sock })
        })
    }

    /// The entry for `fd`, looked up in /proc the first time it is seen.
    fn entry(&mut self, pid: u32, fd: i32) -> Option<&mut SocketInfo> {
        let known = self.procs.get(&pid).is_some_and(|t| t.contains_key(&fd));
        if !known {
            let found = self.lookup.describe(pid, fd)?;
            self.procs.entry(pid).or_default().insert(fd, found);
        }
        self.procs.get_mut(&pid)?.get_mut(&fd)
    }

    /// Annotates `ev.sock` and updates the table from the call. An annotation the event
    /// already carries (a recording) is kept.
    pub fn apply(&mut self, ev: &mut Event) {
        if ev.in_flight_at_attach {
            self.accepted_in_flight(ev);
            return;
        }
        let recorded = ev.sock.take();
        let recorded_connect = ev.connect.take();
        self.update(ev);
        if recorded.is_some() {
            ev.sock = recorded;
        }
        if recorded_connect.is_some() {
            ev.connect = recorded_connect;
        }
    }

    /// An accept in flight at attach comes without arguments, but the fd it returned is
    /// there to be looked up.
    fn accepted_in_flight(&mut self, ev: &mut Event) {
        let accept = matches!(ev.syscall, Syscall::Accept | Syscall::Accept4);
        let Some(fd) = i32::try_from(ev.ret).ok().filter(|_| accept && ev.errno.is_none()) else {
            return;
        };
        // The fd is new: whatever the table held under that number was closed before.
        if let Some(table) = self.procs.get_mut(&ev.pid) {
            table.remove(&fd);
        }
        let found = self.entry(ev.pid, fd).cloned();
        if ev.sock.is_none() {
            ev.sock = found;
        }
    }

    /// The local end a connect gave the socket (its ephemeral port), asked of the live socket
    /// when the table does not know it: a few syscalls per connect, no table dump. `None`
    /// when the fd is no longer the socket that connected (closed, reused for another peer).
    fn local_after_connect(
        &mut self,
        pid: u32,
        fd: i32,
        to: Option<&SockAddr>,
    ) -> Option<SockAddr> {
        let known = self.procs.get(&pid).and_then(|t| t.get(&fd));
        let inet = known.is_none_or(|s| matches!(s.family.as_str(), "AF_INET" | "AF_INET6"));
        let bound = known.and_then(|s| s.local.as_ref()).is_some_and(|l| port(l) != Some(0));
        if !inet || bound {
            return None;
        }
        let (local, peer) = self.lookup.ends(pid, fd)?;
        // Still connecting (SYN_SENT) has no peer yet; a different peer is another socket.
        if let (Some(peer), Some(to)) = (&peer, to)
            && !same_endpoint(peer, to)
        {
            return None;
        }
        local.filter(|l| port(l).is_some_and(|p| p != 0))
    }

    fn update(&mut self, ev: &mut Event) {
        let pid = ev.pid;
        // Context-only calls carry no namespaces: keep what an earlier call said.
        let netns = ev.ns.map(|ns| ns.net).or_else(|| self.who.get(&pid).and_then(|w| w.1));
        self.who.insert(pid, (ev.comm.clone(), netns));
        let ok = ev.errno.is_none();
        let a = &ev.args;
        let ret_fd = i32::try_from(ev.ret).ok().filter(|_| ok);
        match ev.syscall {
            Syscall::Socket => {
                if let Some(fd) = ret_fd {
                    let sock = SocketInfo {
                        fd: Some(fd),
                        family: a.domain.clone().unwrap_or_default(),
                        sock_type: a.sock_type.clone(),
                        protocol: a.protocol.clone(),
                        flags: a.flags.clone(),
                        ..SocketInfo::default()
                    };
                    self.procs.entry(pid).or_default().insert(fd, sock.clone());
                    self.connecting.remove(&(pid, fd));
                    ev.sock = Some(sock);
                }
            }
            Syscall::Socketpair => {
                if let (true, Some(fds)) = (ok, a.fds) {
                    // Each end names the other by inode, as strace -yy does.
                    let inodes = match ev.pair_inodes {
                        Some(read) => read.map(Some),
                        None => fds.map(|fd| self.lookup.inode(pid, fd)),
                    };
                    for (i, fd) in fds.into_iter().enumerate() {
                        let sock = SocketInfo {
                            inode: inodes[i],
                            peer_inode: inodes[1 - i],
                            fd: Some(fd),
                            family: a.domain.clone().unwrap_or_default(),
                            sock_type: a.sock_type.clone(),
                            protocol: a.protocol.clone(),
                            state: Some(SockState::connected(
                                a.domain.as_deref().unwrap_or_default(),
                                a.sock_type.as_deref(),
                            )),
                            ..SocketInfo::default()
                        };
                        // The event describes the first end; the text shows both.
                        if i == 0 {
                            ev.sock = Some(sock.clone());
                        }
                        self.procs.entry(pid).or_default().insert(fd, sock);
                        self.connecting.remove(&(pid, fd));
                    }
                }
            }
            Syscall::Accept | Syscall::Accept4 => {
                let listener = a.fd.and_then(|fd| self.entry(pid, fd).cloned());
                if let Some(fd) = ret_fd {
                    let family = listener.as_ref().map(|l| l.family.clone()).unwrap_or_default();
                    let sock_type = listener.as_ref().and_then(|l| l.sock_type.clone());
                    let sock = SocketInfo {
                        fd: Some(fd),
                        state: Some(SockState::connected(&family, sock_type.as_deref())),
                        family,
                        sock_type,
                        protocol: listener.as_ref().and_then(|l| l.protocol.clone()),
                        flags: a.flags.clone().filter(|f| f != "0"),
                        local: listener.and_then(|l| l.local),
                        peer: a.addr.clone(),
                        ..SocketInfo::default()
                    };
                    self.procs.entry(pid).or_default().insert(fd, sock.clone());
                    self.connecting.remove(&(pid, fd));
                    ev.sock = Some(sock);
                }
            }
            Syscall::Close => {
                if let Some(fd) = a.fd {
                    ev.sock = self.procs.get_mut(&pid).and_then(|t| t.remove(&fd));
                    self.connecting.remove(&(pid, fd));
                }
            }
            Syscall::Bind
            | Syscall::Listen
            | Syscall::Connect
            | Syscall::Getsockname
            | Syscall::Getpeername
            | Syscall::Getsockopt
            | Syscall::Setsockopt
            | Syscall::Shutdown => {
                let Some(fd) = a.fd else { return };
                // The fd is not (or no longer) what the table thought: forget it.
                if ev.errno.is_some_and(|e| e.0 == EBADF || e.0 == ENOTSOCK) {
                    if let Some(table) = self.procs.get_mut(&pid) {
                        table.remove(&fd);
                    }
                    self.connecting.remove(&(pid, fd));
                    return;
                }
                let settled = self.async_outcome(ev, fd);
                let (syscall, addr, errno) = (ev.syscall, ev.args.addr.clone(), ev.errno);
                let connected = syscall == Syscall::Connect
                    && (ok || errno.is_some_and(|e| e.0 == EINPROGRESS));
                // Read by the kernel as the call returned; else asked of the live socket.
                let local = match ev.bound.clone() {
                    Some(bound) => Some(bound).filter(|b| connected && port(b) != Some(0)),
                    None if connected => self.local_after_connect(pid, fd, addr.as_ref()),
                    None => None,
                };
                let Some(sock) = self.entry(pid, fd) else { return };
                if local.is_some() {
                    sock.local = local;
                }
                match syscall {
                    Syscall::Bind | Syscall::Getsockname if ok => sock.local = addr,
                    Syscall::Listen if ok => sock.state = Some(SockState::Listen),
                    Syscall::Connect if ok => {
                        sock.peer = addr;
                        sock.state =
                            Some(SockState::connected(&sock.family, sock.sock_type.as_deref()));
                    }
                    Syscall::Connect if errno.is_some_and(|e| e.0 == EINPROGRESS) => {
                        sock.peer = addr;
                        sock.state = Some(SockState::SynSent);
                    }
                    Syscall::Getpeername if ok => {
                        sock.peer = addr;
                        sock.state =
                            Some(SockState::connected(&sock.family, sock.sock_type.as_deref()));
                    }
                    _ => {}
                }
                if settled == Some(true) {
                    sock.state =
                        Some(SockState::connected(&sock.family, sock.sock_type.as_deref()));
                }
                ev.sock = Some(sock.clone());
                // The connect failed: the socket is connected nowhere (the event still shows
                // where it was going).
                if settled == Some(false) {
                    sock.peer = None;
                    sock.state = Some(SockState::Closed);
                }
            }
        }
    }

    /// Whether this call settles a non-blocking connect on `fd`, and how: `Some(false)` when
    /// it reports its failure (the event then carries it as `connect`), `Some(true)` when it
    /// reports success. Sets `async_error` on any call that reports an error for the socket.
    fn async_outcome(&mut self, ev: &mut Event, fd: i32) -> Option<bool> {
        let key = (ev.pid, fd);
        let failed = match ev.syscall {
            // SO_ERROR reports (and clears) the socket's error, whether or not a connect of
            // the trace caused it: the filters judge the call by it all the same.
            Syscall::Getsockopt if ev.errno.is_none() => {
                let so_error = ev.args.value.as_ref().filter(|_| {
                    ev.args.level.as_deref() == Some("SOL_SOCKET")
                        && ev.args.optname.as_deref() == Some("SO_ERROR")
                })?;
                ev.async_error = match so_error {
                    OptValue::Name(name) => Errno::parse(name).ok(),
                    _ => None,
                };
                ev.async_error.is_some()
            }
            Syscall::Connect => match ev.errno {
                // A connect under way (a first one, or one after a failure).
                Some(e) if e.0 == EINPROGRESS => {
                    if let Some(addr) = ev.args.addr.clone() {
                        let pending = PendingConnect { addr, started_ns: ev.ts_ns };
                        self.connecting.insert(key, pending);
                    }
                    return None;
                }
                _ if !self.connecting.contains_key(&key) => return None,
                // Still under way.
                Some(e) if e.0 == EALREADY => return None,
                Some(e) if e.0 == EISCONN => false,
                Some(e) => {
                    ev.async_error = Some(e);
                    true
                }
                None => false,
            },
            _ => return None,
        };
        let pending = self.connecting.remove(&key)?;
        if failed {
            ev.connect = Some(pending);
        }
        Some(!failed)
    }
}

fn port(addr: &SockAddr) -> Option<u16> {
    match addr {
        SockAddr::Known(KnownAddr::Inet { port, .. } | KnownAddr::Inet6 { port, .. }) => {
            Some(*port)
        }
        _ => None,
    }
}

/// The same IP and port (a flow label or scope given to connect is not echoed back).
fn same_endpoint(a: &SockAddr, b: &SockAddr) -> bool {
    use KnownAddr::{Inet, Inet6};
    match (a, b) {
        (SockAddr::Known(Inet { ip: x, port: p }), SockAddr::Known(Inet { ip: y, port: q })) => {
            (x, p) == (y, q)
        }
        (
            SockAddr::Known(Inet6 { ip: x, port: p, .. }),
            SockAddr::Known(Inet6 { ip: y, port: q, .. }),
        ) => (x, p) == (y, q),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Args;

    fn ev(syscall: Syscall, args: Args, ret: i64) -> Event {
        Event { pid: 10, tid: 10, ..Event::for_test(syscall, args, ret) }
    }

    fn lo(port: u16) -> Option<SockAddr> {
        Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port }))
    }

    fn tcp_socket() -> Args {
        Args {
            domain: Some("AF_INET".into()),
            sock_type: Some("SOCK_STREAM".into()),
            protocol: Some("IPPROTO_TCP".into()),
            ..Args::default()
        }
    }

    /// socket, bind, listen, accept, close: each event says what its fd is.
    #[test]
    fn follows_a_server() {
        let mut table = FdTable::new(Box::new(NoLookup));
        let mut e = ev(Syscall::Socket, tcp_socket(), 3);
        table.apply(&mut e);
        assert_eq!(e.sock.as_ref().unwrap().fd, Some(3));

        let mut e = ev(Syscall::Bind, Args { fd: Some(3), addr: lo(8080), ..Args::default() }, 0);
        table.apply(&mut e);
        assert_eq!(e.sock.as_ref().unwrap().local, lo(8080));

        let mut e = ev(Syscall::Listen, Args { fd: Some(3), ..Args::default() }, 0);
        table.apply(&mut e);
        assert_eq!(e.sock.as_ref().unwrap().state, Some(SockState::Listen));

        let mut e =
            ev(Syscall::Accept4, Args { fd: Some(3), addr: lo(5555), ..Args::default() }, 4);
        table.apply(&mut e);
        let accepted = e.sock.unwrap();
        assert_eq!((accepted.fd, accepted.local, accepted.peer), (Some(4), lo(8080), lo(5555)));
        assert_eq!(accepted.family, "AF_INET");

        let mut e = ev(Syscall::Close, Args { fd: Some(4), ..Args::default() }, 0);
        table.apply(&mut e);
        assert_eq!(e.sock.unwrap().peer, lo(5555));
        assert!(table.get(10, 4).is_none());
        assert!(table.get(10, 3).is_some());
    }

    fn so_error(fd: i32, value: OptValue) -> Event {
        let args = Args {
            fd: Some(fd),
            level: Some("SOL_SOCKET".into()),
            optname: Some("SO_ERROR".into()),
            optlen: Some(4),
            value: Some(value),
            ..Args::default()
        };
        ev(Syscall::Getsockopt, args, 0)
    }

    fn connect(fd: i32, port: u16, ret: i64) -> Event {
        ev(Syscall::Connect, Args { fd: Some(fd), addr: lo(port), ..Args::default() }, ret)
    }

    /// connect = EINPROGRESS, then SO_ERROR reads ECONNREFUSED: that call carries the connect.
    #[test]
    fn async_connect_refused() {
        let mut table = FdTable::new(Box::new(NoLookup));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
        let mut started = connect(3, 9, -115);
        started.ts_ns = 77;
        table.apply(&mut started);
        assert_eq!(started.sock.as_ref().unwrap().state, Some(SockState::SynSent));
        assert_eq!((started.async_error, started.connect), (None, None));

        let mut refused = so_error(3, OptValue::Name("ECONNREFUSED".into()));
        table.apply(&mut refused);
        assert_eq!(refused.async_error, Some(Errno(111)));
        assert_eq!(refused.connect, Some(PendingConnect { addr: lo(9).unwrap(), started_ns: 77 }));
        // The event shows where the socket was going; the table, that it is connected nowhere.
        assert_eq!(refused.sock.unwrap().peer, lo(9));
        let after = table.get(10, 3).unwrap();
        assert_eq!((after.peer.as_ref(), after.state), (None, Some(SockState::Closed)));

        // Read again: the error is gone, and the connect was settled.
        let mut again = so_error(3, OptValue::Int(0));
        table.apply(&mut again);
        assert_eq!((again.async_error, again.connect), (None, None));
    }

    /// A second connect after EINPROGRESS: EALREADY waits, a failure settles it.
    #[test]
    fn second_connect_reports_the_outcome() {
        let mut table = FdTable::new(Box::new(NoLookup));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
        table.apply(&mut connect(3, 9, -115));
        let mut already = connect(3, 9, -114);
        table.apply(&mut already);
        assert_eq!((already.async_error, already.connect.is_some()), (None, false));
        let mut refused = connect(3, 9, -111);
        table.apply(&mut refused);
        assert_eq!(refused.async_error, Some(Errno(111)));
        assert_eq!(refused.connect.map(|c| c.addr), lo(9));
    }

    /// SO_ERROR = 0 after EINPROGRESS: connected; a later error is not the connect's.
    #[test]
    fn async_connect_success_and_later_errors() {
        let mut table = FdTable::new(Box::new(NoLookup));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
        table.apply(&mut connect(3, 80, -115));
        table.apply(&mut so_error(3, OptValue::Int(0)));
        assert_eq!(table.get(10, 3).unwrap().state, Some(SockState::Established));
        let mut reset = so_error(3, OptValue::Name("ECONNRESET".into()));
        table.apply(&mut reset);
        assert_eq!((reset.async_error, reset.connect), (Some(Errno(104)), None));
        // Closing the fd forgets a connect in progress.
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 4));
        table.apply(&mut connect(4, 9, -115));
        table.apply(&mut ev(Syscall::Close, Args { fd: Some(4), ..Args::default() }, 0));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 4));
        let mut fresh = so_error(4, OptValue::Name("ECONNREFUSED".into()));
        table.apply(&mut fresh);
        assert_eq!(fresh.connect, None);
    }

    #[test]
    fn forks_inherit_and_exits_forget() {
        let mut table = FdTable::new(Box::new(NoLookup));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
        // A pid that is not a thread of pid 10 on this machine.
        table.fork(10, 999_999);
        assert_eq!(table.get(999_999, 3).map(|s| s.family.as_str()), Some("AF_INET"));
        table.exit(999_999);
        assert!(table.get(999_999, 3).is_none());
    }

    #[test]
    fn unknown_fds_are_looked_up_once() {
        struct Counting(u32);
        impl SocketLookup for Counting {
            fn describe(&mut self, _: u32, fd: i32) -> Option<SocketInfo> {
                self.0 += 1;
                assert!(self.0 == 1, "looked up again");
                Some(SocketInfo { fd: Some(fd), family: "AF_UNIX".into(), ..SocketInfo::default() })
            }
        }
        let mut table = FdTable::new(Box::new(Counting(0)));
        for _ in 0..2 {
            let mut e = ev(Syscall::Getsockopt, Args { fd: Some(7), ..Args::default() }, 0);
            table.apply(&mut e);
            assert_eq!(e.sock.unwrap().family, "AF_UNIX");
        }
    }

    /// A live process as the look-up sees it: fd 3's ends, inodes 100 + fd, fd 5 a socket.
    struct Live {
        ends: (Option<SockAddr>, Option<SockAddr>),
    }

    impl SocketLookup for Live {
        fn describe(&mut self, _: u32, fd: i32) -> Option<SocketInfo> {
            let (local, peer) = self.ends.clone();
            (fd == 5).then(|| SocketInfo {
                fd: Some(fd),
                family: "AF_INET".into(),
                local,
                peer,
                ..SocketInfo::default()
            })
        }

        fn ends(&mut self, _: u32, fd: i32) -> Option<(Option<SockAddr>, Option<SockAddr>)> {
            (fd == 3).then(|| self.ends.clone())
        }

        fn inode(&mut self, _: u32, fd: i32) -> Option<u64> {
            Some(100 + fd as u64)
        }
    }

    /// After a connect (done or under way) the socket's own port is asked of the socket; a
    /// socket now connected elsewhere is not the one that connected.
    #[test]
    fn connect_learns_the_local_port() {
        for (peer, ret) in [(lo(8080), 0), (None, -115)] {
            let mut table = FdTable::new(Box::new(Live { ends: (lo(40000), peer) }));
            table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
            let mut e = connect(3, 8080, ret);
            table.apply(&mut e);
            assert_eq!(e.sock.unwrap().local, lo(40000), "connect = {ret}");
        }
        let mut table = FdTable::new(Box::new(Live { ends: (lo(40000), lo(9)) }));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
        let mut e = connect(3, 8080, 0);
        table.apply(&mut e);
        assert_eq!(e.sock.unwrap().local, None);
        // A refused connect is not asked about.
        let mut table = FdTable::new(Box::new(Live { ends: (lo(40000), None) }));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
        let mut e = connect(3, 8080, -111);
        table.apply(&mut e);
        assert_eq!(e.sock.unwrap().local, None);
    }

    /// The local end the kernel read at connect exit wins; no look-up is made.
    #[test]
    fn connect_uses_the_local_end_the_kernel_read() {
        let mut table = FdTable::new(Box::new(Live { ends: (lo(40000), lo(8080)) }));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
        let mut e = connect(3, 8080, 0);
        e.bound = lo(41000);
        table.apply(&mut e);
        assert_eq!(e.sock.unwrap().local, lo(41000));
        assert_eq!(table.get(10, 3).unwrap().local, lo(41000));
    }

    /// The fd an accept in flight at attach returned is looked up.
    #[test]
    fn accept_in_flight_at_attach_is_described() {
        let mut table = FdTable::new(Box::new(Live { ends: (lo(80), lo(5555)) }));
        let mut e = ev(Syscall::Accept4, Args::default(), 5);
        e.in_flight_at_attach = true;
        table.apply(&mut e);
        let sock = e.sock.unwrap();
        assert_eq!((sock.fd, sock.local, sock.peer), (Some(5), lo(80), lo(5555)));
    }

    /// socketpair ends name each other by inode.
    #[test]
    fn socketpair_ends_know_their_peer() {
        let mut table = FdTable::new(Box::new(Live { ends: (None, None) }));
        let args = Args {
            domain: Some("AF_UNIX".into()),
            sock_type: Some("SOCK_STREAM".into()),
            fds: Some([6, 7]),
            ..Args::default()
        };
        let mut e = ev(Syscall::Socketpair, args, 0);
        table.apply(&mut e);
        let first = e.sock.unwrap();
        assert_eq!((first.fd, first.inode, first.peer_inode), (Some(6), Some(106), Some(107)));
        let second = table.get(10, 7).unwrap();
        assert_eq!((second.inode, second.peer_inode), (Some(107), Some(106)));
    }

    #[test]
    fn ebadf_forgets_a_stale_entry() {
        let mut table = FdTable::new(Box::new(NoLookup));
        table.apply(&mut ev(Syscall::Socket, tcp_socket(), 3));
        let mut e = ev(Syscall::Getsockopt, Args { fd: Some(3), ..Args::default() }, -9);
        table.apply(&mut e);
        assert!(e.sock.is_none() && table.get(10, 3).is_none());
    }

    #[test]
    fn context_calls_keep_the_known_namespace() {
        let mut table = FdTable::new(Box::new(NoLookup));
        let mut shown = ev(Syscall::Socket, tcp_socket(), 3);
        shown.ns = Some(crate::event::Namespaces { net: 42, ..Default::default() });
        table.apply(&mut shown);
        // The kernel reads no namespaces for a context-only call.
        let mut hidden = ev(Syscall::Socket, tcp_socket(), 4);
        hidden.context_only = true;
        table.apply(&mut hidden);
        let netns: Vec<_> = table.sockets().map(|t| (t.fd, t.netns)).collect();
        assert!(netns.contains(&(3, Some(42))) && netns.contains(&(4, Some(42))), "{netns:?}");
    }
}
