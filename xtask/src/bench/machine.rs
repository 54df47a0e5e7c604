//! What the figures were measured on: the machine, its load, the tools' versions, the date.

use std::{
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_gib: f64,
    /// /proc/loadavg's 1-minute figure when the bench started and ended: other work on the
    /// machine makes every figure noisier.
    pub load_start: f64,
    pub load_end: Option<f64>,
    /// The kernel's `pid_max`: above 32,768 wsltrace keeps the threads' slots in a pool
    /// rather than by thread id (more for the verifier, a look-up more per call).
    pub pid_max: Option<u32>,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim()))
            .unwrap_or("unknown")
            .to_owned();
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            memory_gib: (memory_kib / (1 << 20) as f64 * 10.0).round() / 10.0,
            load_start: load(),
            load_end: None,
            pid_max: pid_max(),
        }
    }
}

pub fn pid_max() -> Option<u32> {
    read(PidMax::PATH).trim().parse().ok()
}

/// Whether wsltrace keeps the threads' slots by thread id under `pid_max` (up to its
/// `SLOT_TIDS`, 32,768, the kernel's default), rather than in a pool.
pub fn slots_by_id(pid_max: Option<u32>) -> bool {
    pid_max.is_some_and(|max| max <= 32_768)
}

/// `pid_max` raised for a while (root); put back when dropped.
pub struct PidMax {
    was: u32,
}

impl PidMax {
    const PATH: &str = "/proc/sys/kernel/pid_max";

    pub fn raise(to: u32) -> anyhow::Result<PidMax> {
        use anyhow::Context as _;
        let was = pid_max().context("reading /proc/sys/kernel/pid_max")?;
        std::fs::write(Self::PATH, to.to_string()).context("raising pid_max")?;
        Ok(PidMax { was })
    }
}

impl Drop for PidMax {
    fn drop(&mut self) {
        if let Err(err) = std::fs::write(Self::PATH, self.was.to_string()) {
            eprintln!("bench: could not put pid_max back to {}: {err}", self.was);
        }
    }
}

pub fn load() -> f64 {
    read("/proc/loadavg").split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(0.0)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[derive(Clone, Debug, Serialize)]
pub struct Versions {
    pub wsltrace: String,
    pub strace: String,
    pub bpftrace: String,
}

impl Versions {
    pub fn detect() -> Versions {
        Versions {
            wsltrace: first_line("git", &["describe", "--always", "--dirty"]),
            strace: first_line("strace", &["-V"]),
            bpftrace: first_line("bpftrace", &["--version"]),
        }
    }
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "not available".to_owned())
}

/// Now, as `2026-11-21 13:05 UTC`.
pub fn now_utc() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_591), (2026, 5, 18));
    }
}
