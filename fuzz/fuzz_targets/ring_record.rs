//! Ring buffer bytes as the kernel programs write them: the record parser, then the decoders
//! (every sockaddr family, socket option values, copied/claimed lengths that disagree), then
//! the sinks. Seeds: real records from the ring (`corpus/ring_record`).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tracer::{
    decode::{self, Clock},
    event::RecordRef,
    source::records::{self, Record},
};
use tracer_common::Syscall;
use tracer_fuzz::{text_sink, write_and_read_back};

static CLOCK: LazyLock<Clock> =
    LazyLock::new(|| Clock::now().expect("CLOCK_MONOTONIC and CLOCK_REALTIME are readable"));

fuzz_target!(|data: &[u8]| {
    let clock = *CLOCK;
    let text = &mut text_sink();
    match records::parse(data) {
        Ok(Record::Syscall(rec)) => {
            // The same call seen still blocked: decoded from its raw arguments and the
            // address it passed, as `--blocked-after` does.
            if let Some(syscall) = Syscall::from_id(rec.head.syscall) {
                decode::pending_args(syscall, rec.head.args, rec.addr_copied());
            }
            if let Some(ev) = decode::decode(&rec, &clock) {
                write_and_read_back(RecordRef::Event(&ev), text);
            }
        }
        Ok(Record::Exit(rec) | Record::Fork(rec)) => {
            write_and_read_back(RecordRef::Exit(&decode::exit(&rec, &clock)), text);
        }
        Ok(Record::SocketError(rec)) => {
            write_and_read_back(RecordRef::SocketError(&decode::socket_error(&rec, &clock)), text);
        }
        Err(_) => {}
    }
});
