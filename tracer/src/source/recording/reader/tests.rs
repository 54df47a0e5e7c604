use std::io::Write as _;

use chrono::DateTime;

use super::*;
use crate::{filter::FilterSpec, recording::Header};

fn header(schema: &str) -> String {
    let start = DateTime::from_timestamp(1000, 0).unwrap();
    let mut h = Header::new(start, FilterSpec::default(), crate::facts::Facts::default());
    h.schema_version = schema.into();
    serde_json::to_string(&crate::recording::Frame::Header(&h)).unwrap()
}

const SNAPSHOT: &str = r#"{"type":"snapshot","ts":"1970-01-01T00:16:40Z","pid":7,"comm":"nginx","sockets":[{"fd":3,"family":"AF_INET","type":"SOCK_STREAM","state":"LISTEN","local":{"family":"AF_INET","ip":"127.0.0.1","port":80},"peer":null,"inode":9}]}"#;
const EVENT: &str = r#"{"type":"event","ts":"1970-01-01T00:16:40.5Z","ts_ns":5,"pid":7,"tid":7,"comm":"nginx","uid":0,"gid":0,"cgroup_id":1,"syscall":"close","args":{"fd":3},"ret":0,"errno":null,"duration_ns":100}"#;
const LOSS: &str = r#"{"type":"loss","ts":"1970-01-01T00:16:41Z","lost":4,"total_lost":4}"#;
const FOOTER: &str = r#"{"type":"footer","end":"1970-01-01T00:16:42Z","duration_ns":2000000000,"part":1,"last_part":true,"events":1,"lost":4,"exits":0,"snapshots":1,"syscalls":{"close":1}}"#;

/// Reads `content` (zstd-compressed first if asked) back: record types and problems.
fn read(name: &str, content: &[u8], zstd: bool) -> (Vec<&'static str>, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("wsltrace-reader-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let bytes = if zstd { zstd::encode_all(content, 3).unwrap() } else { content.to_vec() };
    std::fs::File::create(&path).unwrap().write_all(&bytes).unwrap();
    let mut problems = Vec::new();
    let mut kinds = Vec::new();
    let mut reader = RecordingReader::open(&path).unwrap();
    while let Some(record) = reader.next(&mut problems) {
        kinds.push(match record {
            Record::Header(_) => "header",
            Record::Snapshot(s) => {
                assert_eq!(s.sockets[0].state, Some(crate::decode::state::SockState::Listen));
                "snapshot"
            }
            Record::Event(_) => "event",
            Record::Loss(_) => "loss",
            Record::Exit(_) => "exit",
            Record::SocketError(_) => "socket_error",
            Record::Blocked(_) => "blocked",
            Record::Footer(_) => "footer",
        });
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let problems = problems
        .iter()
        .map(|p| p.to_string().replace(&format!("{}/", dir.display()), ""))
        .collect();
    (kinds, problems)
}

fn lines(lines: &[&str]) -> Vec<u8> {
    lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect()
}

#[test]
fn a_complete_recording_plain_or_zstd() {
    let h = header("1.0");
    let content = lines(&[&h, SNAPSHOT, EVENT, LOSS, FOOTER]);
    let all = vec!["header", "snapshot", "event", "loss", "footer"];
    assert_eq!(read("a.jsonl", &content, false), (all.clone(), vec![]));
    // Compression is recognised by content, not by name.
    assert_eq!(read("a.jsonl", &content, true), (all, vec![]));
}

/// `seq 1 100000`: three lines named, then one line says it is not a recording.
#[test]
fn a_file_that_is_not_a_recording_is_left_after_a_few_lines() {
    let numbers: Vec<String> = (1..=100_000).map(|n| n.to_string()).collect();
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let (kinds, problems) = read("n.txt", &lines(&numbers), false);
    assert!(kinds.is_empty());
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert_eq!(problems[0], "error: n.txt:1: not a JSON object: line skipped");
    assert!(problems[3].contains("not a recording"), "{problems:?}");
}

/// Damage after good records is read past, but listed only up to a bound.
#[test]
fn damaged_lines_are_listed_up_to_a_bound() {
    let h = header("1.0");
    let mut content = vec![h.as_str(), EVENT];
    content.extend(std::iter::repeat_n("GARBAGE", 50));
    content.extend([EVENT, FOOTER]);
    let (kinds, problems) = read("d.jsonl", &lines(&content), false);
    assert_eq!(kinds.iter().filter(|k| **k == "event").count(), 2);
    let listed = problems.iter().filter(|p| p.contains("not a JSON object")).count();
    assert_eq!(listed as u64, MAX_LISTED, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("30 more damaged lines, not listed (50 in all)")));
}

#[test]
fn damage_is_reported_by_line() {
    let h = header("1.0");
    let (kinds, problems) = read("b.jsonl", &lines(&[&h, "[1,2]", "{}", EVENT, LOSS]), false);
    assert_eq!(kinds, ["header", "event", "loss"]);
    assert!(problems[0].starts_with("error: b.jsonl:2: not a JSON object"), "{problems:?}");
    assert_eq!(problems[1], "error: b.jsonl:3: no \"type\": line skipped");
    assert!(problems[2].starts_with("error: b.jsonl:5: no footer"), "{problems:?}");

    let mut cut = lines(&[&h, EVENT]);
    cut.extend_from_slice(&EVENT.as_bytes()[..30]);
    let (kinds, problems) = read("c.jsonl", &cut, false);
    assert_eq!(kinds, ["header", "event"]);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("error: c.jsonl:3: the last line is cut short"));

    // A whole record that only lacks its newline is kept.
    let mut no_newline = lines(&[&h, EVENT, LOSS]);
    no_newline.extend_from_slice(FOOTER.as_bytes());
    assert_eq!(read("d.jsonl", &no_newline, false).1, Vec::<String>::new());
}

#[test]
fn newer_major_schema_is_refused() {
    let h = header("2.3");
    let (kinds, problems) = read("e.jsonl", &lines(&[&h, EVENT, FOOTER]), false);
    assert!(kinds.is_empty());
    assert_eq!(
        problems,
        [
            "error: e.jsonl:1: recorded with schema 2.3, newer than this wsltrace reads (1.x): upgrade wsltrace to analyse it; file skipped"
        ]
    );
    // A newer major header whose fields changed shape is refused the same way.
    let changed = r#"{"type":"header","schema_version":"3.0","start":42}"#;
    let (_, problems) = read("f.jsonl", &lines(&[changed, EVENT]), false);
    assert!(problems[0].contains("f.jsonl:1: recorded with schema 3.0"), "{problems:?}");
}

#[test]
fn headerless_json_lines_are_read_with_a_note() {
    let (kinds, problems) = read("g.jsonl", &lines(&[EVENT, LOSS]), false);
    assert_eq!(kinds, ["event", "loss"]);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("note: g.jsonl:1: no header"), "{problems:?}");
}
