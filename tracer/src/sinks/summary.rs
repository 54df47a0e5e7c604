//! `-c/--summary`: instead of a line per call, totals at the end, like `strace -c`: per
//! syscall (calls, errors by errno, latency percentiles), per process, findings by rule and
//! lost events. A table on the terminal, or one JSON object with `--format json`.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use chrono::{DateTime, Utc};
use comfy_table::{CellAlignment, Table};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{Sink, args::Format, render::Duration};
use crate::event::{Finding, Loss, RecordRef, Severity, is_zero};

/// Three significant digits: percentiles within 0.1% of the true latency.
const SIGNIFICANT_DIGITS: u8 = 3;

/// The totals, as printed with `--format json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Events counted (after the filters).
    pub events: u64,
    /// Events the kernel could not deliver.
    pub lost: u64,
    /// Context records the kernel could not deliver (see `LostDetail::lost_context`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_context: u64,
    /// Time of the first and last record.
    pub first: Option<String>,
    pub last: Option<String>,
    pub duration_ns: u64,
    /// Most called first.
    pub syscalls: Vec<SyscallReport>,
    pub processes: Vec<ProcessReport>,
    /// The processes grouped by command name (a 200-curl loop is one row), most calls first.
    #[serde(default)]
    pub commands: Vec<CommandReport>,
    /// Most frequent first.
    pub findings: Vec<FindingReport>,
    /// Socket errors no call asked for (`socket_error` records), per errno name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub socket_errors: BTreeMap<String, u64>,
    /// `blocked` records per syscall: calls reported while still in progress (they are
    /// counted in `syscalls` too when they return within the trace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocked: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyscallReport {
    pub syscall: String,
    pub calls: u64,
    pub errors: u64,
    /// Failures per errno name.
    pub errnos: BTreeMap<String, u64>,
    /// Null when no call had a known duration (all were in flight at attach).
    pub latency_ns: Option<Latency>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandReport {
    pub comm: String,
    /// How many processes ran it.
    pub processes: u64,
    pub calls: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub comm: String,
    pub calls: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FindingReport {
    pub id: String,
    pub severity: Severity,
    pub title: String,
    pub count: u64,
}

/// Accumulates the totals record by record.
#[derive(Default)]
pub struct Summary {
    events: u64,
    lost: u64,
    lost_context: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    syscalls: BTreeMap<&'static str, SyscallTotals>,
    processes: BTreeMap<u32, ProcessReport>,
    findings: BTreeMap<String, FindingReport>,
    socket_errors: BTreeMap<String, u64>,
    blocked: BTreeMap<String, u64>,
}

struct SyscallTotals {
    calls: u64,
    errors: u64,
    errnos: BTreeMap<String, u64>,
    latency: Option<Histogram<u64>>,
    /// Exact: the histogram only knows the top of the maximum's bucket.
    max_ns: u64,
}

impl Summary {
    pub fn add(&mut self, record: RecordRef<'_>) {
        let ts = match record {
            RecordRef::Event(ev) => {
                self.events += 1;
                let s = self.syscalls.entry(ev.syscall.name()).or_insert_with(|| SyscallTotals {
                    calls: 0,
                    errors: 0,
                    errnos: BTreeMap::new(),
                    // Auto-resizing: any latency fits.
                    latency: Histogram::new(SIGNIFICANT_DIGITS).ok(),
                    max_ns: 0,
                });
                s.calls += 1;
                if let Some(errno) = ev.errno {
                    s.errors += 1;
                    *s.errnos.entry(errno.name().into_owned()).or_default() += 1;
                }
                if let Some(ns) = ev.duration_ns {
                    s.max_ns = s.max_ns.max(ns);
                }
                if let (Some(ns), Some(h)) = (ev.duration_ns, &mut s.latency) {
                    // `record` grows the histogram as needed; `saturating_record` would not.
                    if h.record(ns.max(1)).is_err() {
                        h.saturating_record(ns);
                    }
                }
                let p = self
                    .processes
                    .entry(ev.pid)
                    .or_insert_with(|| ProcessReport { pid: ev.pid, ..ProcessReport::default() });
                if p.comm != ev.comm {
                    p.comm = ev.comm.to_string();
                }
                p.calls += 1;
                p.errors += u64::from(ev.errno.is_some());
                self.count_findings(&ev.anomalies);
                ev.ts
            }
            RecordRef::SocketError(error) => {
                *self.socket_errors.entry(error.error.name().into_owned()).or_default() += 1;
                self.count_findings(&error.anomalies);
                error.ts
            }
            RecordRef::Blocked(b) => {
                *self.blocked.entry(b.syscall.name().to_owned()).or_default() += 1;
                self.count_findings(&b.anomalies);
                b.ts
            }
            RecordRef::Loss(loss) => {
                self.lost += loss.lost;
                self.lost_context += loss.detail.lost_context;
                loss.ts
            }
            RecordRef::Exit(exit) => exit.ts,
            RecordRef::Snapshot(snap) => snap.ts,
        };
        self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
        self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
    }

    fn count_findings(&mut self, findings: &[Finding]) {
        for finding in findings {
            let f = self.findings.entry(finding.id.clone()).or_insert_with(|| FindingReport {
                id: finding.id.clone(),
                severity: finding.severity,
                title: finding.title.clone(),
                count: 0,
            });
            f.count += 1;
        }
    }

    pub fn report(&self) -> Report {
        let mut syscalls: Vec<SyscallReport> = self
            .syscalls
            .iter()
            .map(|(name, s)| SyscallReport {
                syscall: (*name).to_owned(),
                calls: s.calls,
                errors: s.errors,
                errnos: s.errnos.clone(),
                latency_ns: s.latency.as_ref().filter(|h| !h.is_empty()).map(|h| {
                    // Percentiles are bucket tops: never above the exact maximum.
                    let max = s.max_ns;
                    let at = |q| h.value_at_quantile(q).min(max);
                    Latency { p50: at(0.50), p90: at(0.90), p99: at(0.99), max }
                }),
            })
            .collect();
        syscalls.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.syscall.cmp(&b.syscall)));
        let mut processes: Vec<ProcessReport> = self.processes.values().cloned().collect();
        processes.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.pid.cmp(&b.pid)));
        let mut by_comm: BTreeMap<&str, CommandReport> = BTreeMap::new();
        for p in &processes {
            let c = by_comm.entry(p.comm.as_str()).or_insert_with(|| CommandReport {
                comm: p.comm.clone(),
                ..CommandReport::default()
            });
            c.processes += 1;
            c.calls += p.calls;
            c.errors += p.errors;
        }
        let mut commands: Vec<CommandReport> = by_comm.into_values().collect();
        commands.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.comm.cmp(&b.comm)));
        let mut findings: Vec<FindingReport> = self.findings.values().cloned().collect();
        findings.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.id.cmp(&b.id)));
        let stamp = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let duration_ns = match (self.first, self.last) {
            (Some(f), Some(l)) => (l - f).num_nanoseconds().unwrap_or(0).max(0) as u64,
            _ => 0,
        };
        Report {
            events: self.events,
            lost: self.lost,
            lost_context: self.lost_context,
            first: self.first.as_ref().map(stamp),
            last: self.last.as_ref().map(stamp),
            duration_ns,
            syscalls,
            processes,
            commands,
            findings,
            socket_errors: self.socket_errors.clone(),
            blocked: self.blocked.clone(),
        }
    }
}

impl Report {
    /// The tables, as printed on the terminal.
    /// The tables for a terminal; processes one row per command name unless `per_pid`.
    pub fn render(&self, per_pid: bool) -> String {
        let mut out = String::new();
        let mut calls =
            table(&["syscall", "calls", "errors", "errnos", "p50", "p90", "p99", "max"]);
        for s in &self.syscalls {
            let errnos: Vec<String> = s.errnos.iter().map(|(e, n)| format!("{e} {n}")).collect();
            let lat = |pick: fn(&Latency) -> u64| {
                s.latency_ns.as_ref().map_or("?".into(), |l| Duration(pick(l)).to_string())
            };
            calls.add_row(vec![
                s.syscall.clone(),
                s.calls.to_string(),
                s.errors.to_string(),
                errnos.join(", "),
                lat(|l| l.p50),
                lat(|l| l.p90),
                lat(|l| l.p99),
                lat(|l| l.max),
            ]);
        }
        let total_errors: u64 = self.syscalls.iter().map(|s| s.errors).sum();
        calls.add_row(vec!["total".into(), self.events.to_string(), total_errors.to_string()]);
        align_right(&mut calls, &[1, 2, 4, 5, 6, 7]);
        out.push_str(&calls.to_string());
        out.push_str("\n\n");

        // One table either way: per process, or per command name.
        let (header, right, rows): (&[&str], &[usize], Vec<[String; 4]>) = if per_pid {
            let rows = self.processes.iter().map(|p| {
                [p.pid.to_string(), p.comm.clone(), p.calls.to_string(), p.errors.to_string()]
            });
            (&["pid", "process", "calls", "errors"], &[0, 2, 3], rows.collect())
        } else {
            let rows = self.commands.iter().map(|c| {
                [c.comm.clone(), c.processes.to_string(), c.calls.to_string(), c.errors.to_string()]
            });
            (&["process", "pids", "calls", "errors"], &[1, 2, 3], rows.collect())
        };
        let mut procs = table(header);
        for row in rows {
            procs.add_row(row);
        }
        align_right(&mut procs, right);
        out.push_str(&procs.to_string());
        out.push_str("\n\n");

        if !self.socket_errors.is_empty() {
            let errors: Vec<String> =
                self.socket_errors.iter().map(|(e, n)| format!("{e} {n}")).collect();
            out.push_str(&format!("socket errors (no call asked): {}\n\n", errors.join(", ")));
        }
        if self.findings.is_empty() {
            out.push_str("findings: none\n");
        } else {
            let mut findings = table(&["finding", "severity", "count", "title"]);
            for f in &self.findings {
                findings.add_row(vec![
                    f.id.clone(),
                    f.severity.to_string(),
                    f.count.to_string(),
                    f.title.clone(),
                ]);
            }
            align_right(&mut findings, &[2]);
            out.push_str(&findings.to_string());
            out.push('\n');
        }
        let lost = match self.lost {
            0 => "lost events: 0\n".to_owned(),
            n => format!(
                "lost events: {n} (the counts above miss them: enlarge --ring-size or narrow the trace)\n"
            ),
        };
        out.push_str(&lost);
        if self.lost_context > 0 {
            out.push_str(&format!(
                "lost context records: {} ({})\n",
                self.lost_context,
                Loss::CONTEXT_COST
            ));
        }
        if !self.blocked.is_empty() {
            let counts: Vec<String> =
                self.blocked.iter().map(|(s, n)| format!("{s} {n}")).collect();
            out.push_str(&format!(
                "blocked calls (reported while in progress): {}\n",
                counts.join(", ")
            ));
        }
        out.push_str(&format!("duration: {}\n", Duration(self.duration_ns)));
        out
    }
}

/// Plain ASCII, a rule under the header only: readable in any terminal and in a log file.
const STYLE: &str = "     --            ";

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(STYLE).set_header(header.to_vec());
    t
}

fn align_right(t: &mut Table, columns: &[usize]) {
    for &i in columns {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// The summary as a sink: counts every record, prints at the end.
pub struct SummarySink<W: Write> {
    out: W,
    format: Format,
    per_pid: bool,
    summary: Summary,
    printed: bool,
}

impl<W: Write> SummarySink<W> {
    pub fn new(out: W, format: Format, per_pid: bool) -> Self {
        SummarySink { out, format, per_pid, summary: Summary::default(), printed: false }
    }
}

impl<W: Write> Sink for SummarySink<W> {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        self.summary.add(record);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.printed, true) {
            return Ok(());
        }
        let report = self.summary.report();
        match self.format {
            Format::Json => {
                // A `"type"` like every other JSON line wsltrace prints.
                #[derive(Serialize)]
                #[serde(tag = "type", rename_all = "snake_case")]
                enum Line<'a> {
                    Summary(&'a Report),
                }
                serde_json::to_writer(&mut self.out, &Line::Summary(&report))?;
                self.out.write_all(b"\n")?;
            }
            Format::Text => self.out.write_all(report.render(self.per_pid).as_bytes())?,
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests;
