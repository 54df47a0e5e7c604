//! Where events come from: the kernel programs (live tracing).

pub mod btf;
pub mod kernel;
pub mod launch;
pub mod privileges;
pub mod records;
pub mod target;
pub mod tracefs;
