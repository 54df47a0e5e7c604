//! Context the kernel record does not carry: cgroup paths, namespaces where the kernel could
//! not read them, and what each fd is (the lsof part).

pub mod blocked;
pub mod cgroups;
pub mod fds;
pub mod sockets;

use foldhash::{HashMap, HashMapExt as _};

use crate::{
    event::{Blocked, Event, Namespaces, SocketError},
    facts::namespaces,
};

pub use fds::{FdTable, SocketLookup};

pub struct Enricher {
    /// Live only: a recording holds what the machine that made it knew.
    live: Option<(cgroups::CgroupPaths, namespaces::ProcNamespaces)>,
    pub fds: FdTable,
    /// Each process's namespaces as of its last event: what a socket error, reported where
    /// the process is not the current task (and maybe after it exited), is judged in.
    last_ns: HashMap<u32, Namespaces>,
    /// The last (pid, namespaces) put in `last_ns`: a process's calls come in runs, and
    /// its namespaces rarely change.
    last_ns_put: Option<(u32, Namespaces)>,
}

impl Enricher {
    /// For a live trace: this machine's cgroups and /proc.
    pub fn new(lookup: Box<dyn SocketLookup>) -> Self {
        Enricher {
            live: Some((cgroups::CgroupPaths::discover(), namespaces::ProcNamespaces::default())),
            fds: FdTable::new(lookup),
            last_ns: HashMap::new(),
            last_ns_put: None,
        }
    }

    /// For a recording: nothing is looked up on this machine; the fd table replays the calls
    /// so that the knowledge base sees what the traced processes held, call by call.
    pub fn offline() -> Self {
        Enricher {
            live: None,
            fds: FdTable::new(Box::new(fds::NoLookup)),
            last_ns: HashMap::new(),
            last_ns_put: None,
        }
    }

    pub fn event(&mut self, ev: &mut Event) {
        // A context-only call is never shown: it only keeps the fd table current, and comes
        // without namespaces (the kernel does not read them for it).
        if !ev.context_only
            && let Some((cgroups, namespaces)) = &mut self.live
        {
            ev.cgroup = cgroups.path(ev.cgroup_id);
            if ev.ns.is_none() {
                ev.ns = namespaces.of(ev.pid);
            }
        }
        if let Some(ns) = ev.ns
            && self.last_ns_put != Some((ev.pid, ns))
        {
            self.last_ns.insert(ev.pid, ns);
            self.last_ns_put = Some((ev.pid, ns));
        }
        self.fds.apply(ev);
    }

    /// What the errored socket is and the connect it follows, from the fd table (a recording
    /// carries them already); live, the process's namespaces too.
    pub fn socket_error(&mut self, error: &mut SocketError) {
        if error.sock.is_none() {
            error.sock = self.fds.socket(error.pid, error.fd);
        }
        if error.connect.is_none() {
            error.connect = self.fds.connecting(error.pid, error.fd);
        }
        if error.comm.is_empty()
            && let Some(comm) = self.fds.comm(error.pid)
        {
            error.comm = comm.to_owned();
        }
        error.ns = self.last_ns.get(&error.pid).copied();
        if error.ns.is_none()
            && let Some((_, namespaces)) = &mut self.live
        {
            error.ns = namespaces.of(error.pid);
        }
    }

    /// A call in progress: what its fd is as the table knows it (a recorded one keeps its
    /// own), and its namespaces. The table is not changed: the call has not done anything yet.
    pub fn blocked(&mut self, b: &mut Blocked) {
        if let Some((_, namespaces)) = &mut self.live
            && b.ns.is_none()
        {
            b.ns = namespaces.of(b.pid);
        }
        if b.sock.is_none() {
            b.sock = b.args.fd.and_then(|fd| self.fds.shared(b.pid, fd)).cloned();
        }
    }

    pub fn fork(&mut self, parent: u32, child: u32) {
        self.fds.fork(parent, child);
    }

    pub fn exit(&mut self, pid: u32) {
        self.fds.exit(pid);
        self.last_ns.remove(&pid);
        if self.last_ns_put.is_some_and(|(last, _)| last == pid) {
            self.last_ns_put = None;
        }
        if let Some((_, namespaces)) = &mut self.live {
            namespaces.forget(pid);
        }
    }
}
