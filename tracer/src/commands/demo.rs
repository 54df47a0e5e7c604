//! `wsltrace demo`: a built-in workload (see `workloads`), traced (default) or run plainly
//! (`--untraced`, which is what the traced child runs).

use std::{ffi::OsString, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::Args;

use super::trace::{self, ProbeArgs, TraceArgs};
use crate::{
    detect::args::KnowledgeArgs,
    sinks::args::OutputArgs,
    workloads::{self, Params, Scenario},
};

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

    #[command(flatten)]
    pub params: Params,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub knowledge: KnowledgeArgs,

    #[command(flatten)]
    pub probe: ProbeArgs,
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    if args.untraced {
        let ready = if args.wait { workloads::wait_for_go } else { || Ok(()) };
        workloads::run(args.scenario, &args.params, ready)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The demo is `wsltrace -- wsltrace demo --untraced ...`.
    let scenario = clap::ValueEnum::to_possible_value(&args.scenario)
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    // The binary's own path rather than /proc/self/exe, so that its comm reads "wsltrace".
    let exe = std::env::current_exe().context("locating the wsltrace binary")?;
    let Params { addr, count, threads, timeout_ms } = args.params;
    let mut command = vec![exe.into_os_string()];
    let (threads, timeout_ms) = (threads.to_string(), timeout_ms.to_string());
    command.extend(
        ["demo", "--untraced", &scenario, "--threads", &threads, "--timeout-ms", &timeout_ms]
            .map(OsString::from),
    );
    if let Some(count) = count {
        command.extend(["--count".into(), count.to_string().into()]);
    }
    if let Some(addr) = addr {
        command.extend(["--addr".into(), OsString::from(addr)]);
    }
    trace::run(TraceArgs {
        pids: Vec::new(),
        follow_forks: true,
        no_follow: false,
        no_snapshot: true,
        command,
        filter: Default::default(),
        output: args.output,
        metrics: None,
        knowledge: args.knowledge,
        emulation: Default::default(),
        duration: None,
        blocked_after: std::time::Duration::from_secs(2),
        ring_size: tracer_common::config::DEFAULT_RING_BYTES,
        probe: args.probe,
    })
}
