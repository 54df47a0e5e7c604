//! Where a recording's bytes go: the file, counted, and for a plain recording the buffer the
//! lines are written into.

use std::{
    io::{self, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::{event::RecordRef, sinks::line::LineWriter};

/// Bytes buffered before a plain recording writes them out: large writes, few system calls.
const PLAIN_BUFFER: usize = 256 << 10;

/// A plain file and its buffer, which lines are written into in place (a `BufWriter` took a
/// copy of each line made elsewhere).
pub struct Plain {
    pub file: Counted,
    pub buf: Vec<u8>,
}

impl Plain {
    pub fn new(file: Counted) -> Plain {
        // Room for the last line past the mark without growing.
        Plain { file, buf: Vec::with_capacity(PLAIN_BUFFER + (16 << 10)) }
    }

    /// Appends `record`'s line, whole or not at all; writes the buffer out once it is full.
    pub fn line(&mut self, writer: &mut LineWriter, record: RecordRef<'_>) -> io::Result<()> {
        let start = self.buf.len();
        if let Err(err) = writer.record(&mut self.buf, record) {
            self.buf.truncate(start);
            return Err(err.into());
        }
        if self.buf.len() >= PLAIN_BUFFER {
            self.write_out()?;
        }
        Ok(())
    }

    /// Appends bytes made elsewhere (the header and footer).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= PLAIN_BUFFER {
            self.write_out()?;
        }
        Ok(())
    }

    /// Writes the buffer to the file; on an error, what was written leaves the buffer.
    pub fn write_out(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            match self.buf.get(done..) {
                Some([]) | None => break Ok(()),
                Some(rest) => match self.file.write(rest) {
                    Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => done += n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => break Err(err),
                },
            }
        };
        self.buf.drain(..done);
        result
    }
}

/// A file that counts the bytes written to it, for rotation (this part) and the status line
/// (every part).
pub struct Counted {
    pub file: std::fs::File,
    pub bytes: u64,
    pub written: Arc<AtomicU64>,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.bytes += n as u64;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
