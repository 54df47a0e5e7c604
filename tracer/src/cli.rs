//! Command line: `wsltrace [OPTIONS] (--pid PID... | -- CMD...)` and subcommands.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracer_common::Syscall;

use crate::decode::{errno::Errno, names::syscall_by_name};

const EXAMPLES: &str = "\
Examples:
  sudo wsltrace --pid 4242                  attach to a running server (all its threads)
  sudo wsltrace -f --pid 4242               ...and every child it forks from now on
  sudo wsltrace -- ./server --port 8080     start a command, traced from its first syscall
  sudo wsltrace --failed -e ECONNREFUSED,ENOTCONN --pid 4242
                                            only calls that failed with these errnos
  sudo wsltrace --format json --pid 4242 | jq .
  sudo wsltrace -o events.jsonl --pid 4242  JSON Lines to a file, text on the terminal
  sudo wsltrace demo                        watch a built-in workload
  sudo wsltrace --emulate wsl2 -- ./server  trace it with WSL2's socket quirks (wsltrace emulate)

Traced syscalls: socket socketpair bind listen connect accept accept4 getsockopt
setsockopt getsockname getpeername shutdown close.

Tracing ends when every traced process has exited (with -- CMD, wsltrace exits with the
command's status), after --duration, or on Ctrl-C / SIGTERM; a last line on stderr gives
the number of events seen and lost. With -- CMD, a SIGINT/SIGTERM sent to wsltrace with
kill is passed on to the command and tracing goes on until it exits; a second one stops
wsltrace at once.";

#[derive(Debug, Parser)]
#[command(
    name = "wsltrace",
    version,
    about = "Trace the socket syscalls of a process and explain them (strace + lsof for sockets, eBPF-based)",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a built-in socket workload under the tracer (every traced syscall, with failures)
    Demo(DemoArgs),
    /// Run a command with WSL1/WSL2 socket quirks reproduced in the kernel (or --list them)
    #[command(after_help = crate::emulate::args::EXAMPLES)]
    Emulate(crate::emulate::args::EmulateArgs),
    /// Internal: wait for the tracer's go-ahead on FD, then exec CMD
    #[command(name = "exec-gate", hide = true)]
    ExecGate {
        fd: i32,
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Trace these running processes, all their threads (repeat or comma-separate)
    #[arg(
        short = 'p',
        long = "pid",
        value_name = "PID",
        value_delimiter = ',',
        help_heading = "What to trace"
    )]
    pub pids: Vec<u32>,

    /// Also trace the children they fork from now on (default with -- CMD)
    #[arg(short = 'f', long, help_heading = "What to trace")]
    pub follow_forks: bool,

    /// With -- CMD, trace only the command itself, not its children
    #[arg(long, conflicts_with = "follow_forks", help_heading = "What to trace")]
    pub no_follow: bool,

    /// Run this command and trace it from its very first syscall
    #[arg(last = true, value_name = "CMD", help_heading = "What to trace")]
    pub command: Vec<OsString>,

    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub emulation: crate::emulate::args::TraceEmulation,

    /// Stop tracing after this many seconds (e.g. 10, 0.5)
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Kernel ring buffer size: a power of two, e.g. 8M (the default), 512K, 64M
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_ring_size)]
    pub ring_size: u32,
}

/// Filters applied in the kernel, so filtered-out calls cost almost nothing.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only these syscalls (comma-separated names, e.g. connect,accept4)
    #[arg(short = 's', long = "syscall", value_name = "LIST", value_delimiter = ',', value_parser = parse_syscall, help_heading = "Filters")]
    pub syscalls: Vec<Syscall>,

    /// Only calls that failed
    #[arg(long, help_heading = "Filters")]
    pub failed: bool,

    /// Only calls that failed with one of these errnos (names or numbers: ECONNREFUSED,13)
    #[arg(short = 'e', long = "errno", value_name = "LIST", value_delimiter = ',', value_parser = Errno::parse, help_heading = "Filters")]
    pub errnos: Vec<Errno>,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Terminal output: strace-like text, or JSON Lines
    #[arg(long, value_enum, default_value_t = Format::Text, help_heading = "Output")]
    pub format: Format,

    /// Also write every event as JSON Lines to FILE (the terminal keeps --format)
    #[arg(short = 'o', long = "output", value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Colours: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, help_heading = "Output")]
    pub color: ColorWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Which workload to run
    #[arg(value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,

    /// Run the workload without tracing it (what the traced child runs)
    #[arg(long)]
    pub untraced: bool,

    /// Print "ready PID" and wait for a line on stdin before starting (for --pid attach)
    #[arg(long)]
    pub wait: bool,

    /// burst: getsockopt calls to make in all
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,

    /// burst: threads making them
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: u64,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Every traced syscall, succeeding and failing: TCP, UDP, IPv6, AF_UNIX (path, abstract,
    /// socketpair with SO_PEERCRED), netlink, vsock, a refused connect, EADDRINUSE, ENOENT, EINVAL
    All,
    /// One connect to a port nobody listens on
    Refused,
    /// Four threads connecting to a listener at once
    Threads,
    /// A child that forks a grandchild which connects immediately
    Fork,
    /// A server blocked in accept() until one client connects (prints its port)
    Server,
    /// --threads threads making --count getsockopt(SO_TYPE) calls as fast as they can
    Burst,
    /// Each call `wsltrace emulate` can change, with its result on stderr (see WSLTRACE_DEMO_PORTS
    /// and WSLTRACE_DEMO_DIR in the README)
    Quirks,
}

fn parse_syscall(s: &str) -> Result<Syscall, String> {
    syscall_by_name(s.trim()).ok_or_else(|| {
        let names: Vec<&str> = Syscall::ALL.iter().map(|s| s.name()).collect();
        format!("unknown syscall '{s}': wsltrace traces {}", names.join(", "))
    })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds (e.g. 10 or 0.5)"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{s}' must be a positive number of seconds"))
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let (digits, unit) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_owned(), 1_u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_owned(), 1 << 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_owned(), 1 << 30),
        t => (t, 1),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("'{s}' is not a size (e.g. 8M, 512K)"))?;
    if !bytes.is_power_of_two() || !(4096..=(1 << 30)).contains(&bytes) {
        return Err(format!("ring size {s} must be a power of two between 4K and 1G (e.g. 8M)"));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn pids_accept_lists_and_repeats() {
        let cli = Cli::try_parse_from(["wsltrace", "--pid", "1,2", "-p", "3"]).unwrap();
        assert_eq!(cli.trace.pids, vec![1, 2, 3]);
    }

    #[test]
    fn command_after_double_dash() {
        let cli = Cli::try_parse_from([
            "wsltrace",
            "-s",
            "connect,bind",
            "--",
            "./server",
            "--port",
            "8080",
        ])
        .unwrap();
        assert_eq!(cli.trace.command, ["./server", "--port", "8080"]);
        assert_eq!(cli.trace.filter.syscalls, vec![Syscall::Connect, Syscall::Bind]);
    }

    #[test]
    fn bad_values_name_the_fix() {
        let err = Cli::try_parse_from(["wsltrace", "-e", "ECONNREFUSD", "-p", "1"]).unwrap_err();
        assert!(err.to_string().contains("did you mean ECONNREFUSED?"), "{err}");
        let err = Cli::try_parse_from(["wsltrace", "-s", "connnect", "-p", "1"]).unwrap_err();
        assert!(err.to_string().contains("wsltrace traces socket"), "{err}");
        assert!(Cli::try_parse_from(["wsltrace", "--ring-size", "3M", "-p", "1"]).is_err());
        assert!(Cli::try_parse_from(["wsltrace", "--duration", "-1", "-p", "1"]).is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_ring_size("8M"), Ok(8 << 20));
        assert_eq!(parse_ring_size("4k"), Ok(4096));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    }
}
