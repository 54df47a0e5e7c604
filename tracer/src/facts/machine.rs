//! The machine: kernel, BTF, tracefs, cgroup v2, privileges and the eBPF program types wsltrace
//! needs. Parsers take file contents; `observe` reads the real files.

use std::path::Path;

use procfs::{FromBufRead as _, process::MountInfos};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `uname -r`, e.g. `6.18.0` or `5.15.167.4-microsoft-standard-WSL2`.
    pub kernel_release: String,
    /// `/sys/kernel/btf/vmlinux` exists.
    pub btf: bool,
    pub tracefs: Tracefs,
    /// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid
    /// layouts); `None` without cgroup v2 (cgroup socket programs cannot attach).
    pub cgroup2: Option<String>,
    pub privileges: Privileges,
    pub program_types: ProgramTypes,
    /// `syscalls:sys_enter_connect` exists (CONFIG_FTRACE_SYSCALLS); unknown while tracefs is
    /// not mounted, or not readable (it is mode 0700: root only).
    pub syscall_tracepoints: Option<bool>,
    /// `net.ipv4.ip_unprivileged_port_start` in this network namespace (1024 by default).
    pub ip_unprivileged_port_start: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracefs {
    /// Where tracefs is mounted, if it is.
    pub mounted_at: Option<String>,
    /// The kernel has tracefs (`/proc/filesystems`): root can mount it.
    pub supported: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Privileges {
    pub uid: u32,
    pub euid: u32,
    /// The effective capabilities that matter to wsltrace and to the servers it looks at.
    pub capabilities: Vec<String>,
}

impl Privileges {
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }

    /// Loading and attaching tracing programs: CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON.
    pub fn can_trace(&self) -> bool {
        self.has("CAP_SYS_ADMIN") || (self.has("CAP_BPF") && self.has("CAP_PERFMON"))
    }
}

/// Whether the kernel loads each program type wsltrace uses; `None` when it could not be
/// probed (probing loads a trivial program, which needs the same privileges as tracing).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramTypes {
    pub tracepoint: Option<bool>,
    pub cgroup_sock_addr: Option<bool>,
    pub cgroup_sockopt: Option<bool>,
    /// Helpers the programs of `wsltrace emulate` call that this kernel does not give them,
    /// with the quirks that need them (empty: every quirk runs); probed by `doctor` only,
    /// `None` when not (and in recordings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulate_missing: Option<Vec<crate::emulate::features::MissingHelper>>,
}

/// The names of the relevant capabilities set in a `CapEff` mask.
pub fn capability_names(mask: u64) -> Vec<String> {
    crate::decode::names::CAPABILITIES
        .iter()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

/// `CAP_NET_BIND_SERVICE` is in a `CapEff` mask.
pub fn has_net_bind_service(mask: u64) -> bool {
    mask & (1 << 10) != 0
}

fn mounts(mountinfo: &str) -> Vec<procfs::process::MountInfo> {
    MountInfos::from_buf_read(mountinfo.as_bytes()).map(|m| m.0).unwrap_or_default()
}

/// tracefs from `/proc/self/mountinfo` and `/proc/filesystems`.
pub fn tracefs(mountinfo: &str, filesystems: &str) -> Tracefs {
    let mounted_at = mounts(mountinfo)
        .into_iter()
        .find(|m| m.fs_type == "tracefs")
        .map(|m| m.mount_point.display().to_string());
    let supported = filesystems.lines().any(|l| l.split_whitespace().last() == Some("tracefs"));
    Tracefs { mounted_at, supported }
}

/// The cgroup v2 mount point from `/proc/self/mountinfo`.
pub fn cgroup2(mountinfo: &str) -> Option<String> {
    mounts(mountinfo)
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point.display().to_string())
}

/// A one-number file such as `/proc/sys/net/ipv4/ip_unprivileged_port_start`.
pub fn parse_number(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// Reads the running machine.
pub fn observe() -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let mountinfo = read("/proc/self/mountinfo");
    let tracefs = tracefs(&mountinfo, &read("/proc/filesystems"));
    let syscall_tracepoints = tracefs.mounted_at.as_ref().and_then(|root| {
        match std::fs::metadata(Path::new(root).join("events/syscalls/sys_enter_connect")) {
            Ok(meta) => Some(meta.is_dir()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some(false),
            // Permission denied: tracefs is root's; what it holds is unknown, not absent.
            Err(_) => None,
        }
    });
    let status = procfs::process::Process::myself().and_then(|p| p.status()).ok();
    let privileges = Privileges {
        uid: nix::unistd::getuid().as_raw(),
        euid: nix::unistd::geteuid().as_raw(),
        capabilities: status.map(|s| capability_names(s.capeff)).unwrap_or_default(),
    };
    Machine {
        kernel_release: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        cgroup2: cgroup2(&mountinfo),
        program_types: probe_program_types(&privileges),
        tracefs,
        privileges,
        syscall_tracepoints,
        ip_unprivileged_port_start: parse_number(&read(
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
        )),
    }
}

/// Asks the kernel to load a trivial program of each type (what `bpftool feature probe` does).
fn probe_program_types(privileges: &Privileges) -> ProgramTypes {
    use aya::programs::ProgramType;
    if !privileges.can_trace() {
        return ProgramTypes::default();
    }
    let probe = |t| aya::sys::is_program_supported(t).ok();
    ProgramTypes {
        tracepoint: probe(ProgramType::TracePoint),
        cgroup_sock_addr: probe(ProgramType::CgroupSockAddr),
        cgroup_sockopt: probe(ProgramType::CgroupSockopt),
        emulate_missing: None,
    }
}

/// What `doctor` adds to the probes (a trace has no use for it, and its recording stays as
/// it was): the helpers `wsltrace emulate`'s programs would miss here.
pub fn probe_emulation(machine: &mut Machine) {
    if !machine.privileges.can_trace() {
        return;
    }
    machine.program_types.emulate_missing =
        crate::emulate::features::catalogue_missing(crate::source::kernel::PROGRAMS)
            .inspect_err(|err| {
                tracing::debug!("probing the helpers of emulate's programs: {err:#}")
            })
            .ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    // Debian bookworm on kernel 6.18, hybrid cgroups, tracefs mounted by wsltrace.
    const MOUNTINFO_DEBIAN: &str = "\
22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
41 22 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:19 - tracefs tracefs rw
";

    // WSL2 (Ubuntu 24.04, systemd on): cgroup v2 only, tracefs not mounted, C: over 9p.
    const MOUNTINFO_WSL2: &str = "\
61 66 0:57 / /sys rw,nosuid,nodev,noexec,noatime shared:15 - sysfs sysfs rw
68 61 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
90 66 0:73 / /mnt/c rw,noatime shared:47 - 9p C:\\134 rw,dirsync,aname=drvfs;path=C:\\;uid=1000;gid=1000;symlinkroot=/mnt/,mmap,access=client,msize=65536,trans=fd,rfd=5,wfd=5
";

    const FILESYSTEMS: &str = "nodev\tsysfs\nnodev\ttmpfs\nnodev\ttracefs\n\text4\n";

    #[test]
    fn tracefs_and_cgroup2() {
        assert_eq!(
            tracefs(MOUNTINFO_DEBIAN, FILESYSTEMS),
            Tracefs { mounted_at: Some("/sys/kernel/tracing".into()), supported: true }
        );
        assert_eq!(
            tracefs(MOUNTINFO_WSL2, FILESYSTEMS),
            Tracefs { mounted_at: None, supported: true }
        );
        assert!(!tracefs("", "nodev\tsysfs\n").supported);
        assert_eq!(cgroup2(MOUNTINFO_DEBIAN).as_deref(), Some("/sys/fs/cgroup/unified"));
        assert_eq!(cgroup2(MOUNTINFO_WSL2).as_deref(), Some("/sys/fs/cgroup"));
        assert_eq!(cgroup2(""), None);
    }

    #[test]
    fn capabilities() {
        // CapEff of root on kernel 6.18 (41 capabilities).
        let root = capability_names(0x000001ffffffffff);
        assert!(
            root.iter().any(|c| c == "CAP_BPF")
                && root.len() == crate::decode::names::CAPABILITIES.len()
        );
        // A server given only CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep).
        assert_eq!(capability_names(0x400), ["CAP_NET_BIND_SERVICE"]);
        assert!(has_net_bind_service(0x400) && !has_net_bind_service(0));
        let user = Privileges { uid: 1000, euid: 1000, capabilities: vec![] };
        assert!(!user.can_trace());
        let bpf = Privileges { capabilities: capability_names((1 << 38) | (1 << 39)), ..user };
        assert!(bpf.can_trace());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("1024\n"), Some(1024));
        assert_eq!(parse_number(""), None);
    }

    /// The running machine, as every test machine has it: root, BTF, cgroup v2.
    #[test]
    fn observes_this_machine() {
        let m = observe();
        assert!(!m.kernel_release.is_empty());
        assert!(m.btf);
        assert!(m.cgroup2.is_some());
        assert!(m.privileges.can_trace());
        assert_eq!(m.program_types.tracepoint, Some(true));
        assert_eq!(m.program_types.cgroup_sock_addr, Some(true));
        assert!(m.ip_unprivileged_port_start.is_some());
    }
}
