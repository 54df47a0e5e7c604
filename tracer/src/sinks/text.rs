//! strace-like text: one line per call.
//!
//! `11:02:03.104512 server[4242/4251] connect(7, {AF_INET, 127.0.0.1:8080}, 16) = -1 ECONNREFUSED (Connection refused) <31us>`

use std::{
    fmt::{self, Write as _},
    io::{self, Write},
};

use anstyle::{AnsiColor, Style};
use chrono::{FixedOffset, Timelike};

use super::{
    Sink,
    render::{
        Addr, ArgList, Duration, Endpoint, SockTag, push_int, push_uint, render_socket, returns_fd,
    },
};
use crate::event::{
    Args, Blocked, Comm, Event, Finding, Loss, ProcessExit, RecordRef, RefusedBy, Severity,
    Snapshot, SocketError,
};

const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();
const ERROR: Style = AnsiColor::Red.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default().bold();
const INFO: Style = AnsiColor::Cyan.on_default().bold();

pub struct TextSink<W: Write> {
    out: W,
    color: bool,
    /// The initial network namespace: events from another one are marked `[netns N]`.
    initial_net: Option<u32>,
    /// Local time offset, fixed at start: looking up the zone per line is too slow.
    tz: FixedOffset,
    line: String,
    /// The second of the last line's time, and its `HH:MM:SS.` in local time.
    second: (Option<i64>, String),
    /// The last line's pid, tid and name, and its `name[pid/tid]` (a process's calls come in
    /// runs: formatting it was an eighth of the sink's time).
    caller_text: (Option<(u32, u32, Comm)>, String),
    /// How often each finding was seen on each site: the same finding on the same site is
    /// printed once, then counted (a reminder at 10, 100, 1000... occurrences).
    seen: std::collections::HashMap<(String, u32, String), u64>,
}

impl<W: Write> TextSink<W> {
    pub fn new(out: W, color: bool, initial_net: Option<u32>) -> Self {
        let tz = *chrono::Local::now().offset();
        TextSink {
            out,
            color,
            initial_net,
            tz,
            line: String::with_capacity(256),
            second: (None, String::new()),
            caller_text: (None, String::new()),
            seen: std::collections::HashMap::new(),
        }
    }

    fn styled(&mut self, style: Style, text: &str) {
        if self.color {
            let _ = write!(self.line, "{style}{text}{style:#}");
        } else {
            self.line.push_str(text);
        }
    }

    /// Like `styled`, formatting straight into the line: the per-line pieces (time, process,
    /// result, latency) went through a `String` each, a fifth of the sink's time at high rates.
    fn styled_fmt(&mut self, style: Style, args: fmt::Arguments<'_>) {
        if self.color {
            let _ = write!(self.line, "{style}{args}{style:#}");
        } else {
            let _ = self.line.write_fmt(args);
        }
    }

    /// Starts text in `style` (nothing without colour); [`Self::end`] ends it.
    fn begin(&mut self, style: Style) {
        if self.color {
            let _ = write!(self.line, "{style}");
        }
    }

    fn end(&mut self, style: Style) {
        if self.color {
            let _ = write!(self.line, "{style:#}");
        }
    }

    /// `11:02:03.104512 `: the local time of day, formatted once a second.
    fn time(&mut self, ts: chrono::DateTime<chrono::Utc>) {
        let second = ts.timestamp();
        if self.second.0 != Some(second) {
            let t = ts.with_timezone(&self.tz);
            self.second.1.clear();
            let _ = write!(self.second.1, "{:02}:{:02}:{:02}.", t.hour(), t.minute(), t.second());
            self.second.0 = Some(second);
        }
        self.begin(DIM);
        self.line.push_str(&self.second.1);
        // Microseconds, six digits (a leap second's nanoseconds run past 10^9).
        let micros = ts.timestamp_subsec_nanos() % 1_000_000_000 / 1_000;
        for unit in [100_000, 10_000, 1_000, 100, 10, 1] {
            self.line.push(char::from(b'0' + (micros / unit % 10) as u8));
        }
        self.end(DIM);
        self.line.push(' ');
    }

    /// `server[4242/4251]`
    fn caller(&mut self, comm: &str, pid: u32, tid: u32) {
        let (kept, text) = &mut self.caller_text;
        if !kept.as_ref().is_some_and(|(p, t, c)| (*p, *t) == (pid, tid) && c == comm) {
            text.clear();
            text.push_str(comm);
            text.push('[');
            push_uint(text, u64::from(pid));
            text.push('/');
            push_uint(text, u64::from(tid));
            text.push(']');
            *kept = Some((pid, tid, comm.into()));
        }
        self.begin(DIM);
        self.line.push_str(&self.caller_text.1);
        self.end(DIM);
    }

    /// `connect(5<TCP:?->127.0.0.1:9999>, {AF_INET, 127.0.0.1:9999}, 16) ... blocked for 2.0s`
    fn blocked(&mut self, b: &Blocked) {
        let ev = b.as_event();
        self.call(&ev);
        self.line.push_str(") ... ");
        let secs = b.blocked_ns as f64 / 1e9;
        let at_least = if b.in_flight_at_attach { "at least " } else { "" };
        self.styled_fmt(WARN, format_args!("blocked for {at_least}{secs:.1}s"));
        if b.nonblocking {
            self.line.push_str(" (non-blocking: still connecting)");
        }
        if b.in_flight_at_attach {
            self.line.push_str(" (in progress when tracing started)");
        }
        for finding in &b.anomalies {
            self.finding(&ev, finding);
        }
    }

    /// Time, caller and the call up to its closing parenthesis.
    fn call(&mut self, ev: &Event) {
        self.time(ev.ts);
        self.caller(&ev.comm, ev.pid, ev.tid);
        self.line.push(' ');
        if let (Some(ns), Some(initial)) = (ev.ns, self.initial_net)
            && ns.net != initial
        {
            self.styled(WARN, &format!("[netns {}]", ns.net));
            self.line.push(' ');
        }
        self.styled(BOLD, ev.syscall.name());
        self.line.push('(');
        if ev.in_flight_at_attach {
            self.line.push_str("<in flight at attach>");
        } else if ev.refused_by.is_some() && ev.args == Args::default() {
            self.line.push_str("<arguments unknown>");
        } else {
            ArgList(ev).push_to(&mut self.line);
        }
    }

    fn event(&mut self, ev: &Event) {
        self.call(ev);
        self.line.push_str(") = ");
        match ev.errno {
            Some(errno) => {
                self.styled_fmt(ERROR, format_args!("-1 {} ({})", errno.name(), errno.message()));
            }
            None => {
                push_int(&mut self.line, ev.ret);
                // socket() and accept() return the fd the annotation describes.
                if let (Some(sock), true) = (&ev.sock, returns_fd(ev.syscall)) {
                    self.line.push('<');
                    SockTag(sock).push_to(&mut self.line);
                    self.line.push('>');
                }
                // The call succeeded, and reported that a non-blocking connect failed.
                if let (Some(connect), Some(errno)) = (&ev.connect, ev.async_error) {
                    self.line.push(' ');
                    self.styled_fmt(
                        ERROR,
                        format_args!(
                            "(connect to {} failed: {})",
                            Endpoint(&connect.addr),
                            errno.name()
                        ),
                    );
                }
            }
        }
        if let Some(ns) = ev.duration_ns {
            self.line.push(' ');
            self.begin(DIM);
            self.line.push('<');
            Duration(ns).push_to(&mut self.line);
            self.line.push('>');
            self.end(DIM);
        }
        match ev.refused_by {
            Some(RefusedBy::Seccomp) => self.line.push_str(" <refused by seccomp>"),
            Some(RefusedBy::Unknown) => self.line.push_str(" <refused before entry>"),
            None => {}
        }
        for finding in &ev.anomalies {
            self.finding(ev, finding);
        }
    }

    /// An indented block under the event: rule, meaning, this occurrence, fix.
    fn finding(&mut self, ev: &Event, finding: &Finding) {
        // A connect's outcome reported later is on the site of that connect.
        let site = match &ev.connect {
            Some(connect) => format!("connect({})", Addr(&connect.addr)),
            None => match &ev.args.addr {
                Some(addr) => format!("{}({})", ev.syscall.name(), Addr(addr)),
                None => format!("{}()", ev.syscall.name()),
            },
        };
        let count = self.seen.entry((finding.id.clone(), ev.pid, site)).or_insert(0);
        *count += 1;
        let count = *count;
        let style = match finding.severity {
            Severity::Error => ERROR,
            Severity::Warning => WARN,
            Severity::Info => INFO,
        };
        if count > 1 {
            // A reminder on the first repeat, then at every power of ten.
            if count == 2 || is_power_of_ten(count) {
                self.line.push_str("\n    ");
                self.styled(DIM, &format!("{} again: {count} times on this call site", finding.id));
            }
            return;
        }
        self.line.push_str("\n    ");
        self.styled(style, &format!("{} ({})", finding.id, finding.severity));
        let _ = write!(self.line, " {}", finding.title);
        if let Some(detail) = &finding.detail {
            let _ = write!(self.line, "\n      {detail}");
        }
        let _ = write!(self.line, "\n      fix: {}", finding.fix);
    }

    fn loss(&mut self, loss: &Loss) {
        let counts = |by: &std::collections::BTreeMap<String, u64>| {
            by.iter().map(|(name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ")
        };
        let mut lines = Vec::new();
        if loss.lost > 0 {
            let cause = match loss.without_slot {
                0 => "ring buffer full",
                _ => {
                    "threads without a slot for their calls, see the warning at the end, or ring buffer full"
                }
            };
            lines.push(format!(
                "--- lost {} events ({}; {cause}; {} lost in all): enlarge it with --ring-size or narrow the trace with -s, -e or --failed ---",
                loss.lost,
                counts(&loss.detail.lost_by_syscall),
                loss.total_lost
            ));
        }
        if loss.detail.lost_context > 0 {
            lines.push(format!(
                "--- lost {} context records ({}): {} ---",
                loss.detail.lost_context,
                counts(&loss.detail.lost_context_by_syscall),
                Loss::CONTEXT_COST
            ));
        }
        if !loss.detail.lost_records.is_empty() {
            lines.push(format!("--- lost records: {} ---", counts(&loss.detail.lost_records)));
        }
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                self.line.push('\n');
            }
            self.time(loss.ts);
            self.styled(WARN, line);
        }
    }

    fn exit(&mut self, exit: &ProcessExit) {
        self.time(exit.ts);
        let how = match (exit.code, &exit.signal) {
            (Some(code), _) => format!("exited with {code}"),
            (None, Some(signal)) if exit.core_dumped => format!("killed by {signal} (core dumped)"),
            (None, Some(signal)) => format!("killed by {signal}"),
            (None, None) => "exited".to_owned(),
        };
        let text = format!("{}[{}] +++ {how} +++", exit.comm, exit.pid);
        self.styled(DIM, &text);
    }

    /// `5<TCP:?->127.0.0.1:9> +++ socket error ECONNREFUSED (Connection refused) +++`, then
    /// the findings of the failed connect.
    fn socket_error(&mut self, error: &SocketError) {
        self.time(error.ts);
        self.caller(&error.comm, error.pid, error.tid);
        let _ = write!(self.line, " {}", error.fd);
        if let Some(sock) = &error.sock {
            let _ = write!(self.line, "<{}>", SockTag(sock));
        }
        self.line.push(' ');
        let (name, message) = (error.error.name(), error.error.message());
        self.styled_fmt(ERROR, format_args!("+++ socket error {name} ({message}) +++"));
        if !error.anomalies.is_empty() {
            let connect = error.as_failed_connect();
            for finding in &error.anomalies {
                self.finding(&connect, finding);
            }
        }
    }

    /// A header line, then one indented line per socket, as lsof lists them.
    fn snapshot(&mut self, snap: &Snapshot) {
        self.time(snap.ts);
        let n = snap.sockets.len();
        let text = format!(
            "{}[{}] +++ holds {n} socket{} +++",
            snap.comm,
            snap.pid,
            if n == 1 { "" } else { "s" }
        );
        self.styled(DIM, &text);
        for sock in &snap.sockets {
            self.line.push_str("\n    ");
            self.line.push_str(&render_socket(sock));
        }
    }
}

impl<W: Write> Sink for TextSink<W> {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        self.line.clear();
        match record {
            RecordRef::Event(ev) => self.event(ev),
            RecordRef::Loss(loss) => self.loss(loss),
            RecordRef::Exit(exit) => self.exit(exit),
            RecordRef::Snapshot(snap) => self.snapshot(snap),
            RecordRef::SocketError(error) => self.socket_error(error),
            RecordRef::Blocked(b) => self.blocked(b),
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

#[cfg(test)]
mod tests;
