//! Ring buffer bytes -> raw records, checked before they are trusted.

use std::mem::size_of;

use thiserror::Error;
use tracer_common::{
    Header, ProcessRecord, RecordKind, SyscallRecord,
    record::{RECORD_VERSION, SocketErrorRecord},
};

#[expect(
    clippy::large_enum_variant,
    reason = "a record is moved once, from the ring to the decoder; boxing would allocate per event"
)]
pub enum Record {
    Syscall(SyscallRecord),
    Fork(ProcessRecord),
    Exit(ProcessRecord),
    SocketError(SocketErrorRecord),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record of {0} bytes is too short")]
    Short(usize),
    #[error("record version {0} (this wsltrace reads version {RECORD_VERSION})")]
    Version(u16),
    #[error("unknown record kind {0}")]
    Kind(u16),
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() < size_of::<T>() {
        return Err(RecordError::Short(bytes.len()));
    }
    // SAFETY: length checked above; T is a plain-data record valid for any bit pattern and
    // read unaligned because the ring gives no alignment guarantee for T.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

pub fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
    let header: Header = read(bytes)?;
    if header.version != RECORD_VERSION {
        return Err(RecordError::Version(header.version));
    }
    match RecordKind::from_u16(header.kind) {
        Some(RecordKind::Syscall) => read(bytes).map(Record::Syscall),
        Some(RecordKind::ProcessFork) => read(bytes).map(Record::Fork),
        Some(RecordKind::ProcessExit) => read(bytes).map(Record::Exit),
        Some(RecordKind::SocketError) => read(bytes).map(Record::SocketError),
        None => Err(RecordError::Kind(header.kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data value.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    fn exit_record() -> ProcessRecord {
        ProcessRecord {
            header: Header::new(RecordKind::ProcessExit),
            ts_ns: 5,
            tgid: 77,
            parent_tgid: 0,
            comm: [0; 16],
            exit_status: 0,
            flags: 0,
        }
    }

    #[test]
    fn parses_process_records() {
        let Ok(Record::Exit(rec)) = parse(&bytes_of(&exit_record())) else { panic!() };
        assert_eq!(rec.tgid, 77);
    }

    #[test]
    fn parses_socket_errors() {
        let rec = SocketErrorRecord {
            header: Header::new(RecordKind::SocketError),
            ts_ns: 9,
            connect_ns: 8,
            tgid: 77,
            tid: 78,
            fd: 5,
            error: 111,
        };
        let Ok(Record::SocketError(rec)) = parse(&bytes_of(&rec)) else { panic!() };
        assert_eq!((rec.tgid, rec.tid, rec.fd, rec.error), (77, 78, 5, 111));
        // The kind with a process record's size: too short.
        let mut short = exit_record();
        short.header.kind = RecordKind::SocketError as u16;
        assert!(parse(&bytes_of(&short)[..32]).is_err());
    }

    #[test]
    fn rejects_short_unknown_and_newer_records() {
        assert_eq!(parse(&[1, 0]).err(), Some(RecordError::Short(2)));
        let mut rec = exit_record();
        rec.header.kind = 99;
        assert_eq!(parse(&bytes_of(&rec)).err(), Some(RecordError::Kind(99)));
        rec.header.version = RECORD_VERSION + 1;
        assert!(matches!(parse(&bytes_of(&rec)), Err(RecordError::Version(_))));
        // A syscall header on a process-sized record: too short for its kind.
        let mut rec = exit_record();
        rec.header.kind = RecordKind::Syscall as u16;
        assert!(matches!(parse(&bytes_of(&rec)), Err(RecordError::Short(48))));
    }
}
