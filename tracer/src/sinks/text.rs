//! strace-like text: one line per call.
//!
//! `11:02:03.104512 server[4242/4251] connect(7, {AF_INET, 127.0.0.1:8080}, 16) = -1 ECONNREFUSED (Connection refused) <31us>`

use std::{
    fmt::{self, Write as _},
    io::{self, Write},
};

use anstyle::{AnsiColor, Style};
use chrono::{FixedOffset, Timelike};
use tracer_common::Syscall;

use super::Sink;
use crate::event::{
    Args, Blocked, Event, Finding, KnownAddr, Loss, OptValue, ProcessExit, RecordRef, RefusedBy,
    Severity, Snapshot, SockAddr, SocketError, SocketInfo,
};

const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();
const ERROR: Style = AnsiColor::Red.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default().bold();
const INFO: Style = AnsiColor::Cyan.on_default().bold();

pub struct TextSink<W: Write> {
    out: W,
    color: bool,
    /// The initial network namespace: events from another one are marked `[netns N]`.
    initial_net: Option<u32>,
    /// Local time offset, fixed at start: looking up the zone per line is too slow.
    tz: FixedOffset,
    line: String,
    /// How often each finding was seen on each site: the same finding on the same site is
    /// printed once, then counted (a reminder at 10, 100, 1000... occurrences).
    seen: std::collections::HashMap<(String, u32, String), u64>,
}

impl<W: Write> TextSink<W> {
    pub fn new(out: W, color: bool, initial_net: Option<u32>) -> Self {
        let tz = *chrono::Local::now().offset();
        TextSink {
            out,
            color,
            initial_net,
            tz,
            line: String::with_capacity(256),
            seen: std::collections::HashMap::new(),
        }
    }

    fn styled(&mut self, style: Style, text: &str) {
        if self.color {
            let _ = write!(self.line, "{style}{text}{style:#}");
        } else {
            self.line.push_str(text);
        }
    }

    /// Like `styled`, formatting straight into the line: the per-line pieces (time, process,
    /// result, latency) went through a `String` each, a fifth of the sink's time at high rates.
    fn styled_fmt(&mut self, style: Style, args: fmt::Arguments<'_>) {
        if self.color {
            let _ = write!(self.line, "{style}{args}{style:#}");
        } else {
            let _ = self.line.write_fmt(args);
        }
    }

    fn time(&mut self, ts: chrono::DateTime<chrono::Utc>) {
        let t = ts.with_timezone(&self.tz);
        self.styled_fmt(
            DIM,
            format_args!(
                "{:02}:{:02}:{:02}.{:06}",
                t.hour(),
                t.minute(),
                t.second(),
                t.nanosecond() % 1_000_000_000 / 1_000
            ),
        );
        self.line.push(' ');
    }

    /// `connect(5<TCP:?->127.0.0.1:9999>, {AF_INET, 127.0.0.1:9999}, 16) ... blocked for 2.0s`
    fn blocked(&mut self, b: &Blocked) {
        let ev = b.as_event();
        self.call(&ev);
        self.line.push_str(") ... ");
        let secs = b.blocked_ns as f64 / 1e9;
        self.styled_fmt(WARN, format_args!("blocked for {secs:.1}s"));
        if b.nonblocking {
            self.line.push_str(" (non-blocking: still connecting)");
        }
        for finding in &b.anomalies {
            self.finding(&ev, finding);
        }
    }

    /// Time, caller and the call up to its closing parenthesis.
    fn call(&mut self, ev: &Event) {
        self.time(ev.ts);
        self.styled_fmt(DIM, format_args!("{}[{}/{}]", ev.comm, ev.pid, ev.tid));
        self.line.push(' ');
        if let (Some(ns), Some(initial)) = (ev.ns, self.initial_net)
            && ns.net != initial
        {
            self.styled(WARN, &format!("[netns {}]", ns.net));
            self.line.push(' ');
        }
        self.styled(BOLD, ev.syscall.name());
        self.line.push('(');
        if ev.in_flight_at_attach {
            self.line.push_str("<in flight at attach>");
        } else if ev.refused_by.is_some() && ev.args == Args::default() {
            self.line.push_str("<arguments unknown>");
        } else {
            self.line.push_str(&render_args(ev));
        }
    }

    fn event(&mut self, ev: &Event) {
        self.call(ev);
        self.line.push_str(") = ");
        match ev.errno {
            Some(errno) => {
                self.styled_fmt(ERROR, format_args!("-1 {} ({})", errno.name(), errno.message()));
            }
            None => {
                let _ = write!(self.line, "{}", ev.ret);
                // socket() and accept() return the fd the annotation describes.
                if let (Some(sock), true) = (&ev.sock, returns_fd(ev.syscall)) {
                    let _ = write!(self.line, "<{}>", sock_tag(sock));
                }
                // The call succeeded, and reported that a non-blocking connect failed.
                if let (Some(connect), Some(errno)) = (&ev.connect, ev.async_error) {
                    self.line.push(' ');
                    self.styled_fmt(
                        ERROR,
                        format_args!(
                            "(connect to {} failed: {})",
                            render_endpoint(&connect.addr),
                            errno.name()
                        ),
                    );
                }
            }
        }
        if let Some(ns) = ev.duration_ns {
            self.line.push(' ');
            self.styled_fmt(DIM, format_args!("<{}>", Duration(ns)));
        }
        match ev.refused_by {
            Some(RefusedBy::Seccomp) => self.line.push_str(" <refused by seccomp>"),
            Some(RefusedBy::Unknown) => self.line.push_str(" <refused before entry>"),
            None => {}
        }
        for finding in &ev.anomalies {
            self.finding(ev, finding);
        }
    }

    /// An indented block under the event: rule, meaning, this occurrence, fix.
    fn finding(&mut self, ev: &Event, finding: &Finding) {
        // A connect's outcome reported later is on the site of that connect.
        let site = match &ev.connect {
            Some(connect) => format!("connect({})", render_addr(&connect.addr)),
            None => format!(
                "{}({})",
                ev.syscall.name(),
                ev.args.addr.as_ref().map(render_addr).unwrap_or_default()
            ),
        };
        let count = self.seen.entry((finding.id.clone(), ev.pid, site)).or_insert(0);
        *count += 1;
        let count = *count;
        let style = match finding.severity {
            Severity::Error => ERROR,
            Severity::Warning => WARN,
            Severity::Info => INFO,
        };
        if count > 1 {
            // A reminder on the first repeat, then at every power of ten.
            if count == 2 || is_power_of_ten(count) {
                self.line.push_str("\n    ");
                self.styled(DIM, &format!("{} again: {count} times on this call site", finding.id));
            }
            return;
        }
        self.line.push_str("\n    ");
        self.styled(style, &format!("{} ({})", finding.id, finding.severity));
        let _ = write!(self.line, " {}", finding.title);
        if let Some(detail) = &finding.detail {
            let _ = write!(self.line, "\n      {detail}");
        }
        let _ = write!(self.line, "\n      fix: {}", finding.fix);
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
        let how = match (exit.code, &exit.signal) {
            (Some(code), _) => format!("exited with {code}"),
            (None, Some(signal)) if exit.core_dumped => format!("killed by {signal} (core dumped)"),
            (None, Some(signal)) => format!("killed by {signal}"),
            (None, None) => "exited".to_owned(),
        };
        let text = format!("{}[{}] +++ {how} +++", exit.comm, exit.pid);
        self.styled(DIM, &text);
    }

    /// `5<TCP:?->127.0.0.1:9> +++ socket error ECONNREFUSED (Connection refused) +++`, then
    /// the findings of the failed connect.
    fn socket_error(&mut self, error: &SocketError) {
        self.time(error.ts);
        self.styled_fmt(DIM, format_args!("{}[{}/{}]", error.comm, error.pid, error.tid));
        let _ = write!(self.line, " {}", error.fd);
        if let Some(sock) = &error.sock {
            let _ = write!(self.line, "<{}>", sock_tag(sock));
        }
        self.line.push(' ');
        let (name, message) = (error.error.name(), error.error.message());
        self.styled_fmt(ERROR, format_args!("+++ socket error {name} ({message}) +++"));
        if !error.anomalies.is_empty() {
            let connect = error.as_failed_connect();
            for finding in &error.anomalies {
                self.finding(&connect, finding);
            }
        }
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
            RecordRef::SocketError(error) => self.socket_error(error),
            RecordRef::Blocked(b) => self.blocked(b),
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A duration in nanoseconds, displayed `31us`, `850ns`, `1.25ms`, `3.00s`.
pub struct Duration(pub u64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        match ns {
            0..1_000 => write!(f, "{ns}ns"),
            1_000..1_000_000 => write!(f, "{}us", ns / 1_000),
            1_000_000..1_000_000_000 => write!(f, "{:.2}ms", ns as f64 / 1e6),
            _ => write!(f, "{:.2}s", ns as f64 / 1e9),
        }
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

fn returns_fd(syscall: Syscall) -> bool {
    matches!(syscall, Syscall::Socket | Syscall::Accept | Syscall::Accept4)
}

/// What an fd is, strace -yy style: `TCP:127.0.0.1:5555->127.0.0.1:8080`, `UNIX:/tmp/app.sock`.
pub fn sock_tag(sock: &SocketInfo) -> String {
    let v6 = sock.family == "AF_INET6";
    let mut tag = match (sock.family.as_str(), sock.sock_type.as_deref()) {
        ("AF_INET" | "AF_INET6", Some("SOCK_STREAM")) => {
            if v6 { "TCPv6" } else { "TCP" }.to_owned()
        }
        ("AF_INET" | "AF_INET6", Some("SOCK_DGRAM")) => if v6 { "UDPv6" } else { "UDP" }.to_owned(),
        (family, _) => family.trim_start_matches("AF_").to_owned(),
    };
    // Unnamed unix sockets (socketpair ends, a client's end) are told apart by inode.
    let unnamed = |a: &Option<SockAddr>| match a {
        None => true,
        Some(SockAddr::Known(KnownAddr::Unix(u))) => u.path.is_none() && u.abstract_name.is_none(),
        Some(_) => false,
    };
    if let (Some(inode), "AF_UNIX") = (sock.inode, sock.family.as_str())
        && unnamed(&sock.local)
        && unnamed(&sock.peer)
    {
        match sock.peer_inode {
            Some(peer) => {
                let _ = write!(tag, ":[{inode}->{peer}]");
            }
            None => {
                let _ = write!(tag, ":[{inode}]");
            }
        }
        return tag;
    }
    let endpoints: Vec<String> = [&sock.local, &sock.peer]
        .into_iter()
        .map(|a| a.as_ref().map_or_else(|| "?".into(), render_endpoint))
        .collect();
    match (&sock.local, &sock.peer) {
        (_, Some(_)) => {
            let _ = write!(tag, ":{}->{}", endpoints[0], endpoints[1]);
        }
        (Some(_), None) => {
            let _ = write!(tag, ":{}", endpoints[0]);
        }
        (None, None) => {}
    }
    tag
}

/// An address without its family: `127.0.0.1:8080`, `[::1]:53`, `/tmp/s.sock`, `@name`.
pub fn render_endpoint(addr: &SockAddr) -> String {
    match addr {
        SockAddr::Known(KnownAddr::Inet { ip, port }) => format!("{ip}:{port}"),
        SockAddr::Known(KnownAddr::Inet6 { ip, port, .. }) => format!("[{ip}]:{port}"),
        SockAddr::Known(KnownAddr::Unix(unix)) => match (&unix.path, &unix.abstract_name) {
            (Some(path), _) => path.clone(),
            (None, Some(name)) => format!("@{name}"),
            (None, None) => String::new(),
        },
        other => render_addr(other),
    }
}

/// The argument list, in the syscall's own order, as strace shows it.
pub fn render_args(ev: &Event) -> String {
    let a = &ev.args;
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "?".into());
    let fd = match (a.fd, &ev.sock) {
        (Some(fd), Some(sock)) if !returns_fd(ev.syscall) => format!("{fd}<{}>", sock_tag(sock)),
        (Some(fd), _) => fd.to_string(),
        (None, _) => "?".into(),
    };
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
                match (a.fds, &ev.sock) {
                    // The event describes the first end; the second is its mirror.
                    (Some([x, y]), Some(first)) if first.peer_inode.is_some() => {
                        let second = SocketInfo {
                            inode: first.peer_inode,
                            peer_inode: first.inode,
                            ..first.clone()
                        };
                        let _ =
                            write!(s, ", [{x}<{}>, {y}<{}>]", sock_tag(first), sock_tag(&second));
                    }
                    (Some([x, y]), _) => {
                        let _ = write!(s, ", [{x}, {y}]");
                    }
                    (None, _) => s.push_str(", ?"),
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
            // -1 is the wildcard of both, as strace names it.
            let any =
                |n: u32, name: &str| if n == u32::MAX { name.to_owned() } else { n.to_string() };
            let (cid, port) = (any(*cid, "VMADDR_CID_ANY"), any(*port, "VMADDR_PORT_ANY"));
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
    for part in [&sock.sock_type, &sock.protocol].into_iter().flatten() {
        s.push(' ');
        s.push_str(part);
    }
    if let Some(state) = sock.state {
        s.push(' ');
        s.push_str(&state.to_string());
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
    use crate::decode::state::SockState;

    fn event(syscall: Syscall, args: Args, ret: i64) -> Event {
        Event::for_test(syscall, args, ret)
    }

    fn line(ev: &Event) -> String {
        let mut sink = TextSink::new(Vec::new(), false, Some(1));
        sink.tz = FixedOffset::east_opt(0).unwrap();
        sink.write(RecordRef::Event(ev)).unwrap();
        String::from_utf8(sink.out).unwrap()
    }

    #[test]
    fn blocked_calls_say_for_how_long() {
        let lo = SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 9999 });
        let args =
            Args { fd: Some(5), addr: Some(lo.clone()), addrlen: Some(16), ..Args::default() };
        let sock = SocketInfo {
            fd: Some(5),
            family: "AF_INET".into(),
            sock_type: Some("SOCK_STREAM".into()),
            peer: Some(lo),
            ..SocketInfo::default()
        };
        let ev = Event { sock: Some(sock), ..event(Syscall::Connect, args, 0) };
        let mut b = Blocked::for_test(ev, 2_040_000_000);
        let text = |b: &Blocked| {
            let mut sink = TextSink::new(Vec::new(), false, Some(1));
            sink.tz = FixedOffset::east_opt(0).unwrap();
            sink.write(RecordRef::Blocked(b)).unwrap();
            String::from_utf8(sink.out).unwrap()
        };
        assert_eq!(
            text(&b),
            "00:00:00.104512 server[4242/4251] connect(5<TCP:?->127.0.0.1:9999>, {AF_INET, 127.0.0.1:9999}, 16) ... blocked for 2.0s\n"
        );
        b.nonblocking = true;
        assert!(text(&b).ends_with("blocked for 2.0s (non-blocking: still connecting)\n"));
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

    /// A socket error: the fd as strace -yy shows it, the error, the connect's finding.
    #[test]
    fn socket_errors_read_like_strace_signals() {
        let ev = event(Syscall::Connect, Args::default(), 0);
        let error = SocketError {
            ts: ev.ts,
            ts_ns: 2,
            pid: 4242,
            tid: 4251,
            comm: "client".into(),
            fd: 5,
            sock: None,
            error: crate::decode::errno::Errno(111),
            connect: None,
            ns: None,
            anomalies: Vec::new(),
        };
        let mut sink = TextSink::new(Vec::new(), false, Some(1));
        sink.tz = FixedOffset::east_opt(0).unwrap();
        sink.write(RecordRef::SocketError(&error)).unwrap();
        assert_eq!(
            String::from_utf8(sink.out).unwrap(),
            "00:00:00.104512 client[4242/4251] 5 +++ socket error ECONNREFUSED (Connection refused) +++\n"
        );
    }

    #[test]
    fn async_connect_failure_shows_the_destination() {
        let args = Args {
            fd: Some(5),
            level: Some("SOL_SOCKET".into()),
            optname: Some("SO_ERROR".into()),
            optlen: Some(4),
            value: Some(OptValue::Name("ECONNREFUSED".into())),
            ..Args::default()
        };
        let dest = SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 18080 });
        let mut ev = event(Syscall::Getsockopt, args, 0);
        ev.sock = Some(SocketInfo {
            fd: Some(5),
            family: "AF_INET".into(),
            sock_type: Some("SOCK_STREAM".into()),
            peer: Some(dest.clone()),
            ..SocketInfo::default()
        });
        ev.async_error = Some(crate::decode::errno::Errno(111));
        ev.connect = Some(crate::event::PendingConnect { addr: dest, started_ns: 0 });
        assert!(
            line(&ev).contains(
                "getsockopt(5<TCP:?->127.0.0.1:18080>, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0 (connect to 127.0.0.1:18080 failed: ECONNREFUSED) <31us>"
            ),
            "{}",
            line(&ev)
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
    fn refused_calls_say_by_what() {
        let args = Args {
            fd: Some(3),
            addr: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 8080 })),
            addrlen: Some(16),
            ..Args::default()
        };
        let mut ev = event(Syscall::Bind, args, -98);
        ev.refused_by = Some(RefusedBy::Seccomp);
        ev.duration_ns = None;
        assert!(line(&ev).ends_with(
            "bind(3, {AF_INET, 127.0.0.1:8080}, 16) = -1 EADDRINUSE (Address already in use) <refused by seccomp>\n"
        ));
        ev.refused_by = Some(RefusedBy::Unknown);
        ev.args = Args::default();
        assert!(line(&ev).ends_with("bind(<arguments unknown>) = -1 EADDRINUSE (Address already in use) <refused before entry>\n"));
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
    fn fds_say_what_they_are() {
        let unix = SocketInfo {
            fd: Some(5),
            family: "AF_UNIX".into(),
            sock_type: Some("SOCK_STREAM".into()),
            local: Some(SockAddr::Known(KnownAddr::Unix(crate::event::UnixAddr {
                path: Some("/tmp/app.sock".into()),
                abstract_name: None,
            }))),
            ..SocketInfo::default()
        };
        let mut ev = event(Syscall::Getsockopt, Args { fd: Some(5), ..Args::default() }, 0);
        ev.sock = Some(unix);
        assert!(line(&ev).contains("getsockopt(5<UNIX:/tmp/app.sock>, ?, ?"), "{}", line(&ev));

        let tcp = SocketInfo {
            fd: Some(4),
            family: "AF_INET".into(),
            sock_type: Some("SOCK_STREAM".into()),
            local: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 80 })),
            peer: Some(SockAddr::Known(KnownAddr::Inet { ip: [127, 0, 0, 1].into(), port: 5555 })),
            ..SocketInfo::default()
        };
        let mut ev = event(Syscall::Accept4, Args { fd: Some(3), ..Args::default() }, 4);
        ev.sock = Some(tcp);
        assert!(
            line(&ev).contains(") = 4<TCP:127.0.0.1:80->127.0.0.1:5555> <31us>"),
            "{}",
            line(&ev)
        );
    }

    #[test]
    fn snapshots_list_their_sockets() {
        let listener = SocketInfo {
            fd: Some(3),
            family: "AF_INET".into(),
            sock_type: Some("SOCK_STREAM".into()),
            state: Some(SockState::Listen),
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
        let mut sink = TextSink::new(Vec::new(), false, Some(1));
        sink.tz = FixedOffset::east_opt(0).unwrap();
        sink.write(RecordRef::Snapshot(&snap)).unwrap();
        assert_eq!(
            String::from_utf8(sink.out).unwrap(),
            "00:00:00.000000 nginx[7] +++ holds 1 socket +++\n    fd 3 AF_INET SOCK_STREAM LISTEN {AF_INET, 127.0.0.1:80} inode=99\n"
        );
    }

    #[test]
    fn other_network_namespaces_are_marked() {
        let mut ev = event(Syscall::Close, Args { fd: Some(3), ..Args::default() }, 0);
        ev.ns = Some(crate::event::Namespaces { net: 4026532561, ..Default::default() });
        assert!(
            line(&ev).contains("server[4242/4251] [netns 4026532561] close(3)"),
            "{}",
            line(&ev)
        );
        ev.ns = Some(crate::event::Namespaces { net: 1, ..Default::default() });
        assert!(!line(&ev).contains("netns"));
    }

    #[test]
    fn vsock_wildcards_are_named() {
        let any = SockAddr::Known(KnownAddr::Vsock { cid: u32::MAX, port: u32::MAX });
        assert_eq!(render_addr(&any), "{AF_VSOCK, cid=VMADDR_CID_ANY, port=VMADDR_PORT_ANY}");
        let host = SockAddr::Known(KnownAddr::Vsock { cid: 2, port: 5000 });
        assert_eq!(render_addr(&host), "{AF_VSOCK, cid=2, port=5000}");
    }

    #[test]
    fn latencies() {
        assert_eq!(Duration(850).to_string(), "850ns");
        assert_eq!(Duration(31_400).to_string(), "31us");
        assert_eq!(Duration(1_250_000).to_string(), "1.25ms");
        assert_eq!(Duration(3_000_000_000).to_string(), "3.00s");
    }

    #[test]
    fn colour_only_when_asked() {
        let ev = event(Syscall::Close, Args { fd: Some(3), ..Args::default() }, -9);
        let mut sink = TextSink::new(Vec::new(), true, Some(1));
        sink.write(RecordRef::Event(&ev)).unwrap();
        assert!(String::from_utf8(sink.out).unwrap().contains("\u{1b}["));
        assert!(!line(&ev).contains('\u{1b}'));
    }
}
