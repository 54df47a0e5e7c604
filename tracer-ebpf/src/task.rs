//! Facts about the current task, read by following kernel pointers at offsets resolved from
//! BTF by userspace (see tracer_common::layout).

use aya_ebpf::{
    Global,
    helpers::{
        bpf_probe_read_kernel,
        generated::{bpf_get_current_task, bpf_get_current_task_btf},
    },
};
use tracer_common::{layout::KernelLayout, record::NsInums};

use crate::{
    maps::LAYOUT,
    store::{put, put_all},
};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

/// The kernel layout the loader wrote, read field by field where used: `LAYOUT.load()` copied
/// all of its 47 words onto the stack in every program that follows a pointer.
#[inline(always)]
fn layout() -> &'static KernelLayout {
    // `Global` is a transparent wrapper of the value.
    let ptr: *const KernelLayout = (&LAYOUT as *const Global<KernelLayout>).cast();
    // Laundered through a volatile read: the static is written by the loader, not by this
    // code, and the compiler must not fold the reads to its initial value.
    // SAFETY: a read of a local; the pointer is to a static, valid for the program's life.
    unsafe { &*core::ptr::read_volatile(&ptr) }
}

#[inline(always)]
fn read<T: Copy>(addr: u64) -> Option<T> {
    // SAFETY: the helper validates the kernel address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// The current process's open-file array (`fdtable.fd`) and its size (`.max_fds`); `None`
/// when the fd table cannot be read.
#[inline(always)]
fn fd_table(l: &KernelLayout) -> Option<(u64, u64)> {
    if l.task_btf != 0 {
        return fd_table_btf(l);
    }
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task + u64::from(l.task_files))?;
    let at = files + u64::from(l.files_fdt);
    // `files_struct` embeds its first table (`fdtab`, 64 fds) right after the `fdt` pointer,
    // which points to it until the process opens more: one read gets the pointer and, when
    // it points just past itself, the table's `max_fds` (an int) and `fd`.
    let fdt: u64 = if l.fdt_max_fds == 0 && l.fdt_fd == 8 {
        let [fdt, max_fds, fd_array]: [u64; 3] = read(at)?;
        if fdt == at + 8 {
            return Some((fd_array, max_fds & 0xffff_ffff));
        }
        fdt
    } else {
        read(at)?
    };
    // `max_fds` (an int) and `fd` side by side, as in every kernel so far: one read for both.
    if l.fdt_fd == l.fdt_max_fds + 8 {
        let [max_fds, fd_array]: [u64; 2] = read(fdt + u64::from(l.fdt_max_fds))?;
        return Some((fd_array, max_fds & 0xffff_ffff));
    }
    let max_fds: u32 = read(fdt + u64::from(l.fdt_max_fds))?;
    let fd_array: u64 = read(fdt + u64::from(l.fdt_fd))?;
    Some((fd_array, u64::from(max_fds)))
}

/// [`fd_table`] by loads from the task `bpf_get_current_task_btf` gives: the verifier knows
/// each pointer's type from BTF and the offsets as constants (from the frozen `.rodata`), and
/// turns each load into one that yields 0 instead of faulting. `task.files`, `files.fdt` and
/// the table's fields are struct pointers and an int it can check; the table's `fd` is a
/// pointer to pointers, a plain number to it, so the file at an fd is read with the helper.
#[inline(always)]
fn fd_table_btf(l: &KernelLayout) -> Option<(u64, u64)> {
    // SAFETY: helper without arguments (5.11+; see `KernelLayout::task_btf`).
    let task = unsafe { bpf_get_current_task_btf() }.cast::<u8>().cast_const();
    // SAFETY: offsets of these fields from the running kernel's BTF; the verifier checks
    // each load against the field's type and makes it one that cannot fault.
    unsafe {
        let files = *task.add(l.task_files as usize).cast::<*const u8>();
        if files.is_null() {
            return None;
        }
        let fdt = *files.add(l.files_fdt as usize).cast::<*const u8>();
        if fdt.is_null() {
            return None;
        }
        let max_fds = *fdt.add(l.fdt_max_fds as usize).cast::<u32>();
        let fd_array = *fdt.add(l.fdt_fd as usize).cast::<u64>();
        Some((fd_array, u64::from(max_fds)))
    }
}

/// The `struct file *` at `fd` in the fd table `(fd_array, max_fds)` (0 for a closed or out
/// of range fd).
#[inline(always)]
fn table_file((fd_array, max_fds): (u64, u64), fd: u64) -> Option<u64> {
    if fd >= max_fds {
        return Some(0);
    }
    read(fd_array + fd * 8)
}

/// The `struct file *` at `fd` in the current process (0 for a closed or out of range fd);
/// `None` when the fd table cannot be read.
#[inline(always)]
fn fd_file(l: &KernelLayout, fd: u64) -> Option<u64> {
    table_file(fd_table(l)?, fd)
}

/// Whether the open file at `file` is a socket.
#[inline(always)]
fn is_socket(l: &KernelLayout, file: u64) -> Option<bool> {
    let inode: u64 = read(file + u64::from(l.file_inode))?;
    let mode: u16 = read(inode + u64::from(l.inode_mode))?;
    Some(mode & S_IFMT == S_IFSOCK)
}

/// Whether `fd` is an open socket of the current process; `None` when the layout is unknown.
#[inline(always)]
pub fn fd_is_socket(fd: u64) -> Option<bool> {
    let l = layout();
    if l.resolved == 0 {
        return None;
    }
    match fd_file(l, fd)? {
        0 => Some(false),
        file => is_socket(l, file),
    }
}

/// What fd `fd` of the current process is, as its close sees it.
pub enum FdKind {
    /// The fd table or the layout cannot be read.
    Unknown,
    /// A file, pipe... or no open fd.
    NotSocket,
    /// A socket: its `struct file *`, and its `struct sock *` where it was read on the way
    /// (0 otherwise: [`file_sock`] reads it).
    Socket { file: u64, sk: u64 },
}

/// Whether `fd` is a socket, its `struct file *` and, where this kernel's layout allows,
/// its `struct sock *`: what a close asks first.
#[inline(always)]
pub fn fd_kind(fd: u64) -> FdKind {
    let l = layout();
    if l.resolved == 0 {
        return FdKind::Unknown;
    }
    let file = match fd_file(l, fd) {
        None => return FdKind::Unknown,
        Some(0) => return FdKind::NotSocket,
        Some(file) => file,
    };
    if l.socket_inode != 0 {
        return socket_file(l, file);
    }
    match is_socket(l, file) {
        None => FdKind::Unknown,
        Some(false) => FdKind::NotSocket,
        Some(true) => FdKind::Socket { file, sk: 0 },
    }
}

/// [`fd_kind`] for the open file at `file`, where `KernelLayout::socket_inode` is known. A
/// socket file's private data is its `struct socket`, allocated with its inode right after
/// it (`struct socket_alloc`), and the socket points back to the file: one read of the two
/// side-by-side pointers of the file and one of the socket's `file` and `sk` tell a socket
/// and find its `struct sock`, where the inode's mode and then the socket's `sk` took three.
#[inline(always)]
fn socket_file(l: &KernelLayout, file: u64) -> FdKind {
    let Some([private, inode]) = read::<[u64; 2]>(file + u64::from(l.file_private_data)) else {
        return FdKind::Unknown;
    };
    if private == 0 || inode != private + u64::from(l.socket_inode) {
        return FdKind::NotSocket;
    }
    match read::<[u64; 2]>(private + u64::from(l.socket_file)) {
        None => FdKind::Unknown,
        Some([owner, sk]) if owner == file => FdKind::Socket { file, sk },
        Some(_) => FdKind::NotSocket,
    }
}

/// The `struct sock *` of the socket file at `file` (file -> private_data (`struct socket`) ->
/// sk); `None` when the layout lacks the offsets.
#[inline(always)]
pub fn file_sock(file: u64) -> Option<u64> {
    let l = layout();
    if l.resolved == 0 || l.file_private_data == 0 || l.socket_sk == 0 {
        return None;
    }
    let socket: u64 = read(file + u64::from(l.file_private_data)).filter(|&s| s != 0)?;
    read(socket + u64::from(l.socket_sk)).filter(|&sk: &u64| sk != 0)
}

/// The `struct sock *` of socket `(file, sk)` as [`fd_kind`] found it: `sk`, or read now.
#[inline(always)]
pub fn socket_sock(file: u64, sk: u64) -> Option<u64> {
    if sk != 0 { Some(sk) } else { file_sock(file) }
}

/// The `struct file *` and the `struct sock *` of socket `fd` of the current process
/// (fd -> file -> private_data (`struct socket`) -> sk); `None` when `fd` is no socket or the
/// layout lacks the offsets.
#[inline(always)]
pub fn fd_sock(fd: u64) -> Option<(u64, u64)> {
    match fd_kind(fd) {
        FdKind::Socket { file, sk } => Some((file, socket_sock(file, sk)?)),
        FdKind::Unknown | FdKind::NotSocket => None,
    }
}

/// `sk->sk_err` of the socket at `sk`: the error being reported, a positive errno.
#[inline(always)]
pub fn sock_error(sk: u64) -> Option<u32> {
    let l = layout();
    if l.resolved == 0 || l.sock_err == 0 {
        return None;
    }
    read::<i32>(sk + u64::from(l.sock_err)).filter(|&e| e > 0).map(|e| e as u32)
}

/// The inode numbers of open files `a` and `b` of the current process (a socketpair's two
/// ends), through one read of the fd table.
#[inline(always)]
pub fn fd_inodes(a: u64, b: u64) -> Option<(u64, u64)> {
    let l = layout();
    if l.resolved == 0 || l.inode_ino == 0 {
        return None;
    }
    let table = fd_table(l)?;
    let ino = |fd: u64| -> Option<u64> {
        let file = table_file(table, fd).filter(|&f| f != 0)?;
        let inode: u64 = read(file + u64::from(l.file_inode))?;
        read(inode + u64::from(l.inode_ino))
    };
    Some((ino(a)?, ino(b)?))
}

/// The local end of the socket at `sk` (`struct sock *`): family, port (host order) and
/// address (IPv4 in the first 4 bytes). `None` when unknown or not an IP socket.
#[inline(always)]
pub fn local_end(sk: u64) -> Option<(u16, u16, [u8; 16])> {
    let l = layout();
    if l.resolved == 0 || l.sk_num == 0 || sk == 0 {
        return None;
    }
    // `sock_common` keeps the IPv4 address, the port and the family close together
    // (`skc_rcv_saddr`, `skc_hash`, `skc_dport`, `skc_num`, `skc_family`, as in every kernel
    // so far): one read for the three where the layout is that one.
    let together = l.sk_num == l.sk_rcv_saddr + 10 && l.sk_family == l.sk_num + 2;
    let (family, port, v4) = if together {
        let b: [u8; 14] = read(sk + u64::from(l.sk_rcv_saddr))?;
        (
            u16::from_ne_bytes([b[12], b[13]]),
            u16::from_ne_bytes([b[10], b[11]]),
            [b[0], b[1], b[2], b[3]],
        )
    } else {
        (read(sk + u64::from(l.sk_family))?, read(sk + u64::from(l.sk_num))?, [0; 4])
    };
    // Refused before connect returned (on loopback the RST comes at once): the port was
    // released, and the socket has no local end any more.
    if port == 0 {
        return None;
    }
    let ip = match family {
        AF_INET => {
            let v4: [u8; 4] = if together { v4 } else { read(sk + u64::from(l.sk_rcv_saddr))? };
            [v4[0], v4[1], v4[2], v4[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        }
        AF_INET6 => read(sk + u64::from(l.sk_v6_rcv_saddr))?,
        _ => return None,
    };
    Some((family, port, ip))
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// The current task's exit status (`task_struct.exit_code`, as wait(2) reports it), once
/// do_exit has set it; `None` when the layout is unknown.
#[inline(always)]
pub fn exit_status() -> Option<u32> {
    let l = layout();
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
    let l = layout();
    let (mut net, mut mnt, mut uts, mut user, mut pid_ns) = (0, 0, 0, 0, 0);
    if wanted && l.resolved != 0 {
        // SAFETY: helper without arguments.
        let task = unsafe { bpf_get_current_task() };
        if let Some(nsproxy) = read::<u64>(task + u64::from(l.task_nsproxy)).filter(|&p| p != 0) {
            net = inum(l, read(nsproxy + u64::from(l.nsproxy_net)), l.net_common);
            mnt = inum(l, read(nsproxy + u64::from(l.nsproxy_mnt)), l.mnt_common);
            uts = inum(l, read(nsproxy + u64::from(l.nsproxy_uts)), l.uts_common);
        }
        if let Some(cred) = read::<u64>(task + u64::from(l.task_cred)).filter(|&p| p != 0) {
            user = inum(l, read(cred + u64::from(l.cred_user_ns)), l.user_common);
        }
        // The active pid namespace (what /proc/PID/ns/pid shows), not pid_ns_for_children.
        if let Some(pid) = read::<u64>(task + u64::from(l.task_thread_pid)).filter(|&p| p != 0)
            && let Some(level) = read::<u32>(pid + u64::from(l.pid_level))
        {
            // Nesting is limited to 32 levels (MAX_PID_NS_LEVEL).
            let upid =
                pid + u64::from(l.pid_numbers) + u64::from(level & 0x3f) * u64::from(l.upid_size);
            pid_ns = inum(l, read(upid + u64::from(l.upid_ns)), l.pid_common);
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
    let l = layout();
    if l.resolved == 0 {
        return None;
    }
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let cred = read::<u64>(task + u64::from(l.task_cred)).filter(|&cred| cred != 0)?;
    read::<u64>(cred + u64::from(l.cred_cap_effective))
}

/// The field of the current task at the offset `offset` picks from the layout; `None` when
/// that offset is unknown (0).
#[inline(always)]
fn task_field<T: Copy>(offset: impl Fn(&KernelLayout) -> u32) -> Option<T> {
    let l = layout();
    let offset = offset(l);
    if l.resolved == 0 || offset == 0 {
        return None;
    }
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    read(task + u64::from(offset))
}

/// When the current task started (CLOCK_MONOTONIC ns, `task->start_time`).
#[inline(always)]
pub fn start_time() -> Option<u64> {
    task_field(|l| l.task_start_time)
}

/// Whether the current task runs under seccomp (`task->seccomp.mode`: 1 strict, 2 filter).
#[inline(always)]
pub fn under_seccomp() -> Option<bool> {
    task_field::<i32>(|l| l.task_seccomp_mode).map(|mode| mode != 0)
}

/// x86_64 user code and stack segment selectors (`__USER_CS`, `__USER_DS`), as the entry code
/// saves them in `pt_regs` (the low 16 bits: FRED keeps more bits above them).
const USER_CS: u64 = 0x33;
const USER_DS: u64 = 0x2b;

/// The current syscall's six arguments, from the user registers the entry code saved at the
/// top of the task's kernel stack (`task_pt_regs`), written into `out`; false (and `out`
/// untouched) when they cannot be found.
///
/// An out-parameter the caller zeroes, not an `Option<[u64; 6]>`: the compiler loaded the
/// payload of a `None` from stack words never written, which kernels before 6.4 reject
/// ("invalid read from stack"; later ones allow root to read uninitialised stack).
///
/// `bpf_task_pt_regs` (5.15+) is not used: the programs must also work on 5.10 (Windows 10's
/// WSL2 kernel), and a refused call is rare enough for one way on all. `task_pt_regs(task)` is
/// `task->stack + THREAD_SIZE - TOP_OF_KERNEL_STACK_PADDING - sizeof(struct pt_regs)`, and
/// BTF gives neither constant: THREAD_SIZE is 16 KiB (32 KiB with KASAN), the padding 0 (16
/// bytes with CONFIG_X86_FRED, 6.9+). Each of the four places is tried; the frame is the one
/// holding this syscall's number in `orig_ax` and the user selectors in `cs` and `ss`: words
/// 16 bytes off the real frame are other registers (`cs` would read the user `sp` or
/// `orig_ax`, `ss` the flags), and 16 KiB off is another part of the stack, or a guard page,
/// where the read fails.
#[inline(always)]
pub fn saved_args(nr: u64, out: &mut [u64; 6]) -> bool {
    let l = layout();
    if l.resolved == 0 || l.task_stack == 0 || l.regs_size == 0 {
        return false;
    }
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let Some(stack) = read::<u64>(task + u64::from(l.task_stack)).filter(|&s| s != 0) else {
        return false;
    };
    // Offsets copied out one by one: a reference to the whole stack copy of the layout made
    // the compiler store words the verifier saw as uninitialised.
    let check = [l.regs_orig_ax, l.regs_cs, l.regs_ss];
    let [a0, a1, a2, a3, a4, a5] = l.regs_args;
    let top = stack - u64::from(l.regs_size);
    let Some(regs) = frame(check, nr, top + (16 << 10))
        .or_else(|| frame(check, nr, top + (16 << 10) - 16))
        .or_else(|| frame(check, nr, top + (32 << 10)))
        .or_else(|| frame(check, nr, top + (32 << 10) - 16))
    else {
        return false;
    };
    let arg = |offset: u32| read::<u64>(regs + u64::from(offset)).unwrap_or(0);
    put_all(out, &[arg(a0), arg(a1), arg(a2), arg(a3), arg(a4), arg(a5)]);
    true
}

/// `regs` if it is the saved user frame of syscall `nr` (see [`saved_args`]).
#[inline(always)]
fn frame([orig_ax, cs, ss]: [u32; 3], nr: u64, regs: u64) -> Option<u64> {
    let word = |offset: u32| read::<u64>(regs + u64::from(offset));
    let real =
        word(orig_ax)? == nr && word(cs)? & 0xffff == USER_CS && word(ss)? & 0xffff == USER_DS;
    real.then_some(regs)
}
