//! What the running kernel must offer the programs of a plan: the helpers each program calls,
//! read from the eBPF object, each probed on this kernel with a two-instruction program of the
//! same type (what `bpftool feature probe` does). A kernel without one (5.10 and 5.15 lack
//! `bpf_set_retval`, which every errno-injecting program calls) then gets one line naming the
//! helper, the quirks that need it and the release that has it, not a verifier dump.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use aya::{
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported},
};
use serde::{Deserialize, Serialize};
use tracer_common::emulate::{
    PROG_BIND4, PROG_BIND6, PROG_CONNECT4, PROG_CONNECT6, PROG_GETSOCKOPT, PROG_INGRESS,
};

use super::{
    catalogue::{Action, Catalogue},
    plan::Plan,
};

/// A helper an emulation program calls that this kernel does not give programs of its type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingHelper {
    /// `bpf_set_retval`.
    pub helper: String,
    /// `cgroup sock_addr`, `cgroup sockopt`, `cgroup skb`.
    pub program_type: String,
    /// The first Linux release that gives it to that program type, when known.
    pub since: Option<String>,
    /// The quirks whose programs call it.
    pub quirks: Vec<String>,
}

/// The kernel programs `action` runs in, with their type. `given`: as the run's targets set it
/// (a bind quirk given no ports needs no program); otherwise whatever it may need.
fn programs(action: &Action, given: bool) -> &'static [(&'static str, ProgramType)] {
    const SOCK_ADDR: ProgramType = ProgramType::CgroupSockAddr;
    match action {
        Action::Getsockopt { .. } => &[(PROG_GETSOCKOPT, ProgramType::CgroupSockopt)],
        Action::ConnectNoListener { .. } => {
            &[(PROG_CONNECT4, SOCK_ADDR), (PROG_CONNECT6, SOCK_ADDR)]
        }
        Action::Bind { ports: Some(p), .. } if !given || !p.is_empty() => {
            &[(PROG_BIND4, SOCK_ADDR), (PROG_BIND6, SOCK_ADDR)]
        }
        Action::LoopbackHang | Action::DnsDrop { .. } => &[(PROG_INGRESS, ProgramType::CgroupSkb)],
        // The seccomp supervisor decides these alone.
        Action::Bind { .. } | Action::PortTracker { .. } => &[],
    }
}

fn type_name(t: ProgramType) -> &'static str {
    match t {
        ProgramType::CgroupSockAddr => "cgroup sock_addr",
        ProgramType::CgroupSockopt => "cgroup sockopt",
        ProgramType::CgroupSkb => "cgroup skb",
        _ => "eBPF",
    }
}

/// Where the helpers that came late to cgroup programs first appeared for them (the others the
/// emulation calls are older than any kernel with BTF).
fn since(helper: BpfHelper) -> Option<&'static str> {
    match helper {
        BpfHelper::BPF_FUNC_set_retval | BpfHelper::BPF_FUNC_get_retval => Some("5.18"),
        _ => None,
    }
}

/// `bpf_set_retval` for `BPF_FUNC_set_retval`.
fn helper_name(helper: BpfHelper) -> String {
    let debug = format!("{helper:?}");
    format!("bpf_{}", debug.strip_prefix("BPF_FUNC_").unwrap_or(&debug))
}

/// The object with each program's functions linked into it, as aya links them for loading.
fn linked(bytes: &[u8]) -> Result<aya_obj::Object> {
    let mut object = aya_obj::Object::parse(bytes).context("parsing the eBPF object")?;
    let text_sections = object.functions.keys().map(|(section, _)| *section).collect();
    object.relocate_calls(&text_sections).context("linking the eBPF object's functions")?;
    Ok(object)
}

/// The helpers a program of `object` (linked) calls, by their numbers in its code.
fn helpers_called(object: &aya_obj::Object, program: &str) -> Result<Vec<BpfHelper>> {
    const CALL: u8 = (aya_obj::generated::BPF_JMP | aya_obj::generated::BPF_CALL) as u8;
    let key = object
        .programs
        .get(program)
        .with_context(|| format!("program {program} missing from the eBPF object"))?
        .function_key();
    let function = object.functions.get(&key).with_context(|| format!("no code for {program}"))?;
    let mut found = Vec::new();
    for insn in &function.instructions {
        if insn.code != CALL {
            continue;
        }
        // src_reg 0 is a helper; 1 a function of the object, whose code the linking appended.
        if insn.src_reg() != 0 {
            continue;
        }
        let id =
            u32::try_from(insn.imm).ok().filter(|id| *id < BpfHelper::__BPF_FUNC_MAX_ID as u32);
        let Some(id) = id else { bail!("{program} calls an unknown helper {}", insn.imm) };
        // SAFETY: bpf_func_id is a #[repr(u32)] enum whose variants are 0..__BPF_FUNC_MAX_ID
        // without gaps (bindgen's copy of the kernel's enum), and `id` is below the maximum.
        let helper = unsafe { std::mem::transmute::<u32, BpfHelper>(id) };
        if !found.contains(&helper) {
            found.push(helper);
        }
    }
    Ok(found)
}

/// Probes the helpers the programs of `actions` (quirk id, action) call. `given`: see
/// [`programs`]. Needs the privileges of loading programs.
fn probe<'a>(
    object: &[u8],
    actions: impl Iterator<Item = (&'a str, &'a Action)>,
    given: bool,
) -> Result<Vec<MissingHelper>> {
    let object = linked(object)?;
    let mut answers: BTreeMap<(String, &str), bool> = BTreeMap::new();
    let mut missing: Vec<MissingHelper> = Vec::new();
    for (quirk, action) in actions {
        for (program, program_type) in programs(action, given) {
            for helper in helpers_called(&object, program)? {
                let name = helper_name(helper);
                let key = (name.clone(), type_name(*program_type));
                let supported = match answers.get(&key) {
                    Some(ok) => *ok,
                    None => {
                        let ok = is_helper_supported(*program_type, helper).with_context(|| {
                            format!("probing the kernel for {name} in {} programs", key.1)
                        })?;
                        *answers.entry(key.clone()).or_insert(ok)
                    }
                };
                if supported {
                    continue;
                }
                let entry = match missing
                    .iter_mut()
                    .position(|m| m.helper == name && m.program_type == key.1)
                {
                    Some(at) => &mut missing[at],
                    None => {
                        missing.push(MissingHelper {
                            helper: name,
                            program_type: key.1.to_owned(),
                            since: since(helper).map(str::to_owned),
                            quirks: Vec::new(),
                        });
                        let last = missing.len() - 1;
                        &mut missing[last]
                    }
                };
                if !entry.quirks.iter().any(|q| q == quirk) {
                    entry.quirks.push(quirk.to_owned());
                }
            }
        }
    }
    Ok(missing)
}

/// What every quirk of the catalogue would miss on this kernel (for `doctor`).
pub fn catalogue_missing(object: &[u8]) -> Result<Vec<MissingHelper>> {
    let catalogue = Catalogue::embedded()?;
    let actions = catalogue.entries.iter().map(|e| (e.quirk.id.as_str(), &e.action));
    probe(object, actions, false)
}

/// Fails with one line when this kernel cannot run a quirk of `plan`: the helper, the quirks
/// that need it, the release that has it, and the quirks of the plan that do run here.
pub fn check(plan: &Plan, object: &[u8]) -> Result<()> {
    let actions = plan.quirks.iter().map(|q| (q.entry.quirk.id.as_str(), &q.action));
    let missing = probe(object, actions, true)?;
    if missing.is_empty() {
        return Ok(());
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let blocked: Vec<&str> =
        missing.iter().flat_map(|m| m.quirks.iter().map(String::as_str)).collect();
    let runnable: Vec<&str> = plan
        .quirks
        .iter()
        .map(|q| q.entry.quirk.id.as_str())
        .filter(|id| !blocked.contains(id))
        .collect();
    let mut line = format!("this kernel ({release}) cannot run {}", describe(&missing));
    line += &match runnable.is_empty() {
        true => "; run a newer kernel".to_owned(),
        false => format!(
            "; run a newer kernel, or leave them out (--quirk {} runs here)",
            runnable.join(",")
        ),
    };
    bail!(line)
}

/// "quirk(s) a, b: their cgroup sock_addr programs need bpf_set_retval (Linux 5.18+)", joined.
pub fn describe(missing: &[MissingHelper]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|m| {
            let since = m.since.as_ref().map(|s| format!(" (Linux {s}+)")).unwrap_or_default();
            format!(
                "{} {}: {} programs need {}{since}",
                if m.quirks.len() == 1 { "quirk" } else { "quirks" },
                m.quirks.join(", "),
                m.program_type,
                m.helper
            )
        })
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_names_are_the_kernels() {
        assert_eq!(helper_name(BpfHelper::BPF_FUNC_set_retval), "bpf_set_retval");
        assert_eq!(since(BpfHelper::BPF_FUNC_set_retval), Some("5.18"));
    }

    #[test]
    fn the_errno_injecting_programs_call_set_retval_and_the_drop_program_does_not() {
        let object = linked(crate::source::kernel::PROGRAMS).unwrap();
        for program in [PROG_GETSOCKOPT, PROG_CONNECT4, PROG_CONNECT6, PROG_BIND4, PROG_BIND6] {
            let called = helpers_called(&object, program).unwrap();
            assert!(called.contains(&BpfHelper::BPF_FUNC_set_retval), "{program}: {called:?}");
        }
        let ingress = helpers_called(&object, PROG_INGRESS).unwrap();
        assert!(!ingress.contains(&BpfHelper::BPF_FUNC_set_retval), "{ingress:?}");
    }

    #[test]
    fn the_message_names_quirks_helper_and_release() {
        let missing = [MissingHelper {
            helper: "bpf_set_retval".into(),
            program_type: "cgroup sock_addr".into(),
            since: Some("5.18".into()),
            quirks: vec!["connect-enotconn".into()],
        }];
        assert_eq!(
            describe(&missing),
            "quirk connect-enotconn: cgroup sock_addr programs need bpf_set_retval (Linux 5.18+)"
        );
    }
}
