//! Command line of the output stage: the terminal's format and colours, and the recording
//! (`-o`), the same live and in `analyze`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Terminal output: strace-like text, or JSON Lines
    #[arg(long, value_enum, default_value_t = Format::Text, help_heading = "Output")]
    pub format: Format,

    /// Also record to FILE: JSON Lines with a header and a footer (docs/trace-format.md),
    /// zstd-compressed when FILE ends in .zst. The terminal keeps --format. FILE must not
    /// exist (see --append); under sudo it belongs to the invoking user
    #[arg(short = 'o', long = "output", value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Start a new numbered file (events.001.jsonl, events.002.jsonl...) whenever one reaches
    /// SIZE (e.g. 100M, 1G); each part has its own header
    #[arg(long, value_name = "SIZE", requires = "output", value_parser = parse_file_size, help_heading = "Output")]
    pub rotate: Option<u64>,

    /// Add to FILE if it exists (a regular file of yours, not a link) instead of refusing;
    /// with --rotate, continue the numbering of existing parts
    #[arg(long, requires = "output", help_heading = "Output")]
    pub append: bool,

    /// Instead of one line per call, a summary at the end: per syscall (calls, errors by
    /// errno, latency percentiles), per process, findings by rule, lost events. One JSON
    /// object with --format json
    #[arg(short = 'c', long, help_heading = "Output")]
    pub summary: bool,

    /// With -c: one row per process instead of one per command name
    #[arg(long, requires = "summary", help_heading = "Output")]
    pub per_pid: bool,

    /// Colours: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, help_heading = "Output")]
    pub color: ColorWhen,
}

/// What every command prints in: text for people, JSON for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// Whether to colour stdout: auto means a terminal, and never with NO_COLOR set.
    pub fn on_stdout(self) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
            }
        }
    }
}

/// `100M`, `1G`, `512K`, `1.5G`, `1048576` (bytes); K, M, G, T are powers of 1024.
pub fn parse_file_size(s: &str) -> Result<u64, String> {
    const MIN: u64 = 4 << 10;
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_suffix("IB").or_else(|| t.strip_suffix('B')).unwrap_or(&t);
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 'K')) => (&t[..i], 1_u64 << 10),
        Some((i, 'M')) => (&t[..i], 1 << 20),
        Some((i, 'G')) => (&t[..i], 1 << 30),
        Some((i, 'T')) => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    let bytes = digits
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n * unit as f64)
        .filter(|b| *b < u64::MAX as f64)
        .ok_or_else(|| format!("'{s}' is not a size: use e.g. 100M, 1G, 512K"))?;
    if bytes < MIN as f64 {
        return Err(format!("size {s} is too small: use at least 4K (e.g. 100M)"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sizes() {
        assert_eq!(parse_file_size("100M"), Ok(100 << 20));
        assert_eq!(parse_file_size("1g"), Ok(1 << 30));
        assert_eq!(parse_file_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_file_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_file_size("64kb"), Ok(64 << 10));
        assert_eq!(parse_file_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_file_size("2T"), Ok(2 << 40));
        for bad in ["", "M", "-1M", "10X", "1e400", "nanM"] {
            assert!(parse_file_size(bad).unwrap_err().contains("not a size"), "{bad}");
        }
        assert!(parse_file_size("1K").unwrap_err().contains("too small"));
    }
}
