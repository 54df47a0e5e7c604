//! `/proc/PID/net/netlink` and `/proc/PID/net/packet`: the netlink and packet sockets of the
//! process's network namespace (these files show the namespace of PID, not the reader's).

use crate::{
    decode::names::{self, AF_NETLINK, AF_PACKET},
    event::{KnownAddr, SockAddr, SocketInfo},
};

/// Netlink sockets, keyed by inode. Columns (net/netlink/af_netlink.c, `netlink_seq_show`):
/// `sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`; `Eth` is the netlink protocol, `Pid`
/// the port id, `Groups` the first 32 multicast groups in hex. The socket type (raw or dgram,
/// which behave the same) is not shown there.
pub fn parse_netlink(text: &str) -> Vec<(u64, SocketInfo)> {
    rows(text, 10)
        .filter_map(|cols| {
            let protocol: i64 = cols[1].parse().ok()?;
            let portid: u32 = cols[2].parse().ok()?;
            let groups = u32::from_str_radix(cols[3], 16).ok()?;
            let inode: u64 = cols[9].parse().ok()?;
            let info = SocketInfo {
                flags: None,
                fd: None,
                family: names::name_or_number(names::FAMILIES, AF_NETLINK),
                sock_type: None,
                protocol: Some(names::name_or_number(names::protocols_of(AF_NETLINK), protocol)),
                state: None,
                local: Some(SockAddr::Known(KnownAddr::Netlink { portid, groups })),
                peer: None,
                inode: Some(inode),
                peer_inode: None,
            };
            Some((inode, info))
        })
        .collect()
}

/// Packet sockets, keyed by inode. Columns (net/packet/af_packet.c, `packet_seq_show`):
/// `sk RefCnt Type Proto Iface R Rmem User Inode`; `Proto` is the ethertype in hex, `Iface`
/// the bound ifindex (0: all). The hardware type and address of the bound device are not
/// shown there: they stay 0 and empty.
pub fn parse_packet(text: &str) -> Vec<(u64, SocketInfo)> {
    rows(text, 9)
        .filter_map(|cols| {
            let sock_type: i64 = cols[2].parse().ok()?;
            let protocol = i64::from_str_radix(cols[3], 16).ok()?;
            let ifindex: i32 = cols[4].parse().ok()?;
            let inode: u64 = cols[8].parse().ok()?;
            let protocol = names::name_or_number(names::ETH_PROTOCOLS, protocol);
            let info = SocketInfo {
                flags: None,
                fd: None,
                family: names::name_or_number(names::FAMILIES, AF_PACKET),
                sock_type: Some(names::name_or_number(names::SOCK_TYPES, sock_type)),
                protocol: Some(protocol.clone()),
                state: None,
                local: Some(SockAddr::Known(KnownAddr::Packet {
                    protocol,
                    ifindex,
                    hatype: 0,
                    pkttype: 0,
                    addr: String::new(),
                })),
                peer: None,
                inode: Some(inode),
                peer_inode: None,
            };
            Some((inode, info))
        })
        .collect()
}

/// The data rows of a /proc table (header skipped) with at least `columns` columns.
fn rows(text: &str, columns: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(move |cols| cols.len() >= columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    // As read on kernel 6.18 (non-root readers see the `sk` pointers as zeros).
    const NETLINK: &str = "\
sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode
000000008bf7fe3a 0   0          00000000 0        0        0     2        0        4       
00000000c364a0d1 0   16444      00000000 0        0        0     2        0        89125   
0000000000000000 4   15599      00000011 4352     0        0     2        0        15600   
";

    const PACKET: &str = "\
sk               RefCnt Type Proto  Iface R Rmem   User   Inode
000000003b23b0c4 3      3    0003   0     1 0      0      90262 
000000003b23b0c5 3      2    0800   2     1 0      1000   90263 
";

    #[test]
    fn netlink_rows() {
        let rows = parse_netlink(NETLINK);
        assert_eq!(rows.len(), 3);
        let (inode, info) = &rows[1];
        assert_eq!(*inode, 89125);
        assert_eq!(info.family, "AF_NETLINK");
        assert_eq!(info.protocol.as_deref(), Some("NETLINK_ROUTE"));
        assert_eq!(
            info.local,
            Some(SockAddr::Known(KnownAddr::Netlink { portid: 16444, groups: 0 }))
        );
        let (_, diag) = &rows[2];
        assert_eq!(diag.protocol.as_deref(), Some("NETLINK_SOCK_DIAG"));
        assert_eq!(
            diag.local,
            Some(SockAddr::Known(KnownAddr::Netlink { portid: 15599, groups: 0x11 }))
        );
    }

    #[test]
    fn packet_rows() {
        let rows = parse_packet(PACKET);
        assert_eq!(rows.len(), 2);
        let (inode, all) = &rows[0];
        assert_eq!(*inode, 90262);
        assert_eq!(all.sock_type.as_deref(), Some("SOCK_RAW"));
        assert_eq!(all.protocol.as_deref(), Some("ETH_P_ALL"));
        let (_, ip) = &rows[1];
        assert_eq!(ip.sock_type.as_deref(), Some("SOCK_DGRAM"));
        assert!(matches!(
            &ip.local,
            Some(SockAddr::Known(KnownAddr::Packet { protocol, ifindex: 2, .. })) if protocol == "ETH_P_IP"
        ));
    }

    #[test]
    fn short_or_garbled_rows_are_skipped() {
        assert!(parse_netlink("header\n1 2 3\nx y z w a b c d e f\n").is_empty());
        assert!(parse_packet("").is_empty());
    }
}
