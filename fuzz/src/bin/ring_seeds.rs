//! Writes the ring_record seed corpus from the real kernel: loads wsltrace's programs, traces a
//! Python child that makes socket calls of every family and option the decoders know (some
//! failing, some with truncated or oversized lengths), and saves each record read from the
//! ring buffer as one file. Run as root: `cargo xtask fuzz --seeds`.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use tracer::source::kernel::{Kernel, KernelOptions, ProbeKind};
use tracer_common::{Syscall, config::ErrnoSet};

/// The calls to record. Each `try` keeps going after a call fails: failures are records too.
const SCRIPT: &str = r#"
import os, socket, struct, sys
sys.stdin.read(1)
def t(f):
    try: f()
    except OSError: pass
S = socket.socket
srv = S(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(4); port = srv.getsockname()[1]
cli = S(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
t(lambda: cli.connect(("127.0.0.1", port)))
conn, _ = srv.accept(); conn.getpeername()
for opt in (socket.SO_RCVBUF, socket.SO_TYPE, socket.SO_ERROR, socket.SO_DOMAIN, socket.SO_PROTOCOL):
    cli.getsockopt(socket.SOL_SOCKET, opt)
cli.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
cli.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
cli.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2)          # value cut short
cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 5))
cli.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, b"\x00" * 64)  # longer than an int
cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t(lambda: cli.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
cli.shutdown(socket.SHUT_WR)
dead = S(socket.AF_INET, socket.SOCK_STREAM); t(lambda: dead.connect(("127.0.0.1", 1)))
t(lambda: srv.bind(("127.0.0.1", port)))                           # EINVAL: bound already
t(lambda: S(socket.AF_INET, socket.SOCK_DGRAM).bind(("192.0.2.1", 9)))  # EADDRNOTAVAIL
s6 = S(socket.AF_INET6, socket.SOCK_STREAM); t(lambda: s6.bind(("::1", 0, 7, 0)))
t(lambda: s6.connect(("::ffff:127.0.0.1", port)))
t(lambda: S(socket.AF_INET6, socket.SOCK_DGRAM).connect(("fe80::1", 53, 0, 1)))
path = "/tmp/wsltrace-fuzz-seed-%d.sock" % os.getpid()
u = S(socket.AF_UNIX, socket.SOCK_STREAM); u.bind(path); u.listen(1)
uc = S(socket.AF_UNIX, socket.SOCK_STREAM); uc.connect(path)
t(lambda: uc.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
os.unlink(path)
t(lambda: S(socket.AF_UNIX, socket.SOCK_STREAM).connect(path))  # ENOENT
a = S(socket.AF_UNIX, socket.SOCK_DGRAM); a.bind("\0wsltrace-fuzz-abstract")
a, b = socket.socketpair(); a.close(); b.close()
t(lambda: S(socket.AF_NETLINK, socket.SOCK_RAW, 0).bind((0, 0)))
t(lambda: S(socket.AF_PACKET, socket.SOCK_RAW, 0x0300).bind(("lo", 0x0800)))
t(lambda: S(socket.AF_VSOCK, socket.SOCK_STREAM).connect((2, 1234)))
t(lambda: S(socket.AF_INET, socket.SOCK_STREAM, 300))            # EPROTONOSUPPORT
t(lambda: socket.socket(fileno=os.open("/dev/null", os.O_RDONLY)).getsockname())  # ENOTSOCK
"#;

fn main() -> Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).context("usage: ring_seeds OUT_DIR")?);
    std::fs::create_dir_all(&out)?;
    let opts = KernelOptions {
        syscalls: Syscall::ALL.to_vec(),
        failed_only: false,
        errnos: ErrnoSet::empty(),
        follow_forks: true,
        ring_bytes: 1 << 20,
        probe_kind: ProbeKind::Tracepoint,
    };
    let (mut kernel, mut ring) = Kernel::load(&opts).context("loading the programs (as root?)")?;
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {python}"))?;
    // Traced before it makes its first socket call: it waits for this byte.
    kernel.trace(child.id())?;
    child.stdin.take().context("the child's stdin")?.write_all(b"g")?;
    let status = child.wait()?;
    if !status.success() {
        bail!("the Python workload failed: {status}");
    }
    // The exit record is written as the process ends; give the reader a moment.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut saved = 0;
    while let Some(item) = ring.next() {
        saved += 1;
        std::fs::write(out.join(format!("real-{saved:03}")), &*item)?;
    }
    println!("{saved} records from the ring in {}", out.display());
    Ok(())
}
