//! Recordings as `wsltrace analyze` reads them: JSON Lines, zstd (whole or cut short), the
//! parts of a rotated recording put in order by their headers, a last line cut short. Every
//! record read must be written again as the same line (`analyze -o`, `--format json`).
//!
//! Input: one flags byte, then the parts' contents separated by [`PART_BREAK`]. Flag bit `i`
//! (0-3) compresses part `i` with zstd; bit 7 names the parts in reverse order, so that only
//! their headers can put them right. Seeds: real recordings (`corpus/recording`).
#![no_main]

use std::{
    path::{Path, PathBuf},
    sync::LazyLock,
};

use libfuzzer_sys::fuzz_target;
use tracer::{
    recording::naming::part_path,
    source::recording::{RecordingReader, plan},
};
use tracer_fuzz::{as_ref, text_sink, write_and_read_back};

const PART_BREAK: &[u8] = b"\n--part--\n";
const MAX_PARTS: usize = 4;

/// Where the parts are written: memory-backed when /dev/shm exists. One per fuzzing process.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = base.join(format!("wsltrace-fuzz-recording-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory for the parts");
    dir
});

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let base = DIR.join("rec.jsonl");
    for part in 1..=MAX_PARTS as u32 {
        // Parts of the previous input.
        let _ = std::fs::remove_file(part_path(&base, part));
    }
    let parts: Vec<&[u8]> = split(rest, PART_BREAK).take(MAX_PARTS).collect();
    let count = parts.len();
    for (i, content) in parts.into_iter().enumerate() {
        let bytes = if flags & (1 << i) != 0 {
            zstd::encode_all(content, 1).expect("compressing in memory")
        } else {
            content.to_vec()
        };
        let number = if flags & 0x80 != 0 { count - i } else { i + 1 };
        std::fs::write(part_path(&base, number as u32), bytes).expect("writing a part");
    }

    let mut problems = Vec::new();
    let files = plan(&[base], &mut problems);
    let text = &mut text_sink();
    assert_eq!(files.len(), count, "every part is read once: {files:?}");
    for file in files {
        let mut reader = match RecordingReader::open(&file) {
            Ok(reader) => reader,
            Err(problem) => panic!("a written part cannot be opened: {}", problem.message),
        };
        while let Some(record) = reader.next(&mut problems) {
            if let Some(record) = as_ref(&record) {
                write_and_read_back(record, text);
            }
        }
    }
});

/// `bytes` cut at each `sep`.
fn split<'a>(mut bytes: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match bytes.windows(sep.len()).position(|w| w == sep) {
            Some(at) => {
                let part = &bytes[..at];
                bytes = &bytes[at + sep.len()..];
                Some(part)
            }
            None => {
                done = true;
                Some(bytes)
            }
        }
    })
}
