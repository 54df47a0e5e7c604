//! What one guest left in its results directory, read back on the host.

use std::{fs, path::Path, time::Duration};

/// One suite's outcome in one guest.
pub struct Suite {
    pub name: String,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// Tests that failed, by name; the suite itself when it ended without a result line.
    pub failures: Vec<String>,
    pub secs: Option<f64>,
}

/// Everything one guest reported.
pub struct Report {
    /// `uname -r` in the guest; `None` when it never reached the test script.
    pub release: Option<String>,
    /// Seconds from the kernel's start to the test script.
    pub booted: Option<f64>,
    pub suites: Vec<Suite>,
}

impl Report {
    pub fn read(out: &Path, suites: &[String]) -> Report {
        let text = |name: &str| fs::read_to_string(out.join(name)).ok();
        let secs = |name: &str| text(name).and_then(|t| t.trim().parse::<f64>().ok());
        let suites = suites
            .iter()
            .map(|name| {
                let log = text(&format!("{name}.log")).unwrap_or_default();
                let mut suite = parse_log(name, &log);
                if let (Some(start), Some(end)) =
                    (secs(&format!("{name}.start")), secs(&format!("{name}.end")))
                {
                    suite.secs = Some(end - start);
                }
                suite
            })
            .collect();
        Report {
            release: text("release").map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()),
            booted: secs("booted"),
            suites,
        }
    }

    pub fn passed(&self) -> u64 {
        self.suites.iter().map(|s| s.passed).sum()
    }

    pub fn failed(&self) -> u64 {
        self.suites.iter().map(|s| s.failed).sum()
    }

    pub fn tests_secs(&self) -> f64 {
        self.suites.iter().filter_map(|s| s.secs).sum()
    }
}

/// Counts from libtest's output. A suite that never printed its result line (it crashed,
/// or the guest was killed) counts as one failure, named after the suite.
pub fn parse_log(name: &str, log: &str) -> Suite {
    let mut suite = Suite {
        name: name.to_owned(),
        passed: 0,
        failed: 0,
        ignored: 0,
        failures: Vec::new(),
        secs: None,
    };
    let mut finished = false;
    for line in log.lines() {
        if let Some(test) = line.strip_prefix("test ").and_then(|l| l.strip_suffix(" ... FAILED")) {
            suite.failures.push(test.to_owned());
        }
        let Some(rest) = line.strip_prefix("test result: ") else { continue };
        finished = true;
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => suite.passed += n,
                "failed" => suite.failed += n,
                "ignored" => suite.ignored += n,
                _ => {}
            }
        }
    }
    if !finished {
        suite.failed += 1;
        suite.failures.push(format!("{name} (no result: the suite did not finish)"));
    }
    suite
}

/// One kernel's line of the summary table.
pub struct Row {
    pub kernel: String,
    pub release: String,
    pub report: Option<Report>,
    pub wall: Duration,
}

impl Row {
    pub fn failed(kernel: &str) -> Row {
        Row {
            kernel: kernel.to_owned(),
            release: "-".to_owned(),
            report: None,
            wall: Duration::ZERO,
        }
    }

    pub fn ok(&self) -> bool {
        self.report.as_ref().is_some_and(|r| r.release.is_some() && r.failed() == 0)
    }
}

pub fn print_table(rows: &[Row]) {
    let header = ["kernel", "release", "boot s", "tests s", "total s", "passed", "failed"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let (boot, tests, passed, failed) = match &r.report {
                Some(rep) => (
                    rep.booted.map_or("-".to_owned(), |b| format!("{b:.1}")),
                    format!("{:.0}", rep.tests_secs()),
                    rep.passed().to_string(),
                    rep.failed().to_string(),
                ),
                None => ("-".to_owned(), "-".to_owned(), "0".to_owned(), "1".to_owned()),
            };
            [
                r.kernel.clone(),
                r.release.clone(),
                boot,
                tests,
                format!("{:.0}", r.wall.as_secs_f64()),
                passed,
                failed,
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| cells.iter().map(|c| c[i].len()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |items: &[&str]| {
        let padded: Vec<String> =
            items.iter().zip(&widths).map(|(s, w)| format!("{s:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    println!();
    line(&header);
    for c in &cells {
        line(&c.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_output_is_counted() {
        let log = "running 3 tests\ntest a ... ok\ntest b ... FAILED\ntest c ... ignored\n\n\
                   test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 2.01s\n";
        let s = parse_log("trace", log);
        assert_eq!((s.passed, s.failed, s.ignored), (1, 1, 1));
        assert_eq!(s.failures, ["b"]);
    }

    #[test]
    fn a_suite_without_a_result_line_is_one_failure() {
        let s = parse_log("exits", "running 3 tests\ntest a ... ok\n");
        assert_eq!((s.passed, s.failed), (0, 1));
        assert!(s.failures[0].starts_with("exits"));
    }
}
