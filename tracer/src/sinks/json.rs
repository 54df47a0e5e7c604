//! JSON Lines: one object per line, each with a `"type"`.

use std::io::{self, Write};

use super::{Sink, line::LineWriter};
use crate::event::RecordRef;

pub struct JsonSink<W: Write> {
    out: W,
    writer: LineWriter,
    line: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W) -> Self {
        JsonSink { out, writer: LineWriter::default(), line: Vec::with_capacity(1024) }
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        self.line.clear();
        self.writer.record(&mut self.line, record)?;
        self.out.write_all(&self.line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
