//! `wsltrace completions SHELL`: the shell's completion script on stdout, generated from the
//! command-line definition (clap_complete), so it follows every option as it changes.

use std::{io::Write as _, process::ExitCode};

use anyhow::Result;
use clap::{Args, Command, CommandFactory as _};
use clap_complete::Shell;

use crate::cli::Cli;

pub const EXAMPLES: &str = "\
Examples:
  wsltrace completions bash > ~/.local/share/bash-completion/completions/wsltrace
  wsltrace completions zsh > ~/.zfunc/_wsltrace     (with fpath+=~/.zfunc before compinit)
  wsltrace completions fish > ~/.config/fish/completions/wsltrace.fish
The Debian package (cargo xtask deb) installs all three.";

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete wsltrace in
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<ExitCode> {
    // clap_complete panics on a failed write: render in memory, so that a closed pipe is an
    // error main treats as the end of output.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut visible_command(), "wsltrace", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// The command line without its hidden sub-commands (exec-gate, manpages): clap_complete offers
/// every sub-command, hidden or not (clap#1335), and clap has no way to remove one, so the root
/// is put together again from the same arguments and the visible sub-commands.
fn visible_command() -> Command {
    let full = Cli::command();
    let mut root = Command::new("wsltrace")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .groups(full.get_groups().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        root = root.about(about.clone());
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rebuilt root completes what the real one accepts, less the hidden sub-commands.
    #[test]
    fn the_completed_command_is_the_real_one_without_hidden_subcommands() {
        let full = Cli::command();
        let visible = visible_command();
        visible.clone().debug_assert();
        let ids =
            |cmd: &Command| cmd.get_arguments().map(|a| a.get_id().clone()).collect::<Vec<_>>();
        assert_eq!(ids(&visible), ids(&full));
        let names = |cmd: &Command, hidden: bool| {
            cmd.get_subcommands()
                .filter(|s| hidden || !s.is_hide_set())
                .map(|s| s.get_name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&visible, true), names(&full, false));
        assert!(names(&full, true).iter().any(|n| n == "exec-gate"));
        assert!(!names(&visible, true).iter().any(|n| n == "exec-gate" || n == "manpages"));
    }
}
