//! `wsltrace manpages DIR` (hidden; `cargo xtask deb` runs it): the man pages, `wsltrace.1` and
//! one per sub-command (`wsltrace-analyze.1`...), generated from the command-line definition
//! (clap_mangen).

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory as _};

use crate::cli::Cli;

#[derive(Debug, Clone, Args)]
pub struct ManpagesArgs {
    /// Where to write the pages (created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn run(args: ManpagesArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Hidden sub-commands (exec-gate, this one) get no page.
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages to {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
