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

/// `wsltrace -- CMD` with a command that cannot run: one line saying so before any tracing,
/// and the shell's status (127 not found, 126 not executable).
#[test]
fn a_command_that_cannot_run_is_named() {
    let out = common::trace(&["--", "/nonexistent/wsltrace-test"]);
    assert_eq!(out.status.code(), Some(127), "{}", out.stderr);
    assert!(out.stderr.contains("command not found"), "{}", out.stderr);
    assert!(!out.stderr.contains("tracing"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);

    let out = common::trace(&["--", "no-such-command-wsltrace-test"]);
    assert_eq!(out.status.code(), Some(127), "{}", out.stderr);

    let dir = std::env::temp_dir().join(format!("wsltrace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\n").expect("write script");
    let out = common::trace(&["--", script.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(126), "{}", out.stderr);
    assert!(out.stderr.contains("not executable"), "{}", out.stderr);
}

/// `wsltrace rules ID`: one rule in full (any case); a near miss is suggested.
#[test]
fn rules_explains_one_rule() {
    let out = common::trace(&["rules", "address-in-use"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.starts_with("ADDRESS-IN-USE: Address already in use\n"), "{}", out.stdout);
    for part in ["\nWhen:\n  syscall = [\"bind\"]", "\nWhy:\n", "\nFix:\n", "\nReferences:\n"] {
        assert!(out.stdout.contains(part), "{part:?} in\n{}", out.stdout);
    }
    let json = common::trace(&["rules", "ADDRESS-IN-USE", "--format", "json"]);
    let rules: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(rules.as_array().map(Vec::len), Some(1), "{}", json.stdout);
    assert_eq!(rules[0]["id"], "ADDRESS-IN-USE");

    let out = common::trace(&["rules", "ADRESS-IN-USE"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("did you mean ADDRESS-IN-USE?"), "{}", out.stderr);
}

/// `out=$(wsltrace -- true)` returns when wsltrace exits: nothing it leaves behind (the child
/// that drops the last references to the kernel programs, which takes a second or two) holds
/// its stdout, its stderr or its recording open.
#[test]
fn no_process_holds_the_output_after_exit() {
    use std::os::unix::fs::MetadataExt as _;

    let recording =
        std::env::temp_dir().join(format!("wsltrace-held-{}.jsonl", std::process::id()));
    let mut child = common::wsltrace()
        .arg("-o")
        .arg(&recording)
        .args(["--", "true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wsltrace");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let inode = |fd: &dyn std::os::fd::AsRawFd| {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("fstat").ino()
    };
    let held = [
        format!("pipe:[{}]", inode(&out)),
        format!("pipe:[{}]", inode(&err)),
        recording.display().to_string(),
    ];
    assert!(child.wait().expect("wait").success());
    let me = std::process::id().to_string();
    let mut holders = Vec::new();
    for proc in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = proc.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            if held.iter().any(|p| target.as_os_str() == p.as_str()) {
                holders.push(pid.clone());
            }
        }
    }
    let _ = std::fs::remove_file(&recording);
    assert!(holders.is_empty(), "processes {holders:?} still hold wsltrace's output");
}

/// `wsltrace --format json -- CMD | jq .`: the trace has stdout to itself when it goes to a
/// pipe; the command's own output goes to stderr.
#[test]
fn the_command_writes_to_stderr_when_the_trace_has_stdout() {
    let script =
        format!("echo hello-from-the-command; {} demo --untraced refused", common::WSLTRACE);
    let out = common::trace(&["--format", "json", "--", "sh", "-c", &script]);
    assert!(out.status.success(), "{}", out.stderr);
    // Every stdout line is a record (parse_records panics on any other line)...
    let records = out.records();
    assert!(records.iter().any(|r| r["errno"] == "ECONNREFUSED"), "{}", out.stdout);
    // ...and the command's line is on stderr.
    assert!(out.stderr.contains("hello-from-the-command\n"), "{}", out.stderr);
}
