//! The status line: with `-o FILE` or `-q`, one line at the bottom of the terminal (stderr)
//! saying how the trace is going: elapsed time, events, events/s, lost, findings, file size.
//! Refreshed at most [`REFRESH`] apart, taken off before trace output or a message needs the
//! terminal, and erased at the end, so the final summary line stands alone.
//!
//! Hand-written rather than a progress-bar crate: it is three escape sequences (`\r`, the
//! text, `ESC [K`), and the crates redraw at once after each interruption, which would break
//! the "at most 4 times a second" promise while trace lines scroll.

use std::{
    collections::VecDeque,
    fmt::Write as _,
    io::{self, IsTerminal as _, Write},
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anstyle::Style;

use super::{
    Sink,
    args::{ColorWhen, OutputArgs},
};
use crate::event::RecordRef;

/// At most 4 refreshes a second.
pub const REFRESH: Duration = Duration::from_millis(250);
/// events/s is measured over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(1);
const BOLD: Style = Style::new().bold();

/// The line on the terminal, shared by the status sink (which draws it) and the terminal's
/// writer (which takes it off before trace output reaches the same terminal).
pub struct StatusLine {
    color: bool,
}

/// Whether a status line is on the terminal now. Process-wide, because the log writer
/// (warnings from any thread) must take it off too: there is one stderr.
static ON_SCREEN: AtomicBool = AtomicBool::new(false);

/// Takes the status line off the terminal, if one is drawn, so that a message written to
/// stderr next starts at the beginning of a clean line; the next refresh redraws it.
pub fn take_off() {
    if ON_SCREEN.swap(false, Ordering::Relaxed) {
        let mut stderr = io::stderr().lock();
        let _ = stderr.write_all(b"\r\x1b[K").and_then(|()| stderr.flush());
    }
}

impl StatusLine {
    /// A status line when the trace asks for one (`-o FILE` or `-q`) and stderr is a
    /// terminal that understands it; never on a pipe or a file.
    pub fn for_trace(output: &OutputArgs, quiet: bool) -> Option<Rc<StatusLine>> {
        let stderr = io::stderr();
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        let wanted = output.output.is_some() || quiet;
        (wanted && stderr.is_terminal() && !dumb).then(|| {
            let color = match output.color {
                ColorWhen::Always => true,
                ColorWhen::Never => false,
                // NO_COLOR, CLICOLOR and the like, as for stdout.
                ColorWhen::Auto => {
                    anstream::AutoStream::choice(&stderr) != anstream::ColorChoice::Never
                }
            };
            Rc::new(StatusLine { color })
        })
    }

    /// Takes the line off the terminal (the cursor goes back to the start of the line).
    pub fn erase(&self) {
        take_off();
    }

    fn draw(&self, text: &str) {
        let mut stderr = io::stderr().lock();
        // A terminal gone away must not stop the trace: the line is only a convenience.
        let _ = write!(stderr, "\r{text}\x1b[K").and_then(|()| stderr.flush());
        ON_SCREEN.store(true, Ordering::Relaxed);
    }
}

/// The terminal's stdout: when stdout is the terminal the status line is on, the line is
/// taken off before each write (the buffered writer above writes once per batch).
pub struct MakeWay<W: Write> {
    out: W,
    status: Option<Rc<StatusLine>>,
}

impl<W: Write> MakeWay<W> {
    pub fn new(out: W, status: Option<&Rc<StatusLine>>) -> Self {
        let status = status.filter(|_| io::stdout().is_terminal()).cloned();
        MakeWay { out, status }
    }
}

impl<W: Write> Write for MakeWay<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(status) = &self.status {
            status.erase();
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Counts what the trace shows and redraws the status line.
pub struct StatusSink {
    line: Rc<StatusLine>,
    /// Bytes written to the recording (all its parts), when there is one.
    file_bytes: Option<Arc<AtomicU64>>,
    start: Instant,
    last_refresh: Instant,
    events: u64,
    lost: u64,
    findings: u64,
    /// (time, events) at the last refreshes, for events/s.
    samples: VecDeque<(Instant, u64)>,
}

impl StatusSink {
    pub fn new(line: Rc<StatusLine>, file_bytes: Option<Arc<AtomicU64>>) -> Self {
        let now = Instant::now();
        StatusSink {
            line,
            file_bytes,
            start: now,
            last_refresh: now,
            events: 0,
            lost: 0,
            findings: 0,
            samples: VecDeque::from([(now, 0)]),
        }
    }

    /// Events per second over the last second or so.
    fn rate(&mut self, now: Instant) -> u64 {
        while self.samples.len() > 1
            && self.samples.get(1).is_some_and(|(t, _)| now - *t >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let rate = match self.samples.front() {
            Some(&(t, events)) if now > t => {
                (self.events - events) as f64 / (now - t).as_secs_f64()
            }
            _ => 0.0,
        };
        self.samples.push_back((now, self.events));
        rate.round() as u64
    }

    fn text(&mut self, now: Instant, width: usize) -> String {
        let elapsed = elapsed(now - self.start);
        let rate = self.rate(now);
        let mut parts: Vec<(String, &str)> = vec![
            (elapsed, ""),
            (self.events.to_string(), " events"),
            (rate.to_string(), "/s"),
            (self.lost.to_string(), " lost"),
            (self.findings.to_string(), " findings"),
        ];
        if let Some(bytes) = &self.file_bytes {
            parts.push((file_size(bytes.load(Ordering::Relaxed)), " written"));
        }
        let plain: String = format!(
            "wsltrace: {}",
            parts.iter().map(|(n, unit)| format!("{n}{unit}")).collect::<Vec<_>>().join(", ")
        );
        // The line must never wrap: `\r` only goes back to the start of the last row.
        if plain.len() >= width || !self.line.color {
            return plain.chars().take(width.saturating_sub(1)).collect();
        }
        let mut text = String::from("wsltrace: ");
        for (i, (n, unit)) in parts.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(text, "{sep}{BOLD}{n}{BOLD:#}{unit}");
        }
        text
    }
}

impl Sink for StatusSink {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        match record {
            RecordRef::Event(ev) => {
                self.events += 1;
                self.findings += ev.anomalies.len() as u64;
            }
            RecordRef::Blocked(b) => self.findings += b.anomalies.len() as u64,
            RecordRef::SocketError(e) => self.findings += e.anomalies.len() as u64,
            RecordRef::Loss(loss) => self.lost += loss.lost,
            RecordRef::Exit(_) | RecordRef::Snapshot(_) => {}
        }
        Ok(())
    }

    /// After each batch (every 10 ms or so): a refresh once [`REFRESH`] has passed.
    fn flush(&mut self) -> io::Result<()> {
        let now = Instant::now();
        if now - self.last_refresh < REFRESH {
            return Ok(());
        }
        self.last_refresh = now;
        let width = terminal_size::terminal_size_of(io::stderr())
            .map_or(80, |(terminal_size::Width(w), _)| usize::from(w));
        let text = self.text(now, width);
        self.line.draw(&text);
        Ok(())
    }

    fn make_way(&mut self) {
        self.line.erase();
    }

    /// Erased: the summary lines that follow stand alone.
    fn finish(&mut self) -> io::Result<()> {
        self.line.erase();
        Ok(())
    }
}

/// `0:07`, `12:30`, `1:02:03`.
fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

/// `812 B`, `12.4 KiB`, `3.0 MiB`, `1.2 GiB`.
fn file_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() {
        assert_eq!(file_size(812), "812 B");
        assert_eq!(file_size(12_700), "12.4 KiB");
        assert_eq!(file_size(3 << 20), "3.0 MiB");
        assert_eq!(elapsed(Duration::from_secs(7)), "0:07");
        assert_eq!(elapsed(Duration::from_secs(750)), "12:30");
        assert_eq!(elapsed(Duration::from_secs(3723)), "1:02:03");
    }

    #[test]
    fn text_fits_the_terminal_and_measures_the_rate() {
        let line = Rc::new(StatusLine { color: false });
        let bytes = Arc::new(AtomicU64::new(5 << 20));
        let mut sink = StatusSink::new(line, Some(bytes));
        let start = sink.start;
        sink.events = 2000;
        sink.lost = 3;
        let text = sink.text(start + Duration::from_secs(2), 200);
        assert_eq!(
            text,
            "wsltrace: 0:02, 2000 events, 1000/s, 3 lost, 0 findings, 5.0 MiB written"
        );
        assert_eq!(sink.text(start + Duration::from_secs(3), 20).len(), 19);
    }
}
