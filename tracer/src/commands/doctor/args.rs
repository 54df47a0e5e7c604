//! Command line of `wsltrace doctor`.

use clap::Args;

use crate::sinks::args::{ColorWhen, Format};

pub const EXAMPLES: &str = "\
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
