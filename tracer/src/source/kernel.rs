//! Loads the kernel programs, configures them, attaches them, and owns them while tracing.

use std::{collections::HashSet, path::Path};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{
        RawTracePoint, TracePoint, raw_trace_point::RawTracePointLink, trace_point::TracePointLink,
    },
};
use tracer_common::{
    IDENTITY_CHANGES, PendingCall, Syscall,
    config::{
        Counter, ErrnoSet, GLOBAL_ERRNO_FILTER, GLOBAL_EXEC_OLD_PID_OFF,
        GLOBAL_EXIT_GROUP_DEAD_OFF, GLOBAL_FAILED_ONLY, GLOBAL_FORK_CHILD_OFF,
        GLOBAL_KEEP_IDENTITY, GLOBAL_RENAME_NEWCOMM_OFF, GLOBAL_RENAME_PID_OFF, GLOBAL_SELECTED,
        GLOBAL_SLOTS_COVER_ALL, GLOBAL_TRACER_TGID, GLOBAL_WAKEUP_BYTES, MAP_COUNTERS, MAP_ERRNOS,
        MAP_EVENTS, MAP_SLOT_INDEX, MAP_SLOTS, MAP_TRACED, MAP_TRACED_PIDS, PROGRAM_RAW_SYS_ENTER,
        PROGRAM_RAW_SYS_EXIT, SLOT_TIDS, lost_index,
    },
    layout::{GLOBAL_LAYOUT, KernelLayout},
};

use super::{
    links::Links,
    slots::{self, Slots},
    traced_pids::{self, TracedPids},
    tracefs,
};

/// The object built from `tracer-ebpf` by build.rs.
pub(crate) static PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

/// What the kernel side should record.
#[derive(Clone, Debug)]
pub struct KernelOptions {
    pub syscalls: Vec<Syscall>,
    pub failed_only: bool,
    pub errnos: ErrnoSet,
    pub follow_forks: bool,
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_bytes: u32,
    /// Which programs see the socket calls.
    pub probe_kind: ProbeKind,
}

/// How the socket syscalls are hooked. Both kinds run the same program logic and emit the
/// same records; they differ in what they cost, and to whom.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// `syscalls:sys_enter_*`/`sys_exit_*` of the traced syscalls only: nothing else on the
    /// machine pays.
    #[default]
    Tracepoint,
    /// The raw `sys_enter`/`sys_exit` tracepoints, dispatched on the syscall number (x86_64):
    /// a lower floor for the socket calls, a first check added to every syscall of every
    /// process.
    Raw,
}

impl ProbeKind {
    pub const fn name(self) -> &'static str {
        match self {
            ProbeKind::Tracepoint => "tracepoint",
            ProbeKind::Raw => "raw",
        }
    }
}

/// Totals of the kernel programs' per-CPU counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records the ring buffer had no room for, by kind.
    pub lost: Lost,
    /// Exits seen without their entry (in flight at attach).
    pub no_entry: u64,
}

/// Records the ring buffer had no room for: what the user asked for and what only kept
/// wsltrace's picture of the processes current, apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Events of the selected calls, by syscall id.
    pub selected: [u64; Syscall::ALL.len()],
    /// Context records (see `FLAG_CONTEXT`), by syscall id.
    pub context: [u64; Syscall::ALL.len()],
    pub forks: u64,
    pub exits: u64,
    pub socket_errors: u64,
    /// Calls whose thread had no slot for them (see `Counter::NoSlot`): counted among the
    /// lost ones above, not for want of room in the ring.
    pub no_slot: u64,
}

pub struct Kernel {
    /// Dropped first: detaches every program.
    _links: Links,
    // Owns the programs.
    _ebpf: Ebpf,
    traced: HashMap<MapData, u32, u64>,
    traced_pids: TracedPids,
    counters: PerCpuArray<MapData, u64>,
    /// The threads' slots, read for `--blocked-after` (the calls in flight) and for the calls
    /// in progress at attach: handles of their own, since emulation may take the object's.
    slots: Slots,
    /// The thread ids the programs have a slot for (see `slots::covered`).
    covered: u32,
    /// With `--probe-kind raw`, the tail-call tables: kept open, since the kernel empties a
    /// program array when its last descriptor closes.
    _raw: Option<[ProgramArray<MapData>; 2]>,
    /// The selected syscalls whose tracepoints are attached.
    pub syscalls: Vec<Syscall>,
}

impl Kernel {
    /// Loads and attaches the programs; returns the ring buffer to read records from.
    /// Nothing is recorded until a process is added with [`Kernel::trace`].
    pub fn load(opts: &KernelOptions) -> Result<(Kernel, RingBuf<MapData>)> {
        raise_memlock_limit();
        let tracefs = tracefs::ensure_mounted()?;
        let fork_child_off =
            tracefs::field_offset(&tracefs, "sched", "sched_process_fork", "child_pid")?
                .context("sched:sched_process_fork has no child_pid field")?;
        // Older kernels lack group_dead: 0 tells the programs to use "main thread exited".
        let group_dead_off =
            tracefs::field_offset(&tracefs, "sched", "sched_process_exit", "group_dead")?
                .unwrap_or(0);
        let exec_old_pid_off =
            tracefs::field_offset(&tracefs, "sched", "sched_process_exec", "old_pid")?;
        // A thread's namespaces, capabilities, ids and cgroup are kept between its calls only
        // where every event that can change them is watched; elsewhere each record reads them
        // afresh.
        // The name too: a rename's new name is taken from `task:task_rename`'s record.
        let rename_newcomm_off =
            tracefs::field_offset(&tracefs, "task", "task_rename", "newcomm").unwrap_or(None);
        let rename_pid_off =
            tracefs::field_offset(&tracefs, "task", "task_rename", "pid").unwrap_or(None);
        let keep_identity = exec_old_pid_off.is_some()
            && rename_newcomm_off.is_some()
            && tracefs::has_tracepoint(&tracefs, "cgroup", "cgroup_attach_task")
            && IDENTITY_CHANGES.iter().all(|tp| tracefs::has_tracepoint(&tracefs, "syscalls", tp));
        let layout = super::btf::kernel_layout().unwrap_or(KernelLayout::UNRESOLVED);
        let tracer_tgid = std::process::id();
        let failed_only = u32::from(opts.failed_only);
        let selected: u64 = opts.syscalls.iter().map(|s| s.bit()).fold(0, |a, b| a | b);
        // Unselected calls that change what an fd is are attached too, for context only.
        let attached: Vec<Syscall> = Syscall::ALL
            .iter()
            .copied()
            .filter(|s| opts.syscalls.contains(s) || s.is_context())
            .collect();
        let errno_filter = u32::from(!opts.errnos.is_empty());
        let wakeup_bytes = u64::from(opts.ring_bytes / 4);
        let pid_max = traced_pids::pid_max();
        let slots_by_id = slots::cover_all(pid_max);

        let mut ebpf = loader()
            .override_global(GLOBAL_TRACER_TGID, &tracer_tgid, true)
            .override_global(GLOBAL_SELECTED, &selected, true)
            .override_global(GLOBAL_FAILED_ONLY, &failed_only, true)
            .override_global(GLOBAL_ERRNO_FILTER, &errno_filter, true)
            .override_global(GLOBAL_WAKEUP_BYTES, &wakeup_bytes, true)
            .override_global(GLOBAL_FORK_CHILD_OFF, &fork_child_off, true)
            .override_global(GLOBAL_EXIT_GROUP_DEAD_OFF, &group_dead_off, true)
            .override_global(GLOBAL_EXEC_OLD_PID_OFF, &exec_old_pid_off.unwrap_or(0), true)
            .override_global(GLOBAL_KEEP_IDENTITY, &u32::from(keep_identity), true)
            .override_global(GLOBAL_SLOTS_COVER_ALL, &u32::from(slots_by_id), true)
            .override_global(GLOBAL_RENAME_PID_OFF, &rename_pid_off.unwrap_or(0), true)
            .override_global(GLOBAL_RENAME_NEWCOMM_OFF, &rename_newcomm_off.unwrap_or(0), true)
            .override_global(GLOBAL_LAYOUT, &layout, true)
            .map_max_entries(MAP_EVENTS, opts.ring_bytes)
            .map_max_entries(MAP_TRACED_PIDS, traced_pids::entries(pid_max))
            .map_max_entries(MAP_SLOTS, slots::entries(pid_max))
            .map_max_entries(MAP_SLOT_INDEX, slots::index_entries(pid_max))
            .load(PROGRAMS)
            .context("loading the eBPF programs into the kernel")?;

        if !slots_by_id {
            slots::fill_pool(&mut ebpf)?;
        }
        let traced_pids = TracedPids::map(take_map(&mut ebpf, MAP_TRACED_PIDS)?)?;
        // The filter is in place before any program runs.
        let mut errnos: Array<_, u64> = Array::try_from(take_map(&mut ebpf, MAP_ERRNOS)?)?;
        for (index, word) in (0..).zip(opts.errnos.words) {
            errnos.set(index, word, 0)?;
        }
        let socket_errors_missing = socket_errors_missing(&tracefs, &layout);
        let programs = programs_to_load(
            opts,
            &tracefs,
            &attached,
            keep_identity,
            socket_errors_missing.is_none(),
        );
        super::preload::load_all(&mut ebpf, &programs)?;
        // Declared after `ebpf`, so that an error below detaches before the object drops.
        let mut links = Links::default();
        let (attached, raw) = match opts.probe_kind {
            ProbeKind::Tracepoint => {
                (attach_syscalls(&mut ebpf, &mut links, &tracefs, &attached)?, None)
            }
            ProbeKind::Raw => {
                (attached.clone(), Some(super::raw::attach(&mut ebpf, &mut links, &attached)?))
            }
        };
        let syscalls = opts.syscalls.iter().copied().filter(|s| attached.contains(s)).collect();
        links.push(attach(&mut ebpf, "sched", "sched_process_exit")?);
        if opts.follow_forks {
            links.push(attach(&mut ebpf, "sched", "sched_process_fork")?);
        }
        if keep_identity {
            for tracepoint in IDENTITY_CHANGES {
                links.push(attach(&mut ebpf, "syscalls", tracepoint)?);
            }
            links.push(attach(&mut ebpf, "sched", "sched_process_exec")?);
            links.push(attach(&mut ebpf, "cgroup", "cgroup_attach_task")?);
            links.push(attach(&mut ebpf, "task", "task_rename")?);
        }
        if opts.syscalls.contains(&Syscall::Connect)
            && let Some(link) = attach_socket_errors(&mut ebpf, socket_errors_missing)?
        {
            links.push(link);
        }

        let ring = RingBuf::try_from(take_map(&mut ebpf, MAP_EVENTS)?)?;
        let traced = HashMap::try_from(take_map(&mut ebpf, MAP_TRACED)?)?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, MAP_COUNTERS)?)?;
        let slots = Slots::open(&ebpf, slots_by_id)?;
        let kernel = Kernel {
            _links: links,
            _ebpf: ebpf,
            traced,
            traced_pids,
            counters,
            slots,
            covered: slots::covered(pid_max),
            _raw: raw,
            syscalls,
        };
        Ok((kernel, ring))
    }

    /// The loaded object, for features that attach programs of their own (emulation).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self._ebpf
    }

    /// Starts recording process `tgid` (all its threads). The time it is added tells the
    /// programs which threads were traced from their first call (see `FLAG_REFUSED`).
    pub fn trace(&mut self, tgid: u32) -> Result<()> {
        let since = monotonic_ns()?;
        // The byte first: the programs look a pid up only when its byte is set.
        self.traced_pids.set(tgid, true);
        let added = self.traced.insert(tgid, since, 0);
        if added.is_err() {
            self.traced_pids.set(tgid, false);
        }
        added.with_context(|| format!("adding pid {tgid} to the traced set"))
    }

    /// The traced set as the kernel holds it: the processes given, plus followed children,
    /// minus exited ones.
    pub fn traced(&self) -> Vec<u32> {
        self.traced.keys().filter_map(Result::ok).collect()
    }

    /// Forgets a process that exited without the kernel noticing (it died before being added).
    pub fn untrace(&mut self, tgid: u32) {
        let _ = self.traced.remove(&tgid);
        self.traced_pids.set(tgid, false);
    }

    /// Detaches every program without making the user wait (see [`super::links`]): the
    /// traced set is emptied first, so the programs go quiet.
    pub fn detach(mut self) {
        for pid in self.traced() {
            self.untrace(pid);
        }
        // One cause said: past the ids prepared for, the pool's size is not the reason.
        if let Some(now) = traced_pids::pid_max().filter(|&now| now > self.covered) {
            let covered = self.covered;
            tracing::warn!(
                "pid_max was raised to {now} during the trace, past the {covered} thread ids wsltrace prepared for at start: calls of threads with larger ids were counted as lost; start wsltrace again to trace them"
            );
        } else if let Ok(calls @ 1..) = self.counters().map(|c| c.lost.no_slot) {
            tracing::warn!(
                "{calls} calls were made by threads beyond the {} traced at once that wsltrace keeps calls in flight for: they were counted as lost; trace fewer processes (--pid) to see them",
                SLOT_TIDS - 1
            );
        }
        super::links::hand_over();
    }

    /// Every call in flight in the threads of `traced` (the ids [`Kernel::traced`] gave):
    /// (pid_tgid, the call).
    pub fn calls_in_flight(&self, traced: &HashSet<u32>) -> Vec<(u64, PendingCall)> {
        self.slots.in_flight(traced)
    }

    /// Whether thread `pid_tgid` has a slot: it made a traced call since tracing started.
    pub fn has_slot(&self, pid_tgid: u64) -> bool {
        self.slots.has(pid_tgid)
    }

    pub fn counters(&self) -> Result<Counters> {
        let sum_at = |index: u32| -> Result<u64> { Ok(self.counters.get(&index, 0)?.iter().sum()) };
        let sum = |counter: Counter| sum_at(counter as u32);
        let by_syscall = |context: bool| -> Result<[u64; Syscall::ALL.len()]> {
            let mut counts = [0; Syscall::ALL.len()];
            for (count, &syscall) in counts.iter_mut().zip(Syscall::ALL) {
                *count = sum_at(lost_index(syscall, context))?;
            }
            Ok(counts)
        };
        let lost = Lost {
            selected: by_syscall(false)?,
            context: by_syscall(true)?,
            forks: sum(Counter::LostFork)?,
            exits: sum(Counter::LostExit)?,
            socket_errors: sum(Counter::LostSocketError)?,
            no_slot: sum(Counter::NoSlot)?,
        };
        Ok(Counters { lost, no_entry: sum(Counter::NoEntry)? })
    }
}

/// The kernel's CLOCK_MONOTONIC now, the clock of the records' `ts_ns`.
pub fn monotonic_ns() -> Result<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .context("reading the monotonic clock")?;
    Ok(u64::try_from(now.tv_sec())? * 1_000_000_000 + u64::try_from(now.tv_nsec())?)
}

/// aya's loader, its copy of the kernel's BTF dropped before the object is parsed. aya reads it
/// only for CO-RE relocations, and the programs have none (struct offsets come from
/// `btf::kernel_layout`, as globals): held through `load` it was 12 MB of wsltrace's peak
/// memory. aya 0.14 has no loader that skips parsing it.
pub(crate) fn loader() -> EbpfLoader<'static> {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    loader
}

pub(super) fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name).with_context(|| format!("map {name} missing from the eBPF object"))
}

/// The programs a trace with `opts` attaches, the largest (the syscall exits) first, to be
/// verified at once by [`super::preload::load_all`]. `attached`: the syscalls wanted.
fn programs_to_load(
    opts: &KernelOptions,
    tracefs: &Path,
    attached: &[Syscall],
    keep_identity: bool,
    socket_errors: bool,
) -> Vec<&'static str> {
    let mut names = Vec::new();
    match opts.probe_kind {
        // A syscall without tracepoints is skipped (with a warning) by `attach_syscalls`.
        ProbeKind::Tracepoint => names.extend(
            attached
                .iter()
                .filter(|s| {
                    tracefs::has_tracepoint(tracefs, "syscalls", s.enter_tracepoint())
                        && tracefs::has_tracepoint(tracefs, "syscalls", s.exit_tracepoint())
                })
                .flat_map(|s| [s.exit_tracepoint(), s.enter_tracepoint()]),
        ),
        ProbeKind::Raw if cfg!(target_arch = "x86_64") => {
            names.extend(
                attached.iter().flat_map(|s| [s.raw_exit_program(), s.raw_enter_program()]),
            );
            names.extend([PROGRAM_RAW_SYS_EXIT, PROGRAM_RAW_SYS_ENTER]);
        }
        // `raw::attach` says why not.
        ProbeKind::Raw => {}
    }
    names.push("sched_process_exit");
    if opts.follow_forks {
        names.push("sched_process_fork");
    }
    if keep_identity {
        names.extend(IDENTITY_CHANGES);
        names.extend(["sched_process_exec", "cgroup_attach_task", "task_rename"]);
    }
    if opts.syscalls.contains(&Syscall::Connect) && socket_errors {
        names.push(SOCKET_ERRORS);
    }
    names
}

fn attach(ebpf: &mut Ebpf, category: &str, name: &str) -> Result<TracePointLink> {
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?;
    super::preload::load(name, program)?;
    let program: &mut TracePoint = program.try_into()?;
    let id = program
        .attach(category, name)
        .with_context(|| format!("attaching to {category}:{name}"))?;
    Ok(program.take_link(id)?)
}

/// The tracepoint that reports socket errors, and what wsltrace shows of it.
const SOCKET_ERRORS: &str = "inet_sk_error_report";

/// Attaches the socket error report (see tracer-ebpf's sockets.rs); a kernel without the
/// tracepoint (before 5.14) or without the struct layouts it needs (`missing`: why, from
/// [`socket_errors_missing`]) gets one warning and is traced without it.
fn attach_socket_errors(
    ebpf: &mut Ebpf,
    missing: Option<String>,
) -> Result<Option<RawTracePointLink>> {
    if let Some(why) = missing {
        tracing::warn!(
            "{why}: socket errors the program never reads (socket_error records) are not reported"
        );
        return Ok(None);
    }
    let program = ebpf
        .program_mut(SOCKET_ERRORS)
        .with_context(|| format!("program {SOCKET_ERRORS} missing from the eBPF object"))?;
    super::preload::load(SOCKET_ERRORS, program)?;
    let program: &mut RawTracePoint = program.try_into()?;
    let id = program
        .attach(SOCKET_ERRORS)
        .with_context(|| format!("attaching to sock:{SOCKET_ERRORS}"))?;
    Ok(Some(program.take_link(id)?))
}

/// Why this kernel cannot report socket errors, if it cannot.
fn socket_errors_missing(tracefs: &Path, layout: &KernelLayout) -> Option<String> {
    if !tracefs::has_tracepoint(tracefs, "sock", SOCKET_ERRORS) {
        Some(format!("this kernel has no sock:{SOCKET_ERRORS} tracepoint (added in 5.14)"))
    } else if layout.resolved == 0 || layout.sock_err == 0 {
        Some("the kernel's socket struct layouts are unknown (no BTF)".to_owned())
    } else {
        None
    }
}

/// Attaches enter and exit of each syscall; a syscall whose tracepoints this kernel lacks is
/// skipped with a warning. Returns the syscalls attached.
fn attach_syscalls(
    ebpf: &mut Ebpf,
    links: &mut Links,
    tracefs: &Path,
    wanted: &[Syscall],
) -> Result<Vec<Syscall>> {
    let mut attached = Vec::new();
    for &syscall in wanted {
        let (enter, exit) = (syscall.enter_tracepoint(), syscall.exit_tracepoint());
        if !tracefs::has_tracepoint(tracefs, "syscalls", enter)
            || !tracefs::has_tracepoint(tracefs, "syscalls", exit)
        {
            tracing::warn!(
                "this kernel has no syscalls:{enter}/{exit} tracepoints: {} is not traced",
                syscall.name()
            );
            continue;
        }
        links.push(attach(ebpf, "syscalls", exit)?);
        links.push(attach(ebpf, "syscalls", enter)?);
        attached.push(syscall);
    }
    if attached.is_empty() {
        bail!(
            "this kernel has no syscall tracepoints for socket calls (it was built without CONFIG_FTRACE_SYSCALLS): wsltrace cannot trace on it"
        );
    }
    Ok(attached)
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lift it (best effort).
fn raise_memlock_limit() {
    use nix::sys::resource::{Resource, setrlimit};
    let _ = setrlimit(Resource::RLIMIT_MEMLOCK, libc::RLIM_INFINITY, libc::RLIM_INFINITY);
}

#[cfg(test)]
mod tests {
    use super::PROGRAMS;

    /// `loader` drops the kernel's BTF: right only while no program needs a CO-RE relocation.
    #[test]
    fn programs_need_no_kernel_btf() {
        let object = aya_obj::Object::parse(PROGRAMS).expect("the built object parses");
        assert!(!object.programs.is_empty());
        assert!(!object.has_btf_relocations(), "CO-RE relocations: give the loader the BTF");
    }

    /// One section per program: aya copies a section's whole line info into each of its
    /// programs (41 programs sharing `tracepoint` took 8 MB at start-up).
    #[test]
    fn each_program_has_a_section_of_its_own() {
        let object = aya_obj::Object::parse(PROGRAMS).expect("the built object parses");
        let mut sections = std::collections::HashMap::new();
        for (name, program) in &object.programs {
            if let Some(other) = sections.insert(program.section_index, name) {
                panic!("programs {name} and {other} share a section");
            }
        }
    }
}
