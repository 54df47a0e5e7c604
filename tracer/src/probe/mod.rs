//! `wsltrace probe`: each WSL socket quirk the knowledge base knows of, tried on this machine
//! with real calls and short timeouts, and reported `present`, `absent` or `skipped` (with why).
//! Run on a WSL machine, its JSON is the evidence that turns a `reported` rule into a
//! `verified` one, or retires it. Nothing here needs root; nothing is changed on the machine
//! (a socket file made on /mnt/c is removed at once).

mod checks;
mod host;

pub use host::{VSOCK_PORT, install_listener, vsock_connect_host};

use std::{cell::OnceCell, net::IpAddr, time::Duration};

use serde::Serialize;

use crate::facts::{
    dns::{self, NameserverKind},
    wsl::{self, NetworkingMode, WslKind},
};

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The quirk happened here.
    Present,
    /// The call behaved as Linux documents it.
    Absent,
    /// Not tried, or the outcome says nothing about the quirk (the detail says which).
    Skipped,
}

/// One probe's result: the JSON contract is `id`, `rule`, `platforms`, `status`, `detail`.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    pub id: &'static str,
    /// The knowledge base's rule about this behaviour (`wsltrace rules ID`), if there is one.
    pub rule: Option<&'static str>,
    /// Where the quirk is claimed: `wsl1`, `wsl2`, or `wsl2-MODE`.
    pub platforms: &'static [&'static str],
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub probes: Vec<Probe>,
    pub environment: Environment,
}

/// What the results must be read against.
#[derive(Debug, Serialize)]
pub struct Environment {
    pub wsltrace: &'static str,
    pub kernel: String,
    pub wsl: WslKind,
    pub networking_mode: Option<NetworkingMode>,
    /// What the mode was told from (`wslinfo`, the kernel's artefacts).
    pub networking_mode_source: Option<String>,
    pub uid: u32,
    /// `Seccomp:` of /proc/self/status: 2 when a filter is installed (WSL's port tracker).
    pub seccomp: Option<u32>,
    pub nameservers: Vec<IpAddr>,
    pub ip_local_port_range: Option<(u16, u16)>,
    pub timeout_ms: u64,
}

/// What one probe's calls showed, before it is judged against the environment.
pub enum Outcome {
    /// The quirk's behaviour was observed.
    Seen(String),
    /// Linux's documented behaviour was observed.
    NotSeen(String),
    /// The probe could not tell.
    Skipped(String),
}

/// What the probes share: the environment, the time they may wait, and the one connect to a
/// closed loopback port that two probes read.
pub struct Ctx {
    pub timeout: Duration,
    pub wsl: WslKind,
    /// The nameservers of resolv.conf, WSL's DNS tunnel flagged.
    pub nameservers: Vec<(IpAddr, bool)>,
    loopback_connect: OnceCell<Result<checks::Connect, String>>,
}

impl Ctx {
    fn loopback_connect(&self) -> &Result<checks::Connect, String> {
        self.loopback_connect.get_or_init(|| checks::connect_closed_loopback(self.timeout))
    }
}

struct Def {
    id: &'static str,
    rule: Option<&'static str>,
    platforms: &'static [&'static str],
    /// The behaviour has ordinary causes off WSL (no IPv6 route, a hand-set port range): seen
    /// on a machine that is not WSL, it is reported `skipped`, never `present`.
    wsl_only: bool,
    run: fn(&Ctx) -> Outcome,
}

const PROBES: &[Def] = &[
    Def {
        id: "peercred-socketpair",
        rule: Some("PEERCRED-UNAVAILABLE"),
        platforms: &["wsl1", "wsl2"],
        wsl_only: false,
        run: checks::peercred,
    },
    Def {
        id: "connect-closed-loopback-errno",
        rule: Some("CONNECT-ENOTCONN-NOT-ECONNREFUSED"),
        platforms: &["wsl2"],
        wsl_only: false,
        run: checks::closed_port_errno,
    },
    Def {
        id: "connect-closed-loopback-hang",
        rule: Some("WSL2-MIRRORED-LOOPBACK-CONNECT-HANG"),
        platforms: &["wsl2-mirrored"],
        wsl_only: true,
        run: checks::closed_port_hang,
    },
    Def {
        id: "bind-loopback-pair",
        rule: Some("WSL2-MIRRORED-PORT-HELD-BY-WINDOWS"),
        platforms: &["wsl2-mirrored", "wsl2-consomme"],
        wsl_only: true,
        run: checks::bind_pair,
    },
    Def {
        id: "seccomp-listener-taken",
        rule: Some("WSL2-PORT-TRACKER-GONE"),
        platforms: &["wsl2-mirrored", "wsl2-consomme"],
        wsl_only: true,
        run: host::seccomp_listener,
    },
    Def {
        id: "dns-nameserver-answer",
        rule: Some("WSL2-DNS-TUNNEL-NO-ANSWER"),
        platforms: &["wsl2-nat", "wsl2-mirrored"],
        wsl_only: true,
        run: host::dns_answer,
    },
    Def {
        id: "ipv6-loopback",
        rule: None,
        platforms: &["wsl2"],
        wsl_only: true,
        run: checks::ipv6_loopback,
    },
    Def {
        id: "ipv6-route",
        rule: Some("WSL2-NAT-NO-IPV6"),
        platforms: &["wsl2-nat"],
        wsl_only: true,
        run: checks::ipv6_route,
    },
    Def {
        id: "ephemeral-window",
        rule: Some("WSL2-MIRRORED-EPHEMERAL-PORTS-EXHAUSTED"),
        platforms: &["wsl2-mirrored"],
        wsl_only: true,
        run: checks::ephemeral_window,
    },
    Def {
        id: "unix-bind-drvfs",
        rule: Some("BIND-EACCES-UNIX-DRVFS"),
        platforms: &["wsl1", "wsl2"],
        wsl_only: false,
        run: host::unix_on_drvfs,
    },
    Def {
        id: "vsock-host-connect",
        rule: Some("WSL2-VSOCK-HOST-CONNECT-TIMEOUT"),
        platforms: &["wsl2"],
        wsl_only: true,
        run: host::vsock_host,
    },
];

/// Runs every probe, one after the other (the seccomp one forks: no other thread may run).
pub fn run(timeout: Duration) -> Report {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let wsl = wsl::observe(&kernel);
    let dns = dns::observe();
    let ctx = Ctx {
        timeout,
        wsl: wsl.kind,
        nameservers: dns
            .nameservers
            .iter()
            .map(|n| (n.ip, n.kind == NameserverKind::WslTunnel))
            .collect(),
        loopback_connect: OnceCell::new(),
    };
    let probes = PROBES.iter().map(|def| judge(def, (def.run)(&ctx), ctx.wsl)).collect();
    let environment = Environment {
        wsltrace: env!("CARGO_PKG_VERSION"),
        kernel,
        wsl: wsl.kind,
        networking_mode: wsl.networking_mode,
        networking_mode_source: wsl.networking_mode_source,
        uid: nix::unistd::getuid().as_raw(),
        seccomp: host::seccomp_mode(),
        nameservers: dns.nameservers.iter().map(|n| n.ip).collect(),
        ip_local_port_range: checks::local_port_range(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    Report { probes, environment }
}

fn judge(def: &Def, outcome: Outcome, wsl: WslKind) -> Probe {
    let (status, detail) = match outcome {
        Outcome::Seen(detail) if def.wsl_only && wsl == WslKind::None => (
            Status::Skipped,
            format!("{detail}; this machine is not WSL, where that has other causes"),
        ),
        Outcome::Seen(detail) => (Status::Present, detail),
        Outcome::NotSeen(detail) => (Status::Absent, detail),
        Outcome::Skipped(detail) => (Status::Skipped, detail),
    };
    Probe { id: def.id, rule: def.rule, platforms: def.platforms, status, detail }
}

/// The text report: one block per probe, then the environment and how to share it.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let env = &report.environment;
    let wsl = match (env.wsl, env.networking_mode) {
        (WslKind::None, _) => "not WSL".to_owned(),
        (WslKind::Wsl1, _) => "WSL1".to_owned(),
        (WslKind::Wsl2, Some(mode)) => format!("WSL2, {} networking", mode_name(mode)),
        (WslKind::Wsl2, None) => "WSL2, networking mode unknown".to_owned(),
    };
    out.push_str(&format!(
        "wsltrace probe: {} probes, kernel {} ({wsl}), uid {}, timeout {} ms\n\n",
        report.probes.len(),
        env.kernel,
        env.uid,
        env.timeout_ms
    ));
    for p in &report.probes {
        let status = match p.status {
            Status::Present => "present",
            Status::Absent => "absent",
            Status::Skipped => "skipped",
        };
        let rule = p.rule.unwrap_or("(no rule)");
        out.push_str(&format!("{status:<8} {:<30} {rule} [{}]\n", p.id, p.platforms.join(", ")));
        out.push_str(&format!("         {}\n", p.detail));
    }
    let count = |s: Status| report.probes.iter().filter(|p| p.status == s).count();
    out.push_str(&format!(
        "\n{} present, {} absent, {} skipped. On WSL, share `wsltrace probe --format json` \
         with `wsl --version`: it settles the rules marked reported.\n",
        count(Status::Present),
        count(Status::Absent),
        count(Status::Skipped)
    ));
    out
}

fn mode_name(mode: NetworkingMode) -> String {
    serde_json::to_value(mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{mode:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_rules_exist() {
        let rules = crate::detect::rules::load(&[]).unwrap();
        let mut ids: Vec<&str> = PROBES.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), PROBES.len());
        for def in PROBES {
            if let Some(rule) = def.rule {
                assert!(rules.iter().any(|r| r.id == rule), "{}: no rule {rule}", def.id);
            }
        }
    }

    #[test]
    fn a_quirk_seen_off_wsl_is_never_present() {
        let def = &PROBES[2];
        assert!(def.wsl_only);
        let off = judge(def, Outcome::Seen("hung".into()), WslKind::None);
        assert_eq!(off.status, Status::Skipped);
        assert!(off.detail.starts_with("hung; this machine is not WSL"), "{}", off.detail);
        let on = judge(def, Outcome::Seen("hung".into()), WslKind::Wsl2);
        assert_eq!(on.status, Status::Present);
        let linux = judge(&PROBES[0], Outcome::NotSeen("fine".into()), WslKind::None);
        assert_eq!(linux.status, Status::Absent);
    }
}
