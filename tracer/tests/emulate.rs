//! `wsltrace emulate` against the running kernel (as root): every quirk makes exactly the calls
//! it is meant to fail, with its errno, and nothing else; processes outside the emulation
//! cgroup are untouched; the cgroup goes away however wsltrace ends.
//!
//! The workload is `wsltrace demo --untraced quirks`, which makes each call once and prints
//! `quirks: LABEL = RESULT`; a plain run of it on the same machine is the reference.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, MutexGuard},
};

use common::{Output, Tracer, WSLTRACE, demo_command, run, wsltrace};
use nix::sys::signal::Signal;
use serde_json::Value;

type Results = BTreeMap<String, String>;

/// Emulation runs clean up each other's stale cgroups: one at a time, so a test sees its own.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Ports and a unix socket directory for one test, the first port free to be a bind target.
struct Targets {
    inside: u16,
    outside: u16,
    dir: PathBuf,
}

impl Targets {
    fn new(test: &str) -> Targets {
        let free = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (inside, mut outside) = (free(), free());
        while outside == inside {
            outside = free();
        }
        let dir = std::env::temp_dir()
            .join(format!("wsltrace-emulate-test-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Targets { inside, outside, dir }
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("WSLTRACE_DEMO_PORTS", format!("{},{}", self.inside, self.outside))
            .env("WSLTRACE_DEMO_DIR", &self.dir);
    }

    fn prefix(&self) -> String {
        self.dir.join("in").display().to_string()
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn results(stderr: &str) -> Results {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("quirks: "))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The workload run plainly: what the kernel answers without emulation.
fn natural(targets: &Targets) -> Results {
    let mut cmd = Command::new(WSLTRACE);
    cmd.args(["demo", "--untraced", "quirks"]);
    targets.env(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", out.stderr);
    results(&out.stderr)
}

/// `wsltrace emulate OPTS -- wsltrace demo --untraced quirks`.
fn emulated(opts: &[&str], targets: &Targets) -> Output {
    let mut cmd = wsltrace();
    cmd.arg("emulate").args(opts).arg("--").args(demo_command(&["quirks"]));
    targets.env(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{opts:?}: {}", out.stderr);
    out
}

/// The cgroup named in the "wsltrace: emulating ... in cgroup PATH" line.
fn cgroup_of(stderr: &str) -> PathBuf {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("wsltrace: emulating "))
        .unwrap_or_else(|| panic!("no 'emulating' line in:\n{stderr}"));
    let path = line.split(" in cgroup ").nth(1).unwrap().split_whitespace().next().unwrap();
    assert!(path.contains("/wsltrace-emulate-"), "{line}");
    PathBuf::from(path)
}

/// "wsltrace: emulated (calls failed): a 1, b 0" as a map.
fn hits(stderr: &str) -> BTreeMap<String, u64> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("wsltrace: emulated (calls failed): "))
        .unwrap_or_else(|| panic!("no hit counts in:\n{stderr}"));
    line.split(", ")
        .map(|part| {
            let (id, n) = part.rsplit_once(' ').unwrap();
            (id.to_owned(), n.parse().unwrap())
        })
        .collect()
}

/// The emulated run answered like the plain one except for `changed`, which got these errnos.
fn assert_changed_exactly(emulated: &Results, natural: &Results, changed: &[(&str, &str)]) {
    assert_eq!(emulated.keys().collect::<Vec<_>>(), natural.keys().collect::<Vec<_>>());
    for (label, plain) in natural {
        let want = changed.iter().find(|(l, _)| l == label).map_or(plain.as_str(), |(_, e)| *e);
        assert_eq!(&emulated[label], want, "{label} (without emulation: {plain})");
    }
    for (label, errno) in changed {
        assert_ne!(natural[*label], *errno, "{label} fails with {errno} even without emulation");
    }
}

/// Runs one quirk over the workload: exactly `changed` differ, the counter agrees, the cgroup
/// is gone afterwards.
fn check_quirk(opts: &[&str], targets: &Targets, changed: &[(&str, &str)], id: &str) {
    let _serial = serial();
    let plain = natural(targets);
    // Labels a kernel without IPv6 does not produce are not expected.
    let changed: Vec<(&str, &str)> =
        changed.iter().copied().filter(|(l, _)| plain.contains_key(*l)).collect();
    let out = emulated(opts, targets);
    assert_changed_exactly(&results(&out.stderr), &plain, &changed);
    assert_eq!(hits(&out.stderr), BTreeMap::from([(id.to_owned(), changed.len() as u64)]));
    let cgroup = cgroup_of(&out.stderr);
    assert!(!cgroup.exists(), "{} left behind", cgroup.display());
}

#[test]
fn peercred_enoprotoopt_fails_so_peercred_on_unix_sockets_only() {
    let t = Targets::new("peercred2");
    check_quirk(
        &["--quirk", "peercred-enoprotoopt"],
        &t,
        &[("peercred", "ENOPROTOOPT")],
        "peercred-enoprotoopt",
    );
}

#[test]
fn peercred_einval_is_the_wsl1_variant() {
    let t = Targets::new("peercred1");
    check_quirk(&["--quirk", "peercred-einval"], &t, &[("peercred", "EINVAL")], "peercred-einval");
}

#[test]
fn tcp_info_enoprotoopt_leaves_other_tcp_options() {
    let t = Targets::new("tcpinfo");
    check_quirk(
        &["--quirk", "tcp-info-enoprotoopt"],
        &t,
        &[("tcp-info", "ENOPROTOOPT")],
        "tcp-info-enoprotoopt",
    );
}

/// Connects to live listeners succeed; every TCP connect to a dead loopback port, v4, v6,
/// v4-mapped, blocking or not, gets ENOTCONN; UDP is untouched.
#[test]
fn connect_enotconn_only_where_nothing_listens() {
    let t = Targets::new("enotconn");
    check_quirk(
        &["--quirk", "connect-enotconn"],
        &t,
        &[
            ("connect4-dead", "ENOTCONN"),
            ("connect4-nonblock-dead", "ENOTCONN"),
            ("connect6-dead", "ENOTCONN"),
            ("connect6-mapped-dead", "ENOTCONN"),
        ],
        "connect-enotconn",
    );
}

/// Only the non-blocking connect to a dead port changes (EINPROGRESS -> ECONNREFUSED); the
/// blocking one was refused anyway, the non-blocking one to a listener still gets EINPROGRESS.
#[test]
fn nonblock_connect_econnrefused_only_for_nonblocking_sockets() {
    let t = Targets::new("nonblock");
    check_quirk(
        &["--quirk", "nonblock-connect-econnrefused"],
        &t,
        &[("connect4-nonblock-dead", "ECONNREFUSED")],
        "nonblock-connect-econnrefused",
    );
}

/// A port in the range and a unix path under the prefix fail; the other port, a unix path
/// elsewhere and an abstract name bind.
#[test]
fn bind_eacces_for_configured_ports_and_unix_paths() {
    let t = Targets::new("bind");
    let port = t.inside.to_string();
    let in_label = format!("bind-port-{}", t.inside);
    check_quirk(
        &["--bind-ports", &port, "--bind-path-prefix", &t.prefix()],
        &t,
        &[(&in_label, "EACCES"), ("bind-unix-in", "EACCES")],
        "bind-eacces",
    );
}

/// A profile selects its platform's quirks; a grandchild of the command (through sh) is
/// emulated too, and the command's exit status is wsltrace's.
#[test]
fn wsl2_profile_reaches_children_and_passes_the_exit_status() {
    let _serial = serial();
    let t = Targets::new("profile");
    let plain = natural(&t);
    let script = format!("{WSLTRACE} demo --untraced quirks; exit 7");
    let mut cmd = wsltrace();
    cmd.args(["emulate", "--profile", "wsl2", "--", "sh", "-c", &script]);
    t.env(&mut cmd);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);
    let mut changed = vec![("peercred", "ENOPROTOOPT")];
    for label in
        ["connect4-dead", "connect4-nonblock-dead", "connect6-dead", "connect6-mapped-dead"]
    {
        if plain.contains_key(label) {
            changed.push((label, "ENOTCONN"));
        }
    }
    // bind-eacces is in the profile with its default target, /mnt/: nothing here is under it.
    assert_changed_exactly(&results(&out.stderr), &plain, &changed);
    assert!(out.stderr.contains("bind-eacces (unix paths under /mnt/)"), "{}", out.stderr);
    assert!(!cgroup_of(&out.stderr).exists());
}

/// A wsltrace emulate running in the background, returned once its command started.
struct Background(Tracer);

impl Background {
    fn start(args: &[&str]) -> Background {
        Background(Tracer::start_until(args, "wsltrace: emulating"))
    }

    fn cgroup(&self) -> PathBuf {
        cgroup_of(self.0.head())
    }

    /// The command's pid, from "... (pid N)".
    fn command_pid(&self) -> u32 {
        let line = self.0.head().lines().find(|l| l.starts_with("wsltrace: emulating")).unwrap();
        line.rsplit("(pid ").next().unwrap().trim_end_matches(')').parse().unwrap()
    }

    fn signal(&self, signal: Signal) {
        self.0.signal(signal);
    }

    fn finish(self) -> Output {
        self.0.finish()
    }
}

fn procs(cgroup: &Path) -> Vec<u32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// While a command runs emulated, the same calls made outside its cgroup answer as usual; a
/// SIGTERM to wsltrace reaches the command and the cgroup is removed.
#[test]
fn outside_processes_are_unaffected_and_sigterm_cleans_up() {
    let _serial = serial();
    let t = Targets::new("outside");
    let port = t.inside.to_string();
    let bg = Background::start(&[
        "emulate",
        "--profile",
        "wsl2",
        "--bind-ports",
        &port,
        "--bind-path-prefix",
        &t.prefix(),
        "--",
        "sleep",
        "30",
    ]);
    let cgroup = bg.cgroup();
    assert_eq!(procs(&cgroup), [bg.command_pid()], "the command runs in the cgroup");
    let outside = natural(&t);
    assert_eq!(outside["peercred"], "0");
    assert_eq!(outside[&format!("bind-port-{}", t.inside)], "0");
    assert_eq!(outside["bind-unix-in"], "0");
    assert_eq!(outside["connect4-dead"], "ECONNREFUSED");
    bg.signal(Signal::SIGTERM);
    let out = bg.finish();
    assert_eq!(out.status.code(), Some(128 + 15), "{}", out.stderr);
    assert!(!cgroup.exists(), "{} left behind", cgroup.display());
}

/// wsltrace killed with SIGKILL cannot clean up: its cgroup stays, with the command in it. The
/// next run removes it, says so, and leaves the command running (moved out, not killed).
#[test]
fn sigkill_leaves_a_stale_cgroup_that_the_next_run_removes() {
    let _serial = serial();
    let bg =
        Background::start(&["emulate", "--quirk", "peercred-enoprotoopt", "--", "sleep", "30"]);
    let (cgroup, sleeper, killed) = (bg.cgroup(), bg.command_pid(), bg.0.child.id());
    bg.signal(Signal::SIGKILL);
    // Not `finish`: the command still holds the stderr pipe open.
    let mut child = bg.0.child;
    assert_eq!(child.wait().unwrap().code(), None, "killed");
    assert!(cgroup.exists());
    assert_eq!(procs(&cgroup), [sleeper]);

    let next = run(wsltrace().args(["emulate", "--quirk", "peercred-einval", "--", "true"]));
    assert!(next.status.success(), "{}", next.stderr);
    let expected = format!(
        "wsltrace: removed stale emulation cgroup {} (its wsltrace, pid {killed}, was killed), moved 1 process(es) still in it to its parent",
        cgroup.display()
    );
    assert!(next.stderr.lines().any(|l| l == expected), "{expected}\nnot in:\n{}", next.stderr);
    assert!(!cgroup.exists());
    assert!(procs(cgroup.parent().unwrap()).contains(&sleeper), "moved to the parent cgroup");
    let sleeper = nix::unistd::Pid::from_raw(sleeper as i32);
    assert!(nix::sys::signal::kill(sleeper, None).is_ok(), "the command was left running");
    nix::sys::signal::kill(sleeper, Signal::SIGKILL).unwrap();
}

/// Tracing and emulating at once: the tracer records each injected errno at sys_exit, with
/// the call's arguments.
#[test]
fn trace_records_the_injected_errnos_with_arguments() {
    let _serial = serial();
    let t = Targets::new("trace");
    let port = t.inside.to_string();
    let mut cmd = wsltrace();
    cmd.args([
        "--emulate",
        "peercred-enoprotoopt,connect-enotconn",
        "--bind-ports",
        &port,
        "--bind-path-prefix",
        &t.prefix(),
        "--format",
        "json",
        "--",
    ])
    .args(demo_command(&["quirks"]));
    t.env(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", out.stderr);
    let probe = results(&out.stderr);
    assert_eq!(probe["peercred"], "ENOPROTOOPT");
    assert_eq!(probe["connect4-dead"], "ENOTCONN");
    assert_eq!(probe[&format!("bind-port-{}", t.inside)], "EACCES");
    assert_eq!(probe["bind-unix-in"], "EACCES");
    let events = out.events();
    let failed = |syscall: &str, errno: &str| -> Vec<&Value> {
        events.iter().filter(|e| e["syscall"] == syscall && e["errno"] == errno).collect()
    };
    let peercred = failed("getsockopt", "ENOPROTOOPT");
    assert_eq!(peercred.len(), 1, "{}", out.stdout);
    assert_eq!(peercred[0]["args"]["level"], "SOL_SOCKET");
    assert_eq!(peercred[0]["args"]["optname"], "SO_PEERCRED");
    assert!(peercred[0]["args"]["fd"].is_number());
    let refused = failed("connect", "ENOTCONN");
    assert!(!refused.is_empty());
    assert_eq!(refused[0]["args"]["addr"]["family"], "AF_INET");
    assert_eq!(refused[0]["args"]["addr"]["ip"], "127.0.0.1");
    assert!(refused[0]["args"]["addr"]["port"].as_u64().is_some_and(|p| p > 0));
    let bind = failed("bind", "EACCES");
    assert_eq!(bind.len(), 2, "{}", out.stdout);
    assert_eq!(bind[0]["args"]["addr"]["port"], t.inside);
    assert_eq!(bind[0]["ret"], -13);
    // The unix path bind was failed by seccomp, before sys_enter: the supervisor recorded its
    // entry, so it reads like any other call, in the emulation cgroup.
    let unix_path = t.dir.join("in/a.sock").display().to_string();
    assert_eq!(bind[1]["args"]["addr"], serde_json::json!({"family":"AF_UNIX","path":unix_path}));
    assert_eq!(bind[1]["args"]["addrlen"], unix_path.len() + 2);
    assert_eq!(bind[1]["cgroup_id"], bind[0]["cgroup_id"]);
    assert_eq!(bind[1]["pid"], bind[0]["pid"]);
    assert!(bind[1]["duration_ns"].as_u64().is_some());
    // The emulation report comes before the summary, which stays the last line.
    let (count, lost) = out.summary();
    assert_eq!((count, lost), (events.len() as u64, 0));
    assert!(!cgroup_of(&out.stderr).exists());
}

/// `wsltrace --emulate PLATFORM -- CMD`: the knowledge base judges the trace as on that
/// platform, so every injected failure is flagged with the rule that explains it.
fn flagged_under(platform: &str) -> (Output, Vec<(String, String, Vec<String>)>) {
    let t = Targets::new(platform);
    let mut cmd = wsltrace();
    cmd.args(["--emulate", platform, "--format", "json", "--"]).args(demo_command(&["quirks"]));
    t.env(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("judging the calls as on {platform}")), "{}", out.stderr);
    let flagged = out
        .events()
        .iter()
        .filter_map(|e| {
            let ids: Vec<String> = e["anomalies"]
                .as_array()?
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_owned())
                .collect();
            let detail = e["args"]["optname"].as_str().map_or_else(
                || e["errno"].as_str().unwrap_or("ok").to_owned(),
                |opt| format!("{opt} {}", e["errno"].as_str().unwrap_or("ok")),
            );
            Some((e["syscall"].as_str().unwrap().to_owned(), detail, ids))
        })
        .collect();
    (out, flagged)
}

#[test]
fn wsl2_emulation_is_flagged_by_the_knowledge_base() {
    let _serial = serial();
    let (out, flagged) = flagged_under("wsl2");
    let peercred: Vec<_> = flagged
        .iter()
        .filter(|(s, d, _)| s == "getsockopt" && d == "SO_PEERCRED ENOPROTOOPT")
        .collect();
    assert_eq!(peercred.len(), 1, "{flagged:?}");
    assert_eq!(peercred[0].2, ["PEERCRED-UNAVAILABLE"]);
    // The workload's four connects to a dead port (blocking v4 and v6, v4-mapped, and the
    // non-blocking one) fail with ENOTCONN, each flagged; the live ones are not.
    let enotconn: Vec<_> =
        flagged.iter().filter(|(s, d, _)| s == "connect" && d == "ENOTCONN").collect();
    assert_eq!(enotconn.len(), 4, "{flagged:?}");
    assert!(enotconn.iter().all(|(_, _, ids)| ids == &["CONNECT-ENOTCONN-NOT-ECONNREFUSED"]));
    assert!(!flagged.iter().any(|(s, d, _)| s == "connect" && d == "ok"), "{flagged:?}");
    assert!(out.stderr.contains("PEERCRED-UNAVAILABLE"), "the closing summary names the rules");
}

#[test]
fn wsl1_emulation_is_flagged_by_the_wsl1_rules() {
    let _serial = serial();
    let (_, flagged) = flagged_under("wsl1");
    let find = |syscall: &str, detail: &str| -> Vec<String> {
        flagged
            .iter()
            .find(|(s, d, _)| s == syscall && d == detail)
            .map(|(_, _, ids)| ids.clone())
            .unwrap_or_else(|| panic!("no flagged {syscall} {detail} in {flagged:?}"))
    };
    assert_eq!(find("getsockopt", "SO_PEERCRED EINVAL"), ["PEERCRED-UNAVAILABLE"]);
    assert_eq!(find("getsockopt", "TCP_INFO ENOPROTOOPT"), ["WSL1-TCP-INFO-ENOPROTOOPT"]);
    let nonblocking: Vec<_> = flagged
        .iter()
        .filter(|(_, _, ids)| ids.iter().any(|id| id == "WSL1-NONBLOCKING-CONNECT-REFUSED"))
        .collect();
    assert_eq!(nonblocking.len(), 1, "only the non-blocking connect: {flagged:?}");
}

#[test]
fn list_shows_every_quirk_with_provenance() {
    let out = run(wsltrace().args(["emulate", "--list", "--format", "json"]));
    assert!(out.status.success(), "{}", out.stderr);
    let quirks: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = quirks.iter().map(|q| q["id"].as_str().unwrap()).collect();
    for id in [
        "peercred-enoprotoopt",
        "peercred-einval",
        "connect-enotconn",
        "bind-eacces",
        "tcp-info-enoprotoopt",
        "nonblock-connect-econnrefused",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for q in &quirks {
        assert!(["verified", "reported"].contains(&q["confidence"].as_str().unwrap()), "{q}");
        assert!(!q["references"].as_array().unwrap().is_empty(), "{q}");
        assert!(!q["platforms"].as_array().unwrap().is_empty(), "{q}");
        assert!(q["inject"]["hook"].is_string(), "{q}");
    }
    let text = run(wsltrace().args(["emulate", "--list"]));
    assert!(text.stdout.contains("peercred-einval  [wsl1, reported]"), "{}", text.stdout);
    assert!(text.stdout.contains("https://github.com/microsoft/WSL/issues/1011"));
}

/// Bad input: one line naming the problem and the valid choices, before anything is set up.
#[test]
fn bad_names_are_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["emulate", "--profile", "wsl3", "--", "true"],
            "unknown profile 'wsl3': valid profiles are wsl1, wsl2",
        ),
        (
            &["emulate", "--quirk", "peercred", "--", "true"],
            "unknown quirk 'peercred': valid quirks are peercred-enoprotoopt, peercred-einval,",
        ),
        (&["emulate", "--profile", "wsl2"], "nothing to run: give the command after --"),
        (&["emulate", "--", "true"], "nothing to emulate: give --profile wsl1|wsl2 or --quirk ID"),
        (
            &["--emulate", "wsl9", "--", "true"],
            "unknown profile or quirk 'wsl9' in --emulate: valid are wsl1, wsl2, peercred-enoprotoopt",
        ),
        (
            &["emulate", "--profile", "wsl1,wsl2", "--", "true"],
            "quirks peercred-einval and peercred-enoprotoopt both decide getsockopt(SOL_SOCKET, SO_PEERCRED): keep one",
        ),
    ];
    for (args, message) in cases {
        let out = run(wsltrace().args(*args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
    // Values clap checks: its usual message, exit status 2.
    let out = run(wsltrace().args(["emulate", "--bind-ports", "0", "--", "true"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("must go from 1 up to at most 65535"), "{}", out.stderr);
    let out = run(wsltrace().args(["--emulate", "wsl2", "--pid", "1"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("--emulate"), "{}", out.stderr);
}
