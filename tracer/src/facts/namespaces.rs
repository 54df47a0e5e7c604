//! Namespaces from /proc, for kernels whose layout wsltrace could not resolve (no BTF), and
//! the initial namespaces events are compared with.

use std::collections::{BTreeMap, HashMap};

use crate::event::Namespaces;

/// `net:[4026531833]` -> `("net", 4026531833)`.
pub fn parse_kind_link(link: &str) -> Option<(&str, u32)> {
    let (kind, rest) = link.split_once(":[")?;
    Some((kind, rest.strip_suffix(']')?.parse().ok()?))
}

/// Parses the inode out of a /proc/PID/ns/* link: `net:[4026531833]`.
pub fn parse_link(link: &str) -> Option<u32> {
    parse_kind_link(link).map(|(_, inode)| inode)
}

/// Every namespace of `pid` (net, mnt, pid, user, uts, ipc, cgroup, time...) as kind -> inode.
pub fn links(pid: u32) -> std::io::Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/ns"))? {
        let target = std::fs::read_link(entry?.path())?;
        if let Some((kind, inode)) = parse_kind_link(&target.to_string_lossy()) {
            out.insert(kind.to_owned(), inode);
        }
    }
    Ok(out)
}

/// The namespaces of `pid` as /proc shows them now.
pub fn read(pid: u32) -> Option<Namespaces> {
    from_links(&links(pid).ok()?)
}

fn from_links(links: &BTreeMap<String, u32>) -> Option<Namespaces> {
    Some(Namespaces {
        net: *links.get("net")?,
        mnt: *links.get("mnt")?,
        pid: *links.get("pid")?,
        user: *links.get("user")?,
        uts: *links.get("uts")?,
    })
}

/// The initial namespaces' inode numbers are fixed by the kernel (include/linux/proc_ns.h:
/// PROC_NET_INIT_INO and friends).
pub const KERNEL_INITIAL: Namespaces = Namespaces {
    net: 0xEFFF_FFF9,
    mnt: 0xEFFF_FFF8,
    pid: 0xEFFF_FFFC,
    user: 0xEFFF_FFFD,
    uts: 0xEFFF_FFFE,
};

/// The namespaces the system started in, and where they were read: init's (pid 1); where
/// init's cannot be read (an init holding capabilities this process lacks, some sandboxes),
/// kthreadd's, since kernel threads always live in the initial namespaces.
pub fn initial_links() -> Option<(BTreeMap<String, u32>, &'static str)> {
    if let Ok(ns) = links(1) {
        return Some((ns, "/proc/1/ns"));
    }
    let kthreadd = procfs::process::Process::new(2).and_then(|p| p.status()).ok()?;
    if kthreadd.name != "kthreadd" || kthreadd.ppid != 0 {
        return None;
    }
    links(2).ok().map(|ns| (ns, "/proc/2/ns (kthreadd)"))
}

/// The initial namespaces ([`initial_links`]), else the kernel's fixed numbers.
pub fn initial() -> Option<Namespaces> {
    initial_links().and_then(|(links, _)| from_links(&links)).or(Some(KERNEL_INITIAL))
}

/// /proc look-ups cached per process (they cost five readlinks).
#[derive(Default)]
pub struct ProcNamespaces {
    cache: HashMap<u32, Option<Namespaces>>,
}

impl ProcNamespaces {
    pub fn of(&mut self, pid: u32) -> Option<Namespaces> {
        *self.cache.entry(pid).or_insert_with(|| read(pid))
    }

    pub fn forget(&mut self, pid: u32) {
        self.cache.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_links() {
        assert_eq!(
            parse_kind_link("pid_for_children:[4026531836]"),
            Some(("pid_for_children", 4026531836))
        );
        assert_eq!(parse_kind_link("net:[x]"), None);
        assert_eq!(parse_kind_link("/dev/null"), None);
        assert_eq!(parse_link("net:[4026531833]"), Some(4026531833));
        assert_eq!(parse_link("pid_for_children:[4026531836]"), Some(4026531836));
        assert_eq!(parse_link("garbage"), None);
    }

    /// This test process runs in the initial namespaces, whose numbers the kernel fixes.
    #[test]
    fn initial_namespaces_have_the_kernels_numbers() {
        assert_eq!(read(std::process::id()), Some(KERNEL_INITIAL));
        assert_eq!(initial(), Some(KERNEL_INITIAL));
    }

    #[test]
    fn reads_our_own() {
        let ours = read(std::process::id()).expect("/proc/self/ns");
        let link = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_eq!(Some(ours.net), parse_link(link.to_str().unwrap()));
    }
}
