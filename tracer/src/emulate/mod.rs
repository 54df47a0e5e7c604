//! `wsltrace emulate`: reproduce other platforms' socket quirks (WSL1, WSL2) on native Linux.
//!
//! `catalogue` (the quirks, from tracer/data/quirks.toml) -> `plan` (the user's choice, as
//! kernel rules) -> `session` (a cgroup made for the run, the cgroup programs of
//! tracer-ebpf/src/emulate.rs attached to it, clean-up) -> `command` (the subcommand).
//! `unix_bind` covers the one quirk no cgroup hook can inject.

pub mod args;
pub mod catalogue;
pub mod cgroup;
pub mod command;
pub mod plan;
pub mod session;
pub mod unix_bind;

pub use command::run;

use anyhow::{Result, bail};

/// The platform `--emulate` stands for, when it names exactly one profile (`wsl1`, `wsl2`).
pub fn platform(opts: &args::TraceEmulation) -> Option<&'static str> {
    let mut named = catalogue::Platform::ALL
        .iter()
        .map(|p| p.name())
        .filter(|&name| opts.emulate.iter().any(|n| n.trim() == name));
    let platform = named.next()?;
    named.next().is_none().then_some(platform)
}

/// `wsltrace --emulate LIST`: profiles and quirk ids mixed; `None` when not asked for.
pub fn plan_for_trace(opts: &args::TraceEmulation) -> Result<Option<plan::Plan>> {
    if opts.emulate.is_empty() && opts.targets.is_empty() {
        return Ok(None);
    }
    let catalogue = catalogue::Catalogue::embedded()?;
    let is_profile = |name: &str| catalogue::Platform::ALL.iter().any(|p| p.name() == name);
    let (mut profiles, mut quirks) = (Vec::new(), Vec::new());
    for name in opts.emulate.iter().map(|n| n.trim()) {
        if is_profile(name) {
            profiles.push(name.to_owned());
        } else if catalogue.get(name).is_some() {
            quirks.push(name.to_owned());
        } else {
            let mut valid: Vec<&str> = catalogue::Platform::ALL.iter().map(|p| p.name()).collect();
            valid.extend(catalogue.ids());
            bail!(
                "unknown profile or quirk '{name}' in --emulate: valid are {} (see wsltrace emulate --list)",
                valid.join(", ")
            );
        }
    }
    plan::Plan::new(catalogue, &profiles, &quirks, &opts.targets).map(Some)
}
