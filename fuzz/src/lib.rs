//! What the fuzz targets share: a record written the way wsltrace writes it (JSON Lines sink,
//! recording sink, text sink) must read back as the same record.

use tracer::{
    event::RecordRef,
    recording::Record,
    sinks::{Sink as _, text::TextSink},
};

/// The line a JSON or recording sink writes for `record`.
pub fn json_line(record: RecordRef<'_>) -> String {
    // A serializer error is a bug: every record wsltrace builds must be writable.
    serde_json::to_string(&record).expect("a record serializes to JSON")
}

/// The terminal's sink, writing to memory (no colour, like a pipe).
pub type Text = TextSink<Vec<u8>>;

pub fn text_sink() -> Text {
    TextSink::new(Vec::new(), false, None)
}

/// Writes `record` as a recording line, reads it back as `analyze` does, and checks it is the
/// same record (same line written again). Also renders it with `text`, as the terminal would.
pub fn write_and_read_back(record: RecordRef<'_>, text: &mut Text) {
    let line = json_line(record);
    let back: Record = serde_json::from_str(&line)
        .unwrap_or_else(|err| panic!("wsltrace cannot read back its own line ({err}): {line}"));
    let again = as_ref(&back).map(json_line);
    assert_eq!(again.as_deref(), Some(line.as_str()), "the line changed on the way back");
    text.write(record).expect("writing to memory cannot fail");
}

/// A record as read, as the sinks take it; `None` for the recording sink's own header and
/// footer.
pub fn as_ref(record: &Record) -> Option<RecordRef<'_>> {
    Some(match record {
        Record::Event(ev) => RecordRef::Event(ev),
        Record::Loss(loss) => RecordRef::Loss(loss),
        Record::Exit(exit) => RecordRef::Exit(exit),
        Record::Snapshot(snap) => RecordRef::Snapshot(snap),
        Record::SocketError(err) => RecordRef::SocketError(err),
        Record::Blocked(b) => RecordRef::Blocked(b),
        Record::Header(_) | Record::Footer(_) => return None,
    })
}
