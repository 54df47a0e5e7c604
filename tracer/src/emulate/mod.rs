//! `wsltrace emulate`: reproduce other platforms' socket quirks (WSL1, WSL2) on native Linux.
//!
//! `catalogue` (the quirks, from tracer/data/quirks.toml) -> `plan` (the user's choice, as
//! kernel rules) -> `session` (a cgroup made for the run, the cgroup programs of
//! tracer-ebpf/src/emulate.rs attached to it, clean-up) -> `command` (the subcommand).
//! `supervisor` decides what no cgroup hook can (unix binds, WSL's port tracker) through
//! seccomp user notification, as WSL's init does. `features` checks that this kernel gives
//! the programs the helpers they call before any is loaded.

pub mod args;
pub mod catalogue;
pub mod cgroup;
pub mod command;
pub mod features;
pub mod plan;
pub mod session;
pub mod supervisor;

pub use command::run;

use anyhow::{Result, bail};

/// How to judge a trace under `--emulate`, as `--assume` takes it (`wsl1`, `wsl2,nat`,
/// `wsl2,mirrored`), when the list names exactly one profile.
pub fn platform(opts: &args::TraceEmulation) -> Option<&'static str> {
    let mut named = catalogue::Profile::ALL
        .into_iter()
        .filter(|p| opts.emulate.iter().any(|n| n.trim() == p.name));
    let profile = named.next()?;
    named.next().is_none().then_some(profile.assume)
}

/// `wsltrace --emulate LIST`: profiles and quirk ids mixed; `None` when not asked for.
pub fn plan_for_trace(opts: &args::TraceEmulation) -> Result<Option<plan::Plan>> {
    if opts.emulate.is_empty() && opts.targets.is_empty() {
        return Ok(None);
    }
    let catalogue = catalogue::Catalogue::embedded()?;
    let is_profile = |name: &str| catalogue::Profile::named(name).is_some();
    let (mut profiles, mut quirks) = (Vec::new(), Vec::new());
    for name in opts.emulate.iter().map(|n| n.trim()) {
        if is_profile(name) {
            profiles.push(name.to_owned());
        } else if catalogue.get(name).is_some() {
            quirks.push(name.to_owned());
        } else {
            let mut valid: Vec<&str> = catalogue::Profile::names();
            valid.extend(catalogue.ids());
            bail!(
                "unknown profile or quirk '{name}' in --emulate: valid are {} (see wsltrace emulate --list)",
                valid.join(", ")
            );
        }
    }
    plan::Plan::new(catalogue, &profiles, &quirks, &opts.targets).map(Some)
}
