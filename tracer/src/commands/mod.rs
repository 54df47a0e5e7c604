//! One module per subcommand.

pub mod analyze;
pub mod demo;
pub mod trace;
