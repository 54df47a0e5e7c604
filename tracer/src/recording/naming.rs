//! File names of recordings: compression from the name, the numbered parts of a rotated set.

use std::{
    io,
    path::{Path, PathBuf},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
}

/// `.zst` (or `.zstd`) at the end of the name means zstd.
pub fn compression_of(path: &Path) -> Compression {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase());
    match name {
        Some(n) if n.ends_with(".zst") || n.ends_with(".zstd") => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Splits a file name before its extension, keeping a compression suffix with it:
/// `events.jsonl.zst` -> (`events`, `.jsonl.zst`), `trace` -> (`trace`, ``).
fn split(name: &str) -> (&str, &str) {
    let lower = name.to_ascii_lowercase();
    let compressed = [".zst", ".zstd"]
        .iter()
        .find(|ext| lower.ends_with(*ext) && lower.len() > ext.len())
        .map_or(0, |ext| ext.len());
    let rest = &name[..name.len() - compressed];
    // A leading dot is a hidden file's name, not an extension.
    match rest.rfind('.').filter(|&dot| dot > 0) {
        Some(dot) => (&name[..dot], &name[dot..]),
        None => (rest, &name[rest.len()..]),
    }
}

/// The name of part `part` of a rotated recording: `events.jsonl` -> `events.001.jsonl`,
/// `events.jsonl.zst` -> `events.001.jsonl.zst`, `trace` -> `trace.001`.
pub fn part_path(base: &Path, part: u32) -> PathBuf {
    let name = base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (stem, ext) = split(&name);
    base.with_file_name(format!("{stem}.{part:03}{ext}"))
}

/// The parts of a rotated recording named after `base` that exist, in part order.
pub fn find_parts(base: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let name = base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (stem, ext) = split(&name);
    let (prefix, suffix) = (format!("{stem}."), ext.to_owned());
    let dir = match base.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let number = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u32>().ok());
        if let Some(n) = number {
            parts.push((n, base.with_file_name(&file)));
        }
    }
    parts.sort();
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_from_the_name() {
        assert_eq!(compression_of(Path::new("a/events.jsonl.zst")), Compression::Zstd);
        assert_eq!(compression_of(Path::new("EVENTS.ZSTD")), Compression::Zstd);
        assert_eq!(compression_of(Path::new("events.jsonl")), Compression::None);
        assert_eq!(compression_of(Path::new("zst")), Compression::None);
    }

    #[test]
    fn part_names_keep_the_extension_last() {
        let name = |base: &str, n| part_path(Path::new(base), n).display().to_string();
        assert_eq!(name("/tmp/events.jsonl", 1), "/tmp/events.001.jsonl");
        assert_eq!(name("events.jsonl.zst", 12), "events.012.jsonl.zst");
        assert_eq!(name("trace", 3), "trace.003");
        assert_eq!(name("trace.zst", 3), "trace.003.zst");
        assert_eq!(name("my.trace.jsonl", 1000), "my.trace.1000.jsonl");
        assert_eq!(name(".hidden", 2), ".hidden.002");
    }

    #[test]
    fn finds_the_parts_of_a_set_in_order() {
        let dir = std::env::temp_dir().join(format!("wsltrace-naming-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["ev.002.jsonl", "ev.010.jsonl", "ev.001.jsonl", "ev.jsonl", "ev.x.jsonl"] {
            std::fs::write(dir.join(file), "").unwrap();
        }
        let parts = find_parts(&dir.join("ev.jsonl")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let numbers: Vec<u32> = parts.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 10]);
        assert!(parts[2].1.ends_with("ev.010.jsonl"));
    }
}
