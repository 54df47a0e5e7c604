//! `--metrics ADDR`: what the trace sees, as Prometheus metrics (OpenMetrics text, from the
//! prometheus-client crate), served on `/metrics` while tracing (`server.rs`).
//!
//! Label values come from small closed sets (syscall names, errno names, rule ids and
//! severities): never pids, addresses or paths, so a fleet's series stay bounded.

mod server;

use std::{
    borrow::Cow,
    collections::HashSet,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64},
    },
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};
use tracer_common::Syscall;

pub use self::server::{bind, serve};
use super::Sink;
use crate::event::{Blocked, Event, Finding, RecordRef};

/// Latency buckets, in seconds: 1 us to 16 s by factors of 4 (a loopback connect takes tens
/// of microseconds; a connect to a dead host, seconds).
const LATENCY_BUCKETS: (f64, f64, u16) = (1e-6, 4.0, 13);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyscallLabels {
    syscall: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    syscall: &'static str,
    errno: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    rule: String,
    severity: String,
}

type LatencyFamily = Family<SyscallLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    let (start, factor, count) = LATENCY_BUCKETS;
    Histogram::new(exponential_buckets(start, factor, count))
}

/// The metric families, registered once; the sink updates them, the server encodes them.
pub struct Metrics {
    registry: Arc<Registry>,
    events: Family<SyscallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
    lost: Counter,
    blocked: Gauge<i64, AtomicI64>,
    latency: LatencyFamily,
}

impl Metrics {
    /// The families, with a zero series for each traced syscall: `rate()` works from the first
    /// call, and a dashboard shows which syscalls are traced.
    pub fn new(syscalls: &[Syscall]) -> Metrics {
        let mut registry = Registry::with_prefix("wsltrace");
        let events = Family::<SyscallLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let findings = Family::<FindingLabels, Counter>::default();
        let lost = Counter::<u64, AtomicU64>::default();
        let blocked = Gauge::<i64, AtomicI64>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register("events", "Socket syscalls traced (after the filters)", events.clone());
        registry.register("errors", "Traced syscalls that returned an error", errors.clone());
        registry.register(
            "findings",
            "Knowledge-base findings on traced calls, by rule",
            findings.clone(),
        );
        registry.register(
            "lost_events",
            "Events the kernel could not deliver (ring buffer full)",
            lost.clone(),
        );
        registry.register(
            "blocked_calls",
            "Calls reported blocked (--blocked-after) that have not returned yet",
            blocked.clone(),
        );
        registry.register_with_unit(
            "syscall_duration",
            "Time spent in each traced syscall (calls in progress at attach and calls refused before entering the kernel have none)",
            Unit::Seconds,
            latency.clone(),
        );
        for &syscall in syscalls {
            let labels = SyscallLabels { syscall: syscall.name() };
            drop(events.get_or_create(&labels));
            drop(latency.get_or_create(&labels));
        }
        Metrics { registry: Arc::new(registry), events, errors, findings, lost, blocked, latency }
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }
}

/// The two text formats `/metrics` speaks: OpenMetrics for a scraper that asks for it
/// (Prometheus does), the classic Prometheus text format (0.0.4) for everything else (curl,
/// promtool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    OpenMetrics,
    PrometheusText,
}

impl Exposition {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Exposition {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Exposition::OpenMetrics,
            _ => Exposition::PrometheusText,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

fn encode(registry: &Registry, format: Exposition) -> String {
    let mut text = String::new();
    let encoded = match format {
        Exposition::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, registry),
        Exposition::PrometheusText => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        }
    };
    // Writing to a String cannot fail; an encoding error would leave a partial text, which a
    // scraper rejects as a whole (no wrong values).
    if let Err(err) = encoded {
        tracing::warn!("encoding the metrics: {err}");
    }
    text
}

/// A blocked call still in progress: a blocking call until its event (same thread, same
/// entry time), a non-blocking connect until its process next uses the fd.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Pending {
    Call { pid: u32, tid: u32, ts_ns: u64 },
    Connecting { pid: u32, fd: i32 },
}

/// Updates the metrics from the records shown.
pub struct MetricsSink {
    metrics: Metrics,
    /// Per syscall id: its events counter and latency histogram (the family's lock and hash
    /// are paid once, not per event).
    per_syscall: Vec<Option<(Counter, Histogram)>>,
    blocked: HashSet<Pending>,
}

impl MetricsSink {
    pub fn new(metrics: Metrics) -> MetricsSink {
        MetricsSink { metrics, per_syscall: Vec::new(), blocked: HashSet::new() }
    }

    fn syscall(&mut self, syscall: Syscall) -> &(Counter, Histogram) {
        let id = syscall as usize;
        if self.per_syscall.len() <= id {
            self.per_syscall.resize(id + 1, None);
        }
        let metrics = &self.metrics;
        self.per_syscall[id].get_or_insert_with(|| {
            let labels = SyscallLabels { syscall: syscall.name() };
            (
                metrics.events.get_or_create(&labels).clone(),
                metrics.latency.get_or_create(&labels).clone(),
            )
        })
    }

    fn event(&mut self, ev: &Event) {
        let (events, latency) = self.syscall(ev.syscall);
        events.inc();
        if let Some(ns) = ev.duration_ns {
            latency.observe(ns as f64 / 1e9);
        }
        if let Some(errno) = ev.errno {
            let labels = ErrorLabels { syscall: ev.syscall.name(), errno: errno.name() };
            self.metrics.errors.get_or_create(&labels).inc();
        }
        self.count_findings(&ev.anomalies);
        let returned = Pending::Call { pid: ev.pid, tid: ev.tid, ts_ns: ev.ts_ns };
        let used = ev.args.fd.map(|fd| Pending::Connecting { pid: ev.pid, fd });
        let before = self.blocked.len();
        self.blocked.remove(&returned);
        if let Some(used) = used {
            self.blocked.remove(&used);
        }
        if self.blocked.len() != before {
            self.metrics.blocked.set(self.blocked.len() as i64);
        }
    }

    fn blocked(&mut self, b: &Blocked) {
        self.count_findings(&b.anomalies);
        let pending = match (b.nonblocking, b.args.fd) {
            (true, Some(fd)) => Pending::Connecting { pid: b.pid, fd },
            _ => Pending::Call { pid: b.pid, tid: b.tid, ts_ns: b.ts_ns },
        };
        self.blocked.insert(pending);
        self.metrics.blocked.set(self.blocked.len() as i64);
    }

    fn count_findings(&self, findings: &[Finding]) {
        for finding in findings {
            let labels =
                FindingLabels { rule: finding.id.clone(), severity: finding.severity.to_string() };
            self.metrics.findings.get_or_create(&labels).inc();
        }
    }

    /// A process ended: none of its calls is blocked any more.
    fn exit(&mut self, pid: u32) {
        self.blocked.retain(|p| match *p {
            Pending::Connecting { pid: p, .. } | Pending::Call { pid: p, .. } => p != pid,
        });
        self.metrics.blocked.set(self.blocked.len() as i64);
    }
}

impl Sink for MetricsSink {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        match record {
            RecordRef::Event(ev) => self.event(ev),
            RecordRef::Blocked(b) => self.blocked(b),
            RecordRef::SocketError(error) => {
                self.count_findings(&error.anomalies);
                if self.blocked.remove(&Pending::Connecting { pid: error.pid, fd: error.fd }) {
                    self.metrics.blocked.set(self.blocked.len() as i64);
                }
            }
            RecordRef::Loss(loss) => {
                self.metrics.lost.inc_by(loss.lost);
            }
            RecordRef::Exit(exit) => self.exit(exit.pid),
            RecordRef::Snapshot(_) => {}
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `--metrics`'s value: an address to listen on, IP:PORT.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "'{s}' is not an address to listen on: use IP:PORT, e.g. 127.0.0.1:9464 or [::1]:9464"
        )
    })
}

#[cfg(test)]
mod tests;
