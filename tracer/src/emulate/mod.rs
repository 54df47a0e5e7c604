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
