//! Socket state names, as a reader of `ss` expects them.
//!
//! TCP sockets use the kernel's state names (`ESTABLISHED`, `SYN_SENT`, `CLOSE_WAIT`...; a TCP
//! socket that is neither listening nor connected is `CLOSED`, which `ss` prints as `UNCONN`).
//! Connectionless sockets (UDP, raw, unix datagram) and unix stream/seqpacket sockets have only
//! three states that matter: `LISTEN`, `CONNECTED` (a peer is set; `ss` says `ESTAB`) and
//! `UNCONNECTED` (`ss` says `UNCONN`).

/// `TCP_ESTABLISHED`: for non-TCP sockets, "has a peer".
pub const ESTABLISHED: u8 = 1;
/// `TCP_LISTEN`.
pub const LISTEN: u8 = 10;

/// The name of a kernel TCP state (`include/net/tcp_states.h`).
pub fn tcp(state: u8) -> String {
    let name = match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSED",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        13 => "BOUND_INACTIVE",
        other => return format!("STATE_{other}"),
    };
    name.to_owned()
}

/// The state of a socket without a TCP state machine, from the kernel's `sk_state`, which
/// those sockets set to `TCP_LISTEN`, `TCP_ESTABLISHED` (connected) or `TCP_CLOSE`.
pub fn connectionless(state: u8) -> String {
    match state {
        LISTEN => "LISTEN",
        ESTABLISHED => "CONNECTED",
        _ => "UNCONNECTED",
    }
    .to_owned()
}

/// The state of a socket that has a peer: `ESTABLISHED` for TCP, `CONNECTED` for the rest.
pub fn connected(family: &str, sock_type: Option<&str>) -> String {
    match (family, sock_type) {
        ("AF_INET" | "AF_INET6", Some("SOCK_STREAM")) => tcp(ESTABLISHED),
        _ => connectionless(ESTABLISHED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(tcp(10), "LISTEN");
        assert_eq!(tcp(8), "CLOSE_WAIT");
        assert_eq!(tcp(7), "CLOSED");
        assert_eq!(tcp(99), "STATE_99");
        assert_eq!(connectionless(7), "UNCONNECTED");
        assert_eq!(connectionless(1), "CONNECTED");
        assert_eq!(connectionless(10), "LISTEN");
        assert_eq!(connected("AF_INET6", Some("SOCK_STREAM")), "ESTABLISHED");
        assert_eq!(connected("AF_UNIX", Some("SOCK_STREAM")), "CONNECTED");
        assert_eq!(connected("AF_INET", Some("SOCK_DGRAM")), "CONNECTED");
    }
}
