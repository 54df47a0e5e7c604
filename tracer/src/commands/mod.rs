//! One module per subcommand.

pub mod analyze;
pub mod completions;
pub mod demo;
pub mod doctor;
pub mod manpages;
pub mod probe;
pub mod rules;
pub mod trace;
