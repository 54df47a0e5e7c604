//! `--probe-kind raw` (x86_64): the raw `sys_enter`/`sys_exit` dispatchers and the
//! per-syscall programs they tail-call (tracer-ebpf's raw.rs).

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{MapData, ProgramArray},
    programs::RawTracePoint,
};
use tracer_common::{
    Syscall,
    config::{MAP_RAW_ENTER, MAP_RAW_EXIT, PROGRAM_RAW_SYS_ENTER, PROGRAM_RAW_SYS_EXIT},
};

use super::{kernel::take_map, links::Links};

/// Loads the `wanted` syscalls' raw entry and exit programs into the tail-call tables, then
/// attaches the raw `sys_enter`/`sys_exit` programs, which dispatch on the x86_64 syscall
/// number (the selection is in the `SELECTED` global). Returns the tables.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    links: &mut Links,
    wanted: &[Syscall],
) -> Result<[ProgramArray<MapData>; 2]> {
    if !cfg!(target_arch = "x86_64") {
        bail!(
            "--probe-kind raw reads x86_64 syscall numbers and registers: on this machine use --probe-kind tracepoint (the default)"
        );
    }
    let mut enter = ProgramArray::try_from(take_map(ebpf, MAP_RAW_ENTER)?)?;
    let mut exit = ProgramArray::try_from(take_map(ebpf, MAP_RAW_EXIT)?)?;
    for &syscall in wanted {
        for (table, name) in
            [(&mut enter, syscall.raw_enter_program()), (&mut exit, syscall.raw_exit_program())]
        {
            let program = load(ebpf, name)?;
            table
                .set(syscall as u32, program.fd()?, 0)
                .with_context(|| format!("adding program {name} to its tail-call table"))?;
        }
    }
    // Exit first, as for the syscall tracepoints: an entry is never left without its exit.
    for (name, tracepoint) in
        [(PROGRAM_RAW_SYS_EXIT, "sys_exit"), (PROGRAM_RAW_SYS_ENTER, "sys_enter")]
    {
        let program = load(ebpf, name)?;
        let id = program
            .attach(tracepoint)
            .with_context(|| format!("attaching to raw tracepoint {tracepoint}"))?;
        links.push(program.take_link(id)?);
    }
    Ok([enter, exit])
}

/// The raw tracepoint program `name`, loaded into the kernel (by `preload`, usually).
fn load<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut RawTracePoint> {
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?;
    super::preload::load(name, program)?;
    Ok(program.try_into()?)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use tracer_common::Syscall;

    /// The raw programs' numbers are the kernel's, as libc knows them.
    #[test]
    fn x86_64_numbers_are_the_kernels() {
        for &syscall in Syscall::ALL {
            let libc_nr = match syscall {
                Syscall::Socket => libc::SYS_socket,
                Syscall::Socketpair => libc::SYS_socketpair,
                Syscall::Bind => libc::SYS_bind,
                Syscall::Listen => libc::SYS_listen,
                Syscall::Connect => libc::SYS_connect,
                Syscall::Accept => libc::SYS_accept,
                Syscall::Accept4 => libc::SYS_accept4,
                Syscall::Getsockopt => libc::SYS_getsockopt,
                Syscall::Setsockopt => libc::SYS_setsockopt,
                Syscall::Getsockname => libc::SYS_getsockname,
                Syscall::Getpeername => libc::SYS_getpeername,
                Syscall::Shutdown => libc::SYS_shutdown,
                Syscall::Close => libc::SYS_close,
            };
            assert_eq!(syscall.x86_64_nr(), libc_nr as u64, "{}", syscall.name());
            assert_eq!(Syscall::from_x86_64_nr(libc_nr as u64), Some(syscall));
        }
    }

    /// The first check passes exactly the traced numbers.
    #[test]
    fn quick_check_matches_the_table() {
        for nr in 0..1024 {
            let traced = Syscall::from_x86_64_nr(nr).is_some();
            assert_eq!(Syscall::x86_64_maybe_traced(nr), traced, "syscall {nr}");
        }
        assert!(!Syscall::x86_64_maybe_traced(u64::MAX));
    }
}
