//! Kernel struct layouts from the running kernel's BTF (/sys/kernel/btf/vmlinux).

use std::{cell::RefCell, collections::HashMap, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use btf_rs::{Backend, Btf, Type};
use tracer_common::layout::KernelLayout;

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The offsets the programs need, or `None` (with the reason logged) when this kernel has no
/// BTF: wsltrace then does without what they give.
pub fn kernel_layout() -> Option<KernelLayout> {
    if !Path::new(VMLINUX).exists() {
        tracing::warn!(
            "{VMLINUX} is missing (kernel built without CONFIG_DEBUG_INFO_BTF): close() is traced for every fd, not just sockets"
        );
        return None;
    }
    match open_vmlinux().and_then(|btf| resolve(&Structs::with(&btf, LAYOUT_STRUCTS)?)) {
        Ok(layout) => Some(layout),
        Err(err) => {
            tracing::warn!(
                "cannot read kernel struct layouts from {VMLINUX} ({err:#}): close() is traced for every fd"
            );
            None
        }
    }
}

/// The running kernel's BTF. Mmap first: only the few types needed are parsed (a full parse
/// took 140 ms at start-up). Kernels before 6.16 cannot mmap the sysfs file (ENODEV): there
/// it is read whole and parsed from memory (btf-rs's own file backend seeks the file for
/// every type, tens of thousands of syscalls).
pub fn open_vmlinux() -> Result<Btf> {
    match Btf::from_file_with_backend(VMLINUX, Backend::Mmap) {
        Ok(btf) => Ok(btf),
        Err(_) => {
            let bytes = std::fs::read(VMLINUX).with_context(|| format!("reading {VMLINUX}"))?;
            Ok(Btf::from_bytes(&bytes)?)
        }
    }
}

/// The structs `resolve` reads.
const LAYOUT_STRUCTS: &[&str] = &[
    "task_struct",
    "files_struct",
    "fdtable",
    "file",
    "inode",
    "nsproxy",
    "net",
    "mnt_namespace",
    "uts_namespace",
    "pid_namespace",
    "user_namespace",
    "ns_common",
    "cred",
    "pid",
    "upid",
    "seccomp",
    "pt_regs",
    "socket",
    "socket_alloc",
    "sock",
    "sock_common",
];

fn resolve(btf: &Structs<'_>) -> Result<KernelLayout> {
    let off = |strukt: &str, member: &str| -> Result<u32> {
        btf.member_offset(strukt, member).with_context(|| format!("{strukt}.{member}"))
    };
    let layout = KernelLayout {
        resolved: 1,
        task_files: off("task_struct", "files")?,
        files_fdt: off("files_struct", "fdt")?,
        fdt_max_fds: off("fdtable", "max_fds")?,
        fdt_fd: off("fdtable", "fd")?,
        file_inode: off("file", "f_inode")?,
        inode_mode: off("inode", "i_mode")?,
        task_nsproxy: off("task_struct", "nsproxy")?,
        task_cred: off("task_struct", "cred")?,
        task_thread_pid: off("task_struct", "thread_pid")?,
        nsproxy_net: off("nsproxy", "net_ns")?,
        nsproxy_mnt: off("nsproxy", "mnt_ns")?,
        nsproxy_uts: off("nsproxy", "uts_ns")?,
        net_common: off("net", "ns")?,
        mnt_common: off("mnt_namespace", "ns")?,
        uts_common: off("uts_namespace", "ns")?,
        pid_common: off("pid_namespace", "ns")?,
        user_common: off("user_namespace", "ns")?,
        common_inum: off("ns_common", "inum")?,
        cred_user_ns: off("cred", "user_ns")?,
        cred_cap_effective: off("cred", "cap_effective")?,
        pid_level: off("pid", "level")?,
        pid_numbers: off("pid", "numbers")?,
        upid_size: btf.struct_size("upid")?,
        upid_ns: off("upid", "ns")?,
        task_exit_code: off("task_struct", "exit_code")?,
        ..KernelLayout::UNRESOLVED
    };
    let layout = socket_files(btf, local_ends(btf, socket_errors(btf, refused_calls(btf, layout))));
    Ok(KernelLayout { task_btf: btf.has_helper("get_current_task_btf", 158).into(), ..layout })
}

/// Adds what attributes a socket error to an fd (see `SocketErrorRecord`): without it, socket
/// errors are not reported (the caller warns).
fn socket_errors(btf: &Structs<'_>, mut layout: KernelLayout) -> KernelLayout {
    let offsets = || -> Result<[u32; 3]> {
        Ok([
            btf.member_offset("file", "private_data")?,
            btf.member_offset("socket", "sk")?,
            btf.member_offset("sock", "sk_err")?,
        ])
    };
    match offsets() {
        Ok([private, sk, err]) => {
            (layout.file_private_data, layout.socket_sk, layout.sock_err) = (private, sk, err);
        }
        Err(err) => tracing::debug!("socket errors: {err:#}"),
    }
    layout
}

/// Adds what tells a socket file from its `struct socket` (see `KernelLayout::socket_inode`):
/// without it, a close reads the inode's mode, and the socket's `sk` in two more reads.
fn socket_files(btf: &Structs<'_>, mut layout: KernelLayout) -> KernelLayout {
    let found = || -> Result<[u32; 2]> {
        Ok([btf.member_offset("socket_alloc", "vfs_inode")?, btf.member_offset("socket", "file")?])
    };
    match found() {
        Ok([inode, file])
            if layout.file_private_data != 0
                && layout.file_inode == layout.file_private_data + 8
                && layout.socket_sk == file + 8 =>
        {
            (layout.socket_inode, layout.socket_file) = (inode, file);
        }
        Ok(_) => tracing::debug!("socket files: the fields read together are not side by side"),
        Err(err) => tracing::debug!("socket files: {err:#}"),
    }
    layout
}

/// Adds what the programs read from sockets (see `FLAG_FROM_SOCKET`): all or nothing,
/// logged; without it the fd table asks the live process.
fn local_ends(btf: &Structs<'_>, mut layout: KernelLayout) -> KernelLayout {
    let found = || -> Result<[u32; 7]> {
        let common = btf.member_offset("sock", "__sk_common")?;
        Ok([
            btf.member_offset("inode", "i_ino")?,
            btf.member_offset("file", "private_data")?,
            btf.member_offset("socket", "sk")?,
            common + btf.member_offset("sock_common", "skc_family")?,
            common + btf.member_offset("sock_common", "skc_num")?,
            common + btf.member_offset("sock_common", "skc_rcv_saddr")?,
            common + btf.member_offset("sock_common", "skc_v6_rcv_saddr")?,
        ])
    };
    match found() {
        Ok([ino, private, sk, family, num, v4, v6]) => {
            (layout.inode_ino, layout.file_private_data, layout.socket_sk) = (ino, private, sk);
            (layout.sk_family, layout.sk_num, layout.sk_rcv_saddr, layout.sk_v6_rcv_saddr) =
                (family, num, v4, v6);
        }
        Err(err) => tracing::debug!("reading from sockets: {err:#}"),
    }
    layout
}

/// Adds what the programs read for a call refused before `sys_enter` (see `FLAG_REFUSED`):
/// each part this kernel lacks stays 0, and only that part is done without.
fn refused_calls(btf: &Structs<'_>, mut layout: KernelLayout) -> KernelLayout {
    let optional = |what: &str, found: Result<u32>| {
        found.unwrap_or_else(|err| {
            tracing::debug!("{what}: {err:#}: calls refused before entry are read without it");
            0
        })
    };
    layout.task_start_time =
        optional("task_struct.start_time", btf.member_offset("task_struct", "start_time"));
    // Without CONFIG_SECCOMP `struct seccomp` is empty: refusals then say "unknown".
    layout.task_seccomp_mode = optional(
        "task_struct.seccomp.mode",
        btf.member_offset("task_struct", "seccomp")
            .and_then(|seccomp| Ok(seccomp + btf.member_offset("seccomp", "mode")?)),
    );
    // The saved user registers: x86_64's struct pt_regs only (see saved_args in the programs).
    if cfg!(target_arch = "x86_64") {
        let regs = || -> Result<[u32; 11]> {
            let mut out = [0; 11];
            out[0] = btf.member_offset("task_struct", "stack")?;
            out[1] = btf.struct_size("pt_regs")?;
            for (slot, reg) in out[2..]
                .iter_mut()
                .zip(["di", "si", "dx", "r10", "r8", "r9", "orig_ax", "cs", "ss"])
            {
                *slot = btf.member_offset("pt_regs", reg)?;
            }
            Ok(out)
        };
        if let Ok([stack, size, a0, a1, a2, a3, a4, a5, orig_ax, cs, ss]) =
            regs().inspect_err(|err| tracing::debug!("pt_regs: {err:#}"))
        {
            layout.task_stack = stack;
            layout.regs_size = size;
            layout.regs_args = [a0, a1, a2, a3, a4, a5];
            (layout.regs_orig_ax, layout.regs_cs, layout.regs_ss) = (orig_ax, cs, ss);
        }
    }
    layout
}

/// The kernel's BTF, each struct looked up once: btf-rs finds a name by scanning every type
/// (some 8 M instructions a look-up on 6.18), and the layout makes 51 look-ups of 20 structs.
pub struct Structs<'a> {
    btf: &'a Btf,
    found: RefCell<HashMap<String, btf_rs::Struct>>,
    /// `enum bpf_func_id`, the helpers this kernel has, when [`Structs::with`] found it.
    helpers: Option<btf_rs::Enum>,
}

impl<'a> Structs<'a> {
    pub fn new(btf: &'a Btf) -> Structs<'a> {
        Structs { btf, found: RefCell::default(), helpers: None }
    }

    /// With the structs `names` and the helpers' enum found in one pass over the types (each
    /// type parsed once); any other struct is looked up when asked for.
    fn with(btf: &'a Btf, names: &[&str]) -> Result<Structs<'a>> {
        let mut found = HashMap::new();
        let mut helpers = None;
        let (first, last) = btf.base().type_id_range();
        for id in first..=last {
            match btf.resolve_type_by_id(id)? {
                Type::Struct(s) => {
                    if let Ok(name) = btf.resolve_name(&s)
                        && names.contains(&name.as_str())
                    {
                        // The first, as `resolve_types_by_name` would give.
                        found.entry(name).or_insert(s);
                    }
                }
                // A member per helper id (over 150 since 5.9): shorter enums are not named.
                Type::Enum(e)
                    if helpers.is_none()
                        && e.members.len() > 150
                        && btf.resolve_name(&e).is_ok_and(|name| name == "bpf_func_id") =>
                {
                    helpers = Some(e);
                }
                _ => {}
            }
        }
        Ok(Structs { btf, found: RefCell::new(found), helpers })
    }

    /// Whether this kernel has helper `name` with id `id` (`BPF_FUNC_<name>` in its
    /// `enum bpf_func_id`); false when the enum was not looked for or not found.
    fn has_helper(&self, name: &str, id: u32) -> bool {
        let Some(helpers) = &self.helpers else { return false };
        helpers.members.iter().find(|m| m.val() == id).is_some_and(|m| {
            self.btf.resolve_name(m).is_ok_and(|n| n.strip_prefix("BPF_FUNC_") == Some(name))
        })
    }

    fn find(&self, name: &str) -> Result<btf_rs::Struct> {
        if let Some(found) = self.found.borrow().get(name) {
            return Ok(found.clone());
        }
        let found = self
            .btf
            .resolve_types_by_name(name)?
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) => Some(s),
                _ => None,
            })
            .ok_or_else(|| anyhow!("no struct {name} in the kernel's BTF"))?;
        self.found.borrow_mut().insert(name.to_owned(), found.clone());
        Ok(found)
    }

    /// `sizeof(struct name)`.
    fn struct_size(&self, name: &str) -> Result<u32> {
        Ok(u32::try_from(self.find(name)?.size())?)
    }

    /// Byte offset of `member` in `struct strukt`, looking inside anonymous structs and unions.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32> {
        let s = self.find(strukt)?;
        find_member(self.btf, &s, member)?
            .map(|bits| bits / 8)
            .ok_or_else(|| anyhow!("struct {strukt} has no member {member}"))
    }
}

/// Byte offset of `member` in `struct strukt` (one look-up; see [`Structs`] for several).
pub fn member_offset(btf: &Btf, strukt: &str, member: &str) -> Result<u32> {
    Structs::new(btf).member_offset(strukt, member)
}

fn find_member(btf: &Btf, s: &btf_rs::Struct, wanted: &str) -> Result<Option<u32>> {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == wanted {
            if m.bitfield_size().is_some_and(|size| size != 0) {
                bail!("{wanted} is a bit field");
            }
            return Ok(Some(m.bit_offset()));
        }
        if name.is_empty()
            && let Type::Struct(inner) | Type::Union(inner) = btf.resolve_chained_type(m)?
            && let Some(bits) = find_member(btf, &inner, wanted)?
        {
            return Ok(Some(m.bit_offset() + bits));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF (every machine wsltrace tests on has it).
    #[test]
    fn resolves_the_running_kernels_layout() {
        let layout = kernel_layout().expect("this kernel has BTF");
        assert_eq!(layout.resolved, 1);
        // Offsets that exist on every kernel: fdtable starts with max_fds, then fd.
        assert_eq!(layout.fdt_max_fds, 0);
        assert_eq!(layout.fdt_fd, 8);
        assert!(layout.task_files > 0 && layout.file_inode > 0);
        // struct upid { int nr; struct pid_namespace *ns; }
        assert_eq!((layout.upid_size, layout.upid_ns), (16, 8));
        // What a refused call is read with: struct seccomp starts with its mode; x86_64's
        // pt_regs is 21 words, the arguments in di, si, dx, r10, r8, r9, then orig_ax.
        assert!(layout.task_start_time > 0 && layout.task_seccomp_mode > 0);
        if cfg!(target_arch = "x86_64") {
            assert!(layout.task_stack > 0);
            assert_eq!(layout.regs_size, 168);
            assert_eq!(layout.regs_args, [112, 104, 96, 56, 72, 64]);
            assert_eq!((layout.regs_orig_ax, layout.regs_cs, layout.regs_ss), (120, 136, 160));
        }
        // What a socket error is attributed with: struct socket's sk follows its state, type,
        // flags and file pointer.
        assert!(layout.file_private_data > 0 && layout.socket_sk > 0 && layout.sock_err > 0);
        // struct sock starts with sock_common, whose skc_daddr/skc_rcv_saddr pair comes first.
        assert!(
            layout.inode_ino > 0
                && layout.file_private_data > 0
                && layout.sk_num > 0
                && layout.sk_v6_rcv_saddr > 0
        );
        assert_eq!(layout.sk_rcv_saddr, 4);
        // Since 6.12 struct file has private_data then f_inode, and struct socket has had
        // file then sk since 2.6: a close tells a socket in two reads.
        // socket_alloc is a struct socket (128 bytes on 64-bit) and the inode after it.
        use procfs::sys::kernel::Version;
        if Version::current().unwrap() >= Version::new(6, 12, 0) {
            assert_eq!((layout.socket_inode, layout.socket_file), (128, 16));
        }
        // bpf_get_current_task_btf came with 5.11: the programs load the fd table directly.
        assert_eq!(layout.task_btf != 0, Version::current().unwrap() >= Version::new(5, 11, 0));
    }

    #[test]
    fn missing_members_are_errors() {
        let btf = Btf::from_file(VMLINUX).unwrap();
        assert!(member_offset(&btf, "task_struct", "no_such_member").is_err());
        assert!(member_offset(&btf, "no_such_struct", "x").is_err());
    }
}
