//! `--probe-kind raw`: the raw tracepoints `sys_enter` and `sys_exit`, which fire for every
//! syscall of every process on the machine. Each returns at once unless the syscall number is
//! a traced one, then hands the call to the same `on_enter`/`on_exit` as the syscall
//! tracepoint programs, so both kinds emit the same records. x86_64 only: the syscall numbers
//! and the `pt_regs` offsets below are x86_64's (userspace refuses raw elsewhere).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{map, raw_tracepoint},
    maps::ProgramArray,
    programs::RawTracePointContext,
};
use tracer_common::Syscall;

use crate::{
    maps::{SELECTED, is_traced},
    syscalls::{SyscallArgs, SyscallResult, on_exit, on_traced_enter},
};

// struct pt_regs on x86_64 (arch/x86/include/asm/ptrace.h; the same layout as ptrace's
// user_regs_struct, so it does not move between kernels): from offset 56, r10 r9 r8 ax cx dx
// si di orig_ax ip cs, 8 bytes each.
const REGS_R10: u64 = 56;
const REGS_ORIG_AX: u64 = 120;
/// Where the syscall's arguments are in a [`Frame`] (di, si, dx, r10, r8, r9), in argument
/// order.
const ARG_WORDS: [usize; 6] = [7, 6, 5, 0, 2, 1];
/// Where `cs` is in a [`Frame`].
const FRAME_CS: usize = 10;
/// `__USER_CS`: the code segment of a 64-bit caller. A 32-bit process's calls (`__USER32_CS`)
/// carry ia32 numbers, which the syscall tracepoints never report either.
const USER_CS: u64 = 0x33;

/// The words at `regs + REGS_ORIG_AX`: orig_ax, ip, cs, read with one helper call.
type Tail = [u64; 3];

/// The words at `regs + REGS_R10`, r10 to cs: the arguments and the segment in one read.
type Frame = [u64; 11];

#[inline(always)]
fn read<T: Copy>(addr: u64) -> Option<T> {
    // SAFETY: the helper validates the kernel address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// The traced syscall `nr` names, when it is attached: selected, or context (see
/// `verdict`), as the syscall tracepoints of the other kind are attached.
#[inline(always)]
fn dispatch(nr: u64) -> Option<Syscall> {
    // The bystander's whole cost: a shift and a mask for nearly every other syscall.
    if !Syscall::x86_64_maybe_traced(nr) {
        return None;
    }
    let syscall = Syscall::from_x86_64_nr(nr)?;
    let attached = SELECTED.load() | Syscall::CONTEXT_BITS;
    (attached & syscall.bit() != 0).then_some(syscall)
}

/// Whether the call was made by 64-bit code, from its saved code segment.
#[inline(always)]
fn native(tail: &Tail) -> bool {
    tail[2] & 0xffff == USER_CS
}

#[map]
static RAW_ENTER: ProgramArray = ProgramArray::with_max_entries(Syscall::ALL.len() as u32, 0);
#[map]
static RAW_EXIT: ProgramArray = ProgramArray::with_max_entries(Syscall::ALL.len() as u32, 0);

/// `sys_enter(struct pt_regs *regs, long id)`: a traced number goes on to its syscall's
/// entry program (a tail call: one small program per syscall, as with the tracepoints, which
/// older verifiers accept where one program for every syscall was too complex).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_sys_enter(ctx: RawTracePointContext) -> u32 {
    let nr: u64 = ctx.arg(1);
    if let Some(syscall) = dispatch(nr) {
        // SAFETY: the entry programs take the same context; on failure (no program at that
        // index: the syscall is not attached) the call returns here.
        unsafe { RAW_ENTER.tail_call(&ctx, syscall as u32) };
    }
    0
}

/// `sys_exit(struct pt_regs *regs, long ret)`: the number is `regs->orig_ax`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn raw_sys_exit(ctx: RawTracePointContext) -> u32 {
    let regs: u64 = ctx.arg(0);
    let Some(tail) = read::<Tail>(regs + REGS_ORIG_AX) else { return 0 };
    // The code segment comes in the same read as the number, so this test is free here.
    if let Some(syscall) = dispatch(tail[0])
        && native(&tail)
    {
        // SAFETY: as in `raw_sys_enter`.
        unsafe { RAW_EXIT.tail_call(&ctx, syscall as u32) };
    }
    0
}

/// The entry of `syscall`, tail-called from `raw_sys_enter`.
#[inline(always)]
fn enter(ctx: &RawTracePointContext, syscall: Syscall) {
    let regs: u64 = ctx.arg(0);
    // Traced first (the map lookup every program makes), then the registers: an untraced
    // process's socket calls pay no register read.
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced((pid_tgid >> 32) as u32) {
        return;
    }
    let Some(frame) = read::<Frame>(regs + REGS_R10) else { return };
    if frame[FRAME_CS] & 0xffff != USER_CS {
        return;
    }
    on_traced_enter(&Args(frame), syscall, pid_tgid);
}

/// The exit of `syscall`, tail-called from `raw_sys_exit`.
#[inline(always)]
fn exit(ctx: &RawTracePointContext, syscall: Syscall) {
    on_exit(&Exit { ret: ctx.arg(1), nr: syscall.x86_64_nr() }, syscall);
}

macro_rules! raw_programs {
    ($($variant:ident = $nr:literal => $enter:ident, $exit:ident;)*) => {
        $(
            // A section per program, `raw_tp/NAME` (see `syscall_programs`): never attached
            // by name, only tail-called.
            #[unsafe(no_mangle)]
            #[unsafe(link_section = concat!("raw_tp/", stringify!($enter)))]
            pub fn $enter(ctx: *mut c_void) -> u32 {
                enter(&RawTracePointContext::new(ctx), Syscall::$variant);
                0
            }

            #[unsafe(no_mangle)]
            #[unsafe(link_section = concat!("raw_tp/", stringify!($exit)))]
            pub fn $exit(ctx: *mut c_void) -> u32 {
                exit(&RawTracePointContext::new(ctx), Syscall::$variant);
                0
            }
        )*
    };
}

tracer_common::for_each_x86_64_syscall!(raw_programs);

/// The saved user registers of the current call.
struct Args(Frame);

impl SyscallArgs for Args {
    #[inline(always)]
    fn arg(&self, i: usize) -> u64 {
        if i < ARG_WORDS.len() { self.0[ARG_WORDS[i]] } else { 0 }
    }
}

struct Exit {
    ret: i64,
    nr: u64,
}

impl SyscallResult for Exit {
    #[inline(always)]
    fn ret(&self) -> i64 {
        self.ret
    }

    #[inline(always)]
    fn nr(&self) -> u64 {
        self.nr
    }
}
