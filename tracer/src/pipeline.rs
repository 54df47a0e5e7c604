//! The stages after the source, shared by every source: events in, sinks out.

use std::io;

use crate::{
    event::{Event, Loss, ProcessExit, RecordRef, Snapshot},
    filter::Filter,
    sinks::Sinks,
};

#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub lost: u64,
    pub in_flight_at_attach: u64,
    /// Events the userspace filters dropped.
    pub filtered: u64,
}

pub struct Pipeline {
    sinks: Sinks,
    filter: Filter,
    pub stats: Stats,
}

impl Pipeline {
    pub fn new(sinks: Sinks) -> Self {
        Pipeline { sinks, filter: Filter::default(), stats: Stats::default() }
    }

    /// The filter stage: which records reach the sinks.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    pub fn filter_mut(&mut self) -> &mut Filter {
        &mut self.filter
    }

    pub fn event(&mut self, ev: &Event) -> io::Result<()> {
        if !self.filter.event(ev) {
            self.stats.filtered += 1;
            return Ok(());
        }
        self.stats.events += 1;
        self.stats.in_flight_at_attach += u64::from(ev.in_flight_at_attach);
        self.sinks.write(RecordRef::Event(ev))
    }

    pub fn loss(&mut self, loss: &Loss) -> io::Result<()> {
        if !self.filter.loss(loss) {
            return Ok(());
        }
        self.stats.lost += loss.lost;
        self.sinks.write(RecordRef::Loss(loss))
    }

    pub fn exit(&mut self, exit: &ProcessExit) -> io::Result<()> {
        if !self.filter.exit(exit) {
            return Ok(());
        }
        self.sinks.write(RecordRef::Exit(exit))
    }

    pub fn snapshot(&mut self, snap: &Snapshot) -> io::Result<()> {
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

    /// The last line of every trace.
    pub fn summary(&self) -> String {
        let Stats { events, lost, in_flight_at_attach, filtered } = self.stats;
        let mut line = format!("wsltrace: {events} events, {lost} lost");
        if in_flight_at_attach > 0 {
            line.push_str(&format!(" ({in_flight_at_attach} already in progress at attach)"));
        }
        if filtered > 0 {
            line.push_str(&format!(" ({filtered} filtered out)"));
        }
        line
    }
}
