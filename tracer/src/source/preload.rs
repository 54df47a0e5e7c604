//! Loads the programs into the kernel several at a time, before they are attached one by one.
//! Loading is the verifier's work, done in the loading thread, and privileged loads do not
//! take the verifier's lock: with 2 CPUs the 41 programs of a default trace verify in about
//! half the time (most of wsltrace's start-up).

use std::sync::Mutex;

use anyhow::{Context as _, Result, bail};
use aya::{Ebpf, programs::Program};

/// Loads the programs `names` (tracepoint and raw tracepoint programs) on up to one thread
/// per CPU, the first names first (the largest, best started early). A program already
/// loaded is left as it is.
pub(super) fn load_all(ebpf: &mut Ebpf, names: &[&str]) -> Result<()> {
    let mut queue = Vec::with_capacity(names.len());
    let mut programs: Vec<(&str, &mut Program)> = ebpf.programs_mut().collect();
    for &name in names {
        if queue.iter().any(|(queued, _)| *queued == name) {
            continue;
        }
        let Some(at) = programs.iter().position(|(n, _)| *n == name) else {
            bail!("program {name} missing from the eBPF object");
        };
        queue.push(programs.swap_remove(at));
    }
    // Taken from the end: the caller's order reversed, so its first names go first.
    queue.reverse();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(queue.len());
    let queue = Mutex::new(queue);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some((name, program)) = next(&queue) {
                        if let Err(err) = load(name, program) {
                            // The others stop after their current program.
                            if let Ok(mut queue) = queue.lock() {
                                queue.clear();
                            }
                            return Err(err);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    })
}

fn next<'a>(queue: &Mutex<Vec<(&'a str, &'a mut Program)>>) -> Option<(&'a str, &'a mut Program)> {
    // A poisoned queue means another worker panicked; its panic is re-raised at join.
    queue.lock().ok()?.pop()
}

/// Loads `program` unless it is loaded already.
pub(super) fn load(name: &str, program: &mut Program) -> Result<()> {
    if program.fd().is_ok() {
        return Ok(());
    }
    match program {
        Program::TracePoint(program) => program.load(),
        Program::RawTracePoint(program) => program.load(),
        _ => bail!("program {name} is not a tracepoint program"),
    }
    .with_context(|| format!("the kernel rejected program {name}"))
}
