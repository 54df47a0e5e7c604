//! WSL2's networking mode, DNS tunnelling and port tracker, from what the kernel shows inside
//! the distribution. Every conclusion carries the facts it rests on.
//!
//! What each mode leaves behind, as WSL's code sets it up (microsoft/WSL at 3e27a6a5):
//! - mirrored: an interface `loopback0`, ip rules sending TCP/UDP to tables 127 and 128, a route
//!   to 127.0.0.1 through 169.254.73.249 (`src/linux/init/NetworkManager.cpp`), the port
//!   tracker's seccomp filter inherited by every process (`Seccomp: 2` in /proc/1/status,
//!   `src/linux/init/main.cpp` `RegisterSeccompHook`) and the guest's 4096-port ephemeral window
//!   in `ip_local_port_range` (`main.cpp` `SetEphemeralPortRange`);
//! - consomme: the same port tracker, `loopback0` on 169.254.73.250/28
//!   (`src/windows/common/ConsommeNetworking.cpp`) and a virtio-net eth0;
//! - nat: none of these; eth0 on the Hyper-V switch (172.16.0.0/12); the localhost relay runs in
//!   WSL's own namespace, out of the distribution's sight;
//! - bridged: like NAT from inside, on the LAN's addresses: only `wslinfo` tells them apart;
//! - none: no interface but lo.
//!
//! DNS tunnelling puts its listener's address, 10.255.255.254 by default, on lo
//! (`src/linux/init/DnsServer.cpp`).
//!
//! [`detect`] is a pure function of a [`SystemTree`]: files under a root directory plus the
//! interface, rule and route lists, so that tests can fabricate each mode; [`SystemTree::live`]
//! reads the running system.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::dns::WSL_TUNNEL;

/// WSL's mirrored loopback gateway (`LX_INIT_IPV4_LOOPBACK_GATEWAY_ADDRESS`).
const LOOPBACK_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 73, 249);
/// Consomme's address on `loopback0`.
const CONSOMME_LOOPBACK: Ipv4Addr = Ipv4Addr::new(169, 254, 73, 250);
/// The width of the ephemeral window mirrored mode gives the guest.
const MIRRORED_EPHEMERAL_PORTS: u32 = 4096;

/// What the detection looks at.
#[derive(Clone, Debug, Default)]
pub struct SystemTree {
    /// Where `proc/1/status`, `proc/sys/net/ipv4/ip_local_port_range`, `etc/resolv.conf` and
    /// `etc/wsl.conf` are read: `/` on the running system.
    pub root: PathBuf,
    pub interfaces: Vec<Interface>,
    pub rules: Vec<IpRule>,
    pub routes: Vec<Route>,
    /// The output of `wslinfo --networking-mode`, when it ran.
    pub wslinfo: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interface {
    pub name: String,
    pub addrs: Vec<IpAddr>,
    /// The kernel driver of its device (`hv_netvsc`, `virtio_net`), when it has one.
    pub driver: Option<String>,
}

/// One `ip rule`: the table it looks up (`local`, `main`, `127`...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IpRule {
    pub priority: u32,
    pub table: String,
}

/// One route: its destination (`default`, `127.0.0.1`...), gateway and table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Route {
    pub dst: String,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
    pub table: Option<String>,
}

/// What the detection concluded, with the facts behind each part.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkView {
    pub mode: Option<NetworkingMode>,
    /// The facts the mode rests on (or, when it is unknown, what was seen).
    pub mode_evidence: Vec<String>,
    /// DNS tunnelling on (its address is on lo), off, or unknown.
    pub dns_tunneling: Option<bool>,
    pub dns_tunneling_evidence: Vec<String>,
    pub port_tracker: PortTracker,
    pub port_tracker_evidence: Vec<String>,
}

/// How bind() and listen() reach Windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortTracker {
    /// Mirrored/consomme: a seccomp supervisor answers every bind and listen (PID 1 carries
    /// the filter).
    Seccomp,
    /// No seccomp filter: NAT and bridged (whose localhost relay is invisible from here), none,
    /// or a mirrored set-up whose filter is missing.
    NoFilter,
    #[default]
    Unknown,
}

/// Concludes the networking mode, DNS tunnelling and port tracker from `tree`.
pub fn detect(tree: &SystemTree) -> NetworkView {
    let mut view = NetworkView::default();
    let interface = |name: &str| tree.interfaces.iter().find(|i| i.name == name);
    let loopback0 = interface("loopback0");
    let eth0 = interface("eth0");

    // The signs, each with the sentence that reports it.
    let mut mirrored_signs = Vec::new();
    let mut consomme_signs = Vec::new();
    if let Some(lo0) = loopback0 {
        if lo0.addrs.contains(&IpAddr::V4(CONSOMME_LOOPBACK)) {
            consomme_signs.push(format!("loopback0 has {CONSOMME_LOOPBACK}"));
        } else {
            mirrored_signs.push("interface loopback0 exists".to_owned());
        }
    }
    let tables: Vec<&str> =
        ["127", "128"].into_iter().filter(|t| tree.rules.iter().any(|r| r.table == *t)).collect();
    if !tables.is_empty() {
        mirrored_signs.push(format!("ip rules look up table {}", tables.join(" and ")));
    }
    if let Some(route) =
        tree.routes.iter().find(|r| r.gateway == Some(IpAddr::V4(LOOPBACK_GATEWAY)))
    {
        let table = route.table.as_deref().map(|t| format!(" (table {t})")).unwrap_or_default();
        mirrored_signs.push(format!("a route to {} via {LOOPBACK_GATEWAY}{table}", route.dst));
    }
    // A seccomp filter on PID 1 alone proves little (a container runtime installs one too): it
    // backs the other signs but never decides the mode by itself.
    let seccomp = seccomp_mode(&tree.root);
    let seccomp_fact = seccomp.map(|mode| format!("Seccomp: {mode} in /proc/1/status"));
    if let Some((lo, hi)) = port_range(&tree.root) {
        let width = hi.saturating_sub(lo) + 1;
        if width == MIRRORED_EPHEMERAL_PORTS {
            mirrored_signs.push(format!("ip_local_port_range {lo}-{hi} is {width} ports wide"));
        }
    }
    let eth0_driver = eth0.and_then(|e| e.driver.as_deref());
    if eth0_driver == Some("virtio_net") {
        consomme_signs.push("eth0 is virtio-net".to_owned());
    }

    let filtered = seccomp == Some(2);
    let from_wslinfo = tree.wslinfo.as_deref().and_then(parse_wslinfo_mode);
    if let (Some(mode), Some(output)) = (from_wslinfo, &tree.wslinfo) {
        view.mode = Some(mode);
        view.mode_evidence.push(format!("wslinfo --networking-mode: {}", output.trim()));
        // What the kernel shows, to back it (or contradict it: the facts are all listed).
        view.mode_evidence.extend(consomme_signs.iter().chain(&mirrored_signs).cloned());
        view.mode_evidence.extend(seccomp_fact.clone().filter(|_| filtered));
    } else if !consomme_signs.is_empty()
        && (!mirrored_signs.is_empty() || loopback0.is_some() || filtered)
    {
        view.mode = Some(NetworkingMode::Consomme);
        view.mode_evidence = consomme_signs.into_iter().chain(mirrored_signs).collect();
        view.mode_evidence.extend(seccomp_fact.clone().filter(|_| filtered));
    } else if !mirrored_signs.is_empty() {
        view.mode = Some(NetworkingMode::Mirrored);
        view.mode_evidence = mirrored_signs;
        view.mode_evidence.extend(seccomp_fact.clone().filter(|_| filtered));
    } else {
        let others: Vec<&Interface> = tree
            .interfaces
            .iter()
            .filter(|i| i.name != "lo" && i.addrs.iter().any(|a| !a.is_loopback()))
            .collect();
        let nat_address = eth0.and_then(|e| {
            e.addrs.iter().find(|a| match a {
                IpAddr::V4(v4) => v4.octets()[0] == 172 && (16..32).contains(&v4.octets()[1]),
                IpAddr::V6(_) => false,
            })
        });
        if others.is_empty() {
            view.mode = Some(NetworkingMode::None);
            view.mode_evidence.push("no interface but lo has an address".to_owned());
        } else if let Some(address) = nat_address {
            view.mode = Some(NetworkingMode::Nat);
            view.mode_evidence.push(format!(
                "eth0 has {address} (Hyper-V switch, 172.16.0.0/12), and no loopback0, table 127/128 rules or seccomp filter"
            ));
        } else {
            let shown: Vec<String> = others
                .iter()
                .map(|i| {
                    let addrs: Vec<String> = i.addrs.iter().map(ToString::to_string).collect();
                    format!("{} has {}", i.name, addrs.join(", "))
                })
                .collect();
            view.mode_evidence.push(format!(
                "{}, and no loopback0, table 127/128 rules or seccomp filter: NAT or bridged, which look alike from inside",
                shown.join("; ")
            ));
        }
    }
    if tree.wslinfo.is_none() {
        view.mode_evidence.push("wslinfo not available".to_owned());
    }

    let tracked = matches!(view.mode, Some(NetworkingMode::Mirrored | NetworkingMode::Consomme));
    (view.port_tracker, view.port_tracker_evidence) = match (&seccomp_fact, filtered, tracked) {
        (None, _, _) => (PortTracker::Unknown, vec!["/proc/1/status not readable".to_owned()]),
        (Some(fact), true, true) => (PortTracker::Seccomp, vec![fact.clone()]),
        (Some(fact), true, false) => (
            PortTracker::Unknown,
            vec![format!(
                "{fact}, but WSL installs its filter in mirrored and consomme modes only: another seccomp filter (a container runtime's?)"
            )],
        ),
        (Some(fact), false, _) => (PortTracker::NoFilter, vec![fact.clone()]),
    };

    let tunnel_on_lo = interface("lo").is_some_and(|lo| lo.addrs.contains(&IpAddr::V4(WSL_TUNNEL)));
    let resolv = std::fs::read_to_string(tree.root.join("etc/resolv.conf")).ok();
    let tunnel_nameserver = resolv.as_deref().is_some_and(|text| {
        super::dns::parse_resolv_conf(text).1.contains(&IpAddr::V4(WSL_TUNNEL))
    });
    if tunnel_on_lo {
        view.dns_tunneling = Some(true);
        view.dns_tunneling_evidence.push(format!("{WSL_TUNNEL} is on lo"));
    } else if interface("lo").is_some() {
        view.dns_tunneling = Some(false);
        view.dns_tunneling_evidence.push(format!("{WSL_TUNNEL} is not on lo"));
    }
    if tunnel_nameserver {
        view.dns_tunneling_evidence.push(format!("/etc/resolv.conf names {WSL_TUNNEL}"));
    }
    view
}

/// The `Seccomp:` field of `/proc/1/status`: 0 none, 1 strict, 2 filter.
fn seccomp_mode(root: &Path) -> Option<u8> {
    let status = std::fs::read_to_string(root.join("proc/1/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok())
}

/// `net.ipv4.ip_local_port_range`: the first and last ephemeral port.
fn port_range(root: &Path) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(root.join("proc/sys/net/ipv4/ip_local_port_range")).ok()?;
    let mut words = text.split_whitespace().map(str::parse::<u32>);
    match (words.next(), words.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

impl SystemTree {
    /// The running system: `/`, the lists from `ip -j` (iproute2; getifaddrs for the
    /// interfaces when it is missing), and `wslinfo` when it answers within two seconds.
    pub fn live() -> SystemTree {
        let json = |args: &[&str]| {
            run_for("ip", args, Duration::from_secs(2))
                .and_then(|out| serde_json::from_str::<Vec<serde_json::Value>>(&out).ok())
        };
        let interfaces = json(&["-j", "addr", "show"])
            .map(|links| links.iter().filter_map(interface_from_json).collect())
            .unwrap_or_else(interfaces_from_getifaddrs);
        let rules = json(&["-j", "rule", "show"])
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|r| {
                        Some(IpRule {
                            priority: u32::try_from(r.get("priority")?.as_u64()?).ok()?,
                            table: text(r.get("table")?)?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let routes = json(&["-j", "route", "show", "table", "all"])
            .map(|routes| {
                routes
                    .iter()
                    .filter_map(|r| {
                        Some(Route {
                            dst: text(r.get("dst")?)?,
                            gateway: r.get("gateway").and_then(|g| g.as_str()?.parse().ok()),
                            dev: r.get("dev").and_then(text),
                            table: r.get("table").and_then(text),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let wslinfo = run_for("wslinfo", &["--networking-mode"], Duration::from_secs(2));
        SystemTree { root: PathBuf::from("/"), interfaces, rules, routes, wslinfo }
    }
}

/// A JSON string or number as text (`ip -j` writes table ids as either).
fn text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One link of `ip -j addr show`, with its driver from /sys.
fn interface_from_json(link: &serde_json::Value) -> Option<Interface> {
    let name = link.get("ifname")?.as_str()?.to_owned();
    let addrs = link
        .get("addr_info")
        .and_then(|a| a.as_array())
        .map(|infos| infos.iter().filter_map(|i| i.get("local")?.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let driver = std::fs::read_link(format!("/sys/class/net/{name}/device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
    Some(Interface { name, addrs, driver })
}

fn interfaces_from_getifaddrs() -> Vec<Interface> {
    interfaces().into_iter().map(|(name, addrs)| Interface { name, addrs, driver: None }).collect()
}

/// Runs `program args` and returns its standard output, or `None` when it is missing, fails
/// or takes longer than `limit` (it is then killed).
fn run_for(program: &str, args: &[&str], limit: Duration) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + limit;
    while child.try_wait().ok()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkingMode {
    /// The default: the VM sits behind a NAT on a virtual switch (eth0 on 172.16.0.0/12).
    Nat,
    /// Windows's interfaces are mirrored into Linux (Windows 11 22H2+).
    Mirrored,
    /// The former name of `consomme`, as older `wslinfo` prints it.
    VirtioProxy,
    /// Windows' own network stack proxies the guest's traffic (virtio-net eth0, `loopback0` on
    /// 169.254.73.250/28); bind/listen go through the same port tracker as mirrored.
    Consomme,
    Bridged,
    /// `networkingMode=none`: no network.
    None,
}

/// `wslinfo --networking-mode` prints the mode's name (`nat`, `mirrored`, ...).
pub fn parse_wslinfo_mode(output: &str) -> Option<NetworkingMode> {
    match output.trim().to_ascii_lowercase().as_str() {
        "nat" => Some(NetworkingMode::Nat),
        "mirrored" => Some(NetworkingMode::Mirrored),
        // WSL renamed virtio-proxy to consomme: one mode under two names.
        "virtioproxy" | "consomme" => Some(NetworkingMode::Consomme),
        "bridged" => Some(NetworkingMode::Bridged),
        "none" => Some(NetworkingMode::None),
        _ => None,
    }
}

/// Interface names with their addresses.
fn interfaces() -> Vec<(String, Vec<IpAddr>)> {
    let mut out: Vec<(String, Vec<IpAddr>)> = Vec::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return out };
    for ifa in addrs {
        let ip = ifa.address.as_ref().and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        match out.iter_mut().find(|(name, _)| *name == ifa.interface_name) {
            Some((_, ips)) => ips.extend(ip),
            None => out.push((ifa.interface_name.clone(), ip.into_iter().collect())),
        }
    }
    out
}

#[cfg(test)]
mod tests;
