//! wsltrace's kernel programs: syscall tracepoints that pair entry and exit per thread and emit
//! one record per call, plus sched tracepoints that follow forks and notice exits; and the
//! cgroup programs of `wsltrace emulate`, which make chosen socket calls fail.
// `core::intrinsics::atomic_xadd`: the BPF target has no compare-and-swap, so Rust gives it
// no atomic read-modify-write types, though BPF has an atomic add (see `sockets`).
#![feature(core_intrinsics)]
#![allow(internal_features)]
#![no_std]
#![no_main]

mod capture;
mod emulate;
mod identity;
mod maps;
mod output;
mod process;
mod raw;
mod slots;
mod sockets;
mod store;
mod syscalls;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach this; it exists only to satisfy no_std.
    loop {}
}

// GPL-compatible: bpf_probe_read_user is a GPL-only helper.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
