//! One emulated run: the cgroup, the programs attached to it, the seccomp supervisor, and
//! the clean-up. Shared by `wsltrace emulate` and `wsltrace --emulate`.

use std::os::unix::fs::MetadataExt as _;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, CgroupSockopt},
};
use tracer_common::emulate::{
    Caller, EmulateConfig, MAP_EMULATE_CONFIG, MAP_EMULATE_HITS, PROG_BIND4, PROG_BIND6,
    PROG_CONNECT4, PROG_CONNECT6, PROG_GETSOCKOPT, PROG_INGRESS, SockLayout,
};

use super::{
    cgroup::{self, Cgroup, Hierarchy},
    plan::Plan,
    supervisor::{self, Channel, Supervisor},
};

pub struct Emulation {
    plan: Plan,
    cgroup: Cgroup,
    hits: PerCpuArray<MapData, u64>,
    /// Set up before the spawn, turned into `supervisor` after it.
    channel: Option<Channel>,
    supervisor: Option<Supervisor>,
}

impl Emulation {
    /// Removes stale emulation cgroups (reporting them), makes this run's cgroup and attaches
    /// the programs the plan needs to it. `ebpf` is wsltrace's object, loaded; only the
    /// programs used are loaded into the kernel.
    pub fn start(plan: Plan, ebpf: &mut Ebpf) -> Result<Emulation> {
        let hierarchy = Hierarchy::find()?;
        clean_stale(&hierarchy);
        let mut config = plan.kernel_config();
        if plan.needs_nonblocking_layout() {
            config.layout = sock_layout()?;
        }
        let cgroup = Cgroup::create(&hierarchy)?;
        if plan.has_sockopt() {
            config.caller = caller(&hierarchy, &cgroup)?;
        }
        let mut table: Array<_, EmulateConfig> =
            Array::try_from(take_map(ebpf, MAP_EMULATE_CONFIG)?)?;
        table.set(0, config, 0).context("writing the emulation rules")?;
        attach(ebpf, &hierarchy, &cgroup, &config)?;
        let hits = PerCpuArray::try_from(take_map(ebpf, MAP_EMULATE_HITS)?)?;
        let channel = plan.supervision().map(|_| Channel::new()).transpose()?;
        Ok(Emulation { plan, cgroup, hits, channel, supervisor: None })
    }

    /// [`Emulation::start`] for `wsltrace --emulate`: the tracer's programs are in `ebpf` too.
    /// A call the supervisor fails never fires `sys_enter` (seccomp runs first): the tracer
    /// reports it from its exit as refused before entry (`refused_by: seccomp`), as on WSL.
    pub fn start_traced(plan: Plan, ebpf: &mut Ebpf) -> Result<Emulation> {
        Emulation::start(plan, ebpf)
    }

    pub fn describe(&self) -> String {
        format!("{} in cgroup {}", self.plan.describe(), self.cgroup.path.display())
    }

    /// Makes the command's process join the cgroup (and, for unix bind targets, install the
    /// seccomp filter) in the child, before it execs: its first syscall is emulated.
    pub fn prepare(&self, command: &mut tokio::process::Command) {
        let procs = self.cgroup.procs_fd();
        let channel = self.channel.as_ref().map(Channel::child_fd);
        // SAFETY: the closure only makes async-signal-safe syscalls on fds that stay open
        // until the spawn returns, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                cgroup::join_self(procs)?;
                if let Some(fd) = channel {
                    supervisor::install_in_child(fd)?;
                }
                Ok(())
            });
        }
    }

    /// After the spawn: starts answering the command's bind() and listen() calls when needed.
    pub fn spawned(&mut self) -> Result<()> {
        if let (Some(channel), Some(supervision)) = (self.channel.take(), self.plan.supervision()) {
            self.supervisor = Some(channel.serve(supervision)?);
        }
        Ok(())
    }

    /// How many calls each quirk failed (or, for the quirks that drop replies, how many
    /// replies were dropped), in plan order.
    pub fn hits(&self) -> Vec<(String, u64, bool)> {
        (0_u32..)
            .zip(&self.plan.quirks)
            .map(|(slot, q)| {
                let kernel: u64 = self.hits.get(&slot, 0).map(|v| v.iter().sum()).unwrap_or(0);
                let supervised = self.supervisor.as_ref().map_or(0, |s| s.hits(slot));
                (q.entry.quirk.id.clone(), kernel + supervised, q.action.drops_packets())
            })
            .collect()
    }

    /// Reports what was injected, removes the cgroup (moving out what the command left
    /// running). The programs detach when `ebpf` is dropped; the cgroup going away would
    /// detach them anyway (the getsockopt program at the hierarchy's root goes with its link).
    pub fn finish(mut self) {
        let counts = self.hits();
        for (what, drops) in [("calls failed", false), ("replies dropped", true)] {
            let listed: Vec<String> = counts
                .iter()
                .filter(|(_, _, d)| *d == drops)
                .map(|(id, n, _)| format!("{id} {n}"))
                .collect();
            if !listed.is_empty() {
                eprintln!("wsltrace: emulated ({what}): {}", listed.join(", "));
            }
        }
        match self.cgroup.remove() {
            Ok(moved) if !moved.is_empty() => cgroup::report_moved(&moved),
            Ok(_) => {}
            Err(err) => tracing::warn!(
                "could not remove the emulation cgroup {} ({err:#}): the next `wsltrace emulate` removes it",
                self.cgroup.path.display()
            ),
        }
    }
}

fn clean_stale(hierarchy: &Hierarchy) {
    for stale in cgroup::clean_stale(hierarchy) {
        match stale {
            Ok(s) => {
                let moved = match s.moved.len() {
                    0 => String::new(),
                    n => format!(", moved {n} process(es) still in it to its parent"),
                };
                tracing::info!(
                    "removed stale emulation cgroup {} (its wsltrace, pid {}, was killed){moved}",
                    s.path.display(),
                    s.pid
                );
            }
            Err(err) => tracing::warn!("could not remove a stale emulation cgroup: {err:#}"),
        }
    }
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name).with_context(|| format!("map {name} missing from the eBPF object"))
}

/// The emulated cgroup as `bpf_get_current_ancestor_cgroup_id` sees it: its id (the inode
/// number of its directory in cgroup v2) and its depth below the hierarchy's root.
fn caller(hierarchy: &Hierarchy, cgroup: &Cgroup) -> Result<Caller> {
    let cgroup_id = cgroup.dir.metadata().context("reading the emulation cgroup's id")?.ino();
    let level = hierarchy.level_of(&cgroup.path)?;
    Ok(Caller { cgroup_id, level, _pad: 0 })
}

/// Loads and attaches the programs whose rules are set: nothing else is in the kernel.
///
/// The getsockopt program goes to the hierarchy's root (shared with other programs there):
/// the kernel runs it for the cgroup of the socket, not of the caller, and a server's accepted
/// AF_UNIX socket belongs to its client's cgroup; the program itself keeps to the calls of
/// emulated processes (`Caller`). Everything else is attached to the emulated cgroup only.
fn attach(
    ebpf: &mut Ebpf,
    hierarchy: &Hierarchy,
    cgroup: &Cgroup,
    config: &EmulateConfig,
) -> Result<()> {
    if config.sockopt[0].errno != 0 {
        // `Single` asks for no flags: aya attaches through a bpf_link where the kernel has
        // them, and a link is always one program among many (BPF_F_ALLOW_MULTI), so the
        // programs others attached at the root keep running; an explicit flag is EINVAL there.
        let root = std::fs::File::open(&hierarchy.mount)
            .with_context(|| format!("opening {}", hierarchy.mount.display()))?;
        let program: &mut CgroupSockopt = program(ebpf, PROG_GETSOCKOPT)?.try_into()?;
        program.load().with_context(|| format!("the kernel rejected program {PROG_GETSOCKOPT}"))?;
        program.attach(&root, CgroupAttachMode::Single).with_context(|| {
            format!("attaching {PROG_GETSOCKOPT} to {}", hierarchy.mount.display())
        })?;
    }
    if config.drop.hang_slot != 0 || config.drop.dns_slot != 0 {
        let program: &mut CgroupSkb = program(ebpf, PROG_INGRESS)?.try_into()?;
        program.load().with_context(|| format!("the kernel rejected program {PROG_INGRESS}"))?;
        program
            .attach(&cgroup.dir, CgroupSkbAttachType::Ingress, CgroupAttachMode::Single)
            .with_context(|| format!("attaching {PROG_INGRESS} to {}", cgroup.path.display()))?;
    }
    let mut sock_addr = Vec::new();
    if config.connect.errno != 0 {
        sock_addr.extend([PROG_CONNECT4, PROG_CONNECT6]);
    }
    if config.bind.errno != 0 {
        sock_addr.extend([PROG_BIND4, PROG_BIND6]);
    }
    for name in sock_addr {
        let program: &mut CgroupSockAddr = program(ebpf, name)?.try_into()?;
        program.load().with_context(|| format!("the kernel rejected program {name}"))?;
        program
            .attach(&cgroup.dir, CgroupAttachMode::Single)
            .with_context(|| format!("attaching {name} to {}", cgroup.path.display()))?;
    }
    Ok(())
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name).with_context(|| format!("program {name} missing from the eBPF object"))
}

/// `sk->sk_socket->file->f_flags` offsets, to tell non-blocking sockets apart.
fn sock_layout() -> Result<SockLayout> {
    const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
    let btf = crate::source::btf::open_vmlinux().map_err(|err| {
        anyhow::anyhow!(
            "cannot read {VMLINUX} ({err:#}): the non-blocking connect quirk needs a kernel with BTF (CONFIG_DEBUG_INFO_BTF)"
        )
    })?;
    let off = |s: &str, m: &str| crate::source::btf::member_offset(&btf, s, m);
    let layout = SockLayout {
        resolved: 1,
        sock_sk_socket: off("sock", "sk_socket")?,
        socket_file: off("socket", "file")?,
        file_f_flags: off("file", "f_flags")?,
    };
    if layout.sock_sk_socket == 0 {
        bail!("struct sock.sk_socket resolved to offset 0, which cannot be right");
    }
    Ok(layout)
}
