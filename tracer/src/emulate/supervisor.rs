//! The seccomp supervisor: what no cgroup hook can do, decided in userspace, the way WSL's init
//! does it. The command runs under a classic seccomp filter that hands every bind() and
//! listen() to wsltrace (seccomp user notification); wsltrace reads the call's address from the
//! caller's memory (or its socket, through pidfd_getfd) and either fails the call with an errno
//! or lets the kernel carry it out unchanged (SECCOMP_USER_NOTIF_FLAG_CONTINUE). Two rules:
//!
//! - unix paths: bind() of an AF_UNIX path under a prefix fails (Linux has cgroup hooks for
//!   unix connect/sendmsg/recvmsg/getpeername/getsockname since 6.7, none for bind);
//! - the port tracker of WSL2's mirrored networking (`src/linux/init/GnsPortTracker.cpp`,
//!   Windows' side in `WslCoreGuestNetworkService.cpp`): a TCP/UDP port Windows holds, or in
//!   Windows' ephemeral range outside the guest's window, fails with EADDRINUSE; what WSL lets
//!   through without asking Windows passes ([`TrackerRule::refuses`]).
//!
//! Seccomp runs before the syscall tracepoints: a call failed here fires `sys_exit` only, and
//! the tracer reports it as refused before entry (`refused_by: seccomp`), as on WSL. The
//! filter stays with the command for its life: if wsltrace is killed, the command's later
//! bind() and listen() calls fail with ENOSYS, as they do on WSL when its supervisor is gone.

use std::{
    ffi::CString,
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
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
use tracer_common::emulate::{MAX_QUIRKS, PortRange};

/// What the supervisor decides; the rules come from the plan.
#[derive(Debug, Default)]
pub struct Supervision {
    pub unix: Option<UnixRule>,
    pub tracker: Option<TrackerRule>,
}

/// bind() of an AF_UNIX path under one of the prefixes fails with `errno`.
#[derive(Debug)]
pub struct UnixRule {
    pub prefixes: Vec<PathBuf>,
    pub errno: u16,
    pub slot: u32,
}

/// WSL's port tracker, with the ports Windows holds.
#[derive(Debug)]
pub struct TrackerRule {
    pub held: Vec<PortRange>,
    pub windows_ephemeral: PortRange,
    pub errno: u16,
    pub slot: u32,
}

impl TrackerRule {
    /// Whether Windows would refuse `port` on `addr` for a TCP or UDP socket in the VM's
    /// network namespace, port 0 excluded (the caller checks those). `guest` is the guest's
    /// own ephemeral window (ip_local_port_range).
    ///
    /// Allowed without asking Windows (`OnPortAllocationRequest`): IPv4 loopback addresses
    /// other than 127.0.0.1 (`IsPortAllocationLoopbackException`; `::1` is not one), port 53,
    /// ports in the guest's window. Windows refuses a port it holds, and one of its ephemeral
    /// range outside the guest's window (WSL 2.8.7-2.9.4). Reservations are keyed by protocol
    /// and port: the address does not matter otherwise.
    pub fn refuses(&self, guest: PortRange, addr: IpAddr, port: u16) -> bool {
        let within = |r: &PortRange| r.first <= port && port <= r.last;
        if let IpAddr::V4(v4) = addr
            && v4.is_loopback()
            && v4 != Ipv4Addr::LOCALHOST
        {
            return false;
        }
        if port == 53 || within(&guest) {
            return false;
        }
        self.held.iter().any(within) || within(&self.windows_ephemeral)
    }
}

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
    pub fn serve(self, supervision: Supervision) -> Result<Supervisor> {
        drop(self.child);
        let listener = recv_fd(&self.parent).context("receiving the seccomp listener")?;
        let context = Context::new(supervision)?;
        let hits = Arc::clone(&context.hits);
        std::thread::Builder::new().name("seccomp".into()).spawn(move || {
            serve(&listener, &context);
        })?;
        Ok(Supervisor { hits })
    }
}

pub struct Supervisor {
    hits: Arc<Hits>,
}

type Hits = [AtomicU64; MAX_QUIRKS as usize];

impl Supervisor {
    /// Calls failed so far for the quirk in `slot`.
    pub fn hits(&self, slot: u32) -> u64 {
        self.hits.get(slot as usize).map_or(0, |h| h.load(Ordering::Relaxed))
    }
}

/// What the serving thread needs besides the rules: read once, at start.
struct Context {
    rules: Supervision,
    /// The network namespace of the emulated command's start (wsltrace's own): WSL's tracker
    /// lets calls from other namespaces through.
    netns: Option<PathBuf>,
    /// The guest's own ephemeral window: ports the kernel hands out for port 0.
    guest: PortRange,
    hits: Arc<Hits>,
}

impl Context {
    fn new(rules: Supervision) -> Result<Context> {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .context("reading ip_local_port_range")?;
        let mut bounds = range.split_whitespace().filter_map(|w| w.parse::<u16>().ok());
        let guest = match (bounds.next(), bounds.next()) {
            (Some(first), Some(last)) => PortRange { first, last },
            _ => anyhow::bail!("cannot read ip_local_port_range: {range:?}"),
        };
        let netns = std::fs::read_link("/proc/self/ns/net").ok();
        Ok(Context {
            rules,
            netns,
            guest,
            hits: Arc::new(std::array::from_fn(|_| AtomicU64::new(0))),
        })
    }
}

/// Runs in the forked child before exec: installs the filter (bind() and listen() -> user
/// notification, everything else allowed) and sends the listener fd over `channel`.
///
/// # Safety
/// Only async-signal-safe calls and no allocation: meant for `pre_exec`.
pub unsafe fn install_in_child(channel: RawFd) -> io::Result<()> {
    let mut filter = socket_filter(libc::SECCOMP_RET_USER_NOTIF);
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

/// A classic seccomp filter: bind() and listen() get `action`, every other call is allowed (the
/// calls WSL's init traps, `ioctl(SIOCSIFFLAGS)` aside).
pub fn socket_filter(action: u32) -> [libc::sock_filter; 7] {
    [
        filter_stmt(BPF_LD_W_ABS, DATA_ARCH),
        filter_jump(BPF_JEQ_K, AUDIT_ARCH, 0, 3),
        filter_stmt(BPF_LD_W_ABS, DATA_NR),
        filter_jump(BPF_JEQ_K, libc::SYS_bind as u32, 2, 0),
        filter_jump(BPF_JEQ_K, libc::SYS_listen as u32, 1, 0),
        filter_stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
        filter_stmt(BPF_RET_K, action),
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

/// Answers notifications until the listener is closed (wsltrace exits), one at a time, as
/// WSL's dispatcher does.
fn serve(listener: &OwnedFd, context: &Context) {
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
        // A call that cannot be read (the caller died, a bad pointer or fd) goes through: the
        // kernel fails it if it must, as WSL's tracker does.
        let verdict = decide(fd, &req, context).unwrap_or(None);
        // SAFETY: plain data, zero is valid.
        let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        resp.id = req.id;
        match verdict {
            Some((errno, _)) => resp.error = -i32::from(errno),
            None => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        }
        // SAFETY: `resp` is the struct this ioctl reads. ENOENT (the caller died) is fine.
        let sent = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &raw mut resp) };
        if sent == 0
            && let Some((_, slot)) = verdict
            && let Some(hits) = context.hits.get(slot as usize)
        {
            hits.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `Some((errno, slot))` to fail the call; `None` to let it run. `None` overall when the
/// caller could not be read, or the request is no longer pending (its pid may be reused).
fn decide(
    listener: RawFd,
    req: &libc::seccomp_notif,
    context: &Context,
) -> Option<Option<(u16, u32)>> {
    let pid = req.pid;
    let verdict = match i64::from(req.data.nr) {
        libc::SYS_bind => decide_bind(req, context)?,
        libc::SYS_listen => decide_listen(req, context)?,
        _ => None,
    };
    // What was read may belong to another process if the caller died and its pid was
    // reused: believe it only if the request is still pending.
    let mut id = req.id;
    // SAFETY: the ioctl reads the u64 id.
    if unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &raw mut id) } != 0 {
        tracing::debug!("pid {pid} left its call before it was decided");
        return None;
    }
    Some(verdict)
}

fn decide_bind(req: &libc::seccomp_notif, context: &Context) -> Option<Option<(u16, u32)>> {
    let (fd, addr, len) = (req.data.args[0], req.data.args[1], req.data.args[2] as usize);
    let mut buf = [0_u8; 2 + SUN_PATH_MAX];
    let len = len.min(buf.len());
    if len <= 2 {
        return Some(None);
    }
    let mem = File::open(format!("/proc/{}/mem", req.pid)).ok()?;
    let n = mem.read_at(&mut buf[..len], addr).ok()?;
    let family = i32::from(u16::from_ne_bytes([buf[0], buf[1]]));
    match family {
        libc::AF_UNIX => Some(context.rules.unix.as_ref().and_then(|rule| {
            unix_path_matches(req.pid, &buf[..n], &rule.prefixes).then_some((rule.errno, rule.slot))
        })),
        libc::AF_INET | libc::AF_INET6 => {
            let Some(rule) = &context.rules.tracker else { return Some(None) };
            // WSL lets through a sockaddr shorter than `struct sockaddr`, and a short
            // sockaddr_in6: the kernel fails them.
            let short = n < 16 || (family == libc::AF_INET6 && n < 28);
            if short || !same_netns(req.pid, context) {
                return Some(None);
            }
            let port = u16::from_be_bytes([buf[2], buf[3]]);
            let ip = match family {
                libc::AF_INET => IpAddr::V4(Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7])),
                _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&buf[8..24]).ok()?)),
            };
            Some(tracked(rule, context, req.pid, fd, ip, port))
        }
        // Other families are not IP: WSL lets them through.
        _ => Some(None),
    }
}

/// listen() reserves the port the socket is bound to (for a socket bound to port 0, the
/// port the kernel picked): the same policy, on the socket's own address.
fn decide_listen(req: &libc::seccomp_notif, context: &Context) -> Option<Option<(u16, u32)>> {
    let Some(rule) = &context.rules.tracker else { return Some(None) };
    if !same_netns(req.pid, context) {
        return Some(None);
    }
    let socket = socket_of(req.pid, req.data.args[0])?;
    let local: nix::sys::socket::SockaddrStorage =
        nix::sys::socket::getsockname(socket.as_raw_fd()).ok()?;
    let (ip, port) = if let Some(v4) = local.as_sockaddr_in() {
        (IpAddr::V4(v4.ip()), v4.port())
    } else if let Some(v6) = local.as_sockaddr_in6() {
        (IpAddr::V6(v6.ip()), v6.port())
    } else {
        return Some(None);
    };
    // Not bound yet: listen() binds it to a port of the guest's window, which Windows allows.
    if port == 0 {
        return Some(None);
    }
    Some(tracked(rule, context, req.pid, req.data.args[0], ip, port))
}

/// The tracker's verdict for a TCP or UDP socket; other protocols pass, as in WSL.
fn tracked(
    rule: &TrackerRule,
    context: &Context,
    pid: u32,
    fd: u64,
    ip: IpAddr,
    port: u16,
) -> Option<(u16, u32)> {
    if port == 0 || !is_tcp_or_udp(pid, fd) {
        return None;
    }
    rule.refuses(context.guest, ip, port).then_some((rule.errno, rule.slot))
}

fn same_netns(pid: u32, context: &Context) -> bool {
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    theirs.is_some() && theirs == context.netns
}

/// The socket's protocol name, as WSL reads it (`system.sockprotoname` of /proc/PID/fd/N).
fn is_tcp_or_udp(pid: u32, fd: u64) -> bool {
    let Ok(path) = CString::new(format!("/proc/{pid}/fd/{fd}")) else { return false };
    let mut name = [0_u8; 32];
    // SAFETY: a NUL-terminated path and attribute name, a buffer of its stated length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"system.sockprotoname".as_ptr(),
            name.as_mut_ptr().cast(),
            name.len(),
        )
    };
    let Ok(n) = usize::try_from(n) else { return false };
    let name = &name[..n];
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    matches!(name, b"TCP" | b"TCPv6" | b"UDP" | b"UDPv6")
}

/// A copy of the caller's socket `fd` (pidfd_getfd: root may take it while the caller waits).
fn socket_of(pid: u32, fd: u64) -> Option<OwnedFd> {
    // SAFETY: plain syscalls with integer arguments; each fd returned is new and ours.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if pidfd < 0 {
            return None;
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd as i32, 0);
        (copy >= 0).then(|| OwnedFd::from_raw_fd(copy as RawFd))
    }
}

/// Whether a unix sockaddr (family included) names a file system path under a prefix; a
/// relative path is resolved against the caller's working directory.
fn unix_path_matches(pid: u32, addr: &[u8], prefixes: &[PathBuf]) -> bool {
    if addr.len() <= 2 || addr[2] == 0 {
        // Autobind, or an abstract name: no file system path.
        return false;
    }
    let raw = &addr[2..];
    let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::fs::read_link(format!("/proc/{pid}/cwd")) {
            Ok(cwd) => cwd.join(path),
            Err(_) => return false,
        }
    };
    let normal = normalize(&absolute);
    prefixes.iter().any(|p| normal.starts_with(p))
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

    /// WSL's policy (OnPortAllocationRequest): what passes without asking Windows, what
    /// Windows refuses. The guest window here is Linux's default ip_local_port_range.
    #[test]
    fn the_port_tracker_follows_wsls_policy() {
        let rule = TrackerRule {
            held: vec![PortRange { first: 8080, last: 8080 }],
            windows_ephemeral: PortRange { first: 49152, last: 65535 },
            errno: 98,
            slot: 0,
        };
        let guest = PortRange { first: 32768, last: 60999 };
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let refuses = |ip, port| rule.refuses(guest, ip, port);
        assert!(refuses(v4(127, 0, 0, 1), 8080), "held by Windows");
        assert!(refuses(v4(0, 0, 0, 0), 8080));
        assert!(refuses(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080), "::1 is not exempt");
        assert!(!refuses(v4(127, 0, 0, 2), 8080), "127.0.0.2 stays in Linux");
        assert!(!refuses(v4(127, 0, 0, 53), 8080));
        assert!(!refuses(v4(0, 0, 0, 0), 8081), "not held");
        assert!(!refuses(v4(0, 0, 0, 0), 53), "port 53 is allowed");
        assert!(refuses(v4(0, 0, 0, 0), 61000), "Windows' ephemeral range, outside the window");
        assert!(!refuses(v4(0, 0, 0, 0), 50000), "inside the guest's window");
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped());
        assert!(refuses(mapped, 8080), "the exemption is for AF_INET addresses only");
    }
}
