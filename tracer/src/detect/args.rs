//! Command line of the knowledge base, the same live, in `analyze` and in `demo`.

use std::path::PathBuf;

use clap::Args;

/// The knowledge base: which rules, for which environment.
#[derive(Debug, Clone, Default, Args)]
pub struct KnowledgeArgs {
    /// Add the rules in FILE to the built-in ones (a rule with a built-in id replaces it);
    /// see `wsltrace rules --check FILE`
    #[arg(long = "rules", value_name = "FILE", help_heading = "Knowledge base")]
    pub rules: Vec<PathBuf>,

    /// Take the environment as given instead of detecting it:
    /// wsl2[,nat|mirrored|consomme|bridged|none], wsl1, linux
    #[arg(long, value_name = "ENV", help_heading = "Knowledge base")]
    pub assume: Option<String>,

    /// On the terminal, show only the calls with findings
    #[arg(short = 'q', long, help_heading = "Knowledge base")]
    pub quiet: bool,
}
