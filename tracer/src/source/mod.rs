//! Where events come from: the kernel programs (live tracing) or recordings (`analyze`).

pub mod btf;
pub mod kernel;
pub mod launch;
pub mod privileges;
pub mod recording;
pub mod records;
pub mod target;
pub mod tracefs;
