//! Ring buffer bytes -> raw records, checked before they are trusted.

use std::mem::size_of;

use thiserror::Error;
use tracer_common::{
    Header, ProcessRecord, RecordKind, SyscallHead, SyscallView,
    record::{RECORD_VERSION, SocketErrorRecord, TAIL_CAPS, record_size},
};

/// A record read from the ring; a syscall's tails are borrowed from the ring's bytes.
pub enum Record<'a> {
    Syscall(SyscallView<'a>),
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
    #[error("syscall record of {len} bytes with tails of {addr_cap} and {value_cap} bytes")]
    Tails { len: usize, addr_cap: u16, value_cap: u16 },
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() < size_of::<T>() {
        return Err(RecordError::Short(bytes.len()));
    }
    // SAFETY: length checked above; T is a plain-data record valid for any bit pattern and
    // read unaligned because the ring gives no alignment guarantee for T.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// Inlined into the reader: no call and no result returned through memory per record.
#[inline]
pub fn parse(bytes: &[u8]) -> Result<Record<'_>, RecordError> {
    let header: Header = read(bytes)?;
    if header.version != RECORD_VERSION {
        return Err(RecordError::Version(header.version));
    }
    match RecordKind::from_u16(header.kind) {
        Some(RecordKind::Syscall) => syscall(bytes).map(Record::Syscall),
        Some(RecordKind::ProcessFork) => read(bytes).map(Record::Fork),
        Some(RecordKind::ProcessExit) => read(bytes).map(Record::Exit),
        Some(RecordKind::SocketError) => read(bytes).map(Record::SocketError),
        None => Err(RecordError::Kind(header.kind)),
    }
}

/// A syscall record: its head, then the two tails its head announces, which must be what the
/// ring's record holds, exactly.
#[inline]
fn syscall(bytes: &[u8]) -> Result<SyscallView<'_>, RecordError> {
    let head: SyscallHead = read(bytes)?;
    let (addr_cap, value_cap) = (usize::from(head.addr_cap), usize::from(head.value_cap));
    if !TAIL_CAPS.contains(&addr_cap)
        || !TAIL_CAPS.contains(&value_cap)
        || bytes.len() != record_size(addr_cap, value_cap)
    {
        return Err(RecordError::Tails {
            len: bytes.len(),
            addr_cap: head.addr_cap,
            value_cap: head.value_cap,
        });
    }
    let tails = &bytes[size_of::<SyscallHead>()..];
    let (addr, value) = tails.split_at(addr_cap);
    Ok(SyscallView { head, addr, value })
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

    /// A syscall record of the form (`addr_cap`, `value_cap`), as the kernel lays it out,
    /// with its address tail filled with 0xaa and its value tail with 0xbb.
    fn syscall_bytes(addr_cap: u16, value_cap: u16, addr_copied: u32) -> Vec<u8> {
        // SAFETY: SyscallHead is plain integers and byte arrays, valid when all zero.
        let mut head: SyscallHead = unsafe { std::mem::zeroed() };
        head.header = Header::new(RecordKind::Syscall);
        head.syscall = tracer_common::Syscall::Bind as u32;
        (head.addr_cap, head.value_cap, head.addr_copied) = (addr_cap, value_cap, addr_copied);
        let mut bytes = bytes_of(&head);
        bytes.resize(bytes.len() + usize::from(addr_cap), 0xaa);
        bytes.resize(bytes.len() + usize::from(value_cap), 0xbb);
        bytes
    }

    #[test]
    fn syscall_records_come_in_each_form_with_their_tails() {
        for (a, v) in
            [(0, 0), (32, 0), (128, 0), (0, 32), (0, 128), (32, 32), (128, 32), (128, 128)]
        {
            let bytes = syscall_bytes(a, v, 16);
            assert_eq!(bytes.len(), 184 + usize::from(a) + usize::from(v));
            let Ok(Record::Syscall(rec)) = parse(&bytes) else { panic!("form ({a}, {v})") };
            assert_eq!((rec.addr.len(), rec.value.len()), (usize::from(a), usize::from(v)));
            assert!(rec.addr.iter().all(|&b| b == 0xaa) && rec.value.iter().all(|&b| b == 0xbb));
            // Only what was copied, never past the tail.
            assert_eq!(rec.addr_copied().len(), usize::from(a).min(16));
        }
    }

    #[test]
    fn syscall_records_whose_length_disagrees_with_their_tails_are_errors() {
        let tails = |len, addr_cap, value_cap| RecordError::Tails { len, addr_cap, value_cap };
        // Cut short, or followed by more than the head announces.
        let bytes = syscall_bytes(32, 0, 0);
        assert_eq!(parse(&bytes[..200]).err(), Some(tails(200, 32, 0)));
        let mut long = bytes.clone();
        long.extend([0; 8]);
        assert_eq!(parse(&long).err(), Some(tails(224, 32, 0)));
        // A tail size the kernel never uses, even with the matching length.
        assert_eq!(parse(&syscall_bytes(16, 0, 0)).err(), Some(tails(200, 16, 0)));
        // The head alone is too short when cut.
        assert_eq!(parse(&bytes[..100]).err(), Some(RecordError::Short(100)));
    }
}
