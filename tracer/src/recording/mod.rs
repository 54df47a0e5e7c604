//! The recording file format (`-o FILE`), shared by the writer (`sinks::recording`) and the
//! reader (`source::recording`). docs/trace-format.md is the user-facing description; keep the
//! two in step and bump [`SCHEMA`] when a change is not purely additive.

pub mod naming;

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    event::{
        Blocked, Event, Loss, LostDetail, ProcessExit, Snapshot, SocketError, is_zero, rfc3339_ns,
    },
    facts::Facts,
    filter::FilterSpec,
};

/// `format` of every header: tells a recording from other JSON Lines.
pub const FORMAT: &str = "wsltrace-recording";

/// The schema this build writes. Readers accept any minor version of their major (minor
/// versions only add fields and record types) and refuse a newer major.
pub const SCHEMA: SchemaVersion = SchemaVersion { major: 1, minor: 4 };

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaVersion {
    pub major: u32,
    pub minor: u32,
}

impl SchemaVersion {
    /// Parses `1.0`; a bare `1` is `1.0`.
    pub fn parse(s: &str) -> Option<SchemaVersion> {
        let (major, minor) = s.split_once('.').unwrap_or((s, "0"));
        Some(SchemaVersion { major: major.parse().ok()?, minor: minor.parse().ok()? })
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// First line of every file of a recording (each part of a rotated one has its own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    /// `MAJOR.MINOR`, see [`SCHEMA`].
    pub schema_version: String,
    pub wsltrace_version: String,
    /// Identifies one tracing session: the parts of a rotated recording share it.
    pub session: String,
    /// 1 for the first file of a session, then 2, 3... as the recording rotates.
    pub part: u32,
    /// When the session started.
    #[serde(with = "rfc3339_ns")]
    pub start: DateTime<Utc>,
    /// When this part started (equal to `start` for part 1).
    #[serde(with = "rfc3339_ns")]
    pub part_start: DateTime<Utc>,
    /// `uname -r` of the traced machine.
    pub kernel_release: String,
    pub hostname: String,
    /// The traced machine's environment: what `analyze` evaluates rules against. Read
    /// leniently: facts a newer wsltrace wrote in a shape this one does not know count as
    /// unknown, they do not make the recording unreadable.
    #[serde(default, deserialize_with = "lenient_facts")]
    pub facts: Facts,
    /// wsltrace's own arguments.
    pub command_line: Vec<String>,
    /// The filters the recorded events already passed.
    pub filters: FilterSpec,
    /// For a recording written by `analyze -o`: the recordings it was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derived_from: Vec<String>,
    /// `--probe-kind` of the live trace (`tracepoint` or `raw`; since 1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_kind: Option<String>,
}

impl Header {
    /// The header of a recording of the machine `facts` describe, started at `start`.
    pub fn new(start: DateTime<Utc>, filters: FilterSpec, facts: Facts) -> Header {
        Header {
            format: FORMAT.into(),
            schema_version: SCHEMA.to_string(),
            wsltrace_version: env!("CARGO_PKG_VERSION").into(),
            session: format!(
                "{:x}-{}",
                start.timestamp_nanos_opt().unwrap_or_default(),
                std::process::id()
            ),
            part: 1,
            start,
            part_start: start,
            kernel_release: facts.machine.kernel_release.clone(),
            hostname: hostname(),
            facts,
            command_line: std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect(),
            filters,
            derived_from: Vec::new(),
            probe_kind: None,
        }
    }

    pub fn schema(&self) -> Option<SchemaVersion> {
        SchemaVersion::parse(&self.schema_version)
    }
}

/// Last line of every file of a recording. Its counts describe this file only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Footer {
    #[serde(with = "rfc3339_ns")]
    pub end: DateTime<Utc>,
    /// From the header's `part_start` to `end`.
    pub duration_ns: u64,
    pub part: u32,
    /// False when the recording went on in part `part + 1`.
    pub last_part: bool,
    /// `event` records in this file.
    pub events: u64,
    /// Sum of the `lost` of this file's `loss` records.
    pub lost: u64,
    /// Sums of their details (schema 1.2).
    #[serde(flatten)]
    pub lost_detail: LostDetail,
    pub exits: u64,
    pub snapshots: u64,
    /// `socket_error` records in this file (schema 1.1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub socket_errors: u64,
    /// `blocked` records (schema 1.1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub blocked: u64,
    /// Events per syscall name.
    pub syscalls: BTreeMap<String, u64>,
}

/// One line of a recording, as read back.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Header(Box<Header>),
    Snapshot(Snapshot),
    Event(Box<Event>),
    Loss(Loss),
    Exit(ProcessExit),
    SocketError(Box<SocketError>),
    Blocked(Box<Blocked>),
    Footer(Footer),
}

impl Footer {
    /// Adds a loss record to the counts.
    pub fn count_loss(&mut self, loss: &Loss) {
        self.lost += loss.lost;
        self.lost_detail.add(&loss.detail);
    }
}

/// A header and footer are written by the recording sink itself; the other records go
/// through the shared `RecordRef`.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame<'a> {
    Header(&'a Header),
    Footer(&'a Footer),
}

/// The host name in wsltrace's UTS namespace (on WSL, the Windows computer name by default).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn lenient_facts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Facts, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_versions() {
        assert_eq!(SchemaVersion::parse("1.0"), Some(SchemaVersion { major: 1, minor: 0 }));
        assert_eq!(SchemaVersion::parse("2"), Some(SchemaVersion { major: 2, minor: 0 }));
        assert_eq!(SchemaVersion::parse("1.x"), None);
        assert_eq!(SCHEMA.to_string(), "1.4");
    }
}
