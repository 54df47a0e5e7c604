//! The traced syscalls, written once.
//!
//! `for_each_syscall!` is the single list: it defines [`Syscall`] here, generates the enter/exit
//! tracepoint programs in `tracer-ebpf`, and drives the attach loop in `wsltrace`.

/// Calls `$m!` with the list of traced syscalls: `Variant = id => name, enter_prog, exit_prog, nargs;`.
///
/// Ids are part of the record format: never reuse or renumber one.
#[macro_export]
macro_rules! for_each_syscall {
    ($m:ident) => {
        $m! {
            Socket = 0 => socket, sys_enter_socket, sys_exit_socket, 3;
            Socketpair = 1 => socketpair, sys_enter_socketpair, sys_exit_socketpair, 4;
            Bind = 2 => bind, sys_enter_bind, sys_exit_bind, 3;
            Listen = 3 => listen, sys_enter_listen, sys_exit_listen, 2;
            Connect = 4 => connect, sys_enter_connect, sys_exit_connect, 3;
            Accept = 5 => accept, sys_enter_accept, sys_exit_accept, 3;
            Accept4 = 6 => accept4, sys_enter_accept4, sys_exit_accept4, 4;
            Getsockopt = 7 => getsockopt, sys_enter_getsockopt, sys_exit_getsockopt, 5;
            Setsockopt = 8 => setsockopt, sys_enter_setsockopt, sys_exit_setsockopt, 5;
            Getsockname = 9 => getsockname, sys_enter_getsockname, sys_exit_getsockname, 3;
            Getpeername = 10 => getpeername, sys_enter_getpeername, sys_exit_getpeername, 3;
            Shutdown = 11 => shutdown, sys_enter_shutdown, sys_exit_shutdown, 2;
            Close = 12 => close, sys_enter_close, sys_exit_close, 1;
        }
    };
}

macro_rules! define_syscalls {
    ($($variant:ident = $id:literal => $name:ident, $enter:ident, $exit:ident, $nargs:literal;)*) => {
        /// A traced syscall. The discriminant is the id carried in [`crate::SyscallRecord`].
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Syscall {
            $($variant = $id,)*
        }

        impl Syscall {
            /// Every traced syscall, in id order.
            pub const ALL: &'static [Syscall] = &[$(Syscall::$variant,)*];

            /// The syscall's name, as in `man 2` and the tracepoint names.
            pub const fn name(self) -> &'static str {
                match self { $(Syscall::$variant => stringify!($name),)* }
            }

            /// Name of the `syscalls:sys_enter_*` tracepoint and of the program attached to it.
            pub const fn enter_tracepoint(self) -> &'static str {
                match self { $(Syscall::$variant => stringify!($enter),)* }
            }

            /// Name of the `syscalls:sys_exit_*` tracepoint and of the program attached to it.
            pub const fn exit_tracepoint(self) -> &'static str {
                match self { $(Syscall::$variant => stringify!($exit),)* }
            }

            /// Number of arguments the syscall takes.
            pub const fn nargs(self) -> usize {
                match self { $(Syscall::$variant => $nargs,)* }
            }

            pub const fn from_id(id: u32) -> Option<Syscall> {
                match id { $($id => Some(Syscall::$variant),)* _ => None }
            }
        }
    };
}

for_each_syscall!(define_syscalls);

/// Calls `$m!` with the x86_64 syscall numbers of the traced syscalls
/// (arch/x86/entry/syscalls/syscall_64.tbl) and the names of their `--probe-kind raw`
/// programs (entry, exit): `Variant = nr => raw_enter_prog, raw_exit_prog;`. The raw
/// `sys_enter`/`sys_exit` programs see every syscall by its number and tail-call these.
/// Written once: [`Syscall::x86_64_nr`], [`Syscall::from_x86_64_nr`], [`X86_64_LOW_NRS`], the
/// program names and the programs in `tracer-ebpf` come from it.
#[macro_export]
macro_rules! for_each_x86_64_syscall {
    ($m:ident) => {
        $m! {
            Close = 3 => raw_enter_close, raw_exit_close;
            Socket = 41 => raw_enter_socket, raw_exit_socket;
            Connect = 42 => raw_enter_connect, raw_exit_connect;
            Accept = 43 => raw_enter_accept, raw_exit_accept;
            Shutdown = 48 => raw_enter_shutdown, raw_exit_shutdown;
            Bind = 49 => raw_enter_bind, raw_exit_bind;
            Listen = 50 => raw_enter_listen, raw_exit_listen;
            Getsockname = 51 => raw_enter_getsockname, raw_exit_getsockname;
            Getpeername = 52 => raw_enter_getpeername, raw_exit_getpeername;
            Socketpair = 53 => raw_enter_socketpair, raw_exit_socketpair;
            Setsockopt = 54 => raw_enter_setsockopt, raw_exit_setsockopt;
            Getsockopt = 55 => raw_enter_getsockopt, raw_exit_getsockopt;
            Accept4 = 288 => raw_enter_accept4, raw_exit_accept4;
        }
    };
}

macro_rules! x86_64_numbers {
    ($($variant:ident = $nr:literal => $enter:ident, $exit:ident;)*) => {
        impl Syscall {
            /// The syscall's number on x86_64.
            pub const fn x86_64_nr(self) -> u64 {
                match self { $(Syscall::$variant => $nr,)* }
            }

            /// The traced syscall with x86_64 number `nr`, if any.
            #[inline(always)]
            pub const fn from_x86_64_nr(nr: u64) -> Option<Syscall> {
                match nr { $($nr => Some(Syscall::$variant),)* _ => None }
            }

            /// The `--probe-kind raw` entry program of this syscall (a tail-call target).
            pub const fn raw_enter_program(self) -> &'static str {
                match self { $(Syscall::$variant => stringify!($enter),)* }
            }

            /// The `--probe-kind raw` exit program of this syscall (a tail-call target).
            pub const fn raw_exit_program(self) -> &'static str {
                match self { $(Syscall::$variant => stringify!($exit),)* }
            }
        }

        /// Bit `nr` set for each traced x86_64 syscall number below 64: the raw programs'
        /// first test, a shift and a mask, before any helper call.
        pub const X86_64_LOW_NRS: u64 = $((if $nr < 64 { 1u64 << $nr } else { 0 }) |)* 0;
    };
}

for_each_x86_64_syscall!(x86_64_numbers);

impl Syscall {
    /// Whether x86_64 syscall `nr` may be a traced one: exact below 64 (the bitmap), else
    /// the few numbers above. Cheap, for the raw programs' first check.
    #[inline(always)]
    pub const fn x86_64_maybe_traced(nr: u64) -> bool {
        if nr < 64 { X86_64_LOW_NRS >> nr & 1 != 0 } else { Syscall::from_x86_64_nr(nr).is_some() }
    }

    /// The bits ([`Syscall::bit`]) of the syscalls whose successful calls are context
    /// ([`Syscall::is_context`]).
    pub const CONTEXT_BITS: u64 = {
        let mut bits = 0;
        let mut i = 0;
        while i < Syscall::ALL.len() {
            if Syscall::ALL[i].is_context() {
                bits |= Syscall::ALL[i].bit();
            }
            i += 1;
        }
        bits
    };
}

impl Syscall {
    /// Bit of this syscall in [`crate::config::GLOBAL_SELECTED`].
    pub const fn bit(self) -> u64 {
        1 << (self as u32)
    }

    /// Whether a successful call changes what an fd is (creates, names, connects or closes a
    /// socket). Such calls reach userspace even when a filter hides them, flagged
    /// [`crate::record::FLAG_CONTEXT`], so the calls that are shown can say what their fd is.
    pub const fn is_context(self) -> bool {
        matches!(
            self,
            Syscall::Socket
                | Syscall::Socketpair
                | Syscall::Bind
                | Syscall::Listen
                | Syscall::Connect
                | Syscall::Accept
                | Syscall::Accept4
                | Syscall::Getsockname
                | Syscall::Close
        )
    }

    /// Whether the call can block for long, so that a thread may be inside it when tracing
    /// starts: its exit without an entry is then reported, flagged. For the other syscalls a
    /// missing entry means the call was filtered at entry (e.g. close() of a file).
    pub const fn may_block(self) -> bool {
        matches!(self, Syscall::Accept | Syscall::Accept4 | Syscall::Connect)
    }

    /// Which user memory the kernel programs copy for this syscall, and when.
    pub const fn capture(self) -> Capture {
        match self {
            Syscall::Bind | Syscall::Connect => Capture::AddrIn { ptr: 1, len: 2 },
            Syscall::Accept | Syscall::Accept4 | Syscall::Getsockname | Syscall::Getpeername => {
                Capture::AddrOut { ptr: 1, len_ptr: 2 }
            }
            Syscall::Setsockopt => Capture::ValueIn { ptr: 3, len: 4 },
            Syscall::Getsockopt => Capture::ValueOut { ptr: 3, len_ptr: 4 },
            Syscall::Socketpair => Capture::Fds { ptr: 3 },
            Syscall::Socket | Syscall::Listen | Syscall::Shutdown | Syscall::Close => Capture::None,
        }
    }
}

/// `SOL_SOCKET` and `SO_ERROR`: getsockopt reads (and clears) the socket's pending error there,
/// the outcome of a non-blocking connect.
pub const SOL_SOCKET: u64 = 1;
pub const SO_ERROR: u64 = 4;
/// A non-blocking connect under way: its outcome comes later, through SO_ERROR or a second
/// connect.
pub const EINPROGRESS: u32 = 115;

/// How a finished call ended, as the result filters (`--failed`, `-e`) judge it. One definition
/// for the kernel programs and for userspace (`analyze` filters recordings the same way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The errno the call reports (0: none): its own, or the error its SO_ERROR value holds.
    pub errno: u32,
    /// A connect that returned EINPROGRESS did not fail (yet); a getsockopt(SO_ERROR) that
    /// read an error reports a failure.
    pub failed: bool,
}

impl Syscall {
    /// Whether this call reads SO_ERROR: getsockopt(fd, SOL_SOCKET, SO_ERROR, ...).
    pub const fn reads_so_error(self, args: &[u64; 6]) -> bool {
        matches!(self, Syscall::Getsockopt)
            && args[1] as u32 as u64 == SOL_SOCKET
            && args[2] as u32 as u64 == SO_ERROR
    }

    /// The outcome of a call that returned `ret`; `so_error` is the value a successful
    /// getsockopt(SO_ERROR) read (0 for any other call).
    pub const fn outcome(self, ret: i64, so_error: u32) -> Outcome {
        if ret < 0 {
            let errno = ret.unsigned_abs() as u32;
            let in_progress = matches!(self, Syscall::Connect) && errno == EINPROGRESS;
            Outcome { errno, failed: !in_progress }
        } else {
            Outcome { errno: so_error, failed: so_error != 0 }
        }
    }
}

/// A user-memory copy made by the kernel programs. Fields are argument indexes.
///
/// "In" buffers are read at entry (the caller filled them); "out" buffers at exit (the kernel
/// filled them): an address bounded by the buffer size the caller passed in at entry (the
/// kernel writes back the address's whole size), an option value by the size written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    None,
    /// A sockaddr at `args[ptr]` whose length is the value `args[len]`; into `addr`.
    AddrIn {
        ptr: usize,
        len: usize,
    },
    /// A sockaddr written at `args[ptr]`, its length written at `*args[len_ptr]`; into `addr`.
    AddrOut {
        ptr: usize,
        len_ptr: usize,
    },
    /// An option value at `args[ptr]` of length `args[len]`; into `value`.
    ValueIn {
        ptr: usize,
        len: usize,
    },
    /// An option value written at `args[ptr]`, its length at `*args[len_ptr]`; into `value`.
    ValueOut {
        ptr: usize,
        len_ptr: usize,
    },
    /// The two fds written at `args[ptr]` (socketpair); into `value`.
    Fds {
        ptr: usize,
    },
}

/// Calls `$m!` with the `sys_exit_*` programs of the syscalls that can change a thread's
/// namespaces, effective capabilities, uid or gid: each drops the thread's kept
/// [`crate::record::Identity`]. `sched:sched_process_exec` does too.
#[macro_export]
macro_rules! for_each_identity_change {
    ($m:ident) => {
        $m! {
            sys_exit_setns, sys_exit_unshare, sys_exit_capset, sys_exit_setuid,
            sys_exit_setreuid, sys_exit_setresuid, sys_exit_setfsuid, sys_exit_setgid,
            sys_exit_setregid, sys_exit_setresgid, sys_exit_setfsgid
        }
    };
}

macro_rules! identity_change_names {
    ($($program:ident),*) => {
        /// The `syscalls:sys_exit_*` tracepoints after which a thread's identity is read afresh.
        pub const IDENTITY_CHANGES: &[&str] = &[$(stringify!($program)),*];
    };
}

for_each_identity_change!(identity_change_names);
