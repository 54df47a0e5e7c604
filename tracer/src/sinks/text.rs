//! strace-like text: one line per call.
//!
//! `11:02:03.104512 server[4242/4251] connect(7, {AF_INET, 127.0.0.1:8080}, 16) = -1 ECONNREFUSED (Connection refused) <31us>`

use std::{
    fmt::Write as _,
    io::{self, Write},
};

use anstyle::{AnsiColor, Style};
use chrono::{FixedOffset, Timelike};
use tracer_common::Syscall;

use super::Sink;
use crate::event::{
    Event, KnownAddr, Loss, OptValue, ProcessExit, RecordRef, Snapshot, SockAddr, SocketInfo,
};

const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();
const ERROR: Style = AnsiColor::Red.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default().bold();

pub struct TextSink<W: Write> {
    out: W,
    color: bool,
    /// Local time offset, fixed at start: looking up the zone per line is too slow.
    tz: FixedOffset,
    line: String,
}

impl<W: Write> TextSink<W> {
    pub fn new(out: W, color: bool) -> Self {
        let tz = *chrono::Local::now().offset();
        TextSink { out, color, tz, line: String::with_capacity(256) }
    }

    fn styled(&mut self, style: Style, text: &str) {
        if self.color {
            let _ = write!(self.line, "{style}{text}{style:#}");
        } else {
            self.line.push_str(text);
        }
    }

    fn time(&mut self, ts: chrono::DateTime<chrono::Utc>) {
        let t = ts.with_timezone(&self.tz);
        let stamp = format!(
            "{:02}:{:02}:{:02}.{:06}",
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() % 1_000_000_000 / 1_000
        );
        self.styled(DIM, &stamp);
        self.line.push(' ');
    }

    fn event(&mut self, ev: &Event) {
        self.time(ev.ts);
        let who = format!("{}[{}/{}]", ev.comm, ev.pid, ev.tid);
        self.styled(DIM, &who);
        self.line.push(' ');
        self.styled(BOLD, ev.syscall.name());
        self.line.push('(');
        if ev.in_flight_at_attach {
            self.line.push_str("<in flight at attach>");
        } else {
            self.line.push_str(&render_args(ev));
        }
        self.line.push_str(") = ");
        match ev.errno {
            Some(errno) => {
                let err = format!("-1 {} ({})", errno.name(), errno.message());
                self.styled(ERROR, &err);
            }
            None => {
                let _ = write!(self.line, "{}", ev.ret);
            }
        }
        if let Some(ns) = ev.duration_ns {
            self.line.push(' ');
            self.styled(DIM, &format!("<{}>", latency(ns)));
        }
    }

    fn loss(&mut self, loss: &Loss) {
        self.time(loss.ts);
        let text = format!(
            "--- lost {} events (ring buffer full; {} lost in all): enlarge it with --ring-size or narrow the trace with -s, -e or --failed ---",
            loss.lost, loss.total_lost
        );
        self.styled(WARN, &text);
    }

    fn exit(&mut self, exit: &ProcessExit) {
        self.time(exit.ts);
        let text = format!("{}[{}] +++ exited +++", exit.comm, exit.pid);
        self.styled(DIM, &text);
    }

    /// A header line, then one indented line per socket, as lsof lists them.
    fn snapshot(&mut self, snap: &Snapshot) {
        self.time(snap.ts);
        let n = snap.sockets.len();
        let text = format!(
            "{}[{}] +++ holds {n} socket{} +++",
            snap.comm,
            snap.pid,
            if n == 1 { "" } else { "s" }
        );
        self.styled(DIM, &text);
        for sock in &snap.sockets {
            self.line.push_str("\n    ");
            self.line.push_str(&render_socket(sock));
        }
    }
}

impl<W: Write> Sink for TextSink<W> {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        self.line.clear();
        match record {
            RecordRef::Event(ev) => self.event(ev),
            RecordRef::Loss(loss) => self.loss(loss),
            RecordRef::Exit(exit) => self.exit(exit),
            RecordRef::Snapshot(snap) => self.snapshot(snap),
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `31us`, `850ns`, `1.25ms`, `3.00s`.
pub fn latency(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{}us", ns / 1_000),
        1_000_000..1_000_000_000 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// The argument list, in the syscall's own order, as strace shows it.
pub fn render_args(ev: &Event) -> String {
    let a = &ev.args;
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "?".into());
    let fd = a.fd.map_or_else(|| "?".into(), |fd| fd.to_string());
    let failed = ev.failed();
    // An out-address: decoded, NULL when none was asked for, unknown when the call failed.
    let addr_out = || match (&a.addr, a.addrlen) {
        (Some(addr), len) => format!("{}, [{}]", render_addr(addr), len.unwrap_or(0)),
        (None, _) if failed => "?, ?".into(),
        (None, _) => "NULL, NULL".into(),
    };
    match ev.syscall {
        Syscall::Socket | Syscall::Socketpair => {
            let ty = match &a.flags {
                Some(flags) => format!("{}|{flags}", opt(&a.sock_type)),
                None => opt(&a.sock_type),
            };
            let mut s = format!("{}, {ty}, {}", opt(&a.domain), opt(&a.protocol));
            if ev.syscall == Syscall::Socketpair {
                match a.fds {
                    Some([x, y]) => {
                        let _ = write!(s, ", [{x}, {y}]");
                    }
                    None => s.push_str(", ?"),
                }
            }
            s
        }
        Syscall::Bind | Syscall::Connect => {
            let addr = a.addr.as_ref().map_or_else(|| "?".into(), render_addr);
            format!("{fd}, {addr}, {}", a.addrlen.unwrap_or(0))
        }
        Syscall::Listen => format!("{fd}, {}", a.backlog.unwrap_or(0)),
        Syscall::Accept | Syscall::Getsockname | Syscall::Getpeername => {
            format!("{fd}, {}", addr_out())
        }
        Syscall::Accept4 => format!("{fd}, {}, {}", addr_out(), opt(&a.flags)),
        Syscall::Getsockopt => {
            let value = a.value.as_ref().map_or_else(|| "?".into(), render_value);
            let len = a.optlen.map_or_else(|| "?".into(), |l| format!("[{l}]"));
            format!("{fd}, {}, {}, {value}, {len}", opt(&a.level), opt(&a.optname))
        }
        Syscall::Setsockopt => {
            let value = a.value.as_ref().map_or_else(|| "NULL".into(), render_value);
            format!(
                "{fd}, {}, {}, {value}, {}",
                opt(&a.level),
                opt(&a.optname),
                a.optlen.unwrap_or(0)
            )
        }
        Syscall::Shutdown => format!("{fd}, {}", opt(&a.how)),
        Syscall::Close => fd,
    }
}

pub fn render_addr(addr: &SockAddr) -> String {
    match addr {
        SockAddr::Known(KnownAddr::Inet { ip, port }) => format!("{{AF_INET, {ip}:{port}}}"),
        SockAddr::Known(KnownAddr::Inet6 { ip, port, scope_id, .. }) => match scope_id {
            0 => format!("{{AF_INET6, [{ip}]:{port}}}"),
            scope => format!("{{AF_INET6, [{ip}%{scope}]:{port}}}"),
        },
        SockAddr::Known(KnownAddr::Unix(unix)) => match (&unix.path, &unix.abstract_name) {
            (Some(path), _) => format!("{{AF_UNIX, \"{path}\"}}"),
            (None, Some(name)) => format!("{{AF_UNIX, @\"{name}\"}}"),
            (None, None) => "{AF_UNIX}".into(),
        },
        SockAddr::Known(KnownAddr::Vsock { cid, port }) => {
            format!("{{AF_VSOCK, cid={cid}, port={port}}}")
        }
        SockAddr::Known(KnownAddr::Netlink { portid, groups }) => {
            format!("{{AF_NETLINK, portid={portid}, groups={groups:#x}}}")
        }
        SockAddr::Known(KnownAddr::Packet { protocol, ifindex, addr, .. }) => {
            format!("{{AF_PACKET, {protocol}, ifindex={ifindex}, addr={addr}}}")
        }
        SockAddr::Known(KnownAddr::Unspec {}) => "{AF_UNSPEC}".into(),
        SockAddr::Other { family, hex } => format!("{{{family}, hex={hex}}}"),
    }
}

/// `fd 3 AF_INET SOCK_STREAM LISTEN {AF_INET, 127.0.0.1:8080}`, with the peer after `->`.
pub fn render_socket(sock: &SocketInfo) -> String {
    let mut s = match sock.fd {
        Some(fd) => format!("fd {fd} {}", sock.family),
        None => sock.family.clone(),
    };
    for part in [&sock.sock_type, &sock.protocol, &sock.state].into_iter().flatten() {
        s.push(' ');
        s.push_str(part);
    }
    if let Some(local) = &sock.local {
        s.push(' ');
        s.push_str(&render_addr(local));
    }
    if let Some(peer) = &sock.peer {
        s.push_str(" -> ");
        s.push_str(&render_addr(peer));
    }
    if let Some(inode) = sock.inode {
        let _ = write!(s, " inode={inode}");
    }
    if let Some(peer) = sock.peer_inode {
        let _ = write!(s, " peer_inode={peer}");
    }
    s
}

pub fn render_value(value: &OptValue) -> String {
    match value {
        OptValue::Int(v) => format!("[{v}]"),
        OptValue::Name(name) => format!("[{name}]"),
        OptValue::Cred { pid, uid, gid } => format!("{{pid={pid}, uid={uid}, gid={gid}}}"),
        OptValue::Linger { onoff, linger } => format!("{{onoff={onoff}, linger={linger}}}"),
        OptValue::Timeval { sec, usec } => format!("{{tv_sec={sec}, tv_usec={usec}}}"),
        OptValue::Bytes { hex, truncated } => {
            format!("\"{hex}\"{}", if *truncated { "..." } else { "" })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode::errno::Errno, event::Args};

    fn event(syscall: Syscall, args: Args, ret: i64) -> Event {
        Event {
            ts: chrono::DateTime::from_timestamp(0, 104_512_000).unwrap(),
            ts_ns: 1,
            pid: 4242,
            tid: 4251,
            comm: "server".into(),
            uid: 0,
            gid: 0,
            cgroup_id: 1,
            syscall,
            args,
            ret,
            errno: Errno::from_ret(ret),
            duration_ns: Some(31_000),
            in_flight_at_attach: false,
            ns: None,
            cgroup: None,
            sock: None,
            anomalies: Vec::new(),
        }
    }

    fn line(ev: &Event) -> String {
        let mut sink = TextSink::new(Vec::new(), false);
        sink.tz = FixedOffset::east_opt(0).unwrap();
        sink.write(RecordRef::Event(ev)).unwrap();
        String::from_utf8(sink.out).unwrap()
    }

    #[test]
    fn refused_connect_reads_like_strace() {
        let args = Args {
            fd: Some(7),
            addr: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 8080 })),
            addrlen: Some(16),
            ..Args::default()
        };
        assert_eq!(
            line(&event(Syscall::Connect, args, -111)),
            "00:00:00.104512 server[4242/4251] connect(7, {AF_INET, 127.0.0.1:8080}, 16) = -1 ECONNREFUSED (Connection refused) <31us>\n"
        );
    }

    #[test]
    fn getsockopt_peercred() {
        let args = Args {
            fd: Some(5),
            level: Some("SOL_SOCKET".into()),
            optname: Some("SO_PEERCRED".into()),
            optlen: Some(12),
            value: Some(OptValue::Cred { pid: 1, uid: 0, gid: 0 }),
            ..Args::default()
        };
        assert!(line(&event(Syscall::Getsockopt, args, 0)).contains(
            "getsockopt(5, SOL_SOCKET, SO_PEERCRED, {pid=1, uid=0, gid=0}, [12]) = 0 <31us>"
        ));
    }

    #[test]
    fn in_flight_calls_say_so() {
        let mut ev = event(Syscall::Accept4, Args::default(), 5);
        ev.in_flight_at_attach = true;
        ev.duration_ns = None;
        assert!(line(&ev).ends_with("accept4(<in flight at attach>) = 5\n"));
    }

    #[test]
    fn socket_type_with_flags() {
        let args = Args {
            domain: Some("AF_UNIX".into()),
            sock_type: Some("SOCK_STREAM".into()),
            flags: Some("SOCK_CLOEXEC".into()),
            protocol: Some("0".into()),
            fds: Some([3, 4]),
            ..Args::default()
        };
        assert!(
            line(&event(Syscall::Socketpair, args, 0))
                .contains("socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0, [3, 4]) = 0")
        );
    }

    #[test]
    fn snapshots_list_their_sockets() {
        let listener = SocketInfo {
            fd: Some(3),
            family: "AF_INET".into(),
            sock_type: Some("SOCK_STREAM".into()),
            state: Some("LISTEN".into()),
            local: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 80 })),
            inode: Some(99),
            ..SocketInfo::default()
        };
        let snap = Snapshot {
            ts: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            pid: 7,
            comm: "nginx".into(),
            sockets: vec![listener],
        };
        let mut sink = TextSink::new(Vec::new(), false);
        sink.tz = FixedOffset::east_opt(0).unwrap();
        sink.write(RecordRef::Snapshot(&snap)).unwrap();
        assert_eq!(
            String::from_utf8(sink.out).unwrap(),
            "00:00:00.000000 nginx[7] +++ holds 1 socket +++\n    fd 3 AF_INET SOCK_STREAM LISTEN {AF_INET, 127.0.0.1:80} inode=99\n"
        );
    }

    #[test]
    fn latencies() {
        assert_eq!(latency(850), "850ns");
        assert_eq!(latency(31_400), "31us");
        assert_eq!(latency(1_250_000), "1.25ms");
        assert_eq!(latency(3_000_000_000), "3.00s");
    }

    #[test]
    fn colour_only_when_asked() {
        let ev = event(Syscall::Close, Args { fd: Some(3), ..Args::default() }, -9);
        let mut sink = TextSink::new(Vec::new(), true);
        sink.write(RecordRef::Event(&ev)).unwrap();
        assert!(String::from_utf8(sink.out).unwrap().contains("\u{1b}["));
        assert!(!line(&ev).contains('\u{1b}'));
    }
}
