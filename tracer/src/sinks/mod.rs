//! Where events go: the terminal (text or JSON) and files (JSON Lines).

pub mod json;
pub mod text;

use std::io;

use crate::event::RecordRef;

pub trait Sink {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()>;
    /// Called after each batch: output is never held back longer than one poll interval.
    fn flush(&mut self) -> io::Result<()>;
}

/// `--quiet`: passes on only the events with findings (and every non-event record).
pub struct Quiet(pub Box<dyn Sink>);

impl Sink for Quiet {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        match record {
            RecordRef::Event(ev) if ev.anomalies.is_empty() => Ok(()),
            _ => self.0.write(record),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Fans records out to every sink.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
}

impl Sinks {
    pub fn push(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    pub fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.write(record))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.flush())
    }
}
