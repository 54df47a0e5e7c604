//! The command line as a user's shell meets it: pipes, exit codes, error lines.

mod common;

use std::process::Stdio;

use common::wsltrace;

/// `wsltrace rules --format json | head -c 10`: a reader that goes away ends the output
/// quietly, as for other Unix tools. The pipe's read end is closed before wsltrace starts, so
/// its first write fails with EPIPE whatever the timing.
#[test]
fn a_closed_pipe_ends_quietly() {
    for args in [&["rules", "--format", "json"][..], &["rules"], &["doctor", "--format", "json"]] {
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        drop(read_end);
        let out = wsltrace()
            .args(args)
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::piped())
            .output()
            .expect("run wsltrace");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "wsltrace {args:?}: {}\n{stderr}", out.status);
        assert!(!stderr.contains("Broken pipe"), "wsltrace {args:?}: {stderr}");
    }
}
