//! The stages after the source, shared by live tracing and `analyze`:
//! enrich -> detect -> filter -> sinks.

use std::{
    collections::{BTreeMap, HashSet},
    io,
};

use crate::{
    detect::Detector,
    enrich::Enricher,
    event::{Event, Loss, ProcessExit, RecordRef, Severity, Snapshot},
    filter::Filter,
    sinks::Sinks,
};

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub lost: u64,
    pub in_flight_at_attach: u64,
    /// Events the userspace filters dropped.
    pub filtered: u64,
    /// rule id -> (severity, title, occurrences), over the events shown.
    pub findings: BTreeMap<String, (Severity, String, u64)>,
}

pub struct Pipeline {
    enricher: Enricher,
    detector: Option<Detector>,
    filter: Filter,
    sinks: Sinks,
    /// Processes with an event shown: only their exits are (a shell wrapper's forty helper
    /// processes that never touched a socket are not news).
    shown: HashSet<u32>,
    pub stats: Stats,
}

impl Pipeline {
    pub fn new(enricher: Enricher, detector: Option<Detector>, sinks: Sinks) -> Self {
        Pipeline {
            enricher,
            detector,
            filter: Filter::default(),
            sinks,
            shown: HashSet::new(),
            stats: Stats::default(),
        }
    }

    /// The knowledge base judging the events from now on (analyze: one per recorded
    /// environment).
    pub fn set_detector(&mut self, detector: Option<Detector>) {
        self.detector = detector;
    }

    /// The filter stage: which records reach the sinks.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    pub fn filter_mut(&mut self) -> &mut Filter {
        &mut self.filter
    }

    pub fn event(&mut self, ev: &mut Event) -> io::Result<()> {
        self.enricher.event(ev);
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
        self.stats.events += 1;
        self.shown.insert(ev.pid);
        self.stats.in_flight_at_attach += u64::from(ev.in_flight_at_attach);
        for finding in &ev.anomalies {
            let entry = self
                .stats
                .findings
                .entry(finding.id.clone())
                .or_insert_with(|| (finding.severity, finding.title.clone(), 0));
            entry.2 += 1;
        }
        self.sinks.write(RecordRef::Event(ev))
    }

    pub fn loss(&mut self, loss: &Loss) -> io::Result<()> {
        if !self.filter.loss(loss) {
            return Ok(());
        }
        self.stats.lost += loss.lost;
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
        let Stats { events, lost, in_flight_at_attach, filtered, .. } = &self.stats;
        let mut line = format!("wsltrace: {events} events, {lost} lost");
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
mod tests {
    use tracer_common::Syscall;

    use super::*;
    use crate::event::{Args, Finding};

    #[test]
    fn the_findings_summary_puts_the_most_severe_first() {
        let mut pipeline = Pipeline::new(Enricher::offline(), None, Sinks::default());
        for (id, severity) in [
            ("B-INFO", Severity::Info),
            ("C-ERROR", Severity::Error),
            ("A-WARN", Severity::Warning),
        ] {
            let mut ev = Event::for_test(Syscall::Connect, Args::default(), -111);
            let (title, fix) = ("t".to_owned(), "f".to_owned());
            ev.anomalies.push(Finding { id: id.into(), severity, title, fix, detail: None });
            pipeline.event(&mut ev).unwrap();
        }
        let summary = pipeline.findings_summary().unwrap();
        let rows: Vec<&str> = summary.lines().skip(1).collect();
        assert_eq!(
            rows,
            [
                "  error    C-ERROR      1x  t",
                "  warning  A-WARN       1x  t",
                "  info     B-INFO       1x  t",
            ]
        );
    }
}
