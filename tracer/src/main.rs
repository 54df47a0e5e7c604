//! The `wsltrace` binary: parses the command line and runs a command of the library.

use std::process::ExitCode;

use clap::Parser as _;

use tracer::{
    cli::{Cli, Command},
    commands, emulate, source,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        None => commands::trace::run(cli.trace),
        Some(Command::Demo(args)) => commands::demo::run(args),
        Some(Command::Rules(args)) => commands::rules::run(args),
        Some(Command::Analyze(args)) => commands::analyze::run(args),
        Some(Command::Doctor(args)) => commands::doctor::run(args),
        Some(Command::Probe(args)) => commands::probe::run(args),
        Some(Command::Emulate(args)) => emulate::run(args),
        Some(Command::Completions(args)) => commands::completions::run(args),
        Some(Command::Manpages(args)) => commands::manpages::run(args),
        Some(Command::ExecGate { fd, command }) => Ok(source::launch::exec_gate(fd, &command)),
    };
    result.unwrap_or_else(|err| {
        // The reader of our output went away (`wsltrace rules | head`): not an error.
        // serde_json wraps the io::Error of the writer it was given.
        let broken_pipe = err.chain().any(|e| {
            let kind = e.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
            let kind = kind.or_else(|| e.downcast_ref::<serde_json::Error>()?.io_error_kind());
            kind == Some(std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            return ExitCode::SUCCESS;
        }
        // One line: what went wrong and, where we know it, the fix.
        eprintln!("wsltrace: error: {err:#}");
        ExitCode::FAILURE
    })
}

/// Diagnostics go to stderr as `wsltrace: warning: ...`; RUST_LOG=debug shows more. Each
/// message first takes the status line off the terminal, so it never shares its line.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| {
            tracer::sinks::status::take_off();
            std::io::stderr()
        })
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
