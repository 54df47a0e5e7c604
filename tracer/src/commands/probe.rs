//! `wsltrace probe`: try each WSL socket quirk on this machine (see `crate::probe`).

use std::{process::ExitCode, time::Duration};

use anyhow::Result;
use clap::Args;

use crate::{probe, sinks::args::Format};

pub const EXAMPLES: &str = "\
Examples:
  wsltrace probe                        each quirk: present, absent or skipped, and why
  wsltrace probe --format json > probe-$(hostname).json
                                        the same as one JSON object, to share from a WSL machine

No root needed; nothing is changed (a socket file tried on /mnt/c is removed at once). Probes
that wait (a connect nobody answers, a DNS query, a vsock connect) stop after --timeout.";

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Text, or one JSON object: {"probes":[{"id","rule","platforms","status","detail"}],"environment":{..}}
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Seconds a probe waits for an answer (0.1-30)
    #[arg(long, default_value_t = 2.0, value_parser = parse_timeout)]
    pub timeout: f64,
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text}: not a number of seconds"))?;
    if (0.1..=30.0).contains(&secs) { Ok(secs) } else { Err("between 0.1 and 30 seconds".into()) }
}

pub fn run(args: ProbeArgs) -> Result<ExitCode> {
    let report = probe::run(Duration::from_secs_f64(args.timeout));
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => print!("{}", probe::render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}
