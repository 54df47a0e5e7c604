//! `wsltrace analyze FILE...`: recordings read back through the same stages as a live trace
//! (enrich, detect, filter, sinks), so the output, filters, findings and summary are the same.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;

use crate::{
    cli::{AnalyzeArgs, KnowledgeArgs},
    detect::{
        Detector,
        env::Environment,
        rules::{self, RuleSpec},
    },
    enrich::Enricher,
    event::Event,
    facts::{Facts, system::Offline},
    filter::Filter,
    pipeline::Pipeline,
    recording::{Header, Record},
    sinks::recording as recording_sink,
    source::recording::{self, Problem, RecordingReader},
};

/// How often (in records) buffered output is offered a flush: `analyze -o` honours the same
/// flush interval as a live recording.
const FLUSH_EVERY_RECORDS: u64 = 4096;

pub fn run(args: AnalyzeArgs) -> Result<ExitCode> {
    let mut problems = Vec::new();
    let files = recording::plan(&args.files, &mut problems);
    let mut errors = report(&mut problems);
    if files.is_empty() {
        anyhow::bail!("no recording could be read: give files written with wsltrace -o");
    }
    recording_sink::preflight(&args.output)?;

    let specs = rules::load(&args.knowledge.rules).map_err(super::rules::describe)?;
    let mut sinks = super::trace::sinks(&args.output, args.knowledge.quiet)?;
    if let Some(sink) = recording_sink::from_args(&args.output, derived_header(&args, &files))? {
        sinks.push(Box::new(sink));
    }
    let mut pipeline = Pipeline::new(Enricher::offline(), None, sinks)
        .with_filter(Filter::new(&args.filter, &args.pids));
    // Until a header says otherwise: rules judge with what --assume gives, or nothing known.
    pipeline.set_detector(Some(detector(&specs, None, &args.knowledge)?));

    let mut records = 0_u64;
    'files: for file in &files {
        let mut reader = match RecordingReader::open(file) {
            Ok(reader) => reader,
            Err(problem) => {
                problems.push(problem);
                errors += report(&mut problems);
                continue;
            }
        };
        while let Some(record) = reader.next(&mut problems) {
            if !problems.is_empty() {
                // In order with the output that came before.
                let _ = pipeline.flush();
                errors += report(&mut problems);
            }
            let written = match record {
                Record::Header(header) => {
                    // Relative --since/--until count from each recording's start.
                    pipeline.filter_mut().set_start(header.start);
                    // Today's rules, judged in the environment the recording was made in.
                    pipeline.set_detector(Some(detector(
                        &specs,
                        Some(&header.facts),
                        &args.knowledge,
                    )?));
                    Ok(())
                }
                Record::Event(mut ev) => {
                    start_if_unknown(&mut pipeline, &ev);
                    pipeline.event(&mut ev)
                }
                Record::Loss(loss) => pipeline.loss(&loss),
                Record::Exit(exit) => pipeline.exit(&exit),
                Record::Snapshot(snap) => pipeline.snapshot(&snap),
                Record::Footer(_) => Ok(()),
            };
            records += 1;
            let flushed = match records % FLUSH_EVERY_RECORDS {
                0 => written.and_then(|()| pipeline.flush()),
                _ => written,
            };
            if !super::trace::output_ok(flushed)? {
                break 'files;
            }
        }
        let _ = pipeline.flush();
        errors += report(&mut problems);
    }
    super::trace::output_ok(pipeline.finish())?;
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

/// A file without header (JSON Lines from `--format json`): relative times count from its
/// first record.
fn start_if_unknown(pipeline: &mut Pipeline, ev: &Event) {
    if pipeline.filter_mut().needs_start() {
        pipeline.filter_mut().set_start(ev.ts);
    }
}

/// `analyze -o`: a new recording that keeps the environment of the one it was made from.
fn derived_header(args: &AnalyzeArgs, files: &[std::path::PathBuf]) -> Header {
    let spec = Filter::new(&args.filter, &args.pids).spec();
    let mut header = Header::new(Utc::now(), spec, Facts::default());
    let source = files.iter().find_map(|f| recording::first_header(f));
    if let Some(source) = source {
        header.start = source.start;
        header.kernel_release = source.kernel_release;
        header.hostname = source.hostname;
        header.facts = source.facts;
    }
    header.derived_from = files.iter().map(|f| f.display().to_string()).collect();
    header
}

/// Prints the problems found so far on stderr and counts the errors among them.
fn report(problems: &mut Vec<Problem>) -> usize {
    let mut errors = 0;
    for problem in problems.drain(..) {
        errors += usize::from(problem.error);
        eprintln!("wsltrace: {problem}");
    }
    errors
}
