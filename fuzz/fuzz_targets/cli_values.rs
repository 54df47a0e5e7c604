//! The values the command line takes as text: `--addr`, `--since`/`--until`, `--rotate`
//! sizes and `-e` errnos. Each input is given to every parser, as a user could give it to any
//! of them. A value that parses must print (in the recording header's filter list, and in
//! messages) as text that parses back to the same value. Seeds: `corpus/cli_values`.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use tracer::{
    decode::{errno::Errno, sockaddr},
    filter::{addr::AddrPattern, time::TimeBound},
    sinks::args::parse_file_size,
};

/// Addresses as the decoder builds them from kernel bytes: IPv4, IPv6 (v4-mapped), a unix path
/// and an abstract name, each matched against every pattern.
const ADDRS: [&[u8]; 4] = [
    &[2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    &[
        10, 0, 0x1f, 0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1, 0, 0,
        0, 0,
    ],
    b"\x01\x00/tmp/app.sock\x00",
    b"\x01\x00\x00name",
];

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };

    if let Ok(pattern) = AddrPattern::parse(s) {
        let shown = pattern.to_string();
        assert_eq!(
            AddrPattern::parse(&shown).as_ref(),
            Ok(&pattern),
            "--addr {s:?} shown as {shown:?}"
        );
        for bytes in ADDRS {
            let addr = sockaddr::decode(bytes).expect("the family fits");
            pattern.matches(&addr);
        }
    }

    if let Ok(bound) = TimeBound::parse(s) {
        // A recording's start, and the latest start a recording can have.
        let starts = [DateTime::from_timestamp(1_764_000_000, 0), Some(DateTime::<Utc>::MAX_UTC)];
        for start in starts.into_iter().flatten() {
            bound.resolve(start);
        }
        let shown = bound.to_string();
        assert!(
            TimeBound::parse(&shown).is_ok(),
            "--since {s:?} shown as {shown:?}, which does not parse"
        );
    }

    if let Ok(size) = parse_file_size(s) {
        assert!(size >= 4 << 10, "--rotate {s:?} gave {size} bytes, under the 4K minimum");
    }

    if let Ok(errno) = Errno::parse(s) {
        let name = errno.name();
        assert_eq!(Errno::parse(&name), Ok(errno), "-e {s:?} shown as {name:?}");
    }
});
