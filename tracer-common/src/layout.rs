//! Offsets of kernel struct members the programs follow.
//!
//! aya's Rust eBPF has no CO-RE relocations, so userspace resolves these from the running
//! kernel's BTF at start-up and hands them over as a global; the programs then follow the
//! pointers with bpf_probe_read_kernel, or load them directly where the verifier knows the
//! pointer's type (see `task_btf`).

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
    /// What reads a call refused before `sys_enter` (see `FLAG_REFUSED`); each is 0 when this
    /// kernel lacks it. `task_struct.start_time` (CLOCK_MONOTONIC ns), `.stack` and
    /// `.seccomp.mode`.
    pub task_start_time: u32,
    pub task_stack: u32,
    pub task_seccomp_mode: u32,
    /// `sizeof(struct pt_regs)` (0: the saved user registers are not read) and the offsets in
    /// it of the syscall's six argument registers (x86_64: di, si, dx, r10, r8, r9), of
    /// `orig_ax` (the syscall number) and of `cs` and `ss` (the user segments: checked to
    /// tell the real frame from other stack words).
    pub regs_size: u32,
    pub regs_args: [u32; 6],
    pub regs_orig_ax: u32,
    pub regs_cs: u32,
    pub regs_ss: u32,
    /// What reads the local end a connect gave its socket and the inodes of a socketpair
    /// (see `FLAG_FROM_SOCKET`); all 0 when this kernel lacks one. `inode.i_ino`,
    /// `file.private_data` (the `struct socket` of a socket file), `socket.sk`, and in
    /// `struct sock` (its `sock_common`): `skc_family`, `skc_num` (local port, host order),
    /// `skc_rcv_saddr` (IPv4, network order), `skc_v6_rcv_saddr`.
    pub inode_ino: u32,
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub sk_family: u32,
    pub sk_num: u32,
    pub sk_rcv_saddr: u32,
    pub sk_v6_rcv_saddr: u32,
    /// `sock.sk_err`: the error a socket error report is about (0 when this kernel lacks it:
    /// socket errors are then not reported).
    pub sock_err: u32,
    /// What tells a socket file in the reads that also find its `struct sock` (see the
    /// programs' `fd_kind`), both 0 where this kernel's layout does not allow it:
    /// `offsetof(struct socket_alloc, vfs_inode)`, where a socket's inode follows its
    /// `struct socket`, and `socket.file`, the socket's own file. Set only where
    /// `file.f_inode` follows `file.private_data` and `socket.sk` follows `socket.file`.
    pub socket_inode: u32,
    pub socket_file: u32,
    /// Non-zero where the kernel has `bpf_get_current_task_btf` (5.11 and later): the fd table
    /// is then reached from the task by plain loads, which the verifier checks against BTF
    /// (a few ns each, where a `bpf_probe_read_kernel` costs ~45 ns). On 5.10 it is 0, and
    /// the verifier, reading it as a constant from the frozen `.rodata`, drops that path, helper
    /// call included, as dead code.
    pub task_btf: u32,
}

const _: () = assert!(size_of::<KernelLayout>() == 200);

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
        task_start_time: 0,
        task_stack: 0,
        task_seccomp_mode: 0,
        regs_size: 0,
        regs_args: [0; 6],
        regs_orig_ax: 0,
        regs_cs: 0,
        regs_ss: 0,
        inode_ino: 0,
        file_private_data: 0,
        socket_sk: 0,
        sk_family: 0,
        sk_num: 0,
        sk_rcv_saddr: 0,
        sk_v6_rcv_saddr: 0,
        sock_err: 0,
        socket_inode: 0,
        socket_file: 0,
        task_btf: 0,
    };
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` u32 fields only, no padding, valid for any bit pattern.
unsafe impl aya::Pod for KernelLayout {}
