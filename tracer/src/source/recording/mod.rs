//! Where `wsltrace analyze` gets its records: recording files written with `-o`, one or
//! several, rotated parts in order (`plan`), each read by a [`RecordingReader`].

mod reader;

use std::{
    collections::{HashSet, VecDeque},
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
pub use reader::RecordingReader;

use super::{Problem, Record as SourceRecord, Source};
use crate::recording::{Header, Record, naming};

/// How often (in records) buffered output is flushed: `analyze -o` honours the same flush
/// interval as a live recording.
const FLUSH_EVERY_RECORDS: u64 = 4096;

/// Where a file belongs in its recording: session start, session id, part number.
type SetKey = (DateTime<Utc>, String, u32);

/// The files to read, in order: a name given to `-o --rotate` stands for its parts; files of
/// one recording are ordered by session start and part number, whatever order they were
/// given in; files without a header keep their place after those.
pub fn plan(given: &[PathBuf], problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for path in given {
        let expanded = match path.symlink_metadata() {
            Ok(_) => vec![path.clone()],
            Err(err) => match naming::find_parts(path) {
                Ok(parts) if !parts.is_empty() => parts.into_iter().map(|(_, p)| p).collect(),
                _ => {
                    problems.push(Problem {
                        file: path.clone(),
                        line: None,
                        message: format!("cannot read it: {err}"),
                        error: true,
                    });
                    continue;
                }
            },
        };
        for file in expanded {
            // The same file named twice (a glob and a name) is read once.
            let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if seen.insert(key) {
                files.push(file);
            }
        }
    }
    let mut keyed: Vec<(Option<SetKey>, PathBuf)> = files
        .into_iter()
        .map(|file| {
            let key = first_header(&file).map(|h| (h.start, h.session, h.part));
            (key, file)
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    keyed.into_iter().map(|(_, file)| file).collect()
}

/// The header a file starts with, if it does.
pub fn first_header(path: &Path) -> Option<Header> {
    let mut reader = RecordingReader::open(path).ok()?;
    match reader.next(&mut Vec::new()) {
        Some(Record::Header(h)) => Some(*h),
        _ => None,
    }
}

/// The records of the files to read, one file after the other, with the problems found in
/// them in order.
pub struct Recordings {
    files: VecDeque<PathBuf>,
    reader: Option<RecordingReader>,
    /// Found while reading the record in `ready`, reported before it.
    problems: VecDeque<Problem>,
    ready: Option<SourceRecord>,
    read: u64,
    flush_due: bool,
    closed: bool,
}

impl Recordings {
    /// `files` as [`plan`] orders them.
    pub fn new(files: Vec<PathBuf>) -> Recordings {
        Recordings {
            files: files.into(),
            reader: None,
            problems: VecDeque::new(),
            ready: None,
            read: 0,
            flush_due: false,
            closed: false,
        }
    }

    /// One step: opens the next file, or reads a record (and the problems met on the way), or
    /// leaves a file that ended. False at the end of the input.
    fn step(&mut self) -> bool {
        let mut found = Vec::new();
        match &mut self.reader {
            None => match self.files.pop_front() {
                None => return false,
                Some(file) => match RecordingReader::open(&file) {
                    Ok(reader) => self.reader = Some(reader),
                    Err(problem) => found.push(problem),
                },
            },
            Some(reader) => match reader.next(&mut found) {
                None => self.reader = None,
                Some(record) => {
                    self.read += 1;
                    self.flush_due = self.read.is_multiple_of(FLUSH_EVERY_RECORDS);
                    self.ready = match record {
                        Record::Header(header) => Some(SourceRecord::Header(header)),
                        Record::Snapshot(snap) => Some(SourceRecord::Snapshot(snap)),
                        Record::Event(ev) => Some(SourceRecord::Event(ev)),
                        Record::Loss(loss) => Some(SourceRecord::Loss(loss)),
                        Record::Exit(exit) => Some(SourceRecord::Exit(exit)),
                        Record::SocketError(error) => Some(SourceRecord::SocketError(error)),
                        Record::Blocked(b) => Some(SourceRecord::Blocked(b)),
                        // Checked by the reader; nothing for the pipeline.
                        Record::Footer(_) => None,
                    };
                }
            },
        }
        self.problems.extend(found);
        true
    }
}

impl Source for Recordings {
    /// A record's problems come before it, and a due flush right after it.
    async fn next(&mut self) -> anyhow::Result<Option<SourceRecord>> {
        loop {
            if self.closed {
                return Ok(None);
            }
            if let Some(problem) = self.problems.pop_front() {
                return Ok(Some(SourceRecord::Problem(problem)));
            }
            if let Some(record) = self.ready.take() {
                return Ok(Some(record));
            }
            if std::mem::take(&mut self.flush_due) {
                return Ok(Some(SourceRecord::Flush));
            }
            if !self.step() {
                return Ok(None);
            }
        }
    }

    fn output_closed(&mut self) {
        self.closed = true;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const EVENT: &str = r#"{"type":"event","ts":"1970-01-01T00:16:40.5Z","ts_ns":5,"pid":7,"tid":7,"comm":"nginx","uid":0,"gid":0,"cgroup_id":1,"syscall":"close","args":{"fd":3},"ret":0,"errno":null,"duration_ns":100}"#;

    /// What a source hands out, one letter each: Problem (e error, n note), Event, Flush.
    async fn letters(source: &mut impl Source) -> String {
        let mut out = String::new();
        while let Some(record) = source.next().await.unwrap() {
            out.push(match record {
                SourceRecord::Problem(p) if p.error => 'e',
                SourceRecord::Problem(_) => 'n',
                SourceRecord::Event(_) => 'E',
                SourceRecord::Flush => 'F',
                _ => '?',
            });
        }
        out
    }

    #[tokio::test]
    async fn problems_come_before_their_record_and_flushes_every_4096_records() {
        let dir = std::env::temp_dir().join(format!("wsltrace-recordings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let mut file = std::fs::File::create(&path).unwrap();
        writeln!(file, "not json").unwrap();
        for _ in 0..FLUSH_EVERY_RECORDS + 1 {
            writeln!(file, "{EVENT}").unwrap();
        }
        drop(file);
        let files = vec![dir.join("missing.jsonl"), path];
        let read = letters(&mut Recordings::new(files.clone())).await;
        std::fs::remove_dir_all(&dir).unwrap();
        // The missing file; line 1 (not JSON) and line 2 (no header: a note) before the first
        // event; a flush after the 4096th record.
        let events = "E".repeat(FLUSH_EVERY_RECORDS as usize);
        assert_eq!(read, format!("een{events}FE"));

        // Told the output is gone, it ends at once.
        let mut closed = Recordings::new(files);
        closed.output_closed();
        assert_eq!(letters(&mut closed).await, "");
    }
}
