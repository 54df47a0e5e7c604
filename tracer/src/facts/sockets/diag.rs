//! sock_diag: the kernel's socket tables (what `ss` reads), for TCP/UDP over IPv4/IPv6 and for
//! unix sockets, with states and, for unix sockets, the peer's inode.
//!
//! The netlink socket answers about the network namespace it was created in: open it inside
//! the target's namespace (see `netns`). Message layouts come from `netlink-packet-sock-diag`.

use std::{collections::HashMap, net::IpAddr};

use anyhow::{Context as _, Result};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    inet::{self, ExtensionFlags, InetRequest, InetResponse, SocketId},
    unix::{
        self, ShowFlags, UnixRequest, UnixResponse,
        nlas::{Nla as UnixNla, UnixDiagName},
    },
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use super::{InetSocket, Proto};
use crate::{
    decode::{
        names::{self, AF_INET6, AF_UNIX},
        sockaddr::escape,
        state::SockState,
    },
    event::{KnownAddr, SockAddr, SocketInfo, UnixAddr},
};

/// The transport protocols dumped for each IP family.
pub const IP_PROTOCOLS: [(u8, Proto, &str, &str); 2] = [
    (libc::IPPROTO_TCP as u8, Proto::Tcp, "SOCK_STREAM", "IPPROTO_TCP"),
    (libc::IPPROTO_UDP as u8, Proto::Udp, "SOCK_DGRAM", "IPPROTO_UDP"),
];

/// Which sockets of a table a dump asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Select {
    /// Every socket an fd can hold: all states but TIME_WAIT, whose minisockets have no
    /// inode. A machine that makes many connections holds tens of thousands of them, each a
    /// message to build and parse (50 ms a dump here with 20,000, during an ab run).
    Held,
    /// Sockets bound to this local port, in every state.
    Port(u16),
    /// Sockets listening on this local port (TCP).
    Listening(u16),
}

/// A sock_diag netlink socket, bound to the namespace it was opened in.
pub struct Diag {
    socket: Socket,
    sequence: u32,
}

impl Diag {
    /// Opens a sock_diag socket in the calling thread's network namespace.
    pub fn open() -> Result<Diag> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).context("opening a sock_diag socket")?;
        socket.bind_auto().context("binding the sock_diag socket")?;
        socket.connect(&SocketAddr::new(0, 0)).context("connecting the sock_diag socket")?;
        Ok(Diag { socket, sequence: 0 })
    }

    /// The `protocol` sockets of `family` (AF_INET or AF_INET6) that `select` names. The kernel does the selecting:
    /// a dump checks the request's source port (`idiag_sport`, when not 0) on every socket
    /// before anything else, and a state mask of LISTEN alone skips the walk of the
    /// established table (all TIME_WAIT sockets included) altogether (`inet_diag_dump_icsk`,
    /// `udp_dump`). The replies are not checked again here: callers filter by port anyway.
    pub fn inet(&mut self, family: u8, protocol: u8, select: Select) -> Result<Vec<InetResponse>> {
        let mut socket_id =
            if i64::from(family) == AF_INET6 { SocketId::new_v6() } else { SocketId::new_v4() };
        let states = match select {
            Select::Held => inet::StateFlags::all() - inet::StateFlags::TIME_WAIT,
            Select::Port(port) => {
                socket_id.source_port = port;
                inet::StateFlags::all()
            }
            Select::Listening(port) => {
                socket_id.source_port = port;
                inet::StateFlags::LISTEN
            }
        };
        let request = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol,
            extensions: ExtensionFlags::empty(),
            states,
            socket_id,
        });
        Ok(self
            .dump(request)?
            .into_iter()
            .filter_map(|m| match m {
                SockDiagMessage::InetResponse(r) => Some(*r),
                _ => None,
            })
            .collect())
    }

    /// Every unix socket, in every state, with its name and its peer's inode.
    pub fn unix(&mut self) -> Result<Vec<UnixResponse>> {
        // All states: the crate names only LISTEN and ESTABLISHED, unconnected is TCP_CLOSE.
        self.unix_in(unix::StateFlags::from_bits_retain(u32::MAX))
    }

    /// The listening unix sockets, with their names (the kernel checks the state mask first).
    pub fn unix_listeners(&mut self) -> Result<Vec<UnixResponse>> {
        self.unix_in(unix::StateFlags::LISTEN)
    }

    fn unix_in(&mut self, state_flags: unix::StateFlags) -> Result<Vec<UnixResponse>> {
        let request = SockDiagMessage::UnixRequest(UnixRequest {
            state_flags,
            inode: 0,
            show_flags: ShowFlags::NAME | ShowFlags::PEER,
            cookie: [0xff; 8],
        });
        Ok(self
            .dump(request)?
            .into_iter()
            .filter_map(|m| match m {
                SockDiagMessage::UnixResponse(r) => Some(*r),
                _ => None,
            })
            .collect())
    }

    fn dump(&mut self, request: SockDiagMessage) -> Result<Vec<SockDiagMessage>> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).context("sending a sock_diag request")?;

        // Dump replies come in datagrams of at most 32 KiB.
        let mut datagram = vec![0; 64 << 10];
        let mut out = Vec::new();
        loop {
            let len =
                self.socket.recv(&mut &mut datagram[..], 0).context("reading a sock_diag reply")?;
            if parse_datagram(&datagram[..len.min(datagram.len())], &mut out)? {
                return Ok(out);
            }
        }
    }
}

/// Appends the messages of one reply datagram to `out`; true when it ended the dump.
pub fn parse_datagram(mut bytes: &[u8], out: &mut Vec<SockDiagMessage>) -> Result<bool> {
    while !bytes.is_empty() {
        let message = NetlinkMessage::<SockDiagMessage>::deserialize(bytes)
            .context("malformed sock_diag reply")?;
        let len = message.header.length as usize;
        match message.payload {
            NetlinkPayload::InnerMessage(m) => out.push(m),
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(err) => {
                // The kernel answers ENOENT when the family's diag module is not available.
                return Err(err.to_io()).context("the kernel refused the sock_diag request");
            }
            _ => {}
        }
        // Messages are padded to 4 bytes.
        let advance = (len + 3) & !3;
        if len == 0 || advance > bytes.len() {
            break;
        }
        bytes = &bytes[advance..];
    }
    Ok(false)
}

/// An IPv4/IPv6 socket, for look-ups by port and as a `SocketInfo` (without fd). `protocol`
/// is the one the dump asked for (the reply does not repeat it).
pub fn inet_info(resp: &InetResponse, protocol: u8) -> Option<(InetSocket, SocketInfo)> {
    let (_, _, sock_type, protocol_name) = IP_PROTOCOLS.iter().find(|(p, ..)| *p == protocol)?;
    let socket = inet_socket(resp, protocol)?;
    let state = socket.state;
    let header = &resp.header;
    let id = &header.socket_id;
    let family = i64::from(header.family);
    let connected = id.destination_port != 0 || !id.destination_address.is_unspecified();
    let peer = connected.then(|| ip_addr(id.destination_address, id.destination_port, 0));
    let info = SocketInfo {
        flags: None,
        fd: None,
        family: names::name_or_number(names::FAMILIES, family),
        sock_type: Some((*sock_type).into()),
        protocol: Some((*protocol_name).into()),
        state: Some(state),
        local: Some(ip_addr(id.source_address, id.source_port, id.interface_id)),
        peer,
        inode: Some(header.inode.into()),
        peer_inode: None,
    };
    Some((socket, info))
}

/// An IPv4/IPv6 socket for look-ups by port (what [`inet_info`] gives without the names).
pub fn inet_socket(resp: &InetResponse, protocol: u8) -> Option<InetSocket> {
    let (_, proto, ..) = IP_PROTOCOLS.iter().find(|(p, ..)| *p == protocol)?;
    let header = &resp.header;
    let id = &header.socket_id;
    let state = match proto {
        Proto::Tcp => SockState::tcp(header.state),
        Proto::Udp => SockState::connectionless(header.state),
    };
    Some(InetSocket {
        proto: *proto,
        local: std::net::SocketAddr::new(id.source_address, id.source_port),
        state,
        inode: header.inode.into(),
        queues: (header.recv_queue, header.send_queue),
    })
}

/// An address the way getsockname() would give it. `interface` is the socket's bound device,
/// which is the IPv6 scope id only for addresses that need one (link-local).
fn ip_addr(ip: IpAddr, port: u16, interface: u32) -> SockAddr {
    SockAddr::Known(match ip {
        IpAddr::V4(ip) => KnownAddr::Inet { ip, port },
        IpAddr::V6(ip) => {
            let needs_scope = ip.is_unicast_link_local() || ip.is_multicast();
            KnownAddr::Inet6 {
                ip,
                port,
                scope_id: if needs_scope { interface } else { 0 },
                flowinfo: 0,
            }
        }
    })
}

/// Unix sockets as `SocketInfo`s (without fd), keyed by inode. The peer's address is the name
/// of the peer socket when it is in the same table (what getpeername() returns); the peer
/// inode is always given when the kernel reports one.
pub fn unix_infos(responses: &[UnixResponse]) -> Vec<(u64, SocketInfo)> {
    let name_of = |resp: &UnixResponse| {
        resp.nlas.iter().find_map(|nla| match nla {
            UnixNla::Name(name) => Some(unix_name(name)),
            _ => None,
        })
    };
    let names: HashMap<u32, UnixAddr> =
        responses.iter().map(|r| (r.header.inode, name_of(r).unwrap_or_default())).collect();
    responses
        .iter()
        .map(|resp| {
            let header = &resp.header;
            let peer_inode = resp
                .nlas
                .iter()
                .find_map(|nla| match nla {
                    UnixNla::Peer(inode) => Some(*inode),
                    _ => None,
                })
                .filter(|&inode| inode != 0);
            let unix = |addr: UnixAddr| SockAddr::Known(KnownAddr::Unix(addr));
            let info = SocketInfo {
                flags: None,
                fd: None,
                family: names::name_or_number(names::FAMILIES, AF_UNIX),
                sock_type: Some(names::name_or_number(names::SOCK_TYPES, header.kind.into())),
                protocol: None,
                state: Some(SockState::connectionless(header.state)),
                local: Some(unix(name_of(resp).unwrap_or_default())),
                peer: peer_inode.and_then(|p| names.get(&p).cloned()).map(unix),
                inode: Some(header.inode.into()),
                peer_inode: peer_inode.map(u64::from),
            };
            (header.inode.into(), info)
        })
        .collect()
}

fn unix_name(name: &UnixDiagName) -> UnixAddr {
    use std::os::unix::ffi::OsStrExt as _;
    match name {
        UnixDiagName::Pathname(path) => {
            UnixAddr { path: Some(escape(path.as_bytes())), abstract_name: None }
        }
        UnixDiagName::Abstract(bytes) => {
            UnixAddr { path: None, abstract_name: Some(escape(bytes)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// sock_diag replies captured on kernel 6.18 (one message per line, the dump's last
    /// datagram ends with NLMSG_DONE), filtered to the capturing process's own sockets.
    const TCP4: &str = "\
7c0000001400020000000000364d0000020a000088e900007f0000010000000000000000000000000000000000000000000000000000000000000000310000000000000000000000010000008000000000000000df710100050008000000000008000f00000000000c00150001000000000000000600160052000000
7c0000001400020000000000364d000002010000cf8a88e97f0000010000000000000000000000007f00000100000000000000000000000000000000330000000000000000000000000000000000000000000000e0710100050008000000000008000f00000000000c00150001000000000000000600160052000000
140000000300020000000000364d000000000000";
    const UDP6: &str = "\
840000001400020000000000364d00000a070000b3b40000000000000000000000000000000000010000000000000000000000000000000000000000340000000000000000000000000000000000000000000000e1710100050008000000000005000b000100000008000f00000000000c00150001000000000000000600160010000000
140000000300020000000000364d000000000000";
    /// A socketpair, a listener on /tmp/wsltrace-fixture.sock, a datagram socket on the
    /// abstract name "wsltrace-fixture".
    const UNIX: &str = "\
300000001400020000000000364d000001010100e3710100350000000000000008000200e27101000500060000000000
300000001400020000000000364d000001010100e2710100360000000000000008000200e37101000500060000000000
480000001400020000000000364d000001010a00e571010037000000000000001f0000002f746d702f77736c74726163652d666978747572652e736f636b00000500060000000000
400000001400020000000000364d000001020700e47101003800000000000000150000000077736c74726163652d666978747572650000000500060000000000
140000000300020000000000364d000000000000";

    fn datagram(hex: &str) -> Vec<u8> {
        let hex: String = hex.split_whitespace().collect();
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }

    fn parse(hex: &str) -> Vec<SockDiagMessage> {
        let mut out = Vec::new();
        assert!(parse_datagram(&datagram(hex), &mut out).unwrap(), "NLMSG_DONE not seen");
        out
    }

    fn inet(hex: &str, protocol: u8) -> Vec<(u64, SocketInfo)> {
        parse(hex)
            .iter()
            .filter_map(|m| match m {
                SockDiagMessage::InetResponse(r) => inet_info(r, protocol),
                _ => None,
            })
            .map(|(socket, info)| {
                assert_eq!((Some(socket.inode), Some(socket.state)), (info.inode, info.state));
                (socket.inode, info)
            })
            .collect()
    }

    fn v4(port: u16) -> Option<SockAddr> {
        Some(SockAddr::Known(KnownAddr::Inet { ip: Ipv4Addr::LOCALHOST, port }))
    }

    #[test]
    fn tcp_listener_and_client() {
        let socks = inet(TCP4, libc::IPPROTO_TCP as u8);
        let [(listen_inode, listener), (client_inode, client)] = &socks[..] else {
            panic!("{socks:#?}")
        };
        assert_eq!((*listen_inode, *client_inode), (94687, 94688));
        assert_eq!(listener.family, "AF_INET");
        assert_eq!(listener.sock_type.as_deref(), Some("SOCK_STREAM"));
        assert_eq!(listener.protocol.as_deref(), Some("IPPROTO_TCP"));
        assert_eq!(listener.state, Some(SockState::Listen));
        assert_eq!((&listener.local, &listener.peer), (&v4(35049), &None));
        assert_eq!(client.state, Some(SockState::Established));
        assert_eq!((&client.local, &client.peer), (&v4(53130), &v4(35049)));
    }

    #[test]
    fn udp6_unconnected() {
        let socks = inet(UDP6, libc::IPPROTO_UDP as u8);
        let [(inode, udp)] = &socks[..] else { panic!("{socks:#?}") };
        assert_eq!(*inode, 94689);
        assert_eq!(udp.family, "AF_INET6");
        assert_eq!(udp.sock_type.as_deref(), Some("SOCK_DGRAM"));
        assert_eq!(udp.state, Some(SockState::Unconnected));
        let local = SockAddr::Known(KnownAddr::Inet6 {
            ip: Ipv6Addr::LOCALHOST,
            port: 46004,
            scope_id: 0,
            flowinfo: 0,
        });
        assert_eq!((&udp.local, &udp.peer), (&Some(local), &None));
        // A protocol this module does not dump is not guessed at.
        assert!(inet(UDP6, 132).is_empty());
    }

    #[test]
    fn unix_names_states_and_peers() {
        let replies: Vec<UnixResponse> = parse(UNIX)
            .into_iter()
            .filter_map(|m| match m {
                SockDiagMessage::UnixResponse(r) => Some(*r),
                _ => None,
            })
            .collect();
        let socks: HashMap<u64, SocketInfo> = unix_infos(&replies).into_iter().collect();
        let unix = |path: Option<&str>, name: Option<&str>| {
            Some(SockAddr::Known(KnownAddr::Unix(UnixAddr {
                path: path.map(str::to_owned),
                abstract_name: name.map(str::to_owned),
            })))
        };
        let (a, b) = (&socks[&94691], &socks[&94690]);
        assert_eq!((a.peer_inode, b.peer_inode), (Some(94690), Some(94691)));
        assert_eq!(a.state, Some(SockState::Connected));
        assert_eq!((&a.local, &a.peer), (&unix(None, None), &unix(None, None)));
        let listener = &socks[&94693];
        assert_eq!(listener.sock_type.as_deref(), Some("SOCK_STREAM"));
        assert_eq!(listener.state, Some(SockState::Listen));
        assert_eq!(listener.local, unix(Some("/tmp/wsltrace-fixture.sock"), None));
        assert_eq!((&listener.peer, listener.peer_inode), (&None, None));
        let dgram = &socks[&94692];
        assert_eq!(dgram.sock_type.as_deref(), Some("SOCK_DGRAM"));
        assert_eq!(dgram.state, Some(SockState::Unconnected));
        assert_eq!(dgram.local, unix(None, Some("wsltrace-fixture")));
        assert_eq!(dgram.protocol, None);
    }

    #[test]
    fn errors_and_partial_dumps() {
        // NLMSG_ERROR carrying -ENOENT (no diag handler for the family), then the request's
        // header.
        let error = "24000000020000000000000000000000 feffffff 14000000140001030000000000000000";
        let err = parse_datagram(&datagram(error), &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("refused"), "{err:#}");
        let io = err.downcast_ref::<std::io::Error>().expect("an io error");
        assert_eq!(io.raw_os_error(), Some(libc::ENOENT));
        // A datagram without NLMSG_DONE: the dump goes on.
        let first = TCP4.lines().next().unwrap();
        let mut out = Vec::new();
        assert!(!parse_datagram(&datagram(first), &mut out).unwrap());
        assert_eq!(out.len(), 1);
        assert!(parse_datagram(&[1, 2, 3], &mut out).is_err());
    }
}
