//! Facts about the running system that rules need at the time of a call: capabilities, mounts,
//! directory permissions, who listens on or holds a port in which network namespace, unix
//! socket paths. Offline analysis has none of them: [`Offline`] answers "unknown".

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use procfs::process::Process;

use crate::decode::state::SockState;

use super::{
    fresh::Fresh,
    sockets::{self, InetSocket, Netns, Proto, fds},
};

/// A socket on a port, with its owner when wsltrace could find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSocket {
    pub netns: u32,
    pub addr: SocketAddr,
    /// `None` for a traced socket whose calls did not say (bound, not listening).
    pub state: Option<SockState>,
    pub inode: u64,
    pub owner: Option<Owner>,
    /// For a LISTEN socket read from the tables: (connections in its accept queue, backlog).
    pub accept_queue: Option<(u32, u32)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: String,
    pub fd: i32,
}

/// What a unix socket path leads to, from the caller's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixTarget {
    pub exists: bool,
    pub is_socket: bool,
    /// A socket in the caller's network namespace listens with this path.
    pub listener: Option<Owner>,
    /// Whether that listener's path is the same file the caller sees (same mount namespace).
    pub listener_same_file: bool,
    /// Owner, group and mode of the directory that holds the path.
    pub dir: Option<(u32, u32, u32)>,
}

/// Where to look for `path` as `pid` sees it: through its root while it lives; through ours
/// when it has exited but shared our mount namespace (`mnt` is its namespace at the call).
pub fn caller_path(pid: u32, mnt: Option<u32>, path: &Path) -> Option<std::path::PathBuf> {
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    if root.exists() {
        let relative = path.strip_prefix("/").unwrap_or(path);
        return Some(root.join(relative));
    }
    let ours = super::namespaces::read(std::process::id()).map(|ns| ns.mnt);
    (mnt.is_some() && mnt == ours).then(|| path.to_path_buf())
}

/// What `path` is as `pid` sees it: `Some(None)` when there is no such file, `None` when its
/// view is unknown (see [`caller_path`]).
fn caller_metadata(pid: u32, mnt: Option<u32>, path: &Path) -> Option<Option<std::fs::Metadata>> {
    if let Ok(meta) = std::fs::metadata(caller_path(pid, mnt, path)?) {
        return Some(Some(meta));
    }
    // The caller may have exited after /proc/PID/root was found and before the path was read
    // through it (a zombie has no root): asked again, the path is read as it is for a caller
    // that had exited already, not reported missing.
    Some(std::fs::metadata(caller_path(pid, mnt, path)?).ok())
}

pub trait System {
    /// Effective capabilities of `pid` (CapEff).
    fn capabilities(&mut self, _pid: u32) -> Option<u64> {
        None
    }
    /// The file system type under `path` in the mount namespace of `pid`.
    fn mount_fstype(&mut self, _pid: u32, _path: &str) -> Option<String> {
        None
    }
    /// Whether `uid`/`gid` may create files in the directory holding `path`; `mnt` is the
    /// caller's mount namespace at the time of the call.
    fn dir_writable(
        &mut self,
        _pid: u32,
        _mnt: Option<u32>,
        _uid: u32,
        _gid: u32,
        _path: &str,
    ) -> Option<bool> {
        None
    }
    /// The network namespace of `pid` now.
    fn netns_of(&mut self, _pid: u32) -> Option<u32> {
        None
    }
    /// Sockets on `port` in every network namespace wsltrace can see.
    fn sockets_on_port(&mut self, _port: u16, _proto: Proto) -> Option<Vec<TableSocket>> {
        None
    }
    /// The TCP listeners on `port` in every network namespace wsltrace can see: the LISTEN
    /// sockets of [`System::sockets_on_port`], which a system may find more cheaply.
    fn listeners_on_port(&mut self, port: u16) -> Option<Vec<TableSocket>> {
        let mut found = self.sockets_on_port(port, Proto::Tcp)?;
        found.retain(|s| s.state == Some(SockState::Listen));
        Some(found)
    }
    fn unix_target(&mut self, _pid: u32, _mnt: Option<u32>, _path: &str) -> Option<UnixTarget> {
        None
    }
    /// The local addresses of the network namespace of `pid` (`netns` at the time of the call).
    fn addresses(&mut self, _pid: u32, _netns: Option<u32>) -> Option<Vec<IpAddr>> {
        None
    }
    /// The environment `pid` started with (name, value), from /proc/PID/environ.
    fn environ(&mut self, _pid: u32) -> Option<Vec<(String, String)>> {
        None
    }
    /// How long one DNS try of `pid` waits, from the resolv.conf its mount namespace shows
    /// (`mnt` at the time of the call); glibc's 5 s when the file sets none or is missing.
    fn resolver_timeout(&mut self, _pid: u32, _mnt: Option<u32>) -> Option<Duration> {
        None
    }
}

/// No system to ask: a recording analysed later or elsewhere. Every live fact is unknown, so
/// the rules that need one stay silent.
pub struct Offline;

impl System for Offline {}

/// The running system, read through /proc and sock_diag; what every process or a whole socket
/// table must be walked for is reused while [`Fresh`].
#[derive(Default)]
pub struct Live {
    /// netns inode -> a pid in it, through which that namespace is entered.
    namespaces: Fresh<(), HashMap<u32, u32>>,
    /// socket inode -> owner.
    owners: Fresh<(), HashMap<u64, Owner>>,
    /// netns inode -> that namespace's unix listeners (path, inode).
    unix_listeners: HashMap<u32, Fresh<(), Vec<(String, u64)>>>,
    /// The TCP or UDP sockets on a port of a namespace, as the kernel selected them.
    on_port: HashMap<PortQuery, Fresh<(), Vec<InetSocket>>>,
    capabilities: HashMap<u32, u64>,
    /// With `-- CMD`: the environment the command was started with (wsltrace's own), for
    /// traced processes that exited before their /proc/PID/environ was read.
    launch_environment: Option<Vec<(String, String)>>,
    /// Under `--emulate`: the directories that stand for Windows drives (DrvFs), whose paths
    /// are on WSL2's DrvFs file system (9p) for the rules.
    emulated_drvfs: Vec<PathBuf>,
}

fn ns_inode(pid: u32, kind: &str) -> Option<u32> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    super::namespaces::parse_link(link.to_str()?)
}

/// One question about a port: (netns inode, port, protocol, listeners only).
type PortQuery = (u32, u16, Proto, bool);

/// Past this many ports asked about, answers no longer current are dropped.
const PORT_QUERIES_KEPT: usize = 64;

/// netns inode -> a pid in it, the first in /proc's order. One `readlink` per process: no
/// `procfs::Process` (which opens each process's directory).
fn read_namespaces() -> Result<HashMap<u32, u32>, Infallible> {
    let mut map = HashMap::new();
    let Ok(proc) = std::fs::read_dir("/proc") else { return Ok(map) };
    for entry in proc.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(netns) = ns_inode(pid, "net") {
            map.entry(netns).or_insert(pid);
        }
    }
    Ok(map)
}

/// socket inode -> the first process and fd found holding it.
fn read_owners() -> Result<HashMap<u64, Owner>, Infallible> {
    let mut map = HashMap::new();
    for process in procfs::process::all_processes().into_iter().flatten().flatten() {
        let pid = process.pid() as u32;
        // A process that exited or hides its fds from us holds nothing we can name.
        let Ok(sockets) = fds::socket_fds(pid) else { continue };
        let comm = process.stat().map(|s| s.comm).unwrap_or_default();
        for (fd, inode) in sockets {
            map.entry(inode).or_insert_with(|| Owner { pid, comm: comm.clone(), fd });
        }
    }
    Ok(map)
}

impl Live {
    /// Every traced process descends from a command started with wsltrace's environment.
    pub fn with_launch_environment(mut self) -> Self {
        let vars = std::env::vars_os().map(|(name, value)| {
            (name.to_string_lossy().into_owned(), value.to_string_lossy().into_owned())
        });
        self.launch_environment = Some(vars.collect());
        self
    }

    /// Under `--emulate`: paths under these directories count as on DrvFs (said at start).
    pub fn with_emulated_drvfs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.emulated_drvfs = dirs;
        self
    }

    /// The unix listeners of network namespace `netns`, entered through process `pid`.
    fn unix_listeners(&mut self, netns: u32, pid: u32) -> anyhow::Result<&[(String, u64)]> {
        let read = || Netns::of_pid(pid)?.run(sockets::unix_listeners_here);
        Ok(self.unix_listeners.entry(netns).or_default().get((), read)?)
    }

    /// The sockets on `port` (only TCP listeners when `listening`) of every namespace.
    fn on_port(&mut self, port: u16, proto: Proto, listening: bool) -> Vec<TableSocket> {
        let Ok(namespaces) = self.namespaces.get((), read_namespaces);
        let namespaces: Vec<(u32, u32)> = namespaces.iter().map(|(&n, &p)| (n, p)).collect();
        if self.on_port.len() > PORT_QUERIES_KEPT {
            self.on_port.retain(|_, answer| answer.is_current());
        }
        let mut found = Vec::new();
        for (netns, pid) in namespaces {
            let read = || Netns::of_pid(pid)?.run(|| sockets::inet_on_port(port, proto, listening));
            match self.on_port.entry((netns, port, proto, listening)).or_default().get((), read) {
                Ok(sockets) => found.extend(sockets.iter().map(|s| (netns, s.clone()))),
                Err(err) => tracing::debug!("sockets of network namespace {netns}: {err:#}"),
            }
        }
        // Nobody on the port (a refused connect): no owner to name, so no walk of every
        // process's fds (the costliest thing the reader did on a busy machine).
        if found.is_empty() {
            return Vec::new();
        }
        let Ok(owners) = self.owners.get((), read_owners);
        let mut found: Vec<TableSocket> = found
            .into_iter()
            .map(|(netns, s)| TableSocket {
                netns,
                addr: s.local,
                state: Some(s.state),
                inode: s.inode,
                owner: owners.get(&s.inode).cloned(),
                accept_queue: (s.state == SockState::Listen).then_some(s.queues),
            })
            .collect();
        found.sort_by_key(|s| (s.netns, s.addr, s.inode));
        found
    }
}

impl System for Live {
    fn capabilities(&mut self, pid: u32) -> Option<u64> {
        if let Some(caps) = self.capabilities.get(&pid) {
            return Some(*caps);
        }
        let caps = Process::new(pid as i32).ok()?.status().ok()?.capeff;
        self.capabilities.insert(pid, caps);
        Some(caps)
    }

    fn mount_fstype(&mut self, pid: u32, path: &str) -> Option<String> {
        if self.emulated_drvfs.iter().any(|dir| Path::new(path).starts_with(dir)) {
            // What WSL2's /proc/self/mountinfo says of /mnt/c.
            return Some("9p".to_owned());
        }
        let mounts = Process::new(pid as i32).ok()?.mountinfo().ok()?;
        mounts
            .into_iter()
            .filter(|m| Path::new(path).starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.as_os_str().len())
            .map(|m| m.fs_type)
    }

    fn dir_writable(
        &mut self,
        pid: u32,
        mnt: Option<u32>,
        uid: u32,
        gid: u32,
        path: &str,
    ) -> Option<bool> {
        let dir = Path::new(path).parent()?;
        let meta = std::fs::metadata(caller_path(pid, mnt, dir)?).ok()?;
        let mode = meta.mode();
        Some(if uid == 0 {
            true
        } else if meta.uid() == uid {
            mode & 0o300 == 0o300
        } else if meta.gid() == gid {
            mode & 0o030 == 0o030
        } else {
            mode & 0o003 == 0o003
        })
    }

    fn netns_of(&mut self, pid: u32) -> Option<u32> {
        ns_inode(pid, "net")
    }

    fn sockets_on_port(&mut self, port: u16, proto: Proto) -> Option<Vec<TableSocket>> {
        Some(self.on_port(port, proto, false))
    }

    fn listeners_on_port(&mut self, port: u16) -> Option<Vec<TableSocket>> {
        Some(self.on_port(port, Proto::Tcp, true))
    }

    fn unix_target(&mut self, pid: u32, mnt: Option<u32>, path: &str) -> Option<UnixTarget> {
        let seen = caller_metadata(pid, mnt, Path::new(path))?;
        let dir = Path::new(path).parent().and_then(|d| {
            let meta = caller_metadata(pid, mnt, d)??;
            Some((meta.uid(), meta.gid(), meta.mode() & 0o7777))
        });
        // The unix table of the caller's network namespace (ours when it has exited).
        let (netns, via) = match ns_inode(pid, "net") {
            Some(netns) => (netns, pid),
            None => (ns_inode(std::process::id(), "net")?, std::process::id()),
        };
        let listening = self
            .unix_listeners(netns, via)
            .ok()?
            .iter()
            .find_map(|(listening, inode)| (listening == path).then_some(*inode));
        // The owners are walked for only when there is a listener to name.
        let listener = listening.and_then(|inode| {
            let Ok(owners) = self.owners.get((), read_owners);
            owners.get(&inode).cloned()
        });
        // Same file if the listener's own view of the path is the inode the caller sees.
        let listener_same_file = match (&listener, &seen) {
            (Some(owner), Some(meta)) => {
                std::fs::metadata(format!("/proc/{}/root{path}", owner.pid))
                    .is_ok_and(|theirs| theirs.ino() == meta.ino() && theirs.dev() == meta.dev())
            }
            _ => false,
        };
        Some(UnixTarget {
            exists: seen.is_some(),
            is_socket: seen.as_ref().is_some_and(|m| m.file_type().is_socket()),
            listener: listener
                .or_else(|| listening.map(|_| Owner { pid: 0, comm: "?".into(), fd: -1 })),
            listener_same_file,
            dir,
        })
    }

    fn addresses(&mut self, pid: u32, netns: Option<u32>) -> Option<Vec<IpAddr>> {
        // The caller's tables while it lives; ours if it has exited from our namespace. A
        // zombie still has /proc/PID/net, but its fib_trie can no longer be read.
        let ours = super::namespaces::read(std::process::id()).map(|ns| ns.net);
        let mut dirs = vec![format!("/proc/{pid}/net")];
        if netns.is_some() && netns == ours {
            dirs.push("/proc/self/net".to_owned());
        }
        let (dir, fib) = dirs.into_iter().find_map(|dir| {
            let fib = std::fs::read_to_string(format!("{dir}/fib_trie")).ok()?;
            Some((dir, fib))
        })?;
        let mut addrs = local_ipv4(&fib);
        let if_inet6 = std::fs::read_to_string(format!("{dir}/if_inet6")).unwrap_or_default();
        addrs.extend(local_ipv6(&if_inet6));
        addrs.sort();
        addrs.dedup();
        Some(addrs)
    }

    fn resolver_timeout(&mut self, pid: u32, mnt: Option<u32>) -> Option<Duration> {
        let path = caller_path(pid, mnt, Path::new("/etc/resolv.conf"))?;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Some(super::dns::resolv_conf_timeout(&text))
    }

    fn environ(&mut self, pid: u32) -> Option<Vec<(String, String)>> {
        // Empty once the process is a zombie, gone once reaped: short-lived clients (curl) exit
        // before their events are judged. Then the launch environment, if there is one.
        let raw = std::fs::read(format!("/proc/{pid}/environ")).ok().filter(|r| !r.is_empty());
        let Some(raw) = raw else { return self.launch_environment.clone() };
        let vars = raw.split(|&b| b == 0).filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (name, value) = entry.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        });
        Some(vars.collect())
    }
}

/// The addresses marked `/32 host LOCAL` in /proc/net/fib_trie.
pub fn local_ipv4(fib_trie: &str) -> Vec<IpAddr> {
    let mut last: Option<IpAddr> = None;
    let mut local = Vec::new();
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(ip) = line.strip_prefix("|-- ").or_else(|| line.strip_prefix("+-- ")) {
            last = ip.split('/').next().and_then(|ip| ip.trim().parse().ok());
        } else if line.contains("/32 host LOCAL")
            && let Some(ip) = last
        {
            local.push(ip);
        }
    }
    local
}

/// The addresses in /proc/net/if_inet6 (32 hex digits, then index, prefix, scope, flags, name).
pub fn local_ipv6(if_inet6: &str) -> Vec<IpAddr> {
    if_inet6
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|hex| u128::from_str_radix(hex, 16).ok())
        .map(|bits| IpAddr::V6(bits.into()))
        .collect()
}

#[cfg(test)]
mod tests;
