//! One recording file read back, record by record, plain or zstd (recognised by content,
//! whatever the name).
//!
//! A damaged file is read as far as it safely can be: a line that cannot be used is reported
//! with its number and skipped; a file cut short (wsltrace killed) ends at its last whole
//! line; a file from a newer major schema is not read at all.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read as _, Seek as _},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{
    recording::{Record, SCHEMA, SchemaVersion},
    source::Problem,
};

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const KNOWN_TYPES: &[&str] =
    &["header", "snapshot", "event", "loss", "exit", "socket_error", "blocked", "footer"];

/// The records of one file, in order.
pub struct RecordingReader {
    path: PathBuf,
    input: Box<dyn BufRead>,
    compressed: bool,
    line_no: u64,
    buf: Vec<u8>,
    /// The schema of the last header read.
    schema: Option<SchemaVersion>,
    saw_header: bool,
    /// Since the last header: records counted, to check the footer against.
    counts: Counts,
    /// The last record read was a footer (a file must end with one).
    ended: bool,
    done: bool,
    /// Records read, and lines that could not be used (listed up to [`MAX_LISTED`]).
    records: u64,
    damaged: u64,
}

/// A file whose first lines are all unusable is not a recording: it is left after this many,
/// with one line saying so, instead of an error per line.
const NOT_A_RECORDING_AFTER: u64 = 3;
/// Damaged lines listed per file; the rest are counted in one line at the end.
const MAX_LISTED: u64 = 20;

#[derive(Default)]
struct Counts {
    events: u64,
    lost: u64,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "type")]
    kind: Option<String>,
    schema_version: Option<String>,
}

impl RecordingReader {
    pub fn open(path: &Path) -> Result<RecordingReader, Problem> {
        let problem = |err: io::Error| Problem {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read it: {err}"),
            error: true,
        };
        let mut file = File::open(path).map_err(problem)?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Problem {
                file: path.to_path_buf(),
                line: None,
                message: "is a directory: give the recordings in it (e.g. DIR/*.jsonl)".into(),
                error: true,
            });
        }
        let mut magic = [0_u8; 4];
        let compressed = file.read_exact(&mut magic).is_ok() && magic == ZSTD_MAGIC;
        file.rewind().map_err(problem)?;
        let input: Box<dyn BufRead> = if compressed {
            let decoder = zstd::Decoder::new(file).map_err(problem)?;
            Box::new(BufReader::with_capacity(256 << 10, decoder))
        } else {
            Box::new(BufReader::with_capacity(256 << 10, file))
        };
        Ok(RecordingReader {
            path: path.to_path_buf(),
            input,
            compressed,
            line_no: 0,
            buf: Vec::with_capacity(1024),
            schema: None,
            saw_header: false,
            counts: Counts::default(),
            ended: false,
            done: false,
            records: 0,
            damaged: 0,
        })
    }

    fn problem(&self, line: Option<u64>, error: bool, message: String) -> Problem {
        Problem { file: self.path.clone(), line, message, error }
    }

    /// The next record; what cannot be used is added to `problems` and skipped.
    pub fn next(&mut self, problems: &mut Vec<Problem>) -> Option<Record> {
        while !self.done {
            self.buf.clear();
            let read = self.input.read_until(b'\n', &mut self.buf);
            let cut_short = match read {
                Ok(0) => {
                    self.done = true;
                    self.at_end(problems);
                    return None;
                }
                Ok(_) => !self.buf.ends_with(b"\n"),
                Err(err) => {
                    // Complete lines before the damage were returned already; the partial
                    // one in `buf` is not trusted.
                    self.done = true;
                    let message = match (self.compressed, err.kind()) {
                        (true, io::ErrorKind::UnexpectedEof) => format!(
                            "the zstd data end in the middle of a frame: the recording was cut short (wsltrace killed?); the {} lines before were read",
                            self.line_no
                        ),
                        (true, _) => format!(
                            "the zstd data are damaged ({err}); the {} lines before were read, the rest of the file cannot be",
                            self.line_no
                        ),
                        (false, _) => format!("cannot read further: {err}"),
                    };
                    problems.push(self.problem(Some(self.line_no + 1), true, message));
                    return None;
                }
            };
            self.line_no += 1;
            let line = self.line_no;
            if cut_short {
                // A whole record that only lacks its newline is kept; the next read meets the
                // end of the file and checks for the footer.
                if let Ok(record) = serde_json::from_slice::<Record>(&self.buf) {
                    return self.accept(record, problems);
                }
                self.done = true;
                problems.push(self.problem(
                    Some(line),
                    true,
                    format!(
                        "the last line is cut short: the recording ended abruptly (wsltrace killed, or the disk full?); the {} lines before were read",
                        line - 1
                    ),
                ));
                return None;
            }
            let text = trim_newline(&self.buf);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Record>(text) {
                Ok(record) => {
                    if let Some(record) = self.accept(record, problems) {
                        return Some(record);
                    }
                }
                Err(err) => {
                    let (problem, stop) = self.explain(text, line, &err);
                    self.done |= stop;
                    self.damaged += 1;
                    if self.damaged <= MAX_LISTED {
                        problems.push(problem);
                    }
                    if self.records == 0 && self.damaged == NOT_A_RECORDING_AFTER && !stop {
                        self.done = true;
                        problems.push(self.problem(
                            None,
                            true,
                            format!("its first {NOT_A_RECORDING_AFTER} lines are not wsltrace records: not a recording (give files written with wsltrace -o, or --format json output); file skipped"),
                        ));
                    }
                }
            }
        }
        None
    }

    /// Checks a well-formed record in its context (schema, footer counts).
    fn accept(&mut self, record: Record, problems: &mut Vec<Problem>) -> Option<Record> {
        self.records += 1;
        let line = Some(self.line_no);
        if !self.saw_header && !matches!(record, Record::Header(_)) {
            self.saw_header = true;
            problems.push(self.problem(
                line,
                false,
                "no header: not a recording written with -o (JSON Lines from --format json?); read without the recorded environment".into(),
            ));
        }
        let previous_ended = std::mem::replace(&mut self.ended, false);
        match &record {
            Record::Header(header) => {
                // --append after a crash: the session before this one was cut short.
                if self.saw_header && !previous_ended && self.schema.is_some() {
                    problems.push(self.problem(
                        Some(self.line_no - 1),
                        true,
                        "no footer before the next header: the recording before it was cut short (wsltrace killed?); everything in it was read".into(),
                    ));
                }
                self.saw_header = true;
                self.counts = Counts::default();
                match header.schema() {
                    Some(v) if v.major > SCHEMA.major => {
                        self.done = true;
                        problems.push(self.newer_schema(line, &header.schema_version));
                        return None;
                    }
                    Some(v) => self.schema = Some(v),
                    None => problems.push(self.problem(
                        line,
                        true,
                        format!(
                            "the header's schema_version {:?} is not MAJOR.MINOR: read as {SCHEMA}",
                            header.schema_version
                        ),
                    )),
                }
            }
            Record::Event(_) => self.counts.events += 1,
            Record::Loss(loss) => self.counts.lost += loss.lost,
            Record::Footer(footer) => {
                self.ended = true;
                let Counts { events, lost } = self.counts;
                if (footer.events, footer.lost) != (events, lost) {
                    problems.push(self.problem(
                        line,
                        true,
                        format!(
                            "the footer counts {} events and {} lost, the file holds {events} events and {lost} lost: records are missing or were added",
                            footer.events, footer.lost
                        ),
                    ));
                }
            }
            Record::Snapshot(_) | Record::Exit(_) | Record::SocketError(_) | Record::Blocked(_) => {
            }
        }
        Some(record)
    }

    fn newer_schema(&self, line: Option<u64>, version: &str) -> Problem {
        self.problem(
            line,
            true,
            format!(
                "recorded with schema {version}, newer than this wsltrace reads ({}.x): upgrade wsltrace to analyse it; file skipped",
                SCHEMA.major
            ),
        )
    }

    /// Why a line is not a usable record, and whether the rest of the file must be left.
    fn explain(&self, text: &[u8], line: u64, err: &serde_json::Error) -> (Problem, bool) {
        let at = Some(line);
        // What serde says here names wsltrace's internal types, not the user's problem.
        let Ok(probe) = serde_json::from_slice::<Probe>(text) else {
            return (self.problem(at, true, "not a JSON object: line skipped".into()), false);
        };
        let Some(kind) = probe.kind else {
            return (self.problem(at, true, "no \"type\": line skipped".into()), false);
        };
        if kind == "header"
            && let Some(v) = probe.schema_version.as_deref().and_then(SchemaVersion::parse)
            && v.major > SCHEMA.major
        {
            return (self.newer_schema(at, &v.to_string()), true);
        }
        if KNOWN_TYPES.contains(&kind.as_str()) {
            let message = format!("this {kind} record cannot be read ({err}): line skipped");
            return (self.problem(at, true, message), false);
        }
        // Newer minor versions may add record types, which older readers skip.
        let newer_minor = self.schema.is_some_and(|v| v > SCHEMA);
        let message =
            format!("unknown record type {kind:?} (from a newer wsltrace?): line skipped");
        (self.problem(at, !newer_minor, message), false)
    }

    fn at_end(&mut self, problems: &mut Vec<Problem>) {
        if self.damaged > MAX_LISTED {
            let more = self.damaged - MAX_LISTED;
            problems.push(self.problem(
                None,
                true,
                format!("{more} more damaged lines, not listed ({} in all)", self.damaged),
            ));
        }
        if self.line_no == 0 {
            problems.push(self.problem(None, true, "empty: not a recording".into()));
        } else if self.saw_header && !self.ended && self.schema.is_some() {
            problems.push(self.problem(
                Some(self.line_no),
                true,
                "no footer after the last line: the recording was cut short (wsltrace killed?); everything before was read".into(),
            ));
        }
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests;
