//! `wsltrace analyze FILE...`: recordings read back through the same stages as a live trace
//! (enrich, detect, filter, sinks), so the output, filters, findings and summary are the same.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use chrono::Utc;
use clap::Args;

use crate::{
    detect::{
        Detector,
        args::KnowledgeArgs,
        env::Environment,
        rules::{self, RuleSpec},
    },
    enrich::Enricher,
    facts::{Facts, system::Offline},
    filter::{Filter, FilterArgs},
    pipeline::{self, Pipeline, output_ok},
    recording::Header,
    sinks::{self, args::OutputArgs, recording as recording_sink},
    source::recording::{self, Recordings},
};

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

pub fn run(args: AnalyzeArgs) -> Result<ExitCode> {
    let mut problems = Vec::new();
    let files = recording::plan(&args.files, &mut problems);
    let mut errors: usize = problems.iter().map(|p| p.report()).sum();
    if files.is_empty() {
        anyhow::bail!("no recording could be read: give files written with wsltrace -o");
    }
    recording_sink::preflight(&args.output)?;

    let specs = rules::load(&args.knowledge.rules).map_err(super::rules::describe)?;
    let mut sinks = sinks::terminal(&args.output, args.knowledge.quiet, None);
    if let Some(sink) = recording_sink::from_args(&args.output, derived_header(&args, &files))? {
        sinks.push(Box::new(sink));
    }
    // Until a header says otherwise: rules judge with what --assume gives, or nothing known.
    let unknown = detector(&specs, None, &args.knowledge)?;
    let knowledge = args.knowledge.clone();
    let mut pipeline = Pipeline::new(Enricher::offline(), Some(unknown), sinks)
        .with_filter(Filter::new(&args.filter, &args.pids))
        .with_detector_for(Box::new(move |facts| detector(&specs, Some(facts), &knowledge)));
    // A recording never waits: the runtime only drives the loop live tracing shares.
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    errors += runtime.block_on(pipeline::run(&mut Recordings::new(files), &mut pipeline))?;
    output_ok(pipeline.finish())?;
    if errors > 0 {
        eprintln!(
            "wsltrace: {errors} problem{} in the input (see above): what could be read was analysed",
            if errors == 1 { "" } else { "s" }
        );
    }
    // The last line, as after a live trace.
    eprintln!("{}", pipeline.summary());
    Ok(if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The knowledge base for a recording: today's rules, the environment recorded in its header
/// (never the analysing machine's; `--assume` overrides), and no live system to ask: the socket
/// tables, mounts and processes of the time are gone, so the rules that need them stay silent
/// and the findings recorded live are kept (the detector adds only rules not already there).
fn detector(
    specs: &[RuleSpec],
    facts: Option<&Facts>,
    knowledge: &KnowledgeArgs,
) -> Result<Detector> {
    let mut env = facts.map(Environment::from_facts).unwrap_or_default();
    if let Some(assumed) = &knowledge.assume {
        env.assume(assumed)?;
    }
    // The initial namespaces have the same numbers on every kernel.
    let initial_net = Some(crate::facts::namespaces::KERNEL_INITIAL.net);
    Ok(Detector::new(specs.to_vec(), env, Box::new(Offline), initial_net))
}

/// `analyze -o`: a new recording that keeps the environment of the one it was made from.
fn derived_header(args: &AnalyzeArgs, files: &[PathBuf]) -> Header {
    let spec = Filter::new(&args.filter, &args.pids).spec();
    let mut header = Header::new(Utc::now(), spec, Facts::default());
    let source = files.iter().find_map(|f| recording::first_header(f));
    if let Some(source) = source {
        header.start = source.start;
        header.kernel_release = source.kernel_release;
        header.hostname = source.hostname;
        header.facts = source.facts;
        header.probe_kind = source.probe_kind;
    }
    header.derived_from = files.iter().map(|f| f.display().to_string()).collect();
    header
}
