//! Bounded copies of user memory into a record.

use aya_ebpf::{cty::c_void, helpers::generated::bpf_probe_read_user};

/// Copies `min(len, N)` bytes from user address `src` into `dst` and returns how many;
/// `None` if the read faulted or `src` is NULL.
#[inline(always)]
pub fn read_user<const N: usize>(dst: &mut [u8; N], src: u64, len: u32) -> Option<u32> {
    if src == 0 {
        return None;
    }
    // Clamped as a 64-bit value: the verifier must see the bound on the very register passed
    // to the helper (a 32-bit compare let LLVM pass the unextended register).
    let len = u64::from(len);
    // Through a volatile load: where the caller has bounded `len` already (the record's tail
    // was chosen by it), LLVM would drop the clamp below, and the bound it relied on may sit
    // on another register, which the verifier does not connect.
    // SAFETY: a read of a local.
    let len = unsafe { core::ptr::read_volatile(&len) };
    let n = if len > N as u64 { N as u64 } else { len };
    // SAFETY: the helper checks `src` itself; `dst` is valid for `n <= N` bytes.
    let ret =
        unsafe { bpf_probe_read_user(dst.as_mut_ptr().cast(), n as u32, src as *const c_void) };
    (ret == 0).then_some(n as u32)
}

/// Reads the `u32` length a syscall writes back through `ptr` (socklen_t).
#[inline(always)]
pub fn read_user_len(ptr: u64) -> Option<u32> {
    if ptr == 0 {
        return None;
    }
    // SAFETY: the helper validates the user pointer and returns an error on fault.
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(ptr as *const u32) }.ok()
}
