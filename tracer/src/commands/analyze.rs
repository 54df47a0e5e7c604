//! `wsltrace analyze FILE...`: recordings read back through the same stages as a live trace
//! (filter, detect, sinks), so the output, filters and summary are the same.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;

use crate::{
    cli::AnalyzeArgs,
    event::Event,
    filter::Filter,
    pipeline::Pipeline,
    recording::{Header, Record, RecordedFacts},
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

    let mut sinks = super::trace::sinks(&args.output)?;
    if let Some(sink) = recording_sink::from_args(&args.output, derived_header(&args, &files))? {
        sinks.push(Box::new(sink));
    }
    let mut pipeline = Pipeline::new(sinks).with_filter(Filter::new(&args.filter, &args.pids));

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
        // The environment the recording was made in (from its header), not this machine's.
        let mut facts: Option<RecordedFacts> = None;
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
                    facts = Some(header.facts);
                    Ok(())
                }
                Record::Event(mut ev) => {
                    start_if_unknown(&mut pipeline, &ev);
                    detect(&mut ev, facts.as_ref());
                    pipeline.event(&ev)
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

/// SEAM(detect): here the knowledge base (issue 4) re-evaluates each event with today's rules,
/// so an old recording benefits from new rules. Build the detector once per header from the
/// environment recorded there (`facts`: WSL version, networking mode...), never from the
/// analysing machine, with a `System` that answers "unknown" (the socket table, mounts and
/// capabilities of the time are gone). Then keep the recorded findings, which saw that live
/// state, and add the ones today's rules find that were not recorded (same rule id: keep the
/// recorded one). `None`: a file without header, evaluate environment rules as unknown. Until the
/// knowledge base is merged here, the findings recorded at trace time are kept as they are.
fn detect(ev: &mut Event, facts: Option<&RecordedFacts>) {
    let _ = (ev, facts);
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
    let mut header = Header::new(Utc::now(), spec);
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
