//! The stages after the source, shared by every source: events in, sinks out.

use std::io;

use crate::{
    event::{Event, Loss, ProcessExit, RecordRef},
    sinks::Sinks,
};

#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub lost: u64,
    pub in_flight_at_attach: u64,
}

pub struct Pipeline {
    sinks: Sinks,
    pub stats: Stats,
}

impl Pipeline {
    pub fn new(sinks: Sinks) -> Self {
        Pipeline { sinks, stats: Stats::default() }
    }

    pub fn event(&mut self, ev: &Event) -> io::Result<()> {
        self.stats.events += 1;
        self.stats.in_flight_at_attach += u64::from(ev.in_flight_at_attach);
        self.sinks.write(RecordRef::Event(ev))
    }

    pub fn loss(&mut self, loss: &Loss) -> io::Result<()> {
        self.stats.lost += loss.lost;
        self.sinks.write(RecordRef::Loss(loss))
    }

    pub fn exit(&mut self, exit: &ProcessExit) -> io::Result<()> {
        self.sinks.write(RecordRef::Exit(exit))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.sinks.flush()
    }

    /// The last line of every trace.
    pub fn summary(&self) -> String {
        let Stats { events, lost, in_flight_at_attach } = self.stats;
        let mut line = format!("wsltrace: {events} events, {lost} lost");
        if in_flight_at_attach > 0 {
            line.push_str(&format!(" ({in_flight_at_attach} already in progress at attach)"));
        }
        line
    }
}
