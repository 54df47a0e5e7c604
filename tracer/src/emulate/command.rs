//! `wsltrace emulate`: run a command under emulated quirks, or list them.

use std::{
    io::{self, Write as _},
    process::{ExitCode, ExitStatus},
};

use anyhow::{Result, bail};
use tokio::sync::mpsc;
use tracer_common::config::{MAP_EVENTS, MAP_SLOT_INDEX, MAP_SLOTS};

use super::{
    args::EmulateArgs,
    catalogue::{Catalogue, Confidence, Profile},
    plan::Plan,
    session::Emulation,
};
use crate::{
    sinks::args::Format,
    source::{
        kernel::PROGRAMS,
        launch::{self, forward, signal_stream},
        privileges,
    },
};

pub fn run(args: EmulateArgs) -> Result<ExitCode> {
    let catalogue = Catalogue::embedded()?;
    if args.list {
        return match list(catalogue, args.format) {
            // `wsltrace emulate --list | head`: stop quietly, like other CLI tools.
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
            other => other.map(|()| ExitCode::SUCCESS).map_err(Into::into),
        };
    }
    // Names are checked before anything needs root.
    let plan = Plan::new(catalogue, &args.profiles, &args.quirks, &args.targets)?;
    if args.command.is_empty() {
        bail!(
            "nothing to run: give the command after --, e.g. wsltrace emulate --profile wsl2 -- ./server"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(emulate(plan, &args))
}

async fn emulate(plan: Plan, args: &EmulateArgs) -> Result<ExitCode> {
    // First: a signal during set-up must still lead to clean-up.
    let signals = signal_stream()?;
    privileges::check()?;
    // Before anything is loaded or made: an old kernel gets one line, not a verifier dump.
    super::features::check(&plan, PROGRAMS)?;
    // The tracer's maps are created with the object; shrink the big ones, which stay unused.
    let mut ebpf = crate::source::kernel::loader()
        .map_max_entries(MAP_EVENTS, 4096)
        .map_max_entries(MAP_SLOT_INDEX, 1)
        .map_max_entries(MAP_SLOTS, 1)
        .load(PROGRAMS)
        .map_err(|err| anyhow::anyhow!("loading the eBPF programs into the kernel: {err}"))?;
    let mut emulation = Emulation::start(plan, &mut ebpf)?;
    let launched = launch::spawn_with(&args.command, |command| emulation.prepare(command));
    let mut launched = match launched {
        Ok(l) => l,
        Err(err) => {
            emulation.finish();
            return Err(err);
        }
    };
    let ready = emulation.spawned().and_then(|()| launched.release());
    if let Err(err) = ready {
        let _ = launched.child.start_kill();
        let _ = launched.child.wait().await;
        emulation.finish();
        return Err(err);
    }
    let cmd = args.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
    eprintln!("wsltrace: emulating {} for `{cmd}` (pid {})", emulation.describe(), launched.pid);
    let outcome = supervise(&mut launched, signals).await;
    emulation.finish();
    drop(ebpf);
    Ok(match outcome? {
        Outcome::Exited(status) => launch::exit_code(status),
        Outcome::Stopped(signal) => ExitCode::from(128 + signal as u8),
    })
}

enum Outcome {
    Exited(ExitStatus),
    /// A second signal stopped wsltrace before the command exited.
    Stopped(i32),
}

/// Waits for the command; a first SIGINT/SIGTERM is passed on to it (like the trace command),
/// a second one stops waiting.
async fn supervise(
    launched: &mut launch::Launched,
    mut signals: mpsc::UnboundedReceiver<signal_hook::low_level::siginfo::Origin>,
) -> Result<Outcome> {
    let mut signalled = false;
    loop {
        tokio::select! {
            status = launched.child.wait() => return Ok(Outcome::Exited(status?)),
            Some(origin) = signals.recv() => {
                if signalled {
                    return Ok(Outcome::Stopped(origin.signal));
                }
                signalled = true;
                forward(origin, launched);
            }
        }
    }
}

fn list(catalogue: &Catalogue, format: Format) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        Format::Json => {
            let quirks: Vec<_> = catalogue.entries.iter().map(|e| &e.quirk).collect();
            serde_json::to_writer_pretty(&mut out, &quirks)?;
            writeln!(out)?;
        }
        Format::Text => {
            for entry in &catalogue.entries {
                let q = &entry.quirk;
                let platforms: Vec<&str> = q.platforms.iter().map(|p| p.name()).collect();
                let confidence = match q.confidence {
                    Confidence::Verified => "verified",
                    Confidence::Source => "source",
                    Confidence::Reported => "reported",
                };
                writeln!(out, "{}  [{}, {confidence}]", q.id, platforms.join(", "))?;
                writeln!(out, "  {}", q.title)?;
                let profiles = match q.profiles.is_empty() {
                    true => "none (select it with --quirk)".to_owned(),
                    false => q.profiles.join(", "),
                };
                writeln!(out, "  In:   {profiles}")?;
                writeln!(out, "  Does: {}", q.effect)?;
                writeln!(
                    out,
                    "  Why:  {}",
                    q.explanation.split_whitespace().collect::<Vec<_>>().join(" ")
                )?;
                for reference in &q.references {
                    writeln!(out, "  See:  {reference}")?;
                }
                writeln!(out)?;
            }
            let aliases: Vec<String> = Profile::ALL
                .iter()
                .filter_map(|p| p.alias_of.map(|of| format!("{} is {of}", p.name)))
                .collect();
            writeln!(
                out,
                "Profiles: --profile {} select the quirks listed In them ({}, WSL's default mode).",
                Profile::names().join(", "),
                aliases.join(", ")
            )?;
            writeln!(
                out,
                "Confidence: source = read in WSL's code (the See: permalinks), reported = from issue reports, verified = reproduced on WSL."
            )?;
        }
    }
    Ok(())
}
