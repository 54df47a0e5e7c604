//! Command line of the filter stage, the same live and in `analyze`.

use clap::Args;
use tracer_common::Syscall;

use super::{AddrPattern, TimeBound};
use crate::decode::{errno::Errno, names::syscall_by_name};

/// Filters, the same live and in `analyze`. Live, -s, --failed and -e are applied in the
/// kernel, so the calls they drop cost almost nothing; the others are applied by wsltrace.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only these syscalls (comma-separated names, e.g. connect,accept4). Live, in the kernel:
    /// the others are not even attached
    #[arg(short = 's', long = "syscall", value_name = "LIST", value_delimiter = ',', value_parser = parse_syscall, help_heading = "Filters")]
    pub syscalls: Vec<Syscall>,

    /// Only calls that failed (live, in the kernel). A connect's EINPROGRESS is no failure; a
    /// getsockopt(SO_ERROR) that reads an error (a non-blocking connect's outcome) is one
    #[arg(long, help_heading = "Filters")]
    pub failed: bool,

    /// Only calls that failed with one of these errnos, or read one with getsockopt(SO_ERROR)
    /// (names or numbers: ECONNREFUSED,13; live, in the kernel)
    #[arg(short = 'e', long = "errno", value_name = "LIST", value_delimiter = ',', value_parser = Errno::parse, help_heading = "Filters")]
    pub errnos: Vec<Errno>,

    /// Only processes with this command name (comma-separated; names longer than the kernel's
    /// 15 characters match their truncation)
    #[arg(long = "comm", value_name = "NAME", value_delimiter = ',', help_heading = "Filters")]
    pub comms: Vec<String>,

    /// Only from this time on: RFC 3339 (2026-11-21T11:02:03Z) or after the start (+30s, +1m30s)
    #[arg(long, value_name = "TIME", value_parser = TimeBound::parse, help_heading = "Filters")]
    pub since: Option<TimeBound>,

    /// Only up to this time: RFC 3339 or after the start (+2m)
    #[arg(long, value_name = "TIME", value_parser = TimeBound::parse, help_heading = "Filters")]
    pub until: Option<TimeBound>,

    /// Only calls on these addresses: 127.0.0.1:8080, [::1]:8080, :8080 (any address),
    /// 10.0.0.1 (any port), /tmp/app.sock, @abstract (comma-separated)
    #[arg(long = "addr", value_name = "ADDR", value_delimiter = ',', value_parser = AddrPattern::parse, help_heading = "Filters")]
    pub addrs: Vec<AddrPattern>,

    /// Only calls the knowledge base has a finding for
    #[arg(long, help_heading = "Filters")]
    pub anomalies_only: bool,
}

fn parse_syscall(s: &str) -> Result<Syscall, String> {
    syscall_by_name(s.trim()).ok_or_else(|| {
        let names: Vec<&str> = Syscall::ALL.iter().map(|s| s.name()).collect();
        format!("unknown syscall '{s}': wsltrace traces {}", names.join(", "))
    })
}
