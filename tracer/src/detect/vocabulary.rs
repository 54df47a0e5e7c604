//! The rule vocabulary, in one table: every `when` key with the type its value is parsed into,
//! how `wsltrace rules --help` shows it, and what it means. Reading a rule file parses each
//! value straight into its [`Matcher`], so the check and the compile are the same step; the help
//! text and the JSON listing come from the same table.
//!
//! A new matcher is one line in the table and one arm in `Matcher::holds` (matchers.rs), which
//! the compiler asks for.

use std::{net::IpAddr, net::SocketAddr, ops::Range};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{IgnoredAny, MapAccess, Visitor},
    ser::SerializeMap,
};
use toml::Spanned;
use tracer_common::Syscall;

use super::values::{
    AddrClass, Capability, Family, IpNet, Level, List, ListenerKind, MinAge, Name, NetnsKind,
    Optname, PortRange, SockFlag, SockType,
};
use crate::{decode::errno::Errno, event::RefusedBy, facts::wsl::WslKind};

/// One `when` key, for the help text.
pub struct Key {
    pub name: &'static str,
    /// The value as a rule writes it.
    pub shown: &'static str,
    pub meaning: &'static str,
}

macro_rules! vocabulary {
    ($($key:literal => $variant:ident($ty:ty), cost $cost:literal, $shown:literal, $meaning:literal;)*) => {
        /// One condition of a rule, its value parsed.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Matcher {
            $($variant($ty),)*
        }

        /// Every `when` key, in the order the JSON listing shows them.
        pub const KEYS: &[Key] = &[$(Key { name: $key, shown: $shown, meaning: $meaning },)*];

        impl Matcher {
            pub fn key(&self) -> &'static str {
                match self {
                    $(Matcher::$variant(_) => $key,)*
                }
            }

            /// 0: a field of the event; 1: a little decoding; 2: reads the system (/proc,
            /// socket tables). Rules evaluate the cheap ones first.
            pub fn cost(&self) -> u8 {
                match self {
                    $(Matcher::$variant(_) => $cost,)*
                }
            }

            /// Reads the value of `key` from a rule file: `None` for a key no matcher has, the
            /// problem as text for a value that does not parse.
            fn read<'de, A: MapAccess<'de>>(
                key: &str,
                map: &mut A,
            ) -> Result<Option<Spanned<Result<Matcher, String>>>, A::Error> {
                Ok(Some(match key {
                    $($key => {
                        let value = map.next_value::<Spanned<Checked<$ty>>>()?;
                        let span = value.span();
                        Spanned::new(span, value.into_inner().0.map(Matcher::$variant))
                    })*
                    _ => return Ok(None),
                }))
            }

            fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
                match self {
                    $(Matcher::$variant(value) => map.serialize_entry($key, value),)*
                }
            }
        }
    };
}

vocabulary! {
    // key => Matcher variant(value type), cost, the value as written, meaning;
    "syscall" => Syscall(List<Syscall>), cost 0,
        "[\"connect\", ...]", "the call";
    "errno" => Errno(List<Errno>), cost 0,
        "[\"ECONNREFUSED\", ...]", "its error (a name or a number)";
    "failed" => Failed(bool), cost 0,
        "true | false", "whether it failed";
    "level" => Level(List<Name<Level>>), cost 1,
        "[\"SOL_SOCKET\", ...]", "getsockopt/setsockopt level";
    "optname" => Optname(List<Name<Optname>>), cost 1,
        "[\"SO_PEERCRED\", ...]", "getsockopt/setsockopt option";
    "family" => Family(List<Name<Family>>), cost 1,
        "[\"AF_INET\", ...]", "the address family";
    "sock_type" => SockType(List<Name<SockType>>), cost 1,
        "[\"SOCK_STREAM\", ...]", "the socket type";
    "sock_flags" => SockFlags(List<Name<SockFlag>>), cost 1,
        "[\"SOCK_NONBLOCK\", ...]", "any of these socket flags is set";
    "addr" => Addr(List<SocketAddr>), cost 1,
        "[\"127.0.0.53:53\", ...]", "exact destinations (ip:port)";
    "addr_class" => AddrClass(Vec<AddrClass>), cost 1,
        "[loopback4|loopback6|any4|any6|specific|unix_path|unix_abstract|unnamed]",
        "the address's kind (listen, accept: the fd's own)";
    "ip" => Ip(List<IpNet>), cost 1,
        "[\"127.0.0.0/8\", ...]", "the address's IP is in one of these networks";
    "port" => Port(PortRange), cost 1,
        "\"1-1023\" | \"8080\"", "the address's port";
    "peer_ip" => PeerIp(List<IpNet>), cost 1,
        "[\"10.255.255.254\", ...]", "the fd's connected peer (as its last connect set it) is in one of these networks";
    "peer_port" => PeerPort(PortRange), cost 1,
        "\"53\" | \"1-1023\"", "the fd's connected peer's port";
    "connected_at_least" => ConnectedAtLeast(MinAge), cost 2,
        "\"1500ms\" | \"2s\" | \"resolver_timeout\"",
        "the fd's last traced connect was at least this long before the call; resolver_timeout: the caller's resolv.conf `options timeout:` (RES_OPTIONS first, 5 s unset)";
    "below_unprivileged_port" => BelowUnprivilegedPort(bool), cost 1,
        "true | false", "below net.ipv4.ip_unprivileged_port_start (not 0)";
    "path_prefix" => PathPrefix(List<String>), cost 1,
        "[\"/mnt/\", ...]", "the unix socket path starts with one of these";
    "path_fstype" => PathFstype(List<String>), cost 2,
        "[\"9p\", ...]", "the file system the unix socket path lives on";
    "dir_writable" => DirWritable(bool), cost 2,
        "true | false", "the caller may create files in the path's directory";
    "previous_syscall" => PreviousSyscall(List<Syscall>), cost 1,
        "[\"shutdown\", ...]", "the last traced call on the same fd";
    "lacks_capability" => LacksCapability(List<Name<Capability>>), cost 2,
        "[\"CAP_NET_BIND_SERVICE\", ...]", "the caller lacks one (as the kernel saw at the call)";
    "netns" => Netns(NetnsKind), cost 1,
        "initial | private", "the caller's network namespace";
    "listener" => Listener(Vec<ListenerKind>), cost 2,
        "[here|other_address|other_netns|none]", "who listens on the destination port (connect)";
    "wsl" => Wsl(Vec<WslKind>), cost 1,
        "[none|wsl1|wsl2]", "the environment (override with --assume)";
    "networking_mode" => NetworkingMode(List<String>), cost 1,
        "[\"nat\" | \"mirrored\" | \"consomme\" | \"bridged\", ...]", "WSL2's networking mode";
    "nameserver" => Nameserver(List<IpAddr>), cost 1,
        "[\"10.255.255.254\", ...]", "a nameserver in resolv.conf";
    "refused_by" => RefusedBy(Vec<RefusedBy>), cost 0,
        "[seccomp|unknown]", "refused before it entered the kernel (under a seccomp filter, or not)";
    "blocked" => Blocked(bool), cost 0,
        "true | false", "a call still in progress after --blocked-after (a `blocked` record); rules without it judge finished calls only";
    "accept_queue_full" => AcceptQueueFull(bool), cost 2,
        "true | false", "the listener the connect reaches, in the caller's namespace, has a full accept queue";
    "port_held" => PortHeld(bool), cost 2,
        "true | false", "another socket in the caller's namespace holds the port (bind, listen)";
    "port_held_on" => PortHeldOn(List<IpNet>), cost 2,
        "[\"10.255.255.254\", ...]", "another socket in the caller's namespace holds the port on one of these addresses (bind, listen)";
    "proxy" => Proxy(bool), cost 2,
        "true | false", "the destination is the caller's own HTTP(S)_PROXY or ALL_PROXY (its environment, /proc/PID/environ; IP literals and localhost)";
}

/// A value that may not parse: the problem is kept (with its place, by the caller) instead of
/// ending the read, so one `rules --check` lists every bad value of a file. Only for TOML: its
/// deserializer works on a parsed tree, so the next value reads correctly after a failed one.
struct Checked<T>(Result<T, String>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Checked(T::deserialize(d).map_err(|e| e.to_string().trim().to_owned())))
    }
}

/// The conditions of a `when` (or `unless`) table, cheapest first; an empty table always holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct When {
    matchers: Vec<Matcher>,
    /// What did not parse, for the rule-file reader to report with file and line.
    problems: Vec<Problem>,
}

/// A key or value of a `when` table that did not parse.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Byte range in the rule file.
    pub span: Range<usize>,
    /// The key, when it is known.
    pub key: Option<String>,
    pub message: String,
}

impl When {
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// The problems found while reading the table, leaving none.
    pub fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
    }
}

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<When, D::Error> {
        d.deserialize_map(WhenVisitor)
    }
}

struct WhenVisitor;

impl<'de> Visitor<'de> for WhenVisitor {
    type Value = When;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a table of matchers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<When, A::Error> {
        let mut when = When::default();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            match Matcher::read(key.get_ref(), &mut map)? {
                Some(value) => {
                    let span = value.span();
                    match value.into_inner() {
                        Ok(matcher) => when.matchers.push(matcher),
                        Err(message) => when.problems.push(Problem {
                            span,
                            key: Some(key.into_inner()),
                            message,
                        }),
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    let known = KEYS.iter().map(|k| k.name);
                    let hint = super::values::suggestion(key.get_ref(), known);
                    when.problems.push(Problem {
                        span: key.span(),
                        key: None,
                        message: format!("unknown matcher '{}'{hint}", key.get_ref()),
                    });
                }
            }
        }
        // Most events are rejected by the syscall or errno test; the matchers that read /proc
        // or socket tables run last, on the few events that got there.
        when.matchers.sort_by_key(Matcher::cost);
        Ok(when)
    }
}

impl Serialize for When {
    /// In the table's order, whatever the file's.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let position = |m: &&Matcher| KEYS.iter().position(|k| k.name == m.key());
        let mut matchers: Vec<&Matcher> = self.matchers.iter().collect();
        matchers.sort_by_key(position);
        let mut map = s.serialize_map(Some(matchers.len()))?;
        for matcher in matchers {
            matcher.write(&mut map)?;
        }
        map.end()
    }
}

/// The matcher list of `wsltrace rules --help`.
pub fn help() -> String {
    const WIDTH: usize = 38;
    let mut text = String::from("Matchers (a list means any of; unknown facts never match):");
    for key in KEYS {
        let left = format!("{} = {}", key.name, key.shown);
        if left.len() < WIDTH {
            text.push_str(&format!("\n  {left:<WIDTH$}{}", key.meaning));
        } else {
            text.push_str(&format!("\n  {left}\n  {:<WIDTH$}{}", "", key.meaning));
        }
    }
    text
}
