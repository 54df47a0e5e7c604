//! Command line of `wsltrace emulate` and of `wsltrace --emulate` (tracing and emulating).

use std::{ffi::OsString, net::SocketAddrV4, path::PathBuf};

use clap::Args;
use tracer_common::emulate::PortRange;

use super::catalogue::{parse_nameserver, parse_path_prefix, parse_port_range};
use crate::sinks::args::Format;

pub const EXAMPLES: &str = "\
Examples:
  sudo wsltrace emulate --profile wsl2 -- ./server       WSL2's quirks (NAT, the default mode)
  sudo wsltrace emulate --profile wsl2-mirrored -- ./server
                                            mirrored networking: the port tracker, the
                                            127.0.0.1 connect hang
  sudo wsltrace emulate --quirk peercred-enoprotoopt -- go test ./...
  sudo wsltrace emulate --bind-ports 50000-50059 -- npm start
                                            Windows holds these ports: bind/listen fail
                                            with EADDRINUSE (WSL's port tracker)
  sudo wsltrace emulate --quirk dns-tunnel-drop -- curl https://example.com
                                            DNS queries get no answer
  sudo wsltrace --emulate wsl2-mirrored -- ./server  trace and emulate at once
  wsltrace emulate --list                   the quirks, what each does, where it comes from

The command runs in a cgroup made for it (children included) with the quirks' BPF programs
attached to that cgroup only: nothing outside it is affected. The cgroup is removed when the
command exits or wsltrace is stopped; one left by a killed wsltrace is removed by the next
run. wsltrace exits with the command's status.";

#[derive(Debug, Clone, Args)]
pub struct EmulateArgs {
    /// List the quirks (what each does, platforms, provenance) and exit
    #[arg(long, conflicts_with_all = ["profiles", "quirks", "command"])]
    pub list: bool,

    /// --list output: text or JSON
    #[arg(long, value_enum, default_value_t = Format::Text, requires = "list")]
    pub format: Format,

    /// The quirks of a profile: wsl1, wsl2-nat, wsl2-mirrored, or wsl2 (= wsl2-nat, WSL's default
    /// mode) (repeat or comma-separate)
    #[arg(long = "profile", value_name = "NAME", value_delimiter = ',')]
    pub profiles: Vec<String>,

    /// One quirk by id (repeat or comma-separate; see --list)
    #[arg(long = "quirk", value_name = "ID", value_delimiter = ',')]
    pub quirks: Vec<String>,

    #[command(flatten)]
    pub targets: Targets,

    /// The command to run under emulation
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Targets of the quirks that take them; each kind goes to the selected quirks that take it,
/// replacing their defaults, or selects the catalogue's first quirk that takes it.
#[derive(Debug, Clone, Default, Args)]
pub struct Targets {
    /// port-tracker: ports Windows holds; bind/listen to them fail with EADDRINUSE (e.g. 8080 or
    /// 50000-50059; repeat or comma-separate). With --quirk bind-eacces: EACCES instead
    #[arg(long = "bind-ports", value_name = "RANGE", value_delimiter = ',', value_parser = parse_port_range, requires = "command", help_heading = "Emulation targets")]
    pub ports: Vec<PortRange>,

    /// unix-bind-drvfs: AF_UNIX paths under this directory fail to bind (default /mnt/;
    /// repeatable)
    #[arg(long = "bind-path-prefix", value_name = "DIR", value_parser = parse_path_prefix, requires = "command", help_heading = "Emulation targets")]
    pub path_prefixes: Vec<PathBuf>,

    /// dns-tunnel-drop: the nameserver whose replies are dropped, ADDR or ADDR:PORT (default:
    /// the IPv4 nameservers of /etc/resolv.conf; repeat or comma-separate)
    #[arg(long = "dns-server", value_name = "ADDR", value_delimiter = ',', value_parser = parse_nameserver, requires = "command", help_heading = "Emulation targets")]
    pub dns_servers: Vec<SocketAddrV4>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.path_prefixes.is_empty() && self.dns_servers.is_empty()
    }
}

/// `wsltrace --emulate LIST -- CMD`: the trace command's emulation options.
#[derive(Debug, Clone, Default, Args)]
pub struct TraceEmulation {
    /// With -- CMD: run it under these profiles or quirks (e.g. wsl2, wsl2-mirrored, or
    /// peercred-enoprotoopt)
    #[arg(
        long = "emulate",
        value_name = "LIST",
        value_delimiter = ',',
        requires = "command",
        help_heading = "Emulation"
    )]
    pub emulate: Vec<String>,

    #[command(flatten)]
    pub targets: Targets,
}
