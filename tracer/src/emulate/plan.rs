//! From the user's choice (profiles, quirks, targets) to what the kernel programs and the
//! seccomp supervisor are told to do.

use std::net::SocketAddrV4;

use anyhow::{Result, bail};
use tracer_common::emulate::{
    BLOCKING_ANY, BLOCKING_NONBLOCKING_ONLY, EmulateConfig, Endpoint4, MAX_NAMESERVERS,
    MAX_PORT_RANGES, MAX_QUIRKS, MAX_SOCKOPT_RULES, SockoptRule,
};

use super::{
    args::Targets,
    catalogue::{
        Action, Catalogue, Entry, Profile, TargetKind, resolv_conf_nameservers, show_range,
    },
    supervisor::{Supervision, TrackerRule, UnixRule},
};
use crate::decode::names;

/// A selected quirk with its targets applied.
#[derive(Debug)]
pub struct Selected {
    pub entry: &'static Entry,
    pub action: Action,
}

#[derive(Debug)]
pub struct Plan {
    pub quirks: Vec<Selected>,
}

impl Plan {
    /// Profiles and quirks by name; each kind of target replaces the defaults of the selected
    /// quirks that take it, or selects the catalogue's first quirk that takes it.
    pub fn new(
        catalogue: &'static Catalogue,
        profiles: &[String],
        quirks: &[String],
        targets: &Targets,
    ) -> Result<Plan> {
        let mut chosen: Vec<&'static Entry> = Vec::new();
        let mut add = |entry: &'static Entry| {
            if !chosen.iter().any(|c| std::ptr::eq(*c, entry)) {
                chosen.push(entry);
            }
        };
        for name in profiles.iter().map(|p| p.trim()) {
            let Some(profile) = Profile::named(name) else {
                bail!(
                    "unknown profile '{name}': valid profiles are {}",
                    Profile::names().join(", ")
                );
            };
            catalogue.profile(profile).for_each(&mut add);
        }
        for name in quirks.iter().map(|q| q.trim()) {
            match catalogue.get(name) {
                Some(entry) => add(entry),
                None => bail!(
                    "unknown quirk '{name}': valid quirks are {} (see wsltrace emulate --list)",
                    catalogue.ids().join(", ")
                ),
            }
        }
        for (kind, given) in [
            (TargetKind::Ports, !targets.ports.is_empty()),
            (TargetKind::UnixPrefixes, !targets.path_prefixes.is_empty()),
            (TargetKind::Nameservers, !targets.dns_servers.is_empty()),
        ] {
            if !given || chosen.iter().any(|e| e.action.takes(kind)) {
                continue;
            }
            match catalogue.entries.iter().find(|e| e.action.takes(kind)) {
                Some(entry) => chosen.push(entry),
                None => bail!("no quirk of the catalogue takes {kind:?} targets"),
            }
        }
        if chosen.is_empty() {
            bail!(
                "nothing to emulate: give --profile {} or --quirk ID (see wsltrace emulate --list)",
                Profile::names().join("|")
            );
        }
        let quirks = chosen
            .into_iter()
            .map(|entry| Ok(Selected { entry, action: apply_targets(&entry.action, targets)? }))
            .collect::<Result<Vec<_>>>()?;
        let plan = Plan { quirks };
        plan.check()?;
        Ok(plan)
    }

    /// Two quirks deciding the same call cannot both apply; the kernel has room for so many rules.
    fn check(&self) -> Result<()> {
        if self.quirks.len() > MAX_QUIRKS as usize {
            bail!("at most {MAX_QUIRKS} quirks can be emulated at once");
        }
        for (i, a) in self.quirks.iter().enumerate() {
            for b in &self.quirks[i + 1..] {
                if let Some(what) = overlap(&a.action, &b.action) {
                    bail!(
                        "quirks {} and {} both decide {what}: keep one",
                        a.entry.quirk.id,
                        b.entry.quirk.id
                    );
                }
            }
        }
        let sockopt = self.quirks.iter().filter(|q| matches!(q.action, Action::Getsockopt { .. }));
        if sockopt.count() > MAX_SOCKOPT_RULES {
            bail!("at most {MAX_SOCKOPT_RULES} getsockopt quirks can be emulated at once");
        }
        for q in &self.quirks {
            let id = &q.entry.quirk.id;
            match &q.action {
                Action::Bind { ports, unix_prefixes, .. } => {
                    let ports = ports.as_deref().unwrap_or_default();
                    if ports.len() > MAX_PORT_RANGES {
                        bail!("at most {MAX_PORT_RANGES} port ranges can be given to --bind-ports");
                    }
                    if ports.is_empty() && unix_prefixes.as_deref().unwrap_or_default().is_empty() {
                        bail!(
                            "quirk {id} needs targets: give --bind-ports RANGE or --bind-path-prefix DIR"
                        );
                    }
                }
                Action::DnsDrop { servers } if servers.len() > MAX_NAMESERVERS => {
                    bail!("at most {MAX_NAMESERVERS} nameservers can be given to --dns-server");
                }
                Action::DnsDrop { servers } if servers.is_empty() => bail!(
                    "quirk {id} needs a nameserver: /etc/resolv.conf names no IPv4 one, give --dns-server ADDR"
                ),
                _ => {}
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn ids(&self) -> Vec<&str> {
        self.quirks.iter().map(|q| q.entry.quirk.id.as_str()).collect()
    }

    /// The rules for the kernel programs; `slot` of each is the quirk's index in the plan.
    pub fn kernel_config(&self) -> EmulateConfig {
        let mut cfg = EmulateConfig::default();
        let mut sockopt = 0;
        for (slot, q) in (0_u32..).zip(&self.quirks) {
            match &q.action {
                Action::Getsockopt { level, optname, family, errno } => {
                    cfg.sockopt[sockopt] = SockoptRule {
                        errno: errno.0.into(),
                        slot,
                        level: *level,
                        optname: *optname,
                        family: *family,
                        _pad: 0,
                    };
                    sockopt += 1;
                }
                Action::ConnectNoListener { nonblocking_only, errno } => {
                    cfg.connect.errno = errno.0.into();
                    cfg.connect.slot = slot;
                    cfg.connect.blocking =
                        if *nonblocking_only { BLOCKING_NONBLOCKING_ONLY } else { BLOCKING_ANY };
                }
                Action::Bind { errno, ports: Some(ports), .. } if !ports.is_empty() => {
                    cfg.bind.errno = errno.0.into();
                    cfg.bind.slot = slot;
                    cfg.bind.count = ports.len() as u32;
                    for (dst, src) in cfg.bind.ports.iter_mut().zip(ports) {
                        *dst = *src;
                    }
                }
                Action::LoopbackHang => cfg.drop.hang_slot = slot + 1,
                Action::DnsDrop { servers } => {
                    cfg.drop.dns_slot = slot + 1;
                    cfg.drop.dns_count = servers.len().min(MAX_NAMESERVERS) as u32;
                    for (dst, src) in cfg.drop.nameservers.iter_mut().zip(servers) {
                        *dst = Endpoint4 {
                            addr: u32::from_ne_bytes(src.ip().octets()),
                            port: src.port().to_be(),
                            _pad: 0,
                        };
                    }
                }
                Action::Bind { .. } | Action::PortTracker { .. } => {}
            }
        }
        cfg
    }

    /// What the seccomp supervisor decides (unix paths, the port tracker), if anything.
    pub fn supervision(&self) -> Option<Supervision> {
        let mut supervision = Supervision::default();
        for (slot, q) in (0_u32..).zip(&self.quirks) {
            match &q.action {
                Action::Bind { errno, unix_prefixes: Some(prefixes), .. }
                    if !prefixes.is_empty() =>
                {
                    supervision.unix =
                        Some(UnixRule { prefixes: prefixes.clone(), errno: errno.0, slot });
                }
                Action::PortTracker { errno, held, windows_ephemeral } => {
                    supervision.tracker = Some(TrackerRule {
                        held: held.clone(),
                        windows_ephemeral: *windows_ephemeral,
                        errno: errno.0,
                        slot,
                    });
                }
                _ => {}
            }
        }
        (supervision.unix.is_some() || supervision.tracker.is_some()).then_some(supervision)
    }

    /// The directories whose unix paths a bind quirk treats as on a Windows drive: under
    /// emulation they stand for DrvFs, for the rules too.
    pub fn drvfs_stand_ins(&self) -> Vec<std::path::PathBuf> {
        self.quirks
            .iter()
            .filter_map(|q| match &q.action {
                Action::Bind { unix_prefixes: Some(prefixes), .. } => Some(prefixes.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Whether a getsockopt quirk is selected (its program is attached at the hierarchy's root).
    pub fn has_sockopt(&self) -> bool {
        self.quirks.iter().any(|q| matches!(q.action, Action::Getsockopt { .. }))
    }

    pub fn needs_nonblocking_layout(&self) -> bool {
        self.quirks
            .iter()
            .any(|q| matches!(q.action, Action::ConnectNoListener { nonblocking_only: true, .. }))
    }

    /// One line per quirk: `id (targets)`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .quirks
            .iter()
            .map(|q| {
                let id = &q.entry.quirk.id;
                let ranges = |r: &[tracer_common::emulate::PortRange]| {
                    r.iter().map(show_range).collect::<Vec<_>>().join(", ")
                };
                match &q.action {
                    Action::Bind { ports, unix_prefixes, .. } => {
                        let mut targets: Vec<String> = ports
                            .iter()
                            .flatten()
                            .map(|r| format!("port {}", show_range(r)))
                            .collect();
                        targets.extend(
                            unix_prefixes
                                .iter()
                                .flatten()
                                .map(|p| format!("unix paths under {}", p.display())),
                        );
                        format!("{id} ({})", targets.join(", "))
                    }
                    Action::PortTracker { held, windows_ephemeral, .. } => {
                        let held = match held.is_empty() {
                            true => String::new(),
                            false => format!("Windows holds {}; ", ranges(held)),
                        };
                        format!(
                            "{id} ({held}Windows' ephemeral range {} outside the guest's window)",
                            show_range(windows_ephemeral)
                        )
                    }
                    Action::DnsDrop { servers } => {
                        let list: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
                        format!("{id} (nameserver {})", list.join(", "))
                    }
                    _ => id.clone(),
                }
            })
            .collect();
        parts.join(", ")
    }
}

fn apply_targets(action: &Action, targets: &Targets) -> Result<Action> {
    let ports = (!targets.ports.is_empty()).then(|| targets.ports.clone());
    let prefixes = (!targets.path_prefixes.is_empty()).then(|| targets.path_prefixes.clone());
    Ok(match action {
        Action::Bind { errno, ports: p, unix_prefixes: u } => Action::Bind {
            errno: *errno,
            ports: p.as_ref().map(|p| ports.clone().unwrap_or_else(|| p.clone())),
            unix_prefixes: u.as_ref().map(|u| prefixes.clone().unwrap_or_else(|| u.clone())),
        },
        Action::PortTracker { errno, held, windows_ephemeral } => Action::PortTracker {
            errno: *errno,
            held: ports.unwrap_or_else(|| held.clone()),
            windows_ephemeral: *windows_ephemeral,
        },
        Action::DnsDrop { servers } => Action::DnsDrop {
            servers: match (&targets.dns_servers, servers) {
                (given, _) if !given.is_empty() => given.clone(),
                (_, defaults) if !defaults.is_empty() => defaults.clone(),
                _ => resolv_conf(),
            },
        },
        other => other.clone(),
    })
}

/// The nameservers programs on this machine ask: those of /etc/resolv.conf.
fn resolv_conf() -> Vec<SocketAddrV4> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|text| resolv_conf_nameservers(&text))
        .unwrap_or_default()
}

/// What two actions would both decide, if anything.
fn overlap(a: &Action, b: &Action) -> Option<String> {
    let ports = |a: &Action| match a {
        Action::Bind { ports, .. } => ports.as_ref().is_some_and(|p| !p.is_empty()),
        Action::PortTracker { .. } => true,
        _ => false,
    };
    match (a, b) {
        (
            Action::Getsockopt { level, optname, family: fa, .. },
            Action::Getsockopt { level: lb, optname: ob, family: fb, .. },
        ) if level == lb && optname == ob && (fa == fb || *fa == 0 || *fb == 0) => {
            let level_name = names::name_or_number(names::LEVELS, (*level).into());
            let opt_name =
                names::name_or_number(names::options_at((*level).into()), (*optname).into());
            Some(format!("getsockopt({level_name}, {opt_name})"))
        }
        (Action::ConnectNoListener { .. }, Action::ConnectNoListener { .. })
        | (Action::ConnectNoListener { .. }, Action::LoopbackHang)
        | (Action::LoopbackHang, Action::ConnectNoListener { .. }) => {
            Some("connects to a destination without listener".to_owned())
        }
        (Action::Bind { .. }, Action::Bind { .. }) => Some("bind targets".to_owned()),
        _ if ports(a) && ports(b) => Some("binds to ports".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use tracer_common::emulate::PortRange;

    fn plan(profiles: &[&str], quirks: &[&str], targets: Targets) -> Result<Plan> {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Plan::new(Catalogue::embedded()?, &own(profiles), &own(quirks), &targets)
    }

    #[test]
    fn profiles_select_their_platforms_quirks() {
        let wsl2 = plan(&["wsl2"], &[], Targets::default()).unwrap();
        assert_eq!(wsl2.ids(), ["peercred-enoprotoopt", "connect-enotconn", "unix-bind-drvfs"]);
        let nat = plan(&["wsl2-nat"], &[], Targets::default()).unwrap();
        assert_eq!(nat.ids(), wsl2.ids());
        let mirrored = plan(&["wsl2-mirrored"], &[], Targets::default()).unwrap();
        assert_eq!(
            mirrored.ids(),
            ["peercred-enoprotoopt", "port-tracker", "loopback-connect-hang", "unix-bind-drvfs"]
        );
        let cfg = mirrored.kernel_config();
        assert_eq!((cfg.drop.hang_slot, cfg.drop.dns_slot, cfg.connect.errno), (3, 0, 0));
        let supervision = mirrored.supervision().unwrap();
        let tracker = supervision.tracker.unwrap();
        assert_eq!((tracker.errno, tracker.slot, tracker.held.len()), (98, 1, 0));
        assert_eq!(tracker.windows_ephemeral, PortRange { first: 49152, last: 65535 });
        assert_eq!(supervision.unix.unwrap().errno, 95);
        let wsl1 = plan(&["wsl1"], &[], Targets::default()).unwrap();
        assert_eq!(
            wsl1.ids(),
            ["peercred-einval", "tcp-info-enoprotoopt", "nonblock-connect-econnrefused"]
        );
        let cfg = wsl1.kernel_config();
        assert_eq!(
            (cfg.sockopt[0].level, cfg.sockopt[0].optname, cfg.sockopt[0].errno),
            (1, 17, 22)
        );
        assert_eq!((cfg.sockopt[1].level, cfg.sockopt[1].optname, cfg.sockopt[1].slot), (6, 11, 1));
        assert_eq!((cfg.connect.errno, cfg.connect.blocking), (111, BLOCKING_NONBLOCKING_ONLY));
        assert_eq!(cfg.bind.errno, 0);
        assert!(wsl1.needs_nonblocking_layout());
        assert!(wsl1.supervision().is_none());
    }

    #[test]
    fn targets_go_to_the_quirks_that_take_them() {
        let ports = vec![PortRange { first: 8000, last: 8100 }];
        let targets = Targets { ports: ports.clone(), ..Targets::default() };
        let p = plan(&[], &[], targets.clone()).unwrap();
        assert_eq!(p.ids(), ["port-tracker"], "Windows-held ports are the port tracker's");
        assert_eq!(p.supervision().unwrap().tracker.unwrap().held, ports);
        assert_eq!(p.kernel_config().bind.errno, 0, "decided by the supervisor, not in the kernel");
        // The retired EACCES quirk still takes them when asked for by id.
        let eacces = plan(&[], &["bind-eacces"], targets).unwrap();
        assert_eq!(eacces.ids(), ["bind-eacces"]);
        let cfg = eacces.kernel_config();
        assert_eq!((cfg.bind.errno, cfg.bind.count, cfg.bind.ports[0].last), (13, 1, 8100));
        let unix = eacces.supervision().unwrap().unix.unwrap();
        assert_eq!((unix.prefixes, unix.errno), (vec![PathBuf::from("/mnt/")], 13));
        let prefix = Targets { path_prefixes: vec!["/srv/".into()], ..Targets::default() };
        let p = plan(&[], &[], prefix).unwrap();
        assert_eq!(p.ids(), ["unix-bind-drvfs"]);
        assert_eq!(p.supervision().unwrap().unix.unwrap().prefixes, [PathBuf::from("/srv/")]);
        let dns =
            Targets { dns_servers: vec!["127.0.0.1:5353".parse().unwrap()], ..Targets::default() };
        let p = plan(&[], &[], dns).unwrap();
        assert_eq!(p.ids(), ["dns-tunnel-drop"]);
        let cfg = p.kernel_config();
        assert_eq!((cfg.drop.dns_slot, cfg.drop.dns_count), (1, 1));
        assert_eq!(cfg.drop.nameservers[0].addr.to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(u16::from_be(cfg.drop.nameservers[0].port), 5353);
        assert_eq!(p.describe(), "dns-tunnel-drop (nameserver 127.0.0.1:5353)");
    }

    #[test]
    fn errors_list_the_valid_names() {
        let err = plan(&["wsl3"], &[], Targets::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown profile 'wsl3': valid profiles are wsl1, wsl2, wsl2-nat, wsl2-mirrored"
        );
        let err = plan(&[], &["peercred"], Targets::default()).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "unknown quirk 'peercred': valid quirks are peercred-enoprotoopt, peercred-einval,"
            ),
            "{err}"
        );
        let err = plan(&[], &[], Targets::default()).unwrap_err();
        assert!(err.to_string().starts_with("nothing to emulate"));
        let err = plan(&["wsl1", "wsl2"], &[], Targets::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "quirks peercred-einval and peercred-enoprotoopt both decide getsockopt(SOL_SOCKET, SO_PEERCRED): keep one"
        );
        let err = plan(&["wsl2-nat", "wsl2-mirrored"], &[], Targets::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "quirks connect-enotconn and loopback-connect-hang both decide connects to a destination without listener: keep one"
        );
        let err = plan(&["wsl2-mirrored"], &["bind-eacces"], Targets::default()).unwrap_err();
        assert!(err.to_string().ends_with("both decide bind targets: keep one"), "{err}");
    }
}
