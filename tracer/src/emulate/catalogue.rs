//! The quirk catalogue (tracer/data/quirks.toml): what each quirk is, where it comes from, and
//! which matcher of the kernel programs reproduces it. Parsed and validated at start-up; the
//! code never names an individual quirk.

use std::{fmt, net::SocketAddrV4, path::PathBuf, sync::LazyLock};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tracer_common::emulate::PortRange;

use crate::decode::{errno::Errno, names};

/// The catalogue shipped in the binary.
const EMBEDDED: &str = include_str!("../../data/quirks.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Wsl1,
    Wsl2,
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Wsl1 => "wsl1",
            Platform::Wsl2 => "wsl2",
        }
    }
}

/// What `--profile NAME` (or `--emulate NAME`) selects: the quirks of a platform, for WSL2 in one
/// networking mode. `assume` is how the knowledge base then judges the trace (`--assume`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    pub platform: Platform,
    pub assume: &'static str,
    /// Another name of this profile (`wsl2` is the default mode, NAT).
    pub alias_of: Option<&'static str>,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile { name: "wsl1", platform: Platform::Wsl1, assume: "wsl1", alias_of: None },
        Profile {
            name: "wsl2",
            platform: Platform::Wsl2,
            assume: "wsl2,nat",
            alias_of: Some("wsl2-nat"),
        },
        Profile { name: "wsl2-nat", platform: Platform::Wsl2, assume: "wsl2,nat", alias_of: None },
        Profile {
            name: "wsl2-mirrored",
            platform: Platform::Wsl2,
            assume: "wsl2,mirrored",
            alias_of: None,
        },
    ];

    pub fn named(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name == name)
    }

    /// The name quirks list it under (an alias stands for its target).
    pub fn canonical(&self) -> &'static str {
        self.alias_of.unwrap_or(self.name)
    }

    pub fn names() -> Vec<&'static str> {
        Profile::ALL.iter().map(|p| p.name).collect()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Reproduced on a real system by the wsltrace authors.
    Verified,
    /// Read in WSL's own code: a reference is a permalink to it, with the commit.
    Source,
    /// Taken from third-party reports.
    Reported,
}

/// One quirk as written in the catalogue.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quirk {
    pub id: String,
    pub title: String,
    pub platforms: Vec<Platform>,
    /// The profiles that select it (`wsl1`, `wsl2-nat`, `wsl2-mirrored`); none: only by id.
    #[serde(default)]
    pub profiles: Vec<String>,
    pub effect: String,
    pub explanation: String,
    pub references: Vec<String>,
    pub confidence: Confidence,
    pub inject: Inject,
}

/// Which matcher reproduces the quirk, with names as written in the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "hook", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Inject {
    Getsockopt {
        level: String,
        optname: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        family: Option<String>,
        errno: String,
    },
    Connect {
        when: ConnectWhen,
        blocking: Blocking,
        errno: String,
    },
    /// Decided in the kernel (ports, cgroup bind4/6) or by the supervisor (unix paths).
    /// A key present (even empty) means the quirk takes that kind of target.
    Bind {
        errno: String,
        /// Default targets, replaced by the command line's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ports: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unix_prefixes: Option<Vec<String>>,
    },
    /// WSL2's port tracker: bind() and listen() handed to a seccomp supervisor, which refuses
    /// the ports Windows holds (`ports`) and Windows' ephemeral range outside the guest's own
    /// window, with WSL's exemptions.
    PortTracker {
        errno: String,
        #[serde(default)]
        ports: Vec<String>,
        windows_ephemeral: String,
    },
    /// TCP resets from 127.0.0.1 to a socket still connecting are dropped: the connect hangs.
    LoopbackHang,
    /// Replies from the nameservers (default: the IPv4 ones of /etc/resolv.conf) are dropped.
    DnsDrop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectWhen {
    /// Nothing listens at the destination (decided in the kernel by a socket lookup).
    NoListener,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Blocking {
    Any,
    Nonblocking,
}

/// A quirk's matcher with every name resolved to the number the kernel compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Getsockopt {
        level: i32,
        optname: i32,
        family: u32,
        errno: Errno,
    },
    ConnectNoListener {
        nonblocking_only: bool,
        errno: Errno,
    },
    /// `None`: the quirk does not take that kind of target.
    Bind {
        errno: Errno,
        ports: Option<Vec<PortRange>>,
        unix_prefixes: Option<Vec<PathBuf>>,
    },
    PortTracker {
        errno: Errno,
        held: Vec<PortRange>,
        windows_ephemeral: PortRange,
    },
    LoopbackHang,
    /// Empty: the nameservers of /etc/resolv.conf, read when the run starts.
    DnsDrop {
        servers: Vec<SocketAddrV4>,
    },
}

/// The kinds of target the command line gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Ports,
    UnixPrefixes,
    Nameservers,
}

impl Action {
    pub fn takes(&self, kind: TargetKind) -> bool {
        match (self, kind) {
            (Action::Bind { ports, .. }, TargetKind::Ports) => ports.is_some(),
            (Action::Bind { unix_prefixes, .. }, TargetKind::UnixPrefixes) => {
                unix_prefixes.is_some()
            }
            (Action::PortTracker { .. }, TargetKind::Ports) => true,
            (Action::DnsDrop { .. }, TargetKind::Nameservers) => true,
            _ => false,
        }
    }

    /// What the counts at the end count: calls failed, or replies dropped (a hang has no
    /// failed call until it times out).
    pub fn drops_packets(&self) -> bool {
        matches!(self, Action::LoopbackHang | Action::DnsDrop { .. })
    }
}

#[derive(Debug)]
pub struct Entry {
    pub quirk: Quirk,
    pub action: Action,
}

#[derive(Debug)]
pub struct Catalogue {
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    quirk: Vec<Quirk>,
}

static CATALOGUE: LazyLock<Result<Catalogue, String>> =
    LazyLock::new(|| Catalogue::parse(EMBEDDED).map_err(|err| format!("{err:#}")));

impl Catalogue {
    /// The catalogue built into wsltrace.
    pub fn embedded() -> Result<&'static Catalogue> {
        CATALOGUE.as_ref().map_err(|err| {
            anyhow::anyhow!(
                "the built-in quirk catalogue is invalid ({err}): fix tracer/data/quirks.toml"
            )
        })
    }

    pub fn parse(text: &str) -> Result<Catalogue> {
        let file: File = toml::from_str(text).map_err(|err| {
            // toml's message spans several lines (with a caret under the spot): keep one.
            let line = err.span().map(|s| text[..s.start].lines().count().max(1));
            anyhow::anyhow!(
                "{}{}",
                line.map(|l| format!("line {l}: ")).unwrap_or_default(),
                err.message()
            )
        })?;
        let mut entries: Vec<Entry> = Vec::new();
        for quirk in file.quirk {
            let id = quirk.id.clone();
            let valid_id = !id.is_empty()
                && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_id {
                bail!("quirk id '{id}' must be lowercase letters, digits and dashes");
            }
            if entries.iter().any(|e| e.quirk.id == id) {
                bail!("quirk '{id}' is defined twice");
            }
            if quirk.platforms.is_empty() || quirk.references.is_empty() {
                bail!("quirk '{id}' needs at least one platform and one reference");
            }
            for name in &quirk.profiles {
                match Profile::named(name) {
                    Some(p) if p.alias_of.is_none() && quirk.platforms.contains(&p.platform) => {}
                    Some(p) if p.alias_of.is_none() => {
                        bail!("quirk '{id}' is in profile {name} but not on {}", p.platform)
                    }
                    _ => bail!(
                        "quirk '{id}': unknown profile '{name}' (valid: wsl1, wsl2-nat, wsl2-mirrored)"
                    ),
                }
            }
            if quirk.confidence == Confidence::Source
                && !quirk.references.iter().any(|r| is_permalink(r))
            {
                bail!(
                    "quirk '{id}' rests on WSL's source: give a permalink with the commit (https://github.com/microsoft/WSL/blob/<40 hex digits>/...)"
                );
            }
            let action = resolve(&quirk.inject).with_context(|| format!("quirk '{id}'"))?;
            entries.push(Entry { quirk, action });
        }
        Ok(Catalogue { entries })
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.quirk.id == id)
    }

    pub fn ids(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.quirk.id.as_str()).collect()
    }

    /// The quirks of a profile, in catalogue order.
    pub fn profile(&self, profile: Profile) -> impl Iterator<Item = &Entry> {
        let name = profile.canonical();
        self.entries.iter().filter(move |e| e.quirk.profiles.iter().any(|p| p == name))
    }
}

/// `https://github.com/microsoft/WSL/blob/<commit>/...`: a link that stays true.
fn is_permalink(reference: &str) -> bool {
    reference
        .strip_prefix("https://github.com/microsoft/WSL/blob/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(commit, _)| {
            commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())
        })
}

fn resolve(inject: &Inject) -> Result<Action> {
    Ok(match inject {
        Inject::Getsockopt { level, optname, family, errno } => {
            let level_value = by_name(names::LEVELS, level, "socket option level")?;
            let optname =
                by_name(names::options_at(level_value), optname, &format!("option at {level}"))?;
            let family = match family {
                Some(f) => by_name(names::FAMILIES, f, "address family")? as u32,
                None => 0,
            };
            Action::Getsockopt {
                level: level_value as i32,
                optname: optname as i32,
                family,
                errno: errno_named(errno)?,
            }
        }
        Inject::Connect { when: ConnectWhen::NoListener, blocking, errno } => {
            Action::ConnectNoListener {
                nonblocking_only: *blocking == Blocking::Nonblocking,
                errno: errno_named(errno)?,
            }
        }
        Inject::Bind { errno, ports, unix_prefixes } => Action::Bind {
            errno: errno_named(errno)?,
            ports: ports.as_deref().map(port_ranges).transpose()?,
            unix_prefixes: unix_prefixes
                .as_ref()
                .map(|list| {
                    list.iter()
                        .map(|p| parse_path_prefix(p))
                        .collect::<Result<_, _>>()
                        .map_err(|err| anyhow::anyhow!("{err}"))
                })
                .transpose()?,
        },
        Inject::PortTracker { errno, ports, windows_ephemeral } => Action::PortTracker {
            errno: errno_named(errno)?,
            held: port_ranges(ports)?,
            windows_ephemeral: parse_port_range(windows_ephemeral)
                .map_err(|err| anyhow::anyhow!("{err}"))?,
        },
        Inject::LoopbackHang => Action::LoopbackHang,
        Inject::DnsDrop => Action::DnsDrop { servers: Vec::new() },
    })
}

fn port_ranges(ports: &[String]) -> Result<Vec<PortRange>> {
    ports
        .iter()
        .map(|p| parse_port_range(p))
        .collect::<Result<_, _>>()
        .map_err(|err| anyhow::anyhow!("{err}"))
}

fn by_name(table: names::Table, name: &str, what: &str) -> Result<i64> {
    match table.iter().find(|(_, n)| *n == name) {
        Some((value, _)) => Ok(*value),
        None => bail!("'{name}' is not a known {what}"),
    }
}

fn errno_named(name: &str) -> Result<Errno> {
    Errno::parse(name).map_err(|err| anyhow::anyhow!("{err}"))
}

/// `8080` or `8000-8100` (inclusive); port 0 is "any free port" and cannot be a target.
pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let bad = || format!("'{s}' is not a port or a port range (e.g. 8080 or 50000-50059)");
    let (first, last) = match s.trim().split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let first: u16 = first.parse().map_err(|_| bad())?;
    let last: u16 = last.parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(format!(
            "port range '{s}' must go from 1 up to at most 65535 (e.g. 50000-50059)"
        ));
    }
    Ok(PortRange { first, last })
}

/// An absolute directory prefix for unix socket paths, such as `/mnt/`.
pub fn parse_path_prefix(s: &str) -> Result<PathBuf, String> {
    if !s.starts_with('/') {
        return Err(format!("unix path prefix '{s}' must be absolute (e.g. /mnt/)"));
    }
    Ok(PathBuf::from(s))
}

/// `ADDR` or `ADDR:PORT` (IPv4; port 53 when not given): a nameserver whose replies are dropped.
pub fn parse_nameserver(s: &str) -> Result<SocketAddrV4, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddrV4>() {
        return Ok(addr);
    }
    s.parse::<std::net::Ipv4Addr>().map(|ip| SocketAddrV4::new(ip, 53)).map_err(|_| {
        format!("'{s}' is not an IPv4 nameserver (e.g. 10.255.255.254 or 127.0.0.1:5353)")
    })
}

/// The IPv4 nameservers of a resolv.conf, port 53 (WSL's DNS tunnel is IPv4 only).
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddrV4> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::Ipv4Addr>().ok())
        .map(|ip| SocketAddrV4::new(ip, 53))
        .collect()
}

/// `8000-8100`, `8080`.
pub fn show_range(r: &PortRange) -> String {
    if r.first == r.last { r.first.to_string() } else { format!("{}-{}", r.first, r.last) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalogue_is_valid() {
        let catalogue = Catalogue::embedded().unwrap();
        let peercred = catalogue.get("peercred-enoprotoopt").unwrap();
        assert_eq!(
            peercred.action,
            Action::Getsockopt { level: 1, optname: 17, family: 1, errno: Errno(92) }
        );
        let named = |n| Profile::named(n).unwrap();
        assert!(catalogue.profile(named("wsl1")).any(|e| e.quirk.id == "peercred-einval"));
        assert!(catalogue.profile(named("wsl2")).all(|e| e.quirk.id != "peercred-einval"));
        let ids = |n| catalogue.profile(named(n)).map(|e| e.quirk.id.as_str()).collect::<Vec<_>>();
        assert_eq!(ids("wsl2"), ids("wsl2-nat"), "wsl2 is NAT, WSL's default");
        assert!(ids("wsl2-mirrored").contains(&"port-tracker"));
        assert!(!ids("wsl2-nat").contains(&"port-tracker"));
        assert!(ids("wsl2-mirrored").contains(&"loopback-connect-hang"));
        // EACCES on bind has no path in WSL2's code: no profile has it any more.
        assert!(
            Profile::ALL.iter().all(|p| catalogue.profile(*p).all(|e| e.quirk.id != "bind-eacces"))
        );
        for entry in &catalogue.entries {
            assert!(entry.quirk.references.iter().all(|r| r.starts_with("https://")));
        }
    }

    #[test]
    fn bad_entries_are_named() {
        let quirk = |inject: &str| {
            format!(
                "[[quirk]]\nid = \"x\"\ntitle = \"t\"\nplatforms = [\"wsl2\"]\neffect = \"e\"\n\
                 explanation = \"e\"\nreferences = [\"https://x\"]\nconfidence = \"reported\"\n\
                 [quirk.inject]\n{inject}\n"
            )
        };
        let err = Catalogue::parse(&quirk(
            "hook = \"getsockopt\"\nlevel = \"SOL_SOCKET\"\noptname = \"SO_PEERCRD\"\nerrno = \"EINVAL\"",
        ))
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "quirk 'x': 'SO_PEERCRD' is not a known option at SOL_SOCKET"
        );
        let err = Catalogue::parse(&quirk("hook = \"sendmsg\"\nerrno = \"EINVAL\"")).unwrap_err();
        assert!(format!("{err:#}").starts_with("line 10: unknown variant `sendmsg`"), "{err:#}");
        let source = quirk("hook = \"loopback-hang\"").replace("\"reported\"", "\"source\"");
        let err = Catalogue::parse(&source).unwrap_err();
        assert!(format!("{err:#}").contains("give a permalink with the commit"), "{err:#}");
        let mirrored = quirk("hook = \"loopback-hang\"")
            .replace("platforms = [\"wsl2\"]", "platforms = [\"wsl2\"]\nprofiles = [\"wsl1\"]");
        let err = Catalogue::parse(&mirrored).unwrap_err();
        assert_eq!(format!("{err:#}"), "quirk 'x' is in profile wsl1 but not on wsl1");
        let err =
            Catalogue::parse(&quirk("hook = \"bind\"\nerrno = \"EACCESS\"\nports = [\"80\"]"))
                .unwrap_err();
        assert!(format!("{err:#}").contains("did you mean EACCES?"), "{err:#}");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("8080"), Ok(PortRange { first: 8080, last: 8080 }));
        assert_eq!(parse_port_range("1-1023"), Ok(PortRange { first: 1, last: 1023 }));
        assert!(parse_port_range("0").is_err());
        assert!(parse_port_range("9-8").is_err());
        assert!(parse_port_range("70000").is_err());
        assert!(parse_path_prefix("mnt/").is_err());
    }

    #[test]
    fn nameservers() {
        assert_eq!(parse_nameserver("10.255.255.254"), Ok("10.255.255.254:53".parse().unwrap()));
        assert_eq!(parse_nameserver("127.0.0.1:5353"), Ok("127.0.0.1:5353".parse().unwrap()));
        assert!(parse_nameserver("::1").is_err());
        let conf = "# generated by WSL\nnameserver 10.255.255.254\nnameserver fe80::1\nsearch x\n";
        assert_eq!(resolv_conf_nameservers(conf), ["10.255.255.254:53".parse().unwrap()]);
    }
}
