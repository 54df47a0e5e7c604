//! Facts about the current task, read by following kernel pointers at offsets resolved from
//! BTF by userspace (see tracer_common::layout).

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_get_current_task};
use tracer_common::layout::KernelLayout;

use crate::maps::LAYOUT;

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
