//! `wsltrace`: trace the socket syscalls of a process with eBPF and explain them.
//!
//! The pipeline: `source` (kernel programs and ring buffer, or a recording) -> `decode`
//! (typed events) -> `pipeline`: `enrich` (cgroup paths, namespaces, what each fd is) ->
//! `detect` (the knowledge base) -> `filter` -> `sinks` (text, JSON Lines, recording, summary).
//! `recording` is the file format shared by the recording sink and source.
//!
//! The `wsltrace` binary (`main.rs`) is a thin entry point over this library; the fuzz
//! targets (`fuzz/`) call the parsers and decoders through it.

pub mod cli;
pub mod commands;
pub mod decode;
pub mod detect;
pub mod emulate;
mod enrich;
pub mod event;
mod facts;
pub mod filter;
mod pipeline;
mod probe;
pub mod recording;
pub mod sinks;
pub mod source;
mod workloads;
