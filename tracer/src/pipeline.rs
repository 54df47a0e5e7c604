//! The stages after the source, shared by every source: events in, sinks out.

use std::{collections::BTreeMap, io};

use crate::{
    detect::Detector,
    enrich::Enricher,
    event::{Event, Loss, ProcessExit, RecordRef},
    sinks::Sinks,
};

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub lost: u64,
    pub in_flight_at_attach: u64,
    /// rule id -> (severity, title, occurrences)
    pub findings: BTreeMap<String, (String, String, u64)>,
}

/// enrich -> detect -> sinks.
pub struct Pipeline {
    enricher: Enricher,
    detector: Option<Detector>,
    sinks: Sinks,
    pub stats: Stats,
}

impl Pipeline {
    pub fn new(enricher: Enricher, detector: Option<Detector>, sinks: Sinks) -> Self {
        Pipeline { enricher, detector, sinks, stats: Stats::default() }
    }

    pub fn event(&mut self, ev: &mut Event) -> io::Result<()> {
        self.enricher.event(ev);
        if let Some(detector) = &mut self.detector {
            detector.detect(ev, &self.enricher.fds);
        }
        self.stats.events += 1;
        self.stats.in_flight_at_attach += u64::from(ev.in_flight_at_attach);
        for finding in &ev.anomalies {
            let entry = self
                .stats
                .findings
                .entry(finding.id.clone())
                .or_insert_with(|| (finding.severity.clone(), finding.title.clone(), 0));
            entry.2 += 1;
        }
        self.sinks.write(RecordRef::Event(ev))
    }

    pub fn loss(&mut self, loss: &Loss) -> io::Result<()> {
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
        self.sinks.write(RecordRef::Exit(exit))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.sinks.flush()
    }

    /// Findings by rule, most severe first: printed before the last line.
    pub fn findings_summary(&self) -> Option<String> {
        if self.stats.findings.is_empty() {
            return None;
        }
        let mut rows: Vec<(&String, &(String, String, u64))> = self.stats.findings.iter().collect();
        let rank = |severity: &str| match severity {
            "error" => 0,
            "warning" => 1,
            _ => 2,
        };
        rows.sort_by_key(|(id, (severity, _, _))| (rank(severity), (*id).clone()));
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
        let Stats { events, lost, in_flight_at_attach, .. } = &self.stats;
        let mut line = format!("wsltrace: {events} events, {lost} lost");
        if *in_flight_at_attach > 0 {
            line.push_str(&format!(" ({in_flight_at_attach} already in progress at attach)"));
        }
        line
    }
}
