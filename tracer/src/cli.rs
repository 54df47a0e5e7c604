//! Command line: `wsltrace [OPTIONS] (--pid PID... | -- CMD...)` and subcommands.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracer_common::Syscall;

use crate::{
    decode::{errno::Errno, names::syscall_by_name},
    filter::{AddrPattern, TimeBound},
};

const EXAMPLES: &str = "\
Examples:
  sudo wsltrace --pid 4242                  attach to a running server (all its threads)
  sudo wsltrace -f --pid 4242               ...and every child it forks from now on
  sudo wsltrace -- ./server --port 8080     start a command, traced from its first syscall
  sudo wsltrace --failed -e ECONNREFUSED,ENOTCONN --pid 4242
                                            only calls that failed with these errnos
  sudo wsltrace --format json --pid 4242 | jq .
  sudo wsltrace -o events.jsonl --pid 4242  JSON Lines to a file, text on the terminal
  sudo wsltrace -o incident.jsonl.zst --rotate 100M --pid 4242
                                            compressed recording in 100 MB parts
  sudo wsltrace -c -- ./client              only a summary table at the end
  wsltrace analyze incident.jsonl.zst -e ECONNREFUSED --addr :8080
                                            read a recording back, filtered (see analyze --help)
  sudo wsltrace demo                        watch a built-in workload
  sudo wsltrace -q --assume wsl2 -- ./srv   only the calls the knowledge base flags
  sudo wsltrace --emulate wsl2 -- ./server  trace it with WSL2's socket quirks (wsltrace emulate)

Traced syscalls: socket socketpair bind listen connect accept accept4 getsockopt
setsockopt getsockname getpeername shutdown close.

Filters apply to the terminal and to the recording alike. -s, --failed and -e are applied in
the kernel, so the calls they drop never cross the ring buffer; the others (--comm, --addr,
--since, --until, --anomalies-only) are applied by wsltrace. The same filters work on a
recording with `wsltrace analyze`, where --pid also filters.

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
    /// List the knowledge base's rules, or check a rule file of yours
    Rules(RulesArgs),
    /// Read recordings made with -o: the same filters, output and summary as a live trace
    Analyze(AnalyzeArgs),
    /// Check the machine, WSL and DNS, and with --pid a process's namespaces and sockets
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor(DoctorArgs),
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
    /// Trace these running processes, all their threads (repeat or comma-separate). This
    /// chooses what to trace; in `wsltrace analyze`, --pid filters a recording instead
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

    /// Do not list the sockets each --pid process holds when tracing starts
    #[arg(long, help_heading = "What to trace")]
    pub no_snapshot: bool,

    /// Run this command and trace it from its very first syscall
    #[arg(last = true, value_name = "CMD", help_heading = "What to trace")]
    pub command: Vec<OsString>,

    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub knowledge: KnowledgeArgs,

    #[command(flatten)]
    pub emulation: crate::emulate::args::TraceEmulation,

    /// Stop tracing after this many seconds (e.g. 10, 0.5)
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Kernel ring buffer size: a power of two, e.g. 8M (the default), 512K, 64M
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_ring_size)]
    pub ring_size: u32,
}

/// Filters, the same live and in `analyze`. Live, -s, --failed and -e are applied in the
/// kernel, so the calls they drop cost almost nothing; the others are applied by wsltrace.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only these syscalls (comma-separated names, e.g. connect,accept4). Live, in the kernel:
    /// the others are not even attached
    #[arg(short = 's', long = "syscall", value_name = "LIST", value_delimiter = ',', value_parser = parse_syscall, help_heading = "Filters")]
    pub syscalls: Vec<Syscall>,

    /// Only calls that failed (live, in the kernel)
    #[arg(long, help_heading = "Filters")]
    pub failed: bool,

    /// Only calls that failed with one of these errnos (names or numbers: ECONNREFUSED,13;
    /// live, in the kernel)
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

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Terminal output: strace-like text, or JSON Lines
    #[arg(long, value_enum, default_value_t = Format::Text, help_heading = "Output")]
    pub format: Format,

    /// Also record to FILE: JSON Lines with a header and a footer (docs/trace-format.md),
    /// zstd-compressed when FILE ends in .zst. The terminal keeps --format. FILE must not
    /// exist (see --append); under sudo it belongs to the invoking user
    #[arg(short = 'o', long = "output", value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Start a new numbered file (events.001.jsonl, events.002.jsonl...) whenever one reaches
    /// SIZE (e.g. 100M, 1G); each part has its own header
    #[arg(long, value_name = "SIZE", requires = "output", value_parser = parse_file_size, help_heading = "Output")]
    pub rotate: Option<u64>,

    /// Add to FILE if it exists (a regular file of yours, not a link) instead of refusing;
    /// with --rotate, continue the numbering of existing parts
    #[arg(long, requires = "output", help_heading = "Output")]
    pub append: bool,

    /// Instead of one line per call, a summary at the end: per syscall (calls, errors by
    /// errno, latency percentiles), per process, findings by rule, lost events. One JSON
    /// object with --format json
    #[arg(short = 'c', long, help_heading = "Output")]
    pub summary: bool,

    /// Colours: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, help_heading = "Output")]
    pub color: ColorWhen,
}

/// The knowledge base: which rules, for which environment.
#[derive(Debug, Clone, Default, Args)]
pub struct KnowledgeArgs {
    /// Add the rules in FILE to the built-in ones (a rule with a built-in id replaces it);
    /// see `wsltrace rules --check FILE`
    #[arg(long = "rules", value_name = "FILE", help_heading = "Knowledge base")]
    pub rules: Vec<PathBuf>,

    /// Take the environment as given instead of detecting it: wsl2[,nat|mirrored|consomme|bridged|none], wsl1, linux
    #[arg(long, value_name = "ENV", help_heading = "Knowledge base")]
    pub assume: Option<String>,

    /// On the terminal, show only the calls with findings
    #[arg(short = 'q', long, help_heading = "Knowledge base")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
#[command(after_long_help = crate::commands::rules::long_help(), after_help = "Examples:
  wsltrace rules                          the rules, one line each
  wsltrace rules --check my-rules.toml    validate a file for --rules
(--help describes the rule format and every matcher)")]
pub struct RulesArgs {
    /// Validate this rule file and report problems with their line numbers
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,

    /// Also list the rules in these files
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,

    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

const ANALYZE_EXAMPLES: &str = "\
Examples:
  wsltrace analyze events.jsonl                    the recorded calls, as text
  wsltrace analyze events.jsonl.zst --format json  as JSON Lines (the live format)
  wsltrace analyze incident.jsonl                  every part of a rotated recording
  wsltrace analyze incident.0*.jsonl               ...or the parts listed, in any order
  wsltrace analyze -c events.jsonl                 summary: calls, errors, latencies, findings
  wsltrace analyze -e ECONNREFUSED --addr :8080 --since +30s events.jsonl
  wsltrace analyze --pid 4242 --failed -o failed.jsonl events.jsonl
                                                   keep a filtered recording

Problems in a file (a line that is not JSON, an unknown record type, a truncated file after
a crash) are reported with their line number; the rest of the file is still read, and
wsltrace analyze then exits with status 1. A recording from a newer major schema version is
refused.";

#[derive(Debug, Clone, Args)]
#[command(after_help = ANALYZE_EXAMPLES)]
pub struct AnalyzeArgs {
    /// Recordings made with -o, plain or .zst. For a rotated recording give its parts (any
    /// order) or the name given to -o
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Only events of these processes (repeat or comma-separate)
    #[arg(
        short = 'p',
        long = "pid",
        value_name = "PID",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub pids: Vec<u32>,

    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub knowledge: KnowledgeArgs,
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

impl ColorWhen {
    /// Whether to colour stdout: auto means a terminal, and never with NO_COLOR set.
    pub fn on_stdout(self) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
            }
        }
    }
}

const DOCTOR_EXAMPLES: &str = "\
Examples:
  wsltrace doctor                       can this machine trace, is it WSL, does DNS work
  sudo wsltrace doctor --pid 4242       ...and why nobody can reach process 4242's server
  sudo wsltrace doctor --pid 4242 --format json | jq .checks

Every line has a verdict (ok, warn, fail) and every warn/fail a fix. The exit status is 1
when a check failed.";

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Also examine this process: its namespaces, its sockets, listeners others cannot reach
    #[arg(short = 'p', long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Human-readable text, or the same report as one JSON object
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Colours: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
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

    /// listen, connect: the address: 127.0.0.1:8080, [::1]:8080, /path/to.sock, @abstract
    #[arg(long, value_name = "ADDR")]
    pub addr: Option<String>,

    /// burst: getsockopt calls to make in all (default 100000); connect: connections to try
    /// (default 1)
    #[arg(long)]
    pub count: Option<u64>,

    /// burst: threads making them
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: u64,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub knowledge: KnowledgeArgs,
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
    /// Listen on --addr, print "listening PID PORT" and hold it until a line arrives on stdin
    Listen,
    /// Connect to --addr (--count times, default once)
    Connect,
    /// A plain echo server on 0.0.0.0 and a client: nothing unusual at all
    Echo,
    /// Holds sockets of every kind (TCP listener and connection on 127.0.0.1, UDP on ::1, unix
    /// path, abstract and connected, netlink), prints "ready PID" and waits for a line on stdin
    Holder,
    /// Each call `wsltrace emulate` can change, with its result on stderr (see WSLTRACE_DEMO_PORTS
    /// and WSLTRACE_DEMO_DIR in the README)
    Quirks,
    /// A socket; one more after moving to a new network namespace; then, after dropping root
    /// for nobody, a bind to port 80 that fails with EACCES (run as root)
    Identity,
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

/// `100M`, `1G`, `512K`, `1.5G`, `1048576` (bytes); K, M, G, T are powers of 1024.
pub fn parse_file_size(s: &str) -> Result<u64, String> {
    const MIN: u64 = 4 << 10;
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_suffix("IB").or_else(|| t.strip_suffix('B')).unwrap_or(&t);
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 'K')) => (&t[..i], 1_u64 << 10),
        Some((i, 'M')) => (&t[..i], 1 << 20),
        Some((i, 'G')) => (&t[..i], 1 << 30),
        Some((i, 'T')) => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    let bytes = digits
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n * unit as f64)
        .filter(|b| *b < u64::MAX as f64)
        .ok_or_else(|| format!("'{s}' is not a size: use e.g. 100M, 1G, 512K"))?;
    if bytes < MIN as f64 {
        return Err(format!("size {s} is too small: use at least 4K (e.g. 100M)"));
    }
    Ok(bytes as u64)
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
    fn file_sizes() {
        assert_eq!(parse_file_size("100M"), Ok(100 << 20));
        assert_eq!(parse_file_size("1g"), Ok(1 << 30));
        assert_eq!(parse_file_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_file_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_file_size("64kb"), Ok(64 << 10));
        assert_eq!(parse_file_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_file_size("2T"), Ok(2 << 40));
        for bad in ["", "M", "-1M", "10X", "1e400", "nanM"] {
            assert!(parse_file_size(bad).unwrap_err().contains("not a size"), "{bad}");
        }
        assert!(parse_file_size("1K").unwrap_err().contains("too small"));
    }

    #[test]
    fn recording_options_need_a_file() {
        assert!(Cli::try_parse_from(["wsltrace", "--rotate", "1M", "-p", "1"]).is_err());
        assert!(Cli::try_parse_from(["wsltrace", "--append", "-p", "1"]).is_err());
        let cli =
            Cli::try_parse_from(["wsltrace", "-o", "x.zst", "--rotate", "1M", "-p", "1"]).unwrap();
        assert_eq!(cli.trace.output.rotate, Some(1 << 20));
    }

    #[test]
    fn analyze_takes_files_and_the_shared_filters() {
        let cli = Cli::try_parse_from([
            "wsltrace",
            "analyze",
            "a.jsonl",
            "b.jsonl.zst",
            "--pid",
            "4,5",
            "-e",
            "ENOENT",
            "--since",
            "+1s",
            "--addr",
            ":80",
            "-c",
        ])
        .unwrap();
        let Some(Command::Analyze(args)) = cli.command else { panic!("not analyze") };
        assert_eq!(args.files.len(), 2);
        assert_eq!(args.pids, [4, 5]);
        assert_eq!(args.filter.errnos, [Errno(2)]);
        assert!(args.output.summary);
        assert!(Cli::try_parse_from(["wsltrace", "analyze"]).is_err());
        assert!(Cli::try_parse_from(["wsltrace", "analyze", "f", "--addr", "x:y"]).is_err());
    }

    #[test]
    fn doctor_takes_a_pid_and_a_format() {
        let cli =
            Cli::try_parse_from(["wsltrace", "doctor", "--pid", "42", "--format", "json"]).unwrap();
        let Some(Command::Doctor(args)) = cli.command else { panic!("not doctor") };
        assert_eq!((args.pid, args.format), (Some(42), Format::Json));
        assert!(Cli::try_parse_from(["wsltrace", "doctor", "--pid", "x"]).is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_ring_size("8M"), Ok(8 << 20));
        assert_eq!(parse_ring_size("4k"), Ok(4096));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    }
}
