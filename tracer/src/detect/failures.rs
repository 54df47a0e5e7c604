//! One finding per failure. A refused (or timed-out) non-blocking connect is reported twice:
//! by the kernel as it sets the socket's error (a `socket_error` record) and by the call that
//! reads that error (getsockopt(SO_ERROR), or a second connect). Both records stay in the
//! trace; the first of them that is shown carries the findings, the other none: judged apart,
//! they may even differ (a rule more or less specific, as each record tells more or less).

use foldhash::HashMap;

use crate::{decode::errno::Errno, event::Finding};

/// A failed connect: the connect it ended (its `ts_ns`) and the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub started_ns: u64,
    pub error: Errno,
}

/// The failures whose findings a shown record carried, by (pid, fd).
#[derive(Default)]
pub struct Reported {
    shown: HashMap<(u32, i32), Failure>,
    /// The failure the record being judged reports, kept once the filters show the record:
    /// a record the user does not see must not take the findings away from the other one.
    judged: Option<((u32, i32), Failure)>,
}

impl Reported {
    /// A new record is being judged.
    pub fn start(&mut self) {
        self.judged = None;
    }

    /// `findings` of a record reporting `failure` on the fd `key`, all about that failure:
    /// dropped if a shown record of the same failure carried findings already, else this
    /// record's to carry.
    pub fn judge(&mut self, key: (u32, i32), failure: Failure, findings: &mut Vec<Finding>) {
        if self.shown.get(&key) == Some(&failure) {
            findings.clear();
        } else if !findings.is_empty() {
            self.judged = Some((key, failure));
        }
    }

    /// The record last judged is shown, with its findings.
    pub fn shown(&mut self) {
        if let Some((key, failure)) = self.judged.take() {
            self.shown.insert(key, failure);
        }
    }

    pub fn close(&mut self, key: (u32, i32)) {
        // Mostly empty: no hashing then.
        if !self.shown.is_empty() {
            self.shown.remove(&key);
        }
    }

    pub fn exit(&mut self, pid: u32) {
        self.shown.retain(|(p, _), _| *p != pid);
    }
}
