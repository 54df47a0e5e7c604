//! Facts about the current task, read by following kernel pointers at offsets resolved from
//! BTF by userspace (see tracer_common::layout).

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_get_current_task};
use tracer_common::{layout::KernelLayout, record::NsInums};

use crate::{maps::LAYOUT, store::put};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

#[inline(always)]
fn read<T: Copy>(addr: u64) -> Option<T> {
    // SAFETY: the helper validates the kernel address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// Whether `fd` is an open socket of the current process; `None` when the layout is unknown.
#[inline(always)]
pub fn fd_is_socket(fd: u64) -> Option<bool> {
    let l: KernelLayout = LAYOUT.load();
    if l.resolved == 0 {
        return None;
    }
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task + u64::from(l.task_files))?;
    let fdt: u64 = read(files + u64::from(l.files_fdt))?;
    let max_fds: u32 = read(fdt + u64::from(l.fdt_max_fds))?;
    if fd >= u64::from(max_fds) {
        return Some(false);
    }
    let fd_array: u64 = read(fdt + u64::from(l.fdt_fd))?;
    let file: u64 = read(fd_array + fd * 8)?;
    if file == 0 {
        return Some(false);
    }
    let inode: u64 = read(file + u64::from(l.file_inode))?;
    let mode: u16 = read(inode + u64::from(l.inode_mode))?;
    Some(mode & S_IFMT == S_IFSOCK)
}

/// The current task's exit status (`task_struct.exit_code`, as wait(2) reports it), once
/// do_exit has set it; `None` when the layout is unknown.
#[inline(always)]
pub fn exit_status() -> Option<u32> {
    let l: KernelLayout = LAYOUT.load();
    if l.resolved == 0 {
        return None;
    }
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    read(task + u64::from(l.task_exit_code))
}

/// The `inum` of the `ns_common` embedded at `common` in the namespace struct at `ns`.
#[inline(always)]
fn inum(l: &KernelLayout, ns: Option<u64>, common: u32) -> u32 {
    ns.filter(|&p| p != 0)
        .and_then(|p| read::<u32>(p + u64::from(common) + u64::from(l.common_inum)))
        .unwrap_or(0)
}

/// Writes the current task's namespaces, as /proc/self/ns/* would show them, into `ns`;
/// zeros where unknown or not `wanted`.
#[inline(always)]
pub fn namespaces(ns: &mut NsInums, wanted: bool) {
    let l: KernelLayout = LAYOUT.load();
    let (mut net, mut mnt, mut uts, mut user, mut pid_ns) = (0, 0, 0, 0, 0);
    if wanted && l.resolved != 0 {
        // SAFETY: helper without arguments.
        let task = unsafe { bpf_get_current_task() };
        if let Some(nsproxy) = read::<u64>(task + u64::from(l.task_nsproxy)).filter(|&p| p != 0) {
            net = inum(&l, read(nsproxy + u64::from(l.nsproxy_net)), l.net_common);
            mnt = inum(&l, read(nsproxy + u64::from(l.nsproxy_mnt)), l.mnt_common);
            uts = inum(&l, read(nsproxy + u64::from(l.nsproxy_uts)), l.uts_common);
        }
        if let Some(cred) = read::<u64>(task + u64::from(l.task_cred)).filter(|&p| p != 0) {
            user = inum(&l, read(cred + u64::from(l.cred_user_ns)), l.user_common);
        }
        // The active pid namespace (what /proc/PID/ns/pid shows), not pid_ns_for_children.
        if let Some(pid) = read::<u64>(task + u64::from(l.task_thread_pid)).filter(|&p| p != 0)
            && let Some(level) = read::<u32>(pid + u64::from(l.pid_level))
        {
            // Nesting is limited to 32 levels (MAX_PID_NS_LEVEL).
            let upid =
                pid + u64::from(l.pid_numbers) + u64::from(level & 0x3f) * u64::from(l.upid_size);
            pid_ns = inum(&l, read(upid + u64::from(l.upid_ns)), l.pid_common);
        }
    }
    put(&mut ns.net, net);
    put(&mut ns.mnt, mnt);
    put(&mut ns.pid, pid_ns);
    put(&mut ns.user, user);
    put(&mut ns.uts, uts);
    put(&mut ns._pad, 0);
}

/// The current task's effective capabilities (kernel_cap_t: one u64 since 6.3, two u32 words
/// before, which read as the same little-endian u64).
#[inline(always)]
pub fn capabilities() -> Option<u64> {
    let l: KernelLayout = LAYOUT.load();
    if l.resolved == 0 {
        return None;
    }
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let cred = read::<u64>(task + u64::from(l.task_cred)).filter(|&cred| cred != 0)?;
    read::<u64>(cred + u64::from(l.cred_cap_effective))
}
