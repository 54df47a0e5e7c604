//! Context the kernel record does not carry: cgroup paths, namespaces where the kernel could
//! not read them, and what each fd is (the lsof part).

pub mod cgroups;
pub mod fds;
pub mod namespaces;

use crate::event::Event;

pub use fds::{FdTable, SocketLookup};

pub struct Enricher {
    cgroups: cgroups::CgroupPaths,
    namespaces: namespaces::ProcNamespaces,
    pub fds: FdTable,
}

impl Enricher {
    pub fn new(lookup: Box<dyn SocketLookup>) -> Self {
        Enricher {
            cgroups: cgroups::CgroupPaths::discover(),
            namespaces: namespaces::ProcNamespaces::default(),
            fds: FdTable::new(lookup),
        }
    }

    pub fn event(&mut self, ev: &mut Event) {
        ev.cgroup = self.cgroups.path(ev.cgroup_id);
        if ev.ns.is_none() {
            ev.ns = self.namespaces.of(ev.pid);
        }
        self.fds.apply(ev);
    }

    pub fn fork(&mut self, parent: u32, child: u32) {
        self.fds.fork(parent, child);
    }

    pub fn exit(&mut self, pid: u32) {
        self.fds.exit(pid);
        self.namespaces.forget(pid);
    }
}
