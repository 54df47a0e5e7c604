//! `wsltrace doctor [--pid PID]`: where the user stands, one verdict per line with a fix for
//! every warn/fail: the machine, WSL, DNS and, with `--pid`, the process's namespaces, its
//! sockets and the listeners others cannot reach. Read-only: nothing is mounted or changed.

pub mod args;
mod environment;
mod findings;
mod render;
pub mod report;

use std::{
    collections::BTreeMap,
    io::{self, Write as _},
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::ExitCode,
};

use anyhow::{Context as _, Result};

use self::{
    args::DoctorArgs,
    findings::Mount,
    report::{Check, Process, Report, Verdict},
};
use crate::{
    event::{KnownAddr, SockAddr},
    facts::{self, machine, namespaces as ns, sockets},
    sinks::args::Format,
};

pub fn run(args: DoctorArgs) -> Result<ExitCode> {
    let mut facts = facts::gather();
    machine::probe_emulation(&mut facts.machine);
    let mut checks = environment::checks(&facts);
    let process = match args.pid {
        Some(pid) => {
            let (process, mounts) = examine(pid)?;
            checks.extend(process_checks(&process, &mounts));
            Some(process)
        }
        None => None,
    };
    let report = Report { facts, checks, process };
    let mut stdout = io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, &report)?;
            writeln!(stdout)?;
        }
        Format::Text => {
            let color = args.color.on_stdout();
            stdout.write_all(render::text(&report, color).as_bytes())?;
        }
    }
    stdout.flush()?;
    Ok(if report.count(Verdict::Fail) > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The checks about one process: its namespaces, its sockets, then the findings.
fn process_checks(p: &Process, mounts: &BTreeMap<String, Mount>) -> Vec<Check> {
    let mut out = vec![namespaces(p)];
    let listening = findings::listeners(&p.sockets).len();
    out.push(Check::ok(
        "process.sockets",
        format!("{} sockets, {listening} listening", p.sockets.len()),
    ));
    out.extend(findings::checks(p, mounts));
    out
}

fn namespaces(p: &Process) -> Check {
    let Some(initial) = &p.initial_ns else {
        return Check::warn(
            "process.namespaces",
            "cannot read /proc/1/ns (nor kthreadd's) to compare the process's namespaces with the initial ones",
            "run wsltrace doctor as root, in the host's pid namespace",
        );
    };
    let private: Vec<String> =
        p.ns.iter()
            .filter(|(kind, inode)| initial.get(*kind).is_some_and(|i| i != *inode))
            .map(|(kind, inode)| format!("{kind} {inode}"))
            .collect();
    let from = p.initial_ns_from.as_deref().unwrap_or("?");
    if private.is_empty() {
        Check::ok(
            "process.namespaces",
            format!("all namespaces are the initial ones (from {from})"),
        )
    } else {
        Check::ok(
            "process.namespaces",
            format!("private namespaces: {} (initial ones from {from})", private.join(", ")),
        )
    }
}

/// Reads what the findings need about `pid`.
fn examine(pid: u32) -> Result<(Process, BTreeMap<String, Mount>)> {
    let proc = procfs::process::Process::new(pid as i32)
        .with_context(|| format!("no process {pid}: check the pid (`pgrep -a NAME`)"))?;
    let status = proc
        .status()
        .with_context(|| format!("cannot read /proc/{pid}/status: run wsltrace as root"))?;
    let ns = namespace_ids(pid)
        .with_context(|| format!("cannot read /proc/{pid}/ns: run wsltrace as root"))?;
    let sockets = sockets::snapshot(pid)?;
    let ip_unprivileged_port_start = sockets::Netns::of_pid(pid)
        .and_then(|netns| {
            // /proc/sys/net shows the namespace of the thread that opens it.
            netns.run(|| {
                Ok(std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                    .ok()
                    .and_then(|t| machine::parse_number(&t)))
            })
        })
        .unwrap_or_else(|err| {
            tracing::debug!("ip_unprivileged_port_start of {pid}: {err:#}");
            None
        });
    let mounts = unix_path_mounts(pid, &sockets);
    let initial = ns::initial_links().map(|(links, from)| {
        let links: BTreeMap<String, u64> =
            links.into_iter().map(|(kind, inode)| (kind, u64::from(inode))).collect();
        (links, from.to_owned())
    });
    let process = Process {
        pid,
        comm: status.name,
        ns,
        initial_ns: initial.as_ref().map(|(ns, _)| ns.clone()),
        initial_ns_from: initial.map(|(_, from)| from),
        capabilities: machine::capability_names(status.capeff),
        net_bind_service: machine::has_net_bind_service(status.capeff),
        ip_unprivileged_port_start,
        sockets,
    };
    Ok((process, mounts))
}

/// `/proc/PID/ns/*` as type -> inode.
fn namespace_ids(pid: u32) -> Result<BTreeMap<String, u64>> {
    Ok(ns::links(pid)?.into_iter().map(|(kind, inode)| (kind, u64::from(inode))).collect())
}

/// The mount each unix socket path of the process is on, as the process sees it: the path is
/// looked up under /proc/PID/root and matched to its mountinfo by device number, falling back
/// to the longest mount point (when the file is gone or the path is relative).
fn unix_path_mounts(pid: u32, sockets: &[crate::event::SocketInfo]) -> BTreeMap<String, Mount> {
    let Ok(infos) = procfs::process::Process::new(pid as i32).and_then(|p| p.mountinfo()) else {
        return BTreeMap::new();
    };
    let mounts: Vec<(String, Mount)> = infos
        .0
        .into_iter()
        .map(|m| {
            let mount = Mount {
                mount_point: m.mount_point.display().to_string(),
                fs_type: m.fs_type,
                source: m.mount_source.unwrap_or_default(),
            };
            (m.majmin, mount)
        })
        .collect();
    let plain: Vec<Mount> = mounts.iter().map(|(_, m)| m.clone()).collect();
    let mut out = BTreeMap::new();
    for s in sockets {
        let Some(SockAddr::Known(KnownAddr::Unix(unix))) = &s.local else { continue };
        let Some(path) = &unix.path else { continue };
        let absolute = if path.starts_with('/') {
            path.clone()
        } else {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            cwd.join(path).display().to_string()
        };
        let by_device = std::fs::metadata(
            Path::new(&format!("/proc/{pid}/root")).join(absolute.trim_start_matches('/')),
        )
        .ok()
        .and_then(|meta| {
            let dev = meta.dev();
            let majmin = format!("{}:{}", nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
            let same_device: Vec<Mount> =
                mounts.iter().filter(|(mm, _)| *mm == majmin).map(|(_, m)| m.clone()).collect();
            findings::mount_for_path(&absolute, &same_device).cloned()
        });
        if let Some(mount) =
            by_device.or_else(|| findings::mount_for_path(&absolute, &plain).cloned())
        {
            out.insert(path.clone(), mount);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_links() {
        let own = namespace_ids(std::process::id()).unwrap();
        assert!(own.contains_key("net") && own.contains_key("mnt"));
    }

    /// A socket file on this machine's root filesystem resolves to the mount it is on.
    #[test]
    fn unix_paths_resolve_to_their_mount() {
        let dir = std::env::temp_dir().join(format!("wsltrace-doctor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let snapshot = sockets::snapshot(std::process::id()).unwrap();
        let mounts = unix_path_mounts(std::process::id(), &snapshot);
        let mount = &mounts[&path.display().to_string()];
        let expected = std::process::Command::new("findmnt")
            .args(["-n", "-o", "TARGET,FSTYPE", "--target"])
            .arg(&path)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            });
        if let Ok(expected) = expected
            && expected.len() == 2
        {
            assert_eq!(
                [mount.mount_point.clone(), mount.fs_type.clone()],
                [expected[0].clone(), expected[1].clone()]
            );
        }
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
