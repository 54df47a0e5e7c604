//! Per-process fd table, kept current from the traced calls, so any event with an fd also says
//! what the fd is (lsof inside the tracer).
//!
//! Seeded from the snapshot at attach; socket/socketpair/accept create entries, bind/listen/
//! connect/getsockname/getpeername refine them, close removes them, fork copies the table.
//! dup/dup2/fcntl(F_DUPFD) are not traced: an fd the table has never seen is looked up once in
//! /proc (through [`SocketLookup`]); an fd that dup2 replaced keeps its old entry until a call on
//! it fails with EBADF/ENOTSOCK or the fd is closed or reused by socket/accept.

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt as _};

use tracer_common::Syscall;

use crate::{
    decode::{errno::Errno, state::SockState},
    event::{Comm, Event, KnownAddr, OptValue, PendingConnect, SockAddr, SocketInfo},
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
    /// Each entry shared with the events that show it (changed in place when no event holds
    /// it any more, which is the usual case: copied on write otherwise).
    procs: HashMap<u32, HashMap<i32, Arc<SocketInfo>>>,
    /// comm and network namespace of each process, as of its last event.
    who: HashMap<u32, (Comm, Option<u32>)>,
    /// The process whose `who` entry the last call set, and what the entry holds: most
    /// calls come from it, with nothing new.
    last_who: Option<(u32, Comm, Option<u32>)>,
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
        FdTable {
            procs: HashMap::new(),
            who: HashMap::new(),
            last_who: None,
            connecting: HashMap::new(),
            lookup,
        }
    }

    /// What the process held when tracing started.
    pub fn seed(&mut self, pid: u32, sockets: &[SocketInfo]) {
        let table = self.procs.entry(pid).or_default();
        for sock in sockets {
            if let Some(fd) = sock.fd {
                table.insert(fd, Arc::new(sock.clone()));
            }
        }
    }

    pub fn get(&self, pid: u32, fd: i32) -> Option<&SocketInfo> {
        self.shared(pid, fd).map(Arc::as_ref)
    }

    /// The entry for `fd` of `pid`, to be held by a record.
    pub fn shared(&self, pid: u32, fd: i32) -> Option<&Arc<SocketInfo>> {
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
        if self.last_who.as_ref().is_some_and(|(last, _, _)| *last == pid) {
            self.last_who = None;
        }
        self.connecting.retain(|(p, _), _| *p != pid);
    }

    /// What `fd` of `pid` is (looked up in /proc the first time it is seen).
    pub fn socket(&mut self, pid: u32, fd: i32) -> Option<Arc<SocketInfo>> {
        self.entry(pid, fd).map(|sock| Arc::clone(sock))
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
    fn entry(&mut self, pid: u32, fd: i32) -> Option<&mut Arc<SocketInfo>> {
        let known = self.procs.get(&pid).is_some_and(|t| t.contains_key(&fd));
        if !known {
            let found = self.lookup.describe(pid, fd)?;
            self.procs.entry(pid).or_default().insert(fd, Arc::new(found));
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
        let inet = known.is_none_or(|s| matches!(s.family.as_ref(), "AF_INET" | "AF_INET6"));
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
        let net = ev.ns.map(|ns| ns.net);
        let told = |(last, comm, last_net): &(u32, Comm, Option<u32>)| {
            *last == pid && (net.is_none() || net == *last_net) && *comm == ev.comm
        };
        if !self.last_who.as_ref().is_some_and(told) {
            let who = self.who.entry(pid).or_default();
            if net.is_some() {
                who.1 = net;
            }
            // Copied only when it changed (exec, a renamed thread): not per event.
            if who.0 != ev.comm {
                who.0.clone_from(&ev.comm);
            }
            self.last_who = Some((pid, who.0.clone(), who.1));
        }
        let ok = ev.errno.is_none();
        let a = &ev.args;
        let ret_fd = i32::try_from(ev.ret).ok().filter(|_| ok);
        match ev.syscall {
            Syscall::Socket => {
                if let Some(fd) = ret_fd {
                    let sock = Arc::new(SocketInfo {
                        fd: Some(fd),
                        family: a.domain.clone().unwrap_or_default(),
                        sock_type: a.sock_type.clone(),
                        protocol: a.protocol.clone(),
                        flags: a.flags.clone(),
                        ..SocketInfo::default()
                    });
                    self.procs.entry(pid).or_default().insert(fd, Arc::clone(&sock));
                    self.forget_connect(pid, fd);
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
                        let sock = Arc::new(SocketInfo {
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
                        });
                        // The event describes the first end; the text shows both.
                        if i == 0 {
                            ev.sock = Some(Arc::clone(&sock));
                        }
                        self.procs.entry(pid).or_default().insert(fd, sock);
                        self.forget_connect(pid, fd);
                    }
                }
            }
            Syscall::Accept | Syscall::Accept4 => {
                let listener = a.fd.and_then(|fd| self.entry(pid, fd).cloned());
                if let Some(fd) = ret_fd {
                    let family = listener.as_ref().map(|l| l.family.clone()).unwrap_or_default();
                    let sock_type = listener.as_ref().and_then(|l| l.sock_type.clone());
                    let sock = Arc::new(SocketInfo {
                        fd: Some(fd),
                        state: Some(SockState::connected(&family, sock_type.as_deref())),
                        family,
                        sock_type,
                        protocol: listener.as_ref().and_then(|l| l.protocol.clone()),
                        flags: a.flags.clone().filter(|f| f != "0"),
                        local: listener.and_then(|l| l.local.clone()),
                        peer: a.addr.clone(),
                        ..SocketInfo::default()
                    });
                    self.procs.entry(pid).or_default().insert(fd, Arc::clone(&sock));
                    self.forget_connect(pid, fd);
                    ev.sock = Some(sock);
                }
            }
            Syscall::Close => {
                if let Some(fd) = a.fd {
                    ev.sock = self.procs.get_mut(&pid).and_then(|t| t.remove(&fd));
                    self.forget_connect(pid, fd);
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
                    self.forget_connect(pid, fd);
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
                let Some(entry) = self.entry(pid, fd) else { return };
                // The last event that showed it is gone, as a rule: changed in place.
                let sock = Arc::make_mut(entry);
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
                ev.sock = Some(Arc::clone(entry));
                // The connect failed: the socket is connected nowhere (the event still shows
                // where it was going): the table's entry is copied from the event's.
                if settled == Some(false) {
                    let sock = Arc::make_mut(entry);
                    sock.peer = None;
                    sock.state = Some(SockState::Closed);
                }
            }
        }
    }

    /// `fd` of `pid` is no longer the socket of a connect under way (mostly none is: no
    /// hashing then).
    fn forget_connect(&mut self, pid: u32, fd: i32) {
        if !self.connecting.is_empty() {
            self.connecting.remove(&(pid, fd));
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
mod tests;
