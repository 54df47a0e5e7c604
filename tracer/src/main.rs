//! `wsltrace`: trace the socket syscalls of a process with eBPF and explain them.
//!
//! The pipeline: `source` (kernel programs, ring buffer) -> `decode` (typed events) ->
//! `pipeline` -> `sinks` (text, JSON Lines).

mod cli;
mod commands;
mod decode;
mod emulate;
mod event;
mod pipeline;
mod sinks;
mod source;

use std::process::ExitCode;

use clap::Parser as _;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        None => commands::trace::run(cli.trace),
        Some(Command::Demo(args)) => commands::demo::run(args),
        Some(Command::Emulate(args)) => emulate::run(args),
        Some(Command::ExecGate { fd, command }) => Ok(source::launch::exec_gate(fd, &command)),
    };
    result.unwrap_or_else(|err| {
        // One line: what went wrong and, where we know it, the fix.
        eprintln!("wsltrace: error: {err:#}");
        ExitCode::FAILURE
    })
}

/// Diagnostics go to stderr as `wsltrace: warning: ...`; RUST_LOG=debug shows more.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(logging::Format)
        .init();
}

mod logging {
    use std::fmt;

    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::{
        fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
        registry::LookupSpan,
    };

    pub struct Format;

    impl<S, N> FormatEvent<S, N> for Format
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut w: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            let level = match *event.metadata().level() {
                Level::ERROR => "error: ",
                Level::WARN => "warning: ",
                Level::INFO => "",
                Level::DEBUG | Level::TRACE => "debug: ",
            };
            write!(w, "wsltrace: {level}")?;
            ctx.field_format().format_fields(w.by_ref(), event)?;
            writeln!(w)
        }
    }
}
