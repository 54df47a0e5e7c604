//! One module per subcommand.

pub mod analyze;
pub mod demo;
pub mod doctor;
pub mod probe;
pub mod rules;
pub mod trace;
