//! The doctor report as text: a section per area, one line per check, the fix below each
//! warn/fail, and the process's sockets as a small lsof-like table.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use super::report::{Process, Report, Verdict};
use crate::event::{KnownAddr, SockAddr, SocketInfo};

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

fn verdict_style(v: Verdict) -> Style {
    match v {
        Verdict::Ok => AnsiColor::Green.on_default(),
        Verdict::Warn => AnsiColor::Yellow.on_default().bold(),
        Verdict::Fail => AnsiColor::Red.on_default().bold(),
    }
}

struct Out {
    text: String,
    color: bool,
}

impl Out {
    fn styled(&mut self, style: Style, s: &str) {
        if self.color {
            let _ = write!(self.text, "{style}{s}{style:#}");
        } else {
            self.text.push_str(s);
        }
    }
}

pub fn text(report: &Report, color: bool) -> String {
    let mut out = Out { text: String::new(), color };
    let mut area = "";
    for check in &report.checks {
        if check.area() != area {
            area = check.area();
            if !out.text.is_empty() {
                out.text.push('\n');
            }
            let title = match (area, &report.process) {
                ("process", Some(p)) => format!("process {} ({})", p.pid, p.comm),
                _ => area.to_owned(),
            };
            out.styled(BOLD, &title);
            out.text.push('\n');
        }
        out.text.push_str("  ");
        out.styled(verdict_style(check.verdict), &format!("{:<5}", check.verdict.name()));
        let _ = writeln!(out.text, " {}", check.summary);
        if let Some(fix) = &check.fix {
            out.text.push_str("        ");
            out.styled(DIM, "fix:");
            let _ = writeln!(out.text, " {fix}");
        }
        if check.id == "process.sockets"
            && let Some(p) = &report.process
        {
            sockets(&mut out, p);
        }
    }
    let (ok, warn, fail) =
        (report.count(Verdict::Ok), report.count(Verdict::Warn), report.count(Verdict::Fail));
    let _ = writeln!(out.text, "\n{ok} ok, {warn} warn, {fail} fail");
    out.text
}

fn sockets(out: &mut Out, p: &Process) {
    let rows: Vec<[String; 6]> = p
        .sockets
        .iter()
        .map(|s| {
            [
                s.fd.map_or_else(|| "?".to_owned(), |fd| fd.to_string()),
                kind(s),
                s.state.map(|s| s.to_string()).unwrap_or_default(),
                s.local.as_ref().map_or_else(String::new, addr),
                s.peer.as_ref().map_or_else(|| "-".to_owned(), addr),
                match (s.inode, s.peer_inode) {
                    (Some(i), Some(p)) => format!("ino {i} peer {p}"),
                    (Some(i), None) => format!("ino {i}"),
                    _ => String::new(),
                },
            ]
        })
        .collect();
    let header = ["fd", "what", "state", "local", "peer", ""].map(str::to_owned);
    let mut widths = [0; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for (i, row) in std::iter::once(&header).chain(&rows).enumerate() {
        let mut line = String::from("        ");
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        let line = line.trim_end();
        if i == 0 {
            out.styled(DIM, line);
        } else {
            out.text.push_str(line);
        }
        out.text.push('\n');
    }
}

/// `TCP`, `UDP6`, `UNIX/STREAM`, `NETLINK/NETLINK_ROUTE`...
fn kind(s: &SocketInfo) -> String {
    let v6 = if s.family == "AF_INET6" { "6" } else { "" };
    match s.protocol.as_deref() {
        Some("IPPROTO_TCP") => format!("TCP{v6}"),
        Some("IPPROTO_UDP") => format!("UDP{v6}"),
        other => {
            let family = s.family.trim_start_matches("AF_");
            let detail = other
                .map(|p| p.trim_start_matches("NETLINK_"))
                .or(s.sock_type.as_deref().map(|t| t.trim_start_matches("SOCK_")));
            match detail {
                Some(d) => format!("{family}/{d}"),
                None => family.to_owned(),
            }
        }
    }
}

/// `127.0.0.1:80`, `[::1]:53`, `/run/app.sock`, `@abstract`, `*` (unnamed unix).
pub fn addr(a: &SockAddr) -> String {
    match a {
        SockAddr::Known(KnownAddr::Inet { ip, port }) => format!("{ip}:{port}"),
        SockAddr::Known(KnownAddr::Inet6 { ip, port, scope_id: 0, .. }) => format!("[{ip}]:{port}"),
        SockAddr::Known(KnownAddr::Inet6 { ip, port, scope_id, .. }) => {
            format!("[{ip}%{scope_id}]:{port}")
        }
        SockAddr::Known(KnownAddr::Unix(u)) => match (&u.path, &u.abstract_name) {
            (Some(path), _) => path.clone(),
            (None, Some(name)) => format!("@{name}"),
            (None, None) => "*".to_owned(),
        },
        // VMADDR_CID_ANY
        SockAddr::Known(KnownAddr::Vsock { cid: u32::MAX, port }) => format!("vsock *:{port}"),
        SockAddr::Known(KnownAddr::Vsock { cid, port }) => format!("vsock {cid}:{port}"),
        SockAddr::Known(KnownAddr::Netlink { portid, groups }) => {
            format!("portid {portid} groups {groups:#x}")
        }
        SockAddr::Known(KnownAddr::Packet { protocol, ifindex, .. }) => {
            format!("{protocol} ifindex {ifindex}")
        }
        SockAddr::Known(KnownAddr::Unspec {}) => "unspec".to_owned(),
        SockAddr::Other { family, hex } => format!("{family} {hex}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        commands::doctor::report::Check, decode::state::SockState, event::UnixAddr, facts::Facts,
    };

    fn report() -> Report {
        let listener = SocketInfo {
            flags: None,
            fd: Some(3),
            family: "AF_INET".into(),
            sock_type: Some("SOCK_STREAM".into()),
            protocol: Some("IPPROTO_TCP".into()),
            state: Some(SockState::Listen),
            local: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 8080 })),
            peer: None,
            inode: Some(100),
            peer_inode: None,
        };
        let unix = SocketInfo {
            fd: Some(4),
            family: "AF_UNIX".into(),
            sock_type: Some("SOCK_STREAM".into()),
            state: Some(SockState::Connected),
            local: Some(SockAddr::Known(KnownAddr::Unix(UnixAddr::default()))),
            peer: Some(SockAddr::Known(KnownAddr::Unix(UnixAddr {
                path: Some("/run/app.sock".into()),
                abstract_name: None,
            }))),
            inode: Some(101),
            peer_inode: Some(102),
            ..SocketInfo::default()
        };
        Report {
            facts: Facts::default(),
            checks: vec![
                Check::ok("machine.kernel", "kernel 6.18.0"),
                Check::ok("process.sockets", "2 sockets"),
                Check::warn(
                    "process.loopback_only",
                    "TCP port 8080 listens only on 127.0.0.1",
                    "bind 0.0.0.0:8080",
                ),
            ],
            process: Some(Process {
                pid: 42,
                comm: "server".into(),
                sockets: vec![listener, unix],
                ..Process::default()
            }),
        }
    }

    #[test]
    fn plain_text() {
        let text = text(&report(), false);
        let expected = "\
machine
  ok    kernel 6.18.0

process 42 (server)
  ok    2 sockets
        fd  what         state      local           peer           
";
        assert!(text.starts_with(expected.trim_end()), "{text}");
        assert!(
            text.contains("3   TCP          LISTEN     127.0.0.1:8080  -              ino 100"),
            "{text}"
        );
        assert!(
            text.contains(
                "4   UNIX/STREAM  CONNECTED  *               /run/app.sock  ino 101 peer 102"
            ),
            "{text}"
        );
        assert!(text.contains(
            "  warn  TCP port 8080 listens only on 127.0.0.1\n        fix: bind 0.0.0.0:8080\n"
        ));
        assert!(text.ends_with("\n2 ok, 1 warn, 0 fail\n"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn colour_only_when_asked() {
        let text = text(&report(), true);
        assert!(text.contains("\x1b["));
    }
}
