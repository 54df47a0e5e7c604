//! Namespaces from /proc, for kernels whose layout wsltrace could not resolve (no BTF), and
//! the initial namespaces events are compared with.

use std::collections::HashMap;

use crate::event::Namespaces;

/// Parses the inode out of a /proc/PID/ns/* link: `net:[4026531833]`.
pub fn parse_link(link: &str) -> Option<u32> {
    link.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

/// The namespaces of `pid` as /proc shows them now.
pub fn read(pid: u32) -> Option<Namespaces> {
    let inode = |kind: &str| {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
        parse_link(link.to_str()?)
    };
    Some(Namespaces {
        net: inode("net")?,
        mnt: inode("mnt")?,
        pid: inode("pid")?,
        user: inode("user")?,
        uts: inode("uts")?,
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

/// The initial namespaces: pid 1's when readable (they are not when pid 1 holds capabilities
/// this process lacks, as in some VMs and containers), else the kernel's fixed numbers.
pub fn initial() -> Option<Namespaces> {
    read(1).or(Some(KERNEL_INITIAL))
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
