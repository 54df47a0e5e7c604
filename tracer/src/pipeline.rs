//! The stages after the source, shared by live tracing and `analyze`:
//! enrich -> detect -> filter -> sinks, and the one loop that runs a source through them.

use std::{collections::BTreeMap, io};

use anyhow::{Context as _, Result};
use foldhash::{HashSet, HashSetExt as _};

use crate::{
    detect::Detector,
    enrich::{Enricher, blocked::ConnectWatch},
    event::{
        Blocked, Event, Finding, Loss, ProcessExit, RecordRef, Severity, Snapshot, SocketError,
    },
    facts::Facts,
    filter::Filter,
    recording::Header,
    sinks::Sinks,
    source::{Record, Source},
};

/// Every record of `source` through `pipeline`, in order, until the source ends; returns the
/// number of errors among the problems reported. When the output goes away the source is told
/// and ends soon, quietly.
pub async fn run(source: &mut impl Source, pipeline: &mut Pipeline) -> Result<usize> {
    let mut errors = 0;
    while let Some(record) = source.next().await? {
        let written = match record {
            Record::Header(header) => {
                pipeline.header(&header)?;
                Ok(())
            }
            Record::Snapshot(snap) => pipeline.snapshot(&snap),
            Record::Event(mut ev) => {
                let written = pipeline.event(&mut ev);
                source.recycle(ev);
                written
            }
            Record::SocketError(mut error) => pipeline.socket_error(&mut error),
            Record::Blocked(mut b) => pipeline.blocked(&mut b),
            Record::Tick(now_ns) => pipeline.tick(now_ns),
            Record::Loss(loss) => pipeline.loss(&loss),
            Record::Exit(exit) => pipeline.exit(&exit),
            Record::Fork { parent, child } => {
                pipeline.fork(parent, child);
                Ok(())
            }
            Record::Flush => pipeline.flush(),
            Record::Problem(problem) => {
                // In order with the output that came before, on a line of its own.
                let _ = pipeline.flush();
                pipeline.make_way();
                errors += problem.report();
                Ok(())
            }
        };
        if !output_ok(written)? {
            source.output_closed();
        }
    }
    Ok(errors)
}

/// Ok(false) when the reader of our stdout went away: stop quietly, like other CLI tools.
pub fn output_ok(result: io::Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err).context("writing the trace"),
    }
}

/// The knowledge base for the environment a recording was made in.
pub type DetectorFor = Box<dyn Fn(&Facts) -> Result<Detector>>;

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    /// Events of the selected calls the kernel could not deliver.
    pub lost: u64,
    /// Context records the kernel could not deliver (see `LostDetail::lost_context`).
    pub lost_context: u64,
    pub in_flight_at_attach: u64,
    /// Socket errors no call asked for, shown.
    pub socket_errors: u64,
    /// Events the userspace filters dropped.
    pub filtered: u64,
    /// `blocked` records shown.
    pub blocked: u64,
    /// rule id -> (severity, title, occurrences), over the events shown.
    pub findings: BTreeMap<String, (Severity, String, u64)>,
}

impl Stats {
    fn count_findings(&mut self, findings: &[Finding]) {
        for finding in findings {
            let entry = self
                .findings
                .entry(finding.id.clone())
                .or_insert_with(|| (finding.severity, finding.title.clone(), 0));
            entry.2 += 1;
        }
    }
}

pub struct Pipeline {
    enricher: Enricher,
    detector: Option<Detector>,
    /// `analyze`: a new detector for each recording's environment.
    detector_for: Option<DetectorFor>,
    filter: Filter,
    sinks: Sinks,
    /// Processes with an event shown: only their exits are (a shell wrapper's forty helper
    /// processes that never touched a socket are not news).
    shown: HashSet<u32>,
    /// The pid inserted in `shown` last.
    last_shown: Option<u32>,
    /// Live, with `--blocked-after`: non-blocking connects still connecting.
    watch: Option<ConnectWatch>,
    pub stats: Stats,
}

impl Pipeline {
    pub fn new(enricher: Enricher, detector: Option<Detector>, sinks: Sinks) -> Self {
        Pipeline {
            enricher,
            detector,
            detector_for: None,
            filter: Filter::default(),
            sinks,
            shown: HashSet::new(),
            last_shown: None,
            watch: None,
            stats: Stats::default(),
        }
    }

    /// Reports non-blocking connects still connecting after `after_ns` (live).
    pub fn with_blocked_after(mut self, after_ns: u64) -> Self {
        self.watch = (after_ns > 0).then(|| ConnectWatch::new(after_ns));
        self
    }

    /// Judges the records after each header in the environment the header describes.
    pub fn with_detector_for(mut self, detector_for: DetectorFor) -> Self {
        self.detector_for = Some(detector_for);
        self
    }

    /// The filter stage: which records reach the sinks.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// A recording's header: relative --since/--until count from its start, and today's rules
    /// judge in the environment it was recorded in.
    pub fn header(&mut self, header: &Header) -> Result<()> {
        self.filter.set_start(header.start);
        if let Some(detector_for) = &self.detector_for {
            self.detector = Some(detector_for(&header.facts)?);
        }
        Ok(())
    }

    pub fn event(&mut self, ev: &mut Event) -> io::Result<()> {
        // No start known (JSON Lines without a header): relative times count from the first
        // event.
        if self.filter.needs_start() {
            self.filter.set_start(ev.ts);
        }
        self.enricher.event(ev);
        if let Some(watch) = &mut self.watch {
            watch.event(ev);
        }
        // A call the kernel filters hid: it told the fd table what an fd is, nothing more.
        if ev.context_only {
            return Ok(());
        }
        if let Some(detector) = &mut self.detector {
            detector.detect(ev, &self.enricher.fds);
        }
        // Filters run after detection: --anomalies-only needs the findings.
        if !self.filter.event(ev) {
            self.stats.filtered += 1;
            return Ok(());
        }
        if let Some(detector) = &mut self.detector {
            detector.shown();
        }
        self.stats.events += 1;
        // Mostly the same process as the last event: no look-up then.
        if self.last_shown != Some(ev.pid) {
            self.shown.insert(ev.pid);
            self.last_shown = Some(ev.pid);
        }
        self.stats.in_flight_at_attach += u64::from(ev.in_flight_at_attach);
        self.stats.count_findings(&ev.anomalies);
        self.sinks.write(RecordRef::Event(ev))
    }

    /// A call still in progress: annotated and judged like an event, without changing the fd
    /// table (it has done nothing yet).
    pub fn blocked(&mut self, b: &mut Blocked) -> io::Result<()> {
        if self.filter.needs_start() {
            self.filter.set_start(b.ts);
        }
        self.enricher.blocked(b);
        if let Some(detector) = &mut self.detector {
            detector.detect_blocked(b, &self.enricher.fds);
        }
        if !self.filter.blocked(b) {
            self.stats.filtered += 1;
            return Ok(());
        }
        self.stats.blocked += 1;
        self.shown.insert(b.pid);
        self.stats.count_findings(&b.anomalies);
        self.sinks.write(RecordRef::Blocked(b))
    }

    /// Live time passes: the non-blocking connects still connecting are reported.
    pub fn tick(&mut self, now_ns: u64) -> io::Result<()> {
        let Some(watch) = &mut self.watch else { return Ok(()) };
        for mut b in watch.tick(now_ns, &mut self.enricher.fds) {
            self.blocked(&mut b)?;
        }
        Ok(())
    }

    /// A socket error no call asked for: described from the fd table, then judged and
    /// filtered as the failure of the connect it follows.
    pub fn socket_error(&mut self, error: &mut SocketError) -> io::Result<()> {
        if self.filter.needs_start() {
            self.filter.set_start(error.ts);
        }
        self.enricher.socket_error(error);
        let mut connect = error.as_failed_connect();
        if let Some(detector) = &mut self.detector {
            detector.judge_failed_connect(&mut connect, &self.enricher.fds);
            error.anomalies = connect.anomalies.clone();
        }
        if !self.filter.event(&connect) {
            self.stats.filtered += 1;
            return Ok(());
        }
        if let Some(detector) = &mut self.detector {
            detector.shown();
        }
        self.stats.socket_errors += 1;
        self.shown.insert(error.pid);
        self.stats.count_findings(&error.anomalies);
        self.sinks.write(RecordRef::SocketError(error))
    }

    pub fn loss(&mut self, loss: &Loss) -> io::Result<()> {
        if !self.filter.loss(loss) {
            return Ok(());
        }
        self.stats.lost += loss.lost;
        self.stats.lost_context += loss.detail.lost_context;
        self.sinks.write(RecordRef::Loss(loss))
    }

    pub fn fork(&mut self, parent: u32, child: u32) {
        self.enricher.fork(parent, child);
    }

    pub fn exit(&mut self, exit: &ProcessExit) -> io::Result<()> {
        self.enricher.exit(exit.pid);
        if let Some(detector) = &mut self.detector {
            detector.exit(exit.pid);
        }
        // A later process with the same pid is not yet shown.
        if self.last_shown == Some(exit.pid) {
            self.last_shown = None;
        }
        if !self.shown.remove(&exit.pid) || !self.filter.exit(exit) {
            return Ok(());
        }
        self.sinks.write(RecordRef::Exit(exit))
    }

    /// What a process held at attach: the fd table starts from it.
    pub fn snapshot(&mut self, snap: &Snapshot) -> io::Result<()> {
        self.enricher.fds.seed(snap.pid, &snap.sockets);
        if !self.filter.snapshot(snap) {
            return Ok(());
        }
        self.sinks.write(RecordRef::Snapshot(snap))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.sinks.flush()
    }

    /// Something else writes to the terminal next: the status line goes.
    pub fn make_way(&mut self) {
        self.sinks.make_way();
    }

    /// The end of the trace: footers, summary tables.
    pub fn finish(&mut self) -> io::Result<()> {
        self.sinks.finish()
    }

    /// Findings by rule, most severe first: printed before the last line.
    pub fn findings_summary(&self) -> Option<String> {
        if self.stats.findings.is_empty() {
            return None;
        }
        let mut rows: Vec<(&String, &(Severity, String, u64))> =
            self.stats.findings.iter().collect();
        rows.sort_by_key(|(id, (severity, _, _))| (std::cmp::Reverse(*severity), *id));
        let width = rows.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
        let mut text =
            String::from("wsltrace: findings by rule (explained above, where they happened):");
        for (id, (severity, title, count)) in rows {
            text.push_str(&format!("\n  {severity:<7}  {id:<width$}  {count:>5}x  {title}"));
        }
        Some(text)
    }

    /// The last line of every trace.
    pub fn summary(&self) -> String {
        let Stats {
            events,
            lost,
            lost_context,
            in_flight_at_attach,
            filtered,
            socket_errors,
            blocked,
            ..
        } = &self.stats;
        let mut line = format!("wsltrace: {events} events, {lost} lost");
        if *lost_context > 0 {
            line.push_str(&format!(
                " ({lost_context} context records lost too: {})",
                Loss::CONTEXT_COST
            ));
        }
        if *socket_errors > 0 {
            line.push_str(&format!(", {socket_errors} socket errors"));
        }
        if *blocked > 0 {
            line.push_str(&format!(" ({blocked} blocked calls reported)"));
        }
        if *in_flight_at_attach > 0 {
            line.push_str(&format!(" ({in_flight_at_attach} already in progress at attach)"));
        }
        if *filtered > 0 {
            line.push_str(&format!(" ({filtered} filtered out)"));
        }
        line
    }
}

#[cfg(test)]
mod tests;
