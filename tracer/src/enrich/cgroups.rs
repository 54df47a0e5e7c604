//! cgroup v2 ids (what bpf_get_current_cgroup_id returns) -> paths. On cgroup v2 the id is the
//! inode number of the cgroup's directory, so the hierarchy is walked once and re-walked when an
//! unknown id shows up (a cgroup created after start).

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt as _};

/// Re-walking is cheap but not free: at most this often, however many unknown ids arrive.
const RESCAN_AFTER: Duration = Duration::from_millis(250);

pub struct CgroupPaths {
    root: Option<PathBuf>,
    paths: HashMap<u64, Arc<str>>,
    scanned: Option<Instant>,
    /// The id asked for last and its path: most events come from the cgroup of the last one.
    last: Option<(u64, Arc<str>)>,
}

impl CgroupPaths {
    /// Finds the cgroup2 mount (on hybrid layouts it is not /sys/fs/cgroup).
    pub fn discover() -> Self {
        CgroupPaths { root: cgroup2_mount(), paths: HashMap::new(), scanned: None, last: None }
    }

    /// The path of cgroup `id`, shared: each event holds it without a copy.
    pub fn path(&mut self, id: u64) -> Option<Arc<str>> {
        if let Some((last, path)) = &self.last
            && *last == id
        {
            return Some(Arc::clone(path));
        }
        if let Some(path) = self.paths.get(&id) {
            self.last = Some((id, Arc::clone(path)));
            return Some(Arc::clone(path));
        }
        let root = self.root.clone()?;
        if self.scanned.is_some_and(|at| at.elapsed() < RESCAN_AFTER) {
            return None;
        }
        self.scanned = Some(Instant::now());
        // A re-walk may find an id's directory renamed: the last path is asked for again.
        self.last = None;
        walk(&root, &root, &mut self.paths);
        self.paths.get(&id).cloned()
    }
}

fn walk(root: &Path, dir: &Path, paths: &mut HashMap<u64, Arc<str>>) {
    let Ok(meta) = std::fs::metadata(dir) else { return };
    let relative =
        dir.strip_prefix(root).map_or_else(|_| String::new(), |p| p.display().to_string());
    paths.insert(meta.ino(), format!("/{relative}").into());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &entry.path(), paths);
        }
    }
}

/// The mount point of the cgroup2 hierarchy, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = procfs::process::Process::myself().ok()?.mountinfo().ok()?;
    mounts.into_iter().find(|m| m.fs_type == "cgroup2").map(|m| m.mount_point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_our_own_cgroup() {
        let mut paths = CgroupPaths::discover();
        let root = paths.root.clone().expect("cgroup2 is mounted");
        let root_id = std::fs::metadata(&root).unwrap().ino();
        assert_eq!(paths.path(root_id).as_deref(), Some("/"));
        assert_eq!(paths.path(u64::MAX), None);
    }
}
