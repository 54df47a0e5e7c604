//! Calls already in progress when tracing starts (a client hung in `connect` before wsltrace
//! was pointed at it). The kernel programs never saw their entry, so the in-flight map has
//! nothing of them; `/proc/PID/task/TID/syscall` names the call a blocked thread is in, with
//! its arguments. They are reported blocked like the calls seen from their entry, the time
//! counted from the start of tracing (a lower bound).

use tracer_common::{PendingCall, Syscall};

/// A traced thread found inside a traced call when tracing started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallAtAttach {
    pub pid_tgid: u64,
    pub syscall: Syscall,
    pub args: [u64; 6],
    /// Kernel monotonic time of the scan.
    pub seen_ns: u64,
}

impl CallAtAttach {
    /// The call as the in-flight map would hold it, entered at the scan.
    pub fn as_pending(&self) -> PendingCall {
        PendingCall { args: self.args, ..PendingCall::new(self.seen_ns, self.syscall as u32) }
    }
}

/// The threads of `tgids` blocked in one of `syscalls` now (`now_ns`: kernel monotonic).
pub fn scan(tgids: &[u32], syscalls: &[Syscall], now_ns: u64) -> Vec<CallAtAttach> {
    let mut calls = Vec::new();
    for &tgid in tgids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{tgid}/task")) else { continue };
        for tid in tasks.filter_map(|t| t.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            let Some((syscall, args)) = current_call(tgid, tid) else { continue };
            if syscalls.contains(&syscall) {
                let pid_tgid = u64::from(tgid) << 32 | u64::from(tid);
                calls.push(CallAtAttach { pid_tgid, syscall, args, seen_ns: now_ns });
            }
        }
    }
    calls
}

/// Whether the thread is still inside the same call: same syscall and arguments.
pub fn still_in(call: &CallAtAttach) -> bool {
    let (tgid, tid) = ((call.pid_tgid >> 32) as u32, call.pid_tgid as u32);
    current_call(tgid, tid) == Some((call.syscall, call.args))
}

/// The traced syscall thread `tid` is blocked in, with its arguments; `None` when it runs,
/// is in another call, or cannot be read.
fn current_call(tgid: u32, tid: u32) -> Option<(Syscall, [u64; 6])> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/syscall")).ok()?;
    parse(&text)
}

/// `/proc/.../syscall`: "NR ARG1 ... ARG6 SP PC" (arguments in hex) for a thread blocked in a
/// call, "running" or "-1 SP PC" otherwise. The numbers are the machine's own: x86_64 only.
fn parse(text: &str) -> Option<(Syscall, [u64; 6])> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let mut fields = text.split_whitespace();
    let syscall = Syscall::from_x86_64_nr(fields.next()?.parse().ok()?)?;
    let mut args = [0; 6];
    for arg in &mut args {
        *arg = u64::from_str_radix(fields.next()?.strip_prefix("0x")?, 16).ok()?;
    }
    Some((syscall, args))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn parses_a_blocked_connect_and_passes_over_the_rest() {
        let connect = "42 0x3 0x7ffc1f1e2a40 0x10 0x0 0x0 0x0 0x7ffc1f1e2a28 0x7f2b8c11b5e7\n";
        assert_eq!(parse(connect), Some((Syscall::Connect, [3, 0x7ffc1f1e2a40, 16, 0, 0, 0])));
        assert_eq!(parse("running\n"), None);
        assert_eq!(parse("-1 0x7ffc1f1e2a28 0x7f2b8c11b5e7\n"), None);
        // read(2): not a traced call.
        assert_eq!(parse("0 0x3 0x55d0 0x1000 0x0 0x0 0x0 0x7ffc 0x7f2b\n"), None);
        assert_eq!(parse("42 0x3\n"), None);
    }
}
