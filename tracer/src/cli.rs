//! Command line: `wsltrace [OPTIONS] (--pid PID... | -- CMD...)` and subcommands. Each
//! command's arguments live with the command (`commands/`), and the options a stage takes with
//! that stage (`filter/args.rs`, `sinks/args.rs`, `detect/args.rs`, `emulate/args.rs`).

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::{
    commands::{
        analyze::AnalyzeArgs, completions::CompletionsArgs, demo::DemoArgs,
        doctor::args::DoctorArgs, manpages::ManpagesArgs, probe::ProbeArgs, rules::RulesArgs,
        trace::TraceArgs,
    },
    emulate::args::EmulateArgs,
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
  sudo wsltrace --blocked-after 5 -- ./app  report calls still blocked after 5 s (default 2)

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
    #[command(after_help = crate::commands::doctor::args::EXAMPLES)]
    Doctor(DoctorArgs),
    /// Try each WSL socket quirk on this machine: present, absent or skipped (no root needed)
    #[command(after_help = crate::commands::probe::EXAMPLES)]
    Probe(ProbeArgs),
    /// Run a command with WSL1/WSL2 socket quirks reproduced in the kernel (or --list them)
    #[command(after_help = crate::emulate::args::EXAMPLES)]
    Emulate(EmulateArgs),
    /// Print a shell completion script (bash, zsh, fish...) for wsltrace
    #[command(after_help = crate::commands::completions::EXAMPLES)]
    Completions(CompletionsArgs),
    /// Internal: write the man pages (wsltrace.1 and one per sub-command) into DIR
    #[command(hide = true)]
    Manpages(ManpagesArgs),
    /// Internal: wait for the tracer's go-ahead on FD, then exec CMD
    #[command(name = "exec-gate", hide = true)]
    ExecGate {
        fd: i32,
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use tracer_common::Syscall;

    use super::*;
    use crate::{decode::errno::Errno, sinks::args::Format};

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
}
