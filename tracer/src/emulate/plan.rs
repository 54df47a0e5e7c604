//! From the user's choice (profiles, quirks, bind targets) to what the kernel programs and the
//! unix-bind supervisor are told to do.

use std::path::PathBuf;

use anyhow::{Result, bail};
use tracer_common::emulate::{
    BLOCKING_ANY, BLOCKING_NONBLOCKING_ONLY, EmulateConfig, MAX_PORT_RANGES, MAX_QUIRKS,
    MAX_SOCKOPT_RULES, SockoptRule,
};

use super::{
    args::BindTargets,
    catalogue::{Action, Catalogue, Entry, Platform, show_range},
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

/// The quirk whose targets `--bind-ports` and `--bind-path-prefix` set.
const BIND_HOOK_HINT: &str = "bind";

impl Plan {
    /// Profiles and quirks by name; bind targets replace the catalogue's defaults and select the
    /// bind quirk when it is not selected yet.
    pub fn new(
        catalogue: &'static Catalogue,
        profiles: &[String],
        quirks: &[String],
        targets: &BindTargets,
    ) -> Result<Plan> {
        let mut chosen: Vec<&'static Entry> = Vec::new();
        let mut add = |entry: &'static Entry| {
            if !chosen.iter().any(|c| std::ptr::eq(*c, entry)) {
                chosen.push(entry);
            }
        };
        for name in profiles.iter().map(|p| p.trim()) {
            let Some(platform) = Platform::ALL.into_iter().find(|p| p.name() == name) else {
                let valid: Vec<&str> = Platform::ALL.iter().map(|p| p.name()).collect();
                bail!("unknown profile '{name}': valid profiles are {}", valid.join(", "));
            };
            catalogue.profile(platform).for_each(&mut add);
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
        if !targets.is_empty() {
            match catalogue.entries.iter().find(|e| matches!(e.action, Action::Bind { .. })) {
                Some(entry) => add(entry),
                None => bail!("no quirk of the catalogue takes {BIND_HOOK_HINT} targets"),
            }
        }
        if chosen.is_empty() {
            bail!(
                "nothing to emulate: give --profile wsl1|wsl2 or --quirk ID (see wsltrace emulate --list)"
            );
        }
        let quirks: Vec<Selected> = chosen
            .into_iter()
            .map(|entry| Selected { entry, action: apply_targets(&entry.action, targets) })
            .collect();
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
            if let Action::Bind { ports, unix_prefixes, .. } = &q.action {
                if ports.len() > MAX_PORT_RANGES {
                    bail!("at most {MAX_PORT_RANGES} port ranges can be given to --bind-ports");
                }
                if ports.is_empty() && unix_prefixes.is_empty() {
                    bail!(
                        "quirk {} needs targets: give --bind-ports RANGE or --bind-path-prefix DIR",
                        q.entry.quirk.id
                    );
                }
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
                Action::Bind { errno, ports, .. } if !ports.is_empty() => {
                    cfg.bind.errno = errno.0.into();
                    cfg.bind.slot = slot;
                    cfg.bind.count = ports.len() as u32;
                    for (dst, src) in cfg.bind.ports.iter_mut().zip(ports) {
                        *dst = *src;
                    }
                }
                Action::Bind { .. } => {}
            }
        }
        cfg
    }

    /// Unix path prefixes whose bind() fails, with the errno and the quirk's slot.
    pub fn unix_bind(&self) -> Option<(Vec<PathBuf>, u16, u32)> {
        (0_u32..).zip(&self.quirks).find_map(|(slot, q)| match &q.action {
            Action::Bind { errno, unix_prefixes, .. } if !unix_prefixes.is_empty() => {
                Some((unix_prefixes.clone(), errno.0, slot))
            }
            _ => None,
        })
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
            .map(|q| match &q.action {
                Action::Bind { ports, unix_prefixes, .. } => {
                    let mut targets: Vec<String> =
                        ports.iter().map(|r| format!("port {}", show_range(r))).collect();
                    targets.extend(
                        unix_prefixes.iter().map(|p| format!("unix paths under {}", p.display())),
                    );
                    format!("{} ({})", q.entry.quirk.id, targets.join(", "))
                }
                _ => q.entry.quirk.id.clone(),
            })
            .collect();
        parts.join(", ")
    }
}

fn apply_targets(action: &Action, targets: &BindTargets) -> Action {
    match action {
        Action::Bind { errno, .. } if !targets.is_empty() => Action::Bind {
            errno: *errno,
            ports: targets.ports.clone(),
            unix_prefixes: targets.path_prefixes.clone(),
        },
        other => other.clone(),
    }
}

/// What two actions would both decide, if anything.
fn overlap(a: &Action, b: &Action) -> Option<String> {
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
        (Action::ConnectNoListener { .. }, Action::ConnectNoListener { .. }) => {
            Some("connects to a destination without listener".to_owned())
        }
        (Action::Bind { .. }, Action::Bind { .. }) => Some("bind targets".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::emulate::PortRange;

    fn plan(profiles: &[&str], quirks: &[&str], targets: BindTargets) -> Result<Plan> {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Plan::new(Catalogue::embedded()?, &own(profiles), &own(quirks), &targets)
    }

    #[test]
    fn profiles_select_their_platforms_quirks() {
        let wsl2 = plan(&["wsl2"], &[], BindTargets::default()).unwrap();
        assert_eq!(wsl2.ids(), ["peercred-enoprotoopt", "connect-enotconn", "bind-eacces"]);
        let wsl1 = plan(&["wsl1"], &[], BindTargets::default()).unwrap();
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
    }

    #[test]
    fn bind_targets_replace_the_defaults_and_select_the_quirk() {
        let targets = BindTargets {
            ports: vec![PortRange { first: 8000, last: 8100 }],
            path_prefixes: Vec::new(),
        };
        let p = plan(&[], &[], targets).unwrap();
        assert_eq!(p.ids(), ["bind-eacces"]);
        assert_eq!(p.unix_bind(), None);
        let cfg = p.kernel_config();
        assert_eq!((cfg.bind.errno, cfg.bind.count, cfg.bind.ports[0].last), (13, 1, 8100));
        let defaults = plan(&[], &["bind-eacces"], BindTargets::default()).unwrap();
        assert_eq!(defaults.unix_bind(), Some((vec![PathBuf::from("/mnt/")], 13, 0)));
        assert_eq!(defaults.kernel_config().bind.errno, 0, "no port ranges: no kernel rule");
    }

    #[test]
    fn errors_list_the_valid_names() {
        let err = plan(&["wsl3"], &[], BindTargets::default()).unwrap_err();
        assert_eq!(err.to_string(), "unknown profile 'wsl3': valid profiles are wsl1, wsl2");
        let err = plan(&[], &["peercred"], BindTargets::default()).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "unknown quirk 'peercred': valid quirks are peercred-enoprotoopt, peercred-einval,"
            ),
            "{err}"
        );
        let err = plan(&[], &[], BindTargets::default()).unwrap_err();
        assert!(err.to_string().starts_with("nothing to emulate"));
        let err = plan(&["wsl1", "wsl2"], &[], BindTargets::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "quirks peercred-einval and peercred-enoprotoopt both decide getsockopt(SOL_SOCKET, SO_PEERCRED): keep one"
        );
    }
}
