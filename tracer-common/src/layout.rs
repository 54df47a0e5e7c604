//! Offsets of kernel struct members the programs follow.
//!
//! aya's Rust eBPF has no CO-RE relocations, so userspace resolves these from the running
//! kernel's BTF at start-up and hands them over as a global; the programs then follow the
//! pointers with bpf_probe_read_kernel.

/// Global holding a [`KernelLayout`].
pub const GLOBAL_LAYOUT: &str = "LAYOUT";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    pub _pad: u32,
}

const _: () = assert!(size_of::<KernelLayout>() == 32);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` u32 fields only, no padding, valid for any bit pattern.
unsafe impl aya::Pod for KernelLayout {}
