//! `--since` / `--until`: a point in time, absolute (RFC 3339) or relative to the start of the
//! trace (`+30s`, `+1m30s`, `+250ms`).

use std::{fmt, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeBound {
    At(DateTime<Utc>),
    /// After the start of the trace (a recording's header `start`).
    AfterStart(Duration),
}

impl TimeBound {
    pub fn parse(s: &str) -> Result<TimeBound, String> {
        let s = s.trim();
        let usage = "use RFC 3339 (2026-11-21T11:02:03Z, 2026-11-21T12:02:03.5+01:00) or an offset from the start (+30s, +1m30s, +250ms)";
        if let Some(offset) = s.strip_prefix('+') {
            return parse_offset(offset)
                .map(TimeBound::AfterStart)
                .ok_or_else(|| format!("'{s}' is not an offset: {usage}"));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| TimeBound::At(t.with_timezone(&Utc)))
            .map_err(|_| format!("'{s}' is not a time: {usage}"))
    }

    /// The point in time, given when the trace started. An offset past the last time chrono
    /// can hold (`+1e15s`, or a recording header's start near that end) is that last time.
    pub fn resolve(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeBound::At(t) => t,
            TimeBound::AfterStart(d) => chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| start.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// `30s`, `1m30s`, `1.5s`, `250ms`, `2h`, `90` (seconds).
fn parse_offset(s: &str) -> Option<Duration> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        let value: f64 = number.parse().ok()?;
        total = total.checked_add(Duration::try_from_secs_f64(value * scale).ok()?)?;
        rest = tail;
    }
    (!s.is_empty()).then_some(total)
}

impl fmt::Display for TimeBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeBound::At(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            TimeBound::AfterStart(d) => write!(f, "+{}s", d.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_offsets() {
        let after = |s: &str| match TimeBound::parse(s) {
            Ok(TimeBound::AfterStart(d)) => d,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(after("+30s"), Duration::from_secs(30));
        assert_eq!(after("+90"), Duration::from_secs(90));
        assert_eq!(after("+1.5s"), Duration::from_millis(1500));
        assert_eq!(after("+1m30s"), Duration::from_secs(90));
        assert_eq!(after("+250ms"), Duration::from_millis(250));
        assert_eq!(after("+2h"), Duration::from_secs(7200));
        assert_eq!(after("+0s"), Duration::ZERO);
        for bad in ["+", "+s", "+30x", "+-5s", "+1m30", "30s"] {
            assert!(TimeBound::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absolute_times_in_any_offset() {
        let t = TimeBound::parse("2026-11-21T12:02:03.5+01:00").unwrap();
        let utc = DateTime::parse_from_rfc3339("2026-11-21T11:02:03.5Z").unwrap();
        assert_eq!(t, TimeBound::At(utc.with_timezone(&Utc)));
        let err = TimeBound::parse("2026-11-21 11:02").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn resolve_against_the_start() {
        let start = DateTime::from_timestamp(1000, 0).unwrap();
        let t = TimeBound::parse("+1m").unwrap().resolve(start);
        assert_eq!(t, DateTime::from_timestamp(1060, 0).unwrap());
        assert_eq!(TimeBound::parse("+1m").unwrap().to_string(), "+60s");
    }

    /// Found by the cli_values fuzz target: `DateTime + TimeDelta` panicked on overflow.
    #[test]
    fn offsets_past_the_end_of_time_resolve_to_it() {
        let end = DateTime::<Utc>::MAX_UTC;
        // The crashing input, against the latest start a recording header can give.
        assert_eq!(TimeBound::parse("+90").unwrap().resolve(end), end);
        // A start of today and an offset of 30 million years.
        let start = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        assert_eq!(TimeBound::parse("+1e15").unwrap().resolve(start), end);
    }
}
