//! What a finding says about its occurrence: who listens, who holds the port, what is at a
//! unix path. Computed only when a rule with that `detail` fires, and only on a live system.

use std::net::SocketAddr;

use super::{
    matchers::{Ctx, covers, inet, port_holders, target, unix_path},
    rules::{Detail, ListenerKind},
};
use crate::{
    decode::state::SockState,
    event::Event,
    facts::system::{Owner, TableSocket},
};

fn owner(o: &Option<Owner>) -> String {
    match o {
        Some(o) if o.pid != 0 => format!("{}[{}] fd {}", o.comm, o.pid, o.fd),
        _ => "owner unknown".into(),
    }
}

fn socket(s: &TableSocket) -> String {
    format!("{} ({})", s.addr, owner(&s.owner))
}

pub fn describe(detail: Detail, ev: &Event, ctx: &mut Ctx<'_>) -> Option<String> {
    match detail {
        Detail::Listeners => listeners(ev, ctx),
        Detail::PortHolder => port_holder(ev, ctx),
        Detail::UnixTarget => unix_target(ev, ctx),
        Detail::Netns => {
            let ns = ev.ns?.net;
            Some(match ctx.initial_net {
                Some(initial) if initial != ns => {
                    format!("network namespace {ns}; the initial one is {initial}")
                }
                _ => format!("network namespace {ns}"),
            })
        }
        Detail::AcceptQueue => accept_queue(ev, ctx),
        Detail::Proxy => {
            let var = super::environ::proxy_of(ev, ctx)?;
            Some(format!("{var} in the process's environment"))
        }
        Detail::Addresses => {
            let addrs = ctx.system.addresses(ev.pid, ev.ns.map(|ns| ns.net))?;
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            Some(format!("this network namespace has {}", list.join(", ")))
        }
    }
}

fn accept_queue(ev: &Event, ctx: &mut Ctx<'_>) -> Option<String> {
    let dest = inet(ev.args.addr.as_ref()?)?;
    let netns = ev.ns.map(|n| n.net);
    let listeners: Vec<String> = ctx
        .system
        .listeners_on_port(dest.port())?
        .iter()
        .filter(|s| Some(s.netns) == netns && covers(s.addr, dest))
        .filter_map(|s| {
            let (waiting, backlog) = s.accept_queue?;
            Some(format!(
                "{}: {waiting} connection(s) waiting to be accepted, backlog {backlog}",
                socket(s)
            ))
        })
        .collect();
    (!listeners.is_empty()).then(|| listeners.join("; "))
}

fn listeners(ev: &Event, ctx: &mut Ctx<'_>) -> Option<String> {
    let dest = inet(ev.args.addr.as_ref()?)?;
    let (kind, sockets) = ctx.listeners(ev)?;
    let netns = ev.ns.map(|n| n.net);
    let here: Vec<&TableSocket> = sockets.iter().filter(|s| Some(s.netns) == netns).collect();
    let list = |v: &[&TableSocket]| v.iter().map(|s| socket(s)).collect::<Vec<_>>().join(", ");
    Some(match kind {
        ListenerKind::Here => {
            let covering: Vec<&TableSocket> =
                here.iter().copied().filter(|s| covers(s.addr, dest)).collect();
            format!(
                "{} listens for {dest}, yet the connection was refused (backlog full, or a firewall rule)",
                list(&covering)
            )
        }
        ListenerKind::OtherAddress => {
            format!(
                "port {} listens on {} in this namespace, not on {}",
                dest.port(),
                list(&here),
                dest.ip()
            )
        }
        ListenerKind::OtherNetns => {
            let elsewhere: Vec<String> =
                sockets.iter().map(|s| format!("{} in netns {}", socket(s), s.netns)).collect();
            format!(
                "port {} listens only in other network namespaces: {}{}",
                dest.port(),
                elsewhere.join(", "),
                netns.map(|n| format!("; the caller is in {n}")).unwrap_or_default()
            )
        }
        ListenerKind::None => {
            format!(
                "nothing listens on port {} in any network namespace wsltrace can see",
                dest.port()
            )
        }
    })
}

fn port_holder(ev: &Event, ctx: &mut Ctx<'_>) -> Option<String> {
    let wanted: SocketAddr = inet(ev.args.addr.as_ref()?)?;
    let holders = port_holders(ev, ctx)?;
    let described: Vec<String> = holders
        .iter()
        .map(|s| match (&s.owner, s.state) {
            (None, Some(SockState::TimeWait)) => {
                format!("{} in TIME_WAIT from an earlier connection (no process; SO_REUSEADDR lets a server rebind)", s.addr)
            }
            (_, state) => {
                // A traced socket whose calls did not say is bound (it holds the port).
                let state = state.map_or_else(|| "BOUND".to_owned(), |s| s.to_string());
                format!("{} {state} ({})", s.addr, owner(&s.owner))
            }
        })
        .collect();
    Some(if described.is_empty() {
        format!("no socket holds {wanted} any more: the holder has exited since")
    } else {
        format!("held by {}", described.join(", "))
    })
}

fn unix_target(ev: &Event, ctx: &mut Ctx<'_>) -> Option<String> {
    let path = unix_path(target(ev)?)?.to_owned();
    let t = ctx.system.unix_target(ev.pid, ev.ns.map(|ns| ns.mnt), &path)?;
    Some(match (t.exists, t.is_socket, &t.listener) {
        _ if ev.syscall == tracer_common::Syscall::Bind => match t.dir {
            Some((uid, gid, mode)) => format!(
                "the directory of {path} belongs to uid {uid} gid {gid} with mode {mode:04o}; the caller runs as uid {} gid {}",
                ev.uid, ev.gid
            ),
            None => {
                format!("the directory of {path} does not exist in the caller's mount namespace")
            }
        },
        (_, _, Some(listener)) if !t.listener_same_file => format!(
            "{} listens on {path}, but in another mount namespace: the file the caller sees is a different one",
            owner(&Some(listener.clone()))
        ),
        (false, _, None) => format!("no file at {path} in the caller's mount namespace"),
        (true, false, _) => format!("{path} exists but is not a socket"),
        (true, true, None) => format!("{path} is a socket file but nothing listens on it: stale"),
        (_, _, Some(listener)) => {
            format!(
                "{} listens on {path}; the refusal came from a full backlog",
                owner(&Some(listener.clone()))
            )
        }
    })
}
