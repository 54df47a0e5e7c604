//! `wsltrace rules`: what the knowledge base knows, and `--check FILE` for a file of yours.

use std::{io::Write as _, process::ExitCode};

use anyhow::{Result, anyhow};

use crate::{
    cli::RulesArgs,
    detect::{one_paragraph, rules},
    sinks::args::Format,
};

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
    let specs = rules::load(&args.rules).map_err(describe)?;
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
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rule-file problems as one error (each on its own line, with file and line).
pub fn describe(errors: Vec<rules::RuleError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    anyhow!("invalid rule file (see `wsltrace rules --check FILE`):\n{}", lines.join("\n"))
}
