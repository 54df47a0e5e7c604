//! `wsltrace rules`: what the knowledge base knows, and `--check FILE` for a file of yours.

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use anyhow::{Result, anyhow};
use clap::Args;

use crate::{
    detect::{one_paragraph, rules, vocabulary},
    sinks::args::Format,
};

/// `wsltrace rules --help`: the rule format, and the matchers from the vocabulary's table.
pub fn long_help() -> String {
    format!(
        "\
A rule file (TOML) holds `schema = 1` and [[rule]] tables: id, title, severity (info, warning,
error), platforms (any, linux, wsl1, wsl2), confidence (verified: reproduced on a real system;
source: read in WSL's code, with a permalink https://github.com/microsoft/WSL/blob/<40-hex
commit>/src/...#L<line> among the references; reported: from issues and reports only),
explanation (ending with what the rule rests on), fix, references, optional group (first matching rule of a group wins) and detail (listeners,
port_holder, unix_target, netns, addresses), a [rule.when] table and an optional [rule.unless]
table of exceptions. A rule fires when every `when` matcher holds and not every `unless` one.

{}

Examples:
  wsltrace rules                          the rules, one line each
  wsltrace rules --format json | jq .     everything about them
  wsltrace rules --check my-rules.toml    validate a file for --rules",
        vocabulary::help()
    )
}

#[derive(Debug, Clone, Args)]
#[command(after_long_help = long_help(), after_help = "Examples:
  wsltrace rules                          the rules, one line each
  wsltrace rules ADDRESS-IN-USE           one rule: why it fires, the fix, its evidence
  wsltrace rules --check my-rules.toml    validate a file for --rules
(--help describes the rule format and every matcher)")]
pub struct RulesArgs {
    /// Explain this rule: when it fires, why, the fix and what it rests on
    #[arg(value_name = "ID")]
    pub id: Option<String>,

    /// Validate this rule file and report problems with their line numbers
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,

    /// Also list the rules in these files
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,

    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: RulesArgs) -> Result<ExitCode> {
    if let Some(path) = &args.check {
        return Ok(match rules::read(path) {
            Ok(found) => {
                println!(
                    "{}: {} rule{} OK",
                    path.display(),
                    found.len(),
                    if found.len() == 1 { "" } else { "s" }
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for error in &errors {
                    eprintln!("{error}");
                }
                ExitCode::FAILURE
            }
        });
    }
    let mut specs = rules::load(&args.rules).map_err(describe)?;
    if let Some(id) = &args.id {
        let wanted = id.to_ascii_uppercase();
        let Some(spec) = specs.iter().find(|r| r.id == wanted) else {
            let hint = specs
                .iter()
                .map(|r| (strsim::levenshtein(&r.id, &wanted), r.id.as_str()))
                .min()
                .filter(|(distance, _)| *distance <= 4)
                .map(|(_, id)| format!(" (did you mean {id}?)"))
                .unwrap_or_default();
            anyhow::bail!("no rule {id}{hint}: `wsltrace rules` lists them");
        };
        specs = vec![spec.clone()];
        if args.format == Format::Text {
            explain(&mut std::io::stdout().lock(), &specs[0])?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &specs)?;
            writeln!(out)?;
        }
        Format::Text => {
            let width = specs.iter().map(|r| r.id.len()).max().unwrap_or(0);
            for rule in &specs {
                let platforms: Vec<String> =
                    rule.platforms.iter().map(|p| format!("{p:?}").to_lowercase()).collect();
                writeln!(
                    out,
                    "{:<width$}  {:<7}  {:<9}  {:<9}  {}",
                    rule.id,
                    rule.severity.to_string(),
                    platforms.join(","),
                    format!("{:?}", rule.confidence).to_lowercase(),
                    one_paragraph(&rule.title),
                )?;
                for reference in &rule.references {
                    writeln!(out, "{:<width$}  see {reference}", "")?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `wsltrace rules ID`: one rule in full.
fn explain(out: &mut impl std::io::Write, rule: &rules::RuleSpec) -> std::io::Result<()> {
    let platforms: Vec<String> =
        rule.platforms.iter().map(|p| format!("{p:?}").to_lowercase()).collect();
    writeln!(out, "{}: {}", rule.id, one_paragraph(&rule.title))?;
    writeln!(
        out,
        "severity {}, platforms {}, confidence {}{}",
        rule.severity,
        platforms.join(","),
        format!("{:?}", rule.confidence).to_lowercase(),
        rule.group.as_ref().map(|g| format!(", group {g}")).unwrap_or_default(),
    )?;
    // The conditions as the rule file writes them.
    let when = toml::to_string(&rule.when).unwrap_or_default();
    writeln!(out, "\nWhen:\n{}", indent(when.trim_end()))?;
    if let Some(unless) = &rule.unless {
        let unless = toml::to_string(unless).unwrap_or_default();
        writeln!(out, "Unless:\n{}", indent(unless.trim_end()))?;
    }
    writeln!(out, "\nWhy:\n{}", indent(rule.explanation.trim_end()))?;
    writeln!(out, "\nFix:\n{}", indent(rule.fix.trim_end()))?;
    if !rule.references.is_empty() {
        writeln!(out, "\nReferences:")?;
        for reference in &rule.references {
            writeln!(out, "  {reference}")?;
        }
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// Rule-file problems as one error (each on its own line, with file and line).
pub fn describe(errors: Vec<rules::RuleError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    anyhow!("invalid rule file (see `wsltrace rules --check FILE`):\n{}", lines.join("\n"))
}
