//! One module per subcommand.

pub mod demo;
pub mod doctor;
pub mod trace;
