//! Where records come from: the kernel programs (`live`) or recordings (`recording`). Both
//! hand the same [`Record`]s to the one loop that runs them through the pipeline
//! (`pipeline::run`).

pub mod btf;
mod in_flight;
pub mod kernel;
pub mod launch;
mod links;
pub mod live;
mod preload;
pub mod privileges;
mod raw;
pub mod recording;
pub mod records;
mod slots;
pub mod target;
mod traced_pids;
pub mod tracefs;

use std::{fmt, path::PathBuf};

use crate::{
    event::{Blocked, Event, Loss, ProcessExit, Snapshot, SocketError},
    recording::Header,
};

/// What a source hands the pipeline, in order.
pub enum Record {
    /// A recording's header: what the records after it were recorded on, and when.
    Header(Box<Header>),
    /// The sockets a process held as tracing started.
    Snapshot(Snapshot),
    /// Boxed, like the other large records: an event is ~900 bytes, moved from the source to
    /// the pipeline through several frames; a pointer moves for the price of one allocation.
    Event(Box<Event>),
    /// A socket error no call asked for.
    SocketError(Box<SocketError>),
    /// A call still in progress after `--blocked-after` (live), or as recorded.
    Blocked(Box<Blocked>),
    /// Live only, at each housekeeping round: the kernel's monotonic time now, for what the
    /// pipeline watches over time (non-blocking connects still connecting).
    Tick(u64),
    /// Records the kernel had no room for.
    Loss(Loss),
    Exit(ProcessExit),
    /// A traced process forked: the child starts with the parent's fds.
    Fork {
        parent: u32,
        child: u32,
    },
    /// The end of a batch: buffered output is flushed (live: after each drain of the ring;
    /// recordings: every few thousand records).
    Flush,
    /// Input that could not be used, reported in order with the output.
    Problem(Problem),
}

/// A source of records. `next` is async because the live source waits on the kernel, signals
/// and the traced command; a recording never waits.
#[expect(
    async_fn_in_trait,
    reason = "implemented and awaited only inside wsltrace, on a current-thread runtime: no Send bound is needed"
)]
pub trait Source {
    /// The next record; `None` once the source has ended.
    async fn next(&mut self) -> anyhow::Result<Option<Record>>;

    /// The output went away (EPIPE): end as soon as possible.
    fn output_closed(&mut self);

    /// An event `next` returned, done with: a source may make the next one in its box.
    fn recycle(&mut self, _ev: Box<Event>) {}
}

/// Something wrong with an input, reported as `FILE:LINE: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub message: String,
    /// Errors make `analyze` exit non-zero; notes are expected situations worth knowing.
    pub error: bool,
}

impl Problem {
    /// Prints it on stderr; 1 for an error, 0 for a note.
    pub fn report(&self) -> usize {
        eprintln!("wsltrace: {self}");
        usize::from(self.error)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.error { "error" } else { "note" };
        match self.line {
            Some(line) => write!(f, "{kind}: {}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{kind}: {}: {}", self.file.display(), self.message),
        }
    }
}
