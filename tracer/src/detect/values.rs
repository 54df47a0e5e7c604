//! The values `when` keys take, parsed once when the rule file is read: each kind knows its
//! names and says what is wrong with one it does not know. Serialized, they give the names back,
//! so `wsltrace rules --format json` shows a rule as it was written.

use std::{
    borrow::Cow,
    fmt,
    marker::PhantomData,
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use tracer_common::Syscall;

use crate::decode::{errno::Errno, names};

/// One word of a rule's list: parsed from its text, shown as it.
pub trait Word: Sized {
    fn parse(text: &str) -> Result<Self, String>;
    fn text(&self) -> Cow<'_, str>;
}

/// A list of words: its matcher holds when the event has any of them.
#[derive(Clone, Debug, PartialEq)]
pub struct List<T>(pub Vec<T>);

impl<T: PartialEq> List<T> {
    pub fn contains(&self, value: &T) -> bool {
        self.0.contains(value)
    }
}

impl<'de, T: Word> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let words = Vec::<String>::deserialize(d)?;
        words
            .iter()
            .map(|w| T::parse(w))
            .collect::<Result<_, _>>()
            .map(List)
            .map_err(D::Error::custom)
    }
}

impl<T: Word> Serialize for List<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Word::text))
    }
}

impl Word for Syscall {
    fn parse(text: &str) -> Result<Self, String> {
        names::syscall_by_name(text).ok_or_else(|| {
            let known = Syscall::ALL.iter().map(|s| s.name());
            format!("unknown syscall '{text}'{}", suggestion(text, known))
        })
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.name())
    }
}

impl Word for Errno {
    fn parse(text: &str) -> Result<Self, String> {
        Errno::parse(text)
    }
    fn text(&self) -> Cow<'_, str> {
        self.name()
    }
}

impl Word for SocketAddr {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|_| format!("'{text}' is not ip:port (e.g. 127.0.0.53:53 or [::1]:53)"))
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }
}

impl Word for IpAddr {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse().map_err(|_| format!("'{text}' is not an IP address"))
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }
}

/// An address or a network: `127.0.0.1`, `127.0.0.0/8`, `fe80::/10`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Same family, and the first `prefix` bits equal (an IPv4-mapped IPv6 address is not
    /// IPv4: the kernel and WSL's relay tell them apart too).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(v4) => u128::from(v4.to_bits()) << 96,
            IpAddr::V6(v6) => v6.to_bits(),
        };
        let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0)
            & if self.addr.is_ipv4() { u128::MAX << 96 } else { u128::MAX };
        self.addr.is_ipv4() == ip.is_ipv4() && bits(self.addr) & mask == bits(ip) & mask
    }
}

impl Word for IpNet {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not an address or network (e.g. 127.0.0.1, 127.0.0.0/8)");
        let (ip, prefix) = text.split_once('/').map_or((text, None), |(i, p)| (i, Some(p)));
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
    fn text(&self) -> Cow<'_, str> {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        Cow::Owned(if self.prefix == max {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.prefix)
        })
    }
}

/// Free text: paths, file system types, networking modes.
impl Word for String {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

/// Where the names of one kind of constant are, and what to call the kind in a message.
pub trait NameTable {
    const WHAT: &'static str;
    const TABLES: &'static [names::Table];
}

/// A constant known by name (`SOL_SOCKET`, `CAP_NET_BIND_SERVICE`...) with its value.
#[derive(Debug)]
pub struct Name<K> {
    pub name: &'static str,
    pub value: i64,
    kind: PhantomData<K>,
}

// By hand: derived, they would require the marker `K` to be Clone and PartialEq too.
impl<K> Clone for Name<K> {
    fn clone(&self) -> Self {
        Name { name: self.name, value: self.value, kind: PhantomData }
    }
}

impl<K> PartialEq for Name<K> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value && self.name == other.name
    }
}

impl<K: NameTable> Word for Name<K> {
    fn parse(text: &str) -> Result<Self, String> {
        let mut entries = K::TABLES.iter().flat_map(|t| t.iter());
        match entries.find(|(_, name)| *name == text) {
            Some(&(value, name)) => Ok(Name { name, value, kind: PhantomData }),
            None => {
                let known = K::TABLES.iter().flat_map(|t| t.iter()).map(|(_, name)| *name);
                Err(format!("unknown {} '{text}'{}", K::WHAT, suggestion(text, known)))
            }
        }
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.name)
    }
}

impl<K> List<Name<K>> {
    /// Whether `name` (as the decoder rendered it) is one of the list's.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|n| n.name == name)
    }
}

impl List<String> {
    pub fn has(&self, text: &str) -> bool {
        self.0.iter().any(|t| t == text)
    }
}

macro_rules! name_tables {
    ($($(#[$doc:meta])* $kind:ident: $what:literal in [$($table:ident),+];)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $kind;
        impl NameTable for $kind {
            const WHAT: &'static str = $what;
            const TABLES: &'static [names::Table] = &[$(names::$table),+];
        }
    )*};
}

name_tables! {
    /// getsockopt/setsockopt levels.
    Level: "level" in [LEVELS];
    /// Socket options at every level wsltrace decodes.
    Optname: "option" in [SOCKET_OPTIONS, TCP_OPTIONS, IP_OPTIONS, IPV6_OPTIONS, UDP_OPTIONS, NETLINK_OPTIONS];
    Family: "address family" in [FAMILIES];
    SockType: "socket type" in [SOCK_TYPES];
    SockFlag: "socket flag" in [SOCK_FLAGS];
    /// Capabilities; the value is the bit number.
    Capability: "capability" in [CAPABILITIES];
}

/// ` (did you mean X?)` for a close known name, else nothing.
pub(super) fn suggestion<'a>(value: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|name| (strsim::levenshtein(name, value), name))
        .min()
        .filter(|(distance, _)| *distance <= 2)
        .map(|(_, name)| format!(" (did you mean {name}?)"))
        .unwrap_or_default()
}

/// `1-1023` or `8080`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(range: String) -> Result<Self, String> {
        let parse = |lo: &str, hi: &str| {
            let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
            (lo <= hi).then_some(PortRange { lo, hi })
        };
        match range.split_once('-') {
            Some((lo, hi)) => parse(lo, hi),
            None => parse(&range, &range),
        }
        .ok_or_else(|| format!("'{range}' is not a port range like 1-1023 or 8080"))
    }
}

impl From<PortRange> for String {
    fn from(range: PortRange) -> String {
        range.to_string()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddrClass {
    Loopback4,
    Loopback6,
    Any4,
    Any6,
    Specific,
    UnixPath,
    UnixAbstract,
    Unnamed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetnsKind {
    Initial,
    Private,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// A listener covers the destination address itself.
    Here,
    /// The port listens in the caller's namespace, on other addresses only.
    OtherAddress,
    /// The port listens only in other network namespaces.
    OtherNetns,
    /// Nothing listens on the port anywhere wsltrace can see.
    None,
}

/// How long a socket has been connected at a call: a fixed duration (`1500ms`, `2s`) or
/// `resolver_timeout`, the wait of one DNS try as the caller's resolv.conf sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MinAge {
    Fixed(std::time::Duration),
    ResolverTimeout,
}

impl TryFrom<String> for MinAge {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let t = text.trim();
        if t == "resolver_timeout" {
            return Ok(MinAge::ResolverTimeout);
        }
        let (number, unit_ms) = match (t.strip_suffix("ms"), t.strip_suffix('s')) {
            (Some(ms), _) => (ms, 1),
            (None, Some(s)) => (s, 1000),
            (None, None) => ("", 0),
        };
        number
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|_| unit_ms > 0)
            .map(|n| MinAge::Fixed(std::time::Duration::from_millis(n.saturating_mul(unit_ms))))
            .ok_or_else(|| {
                format!("'{text}' is not a duration like 1500ms or 2s, or resolver_timeout")
            })
    }
}

impl From<MinAge> for String {
    fn from(age: MinAge) -> String {
        match age {
            MinAge::ResolverTimeout => "resolver_timeout".to_owned(),
            MinAge::Fixed(d) if d.subsec_millis() == 0 => format!("{}s", d.as_secs()),
            MinAge::Fixed(d) => format!("{}ms", d.as_millis()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        let range = |s: &str| PortRange::try_from(s.to_owned()).ok();
        assert_eq!(range("1-1023"), Some(PortRange { lo: 1, hi: 1023 }));
        assert_eq!(range("8080"), Some(PortRange { lo: 8080, hi: 8080 }));
        assert_eq!(range("9-1"), None);
        assert_eq!(range("http"), None);
        assert_eq!(String::from(PortRange { lo: 1, hi: 1023 }), "1-1023");
        assert_eq!(String::from(PortRange { lo: 53, hi: 53 }), "53");
    }

    #[test]
    fn minimum_ages() {
        let age = |s: &str| MinAge::try_from(s.to_owned());
        let ms = |n| Ok(MinAge::Fixed(std::time::Duration::from_millis(n)));
        assert_eq!(age("1500ms"), ms(1500));
        assert_eq!(age("2s"), ms(2000));
        assert_eq!(age("resolver_timeout"), Ok(MinAge::ResolverTimeout));
        assert!(age("2").is_err() && age("fast").is_err() && age("-1s").is_err());
        assert_eq!(String::from(MinAge::Fixed(std::time::Duration::from_millis(2000))), "2s");
        assert_eq!(String::from(MinAge::Fixed(std::time::Duration::from_millis(900))), "900ms");
        assert_eq!(String::from(MinAge::ResolverTimeout), "resolver_timeout");
    }

    #[test]
    fn networks() {
        let net = |s: &str| IpNet::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("127.0.0.0/8").contains(ip("127.0.0.2")));
        assert!(!net("127.0.0.0/8").contains(ip("128.0.0.1")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(!net("127.0.0.1").contains(ip("::ffff:127.0.0.1")), "mapped is not IPv4");
        assert!(net("fe80::/10").contains(ip("fe80::1")));
        assert!(!net("fe80::/10").contains(ip("::1")));
        assert!(net("0.0.0.0/0").contains(ip("10.1.2.3")));
        assert_eq!(net("127.0.0.0/8").text(), "127.0.0.0/8");
        assert_eq!(net("::1").text(), "::1");
        assert!(IpNet::parse("127.0.0.0/33").is_err());
        assert!(IpNet::parse("localhost").is_err());
    }

    #[test]
    fn names_carry_their_values_and_suggest_close_ones() {
        let cap = Name::<Capability>::parse("CAP_NET_BIND_SERVICE").unwrap();
        assert_eq!(cap.value, 10);
        let err = Name::<Level>::parse("SOL_SOCKT").unwrap_err();
        assert_eq!(err, "unknown level 'SOL_SOCKT' (did you mean SOL_SOCKET?)");
        let err = Syscall::parse("conect").unwrap_err();
        assert_eq!(err, "unknown syscall 'conect' (did you mean connect?)");
    }
}
