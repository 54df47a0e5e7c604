//! The programs' attachments, owned apart from the object so that they are detached together.
//!
//! Detaching a syscall tracepoint waits for RCU grace periods (`perf_trace_event_unreg`: ~70 ms
//! each on this 6.18 VM). Dropped one after the other, as the object drops its links, the ~40
//! links of a trace took 3 s at every exit; dropped from a thread each, the waits overlap.

use std::thread;

/// Enough for a thread that only closes a descriptor.
const STACK_BYTES: usize = 64 * 1024;

/// Links of any kind (aya's `TracePointLink`, `RawTracePointLink`): dropping one detaches it.
#[derive(Default)]
pub struct Links(Vec<Box<dyn Send>>);

impl Links {
    pub fn push(&mut self, link: impl Send + 'static) {
        self.0.push(Box::new(link));
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.0);
        thread::scope(|scope| {
            for link in links {
                // A thread that cannot be made drops its closure, link included, here: the
                // detach is then only slower.
                let _ = thread::Builder::new()
                    .name("wsltrace-detach".to_owned())
                    .stack_size(STACK_BYTES)
                    .spawn_scoped(scope, move || drop(link));
            }
        });
    }
}
