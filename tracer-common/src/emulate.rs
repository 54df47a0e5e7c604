//! `wsltrace emulate`: what the cgroup programs (tracer-ebpf/src/emulate.rs) inject, as the
//! loader writes it into [`MAP_EMULATE_CONFIG`] before attaching them.
//!
//! The programs implement matchers (an option name, "no listener at the destination", a port
//! range); which quirk uses which matcher with which errno is data, in wsltrace's quirk
//! catalogue. An all-zero configuration injects nothing.

/// `Array<EmulateConfig>` with one entry.
pub const MAP_EMULATE_CONFIG: &str = "EMULATE_CONFIG";
/// `PerCpuArray<u64>` indexed by a rule's `slot`: how many calls each quirk failed.
pub const MAP_EMULATE_HITS: &str = "EMULATE_HITS";

/// Program names (functions in tracer-ebpf/src/emulate.rs).
pub const PROG_GETSOCKOPT: &str = "emulate_getsockopt";
pub const PROG_CONNECT4: &str = "emulate_connect4";
pub const PROG_CONNECT6: &str = "emulate_connect6";
pub const PROG_BIND4: &str = "emulate_bind4";
pub const PROG_BIND6: &str = "emulate_bind6";
/// `cgroup_skb/ingress`: replies the emulated command's sockets never get (see [`ReplyDrop`]).
pub const PROG_INGRESS: &str = "emulate_ingress";

/// Quirks selected at once, at most (slots in [`MAP_EMULATE_HITS`]).
pub const MAX_QUIRKS: u32 = 16;
pub const MAX_SOCKOPT_RULES: usize = 4;
pub const MAX_PORT_RANGES: usize = 8;
/// Nameservers whose replies [`ReplyDrop`] can drop.
pub const MAX_NAMESERVERS: usize = 4;

/// [`ConnectRule::blocking`]: every connect.
pub const BLOCKING_ANY: u32 = 0;
/// [`ConnectRule::blocking`]: only connects on non-blocking sockets (`O_NONBLOCK`).
pub const BLOCKING_NONBLOCKING_ONLY: u32 = 1;

/// getsockopt(level, optname) on a socket of `family` fails with `errno`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockoptRule {
    /// 0: an empty slot (the list ends here).
    pub errno: u32,
    pub slot: u32,
    pub level: i32,
    pub optname: i32,
    /// Address family of the socket; 0 for any.
    pub family: u32,
    pub _pad: u32,
}

/// A TCP connect to a loopback destination where no socket listens fails with `errno`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectRule {
    /// 0: off.
    pub errno: u32,
    pub slot: u32,
    /// [`BLOCKING_ANY`] or [`BLOCKING_NONBLOCKING_ONLY`].
    pub blocking: u32,
    pub _pad: u32,
}

/// Inclusive range of ports, host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// An AF_INET/AF_INET6 bind to a port in one of the ranges fails with `errno`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindRule {
    /// 0: off.
    pub errno: u32,
    pub slot: u32,
    /// Ranges in use at the start of `ports`.
    pub count: u32,
    pub _pad: u32,
    pub ports: [PortRange; MAX_PORT_RANGES],
}

/// Which calls of which processes the getsockopt rules apply to. The program is attached at the
/// root of the cgroup hierarchy, because the kernel runs it for the cgroup of the *socket*, and
/// an accepted AF_UNIX socket belongs to the cgroup of the client that connected: attached to
/// the emulated cgroup only, a server under emulation would never see the quirk when its
/// clients run outside. So the rules apply to calls made by a task inside the emulated cgroup
/// (or below it), whoever made the socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The emulated cgroup's id (its directory's inode number in cgroup v2); 0: any caller.
    pub cgroup_id: u64,
    /// Its depth in the hierarchy (the root is 0), for `bpf_get_current_ancestor_cgroup_id`.
    pub level: u32,
    pub _pad: u32,
}

/// One IPv4 endpoint in network byte order, as a packet carries it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint4 {
    pub addr: u32,
    pub port: u16,
    pub _pad: u16,
}

/// Replies dropped on their way into the emulated command's sockets (`cgroup_skb/ingress`):
/// - `hang_slot` set: a TCP reset from 127.0.0.1 to a socket still connecting (SYN_SENT), so
///   that a connect to 127.0.0.1 where nothing listens hangs instead of being refused;
/// - `dns_count` nameservers: UDP datagrams and TCP segments carrying data from them, so that
///   DNS queries get no answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyDrop {
    /// Non-zero: drop the resets (the quirk's slot is `hang_slot - 1`).
    pub hang_slot: u32,
    /// Non-zero: drop the nameservers' replies (the quirk's slot is `dns_slot - 1`).
    pub dns_slot: u32,
    pub dns_count: u32,
    pub _pad: u32,
    pub nameservers: [Endpoint4; MAX_NAMESERVERS],
}

/// Offsets (from the kernel's BTF) to reach a socket's file flags from `struct sock`, to tell
/// non-blocking sockets apart: `sk->sk_socket->file->f_flags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockLayout {
    /// Non-zero when the offsets below were resolved.
    pub resolved: u32,
    pub sock_sk_socket: u32,
    pub socket_file: u32,
    pub file_f_flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulateConfig {
    pub sockopt: [SockoptRule; MAX_SOCKOPT_RULES],
    pub connect: ConnectRule,
    pub bind: BindRule,
    pub layout: SockLayout,
    pub caller: Caller,
    pub drop: ReplyDrop,
}

const _: () = assert!(size_of::<SockoptRule>() == 24);
const _: () = assert!(size_of::<BindRule>() == 48);
const _: () = assert!(size_of::<ReplyDrop>() == 16 + 8 * MAX_NAMESERVERS);
const _: () = assert!(
    size_of::<EmulateConfig>()
        == 24 * MAX_SOCKOPT_RULES + 16 + 48 + 16 + 16 + 16 + 8 * MAX_NAMESERVERS
);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` integers only, no padding (checked by the size assertions), valid for
// any bit pattern.
unsafe impl aya::Pod for EmulateConfig {}
