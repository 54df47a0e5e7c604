//! bind() of AF_UNIX paths under a prefix fails: the one quirk the cgroup programs cannot
//! inject. Linux has cgroup hooks for unix connect/sendmsg/recvmsg/getpeername/getsockname
//! (6.7+), none for bind. So the command runs under a seccomp filter that hands every bind()
//! to wsltrace (seccomp user notification): wsltrace reads the address from the caller's
//! memory and either fails the call with the quirk's errno or lets the kernel carry it out
//! unchanged (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
//!
//! Seccomp runs before the syscall tracepoints, so a bind failed here has no `sys_enter` event:
//! when tracing, the supervisor records the entry itself (see [`TracerEntries`]). The filter
//! stays with the command for its life: if wsltrace is killed, the command's later bind()
//! calls fail with ENOSYS.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
        unix::{ffi::OsStrExt as _, fs::FileExt as _, net::UnixStream},
    },
    path::{Component, Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap, MapData};
use tracer_common::{PendingCall, Syscall};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

// Classic BPF opcodes (linux/filter.h) and seccomp_data offsets.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

const SUN_PATH_MAX: usize = 108;

/// The two ends of the socket the child sends its seccomp listener fd over.
pub struct Channel {
    parent: UnixStream,
    child: UnixStream,
}

impl Channel {
    pub fn new() -> Result<Channel> {
        let (parent, child) = UnixStream::pair().context("creating the seccomp fd channel")?;
        Ok(Channel { parent, child })
    }

    /// The child's end, for [`install_in_child`].
    pub fn child_fd(&self) -> RawFd {
        self.child.as_raw_fd()
    }

    /// After the spawn: receives the listener and starts serving it on a thread.
    pub fn serve(
        self,
        prefixes: Vec<PathBuf>,
        errno: u16,
        mut tracer: Option<TracerEntries>,
    ) -> Result<Supervisor> {
        drop(self.child);
        let listener = recv_fd(&self.parent).context("receiving the seccomp listener")?;
        let hits = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&hits);
        std::thread::Builder::new().name("unix-bind".into()).spawn(move || {
            serve(&listener, &prefixes, errno, &counted, tracer.as_mut());
        })?;
        Ok(Supervisor { hits })
    }
}

pub struct Supervisor {
    hits: Arc<AtomicU64>,
}

impl Supervisor {
    /// bind() calls failed so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// Runs in the forked child before exec: installs the filter (bind() -> user notification,
/// everything else allowed) and sends the listener fd over `channel`.
///
/// # Safety
/// Only async-signal-safe calls and no allocation: meant for `pre_exec`.
pub unsafe fn install_in_child(channel: RawFd) -> io::Result<()> {
    let mut filter = bind_filter(libc::SECCOMP_RET_USER_NOTIF);
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    let install = || {
        // SAFETY: a valid filter program that outlives the call.
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &raw const prog,
            )
        }
    };
    let mut listener = install();
    if listener < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
        // Without CAP_SYS_ADMIN the kernel wants no_new_privs first.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        listener = install();
    }
    if listener < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sends one fd over a socket we own, from stack buffers.
    let sent = unsafe { send_fd(channel, listener as RawFd) };
    // SAFETY: our own copy; the parent has its own now.
    unsafe { libc::close(listener as RawFd) };
    sent
}

/// A classic seccomp filter: bind() gets `action`, every other call is allowed.
pub fn bind_filter(action: u32) -> [libc::sock_filter; 6] {
    [
        filter_stmt(BPF_LD_W_ABS, DATA_ARCH),
        filter_jump(BPF_JEQ_K, AUDIT_ARCH, 0, 3),
        filter_stmt(BPF_LD_W_ABS, DATA_NR),
        filter_jump(BPF_JEQ_K, libc::SYS_bind as u32, 0, 1),
        filter_stmt(BPF_RET_K, action),
        filter_stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

fn filter_stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn filter_jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A control message carrying one fd, laid out like CMSG_SPACE(sizeof(int)).
#[repr(C)]
struct FdMessage {
    header: libc::cmsghdr,
    fd: libc::c_int,
    _pad: libc::c_int,
}

/// # Safety
/// `socket` and `fd` must be open.
unsafe fn send_fd(socket: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0_u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: plain data, zero is valid.
    let mut control: FdMessage = unsafe { std::mem::zeroed() };
    // SAFETY: CMSG_LEN is arithmetic.
    control.header.cmsg_len = unsafe { libc::CMSG_LEN(size_of::<libc::c_int>() as u32) } as _;
    control.header.cmsg_level = libc::SOL_SOCKET;
    control.header.cmsg_type = libc::SCM_RIGHTS;
    control.fd = fd;
    // SAFETY: plain data, zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&raw mut control).cast();
    msg.msg_controllen = size_of::<FdMessage>() as _;
    // SAFETY: the message and its buffers are valid for the call.
    if unsafe { libc::sendmsg(socket, &raw const msg, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn recv_fd(socket: &UnixStream) -> Result<OwnedFd> {
    let mut byte = [0_u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = nix::sys::socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for cmsg in msg.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: a new fd the kernel just installed for us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    anyhow::bail!("the command's process sent no seccomp listener")
}

/// With `--emulate`, the tracer's table of calls between entry and exit: seccomp fails a call
/// before its `sys_enter` tracepoint, so the supervisor writes the entry the tracer would have
/// recorded, and the `sys_exit` program reports the call, arguments and errno, as usual.
pub struct TracerEntries {
    pub pending: HashMap<MapData, u64, PendingCall>,
}

/// Answers notifications until the listener is closed (wsltrace exits).
fn serve(
    listener: &OwnedFd,
    prefixes: &[PathBuf],
    errno: u16,
    hits: &AtomicU64,
    mut tracer: Option<&mut TracerEntries>,
) {
    let fd = listener.as_raw_fd();
    loop {
        // SAFETY: plain data; the kernel wants it zeroed.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: `req` is the struct this ioctl fills.
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &raw mut req) } < 0 {
            match io::Error::last_os_error().raw_os_error() {
                // Interrupted, or the caller died before we read its request.
                Some(libc::EINTR | libc::ENOENT) => continue,
                _ => return,
            }
        }
        let fail = decide(fd, &req, prefixes).unwrap_or(false);
        if fail && let Some(tracer) = tracer.as_deref_mut() {
            record_entry(tracer, &req);
        }
        // SAFETY: plain data, zero is valid.
        let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        resp.id = req.id;
        if fail {
            resp.error = -i32::from(errno);
        } else {
            resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
        }
        // SAFETY: `resp` is the struct this ioctl reads. ENOENT (the caller died) is fine.
        let sent = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &raw mut resp) };
        if sent == 0 && fail {
            hits.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether the bind is of an AF_UNIX path under one of the prefixes; None when the caller
/// could not be read (it died, or the pid was reused).
fn decide(listener: RawFd, req: &libc::seccomp_notif, prefixes: &[PathBuf]) -> Option<bool> {
    let (addr, len) = (req.data.args[1], req.data.args[2] as usize);
    let mut buf = [0_u8; 2 + SUN_PATH_MAX];
    let len = len.min(buf.len());
    if len <= 2 {
        return Some(false);
    }
    let mem = File::open(format!("/proc/{}/mem", req.pid)).ok()?;
    let n = mem.read_at(&mut buf[..len], addr).ok()?;
    // The pid may have been reused between the notification and the read: check the request
    // is still pending before believing what was read.
    let mut id = req.id;
    // SAFETY: the ioctl reads the u64 id.
    if unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &raw mut id) } != 0 {
        return None;
    }
    let family = u16::from_ne_bytes([buf[0], buf[1]]);
    if family != libc::AF_UNIX as u16 || n <= 2 || buf[2] == 0 {
        // Not unix, autobind, or an abstract name: no file system path.
        return Some(false);
    }
    let raw = &buf[2..n];
    let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::fs::read_link(format!("/proc/{}/cwd", req.pid)).ok()?.join(path)
    };
    let normal = normalize(&absolute);
    Some(prefixes.iter().any(|p| normal.starts_with(p)))
}

/// The entry `sys_enter_bind` would have kept, keyed like it (pid_tgid); the exit program
/// reads the rest (address, process, namespaces) as for any call.
fn record_entry(tracer: &mut TracerEntries, req: &libc::seccomp_notif) {
    let tid = req.pid;
    let Ok(status) = procfs::process::Process::new(tid as i32).and_then(|p| p.status()) else {
        return;
    };
    let ts_ns = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64);
    let call = PendingCall { args: req.data.args, ..PendingCall::new(ts_ns, Syscall::Bind as u32) };
    let key = (u64::from(status.tgid as u32) << 32) | u64::from(tid);
    if let Err(err) = tracer.pending.insert(key, call, 0) {
        tracing::debug!("could not record the entry of a failed unix bind for the trace: {err}");
    }
}

/// `/a/./b/../c` -> `/a/c`, without touching the file system (the path need not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(
            normalize(Path::new("/tmp/./x/../mnt/c/s.sock")),
            Path::new("/tmp/mnt/c/s.sock")
        );
        assert!(normalize(Path::new("/mnt/c/../../mnt/d/s")).starts_with("/mnt/"));
        assert!(!Path::new("/mntx/s").starts_with("/mnt/"));
    }
}
