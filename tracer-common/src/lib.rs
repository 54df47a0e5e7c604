//! Types shared by the kernel programs (`tracer-ebpf`) and the `wsltrace` binary.
//!
//! Everything that crosses the ring buffer or a map is defined here once, `#[repr(C)]`, with
//! explicit padding and a size assertion, so both sides agree on the layout by construction.
#![no_std]

pub mod config;
pub mod emulate;
pub mod layout;
pub mod record;
pub mod syscall;

pub use record::{
    Header, Identity, PendingCall, ProcessRecord, RecordKind, Slot, SyscallHead, SyscallRecord,
    SyscallView,
};
pub use syscall::{Capture, IDENTITY_CHANGES, Syscall};
