//! tracefs: mounted on demand, and the source of tracepoint record layouts.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use nix::mount::{MsFlags, mount};

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// The tracefs root, mounting it at /sys/kernel/tracing when no tracefs is mounted (fresh
/// machines, WSL2 and many containers start without it).
pub fn ensure_mounted() -> Result<PathBuf> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(root).join("events").is_dir() {
            return Ok(PathBuf::from(root));
        }
    }
    mount(Some("tracefs"), TRACEFS, Some("tracefs"), MsFlags::empty(), None::<&str>).with_context(
        || format!("tracefs is not mounted and mounting it at {TRACEFS} failed: run `mount -t tracefs tracefs {TRACEFS}` as root"),
    )?;
    tracing::info!("mounted tracefs at {TRACEFS}");
    Ok(PathBuf::from(TRACEFS))
}

/// Whether `category:name` exists on the running kernel.
pub fn has_tracepoint(root: &Path, category: &str, name: &str) -> bool {
    root.join("events").join(category).join(name).join("id").exists()
}

/// Offset of `field` in the record of tracepoint `category:name`, from its `format` file.
pub fn field_offset(root: &Path, category: &str, name: &str, field: &str) -> Result<Option<u32>> {
    let path = root.join("events").join(category).join(name).join("format");
    let format =
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_field_offset(&format, field)
        .with_context(|| format!("malformed tracepoint format in {}", path.display()))
}

/// Finds `field:<type> <field>;\toffset:N;` in a tracepoint format description.
pub fn parse_field_offset(format: &str, field: &str) -> Result<Option<u32>> {
    for line in format.lines() {
        let Some(decl) = line.trim().strip_prefix("field:") else { continue };
        let mut parts = decl.split(';').map(str::trim);
        let declaration = parts.next().unwrap_or_default();
        // The name is the last word of the declaration, without any array suffix.
        let name = declaration
            .rsplit([' ', '\t'])
            .next()
            .unwrap_or_default()
            .split('[')
            .next()
            .unwrap_or_default();
        if name != field {
            continue;
        }
        let Some(offset) = parts.find_map(|p| p.strip_prefix("offset:")) else {
            bail!("field {field} has no offset");
        };
        return Ok(Some(offset.parse().with_context(|| format!("offset of {field}: {offset:?}"))?));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Format of sched_process_fork on kernel 6.18 (comms became __data_loc strings).
    const FORK_6_18: &str = "name: sched_process_fork
ID: 366
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;
";

    // The same tracepoint on older kernels (fixed-size comm arrays).
    const FORK_5_15: &str = "format:
\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;
\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;
";

    #[test]
    fn finds_offsets_across_layouts() {
        assert_eq!(parse_field_offset(FORK_6_18, "child_pid").unwrap(), Some(20));
        assert_eq!(parse_field_offset(FORK_5_15, "child_pid").unwrap(), Some(44));
        assert_eq!(parse_field_offset(FORK_5_15, "child_comm").unwrap(), Some(28));
        assert_eq!(parse_field_offset(FORK_6_18, "group_dead").unwrap(), None);
    }

    #[test]
    fn rejects_garbage_offsets() {
        assert!(parse_field_offset("\tfield:int x;\toffset:abc;", "x").is_err());
    }
}
