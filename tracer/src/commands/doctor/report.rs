//! What `wsltrace doctor` reports: facts, then one verdict per check. Serialized as is for
//! `--format json`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{event::SocketInfo, facts::Facts};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One line of the report. `id` is stable (`dns.nameserver`, `process.loopback_only`...):
/// scripts and tests match on it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub verdict: Verdict,
    pub summary: String,
    /// Present on every warn and fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(id: &'static str, summary: impl Into<String>) -> Check {
        Check { id, verdict: Verdict::Ok, summary: summary.into(), fix: None }
    }

    pub fn warn(id: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { id, verdict: Verdict::Warn, summary: summary.into(), fix: Some(fix.into()) }
    }

    pub fn fail(id: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { id, verdict: Verdict::Fail, summary: summary.into(), fix: Some(fix.into()) }
    }

    /// The section the check belongs to: the part of its id before the dot.
    pub fn area(&self) -> &'static str {
        self.id.split('.').next().unwrap_or(self.id)
    }
}

/// The process examined with `--pid`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
    /// Namespace inodes by type (`net`, `mnt`, `pid`, `user`, `uts`, `ipc`, `cgroup`...).
    pub ns: BTreeMap<String, u64>,
    /// The namespaces the system started in, when readable.
    pub initial_ns: Option<BTreeMap<String, u64>>,
    /// Where `initial_ns` was read: `/proc/1/ns`, or kthreadd's when init's is not readable.
    pub initial_ns_from: Option<String>,
    /// The effective capabilities that matter (see `facts::machine::capability_names`).
    pub capabilities: Vec<String>,
    pub net_bind_service: bool,
    /// `net.ipv4.ip_unprivileged_port_start` in the process's network namespace.
    pub ip_unprivileged_port_start: Option<u32>,
    pub sockets: Vec<SocketInfo>,
}

impl Process {
    /// The network namespace differs from pid 1's.
    pub fn private_netns(&self) -> bool {
        match (&self.initial_ns, self.ns.get("net")) {
            (Some(initial), Some(net)) => initial.get("net").is_some_and(|i| i != net),
            _ => false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub facts: Facts,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
}

impl Report {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == verdict).count()
    }
}
