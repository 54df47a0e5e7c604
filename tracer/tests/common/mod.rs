//! Helpers for the integration tests: run the real `wsltrace` binary (as root: it loads eBPF
//! programs into the running kernel) and read what it printed.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    time::Duration,
};

use serde_json::Value;

pub mod findings;

pub const WSLTRACE: &str = env!("CARGO_BIN_EXE_wsltrace");

/// The Python interpreter itself, not a version manager's shim: a pyenv shim is a chain of
/// bash processes, each of which, in a bare environment (no USER), looks the user up through
/// nscd's socket, and those calls would be traced too.
pub fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// The variable that runs every test's tracing under another `--probe-kind` (e.g.
/// `WSLTRACE_PROBE_KIND=raw cargo test -p tracer --tests`). Read here only, never by wsltrace.
pub const PROBE_KIND_VAR: &str = "WSLTRACE_PROBE_KIND";

/// With `WSLTRACE_PROBE_KIND` set, [`wsltrace`] runs wsltrace through this script, which puts
/// `--probe-kind KIND` before the test's arguments where they trace (`wsltrace [OPTIONS]` and
/// `wsltrace demo`), unless they choose a kind themselves, and execs it: the process tests see
/// and signal is wsltrace itself. `$0` is wsltrace, `$1` the kind.
const PROBE_KIND_WRAPPER: &str = r#"kind=$1; shift
for a; do case $a in --probe-kind|--probe-kind=*) exec "$0" "$@";; --) break;; esac; done
case ${1-} in
  ''|analyze|rules|doctor|probe|emulate|completions|manpages|exec-gate|help|-h|--help|-V|--version)
    exec "$0" "$@";;
  demo) shift; exec "$0" demo --probe-kind "$kind" "$@";;
  *) exec "$0" --probe-kind "$kind" "$@";;
esac"#;

/// The probe kind the suite runs under: `WSLTRACE_PROBE_KIND`, else wsltrace's default.
pub fn probe_kind() -> Option<String> {
    std::env::var(PROBE_KIND_VAR).ok().filter(|k| !k.is_empty())
}

pub fn wsltrace() -> Command {
    let mut cmd = match probe_kind() {
        Some(kind) => {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", PROBE_KIND_WRAPPER, WSLTRACE, &kind]);
            cmd
        }
        None => Command::new(WSLTRACE),
    };
    cmd.env("NO_COLOR", "1").env_remove("RUST_LOG");
    cmd
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The JSON Lines records on stdout (with `--format json`).
    pub fn records(&self) -> Vec<Value> {
        parse_records(&self.stdout)
    }

    pub fn events(&self) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["type"] == "event").collect()
    }

    /// The last line on stderr: "wsltrace: N events, M lost".
    pub fn summary(&self) -> (u64, u64) {
        let line = self.stderr.lines().last().unwrap_or_default();
        parse_summary(line).unwrap_or_else(|| panic!("no summary line in stderr:\n{}", self.stderr))
    }
}

pub fn parse_records(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

pub fn parse_summary(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("wsltrace: ")?;
    let mut words = rest.split_whitespace();
    let events = words.next()?.parse().ok()?;
    let lost = words.nth(1)?.parse().ok()?;
    Some((events, lost))
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run wsltrace");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `wsltrace <args...>` to completion.
pub fn trace(args: &[&str]) -> Output {
    run(wsltrace().args(args))
}

/// `wsltrace [opts] --format json -- wsltrace demo --untraced <demo args>`, which must succeed.
pub fn run_cmd_json(opts: &[&str], demo: &[&str]) -> Output {
    let out = traced(opts, &["--format", "json"], demo);
    assert!(out.status.success(), "{}", out.stderr);
    out
}

/// `wsltrace [opts] [format] -- [wrapper...] wsltrace demo --untraced <demo args>`.
pub fn traced(opts: &[&str], format: &[&str], demo: &[&str]) -> Output {
    traced_in(opts, format, &[], demo)
}

pub fn traced_in(opts: &[&str], format: &[&str], wrapper: &[&str], demo: &[&str]) -> Output {
    run(wsltrace().args(opts).args(format).arg("--").args(wrapper).args(demo_command(demo)))
}

/// `wsltrace demo --untraced <demo args>`: the built-in workload as the command to trace.
pub fn demo_command<'a>(demo: &[&'a str]) -> Vec<&'a str> {
    [WSLTRACE, "demo", "--untraced"].into_iter().chain(demo.iter().copied()).collect()
}

/// A workload started untraced that waits on stdin after printing "ready PID" on stderr (or
/// "listening PID PORT" for the server and listen scenarios).
pub struct Workload {
    pub child: Child,
    pub pid: u32,
    pub port: Option<u16>,
    stdin: Option<ChildStdin>,
}

impl Workload {
    pub fn start(args: &[&str]) -> Workload {
        Self::start_in(&[], args)
    }

    /// Starts the workload under a wrapper that execs it (e.g. `unshare -n`).
    pub fn start_in(wrapper: &[&str], args: &[&str]) -> Workload {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(WSLTRACE);
                cmd
            }
            None => Command::new(WSLTRACE),
        };
        let mut child = cmd
            .arg("demo")
            .arg("--untraced")
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start workload");
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().expect("stderr")).read_line(&mut line).expect("read");
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(matches!(words.first(), Some(&"ready" | &"listening")), "workload said {line:?}");
        let pid = words[1].parse().expect("pid");
        let port = words.get(2).map(|p| p.parse().expect("port"));
        let stdin = child.stdin.take();
        Workload { child, pid, port, stdin }
    }

    pub fn go(&mut self) {
        let mut stdin = self.stdin.take().expect("go once");
        stdin.write_all(b"go\n").expect("write go");
    }

    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().expect("wait workload")
    }
}

/// A failed test must not leave its workload running.
impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A wsltrace run in the background, returned once it has attached.
pub struct Tracer {
    pub child: Child,
    stderr_head: String,
}

impl Tracer {
    /// Starts `wsltrace <args>` and waits for its "tracing ..." line.
    pub fn attach(args: &[&str]) -> Tracer {
        Tracer::start_until(args, "wsltrace: tracing")
    }

    /// Starts `wsltrace <args>` and waits for the stderr line that starts with `ready`.
    pub fn start_until(args: &[&str], ready: &str) -> Tracer {
        let mut child = wsltrace()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wsltrace");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).expect("read stderr") == 0 {
                panic!("wsltrace exited before printing {ready:?}:\n{head}");
            }
            head.push_str(&line);
            if line.starts_with(ready) {
                break;
            }
        }
        child.stderr = Some(stderr.into_inner());
        Tracer { child, stderr_head: head }
    }

    /// What wsltrace printed on stderr up to the ready line.
    pub fn head(&self) -> &str {
        &self.stderr_head
    }

    pub fn finish(mut self) -> Output {
        let mut stdout = String::new();
        let mut stderr = self.stderr_head;
        self.child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read");
        self.child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read");
        let status = self.child.wait().expect("wait wsltrace");
        Output { status, stdout, stderr }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal wsltrace");
    }
}

/// Gives a process time to enter a blocking call.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// `syscall=ret` or `syscall=ERRNO`, the shape the strace comparison works on.
pub fn outcome(ev: &Value) -> String {
    match ev["errno"].as_str() {
        Some(errno) => format!("{}={errno}", ev["syscall"].as_str().unwrap_or("?")),
        None => format!("{}={}", ev["syscall"].as_str().unwrap_or("?"), ev["ret"]),
    }
}
