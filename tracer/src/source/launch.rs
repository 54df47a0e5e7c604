//! `wsltrace -- CMD`: start the command so that it is traced from its first syscall.
//!
//! The child is created as `wsltrace exec-gate FD -- CMD...`, which blocks reading FD. The
//! tracer registers the child's pid in the kernel, then writes the go-ahead; the gate execs the
//! command under the same pid. (std's spawn waits for the exec, so the wait cannot live in a
//! `pre_exec` hook.) SIGINT/SIGTERM sent to wsltrace are passed on to the command.

use std::{
    ffi::OsString,
    io::Write as _,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{ExitCode, ExitStatus},
};

use anyhow::{Context as _, Result};
use nix::{fcntl::OFlag, unistd::pipe2};
use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::{SignalsInfo, exfiltrator::WithOrigin},
    low_level::siginfo::{Cause, Origin},
};
use tokio::sync::mpsc;

/// Name of the hidden subcommand that runs in the child.
pub const EXEC_GATE: &str = "exec-gate";

pub struct Launched {
    pub child: tokio::process::Child,
    pub pid: u32,
    gate: OwnedFd,
}

/// Starts `cmd` stopped at the gate, letting the caller adjust the child's set-up first (its
/// stdout; emulation adds `pre_exec` hooks that move it into a cgroup).
pub fn spawn_with(
    cmd: &[OsString],
    prepare: impl FnOnce(&mut tokio::process::Command),
) -> Result<Launched> {
    let (gate_read, gate_write) = pipe2(OFlag::O_CLOEXEC).context("creating the exec gate pipe")?;
    let read_fd = gate_read.as_raw_fd();
    let mut command = tokio::process::Command::new("/proc/self/exe");
    command.arg(EXEC_GATE).arg(read_fd.to_string()).arg("--").args(cmd);
    // SAFETY: fcntl is async-signal-safe; the closure touches nothing else.
    unsafe {
        command.pre_exec(move || {
            // Let the gate's read end survive the exec into `wsltrace exec-gate`.
            if libc::fcntl(read_fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    prepare(&mut command);
    let child = command.spawn().context("starting the command")?;
    drop(gate_read);
    let pid = child.id().context("the command exited before it could be traced")?;
    Ok(Launched { child, pid, gate: gate_write })
}

impl Launched {
    /// Lets the command exec. Call once its pid is traced.
    pub fn release(&mut self) -> Result<()> {
        let mut gate = std::fs::File::from(self.gate.try_clone()?);
        gate.write_all(b"g").context("releasing the command")
    }
}

/// Runs in the child: wait for the go-ahead on `fd`, then exec `cmd`.
pub fn exec_gate(fd: RawFd, cmd: &[OsString]) -> ExitCode {
    // SAFETY: `fd` is the gate pipe inherited from the tracer, owned by nobody else here.
    let gate = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut byte = [0_u8; 1];
    if !matches!(std::io::Read::read(&mut &gate, &mut byte), Ok(1)) {
        eprintln!("wsltrace: the tracer exited before the command could start");
        return ExitCode::from(1);
    }
    // Closed by the exec itself rather than by close(): that call would be traced.
    if nix::fcntl::fcntl(&gate, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .is_ok()
    {
        std::mem::forget(gate);
    }
    let Some((program, args)) = cmd.split_first() else {
        eprintln!("wsltrace: no command given after --");
        return ExitCode::from(2);
    };
    let err = std::process::Command::new(program).args(args).exec();
    eprintln!("wsltrace: cannot run {}: {err}", program.to_string_lossy());
    // The shell's conventions: 127 not found, 126 found but not executable.
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 })
}

/// wsltrace's exit code for the command's status, as a shell gives it: its code, or 128 +
/// the signal that killed it.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(signal)) => ExitCode::from(128 + signal as u8),
        (None, None) => ExitCode::FAILURE,
    }
}

/// SIGINT/SIGTERM with their origin (kill vs terminal), read on a thread of their own.
pub fn signal_stream() -> Result<mpsc::UnboundedReceiver<Origin>> {
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM])?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for origin in signals.forever() {
            if tx.send(origin).is_err() {
                break;
            }
        }
    })?;
    Ok(rx)
}

/// Passes a signal sent with kill on to the command. A Ctrl-C from the terminal reached the
/// whole foreground group already, command included: sending it again could turn a graceful
/// shutdown into a forced one.
pub fn forward(origin: Origin, launched: &Launched) {
    if matches!(origin.cause, Cause::Kernel) {
        return;
    }
    if let Ok(signal) = nix::sys::signal::Signal::try_from(origin.signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(launched.pid as i32), signal);
    }
}
