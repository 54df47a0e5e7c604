//! `struct sockaddr_*` decoding. Input is the bytes copied from the caller, which may be
//! shorter than the family's struct: every read is bounds-checked.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::names::{self, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_UNIX, AF_VSOCK};
use crate::event::{KnownAddr, SockAddr, UnixAddr};

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes a socket address; `None` when not even the family fits.
pub fn decode(bytes: &[u8]) -> Option<SockAddr> {
    let family = i64::from(u16_ne(bytes, 0)?);
    let known = match family {
        0 => Some(KnownAddr::Unspec {}),
        AF_INET => inet(bytes),
        AF_INET6 => inet6(bytes),
        AF_UNIX => Some(KnownAddr::Unix(unix(&bytes[2..]))),
        AF_VSOCK => vsock(bytes),
        AF_NETLINK => netlink(bytes),
        AF_PACKET => packet(bytes),
        _ => None,
    };
    Some(known.map_or_else(
        || SockAddr::Other {
            family: names::name_or_number(names::FAMILIES, family),
            hex: hex(&bytes[2..]),
        },
        SockAddr::Known,
    ))
}

// struct sockaddr_in { sa_family_t; in_port_t (BE); struct in_addr; }
fn inet(b: &[u8]) -> Option<KnownAddr> {
    let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
    Some(KnownAddr::Inet { ip: Ipv4Addr::from(ip), port: u16_be(b, 2)? })
}

// struct sockaddr_in6 { sa_family_t; in_port_t; u32 flowinfo; struct in6_addr; u32 scope_id; }
// The scope id was added later: a 24-byte address without it is valid.
fn inet6(b: &[u8]) -> Option<KnownAddr> {
    let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
    Some(KnownAddr::Inet6 {
        ip: Ipv6Addr::from(ip),
        port: u16_be(b, 2)?,
        flowinfo: u32::from_be(u32_ne(b, 4)?),
        scope_id: u32_ne(b, 24).unwrap_or(0),
    })
}

// struct sockaddr_un { sa_family_t; char sun_path[108]; }: the path is NUL-terminated unless
// it fills the array; a leading NUL makes it abstract, where every byte counts.
fn unix(path: &[u8]) -> UnixAddr {
    match path.split_first() {
        None => UnixAddr::default(),
        Some((0, name)) => UnixAddr { path: None, abstract_name: Some(escape(name)) },
        Some(_) => {
            let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
            UnixAddr { path: Some(escape(&path[..end])), abstract_name: None }
        }
    }
}

// struct sockaddr_vm { sa_family_t; u16 reserved1; u32 port; u32 cid; u8 flags; u8 zero[3]; }
fn vsock(b: &[u8]) -> Option<KnownAddr> {
    Some(KnownAddr::Vsock { port: u32_ne(b, 4)?, cid: u32_ne(b, 8)? })
}

// struct sockaddr_nl { sa_family_t; u16 pad; u32 nl_pid; u32 nl_groups; }
fn netlink(b: &[u8]) -> Option<KnownAddr> {
    Some(KnownAddr::Netlink { portid: u32_ne(b, 4)?, groups: u32_ne(b, 8)? })
}

// struct sockaddr_ll { u16 family; u16 protocol (BE); int ifindex; u16 hatype; u8 pkttype;
//                      u8 halen; u8 addr[8]; }
fn packet(b: &[u8]) -> Option<KnownAddr> {
    let protocol = u16_be(b, 2)?;
    let halen = usize::from(*b.get(11).unwrap_or(&0)).min(8);
    let mac = b.get(12..12 + halen).unwrap_or_default();
    Some(KnownAddr::Packet {
        protocol: names::name_or_number(names::ETH_PROTOCOLS, protocol.into()),
        ifindex: u32_ne(b, 4)? as i32,
        hatype: u16_ne(b, 8)?,
        pkttype: *b.get(10)?,
        addr: mac.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":"),
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Printable ASCII as is, `\\` doubled, everything else as `\xNN` (paths and abstract names
/// are bytes, not necessarily UTF-8).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(f: u16) -> Vec<u8> {
        f.to_ne_bytes().to_vec()
    }

    #[test]
    fn inet() {
        let mut b = family(2);
        b.extend(8080_u16.to_be_bytes());
        b.extend([127, 0, 0, 1]);
        b.extend([0; 8]);
        assert_eq!(
            decode(&b),
            Some(SockAddr::Known(KnownAddr::Inet { ip: Ipv4Addr::LOCALHOST, port: 8080 }))
        );
        // Truncated: the family is known but the address is not all there.
        let other = decode(&b[..6]).unwrap();
        assert!(matches!(other, SockAddr::Other { ref family, .. } if family == "AF_INET"));
    }

    #[test]
    fn inet6_with_and_without_scope() {
        let mut b = family(10);
        b.extend(443_u16.to_be_bytes());
        b.extend(0_u32.to_be_bytes());
        b.extend(Ipv6Addr::LOCALHOST.octets());
        let short = decode(&b).unwrap();
        b.extend(3_u32.to_ne_bytes());
        let SockAddr::Known(KnownAddr::Inet6 { ip, port, scope_id, .. }) = decode(&b).unwrap()
        else {
            panic!("not inet6")
        };
        assert_eq!((ip, port, scope_id), (Ipv6Addr::LOCALHOST, 443, 3));
        assert!(matches!(short, SockAddr::Known(KnownAddr::Inet6 { scope_id: 0, .. })));
    }

    #[test]
    fn unix_path_abstract_unnamed() {
        let mut path = family(1);
        path.extend(b"/tmp/app.sock\0garbage");
        let mut abs = family(1);
        abs.extend(b"\0my\0name");
        let unnamed = family(1);
        let unix = |a| match decode(a) {
            Some(SockAddr::Known(KnownAddr::Unix(u))) => u,
            other => panic!("{other:?}"),
        };
        assert_eq!(unix(&path).path.as_deref(), Some("/tmp/app.sock"));
        assert_eq!(unix(&abs).abstract_name.as_deref(), Some("my\\x00name"));
        assert_eq!(unix(&unnamed), UnixAddr::default());
    }

    #[test]
    fn vsock_netlink_packet() {
        let mut v = family(40);
        v.extend([0, 0]);
        v.extend(5000_u32.to_ne_bytes());
        v.extend(2_u32.to_ne_bytes());
        v.extend([0; 4]);
        assert_eq!(decode(&v), Some(SockAddr::Known(KnownAddr::Vsock { cid: 2, port: 5000 })));

        let mut n = family(16);
        n.extend([0, 0]);
        n.extend(1234_u32.to_ne_bytes());
        n.extend(1_u32.to_ne_bytes());
        assert_eq!(
            decode(&n),
            Some(SockAddr::Known(KnownAddr::Netlink { portid: 1234, groups: 1 }))
        );

        let mut p = family(17);
        p.extend(0x0800_u16.to_be_bytes());
        p.extend(2_i32.to_ne_bytes());
        p.extend(1_u16.to_ne_bytes());
        p.extend([0, 6, 0xaa, 0xbb, 0xcc, 0, 0, 1, 0, 0]);
        let Some(SockAddr::Known(KnownAddr::Packet { protocol, ifindex, addr, .. })) = decode(&p)
        else {
            panic!()
        };
        assert_eq!(
            (protocol.as_ref(), ifindex, addr.as_str()),
            ("ETH_P_IP", 2, "aa:bb:cc:00:00:01")
        );
    }

    #[test]
    fn unknown_family_and_too_short() {
        let mut b = family(38);
        b.extend([1, 2, 3]);
        assert_eq!(
            decode(&b),
            Some(SockAddr::Other { family: "AF_ALG".into(), hex: "010203".into() })
        );
        assert_eq!(decode(&[1]), None);
    }

    #[test]
    fn json_shapes_match_the_contract() {
        let addr = SockAddr::Known(KnownAddr::Inet { ip: Ipv4Addr::LOCALHOST, port: 8080 });
        assert_eq!(
            serde_json::to_string(&addr).unwrap(),
            r#"{"family":"AF_INET","ip":"127.0.0.1","port":8080}"#
        );
        let unix = SockAddr::Known(KnownAddr::Unix(UnixAddr {
            path: Some("/tmp/s.sock".into()),
            abstract_name: None,
        }));
        assert_eq!(
            serde_json::to_string(&unix).unwrap(),
            r#"{"family":"AF_UNIX","path":"/tmp/s.sock"}"#
        );
        let abs = SockAddr::Known(KnownAddr::Unix(UnixAddr {
            path: None,
            abstract_name: Some("name".into()),
        }));
        assert_eq!(
            serde_json::to_string(&abs).unwrap(),
            r#"{"family":"AF_UNIX","abstract":"name"}"#
        );
        let vsock = SockAddr::Known(KnownAddr::Vsock { cid: 2, port: 5000 });
        assert_eq!(
            serde_json::to_string(&vsock).unwrap(),
            r#"{"family":"AF_VSOCK","cid":2,"port":5000}"#
        );
        for a in [addr, unix, abs, vsock] {
            let back: SockAddr = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
            assert_eq!(back, a);
        }
    }
}
