//! What the caller's own environment (/proc/PID/environ) tells the rules: the proxy it was
//! told to use, and its resolver options.

use std::{net::IpAddr, net::SocketAddr, time::Duration};

use tracer_common::Syscall;

use super::matchers::{Ctx, inet};
use crate::{
    event::Event,
    facts::{dns, system::System},
};

/// The proxy variable of the caller's environment (`HTTPS_PROXY=http://127.0.0.1:3128`) whose
/// address is a connect's destination; `None` when there is none (or the environment is gone).
pub fn proxy_of(ev: &Event, ctx: &mut Ctx<'_>) -> Option<String> {
    if ev.syscall != Syscall::Connect {
        return None;
    }
    let dest = inet(ev.args.addr.as_ref()?)?;
    let environ = ctx.system.environ(ev.pid)?;
    environ.into_iter().find_map(|(name, value)| {
        let wanted = PROXY_VARIABLES.iter().any(|v| v.eq_ignore_ascii_case(&name));
        let found = wanted && proxy_addresses(&value).contains(&dest);
        found.then(|| format!("{name}={value}"))
    })
}

/// How long one DNS try waits for the caller: `timeout:` of RES_OPTIONS in its environment
/// (glibc reads it over resolv.conf), else of the resolv.conf its mount namespace shows.
pub fn resolver_timeout(ev: &Event, system: &mut dyn System) -> Option<Duration> {
    let from_env = system.environ(ev.pid).and_then(|environ| {
        let (_, value) = environ.into_iter().find(|(name, _)| name == "RES_OPTIONS")?;
        dns::options_timeout(&value)
    });
    from_env.or_else(|| system.resolver_timeout(ev.pid, ev.ns.map(|ns| ns.mnt)))
}

/// What curl, Python, Go, git, pip and npm read (lower and upper case).
const PROXY_VARIABLES: &[&str] = &["http_proxy", "https_proxy", "all_proxy"];

/// The addresses a proxy URL points at (`http://user:pw@127.0.0.1:3128/`, `socks5://[::1]:1080`,
/// `localhost:8080`): IP literals and `localhost` only, since resolving other names would send
/// queries; no port means the scheme's default (1080 for SOCKS, as curl, else 80).
pub fn proxy_addresses(url: &str) -> Vec<SocketAddr> {
    let (scheme, rest) = match url.trim().split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_owned(), url.trim()),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return Vec::new(),
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let default = if scheme.starts_with("socks") { 1080 } else { 80 };
    let Some(port) = port.map_or(Some(default), |p| p.parse::<u16>().ok()) else {
        return Vec::new();
    };
    let ips: Vec<IpAddr> = if host.eq_ignore_ascii_case("localhost") {
        vec![std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()]
    } else {
        host.parse().into_iter().collect()
    };
    ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn proxy_urls() {
        assert_eq!(proxy_addresses("http://127.0.0.1:3128/"), [sa("127.0.0.1:3128")]);
        assert_eq!(proxy_addresses("http://user:pw@127.0.0.1:8080"), [sa("127.0.0.1:8080")]);
        assert_eq!(proxy_addresses("socks5h://[::1]"), [sa("[::1]:1080")]);
        assert_eq!(proxy_addresses("localhost:7890"), [sa("127.0.0.1:7890"), sa("[::1]:7890")]);
        assert_eq!(proxy_addresses("http://10.0.0.1"), [sa("10.0.0.1:80")]);
        assert!(proxy_addresses("http://proxy.example:3128").is_empty());
        assert!(proxy_addresses("http://127.0.0.1:notaport").is_empty());
    }
}
