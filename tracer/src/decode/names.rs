//! Names of the constants socket syscalls take, from the kernel's uapi headers.
//!
//! Plain data: `(value, name)` pairs. Values are the x86-64/generic ones (asm-generic), which
//! is what WSL2 and the machines wsltrace targets use.

use std::borrow::Cow;

use tracer_common::Syscall;

use crate::event::Name;

pub type Table = &'static [(i64, &'static str)];

/// The name of `value` in `table`.
pub fn lookup(table: Table, value: i64) -> Option<&'static str> {
    table.iter().find(|(v, _)| *v == value).map(|(_, n)| *n)
}

/// The name of `value`, or the number itself when it has none.
pub fn name_or_number(table: Table, value: i64) -> Name {
    lookup(table, value).map_or_else(|| Cow::Owned(value.to_string()), Cow::Borrowed)
}

/// Renders a bit set as `A|B|0x40` (unknown bits in hex), or `0`: borrowed when it is one
/// name, `0`, or a combination `combined` spells out (a table of whole values).
pub fn flags(table: Table, combined: Table, value: i64) -> Name {
    if let Some(name) = lookup(combined, value) {
        return Cow::Borrowed(name);
    }
    let mut rest = value;
    // Joined as it goes: one name stays borrowed, two or more make one String.
    let mut out: Option<Name> = None;
    let add = |out: &mut Option<Name>, part: Name| match out {
        None => *out = Some(part),
        Some(joined) => {
            let joined = joined.to_mut();
            joined.push('|');
            joined.push_str(&part);
        }
    };
    for &(bit, name) in table {
        if bit != 0 && rest & bit == bit {
            add(&mut out, Cow::Borrowed(name));
            rest &= !bit;
        }
    }
    if rest != 0 {
        add(&mut out, Cow::Owned(format!("{rest:#x}")));
    }
    out.unwrap_or(Cow::Borrowed("0"))
}

pub fn syscall_by_name(name: &str) -> Option<Syscall> {
    Syscall::ALL.iter().copied().find(|s| s.name() == name)
}

pub const FAMILIES: Table = &[
    (0, "AF_UNSPEC"),
    (1, "AF_UNIX"),
    (2, "AF_INET"),
    (3, "AF_AX25"),
    (4, "AF_IPX"),
    (5, "AF_APPLETALK"),
    (6, "AF_NETROM"),
    (7, "AF_BRIDGE"),
    (8, "AF_ATMPVC"),
    (9, "AF_X25"),
    (10, "AF_INET6"),
    (11, "AF_ROSE"),
    (12, "AF_DECnet"),
    (13, "AF_NETBEUI"),
    (14, "AF_SECURITY"),
    (15, "AF_KEY"),
    (16, "AF_NETLINK"),
    (17, "AF_PACKET"),
    (18, "AF_ASH"),
    (19, "AF_ECONET"),
    (20, "AF_ATMSVC"),
    (21, "AF_RDS"),
    (22, "AF_SNA"),
    (23, "AF_IRDA"),
    (24, "AF_PPPOX"),
    (25, "AF_WANPIPE"),
    (26, "AF_LLC"),
    (27, "AF_IB"),
    (28, "AF_MPLS"),
    (29, "AF_CAN"),
    (30, "AF_TIPC"),
    (31, "AF_BLUETOOTH"),
    (32, "AF_IUCV"),
    (33, "AF_RXRPC"),
    (34, "AF_ISDN"),
    (35, "AF_PHONET"),
    (36, "AF_IEEE802154"),
    (37, "AF_CAIF"),
    (38, "AF_ALG"),
    (39, "AF_NFC"),
    (40, "AF_VSOCK"),
    (41, "AF_KCM"),
    (42, "AF_QIPCRTR"),
    (43, "AF_SMC"),
    (44, "AF_XDP"),
    (45, "AF_MCTP"),
];

pub const AF_UNIX: i64 = 1;
pub const AF_INET: i64 = 2;
pub const AF_INET6: i64 = 10;
pub const AF_NETLINK: i64 = 16;
pub const AF_PACKET: i64 = 17;
pub const AF_VSOCK: i64 = 40;

/// The low bits of socket()'s `type`.
pub const SOCK_TYPES: Table = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (6, "SOCK_DCCP"),
    (10, "SOCK_PACKET"),
];
pub const SOCK_TYPE_MASK: i64 = 0xf;

/// Flags or-ed into socket()'s `type`, and accept4()'s `flags`.
pub const SOCK_FLAGS: Table = &[(0o2000000, "SOCK_CLOEXEC"), (0o4000, "SOCK_NONBLOCK")];
/// [`SOCK_FLAGS`] combined, as [`flags`] renders them (no name is made per call).
pub const SOCK_FLAG_SETS: Table = &[(0o2004000, "SOCK_CLOEXEC|SOCK_NONBLOCK")];

pub const IP_PROTOCOLS: Table = &[
    (0, "IPPROTO_IP"),
    (1, "IPPROTO_ICMP"),
    (2, "IPPROTO_IGMP"),
    (4, "IPPROTO_IPIP"),
    (6, "IPPROTO_TCP"),
    (8, "IPPROTO_EGP"),
    (12, "IPPROTO_PUP"),
    (17, "IPPROTO_UDP"),
    (22, "IPPROTO_IDP"),
    (29, "IPPROTO_TP"),
    (33, "IPPROTO_DCCP"),
    (41, "IPPROTO_IPV6"),
    (46, "IPPROTO_RSVP"),
    (47, "IPPROTO_GRE"),
    (50, "IPPROTO_ESP"),
    (51, "IPPROTO_AH"),
    (58, "IPPROTO_ICMPV6"),
    (92, "IPPROTO_MTP"),
    (94, "IPPROTO_BEETPH"),
    (98, "IPPROTO_ENCAP"),
    (103, "IPPROTO_PIM"),
    (108, "IPPROTO_COMP"),
    (115, "IPPROTO_L2TP"),
    (132, "IPPROTO_SCTP"),
    (136, "IPPROTO_UDPLITE"),
    (137, "IPPROTO_MPLS"),
    (143, "IPPROTO_ETHERNET"),
    (255, "IPPROTO_RAW"),
    (262, "IPPROTO_MPTCP"),
];

pub const NETLINK_PROTOCOLS: Table = &[
    (0, "NETLINK_ROUTE"),
    (1, "NETLINK_UNUSED"),
    (2, "NETLINK_USERSOCK"),
    (3, "NETLINK_FIREWALL"),
    (4, "NETLINK_SOCK_DIAG"),
    (5, "NETLINK_NFLOG"),
    (6, "NETLINK_XFRM"),
    (7, "NETLINK_SELINUX"),
    (8, "NETLINK_ISCSI"),
    (9, "NETLINK_AUDIT"),
    (10, "NETLINK_FIB_LOOKUP"),
    (11, "NETLINK_CONNECTOR"),
    (12, "NETLINK_NETFILTER"),
    (13, "NETLINK_IP6_FW"),
    (14, "NETLINK_DNRTMSG"),
    (15, "NETLINK_KOBJECT_UEVENT"),
    (16, "NETLINK_GENERIC"),
    (18, "NETLINK_SCSITRANSPORT"),
    (19, "NETLINK_ECRYPTFS"),
    (20, "NETLINK_RDMA"),
    (21, "NETLINK_CRYPTO"),
    (22, "NETLINK_SMC"),
];

/// Ethernet protocol numbers (host order), for AF_PACKET.
pub const ETH_PROTOCOLS: Table = &[
    (0x0003, "ETH_P_ALL"),
    (0x0800, "ETH_P_IP"),
    (0x0806, "ETH_P_ARP"),
    (0x86dd, "ETH_P_IPV6"),
    (0x8100, "ETH_P_8021Q"),
    (0x88cc, "ETH_P_LLDP"),
];

pub const SOL_SOCKET: i64 = 1;
pub const SOL_IP: i64 = 0;
pub const SOL_TCP: i64 = 6;
pub const SOL_UDP: i64 = 17;
pub const SOL_IPV6: i64 = 41;
pub const SOL_NETLINK: i64 = 270;

pub const LEVELS: Table = &[
    (0, "SOL_IP"),
    (1, "SOL_SOCKET"),
    (6, "SOL_TCP"),
    (17, "SOL_UDP"),
    (41, "SOL_IPV6"),
    (58, "SOL_ICMPV6"),
    (132, "SOL_SCTP"),
    (136, "SOL_UDPLITE"),
    (255, "SOL_RAW"),
    (256, "SOL_IPX"),
    (257, "SOL_AX25"),
    (258, "SOL_ATALK"),
    (259, "SOL_NETROM"),
    (260, "SOL_ROSE"),
    (261, "SOL_DECNET"),
    (262, "SOL_X25"),
    (263, "SOL_PACKET"),
    (264, "SOL_ATM"),
    (265, "SOL_AAL"),
    (266, "SOL_IRDA"),
    (267, "SOL_NETBEUI"),
    (268, "SOL_LLC"),
    (269, "SOL_DCCP"),
    (270, "SOL_NETLINK"),
    (271, "SOL_TIPC"),
    (272, "SOL_RXRPC"),
    (273, "SOL_PPPOL2TP"),
    (274, "SOL_BLUETOOTH"),
    (275, "SOL_PNPIPE"),
    (276, "SOL_RDS"),
    (277, "SOL_IUCV"),
    (278, "SOL_CAIF"),
    (279, "SOL_ALG"),
    (280, "SOL_NFC"),
    (281, "SOL_KCM"),
    (282, "SOL_TLS"),
    (283, "SOL_XDP"),
    (284, "SOL_MPTCP"),
    (285, "SOL_MCTP"),
    (286, "SOL_SMC"),
    (287, "SOL_VSOCK"),
];

pub const SO_ERROR: i64 = 4;
pub const SO_TYPE: i64 = 3;
pub const SO_PEERCRED: i64 = 17;
pub const SO_DOMAIN: i64 = 39;
pub const SO_PROTOCOL: i64 = 38;
pub const SO_LINGER: i64 = 13;

pub const SOCKET_OPTIONS: Table = &[
    (1, "SO_DEBUG"),
    (2, "SO_REUSEADDR"),
    (3, "SO_TYPE"),
    (4, "SO_ERROR"),
    (5, "SO_DONTROUTE"),
    (6, "SO_BROADCAST"),
    (7, "SO_SNDBUF"),
    (8, "SO_RCVBUF"),
    (9, "SO_KEEPALIVE"),
    (10, "SO_OOBINLINE"),
    (11, "SO_NO_CHECK"),
    (12, "SO_PRIORITY"),
    (13, "SO_LINGER"),
    (14, "SO_BSDCOMPAT"),
    (15, "SO_REUSEPORT"),
    (16, "SO_PASSCRED"),
    (17, "SO_PEERCRED"),
    (18, "SO_RCVLOWAT"),
    (19, "SO_SNDLOWAT"),
    (20, "SO_RCVTIMEO_OLD"),
    (21, "SO_SNDTIMEO_OLD"),
    (22, "SO_SECURITY_AUTHENTICATION"),
    (23, "SO_SECURITY_ENCRYPTION_TRANSPORT"),
    (24, "SO_SECURITY_ENCRYPTION_NETWORK"),
    (25, "SO_BINDTODEVICE"),
    (26, "SO_ATTACH_FILTER"),
    (27, "SO_DETACH_FILTER"),
    (28, "SO_PEERNAME"),
    (29, "SO_TIMESTAMP_OLD"),
    (30, "SO_ACCEPTCONN"),
    (31, "SO_PEERSEC"),
    (32, "SO_SNDBUFFORCE"),
    (33, "SO_RCVBUFFORCE"),
    (34, "SO_PASSSEC"),
    (35, "SO_TIMESTAMPNS_OLD"),
    (36, "SO_MARK"),
    (37, "SO_TIMESTAMPING_OLD"),
    (38, "SO_PROTOCOL"),
    (39, "SO_DOMAIN"),
    (40, "SO_RXQ_OVFL"),
    (41, "SO_WIFI_STATUS"),
    (42, "SO_PEEK_OFF"),
    (43, "SO_NOFCS"),
    (44, "SO_LOCK_FILTER"),
    (45, "SO_SELECT_ERR_QUEUE"),
    (46, "SO_BUSY_POLL"),
    (47, "SO_MAX_PACING_RATE"),
    (48, "SO_BPF_EXTENSIONS"),
    (49, "SO_INCOMING_CPU"),
    (50, "SO_ATTACH_BPF"),
    (51, "SO_ATTACH_REUSEPORT_CBPF"),
    (52, "SO_ATTACH_REUSEPORT_EBPF"),
    (53, "SO_CNX_ADVICE"),
    (55, "SO_MEMINFO"),
    (56, "SO_INCOMING_NAPI_ID"),
    (57, "SO_COOKIE"),
    (59, "SO_PEERGROUPS"),
    (60, "SO_ZEROCOPY"),
    (61, "SO_TXTIME"),
    (62, "SO_BINDTOIFINDEX"),
    (63, "SO_TIMESTAMP_NEW"),
    (64, "SO_TIMESTAMPNS_NEW"),
    (65, "SO_TIMESTAMPING_NEW"),
    (66, "SO_RCVTIMEO_NEW"),
    (67, "SO_SNDTIMEO_NEW"),
    (68, "SO_DETACH_REUSEPORT_BPF"),
    (69, "SO_PREFER_BUSY_POLL"),
    (70, "SO_BUSY_POLL_BUDGET"),
    (71, "SO_NETNS_COOKIE"),
    (72, "SO_BUF_LOCK"),
    (73, "SO_RESERVE_MEM"),
    (74, "SO_TXREHASH"),
    (75, "SO_RCVMARK"),
    (76, "SO_PASSPIDFD"),
    (77, "SO_PEERPIDFD"),
];

pub const TCP_OPTIONS: Table = &[
    (1, "TCP_NODELAY"),
    (2, "TCP_MAXSEG"),
    (3, "TCP_CORK"),
    (4, "TCP_KEEPIDLE"),
    (5, "TCP_KEEPINTVL"),
    (6, "TCP_KEEPCNT"),
    (7, "TCP_SYNCNT"),
    (8, "TCP_LINGER2"),
    (9, "TCP_DEFER_ACCEPT"),
    (10, "TCP_WINDOW_CLAMP"),
    (11, "TCP_INFO"),
    (12, "TCP_QUICKACK"),
    (13, "TCP_CONGESTION"),
    (14, "TCP_MD5SIG"),
    (16, "TCP_THIN_LINEAR_TIMEOUTS"),
    (17, "TCP_THIN_DUPACK"),
    (18, "TCP_USER_TIMEOUT"),
    (19, "TCP_REPAIR"),
    (20, "TCP_REPAIR_QUEUE"),
    (21, "TCP_QUEUE_SEQ"),
    (22, "TCP_REPAIR_OPTIONS"),
    (23, "TCP_FASTOPEN"),
    (24, "TCP_TIMESTAMP"),
    (25, "TCP_NOTSENT_LOWAT"),
    (26, "TCP_CC_INFO"),
    (27, "TCP_SAVE_SYN"),
    (28, "TCP_SAVED_SYN"),
    (29, "TCP_REPAIR_WINDOW"),
    (30, "TCP_FASTOPEN_CONNECT"),
    (31, "TCP_ULP"),
    (32, "TCP_MD5SIG_EXT"),
    (33, "TCP_FASTOPEN_KEY"),
    (34, "TCP_FASTOPEN_NO_COOKIE"),
    (35, "TCP_ZEROCOPY_RECEIVE"),
    (36, "TCP_INQ"),
    (37, "TCP_TX_DELAY"),
];

pub const IP_OPTIONS: Table = &[
    (1, "IP_TOS"),
    (2, "IP_TTL"),
    (3, "IP_HDRINCL"),
    (4, "IP_OPTIONS"),
    (5, "IP_ROUTER_ALERT"),
    (6, "IP_RECVOPTS"),
    (7, "IP_RETOPTS"),
    (8, "IP_PKTINFO"),
    (9, "IP_PKTOPTIONS"),
    (10, "IP_MTU_DISCOVER"),
    (11, "IP_RECVERR"),
    (12, "IP_RECVTTL"),
    (13, "IP_RECVTOS"),
    (14, "IP_MTU"),
    (15, "IP_FREEBIND"),
    (16, "IP_IPSEC_POLICY"),
    (17, "IP_XFRM_POLICY"),
    (18, "IP_PASSSEC"),
    (19, "IP_TRANSPARENT"),
    (20, "IP_ORIGDSTADDR"),
    (21, "IP_MINTTL"),
    (22, "IP_NODEFRAG"),
    (23, "IP_CHECKSUM"),
    (24, "IP_BIND_ADDRESS_NO_PORT"),
    (25, "IP_RECVFRAGSIZE"),
    (26, "IP_RECVERR_RFC4884"),
    (32, "IP_MULTICAST_IF"),
    (33, "IP_MULTICAST_TTL"),
    (34, "IP_MULTICAST_LOOP"),
    (35, "IP_ADD_MEMBERSHIP"),
    (36, "IP_DROP_MEMBERSHIP"),
    (37, "IP_UNBLOCK_SOURCE"),
    (38, "IP_BLOCK_SOURCE"),
    (39, "IP_ADD_SOURCE_MEMBERSHIP"),
    (40, "IP_DROP_SOURCE_MEMBERSHIP"),
    (41, "IP_MSFILTER"),
    (49, "IP_MULTICAST_ALL"),
    (50, "IP_UNICAST_IF"),
    (51, "IP_LOCAL_PORT_RANGE"),
    (52, "IP_PROTOCOL"),
    (80, "SO_ORIGINAL_DST"),
];

pub const IPV6_OPTIONS: Table = &[
    (1, "IPV6_ADDRFORM"),
    (2, "IPV6_2292PKTINFO"),
    (3, "IPV6_2292HOPOPTS"),
    (4, "IPV6_2292DSTOPTS"),
    (5, "IPV6_2292RTHDR"),
    (6, "IPV6_2292PKTOPTIONS"),
    (7, "IPV6_CHECKSUM"),
    (8, "IPV6_2292HOPLIMIT"),
    (9, "IPV6_NEXTHOP"),
    (10, "IPV6_AUTHHDR"),
    (11, "IPV6_FLOWINFO"),
    (16, "IPV6_UNICAST_HOPS"),
    (17, "IPV6_MULTICAST_IF"),
    (18, "IPV6_MULTICAST_HOPS"),
    (19, "IPV6_MULTICAST_LOOP"),
    (20, "IPV6_ADD_MEMBERSHIP"),
    (21, "IPV6_DROP_MEMBERSHIP"),
    (22, "IPV6_ROUTER_ALERT"),
    (23, "IPV6_MTU_DISCOVER"),
    (24, "IPV6_MTU"),
    (25, "IPV6_RECVERR"),
    (26, "IPV6_V6ONLY"),
    (27, "IPV6_JOIN_ANYCAST"),
    (28, "IPV6_LEAVE_ANYCAST"),
    (29, "IPV6_MULTICAST_ALL"),
    (30, "IPV6_ROUTER_ALERT_ISOLATE"),
    (31, "IPV6_RECVERR_RFC4884"),
    (32, "IPV6_FLOWLABEL_MGR"),
    (33, "IPV6_FLOWINFO_SEND"),
    (34, "IPV6_IPSEC_POLICY"),
    (35, "IPV6_XFRM_POLICY"),
    (36, "IPV6_HDRINCL"),
    (49, "IPV6_RECVPKTINFO"),
    (50, "IPV6_PKTINFO"),
    (51, "IPV6_RECVHOPLIMIT"),
    (52, "IPV6_HOPLIMIT"),
    (53, "IPV6_RECVHOPOPTS"),
    (54, "IPV6_HOPOPTS"),
    (55, "IPV6_RTHDRDSTOPTS"),
    (56, "IPV6_RECVRTHDR"),
    (57, "IPV6_RTHDR"),
    (58, "IPV6_RECVDSTOPTS"),
    (59, "IPV6_DSTOPTS"),
    (60, "IPV6_RECVPATHMTU"),
    (61, "IPV6_PATHMTU"),
    (62, "IPV6_DONTFRAG"),
    (66, "IPV6_RECVTCLASS"),
    (67, "IPV6_TCLASS"),
    (70, "IPV6_AUTOFLOWLABEL"),
    (72, "IPV6_ADDR_PREFERENCES"),
    (73, "IPV6_MINHOPCOUNT"),
    (74, "IPV6_ORIGDSTADDR"),
    (75, "IPV6_TRANSPARENT"),
    (76, "IPV6_UNICAST_IF"),
    (77, "IPV6_RECVFRAGSIZE"),
    (78, "IPV6_FREEBIND"),
];

pub const UDP_OPTIONS: Table = &[
    (1, "UDP_CORK"),
    (100, "UDP_ENCAP"),
    (101, "UDP_NO_CHECK6_TX"),
    (102, "UDP_NO_CHECK6_RX"),
    (103, "UDP_SEGMENT"),
    (104, "UDP_GRO"),
];

pub const NETLINK_OPTIONS: Table = &[
    (1, "NETLINK_ADD_MEMBERSHIP"),
    (2, "NETLINK_DROP_MEMBERSHIP"),
    (3, "NETLINK_PKTINFO"),
    (4, "NETLINK_BROADCAST_ERROR"),
    (5, "NETLINK_NO_ENOBUFS"),
    (6, "NETLINK_RX_RING"),
    (7, "NETLINK_TX_RING"),
    (8, "NETLINK_LISTEN_ALL_NSID"),
    (9, "NETLINK_LIST_MEMBERSHIPS"),
    (10, "NETLINK_CAP_ACK"),
    (11, "NETLINK_EXT_ACK"),
    (12, "NETLINK_GET_STRICT_CHK"),
];

/// The option names that apply at `level`.
pub fn options_at(level: i64) -> Table {
    match level {
        SOL_SOCKET => SOCKET_OPTIONS,
        SOL_TCP => TCP_OPTIONS,
        SOL_IP => IP_OPTIONS,
        SOL_IPV6 => IPV6_OPTIONS,
        SOL_UDP => UDP_OPTIONS,
        SOL_NETLINK => NETLINK_OPTIONS,
        _ => &[],
    }
}

/// The protocol names that apply to `family`.
pub fn protocols_of(family: i64) -> Table {
    match family {
        AF_INET | AF_INET6 => IP_PROTOCOLS,
        AF_NETLINK => NETLINK_PROTOCOLS,
        _ => &[],
    }
}

/// Capabilities wsltrace reports or matches on, by bit (include/uapi/linux/capability.h).
pub const CAPABILITIES: Table = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (5, "CAP_KILL"),
    (10, "CAP_NET_BIND_SERVICE"),
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

pub const SHUTDOWN_HOW: Table = &[(0, "SHUT_RD"), (1, "SHUT_WR"), (2, "SHUT_RDWR")];

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables agree with the libc crate wherever libc defines the constant.
    #[test]
    fn tables_match_libc() {
        let checks: &[(Table, i64, &str)] = &[
            (FAMILIES, libc::AF_UNIX.into(), "AF_UNIX"),
            (FAMILIES, libc::AF_INET6.into(), "AF_INET6"),
            (FAMILIES, libc::AF_NETLINK.into(), "AF_NETLINK"),
            (FAMILIES, libc::AF_PACKET.into(), "AF_PACKET"),
            (FAMILIES, libc::AF_VSOCK.into(), "AF_VSOCK"),
            (FAMILIES, libc::AF_XDP.into(), "AF_XDP"),
            (SOCK_TYPES, libc::SOCK_SEQPACKET.into(), "SOCK_SEQPACKET"),
            (SOCK_FLAGS, libc::SOCK_CLOEXEC.into(), "SOCK_CLOEXEC"),
            (SOCK_FLAGS, libc::SOCK_NONBLOCK.into(), "SOCK_NONBLOCK"),
            (IP_PROTOCOLS, libc::IPPROTO_MPTCP.into(), "IPPROTO_MPTCP"),
            (IP_PROTOCOLS, libc::IPPROTO_SCTP.into(), "IPPROTO_SCTP"),
            (LEVELS, libc::SOL_SOCKET.into(), "SOL_SOCKET"),
            (LEVELS, libc::SOL_NETLINK.into(), "SOL_NETLINK"),
            (LEVELS, libc::SOL_TLS.into(), "SOL_TLS"),
            (SOCKET_OPTIONS, libc::SO_PEERCRED.into(), "SO_PEERCRED"),
            (SOCKET_OPTIONS, libc::SO_ACCEPTCONN.into(), "SO_ACCEPTCONN"),
            (SOCKET_OPTIONS, libc::SO_REUSEPORT.into(), "SO_REUSEPORT"),
            (SOCKET_OPTIONS, libc::SO_DOMAIN.into(), "SO_DOMAIN"),
            (SOCKET_OPTIONS, libc::SO_DETACH_REUSEPORT_BPF.into(), "SO_DETACH_REUSEPORT_BPF"),
            (TCP_OPTIONS, libc::TCP_NODELAY.into(), "TCP_NODELAY"),
            (TCP_OPTIONS, libc::TCP_INFO.into(), "TCP_INFO"),
            (IP_OPTIONS, libc::IP_BIND_ADDRESS_NO_PORT.into(), "IP_BIND_ADDRESS_NO_PORT"),
            (IP_OPTIONS, libc::SO_ORIGINAL_DST.into(), "SO_ORIGINAL_DST"),
            (IPV6_OPTIONS, libc::IPV6_V6ONLY.into(), "IPV6_V6ONLY"),
            (IPV6_OPTIONS, libc::IPV6_FREEBIND.into(), "IPV6_FREEBIND"),
            (UDP_OPTIONS, libc::UDP_GRO.into(), "UDP_GRO"),
            (NETLINK_OPTIONS, libc::NETLINK_GET_STRICT_CHK.into(), "NETLINK_GET_STRICT_CHK"),
            (SHUTDOWN_HOW, libc::SHUT_RDWR.into(), "SHUT_RDWR"),
        ];
        for &(table, value, name) in checks {
            assert_eq!(lookup(table, value), Some(name), "{name} = {value}");
        }
    }

    #[test]
    fn tables_have_unique_values() {
        for table in [
            FAMILIES,
            SOCK_TYPES,
            IP_PROTOCOLS,
            LEVELS,
            SOCKET_OPTIONS,
            TCP_OPTIONS,
            IP_OPTIONS,
            IPV6_OPTIONS,
            UDP_OPTIONS,
            NETLINK_OPTIONS,
            NETLINK_PROTOCOLS,
        ] {
            let mut values: Vec<i64> = table.iter().map(|(v, _)| *v).collect();
            values.sort_unstable();
            values.dedup();
            assert_eq!(values.len(), table.len());
        }
    }

    #[test]
    fn renders_flags_with_unknown_bits() {
        assert_eq!(flags(SOCK_FLAGS, &[], 0), "0");
        assert_eq!(flags(SOCK_FLAGS, &[], 0o2004000), "SOCK_CLOEXEC|SOCK_NONBLOCK");
        assert_eq!(flags(SOCK_FLAGS, &[], 0o2000000 | 0x40), "SOCK_CLOEXEC|0x40");
        assert_eq!(flags(SOCK_FLAGS, &[], 0x40), "0x40");
        // The combined names are what the bits would render as.
        for &(value, name) in SOCK_FLAG_SETS {
            assert_eq!(flags(SOCK_FLAGS, &[], value), name);
            assert!(
                matches!(flags(SOCK_FLAGS, SOCK_FLAG_SETS, value), Cow::Borrowed(n) if n == name)
            );
        }
    }

    #[test]
    fn unknown_values_render_as_numbers() {
        assert_eq!(name_or_number(LEVELS, 9999), "9999");
        assert_eq!(name_or_number(SOCKET_OPTIONS, 17), "SO_PEERCRED");
    }
}
