//! Where events go: the terminal (text or JSON) and files (JSON Lines).

pub mod args;
pub mod file;
pub mod json;
pub mod line;
pub mod metrics;
pub mod recording;
pub mod render;
pub mod status;
pub mod summary;
pub mod text;

use std::{
    collections::HashSet,
    io::{self, BufWriter},
    rc::Rc,
};

use self::{
    args::{Format, OutputArgs},
    json::JsonSink,
    status::{MakeWay, StatusLine},
    summary::SummarySink,
    text::TextSink,
};
use crate::event::RecordRef;

pub trait Sink {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()>;
    /// Called after each batch: output is never held back longer than one poll interval.
    fn flush(&mut self) -> io::Result<()>;
    /// Called once when the trace ends (normal end, SIGINT or SIGTERM): write what closes the
    /// output (a recording's footer, a summary table) and flush.
    fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }

    /// Something else is about to write to the terminal (a problem report): take the status
    /// line off it.
    fn make_way(&mut self) {}
}

/// `--quiet`: passes on only the events with findings, the exits of the processes that had
/// them, and every other record (losses, snapshots).
pub struct Quiet {
    sink: Box<dyn Sink>,
    /// Processes with an event shown.
    shown: HashSet<u32>,
}

impl Quiet {
    pub fn new(sink: Box<dyn Sink>) -> Self {
        Quiet { sink, shown: HashSet::new() }
    }
}

impl Sink for Quiet {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        match record {
            RecordRef::Event(ev) if ev.anomalies.is_empty() => Ok(()),
            RecordRef::Blocked(b) if b.anomalies.is_empty() => Ok(()),
            RecordRef::Blocked(b) => {
                self.shown.insert(b.pid);
                self.sink.write(record)
            }
            RecordRef::Event(ev) => {
                self.shown.insert(ev.pid);
                self.sink.write(record)
            }
            RecordRef::SocketError(error) if error.anomalies.is_empty() => Ok(()),
            RecordRef::SocketError(error) => {
                self.shown.insert(error.pid);
                self.sink.write(record)
            }
            RecordRef::Exit(exit) if !self.shown.remove(&exit.pid) => Ok(()),
            _ => self.sink.write(record),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.sink.finish()
    }

    fn make_way(&mut self) {
        self.sink.make_way();
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

    pub fn make_way(&mut self) {
        self.sinks.iter_mut().for_each(|s| s.make_way());
    }

    /// Finishes every sink, even when one fails: a broken terminal must not cost the
    /// recording its footer. Returns the first error.
    pub fn finish(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        for sink in &mut self.sinks {
            if let Err(err) = sink.finish()
                && first.is_ok()
            {
                first = Err(err);
            }
        }
        first
    }
}

/// The terminal's sink; the recording (`-o`) is added once tracing can start. Nothing is
/// formatted for a stdout sent to /dev/null (`-o FILE > /dev/null`, a service's output):
/// nobody reads it, and at high rates formatting it costs as much as the recording. Output
/// to the terminal the status line is on takes the line off first.
pub fn terminal(output: &OutputArgs, quiet: bool, status: Option<&Rc<StatusLine>>) -> Sinks {
    let mut sinks = Sinks::default();
    if stdout_is_dev_null() {
        return sinks;
    }
    let stdout = BufWriter::with_capacity(64 << 10, MakeWay::new(io::stdout(), status));
    match output.format {
        // -c: the summary replaces the line per call, like strace -c.
        _ if output.summary => {
            sinks.push(Box::new(SummarySink::new(stdout, output.format, output.per_pid)));
        }
        Format::Json => sinks.push(quieted(Box::new(JsonSink::new(stdout)), quiet)),
        Format::Text => {
            let color = output.color.on_stdout();
            let initial_net = crate::facts::namespaces::initial().map(|ns| ns.net);
            sinks.push(quieted(Box::new(TextSink::new(stdout, color, initial_net)), quiet));
        }
    }
    sinks
}

/// The trace is written to a pipe or a file on stdout (`wsltrace --format json -- CMD | jq`):
/// the command's own output must not go there, or it mixes into the trace.
pub fn stdout_carries_the_trace() -> bool {
    use std::io::IsTerminal as _;
    !io::stdout().is_terminal() && !stdout_is_dev_null()
}

fn stdout_is_dev_null() -> bool {
    use nix::sys::stat::{SFlag, fstat, stat};
    let (Ok(out), Ok(null)) = (fstat(io::stdout()), stat("/dev/null")) else { return false };
    SFlag::from_bits_truncate(out.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
        && out.st_rdev == null.st_rdev
}

fn quieted(sink: Box<dyn Sink>, quiet: bool) -> Box<dyn Sink> {
    if quiet { Box::new(Quiet::new(sink)) } else { sink }
}
