//! Static findings about one process: where it listens and who can therefore reach it. Pure
//! functions of the process report and the mounts its unix socket paths are on.

use std::{collections::BTreeMap, net::IpAddr};

use super::report::{Check, Process};
use crate::{
    decode::state::SockState,
    event::{KnownAddr, SockAddr, SocketInfo},
};

/// A mount, as much of it as the findings need.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
}

impl Mount {
    /// A filesystem shared with another operating system: DrvFs (WSL1), 9p (WSL2's /mnt/c,
    /// `aname=drvfs`), virtiofs (WSL2 with virtiofs=true, VM shares). A unix socket file
    /// there is only a name: processes on the other side cannot connect through it.
    pub fn shared_with_host(&self) -> bool {
        matches!(self.fs_type.as_str(), "drvfs" | "9p" | "virtiofs")
    }
}

/// The mount `path` is on: the one with the longest mount point that contains it.
pub fn mount_for_path<'a>(path: &str, mounts: &'a [Mount]) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| {
            let mp = m.mount_point.trim_end_matches('/');
            path == mp || path.starts_with(&format!("{mp}/")) || mp.is_empty()
        })
        .max_by_key(|m| m.mount_point.trim_end_matches('/').len())
}

/// A listening endpoint: TCP in LISTEN, or UDP bound to a port and not connected.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    pub proto: &'static str,
    pub ip: IpAddr,
    pub port: u16,
}

pub fn listeners(sockets: &[SocketInfo]) -> Vec<Listener> {
    sockets
        .iter()
        .filter_map(|s| {
            let proto = match (s.protocol.as_deref(), s.state) {
                (Some("IPPROTO_TCP"), Some(SockState::Listen)) => "TCP",
                (Some("IPPROTO_UDP"), Some(SockState::Unconnected)) => "UDP",
                _ => return None,
            };
            let (ip, port) = match s.local.as_ref()? {
                SockAddr::Known(KnownAddr::Inet { ip, port }) => (IpAddr::V4(*ip), *port),
                SockAddr::Known(KnownAddr::Inet6 { ip, port, .. }) => (IpAddr::V6(*ip), *port),
                _ => return None,
            };
            (port != 0).then_some(Listener { proto, ip, port })
        })
        .collect()
}

fn endpoint(l: &Listener) -> String {
    match l.ip {
        IpAddr::V4(ip) => format!("{} {ip}:{}", l.proto, l.port),
        IpAddr::V6(ip) => format!("{} [{ip}]:{}", l.proto, l.port),
    }
}

/// The findings for `process`; `mounts` gives the mount of each unix socket path it holds.
pub fn checks(process: &Process, mounts: &BTreeMap<String, Mount>) -> Vec<Check> {
    let mut out = Vec::new();
    let listening = listeners(&process.sockets);
    out.extend(loopback_only(&listening));
    if process.private_netns() && !listening.is_empty() {
        let net = process.ns.get("net").copied().unwrap_or_default();
        let what: Vec<String> = listening.iter().map(endpoint).collect();
        out.push(Check::warn(
            "process.private_netns",
            format!(
                "listens inside private network namespace {net} ({}): only processes in that namespace can connect",
                what.join(", ")
            ),
            format!(
                "connect from inside it (`nsenter -t {} -n ...`), publish the port into the host's namespace (veth pair, `docker run -p`), or run the server in the host's namespace",
                process.pid
            ),
        ));
    }
    for s in &process.sockets {
        let Some(SockAddr::Known(KnownAddr::Unix(unix))) = &s.local else { continue };
        let Some(path) = &unix.path else { continue };
        let Some(mount) = mounts.get(path).filter(|m| m.shared_with_host()) else { continue };
        out.push(Check::warn(
            "process.unix_on_host_fs",
            format!(
                "unix socket {path} (fd {}) is on {} ({} mount of {}): processes on the other side of that share (Windows, on WSL2) cannot connect through it",
                s.fd.map_or_else(|| "?".to_owned(), |fd| fd.to_string()),
                mount.mount_point,
                mount.fs_type,
                mount.source
            ),
            "put the socket on a Linux filesystem (/run, /tmp); between Windows and WSL2 use TCP on localhost",
        ));
    }
    if let Some(start) = process.ip_unprivileged_port_start
        && !process.net_bind_service
    {
        let low: Vec<String> =
            listening.iter().filter(|l| u32::from(l.port) < start).map(endpoint).collect();
        if !low.is_empty() {
            out.push(Check::warn(
                "process.privileged_port",
                format!(
                    "holds {} below net.ipv4.ip_unprivileged_port_start={start} without CAP_NET_BIND_SERVICE: it bound while privileged; started again as it runs now, bind() fails with EACCES",
                    low.join(", ")
                ),
                format!(
                    "give the binary the capability (`setcap cap_net_bind_service=+ep BINARY`, or AmbientCapabilities=CAP_NET_BIND_SERVICE in its systemd unit), use a port >= {start}, or lower the sysctl"
                ),
            ));
        }
    }
    out
}

/// Ports (per protocol) whose every listening address is a loopback one. Listening on
/// 127.0.0.1 is what a local service should do (and WSL2's relay forwards it to Windows): said,
/// not warned about. Listening on ::1 alone is the classic trap: clients of 127.0.0.1 are
/// refused.
fn loopback_only(listening: &[Listener]) -> Vec<Check> {
    let mut by_port: BTreeMap<(&str, u16), Vec<IpAddr>> = BTreeMap::new();
    for l in listening {
        by_port.entry((l.proto, l.port)).or_default().push(l.ip);
    }
    by_port
        .into_iter()
        .filter(|(_, ips)| ips.iter().all(IpAddr::is_loopback))
        .map(|((proto, port), ips)| {
            let v4 = ips.iter().any(IpAddr::is_ipv4);
            let v6 = ips.iter().any(IpAddr::is_ipv6);
            let shown: Vec<String> = ips.iter().map(ToString::to_string).collect();
            match (v4, v6) {
                (false, true) => Check::warn(
                    "process.loopback_only",
                    format!("{proto} port {port} listens only on {}: clients that use 127.0.0.1 (or resolve localhost to it) are refused, and nothing outside this namespace can connect", shown.join(", ")),
                    format!("also listen on 127.0.0.1:{port}, or on [::]:{port} with IPV6_V6ONLY off (dual-stack)"),
                ),
                _ => Check::ok(
                    "process.loopback_only",
                    format!("{proto} port {port} listens on loopback only ({}): local clients only, as a local service should (bind 0.0.0.0 or [::] to be reached from elsewhere)", shown.join(", ")),
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::{commands::doctor::report::Verdict, event::UnixAddr};

    fn inet(proto: &'static str, state: &str, ip: IpAddr, port: u16) -> SocketInfo {
        let local = match ip {
            IpAddr::V4(ip) => KnownAddr::Inet { ip, port },
            IpAddr::V6(ip) => KnownAddr::Inet6 { ip, port, scope_id: 0, flowinfo: 0 },
        };
        SocketInfo {
            fd: Some(3),
            family: if ip.is_ipv4() { "AF_INET" } else { "AF_INET6" }.into(),
            protocol: Some(proto.into()),
            state: Some(state.parse().unwrap()),
            local: Some(SockAddr::Known(local)),
            ..SocketInfo::default()
        }
    }

    fn unix(path: &str) -> SocketInfo {
        SocketInfo {
            fd: Some(7),
            family: "AF_UNIX".into(),
            state: Some(SockState::Listen),
            local: Some(SockAddr::Known(KnownAddr::Unix(UnixAddr {
                path: Some(path.into()),
                abstract_name: None,
            }))),
            ..SocketInfo::default()
        }
    }

    fn process(sockets: Vec<SocketInfo>) -> Process {
        let ns: BTreeMap<String, u64> = [("net".to_owned(), 4026531840)].into();
        Process {
            pid: 42,
            comm: "server".into(),
            initial_ns: Some(ns.clone()),
            ns,
            ip_unprivileged_port_start: Some(1024),
            net_bind_service: true,
            sockets,
            ..Process::default()
        }
    }

    fn ids(checks: &[Check]) -> Vec<&str> {
        checks.iter().map(|c| c.id).collect()
    }

    const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    const ANY4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    #[test]
    fn loopback_listeners() {
        let p = process(vec![
            inet("IPPROTO_TCP", "LISTEN", LO4, 8080),
            inet("IPPROTO_UDP", "UNCONNECTED", LO6, 5353),
            inet("IPPROTO_TCP", "LISTEN", ANY4, 9090),
            inet("IPPROTO_TCP", "LISTEN", LO6, 9090),
            // Connections and client sockets are not listeners.
            inet("IPPROTO_TCP", "ESTABLISHED", LO4, 8080),
            inet("IPPROTO_UDP", "CONNECTED", LO4, 40000),
        ]);
        let found = checks(&p, &BTreeMap::new());
        assert_eq!(ids(&found), ["process.loopback_only", "process.loopback_only"]);
        // 127.0.0.1 only is normal for a local service: said, not warned about.
        assert!(
            found[0].summary.starts_with("TCP port 8080 listens on loopback only (127.0.0.1)"),
            "{}",
            found[0].summary
        );
        assert_eq!((found[0].verdict, found[0].fix.is_none()), (Verdict::Ok, true));
        // ::1 only: IPv4 clients of "localhost" are refused.
        assert!(found[1].summary.contains("UDP port 5353 listens only on ::1"));
        assert_eq!((found[1].verdict, found[1].fix.is_some()), (Verdict::Warn, true));
        // 127.0.0.1 and ::1 together: still loopback only.
        let both = process(vec![
            inet("IPPROTO_TCP", "LISTEN", LO4, 80),
            inet("IPPROTO_TCP", "LISTEN", LO6, 80),
        ]);
        let c = checks(&both, &BTreeMap::new());
        assert_eq!(c.len(), 1);
        assert!(c[0].summary.contains("loopback only (127.0.0.1, ::1)"));
        assert_eq!(c[0].verdict, Verdict::Ok);
    }

    #[test]
    fn private_namespace() {
        let mut p = process(vec![inet("IPPROTO_TCP", "LISTEN", ANY4, 8080)]);
        assert!(checks(&p, &BTreeMap::new()).is_empty());
        p.ns.insert("net".into(), 4026532561);
        let c = checks(&p, &BTreeMap::new());
        assert_eq!(ids(&c), ["process.private_netns"]);
        assert!(c[0].summary.contains("4026532561") && c[0].summary.contains("TCP 0.0.0.0:8080"));
        // No listener: nothing to flag.
        p.sockets.clear();
        assert!(checks(&p, &BTreeMap::new()).is_empty());
    }

    /// Mounts as WSL2 and WSL1 report them (from /proc/mounts samples in public WSL bug
    /// reports: WSL2 `C:\ /mnt/c 9p ...aname=drvfs`, WSL1 `C: /mnt/c drvfs ...`).
    #[test]
    fn unix_sockets_on_windows_drives() {
        let mounts = vec![
            Mount { mount_point: "/".into(), fs_type: "ext4".into(), source: "/dev/sdc".into() },
            Mount { mount_point: "/mnt/c".into(), fs_type: "9p".into(), source: "C:\\".into() },
            Mount { mount_point: "/mnt/d".into(), fs_type: "drvfs".into(), source: "D:".into() },
            Mount {
                mount_point: "/mnt/wsl".into(),
                fs_type: "tmpfs".into(),
                source: "none".into(),
            },
        ];
        let at = |p: &str| mount_for_path(p, &mounts).map(|m| m.mount_point.as_str());
        assert_eq!(at("/mnt/c/Users/me/app.sock"), Some("/mnt/c"));
        assert_eq!(at("/mnt/cache/app.sock"), Some("/"));
        assert_eq!(at("/mnt/d/x.sock"), Some("/mnt/d"));
        assert_eq!(at("/run/app.sock"), Some("/"));

        let paths =
            ["/mnt/c/Users/me/app.sock", "/mnt/d/x.sock", "/mnt/wsl/shared.sock", "/tmp/ok.sock"];
        let p = process(paths.iter().map(|p| unix(p)).collect());
        let by_path: BTreeMap<String, Mount> = paths
            .iter()
            .map(|p| ((*p).to_owned(), mount_for_path(p, &mounts).unwrap().clone()))
            .collect();
        let c = checks(&p, &by_path);
        assert_eq!(ids(&c), ["process.unix_on_host_fs", "process.unix_on_host_fs"]);
        assert!(c[0].summary.contains("/mnt/c (9p mount of C:\\)"), "{}", c[0].summary);
        assert!(c[1].summary.contains("drvfs"));
    }

    #[test]
    fn privileged_ports() {
        let mut p = process(vec![
            inet("IPPROTO_TCP", "LISTEN", ANY4, 80),
            inet("IPPROTO_TCP", "LISTEN", ANY4, 8080),
        ]);
        assert!(checks(&p, &BTreeMap::new()).is_empty(), "it has CAP_NET_BIND_SERVICE");
        p.net_bind_service = false;
        let c = checks(&p, &BTreeMap::new());
        assert_eq!(ids(&c), ["process.privileged_port"]);
        assert!(c[0].summary.contains("TCP 0.0.0.0:80 below") && !c[0].summary.contains("8080"));
        p.ip_unprivileged_port_start = Some(0);
        assert!(checks(&p, &BTreeMap::new()).is_empty());
    }
}
