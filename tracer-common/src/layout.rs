//! Offsets of kernel struct members the programs follow.
//!
//! aya's Rust eBPF has no CO-RE relocations, so userspace resolves these from the running
//! kernel's BTF at start-up and hands them over as a global; the programs then follow the
//! pointers with bpf_probe_read_kernel.

/// Global holding a [`KernelLayout`].
pub const GLOBAL_LAYOUT: &str = "LAYOUT";

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// Non-zero when every offset below was resolved; otherwise the programs do without.
    pub resolved: u32,
    /// `task_struct.files`
    pub task_files: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.max_fds`
    pub fdt_max_fds: u32,
    /// `fdtable.fd`
    pub fdt_fd: u32,
    /// `file.f_inode`
    pub file_inode: u32,
    /// `inode.i_mode`
    pub inode_mode: u32,
    /// `task_struct.nsproxy`, `.cred`, `.thread_pid`
    pub task_nsproxy: u32,
    pub task_cred: u32,
    pub task_thread_pid: u32,
    /// `nsproxy.net_ns`, `.mnt_ns`, `.uts_ns`
    pub nsproxy_net: u32,
    pub nsproxy_mnt: u32,
    pub nsproxy_uts: u32,
    /// Offset of the embedded `struct ns_common` in `net`, `mnt_namespace`, `uts_namespace`,
    /// `pid_namespace` and `user_namespace`.
    pub net_common: u32,
    pub mnt_common: u32,
    pub uts_common: u32,
    pub pid_common: u32,
    pub user_common: u32,
    /// `ns_common.inum`: the inode number shown in /proc/PID/ns/*.
    pub common_inum: u32,
    /// `cred.user_ns`, `cred.cap_effective`
    pub cred_user_ns: u32,
    pub cred_cap_effective: u32,
    /// `pid.level`, `pid.numbers`, `sizeof(struct upid)`, `upid.ns`: the active pid namespace
    /// is `thread_pid->numbers[thread_pid->level].ns`.
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_ns: u32,
    /// `task_struct.exit_code`: the wait(2) status, set before `sched_process_exit` fires.
    pub task_exit_code: u32,
}

const _: () = assert!(size_of::<KernelLayout>() == 104);

impl KernelLayout {
    /// What the programs start with: no offsets, nothing followed.
    pub const UNRESOLVED: KernelLayout = KernelLayout {
        resolved: 0,
        task_files: 0,
        files_fdt: 0,
        fdt_max_fds: 0,
        fdt_fd: 0,
        file_inode: 0,
        inode_mode: 0,
        task_nsproxy: 0,
        task_cred: 0,
        task_thread_pid: 0,
        nsproxy_net: 0,
        nsproxy_mnt: 0,
        nsproxy_uts: 0,
        net_common: 0,
        mnt_common: 0,
        uts_common: 0,
        pid_common: 0,
        user_common: 0,
        common_inum: 0,
        cred_user_ns: 0,
        cred_cap_effective: 0,
        pid_level: 0,
        pid_numbers: 0,
        upid_size: 0,
        upid_ns: 0,
        task_exit_code: 0,
    };
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` u32 fields only, no padding, valid for any bit pattern.
unsafe impl aya::Pod for KernelLayout {}
