//! `-o FILE`: the recording. JSON Lines framed by a header and a footer (see
//! `crate::recording`), optionally zstd-compressed, optionally rotated into numbered parts.
//!
//! Every line is serialized whole before it is written, so the file only ever ends mid-line
//! if wsltrace is killed during a write. Output is buffered and flushed at most
//! [`FLUSH_EVERY`] after it was written (the session calls `flush` after each batch, every
//! 10 ms or so), so a SIGKILL loses at most that much.

use std::{
    io::{self, Read as _, Seek as _, Write},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use tracer_common::Syscall;

use self::output::{Counted, Plain};
use super::{
    Sink,
    args::OutputArgs,
    file::{self, Mode},
    line::LineWriter,
};
use crate::{
    event::RecordRef,
    recording::{
        Footer, Frame, Header,
        naming::{self, Compression},
    },
};

mod drop_behind;
mod output;

/// Buffered output is written out when it is older than this.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Records between two looks at the clock in `write`: cheap, yet often enough under a flood.
const CLOCK_EVERY: u32 = 256;
/// zstd's default level: about 10x smaller than JSON Lines at a small CPU cost per event.
const ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Debug)]
pub struct Options {
    pub path: PathBuf,
    /// Start a new part when the current one reaches this many bytes (on disk).
    pub rotate: Option<u64>,
    pub append: bool,
}

pub struct RecordingSink {
    opts: Options,
    compression: Compression,
    header: Header,
    /// Number in the name of the current part (rotated recordings only).
    file_number: u32,
    out: Option<Output>,
    /// The current part's counts, written as its footer.
    footer: Footer,
    /// The current part's events per syscall, by syscall id: put in the footer when it is
    /// written (an array index per event, not a map look-up by name).
    calls: [u64; Syscall::ALL.len()],
    line: Vec<u8>,
    writer: LineWriter,
    last_flush: Instant,
    since_clock: u32,
    /// Bytes in the recording's files, every part (the status line shows it).
    written: Arc<AtomicU64>,
}

/// Fails early when `-o` names a file that exists (without --append): before a slow start.
pub fn preflight(output: &OutputArgs) -> Result<()> {
    match &output.output {
        Some(path) if !output.append => {
            let first =
                if output.rotate.is_some() { naming::part_path(path, 1) } else { path.clone() };
            file::check_new(&first)
        }
        _ => Ok(()),
    }
}

/// The recording sink `-o FILE` asks for, if it does.
pub fn from_args(output: &OutputArgs, header: Header) -> Result<Option<RecordingSink>> {
    let Some(path) = &output.output else {
        return Ok(None);
    };
    let opts = Options { path: path.clone(), rotate: output.rotate, append: output.append };
    RecordingSink::create(opts, header).map(Some)
}

impl RecordingSink {
    /// Creates (or, with --append, opens) the first file and writes its header.
    pub fn create(opts: Options, mut header: Header) -> Result<RecordingSink> {
        let compression = naming::compression_of(&opts.path);
        let file_number = match (opts.rotate, opts.append) {
            // --append with --rotate continues the numbering of the parts already there.
            (Some(_), true) => naming::find_parts(&opts.path)
                .map(|parts| parts.last().map_or(1, |(n, _)| n + 1))
                .unwrap_or(1),
            _ => 1,
        };
        header.part = 1;
        let path = current_path(&opts, file_number);
        let written = Arc::new(AtomicU64::new(0));
        let out = Output::open(&path, compression, opts.append, &written)?;
        let mut sink = RecordingSink {
            opts,
            compression,
            footer: Footer { part: 1, ..Footer::default() },
            calls: [0; Syscall::ALL.len()],
            header,
            file_number,
            out: Some(out),
            line: Vec::with_capacity(1024),
            writer: LineWriter::default(),
            last_flush: Instant::now(),
            since_clock: 0,
            written,
        };
        sink.frame(Frame::Header(&sink.header.clone()))?;
        // On disk at once: even a recording killed before its first event says what it is.
        sink.output()?.flush()?;
        Ok(sink)
    }

    /// Bytes written to the recording's files so far (all parts), kept up to date.
    pub fn written(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.written)
    }

    /// The file being written now.
    pub fn path(&self) -> PathBuf {
        current_path(&self.opts, self.file_number)
    }

    fn frame(&mut self, frame: Frame<'_>) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, &frame)?;
        self.line.push(b'\n');
        let out = self.out.as_mut().ok_or_else(|| io::Error::other("the recording is finished"))?;
        out.write_all(&self.line)
    }

    fn output(&mut self) -> io::Result<&mut Output> {
        self.out.as_mut().ok_or_else(|| io::Error::other("the recording is already finished"))
    }

    fn count(&mut self, record: RecordRef<'_>) {
        let f = &mut self.footer;
        match record {
            RecordRef::Event(ev) => {
                f.events += 1;
                self.calls[ev.syscall as usize] += 1;
            }
            RecordRef::Loss(loss) => f.count_loss(loss),
            RecordRef::Exit(_) => f.exits += 1,
            RecordRef::Snapshot(_) => f.snapshots += 1,
            RecordRef::SocketError(_) => f.socket_errors += 1,
            RecordRef::Blocked(_) => f.blocked += 1,
        }
    }

    /// Writes the footer and closes the current file.
    fn close_part(&mut self, last_part: bool) -> io::Result<()> {
        let end = Utc::now();
        self.footer.end = end;
        self.footer.last_part = last_part;
        self.footer.duration_ns =
            (end - self.header.part_start).num_nanoseconds().unwrap_or(0).max(0) as u64;
        let calls = std::mem::replace(&mut self.calls, [0; Syscall::ALL.len()]);
        for syscall in Syscall::ALL.iter().filter(|s| calls[**s as usize] > 0) {
            *self.footer.syscalls.entry(syscall.name().to_owned()).or_default() +=
                calls[*syscall as usize];
        }
        let footer = std::mem::take(&mut self.footer);
        self.frame(Frame::Footer(&footer))?;
        match self.out.take() {
            Some(out) => out.finish(),
            None => Ok(()),
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.close_part(false)?;
        self.file_number += 1;
        self.header.part += 1;
        self.header.part_start = Utc::now();
        let path = self.path();
        // Parts are always new files, even with --append.
        let out = Output::open(&path, self.compression, false, &self.written)
            .map_err(io::Error::other)?;
        self.out = Some(out);
        self.footer = Footer { part: self.header.part, ..Footer::default() };
        self.frame(Frame::Header(&self.header.clone()))?;
        self.output()?.flush()
    }
}

fn current_path(opts: &Options, file_number: u32) -> PathBuf {
    match opts.rotate {
        Some(_) => naming::part_path(&opts.path, file_number),
        None => opts.path.clone(),
    }
}

impl Sink for RecordingSink {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        let out = self.out.as_mut().ok_or_else(|| io::Error::other("the recording is finished"))?;
        match out {
            // Straight into the output buffer: no copy of the line.
            Output::Plain(plain) => plain.line(&mut self.writer, record)?,
            Output::Zstd(w) => {
                self.line.clear();
                self.writer.record(&mut self.line, record)?;
                w.write_all(&self.line)?;
            }
        }
        let size = out.size();
        self.count(record);
        if self.opts.rotate.is_some_and(|limit| size >= limit) {
            self.rotate()?;
        }
        // `flush` comes after each batch; a flood can make a batch long.
        self.since_clock += 1;
        if self.since_clock == CLOCK_EVERY {
            self.since_clock = 0;
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.last_flush = Instant::now();
            if let Some(out) = &mut self.out {
                out.flush()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.out.is_none() {
            return Ok(());
        }
        self.close_part(true)
    }
}

/// Without a footer, whatever was written is still flushed: the reader reports the missing
/// footer (a trace that ended on an error).
impl Drop for RecordingSink {
    fn drop(&mut self) {
        if let Some(out) = &mut self.out {
            let _ = out.flush();
        }
    }
}

enum Output {
    Plain(Plain),
    Zstd(zstd::Encoder<'static, Counted>),
}

impl Output {
    fn open(
        path: &Path,
        compression: Compression,
        append: bool,
        written: &Arc<AtomicU64>,
    ) -> Result<Output> {
        let mode = if append { Mode::Append } else { Mode::CreateNew };
        let opened = file::open(path, mode)?;
        let mut file = opened.file;
        if opened.len > 0 {
            prepare_append(&mut file, path, opened.len, compression)?;
        }
        written.fetch_add(opened.len, Ordering::Relaxed);
        let counted = Counted::new(file, opened.len, Arc::clone(written));
        Ok(match compression {
            Compression::None => Output::Plain(Plain::new(counted)),
            Compression::Zstd => Output::Zstd(
                zstd::Encoder::new(counted, ZSTD_LEVEL)
                    .with_context(|| format!("starting zstd for {}", path.display()))?,
            ),
        })
    }

    /// Bytes in the file, plus (uncompressed) those still buffered; for zstd, the bytes the
    /// encoder holds are not counted (up to one block).
    fn size(&self) -> u64 {
        match self {
            Output::Plain(p) => p.file.bytes + p.buf.len() as u64,
            Output::Zstd(w) => w.get_ref().bytes,
        }
    }

    /// Ends the zstd frame, writes everything out and makes it durable: a recording taken
    /// during an incident should survive the machine going down next.
    fn finish(self) -> io::Result<()> {
        let mut counted = match self {
            Output::Plain(mut p) => {
                p.write_out()?;
                p.file
            }
            Output::Zstd(w) => w.finish()?,
        };
        counted.trim()?;
        counted.file.sync_data()
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Plain(p) => p.append(buf).map(|()| buf.len()),
            Output::Zstd(w) => w.write(buf),
        }
    }

    /// For zstd this ends the current block, so everything written so far can be decoded.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Plain(p) => p.write_out().and_then(|()| p.file.flush()),
            Output::Zstd(w) => w.flush(),
        }
    }
}

/// --append to a file a crashed wsltrace left behind: a plain file may end mid-line (end it,
/// so the new header starts a line of its own); a zstd file must end with a whole frame,
/// since nothing after a damaged frame could be read back.
fn prepare_append(
    file: &mut std::fs::File,
    path: &Path,
    len: u64,
    compression: Compression,
) -> Result<()> {
    match compression {
        Compression::None => {
            let mut last = [0_u8];
            file.read_exact_at(&mut last, len - 1)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Compression::Zstd => {
            file.rewind()?;
            let mut decoder = zstd::Decoder::new(&*file)?;
            let mut buf = vec![0_u8; 64 << 10];
            loop {
                match decoder.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => bail!(
                        "{} does not end with a complete zstd frame ({err}; wsltrace killed?): what is appended could not be read back; record to a new file",
                        path.display()
                    ),
                }
            }
        }
    }
    Ok(())
}
