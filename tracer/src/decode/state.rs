//! Socket states, named as a reader of `ss` expects them.
//!
//! TCP sockets use the kernel's state names (`ESTABLISHED`, `SYN_SENT`, `CLOSE_WAIT`...; a TCP
//! socket that is neither listening nor connected is `CLOSED`, which `ss` prints as `UNCONN`).
//! Connectionless sockets (UDP, raw, unix datagram) and unix stream/seqpacket sockets have only
//! three states that matter: `LISTEN`, `CONNECTED` (a peer is set; `ss` says `ESTAB`) and
//! `UNCONNECTED` (`ss` says `UNCONN`). The names are what JSON output and recordings carry.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SockState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    /// A TCP socket neither listening nor connected (`TCP_CLOSE`).
    Closed,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
    /// A socket without a TCP state machine that has a peer.
    Connected,
    /// A socket without a TCP state machine and without a peer.
    Unconnected,
    /// A TCP state this list does not know (a newer kernel): `STATE_<n>`.
    Other(u8),
}

/// The kernel's TCP states (`include/net/tcp_states.h`), by number.
const TCP: [(u8, SockState); 13] = [
    (1, SockState::Established),
    (2, SockState::SynSent),
    (3, SockState::SynRecv),
    (4, SockState::FinWait1),
    (5, SockState::FinWait2),
    (6, SockState::TimeWait),
    (7, SockState::Closed),
    (8, SockState::CloseWait),
    (9, SockState::LastAck),
    (10, SockState::Listen),
    (11, SockState::Closing),
    (12, SockState::NewSynRecv),
    (13, SockState::BoundInactive),
];

/// `TCP_ESTABLISHED`, `TCP_LISTEN`: what the kernel's `sk_state` of a socket without a TCP
/// state machine holds when it has a peer or listens (anything else is `TCP_CLOSE`).
const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;

impl SockState {
    /// A kernel TCP state.
    pub fn tcp(state: u8) -> SockState {
        TCP.iter().find(|(n, _)| *n == state).map_or(SockState::Other(state), |(_, s)| *s)
    }

    /// The state of a socket without a TCP state machine, from the kernel's `sk_state`.
    pub fn connectionless(state: u8) -> SockState {
        match state {
            TCP_LISTEN => SockState::Listen,
            TCP_ESTABLISHED => SockState::Connected,
            _ => SockState::Unconnected,
        }
    }

    /// The state of a socket that has a peer: `ESTABLISHED` for TCP, `CONNECTED` for the rest.
    pub fn connected(family: &str, sock_type: Option<&str>) -> SockState {
        match (family, sock_type) {
            ("AF_INET" | "AF_INET6", Some("SOCK_STREAM")) => SockState::Established,
            _ => SockState::Connected,
        }
    }

    /// The kernel's name (the TCP ones without their `TCP_` prefix), or the number of a
    /// state without one.
    pub(crate) fn name(self) -> Result<&'static str, u8> {
        Ok(match self {
            SockState::Established => "ESTABLISHED",
            SockState::SynSent => "SYN_SENT",
            SockState::SynRecv => "SYN_RECV",
            SockState::FinWait1 => "FIN_WAIT1",
            SockState::FinWait2 => "FIN_WAIT2",
            SockState::TimeWait => "TIME_WAIT",
            SockState::Closed => "CLOSED",
            SockState::CloseWait => "CLOSE_WAIT",
            SockState::LastAck => "LAST_ACK",
            SockState::Listen => "LISTEN",
            SockState::Closing => "CLOSING",
            SockState::NewSynRecv => "NEW_SYN_RECV",
            SockState::BoundInactive => "BOUND_INACTIVE",
            SockState::Connected => "CONNECTED",
            SockState::Unconnected => "UNCONNECTED",
            SockState::Other(n) => return Err(n),
        })
    }
}

impl fmt::Display for SockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Ok(name) => f.write_str(name),
            Err(n) => write!(f, "STATE_{n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown socket state {0:?}")]
pub struct UnknownState(String);

impl FromStr for SockState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<SockState, UnknownState> {
        let fixed = [SockState::Connected, SockState::Unconnected]
            .into_iter()
            .chain(TCP.iter().map(|(_, state)| *state))
            .find(|state| state.name() == Ok(s));
        let other = || s.strip_prefix("STATE_")?.parse().ok().map(SockState::Other);
        fixed.or_else(other).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// As its name: JSON output and recordings carry `"state":"TIME_WAIT"`.
impl Serialize for SockState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SockState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SockState, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let name = |s: SockState| s.to_string();
        assert_eq!(name(SockState::tcp(10)), "LISTEN");
        assert_eq!(name(SockState::tcp(6)), "TIME_WAIT");
        assert_eq!(name(SockState::tcp(8)), "CLOSE_WAIT");
        assert_eq!(name(SockState::tcp(7)), "CLOSED");
        assert_eq!(name(SockState::tcp(99)), "STATE_99");
        assert_eq!(name(SockState::connectionless(7)), "UNCONNECTED");
        assert_eq!(name(SockState::connectionless(1)), "CONNECTED");
        assert_eq!(name(SockState::connectionless(10)), "LISTEN");
        assert_eq!(name(SockState::connected("AF_INET6", Some("SOCK_STREAM"))), "ESTABLISHED");
        assert_eq!(name(SockState::connected("AF_UNIX", Some("SOCK_STREAM"))), "CONNECTED");
        assert_eq!(name(SockState::connected("AF_INET", Some("SOCK_DGRAM"))), "CONNECTED");
    }

    /// Every name reads back as its state, in JSON too; a name no version wrote is refused.
    #[test]
    fn names_round_trip() {
        let all =
            (0..=14).map(SockState::tcp).chain([SockState::Connected, SockState::Unconnected]);
        for state in all {
            assert_eq!(state.to_string().parse::<SockState>().unwrap(), state);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(serde_json::from_str::<SockState>(&json).unwrap(), state);
        }
        assert!("TIMEWAIT".parse::<SockState>().is_err());
        assert!("STATE_x".parse::<SockState>().is_err());
    }
}
