//! The cgroup (v2) an emulated command runs in: made for one run, named after the wsltrace
//! that made it, removed after it. One left behind by a wsltrace killed with SIGKILL is
//! emptied and removed by the next run.

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::{
        fd::{AsRawFd as _, RawFd},
        unix::fs::OpenOptionsExt as _,
    },
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};

/// Name prefix of the cgroups wsltrace makes; the pid of the wsltrace that made one follows.
pub const PREFIX: &str = "wsltrace-emulate-";

/// Where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo (`/sys/fs/cgroup` on
/// most systems, `/sys/fs/cgroup/unified` in the hybrid layout), and the cgroup path of its
/// mount root.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    pub mount: PathBuf,
    root: PathBuf,
}

impl Hierarchy {
    pub fn find() -> Result<Hierarchy> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        parse_mountinfo(&mountinfo).ok_or_else(|| {
            anyhow!(
                "no cgroup v2 hierarchy is mounted, which emulation needs: mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`"
            )
        })
    }

    /// The directory of the cgroup this process is in.
    pub fn own_dir(&self) -> Result<PathBuf> {
        let cgroups = fs::read_to_string("/proc/self/cgroup")?;
        let path = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .context("this process has no cgroup v2 entry in /proc/self/cgroup")?;
        Ok(self.dir_of(path))
    }

    /// The depth of the cgroup at directory `dir` below the hierarchy's root (the root is 0), as
    /// the kernel counts it for `bpf_get_current_ancestor_cgroup_id`: the mount's own cgroup
    /// path plus the directories under the mount. (Inside a cgroup namespace the mount's path
    /// is relative to the namespace's root, so the depth may come out short there.)
    pub fn level_of(&self, dir: &Path) -> Result<u32> {
        let below = dir
            .strip_prefix(&self.mount)
            .with_context(|| format!("{} is not under {}", dir.display(), self.mount.display()))?;
        let count = |p: &Path| {
            p.components().filter(|c| matches!(c, std::path::Component::Normal(_))).count()
        };
        Ok((count(&self.root) + count(below)) as u32)
    }

    /// The directory of cgroup `path` (as /proc/PID/cgroup writes it) under the mount.
    fn dir_of(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        let relative = relative.strip_prefix("/").unwrap_or(relative);
        self.mount.join(relative)
    }
}

/// The first cgroup2 mount: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - cgroup2 SRC OPTS`.
fn parse_mountinfo(text: &str) -> Option<Hierarchy> {
    text.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = before.split_whitespace();
        let root = fields.nth(3)?;
        let mount = fields.next()?;
        Some(Hierarchy { mount: unescape(mount).into(), root: unescape(root).into() })
    })
}

/// mountinfo escapes spaces and such as `\040`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A cgroup made for one emulated run. Dropping it empties and removes it.
pub struct Cgroup {
    pub path: PathBuf,
    /// The directory, open: programs attach to it.
    pub dir: File,
    /// `cgroup.procs`, open for writing: the child writes "0" to it to move itself in before it
    /// execs, so the command's very first syscall runs inside.
    procs: File,
    removed: bool,
}

impl Cgroup {
    /// Makes `wsltrace-emulate-<pid>` as a child of wsltrace's own cgroup (so the command keeps
    /// the limits it would have had), or at the hierarchy's root when that is not allowed.
    pub fn create(hierarchy: &Hierarchy) -> Result<Cgroup> {
        let name = format!("{PREFIX}{}", std::process::id());
        let own = hierarchy.own_dir()?;
        let path = match fs::create_dir(own.join(&name)) {
            Ok(()) => own.join(&name),
            Err(err) => {
                tracing::debug!("cannot make a cgroup under {}: {err}", own.display());
                let path = hierarchy.mount.join(&name);
                fs::create_dir(&path).with_context(|| {
                    format!(
                        "cannot create the emulation cgroup {} (run wsltrace as root)",
                        path.display()
                    )
                })?;
                path
            }
        };
        let open = || -> Result<(File, File)> {
            let dir = File::open(&path)?;
            let procs = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path.join("cgroup.procs"))?;
            Ok((dir, procs))
        };
        match open() {
            Ok((dir, procs)) => Ok(Cgroup { path, dir, procs, removed: false }),
            Err(err) => {
                let _ = fs::remove_dir(&path);
                Err(err.context(format!("opening the emulation cgroup {}", path.display())))
            }
        }
    }

    /// The fd a child writes "0" to in order to join (see [`join_self`]).
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// Moves what is left in the cgroup to its parent, then removes it. Returns the pids moved
    /// out (processes the command left running).
    pub fn remove(&mut self) -> Result<Vec<u32>> {
        self.removed = true;
        let parent = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        empty_and_remove(&self.path, &parent)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        match self.remove() {
            Ok(moved) if !moved.is_empty() => report_moved(&moved),
            Ok(_) => {}
            Err(err) => tracing::warn!(
                "could not remove the emulation cgroup {} ({err:#}): the next `wsltrace emulate` removes it",
                self.path.display()
            ),
        }
    }
}

pub fn report_moved(moved: &[u32]) {
    let pids: Vec<String> = moved.iter().map(u32::to_string).collect();
    tracing::info!(
        "{} process(es) the command left running (pid {}) moved out of the emulation cgroup: they run on without emulation",
        moved.len(),
        pids.join(", ")
    );
}

/// Runs in the forked child before exec: moves the calling process into the cgroup whose
/// `cgroup.procs` is open as `fd` ("0" means "the writer").
///
/// # Safety
/// Only async-signal-safe calls: meant for `pre_exec`.
pub unsafe fn join_self(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: writing one byte from a static buffer to an fd we own.
    if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Freezes the cgroup (no new forks while emptying), moves every process of it and of its
/// descendants to `to`, and removes the directories bottom-up.
fn empty_and_remove(path: &Path, to: &Path) -> Result<Vec<u32>> {
    let mut moved = Vec::new();
    // Best effort: cgroup.freeze exists in every non-root cgroup since Linux 5.2.
    let _ = fs::write(path.join("cgroup.freeze"), "1");
    for attempt in 0.. {
        for dir in subtree_bottom_up(path) {
            for pid in procs(&dir) {
                // A process that exits meanwhile cannot be moved: that is fine.
                if write_pid(to, pid).is_ok() && !moved.contains(&pid) {
                    moved.push(pid);
                }
            }
            if dir != path {
                let _ = fs::remove_dir(&dir);
            }
        }
        match fs::remove_dir(path) {
            Ok(()) => return Ok(moved),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(moved),
            // EBUSY: a process was being forked or is still exiting; look again.
            Err(_) if attempt < 100 => std::thread::sleep(Duration::from_millis(10)),
            Err(err) => {
                return Err(anyhow!(err).context(format!("removing {}", path.display())));
            }
        }
    }
    Ok(moved)
}

fn write_pid(cgroup: &Path, pid: u32) -> std::io::Result<()> {
    let mut procs = OpenOptions::new().write(true).open(cgroup.join("cgroup.procs"))?;
    procs.write_all(pid.to_string().as_bytes())
}

fn procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `path` and every cgroup below it, children before parents.
fn subtree_bottom_up(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(subtree_bottom_up(&entry.path()));
            }
        }
    }
    out.push(path.to_path_buf());
    out
}

/// An emulation cgroup whose wsltrace is gone, emptied and removed.
#[derive(Debug)]
pub struct Stale {
    pub path: PathBuf,
    pub pid: u32,
    pub moved: Vec<u32>,
}

/// Finds `wsltrace-emulate-<pid>` cgroups whose wsltrace no longer runs (killed with SIGKILL,
/// so it could not clean up), anywhere in the hierarchy, and removes them. Processes still in
/// them are moved to the parent cgroup, not killed.
pub fn clean_stale(hierarchy: &Hierarchy) -> Vec<Result<Stale>> {
    let own = hierarchy.own_dir().unwrap_or_default();
    let mut found = Vec::new();
    find_named(&hierarchy.mount, 0, &mut found);
    found
        .into_iter()
        .filter(|(_, pid)| !is_live_wsltrace(*pid))
        // Never the cgroup wsltrace itself runs in (a nested run inside a stale one).
        .filter(|(path, _)| !own.starts_with(path))
        .map(|(path, pid)| {
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let moved = empty_and_remove(&path, &parent)?;
            Ok(Stale { path, pid, moved })
        })
        .collect()
}

fn find_named(dir: &Path, depth: u32, found: &mut Vec<(PathBuf, u32)>) {
    // Real hierarchies are a few levels deep; the bound keeps a pathological one cheap.
    if depth > 32 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let pid = entry.file_name().to_str().and_then(|n| n.strip_prefix(PREFIX)?.parse().ok());
        match pid {
            Some(pid) => found.push((path, pid)),
            None => find_named(&path, depth + 1, found),
        }
    }
}

/// Whether `pid` is a running wsltrace other than this one (this one has not made its cgroup
/// yet when it looks, so one with its pid is a leftover of an earlier process).
fn is_live_wsltrace(pid: u32) -> bool {
    if pid == std::process::id() || !crate::source::target::is_alive(pid) {
        return false;
    }
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    comm.trim() == "wsltrace"
        || exe.file_name().is_some_and(|n| n.to_string_lossy().starts_with("wsltrace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v2_mount_in_a_hybrid_layout() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let h = parse_mountinfo(text).unwrap();
        assert_eq!(h.mount, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(h.dir_of("/"), Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(h.dir_of("/user.slice/a"), Path::new("/sys/fs/cgroup/unified/user.slice/a"));
        assert_eq!(h.level_of(Path::new("/sys/fs/cgroup/unified")).unwrap(), 0);
        assert_eq!(h.level_of(Path::new("/sys/fs/cgroup/unified/user.slice/a")).unwrap(), 2);
    }

    #[test]
    fn a_mount_of_a_sub_cgroup_maps_paths_under_it() {
        let text = "50 1 0:30 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
        let h = parse_mountinfo(text).unwrap();
        assert_eq!(h.dir_of("/docker/abc/x"), Path::new("/sys/fs/cgroup/x"));
        assert!(parse_mountinfo("1 1 0:1 / /proc rw - proc proc rw").is_none());
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
