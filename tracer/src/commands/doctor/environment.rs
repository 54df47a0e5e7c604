//! Verdicts on the machine, WSL and DNS, from the facts alone (no I/O here).

use super::report::Check;
use crate::facts::{
    Facts,
    dns::{Dns, NameserverKind},
    machine::Machine,
    wsl::{NetworkingMode, Wsl, WslKind},
    wsl_network::{NetworkView, PortTracker},
};

pub fn checks(facts: &Facts) -> Vec<Check> {
    let mut out = machine(&facts.machine);
    out.extend(wsl(&facts.wsl, &facts.dns));
    out.extend(dns(&facts.dns, &facts.wsl));
    out
}

fn machine(m: &Machine) -> Vec<Check> {
    let mut out = vec![Check::ok("machine.kernel", format!("kernel {}", m.kernel_release))];
    out.push(if m.btf {
        Check::ok("machine.btf", "BTF: /sys/kernel/btf/vmlinux")
    } else {
        Check::warn(
            "machine.btf",
            "no /sys/kernel/btf/vmlinux: close() is traced for every fd and namespaces are read from /proc after the fact",
            "run a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        )
    });
    let root = m.privileges.has("CAP_SYS_ADMIN");
    out.push(match (&m.tracefs.mounted_at, m.tracefs.supported) {
        (Some(at), _) => Check::ok("machine.tracefs", format!("tracefs mounted at {at}")),
        (None, true) if root => Check::ok(
            "machine.tracefs",
            "tracefs not mounted: wsltrace mounts it at /sys/kernel/tracing when it starts",
        ),
        (None, true) => Check::warn(
            "machine.tracefs",
            "tracefs not mounted, and mounting it needs root",
            "run wsltrace with sudo (it mounts tracefs itself), or `sudo mount -t tracefs tracefs /sys/kernel/tracing`",
        ),
        (None, false) => Check::fail(
            "machine.tracefs",
            "this kernel has no tracefs: syscall tracepoints cannot be attached",
            "run a kernel built with CONFIG_FTRACE=y and CONFIG_FTRACE_SYSCALLS=y",
        ),
    });
    match m.syscall_tracepoints {
        Some(false) => out.push(Check::fail(
            "machine.syscall_tracepoints",
            "no syscalls:sys_enter_* tracepoints (CONFIG_FTRACE_SYSCALLS is off)",
            "run a kernel built with CONFIG_FTRACE_SYSCALLS=y",
        )),
        None if m.tracefs.mounted_at.is_some() => out.push(Check::warn(
            "machine.syscall_tracepoints",
            "syscall tracepoints not checked: tracefs can be read by root only",
            "run `sudo wsltrace doctor`",
        )),
        Some(true) | None => {}
    }
    let caps = if m.privileges.capabilities.is_empty() {
        "no relevant capabilities".to_owned()
    } else {
        m.privileges.capabilities.join(", ")
    };
    let who = if m.privileges.euid == 0 {
        "root".to_owned()
    } else {
        format!("uid {}", m.privileges.euid)
    };
    out.push(if m.privileges.can_trace() {
        Check::ok("machine.privileges", format!("{who} ({caps})"))
    } else {
        Check::fail(
            "machine.privileges",
            format!("{who} ({caps}): cannot load eBPF programs (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"),
            "run wsltrace with sudo",
        )
    });
    let types = &m.program_types;
    let named = [
        ("tracepoint", types.tracepoint),
        ("cgroup sock_addr", types.cgroup_sock_addr),
        ("cgroup sockopt", types.cgroup_sockopt),
    ];
    let missing: Vec<&str> =
        named.iter().filter(|(_, ok)| *ok == Some(false)).map(|(n, _)| *n).collect();
    out.push(if named.iter().all(|(_, ok)| ok.is_none()) {
        Check::warn(
            "machine.program_types",
            "eBPF program types not probed (probing needs the same privileges as tracing)",
            "run `sudo wsltrace doctor`",
        )
    } else if types.tracepoint == Some(false) {
        Check::fail(
            "machine.program_types",
            "the kernel refuses tracepoint programs: wsltrace cannot trace here",
            "run a kernel built with CONFIG_BPF_SYSCALL=y and CONFIG_BPF_EVENTS=y",
        )
    } else if !missing.is_empty() {
        Check::warn(
            "machine.program_types",
            format!("tracepoint programs load, {} programs do not: WSL2 quirks cannot be reproduced here", missing.join(" and ")),
            "run a kernel built with CONFIG_CGROUP_BPF=y",
        )
    } else {
        Check::ok("machine.program_types", "tracepoint, cgroup sock_addr and cgroup sockopt programs load")
    });
    out.extend(emulate(m));
    if let Some(start) = m.ip_unprivileged_port_start {
        out.push(Check::ok(
            "machine.unprivileged_ports",
            format!("ports below {start} need CAP_NET_BIND_SERVICE (net.ipv4.ip_unprivileged_port_start, this network namespace)"),
        ));
    }
    out.push(match &m.cgroup2 {
        Some(at) => Check::ok("machine.cgroup2", format!("cgroup v2 at {at}")),
        None => Check::warn(
            "machine.cgroup2",
            "no cgroup v2 mount: cgroup socket programs have nothing to attach to",
            "mount it: `sudo mount -t cgroup2 none /sys/fs/cgroup` (or /sys/fs/cgroup/unified on hybrid systems)",
        ),
    });
    out
}

/// Which quirks `wsltrace emulate` can run on this kernel (what `emulate` itself checks).
fn emulate(m: &Machine) -> Option<Check> {
    let types = &m.program_types;
    if types.cgroup_sock_addr == Some(false) || types.cgroup_sockopt == Some(false) {
        return None; // machine.program_types says it
    }
    let missing = types.emulate_missing.as_ref()?;
    if missing.is_empty() {
        return Some(Check::ok(
            "machine.emulate",
            "emulate: every quirk runs (this kernel gives its programs every helper they call)",
        ));
    }
    let since = missing.iter().filter_map(|m| m.since.as_deref()).max();
    Some(Check::warn(
        "machine.emulate",
        format!(
            "emulate: this kernel ({}) cannot run {}: `wsltrace emulate` refuses them with this reason",
            m.kernel_release,
            crate::emulate::features::describe(missing)
        ),
        match since {
            Some(since) => {
                format!("emulate them on Linux {since} or newer; the other quirks run here")
            }
            None => "emulate them on a newer kernel; the other quirks run here".to_owned(),
        },
    ))
}

fn wsl(w: &Wsl, dns: &Dns) -> Vec<Check> {
    let evidence = w.evidence.join(", ");
    let mut out = vec![match w.kind {
        WslKind::None => {
            return vec![Check::ok(
                "wsl.kind",
                "not WSL (no Microsoft kernel, WSLInterop, WSL_DISTRO_NAME or /run/WSL): WSL checks skipped",
            )];
        }
        WslKind::Wsl1 => Check::fail(
            "wsl.kind",
            format!(
                "WSL1 ({evidence}): there is no Linux kernel, so no eBPF and none of WSL2's networking"
            ),
            "convert the distribution from Windows: `wsl --set-version <distro> 2`",
        ),
        WslKind::Wsl2 => Check::ok("wsl.kind", format!("WSL2 ({evidence})")),
    }];
    if w.kind == WslKind::Wsl2 {
        out.extend(network(w));
    }
    let conf = &w.conf;
    let mut settings = Vec::new();
    if let Some(v) = conf.generate_resolv_conf {
        settings.push(format!("generateResolvConf={v}"));
    }
    if let Some(v) = conf.generate_hosts {
        settings.push(format!("generateHosts={v}"));
    }
    if let Some(v) = conf.systemd {
        settings.push(format!("systemd={v}"));
    }
    let described = if !conf.present {
        "no /etc/wsl.conf (WSL's defaults)".to_owned()
    } else if settings.is_empty() {
        "/etc/wsl.conf sets nothing that changes networking".to_owned()
    } else {
        format!("/etc/wsl.conf: {}", settings.join(", "))
    };
    out.push(if conf.generate_resolv_conf == Some(false) && dns.generated_by_wsl {
        Check::warn(
            "wsl.conf",
            format!("{described}, yet /etc/resolv.conf is one WSL generated earlier: its nameserver is frozen (in NAT mode the gateway address changes when WSL restarts)"),
            "write your own nameservers into /etc/resolv.conf, or set generateResolvConf=true and run `wsl --shutdown`",
        )
    } else {
        Check::ok("wsl.conf", described)
    });
    out
}

/// The networking mode, the port tracker and DNS tunnelling, each with the facts behind it.
fn network(w: &Wsl) -> Vec<Check> {
    // Facts from before the detection kept its evidence (a recording): the mode alone.
    let view = w.network.clone().unwrap_or_else(|| NetworkView {
        mode: w.networking_mode,
        mode_evidence: w.networking_mode_source.clone().into_iter().collect(),
        ..NetworkView::default()
    });
    let from = |evidence: &[String]| evidence.join("; ");
    let facts = from(&view.mode_evidence);
    let mut out = vec![match view.mode {
        Some(NetworkingMode::Nat) => Check::ok(
            "wsl.networking",
            format!(
                "NAT networking (from: {facts}): Windows reaches Linux TCP servers on 0.0.0.0/127.0.0.1 at its 127.0.0.1 and on ::/::1 at its [::1] through WSL's relay; UDP and other addresses are not relayed"
            ),
        ),
        Some(NetworkingMode::Bridged) => Check::ok(
            "wsl.networking",
            format!("bridged networking (from: {facts}): Linux has its own address on the LAN"),
        ),
        Some(NetworkingMode::Mirrored) => Check::ok(
            "wsl.networking",
            format!(
                "mirrored networking (from: {facts}): Linux shares Windows's addresses; bind() and listen() reserve the port on Windows"
            ),
        ),
        Some(NetworkingMode::Consomme | NetworkingMode::VirtioProxy) => Check::ok(
            "wsl.networking",
            format!(
                "consomme networking (from: {facts}): Windows' network stack carries the traffic; bind() and listen() reserve the port on Windows"
            ),
        ),
        Some(NetworkingMode::None) => Check::fail(
            "wsl.networking",
            format!("networking is off (from: {facts})"),
            "set networkingMode=nat (or mirrored) under [wsl2] in %UserProfile%\\.wslconfig, then run `wsl --shutdown`",
        ),
        None => Check::warn(
            "wsl.networking",
            format!("networking mode unknown (seen: {facts})"),
            "update WSL (`wsl --update` in Windows) to get `wslinfo --networking-mode`, or look at networkingMode in %UserProfile%\\.wslconfig",
        ),
    }];
    let tracker = from(&view.port_tracker_evidence);
    let mirrored = matches!(view.mode, Some(NetworkingMode::Mirrored | NetworkingMode::Consomme));
    out.push(match (view.port_tracker, mirrored) {
        (PortTracker::Seccomp, _) => Check::ok(
            "wsl.port_tracker",
            format!("port tracker present ({tracker}): every bind() and listen() waits for Windows; a port Windows holds fails with EADDRINUSE, and ENOSYS means the tracker is gone"),
        ),
        (PortTracker::NoFilter, true) => Check::warn(
            "wsl.port_tracker",
            format!("no port tracker ({tracker}) although the mode reserves ports on Windows: binds are not reserved, Windows may take the same ports"),
            "restart WSL (`wsl --shutdown` in Windows)",
        ),
        (PortTracker::NoFilter, false) => Check::ok(
            "wsl.port_tracker",
            format!("no seccomp port tracker ({tracker}): bind() and listen() are the kernel's alone; NAT's localhost relay runs in WSL's own namespace, out of sight"),
        ),
        (PortTracker::Unknown, _) => Check::ok(
            "wsl.port_tracker",
            format!("port tracker unknown ({tracker})"),
        ),
    });
    let tunnel = from(&view.dns_tunneling_evidence);
    let frozen = w.conf.generate_resolv_conf == Some(false);
    out.push(match view.dns_tunneling {
        Some(true) if frozen => Check::warn(
            "wsl.dns_tunneling",
            format!("DNS tunnelling on ({tunnel}) with generateResolvConf=false in /etc/wsl.conf: a known breakage (microsoft/WSL#12310), lookups fail or time out"),
            "set generateResolvConf=true under [network] in /etc/wsl.conf (or dnsTunneling=false under [wsl2] in %UserProfile%\\.wslconfig), then `wsl --shutdown`",
        ),
        Some(true) => Check::ok(
            "wsl.dns_tunneling",
            format!("DNS tunnelling on ({tunnel}): Windows resolves names; a failed lookup is dropped (clients time out, never SERVFAIL)"),
        ),
        Some(false) => Check::ok("wsl.dns_tunneling", format!("DNS tunnelling off ({tunnel})")),
        None => Check::ok("wsl.dns_tunneling", format!("DNS tunnelling unknown ({tunnel})")),
    });
    out
}

fn dns(d: &Dns, w: &Wsl) -> Vec<Check> {
    let on_wsl = w.kind != WslKind::None;
    let regenerate = "set generateResolvConf=true under [network] in /etc/wsl.conf and run `wsl --shutdown` in Windows";
    if !d.resolv_conf || d.nameservers.is_empty() {
        let what = if d.resolv_conf {
            "/etc/resolv.conf has no nameserver line".to_owned()
        } else {
            match &d.symlink_target {
                Some(target) => {
                    format!("/etc/resolv.conf is a link to {target}, which cannot be read")
                }
                None => "/etc/resolv.conf cannot be read".to_owned(),
            }
        };
        let fix =
            if on_wsl { regenerate } else { "add a `nameserver ADDRESS` line to /etc/resolv.conf" };
        return vec![Check::fail("dns.resolv_conf", format!("{what}: name lookups fail"), fix)];
    }
    let origin = match (&d.symlink_target, d.generated_by_wsl) {
        (_, true) => "generated by WSL".to_owned(),
        (Some(target), false) => format!("a link to {target}"),
        (None, false) => "written by hand or by a network manager".to_owned(),
    };
    let mut out = vec![Check::ok("dns.resolv_conf", format!("/etc/resolv.conf: {origin}"))];
    for ns in &d.nameservers {
        let ip = ns.ip;
        out.push(match (ns.kind, ns.listening) {
            (NameserverKind::Remote, _) | (_, None) => {
                Check::ok("dns.nameserver", format!("nameserver {ip} (remote: not probed)"))
            }
            (kind, Some(true)) => {
                Check::ok("dns.nameserver", format!("nameserver {ip} ({}): something listens on port 53", describe(kind)))
            }
            (NameserverKind::ResolvedStub, Some(false)) => Check::fail(
                "dns.nameserver",
                format!("nameserver {ip} is systemd-resolved's stub, but nothing listens on {ip}:53: systemd-resolved is not running"),
                if on_wsl {
                    "start it (`sudo systemctl start systemd-resolved`; WSL needs systemd=true under [boot] in /etc/wsl.conf), or let WSL write /etc/resolv.conf again"
                } else {
                    "start it (`sudo systemctl start systemd-resolved`) or point /etc/resolv.conf at another nameserver"
                },
            ),
            (NameserverKind::WslTunnel, Some(false)) if w.kind == WslKind::Wsl2 => Check::warn(
                "dns.nameserver",
                format!("nameserver {ip} is WSL's DNS tunnel, but no socket is bound to {ip}:53 in this network namespace"),
                "restart WSL (`wsl --shutdown` in Windows); if lookups still fail, set dnsTunneling=false under [wsl2] in %UserProfile%\\.wslconfig",
            ),
            (NameserverKind::WslTunnel, Some(false)) => Check::fail(
                "dns.nameserver",
                format!("nameserver {ip} is WSL's DNS tunnel address, and this is not WSL2: nothing answers there"),
                "replace it with a real nameserver in /etc/resolv.conf",
            ),
            (_, Some(false)) => Check::fail(
                "dns.nameserver",
                format!("nameserver {ip} is on this machine, but nothing listens on {ip}:53"),
                "start the local resolver (dnsmasq, unbound...) or point /etc/resolv.conf at another nameserver",
            ),
        });
    }
    out
}

fn describe(kind: NameserverKind) -> &'static str {
    match kind {
        NameserverKind::ResolvedStub => "systemd-resolved stub",
        NameserverKind::WslTunnel => "WSL DNS tunnel",
        NameserverKind::Local => "local resolver",
        NameserverKind::Remote => "remote",
    }
}

#[cfg(test)]
mod tests;
