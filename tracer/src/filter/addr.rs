//! `--addr`: `127.0.0.1:8080`, `[::1]:8080`, `:8080`, `10.0.0.1`, `/tmp/app.sock`, `@name`.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use crate::event::{KnownAddr, SockAddr};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrPattern {
    /// An IP address, on one port or any. IPv4-mapped IPv6 addresses count as IPv4.
    Ip { ip: IpAddr, port: Option<u16> },
    /// Any address on this port.
    Port(u16),
    /// An AF_UNIX socket file.
    UnixPath(String),
    /// An abstract AF_UNIX name (written `@name`).
    UnixAbstract(String),
}

const USAGE: &str =
    "use 127.0.0.1:8080, [::1]:8080, :8080, 10.0.0.1, ::1, /tmp/app.sock or @abstract-name";

impl AddrPattern {
    pub fn parse(s: &str) -> Result<AddrPattern, String> {
        let s = s.trim();
        if s.starts_with('/') {
            return Ok(AddrPattern::UnixPath(s.to_owned()));
        }
        if let Some(name) = s.strip_prefix('@') {
            return Ok(AddrPattern::UnixAbstract(name.to_owned()));
        }
        if let Some(port) = s.strip_prefix(':').filter(|p| !p.contains(':')) {
            return port
                .parse()
                .map(AddrPattern::Port)
                .map_err(|_| format!("'{s}' has no valid port: {USAGE}"));
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(AddrPattern::Ip { ip: canonical(sa.ip()), port: Some(sa.port()) });
        }
        let bare = s.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(AddrPattern::Ip { ip: canonical(ip), port: None });
        }
        Err(format!("'{s}' is not an address: {USAGE}"))
    }

    pub fn matches(&self, addr: &SockAddr) -> bool {
        let SockAddr::Known(known) = addr else {
            return false;
        };
        let (ip, port) = match known {
            KnownAddr::Inet { ip, port } => (IpAddr::V4(*ip), *port),
            KnownAddr::Inet6 { ip, port, .. } => (canonical(IpAddr::V6(*ip)), *port),
            KnownAddr::Unix(unix) => {
                return match self {
                    AddrPattern::UnixPath(p) => unix.path.as_deref() == Some(p.as_str()),
                    AddrPattern::UnixAbstract(n) => unix.abstract_name.as_deref() == Some(n),
                    _ => false,
                };
            }
            _ => return false,
        };
        match self {
            AddrPattern::Ip { ip: want, port: want_port } => {
                *want == ip && want_port.is_none_or(|p| p == port)
            }
            AddrPattern::Port(want) => *want == port,
            AddrPattern::UnixPath(_) | AddrPattern::UnixAbstract(_) => false,
        }
    }
}

/// `::ffff:127.0.0.1` is 127.0.0.1 (a dual-stack socket talking IPv4).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl fmt::Display for AddrPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrPattern::Ip { ip, port: Some(port) } => {
                write!(f, "{}", SocketAddr::new(*ip, *port))
            }
            AddrPattern::Ip { ip, port: None } => write!(f, "{ip}"),
            AddrPattern::Port(port) => write!(f, ":{port}"),
            AddrPattern::UnixPath(path) => f.write_str(path),
            AddrPattern::UnixAbstract(name) => write!(f, "@{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::UnixAddr;

    fn inet(ip: [u8; 4], port: u16) -> SockAddr {
        SockAddr::Known(KnownAddr::Inet { ip: ip.into(), port })
    }

    fn inet6(ip: &str, port: u16) -> SockAddr {
        let ip = ip.parse().unwrap();
        SockAddr::Known(KnownAddr::Inet6 { ip, port, scope_id: 0, flowinfo: 0 })
    }

    fn unix(path: Option<&str>, abstract_name: Option<&str>) -> SockAddr {
        SockAddr::Known(KnownAddr::Unix(UnixAddr {
            path: path.map(Into::into),
            abstract_name: abstract_name.map(Into::into),
        }))
    }

    #[test]
    fn parses_every_documented_form() {
        let p = |s| AddrPattern::parse(s).unwrap();
        let lo = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(p("127.0.0.1:8080"), AddrPattern::Ip { ip: lo, port: Some(8080) });
        assert_eq!(p("127.0.0.1"), AddrPattern::Ip { ip: lo, port: None });
        assert_eq!(p(":8080"), AddrPattern::Port(8080));
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(p("[::1]:53"), AddrPattern::Ip { ip: v6, port: Some(53) });
        assert_eq!(p("::1"), AddrPattern::Ip { ip: v6, port: None });
        assert_eq!(p("[::1]"), AddrPattern::Ip { ip: v6, port: None });
        assert_eq!(p("[::ffff:127.0.0.1]:80"), AddrPattern::Ip { ip: lo, port: Some(80) });
        assert_eq!(p("/tmp/app.sock"), AddrPattern::UnixPath("/tmp/app.sock".into()));
        assert_eq!(p("@bus"), AddrPattern::UnixAbstract("bus".into()));
        for bad in ["", "localhost:80", ":http", ":99999", "1.2.3.4:", "tmp/app.sock"] {
            let err = AddrPattern::parse(bad).unwrap_err();
            assert!(err.contains("use 127.0.0.1:8080"), "{bad}: {err}");
        }
    }

    #[test]
    fn displays_back_as_parsed() {
        for s in ["127.0.0.1:8080", "[::1]:53", ":80", "10.0.0.1", "::1", "/a.sock", "@x"] {
            assert_eq!(AddrPattern::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn matches_addresses() {
        let p = |s| AddrPattern::parse(s).unwrap();
        assert!(p("127.0.0.1:8080").matches(&inet([127, 0, 0, 1], 8080)));
        assert!(!p("127.0.0.1:8080").matches(&inet([127, 0, 0, 1], 8081)));
        assert!(p("127.0.0.1").matches(&inet([127, 0, 0, 1], 1)));
        assert!(p(":8080").matches(&inet([10, 0, 0, 1], 8080)));
        assert!(p(":8080").matches(&inet6("::", 8080)));
        assert!(p("127.0.0.1:80").matches(&inet6("::ffff:127.0.0.1", 80)));
        assert!(p("[::1]:80").matches(&inet6("::1", 80)));
        assert!(!p("[::1]:80").matches(&inet([127, 0, 0, 1], 80)));
        assert!(p("/tmp/a.sock").matches(&unix(Some("/tmp/a.sock"), None)));
        assert!(!p("/tmp/a.sock").matches(&unix(None, Some("/tmp/a.sock"))));
        assert!(p("@a").matches(&unix(None, Some("a"))));
        assert!(!p(":0").matches(&unix(Some("/x"), None)));
    }
}
