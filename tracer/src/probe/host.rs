//! The probes that reach past Linux's socket code: WSL's seccomp supervisor, the nameserver,
//! the Windows drive, the host over vsock.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::{
        socket::{AddressFamily, SockFlag, SockType, VsockAddr, connect, socket},
        wait::{WaitStatus, waitpid},
    },
    unistd::ForkResult,
};

use super::{
    Ctx, Outcome,
    checks::{io_name, name, timeout_timespec, took},
};

/// `Seccomp:` of /proc/self/status (0 none, 1 strict, 2 filter).
pub fn seccomp_mode() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Seccomp:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// In a child: a filter that allows everything, installed with SECCOMP_FILTER_FLAG_NEW_LISTENER.
/// The kernel refuses a second user-notification listener in one filter chain (EBUSY): WSL's
/// port tracker holds the one its init installed for every process (mirrored, consomme).
pub fn seccomp_listener(_: &Ctx) -> Outcome {
    let mode = seccomp_mode().map_or("unknown".into(), |m| m.to_string());
    // SAFETY: the probes run on one thread; the child only makes raw syscalls and _exits.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => install_listener_and_exit(),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Outcome::Skipped(format!("fork: {}", name(e))),
    };
    let what = "a child's seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER)";
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, 0)) => Outcome::NotSeen(format!(
            "{what} succeeded: no filter of this process has a supervisor (Seccomp: {mode})"
        )),
        Ok(WaitStatus::Exited(_, code)) if code == Errno::EBUSY as i32 => Outcome::Seen(format!(
            "{what} failed with EBUSY: a supervisor already listens on this process's filters \
             (Seccomp: {mode}; WSL's port tracker in mirrored/consomme mode, or a container \
             runtime, or wsltrace emulate)"
        )),
        Ok(WaitStatus::Exited(_, code)) => {
            Outcome::Skipped(format!("{what} failed with {}", name(Errno::from_raw(code))))
        }
        other => Outcome::Skipped(format!("the probing child ended as {other:?}")),
    }
}

/// The child of [`seccomp_listener`]: exits 0 on success, else with the errno.
fn install_listener_and_exit() -> ! {
    let code = match install_listener() {
        Ok(_listener) => 0,
        Err(e) => e as i32,
    };
    // SAFETY: ends the child without running the parent's destructors or atexit handlers.
    unsafe { libc::_exit(code) }
}

/// Puts the calling thread under a seccomp filter that allows every call and has a
/// user-notification listener (SECCOMP_FILTER_FLAG_NEW_LISTENER), as WSL's init does for every
/// process in mirrored mode (its filter traps bind and listen; this one traps nothing). Sets
/// no_new_privs first. Raw syscalls only: fine between fork and exec.
pub fn install_listener() -> nix::Result<OwnedFd> {
    let mut allow = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog { len: 1, filter: allow.as_mut_ptr() };
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    // SAFETY: a valid one-instruction program that outlives the call.
    let fd = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &raw const prog,
        )
    })?;
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the listener fd the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A DNS query for the root's NS records (any recursive resolver answers it, even with an
/// error) sent to the first nameserver of resolv.conf.
const ROOT_NS_QUERY: [u8; 17] = [0x57, 0x54, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];

const RCODES: [&str; 6] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/// WSL's DNS tunnel drops a query Windows fails to answer: the client times out instead of
/// getting SERVFAIL.
pub fn dns_answer(ctx: &Ctx) -> Outcome {
    let Some(&(ns, tunnel)) = ctx.nameservers.first() else {
        return Outcome::Skipped("no nameserver in /etc/resolv.conf".into());
    };
    let server = SocketAddr::new(ns, 53);
    let what = format!("a DNS query (. NS) to {server}");
    let asked = (|| {
        let local: SocketAddr = if ns.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let sock = UdpSocket::bind(local).ok()?;
        sock.set_read_timeout(Some(ctx.timeout)).ok()?;
        sock.connect(server).ok()?;
        Some(sock)
    })();
    let Some(sock) = asked else { return Outcome::Skipped(format!("{what}: no UDP socket")) };
    let start = Instant::now();
    let mut answer = [0_u8; 512];
    let result = sock.send(&ROOT_NS_QUERY).and_then(|_| sock.recv(&mut answer));
    let elapsed = took(start.elapsed());
    let not_tunnel = |s: String| {
        Outcome::Skipped(format!(
            "{s}; {ns} is not WSL's DNS tunnel, so this says nothing about it"
        ))
    };
    match result {
        Ok(n) if n >= 4 && answer[..2] == ROOT_NS_QUERY[..2] => {
            let rcode = RCODES.get(usize::from(answer[3] & 0x0f)).copied().unwrap_or("other");
            Outcome::NotSeen(format!("{what} was answered in {elapsed} ({rcode})"))
        }
        Ok(n) => Outcome::Skipped(format!("{what}: a {n}-byte reply that is not an answer")),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            let s = format!("{what} got no answer within {elapsed}");
            if tunnel {
                Outcome::Seen(format!("{s}: the tunnel dropped it"))
            } else {
                not_tunnel(s)
            }
        }
        Err(e) => {
            let s = format!("{what} failed with {}", io_name(&e));
            if tunnel { Outcome::Seen(s) } else { not_tunnel(s) }
        }
    }
}

/// A unix socket bound in a writable directory of /mnt/c when it is a Windows drive.
pub fn unix_on_drvfs(_: &Ctx) -> Outcome {
    let drive = Path::new("/mnt/c");
    if !drive.is_dir() {
        return Outcome::Skipped("no /mnt/c here".into());
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let fstype = mounts.lines().find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        (fields.get(1) == Some(&"/mnt/c")).then(|| fields.get(2).copied().unwrap_or_default())
    });
    match fstype {
        Some("9p" | "drvfs" | "virtiofs" | "fuse.drvfs") => {}
        Some(other) => return Outcome::Skipped(format!("/mnt/c is {other}, not a Windows drive")),
        None => return Outcome::Skipped("/mnt/c is not a mount point".into()),
    }
    let file = format!("wsltrace-probe-{}.sock", std::process::id());
    let mut refusals = Vec::new();
    for dir in ["/mnt/c/Users/Public", "/mnt/c/Windows/Temp", "/mnt/c/tmp", "/mnt/c"] {
        let path = Path::new(dir).join(&file);
        match std::os::unix::net::UnixListener::bind(&path) {
            Ok(listener) => {
                drop(listener);
                let _ = std::fs::remove_file(&path);
                return Outcome::NotSeen(format!(
                    "bind of a unix socket at {} worked",
                    path.display()
                ));
            }
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                return Outcome::Seen(format!("bind at {} failed with EOPNOTSUPP", path.display()));
            }
            Err(e) => refusals.push(format!("{dir}: {}", io_name(&e))),
        }
    }
    Outcome::Skipped(format!("no directory of /mnt/c took the socket ({})", refusals.join(", ")))
}

/// The vsock port the probe and `demo vsock-host` connect to: nothing listens on it.
pub const VSOCK_PORT: u32 = 0x5754_5052;

/// A blocking vsock connect to the host (CID 2) at `port`, bounded by
/// SO_VM_SOCKETS_CONNECT_TIMEOUT: its result and how long it took.
pub fn vsock_connect_host(port: u32, timeout: Duration) -> nix::Result<Duration> {
    let sock = socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let timeout = timeout_timespec(timeout);
    // SAFETY: a valid fd, a pointer to a timeval and its size (SO_VM_SOCKETS_CONNECT_TIMEOUT_OLD,
    // 6, takes a struct timeval on 64-bit kernels).
    let set = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::AF_VSOCK,
            6,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Errno::result(set)?;
    let start = Instant::now();
    connect(sock.as_raw_fd(), &VsockAddr::new(libc::VMADDR_CID_HOST, port))?;
    Ok(start.elapsed())
}

/// A vsock connect to the host (CID 2) on a port nothing listens on: Hyper-V gives no
/// refusal unless a Windows listener bound this VM's id, so WSL2's connects time out.
pub fn vsock_host(ctx: &Ctx) -> Outcome {
    let start = Instant::now();
    let result = vsock_connect_host(VSOCK_PORT, ctx.timeout);
    let what = format!("a vsock connect to CID 2 port {VSOCK_PORT} (nothing listens)");
    let elapsed = took(start.elapsed());
    match result {
        Err(e @ (Errno::EAFNOSUPPORT | Errno::ENODEV)) => {
            Outcome::Skipped(format!("{what}: {}: no vsock transport here", name(e)))
        }
        Err(Errno::ETIMEDOUT) => Outcome::Seen(format!("{what} timed out after {elapsed}")),
        Err(e @ (Errno::ECONNRESET | Errno::ECONNREFUSED)) => {
            Outcome::NotSeen(format!("{what} was refused at once ({}, {elapsed})", name(e)))
        }
        Err(e) => Outcome::Skipped(format!("{what} failed with {}", name(e))),
        Ok(_) => Outcome::Skipped(format!("{what} succeeded: something listens there")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_query_is_well_formed() {
        // Header: id, RD, one question; question: the root name, type NS (2), class IN (1).
        assert_eq!(&ROOT_NS_QUERY[2..6], &[0x01, 0x00, 0, 1]);
        assert_eq!(&ROOT_NS_QUERY[12..], &[0, 0, 2, 0, 1]);
    }
}
