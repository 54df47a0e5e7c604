//! Command line of `wsltrace emulate` and of `wsltrace --emulate` (tracing and emulating).

use std::{ffi::OsString, path::PathBuf};

use clap::Args;
use tracer_common::emulate::PortRange;

use super::catalogue::{parse_path_prefix, parse_port_range};
use crate::sinks::args::Format;

pub const EXAMPLES: &str = "\
Examples:
  sudo wsltrace emulate --profile wsl2 -- ./server       run with every WSL2 quirk
  sudo wsltrace emulate --quirk peercred-enoprotoopt -- go test ./...
  sudo wsltrace emulate --bind-ports 50000-50059 -- npm start
                                            binds to Hyper-V's reserved ports fail (EACCES)
  sudo wsltrace --emulate wsl2 -- ./server  trace and emulate at once
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

    /// Every quirk attributed to this platform: wsl1 or wsl2 (repeat or comma-separate)
    #[arg(long = "profile", value_name = "NAME", value_delimiter = ',')]
    pub profiles: Vec<String>,

    /// One quirk by id (repeat or comma-separate; see --list)
    #[arg(long = "quirk", value_name = "ID", value_delimiter = ',')]
    pub quirks: Vec<String>,

    #[command(flatten)]
    pub targets: BindTargets,

    /// The command to run under emulation
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Targets of the bind quirk; giving any selects it and replaces its default targets.
#[derive(Debug, Clone, Default, Args)]
pub struct BindTargets {
    /// bind-eacces: ports whose bind fails (e.g. 8080 or 50000-50059; repeat or comma-separate)
    #[arg(long = "bind-ports", value_name = "RANGE", value_delimiter = ',', value_parser = parse_port_range, requires = "command", help_heading = "Emulation targets")]
    pub ports: Vec<PortRange>,

    /// bind-eacces: AF_UNIX paths under this directory fail to bind (default /mnt/; repeatable)
    #[arg(long = "bind-path-prefix", value_name = "DIR", value_parser = parse_path_prefix, requires = "command", help_heading = "Emulation targets")]
    pub path_prefixes: Vec<PathBuf>,
}

impl BindTargets {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.path_prefixes.is_empty()
    }
}

/// `wsltrace --emulate LIST -- CMD`: the trace command's emulation options.
#[derive(Debug, Clone, Default, Args)]
pub struct TraceEmulation {
    /// With -- CMD: run it under these profiles or quirks (e.g. wsl2, or peercred-enoprotoopt)
    #[arg(
        long = "emulate",
        value_name = "LIST",
        value_delimiter = ',',
        requires = "command",
        help_heading = "Emulation"
    )]
    pub emulate: Vec<String>,

    #[command(flatten)]
    pub targets: BindTargets,
}
