//! The status line (`-o FILE` or `-q` with stderr on a terminal), seen through a real
//! pseudo-terminal: util-linux's `script` runs wsltrace and records every byte it writes.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{WSLTRACE, python, wsltrace};

/// Socket pairs made and closed for `secs` seconds, one every `pause` seconds.
fn workload(secs: f64, pause: f64) -> String {
    format!(
        "import socket, time\nend = time.time() + {secs}\nwhile time.time() < end:\n    a, b = socket.socketpair()\n    a.close(); b.close()\n    time.sleep({pause})\n"
    )
}

fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// `wsltrace ARGS -- python -c CODE` on a terminal (stdout and stderr): every byte written
/// to it, and how long it ran.
fn on_terminal(args: &[&str], code: &str, no_color: bool) -> (String, Duration) {
    on_terminal_logging(args, code, no_color, None)
}

/// [`on_terminal`], with `RUST_LOG` set to `log` when given.
fn on_terminal_logging(
    args: &[&str],
    code: &str,
    no_color: bool,
    log: Option<&str>,
) -> (String, Duration) {
    let line: Vec<String> = [WSLTRACE]
        .into_iter()
        .chain(args.iter().copied())
        .chain(["--", python(), "-c", code])
        .map(quote)
        .collect();
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &line.join(" "), "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .stdin(Stdio::null());
    match log {
        Some(log) => script.env("RUST_LOG", log),
        None => script.env_remove("RUST_LOG"),
    };
    if no_color {
        script.env("NO_COLOR", "1");
    } else {
        script.env_remove("NO_COLOR");
    }
    let start = Instant::now();
    let out = script.output().expect("script (util-linux)");
    let took = start.elapsed();
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}\n{raw:?}", out.status);
    (raw, took)
}

/// What the terminal received, cut at each carriage return (`script` shows each newline as
/// `\r\n`, and the status line starts each redraw with `\r`).
struct Screen<'a> {
    pieces: Vec<&'a str>,
}

impl<'a> Screen<'a> {
    fn new(raw: &'a str) -> Self {
        Screen { pieces: raw.split('\r').collect() }
    }

    /// A redraw: the status text, then erase-to-end-of-line (and nothing after it, unless
    /// something was written over the line).
    fn is_draw(piece: &str) -> bool {
        piece.starts_with("wsltrace: ") && piece.contains("\x1b[K")
    }

    /// Each redraw of the status line, without its styles.
    fn draws(&self) -> Vec<String> {
        self.pieces
            .iter()
            .filter(|p| Self::is_draw(p))
            .filter_map(|p| p.split_once("\x1b[K"))
            .map(|(text, _)| text.replace("\x1b[1m", "").replace("\x1b[0m", ""))
            .collect()
    }

    /// What follows the last redraw, from its carriage return on.
    fn after_last_draw(&self) -> String {
        let last = self.pieces.iter().rposition(|p| Self::is_draw(p)).expect("a status line");
        self.pieces[last + 1..].join("\r")
    }

    /// What was written after the status line without taking it off first: on the same
    /// piece after the redraw, or in the next piece without an erase at its start.
    fn written_over(&self) -> Vec<&'a str> {
        let mut over: Vec<&str> = self
            .pieces
            .iter()
            .filter(|p| Self::is_draw(p))
            .filter_map(|p| p.split_once("\x1b[K").map(|(_, rest)| rest))
            .filter(|rest| !rest.is_empty())
            .collect();
        over.extend(
            self.pieces
                .windows(2)
                .filter(|w| Self::is_draw(w[0]) && !Self::is_draw(w[1]))
                .filter(|w| !w[1].starts_with("\x1b[K"))
                .map(|w| w[1]),
        );
        over
    }
}

/// A path for a recording, in a directory of the test's own, removed when dropped.
struct Recording {
    dir: std::path::PathBuf,
    path: String,
}

impl Recording {
    fn new(test: &str) -> Recording {
        let dir = std::env::temp_dir().join(format!("wsltrace-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("trace.jsonl").to_str().expect("a UTF-8 path").to_owned();
        Recording { dir, path }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `wsltrace: 0:01, 1870 events, 1848/s, 0 lost, 0 findings, 903.1 KiB written`: the events.
fn events_in(draw: &str) -> u64 {
    let (_, rest) = draw.split_once(", ").expect("fields");
    rest.split_whitespace().next().and_then(|n| n.parse().ok()).expect("events")
}

#[test]
fn refreshes_at_most_4_times_a_second_then_is_erased() {
    let recording = Recording::new("status");
    let file = recording.path.as_str();
    let (raw, took) = on_terminal(&["-q", "-o", file], &workload(2.0, 0.002), true);
    let screen = Screen::new(&raw);
    let draws = screen.draws();
    assert_eq!(screen.written_over(), Vec::<&str>::new(), "{raw:?}");

    // The trace lasts 2 s or more: several refreshes, at most 4 a second of the trace (the
    // recording's footer says how long it lasted; start-up and detaching are not in it).
    let recorded = std::fs::read_to_string(file).expect("the recording");
    let footer: serde_json::Value =
        serde_json::from_str(recorded.lines().last().expect("a footer")).expect("JSON");
    let traced_s = footer["duration_ns"].as_u64().expect("a footer's duration") as f64 / 1e9;
    let limit = 4.0 * traced_s + 1.0;
    assert!(
        draws.len() >= 3 && draws.len() as f64 <= limit,
        "{} in {traced_s} s (the run took {took:?}): {draws:#?}",
        draws.len()
    );
    for draw in &draws {
        for field in [" events, ", "/s, ", " lost, ", " findings, ", " written"] {
            assert!(draw.contains(field), "{field} in {draw}");
        }
    }
    // The counts move on between refreshes.
    let events: Vec<u64> = draws.iter().map(|d| events_in(d)).collect();
    assert!(
        events.windows(2).all(|w| w[0] <= w[1]) && events[0] < events[events.len() - 1],
        "{events:?}"
    );
    // NO_COLOR: no styles at all.
    assert!(!raw.contains("\x1b[1m") && !raw.contains("\x1b[0m"), "{raw:?}");
    // Erased at the end (`\r`, erase to the end of the line), then the summary alone.
    let end = screen.after_last_draw();
    let summary = end.strip_prefix("\x1b[K").unwrap_or_else(|| panic!("not erased: {end:?}"));
    let summary = summary.trim_end_matches(['\r', '\n']);
    let (shown, lost) = common::parse_summary(summary).unwrap_or_else(|| panic!("{summary:?}"));
    assert_eq!(lost, 0);
    assert!(events[events.len() - 1] <= shown && !summary.contains('\n'), "{summary:?}");
    // The recording holds every event.
    assert_eq!(recorded.lines().filter(|l| l.contains(r#""type":"event""#)).count() as u64, shown);
}

#[test]
fn trace_lines_on_the_same_terminal_take_it_off_first() {
    let recording = Recording::new("status-lines");
    // -o FILE, text on the terminal too: a call every 100 ms among the refreshes.
    let (raw, _) = on_terminal(&["-o", &recording.path], &workload(1.5, 0.1), false);
    let screen = Screen::new(&raw);
    assert!(screen.draws().len() >= 2, "{raw:?}");
    assert!(raw.contains("socketpair("), "{raw:?}");
    assert_eq!(screen.written_over(), Vec::<&str>::new(), "{raw:?}");
    // Colours on a terminal without NO_COLOR.
    assert!(screen.pieces.iter().any(|p| Screen::is_draw(p) && p.contains("\x1b[1m")), "{raw:?}");
}

#[test]
fn log_messages_take_it_off_first() {
    let recording = Recording::new("status-log");
    // The look for blocked calls logs a debug line about 4 times a second, among the refreshes.
    let log = "tracer::source::live=debug";
    let (raw, _) =
        on_terminal_logging(&["-q", "-o", &recording.path], &workload(1.5, 0.01), true, Some(log));
    let screen = Screen::new(&raw);
    assert!(screen.draws().len() >= 2, "{raw:?}");
    let messages = screen.pieces.iter().filter(|p| p.contains("calls in flight, read in")).count();
    assert!(messages >= 2, "{raw:?}");
    assert_eq!(screen.written_over(), Vec::<&str>::new(), "{raw:?}");
}

#[test]
fn none_without_o_or_q() {
    let (raw, _) = on_terminal(&[], &workload(1.0, 0.1), true);
    assert!(raw.contains("socketpair("), "{raw:?}");
    assert!(!raw.contains("\x1b[K") && Screen::new(&raw).draws().is_empty(), "{raw:?}");
}

#[test]
fn never_on_a_pipe() {
    let recording = Recording::new("status-pipe");
    let out = common::run(
        wsltrace()
            .env("TERM", "xterm")
            .args(["-q", "-o", &recording.path, "--", python(), "-c"])
            .arg(workload(1.0, 0.01)),
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stderr.contains('\r') && !out.stderr.contains('\x1b'), "{:?}", out.stderr);
    assert!(!out.stderr.contains("/s, "), "{}", out.stderr);
    assert!(out.summary().0 > 0);
}
