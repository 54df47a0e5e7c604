//! `wsltrace emulate`: cgroup programs that make chosen socket calls fail the way they do on
//! another platform (WSL1, WSL2), attached only to the cgroup the emulated command runs in.
//!
//! Each hook runs inside the syscall; `bpf_set_retval(-errno)` plus "reject" makes the call
//! return that errno, and the syscall tracepoints see it at exit like any other failure.
//! Everything no rule matches passes untouched. The rules are written by userspace into
//! `EMULATE_CONFIG` (see tracer_common::emulate); all zero, nothing is injected.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_F_CURRENT_NETNS, bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2,
    },
    helpers::generated::{
        bpf_get_current_ancestor_cgroup_id, bpf_probe_read_kernel, bpf_set_retval, bpf_sk_fullsock,
        bpf_sk_lookup_tcp, bpf_sk_release,
    },
    macros::{cgroup_skb, cgroup_sock_addr, cgroup_sockopt, map},
    maps::{Array, PerCpuArray},
    programs::{SkBuffContext, SockAddrContext, SockoptContext},
};
use tracer_common::emulate::{
    BLOCKING_NONBLOCKING_ONLY, EmulateConfig, MAX_NAMESERVERS, MAX_PORT_RANGES, MAX_QUIRKS,
    MAX_SOCKOPT_RULES,
};

#[map]
static EMULATE_CONFIG: Array<EmulateConfig> = Array::with_max_entries(1, 0);

#[map]
static EMULATE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_QUIRKS, 0);

/// One slot to launder a socket pointer into a plain number (see `is_nonblocking`).
#[map]
static EMULATE_PTR: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// cgroup programs: 1 lets the call go on, 0 rejects it (with the errno set by set_retval).
const PASS: i32 = 1;
const REJECT: i32 = 0;

const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const O_NONBLOCK: u32 = 0o4000;
/// 127.0.0.1 as the kernel stores it (network order, read as a little-endian u32).
const LOOPBACK4: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
/// ::ffff:0:0/96, the third 32-bit word of an IPv4-mapped IPv6 address.
const V4_MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
const ONE_BE: u32 = u32::from_ne_bytes([0, 0, 0, 1]);

#[inline(always)]
fn config() -> Option<&'static EmulateConfig> {
    EMULATE_CONFIG.get(0)
}

/// Fails the call with `errno` and counts it for the quirk in `slot`.
#[inline(always)]
fn inject(errno: u32, slot: u32) -> i32 {
    // SAFETY: a helper of cgroup programs (5.18+); it only sets the syscall's return value.
    unsafe { bpf_set_retval(-(errno as i32)) };
    if let Some(hits) = EMULATE_HITS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot; programs on one CPU do not preempt each other.
        unsafe { *hits += 1 };
    }
    REJECT
}

/// Counts a packet dropped for the quirk in `slot`.
#[inline(always)]
fn count_drop(slot: u32) {
    if let Some(hits) = EMULATE_HITS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot; programs on one CPU do not preempt each other.
        unsafe { *hits += 1 };
    }
}

/// The kernel's buffer for a getsockopt program holds one page; a program that leaves a larger
/// answer's length alone makes the kernel log a warning. Setting it to 0 keeps the kernel's
/// answer untouched in the caller's buffer, which is what passing means.
const PAGE_SIZE: i32 = 4096;

/// `cgroup/getsockopt` runs after the kernel answered: a matching rule turns the answer into
/// the rule's errno. It is attached at the root of the hierarchy (see
/// `tracer_common::emulate::Caller`), so it first checks that the caller is emulated.
#[cgroup_sockopt(getsockopt)]
pub fn emulate_getsockopt(ctx: SockoptContext) -> i32 {
    let Some(cfg) = config() else { return PASS };
    if cfg.caller.cgroup_id != 0 {
        // SAFETY: a helper without pointers.
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(cfg.caller.level as i32) };
        if ancestor != cfg.caller.cgroup_id {
            // SAFETY: the context the kernel passed; optlen is writable in getsockopt programs.
            unsafe {
                if (*ctx.sockopt).optlen > PAGE_SIZE {
                    (*ctx.sockopt).optlen = 0;
                }
            }
            return PASS;
        }
    }
    // SAFETY: the context the kernel passed; its `sk` is always a valid socket here.
    let (level, optname, family) = unsafe {
        let opt = &*ctx.sockopt;
        (opt.level, opt.optname, (*opt.__bindgen_anon_1.sk).family)
    };
    let mut i = 0;
    while i < MAX_SOCKOPT_RULES {
        let rule = &cfg.sockopt[i];
        if rule.errno == 0 {
            break;
        }
        if rule.level == level
            && rule.optname == optname
            && (rule.family == 0 || rule.family == family)
        {
            return inject(rule.errno, rule.slot);
        }
        i += 1;
    }
    PASS
}

#[cgroup_sock_addr(connect4)]
pub fn emulate_connect4(ctx: SockAddrContext) -> i32 {
    let Some(cfg) = config() else { return PASS };
    if cfg.connect.errno == 0 || !is_tcp(&ctx) {
        return PASS;
    }
    // SAFETY: the context the kernel passed.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    connect_v4(&ctx, cfg, ip, port)
}

#[cgroup_sock_addr(connect6)]
pub fn emulate_connect6(ctx: SockAddrContext) -> i32 {
    let Some(cfg) = config() else { return PASS };
    if cfg.connect.errno == 0 || !is_tcp(&ctx) {
        return PASS;
    }
    // SAFETY: the context the kernel passed.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip6, (*ctx.sock_addr).user_port) };
    if ip[0] == 0 && ip[1] == 0 && ip[2] == V4_MAPPED {
        // ::ffff:a.b.c.d on a dual-stack socket is an IPv4 connect.
        return connect_v4(&ctx, cfg, ip[3], port);
    }
    // `::` connects to the loopback, like 0.0.0.0.
    let loopback = ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && (ip[3] == ONE_BE || ip[3] == 0);
    if !loopback {
        return PASS;
    }
    if !blocking_mode_matches(&ctx, cfg) {
        return PASS;
    }
    // SAFETY: plain-data union, all zero is a valid value.
    let mut tuple: bpf_sock_tuple = unsafe { zeroed() };
    tuple.__bindgen_anon_1.ipv6.daddr = [0, 0, 0, ONE_BE];
    tuple.__bindgen_anon_1.ipv6.dport = port as u16;
    decide(&ctx, cfg, &mut tuple, size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2>() as u32)
}

/// Only destinations on this machine can be known to have no listener: a remote host's
/// sockets are out of sight, so connects elsewhere pass untouched.
#[inline(always)]
fn connect_v4(ctx: &SockAddrContext, cfg: &EmulateConfig, ip: u32, port: u32) -> i32 {
    // 0.0.0.0 connects to the loopback.
    let ip = if ip == 0 { LOOPBACK4 } else { ip };
    if ip & 0xff != 127 || !blocking_mode_matches(ctx, cfg) {
        return PASS;
    }
    // SAFETY: plain-data union, all zero is a valid value.
    let mut tuple: bpf_sock_tuple = unsafe { zeroed() };
    tuple.__bindgen_anon_1.ipv4.daddr = ip;
    tuple.__bindgen_anon_1.ipv4.dport = port as u16;
    decide(ctx, cfg, &mut tuple, size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>() as u32)
}

/// Looks the destination up in the socket's network namespace: a listener (or any socket
/// matching) lets the connect go on; none fails it with the rule's errno.
#[inline(always)]
fn decide(
    ctx: &SockAddrContext,
    cfg: &EmulateConfig,
    tuple: &mut bpf_sock_tuple,
    size: u32,
) -> i32 {
    // SAFETY: `tuple` is valid for `size` bytes; a socket found is released below.
    let sk = unsafe { bpf_sk_lookup_tcp(ctx.as_ptr(), tuple, size, BPF_F_CURRENT_NETNS as u64, 0) };
    if !sk.is_null() {
        // SAFETY: the reference the lookup took.
        unsafe { bpf_sk_release(sk.cast()) };
        return PASS;
    }
    inject(cfg.connect.errno, cfg.connect.slot)
}

#[inline(always)]
fn is_tcp(ctx: &SockAddrContext) -> bool {
    // SAFETY: the context the kernel passed.
    let (ty, protocol) = unsafe { ((*ctx.sock_addr).type_, (*ctx.sock_addr).protocol) };
    ty == SOCK_STREAM && protocol == IPPROTO_TCP
}

#[inline(always)]
fn blocking_mode_matches(ctx: &SockAddrContext, cfg: &EmulateConfig) -> bool {
    cfg.connect.blocking != BLOCKING_NONBLOCKING_ONLY || is_nonblocking(ctx, cfg) == Some(true)
}

#[inline(always)]
fn read_kernel<T: Copy + Default>(addr: u64) -> Option<T> {
    let mut out = T::default();
    // SAFETY: the helper validates the kernel address and fails instead of faulting.
    let ret = unsafe {
        bpf_probe_read_kernel(
            (&raw mut out).cast(),
            size_of::<T>() as u32,
            addr as *const aya_ebpf::cty::c_void,
        )
    };
    (ret == 0).then_some(out)
}

/// `sk->sk_socket->file->f_flags & O_NONBLOCK`. The verifier forbids arithmetic on a socket
/// pointer, so its value goes through a map slot, which yields a plain number (allowed for
/// the privileged loader), and the fields are read with bpf_probe_read_kernel.
#[inline(always)]
fn is_nonblocking(ctx: &SockAddrContext, cfg: &EmulateConfig) -> Option<bool> {
    let layout = &cfg.layout;
    if layout.resolved == 0 {
        return None;
    }
    let slot = EMULATE_PTR.get_ptr_mut(0)?;
    // SAFETY: the context's socket pointer, stored as a number in this CPU's slot.
    let sk = unsafe {
        core::ptr::write_volatile(slot, (*ctx.sock_addr).__bindgen_anon_1.sk as u64);
        core::ptr::read_volatile(slot)
    };
    let socket: u64 = read_kernel(sk + u64::from(layout.sock_sk_socket))?;
    let file: u64 = read_kernel(socket + u64::from(layout.socket_file))?;
    let flags: u32 = read_kernel(file + u64::from(layout.file_f_flags))?;
    Some(flags & O_NONBLOCK != 0)
}

#[cgroup_sock_addr(bind4)]
pub fn emulate_bind4(ctx: SockAddrContext) -> i32 {
    bind(&ctx)
}

#[cgroup_sock_addr(bind6)]
pub fn emulate_bind6(ctx: SockAddrContext) -> i32 {
    bind(&ctx)
}

/// A bind to a port in one of the configured ranges fails; port 0 (any free port) never does.
#[inline(always)]
fn bind(ctx: &SockAddrContext) -> i32 {
    let Some(cfg) = config() else { return PASS };
    let rule = &cfg.bind;
    if rule.errno == 0 {
        return PASS;
    }
    // SAFETY: the context the kernel passed; the port is in network order in the low 16 bits.
    let port = u16::from_be(unsafe { (*ctx.sock_addr).user_port } as u16);
    if port == 0 {
        return PASS;
    }
    let mut i = 0;
    while i < MAX_PORT_RANGES {
        if i as u32 >= rule.count {
            break;
        }
        let range = &rule.ports[i];
        if range.first <= port && port <= range.last {
            return inject(rule.errno, rule.slot);
        }
        i += 1;
    }
    PASS
}

const ETH_P_IP: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
const TCP_FLAG_RST: u8 = 0x04;
const TCP_SYN_SENT: u32 = 2;
/// cgroup_skb programs: 1 lets the packet in, 0 drops it.
const DELIVER: i32 = 1;
const DROP: i32 = 0;

/// Replies the emulated command's sockets never get (see `tracer_common::emulate::ReplyDrop`).
/// The program runs for packets arriving at sockets of the emulated cgroup; the packet starts
/// at its IP header.
#[cgroup_skb(ingress)]
pub fn emulate_ingress(ctx: SkBuffContext) -> i32 {
    let Some(cfg) = config() else { return DELIVER };
    let rule = &cfg.drop;
    if rule.hang_slot == 0 && rule.dns_slot == 0 {
        return DELIVER;
    }
    // SAFETY: the context the kernel passed.
    let protocol = unsafe { (*ctx.skb.skb).protocol };
    if u16::from_be(protocol as u16) != ETH_P_IP {
        return DELIVER;
    }
    let Ok(ip) = ctx.load::<[u8; 20]>(0) else { return DELIVER };
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let saddr = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
    // The ports are the first 4 bytes of both TCP and UDP headers; a short datagram has no
    // more than 8.
    let Ok(ports) = ctx.load::<[u8; 4]>(header) else { return DELIVER };
    let sport = u16::from_ne_bytes([ports[0], ports[1]]);
    let tcp = ip[9] == IPPROTO_TCP as u8;
    // TCP: data offset (high nibble) and flags, bytes 12 and 13 of the header.
    let (offset, flags) = match tcp {
        true => match ctx.load::<[u8; 2]>(header + 12) {
            Ok(b) => (usize::from(b[0] >> 4) * 4, b[1]),
            Err(_) => return DELIVER,
        },
        false => (0, 0),
    };
    if tcp
        && rule.hang_slot != 0
        && saddr == LOOPBACK4
        && flags & TCP_FLAG_RST != 0
        && connecting(&ctx)
    {
        count_drop(rule.hang_slot - 1);
        return DROP;
    }
    if rule.dns_slot == 0 {
        return DELIVER;
    }
    // A TCP segment without data (the handshake, acks) passes: the connection opens, the
    // answer never comes.
    let data = match ip[9] {
        IPPROTO_UDP => true,
        _ if tcp => total > header + offset,
        _ => false,
    };
    if !data {
        return DELIVER;
    }
    let mut i = 0;
    while i < MAX_NAMESERVERS {
        if i as u32 >= rule.dns_count {
            break;
        }
        let server = &rule.nameservers[i];
        if server.addr == saddr && server.port == sport {
            count_drop(rule.dns_slot - 1);
            return DROP;
        }
        i += 1;
    }
    DELIVER
}

/// Whether the receiving socket is a TCP socket still connecting (SYN_SENT): a reset then is
/// the refusal of a connect.
#[inline(always)]
fn connecting(ctx: &SkBuffContext) -> bool {
    // SAFETY: the context the kernel passed; `sk` may be null, checked before use.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a socket pointer from the context, as the helper wants.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return false;
    }
    // SAFETY: a full socket the helper returned.
    unsafe { (*full).state == TCP_SYN_SENT }
}
