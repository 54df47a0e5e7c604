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
    sync::{Mutex, MutexGuard, OnceLock},
};

use common::{Output, Tracer, WSLTRACE, demo_command, python, run, wsltrace};
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

/// What this kernel cannot emulate, as `wsltrace doctor` reports it from the probe `wsltrace
/// emulate` makes before it loads anything: (helper, quirks that call it).
fn missing_helpers() -> &'static [(String, Vec<String>)] {
    static MISSING: OnceLock<Vec<(String, Vec<String>)>> = OnceLock::new();
    MISSING.get_or_init(|| {
        let out = run(wsltrace().args(["doctor", "--format", "json"]));
        let report: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|err| panic!("doctor's JSON ({err}), {}: {}", out.status, out.stderr));
        report["facts"]["machine"]["program_types"]["emulate_missing"]
            .as_array()
            .unwrap_or_else(|| panic!("doctor probed no emulate helpers: {}", out.stdout))
            .iter()
            .map(|m| {
                let quirks = m["quirks"].as_array().unwrap();
                let quirks = quirks.iter().map(|q| q.as_str().unwrap().to_owned()).collect();
                (m["helper"].as_str().unwrap().to_owned(), quirks)
            })
            .collect()
    })
}

/// The quirks of `quirks` this kernel cannot run.
fn cannot_run<'a>(quirks: &[&'a str]) -> Vec<&'a str> {
    quirks
        .iter()
        .copied()
        .filter(|q| missing_helpers().iter().any(|(_, qs)| qs.iter().any(|x| x == q)))
        .collect()
}

/// When this kernel cannot run some of `quirks`, the run `out` must have failed with one line
/// naming them, the helper they miss and this kernel, and nothing else: the test ends there.
fn refused_here(out: &Output, quirks: &[&str]) -> bool {
    let blocked = cannot_run(quirks);
    if blocked.is_empty() {
        return false;
    }
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let want = format!("wsltrace: error: this kernel ({}) cannot run ", release.trim());
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.contains(": warning: ")).collect();
    assert!(lines.len() == 1 && lines[0].starts_with(&want), "{want}... in:\n{}", out.stderr);
    for quirk in blocked {
        let (helper, _) =
            missing_helpers().iter().find(|(_, qs)| qs.iter().any(|x| x == quirk)).unwrap();
        assert!(lines[0].contains(quirk) && lines[0].contains(helper.as_str()), "{}", lines[0]);
    }
    assert!(!out.stderr.contains("emulating"), "nothing was started: {}", out.stderr);
    true
}

/// The quirks a profile selects, from `emulate --list` (`wsl2` is `wsl2-nat`).
fn profile_quirks(profile: &str) -> Vec<String> {
    let profile = if profile == "wsl2" { "wsl2-nat" } else { profile };
    let out = run(wsltrace().args(["emulate", "--list", "--format", "json"]));
    let list: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    list.iter()
        .filter(|q| q["profiles"].as_array().unwrap().iter().any(|p| p == profile))
        .map(|q| q["id"].as_str().unwrap().to_owned())
        .collect()
}

fn refused_profile(out: &Output, profile: &str) -> bool {
    let quirks = profile_quirks(profile);
    refused_here(out, &quirks.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The probe agrees with the kernel's own type information: a kernel whose BTF names
/// BPF_FUNC_set_retval gives it to the errno-injecting programs, one without lacks it.
#[test]
fn the_emulate_probe_agrees_with_the_kernels_btf() {
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").expect("a kernel with BTF");
    let named = btf.windows(21).any(|w| w == b"\0BPF_FUNC_set_retval\0");
    let lacks = missing_helpers().iter().any(|(h, _)| h == "bpf_set_retval");
    assert_eq!(lacks, !named, "doctor: {:?}", missing_helpers());
    // doctor's text says the same.
    let doctor = run(wsltrace().arg("doctor")).stdout;
    let line =
        doctor.lines().find(|l| l.contains("emulate: ")).unwrap_or_else(|| panic!("{doctor}"));
    match missing_helpers() {
        [] => assert!(line.contains("emulate: every quirk runs"), "{line}"),
        missing => {
            assert!(line.contains("cannot run") && line.contains("`wsltrace emulate` refuses"));
            for (helper, quirks) in missing {
                assert!(line.contains(helper.as_str()), "{line}");
                assert!(quirks.iter().all(|q| line.contains(q.as_str())), "{line}");
            }
        }
    }
    if lacks {
        let t = Targets::new("probe");
        let mut cmd = wsltrace();
        cmd.args(["emulate", "--quirk", "connect-enotconn", "--"]).args(demo_command(&["quirks"]));
        t.env(&mut cmd);
        assert!(refused_here(&run(&mut cmd), &["connect-enotconn"]));
    }
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
    run(&mut cmd)
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
    if refused_here(&out, &[id]) {
        return;
    }
    assert!(out.status.success(), "{opts:?}: {}", out.stderr);
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

/// The retired EACCES quirk, asked for by id: a port in the range and a unix path under the
/// prefix fail; the other port, a unix path elsewhere and an abstract name bind.
#[test]
fn bind_eacces_for_configured_ports_and_unix_paths() {
    let t = Targets::new("bind");
    let port = t.inside.to_string();
    let in_label = format!("bind-port-{}", t.inside);
    check_quirk(
        &["--quirk", "bind-eacces", "--bind-ports", &port, "--bind-path-prefix", &t.prefix()],
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
    if refused_profile(&out, "wsl2") {
        return;
    }
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);
    let mut changed = vec![("peercred", "ENOPROTOOPT")];
    for label in
        ["connect4-dead", "connect4-nonblock-dead", "connect6-dead", "connect6-mapped-dead"]
    {
        if plain.contains_key(label) {
            changed.push((label, "ENOTCONN"));
        }
    }
    // unix-bind-drvfs is in the profile with its default target, /mnt/: nothing here is under
    // it. The EACCES quirk is in no profile: WSL2's code has no such path.
    assert_changed_exactly(&results(&out.stderr), &plain, &changed);
    assert!(out.stderr.contains("unix-bind-drvfs (unix paths under /mnt/)"), "{}", out.stderr);
    assert!(!out.stderr.contains("bind-eacces"), "{}", out.stderr);
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
    let opts =
        ["emulate", "--profile", "wsl2", "--bind-ports", &port, "--bind-path-prefix", &t.prefix()];
    if !cannot_run(&profile_quirks("wsl2").iter().map(String::as_str).collect::<Vec<_>>())
        .is_empty()
    {
        assert!(refused_profile(&run(wsltrace().args(opts).args(["--", "true"])), "wsl2"));
        return;
    }
    let bg = Background::start(&[&opts[..], &["--", "sleep", "30"]].concat());
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
    // The reply-dropping quirk: its program loads on every kernel with BTF.
    let dns = ["emulate", "--quirk", "dns-tunnel-drop", "--dns-server", "127.0.0.1:53", "--"];
    let bg = Background::start(&[&dns[..], &["sleep", "30"]].concat());
    let (cgroup, sleeper, killed) = (bg.cgroup(), bg.command_pid(), bg.0.child.id());
    bg.signal(Signal::SIGKILL);
    // Not `finish`: the command still holds the stderr pipe open.
    let mut child = bg.0.child;
    assert_eq!(child.wait().unwrap().code(), None, "killed");
    assert!(cgroup.exists());
    assert_eq!(procs(&cgroup), [sleeper]);

    let next = run(wsltrace().args(dns).arg("true"));
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
        "peercred-enoprotoopt,connect-enotconn,bind-eacces",
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
    if refused_here(&out, &["peercred-enoprotoopt", "connect-enotconn", "bind-eacces"]) {
        return;
    }
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
    assert!(bind[0].get("refused_by").is_none(), "failed inside the kernel: {}", bind[0]);
    // The unix path bind was failed by the seccomp supervisor, before sys_enter: the tracer
    // reports it from its exit, refused by seccomp, with its arguments, in the emulation cgroup.
    let unix_path = t.dir.join("in/a.sock").display().to_string();
    assert_eq!(bind[1]["args"]["addr"], serde_json::json!({"family":"AF_UNIX","path":unix_path}));
    assert_eq!(bind[1]["args"]["addrlen"], unix_path.len() + 2);
    assert_eq!(bind[1]["cgroup_id"], bind[0]["cgroup_id"]);
    assert_eq!(bind[1]["pid"], bind[0]["pid"]);
    assert_eq!(bind[1]["refused_by"], "seccomp", "{}", bind[1]);
    assert!(bind[1]["duration_ns"].is_null());
    // The emulation report comes before the summary, which stays the last line.
    let (count, lost) = out.summary();
    assert_eq!((count, lost), (events.len() as u64, 0));
    assert!(!cgroup_of(&out.stderr).exists());
}

/// `wsltrace --emulate PLATFORM -- CMD`: the knowledge base judges the trace as on that
/// platform, so every injected failure is flagged with the rule that explains it.
/// A flagged call: syscall, what it returned (with the option name), rule ids.
type Flagged = (String, String, Vec<String>);

/// `None` when this kernel cannot run the platform's quirks (and said so).
fn flagged_under(platform: &str) -> Option<(Output, Vec<Flagged>)> {
    let t = Targets::new(platform);
    let mut cmd = wsltrace();
    cmd.args(["--emulate", platform, "--format", "json", "--"]).args(demo_command(&["quirks"]));
    t.env(&mut cmd);
    let out = run(&mut cmd);
    if refused_profile(&out, platform) {
        return None;
    }
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
    Some((out, flagged))
}

#[test]
fn wsl2_emulation_is_flagged_by_the_knowledge_base() {
    let _serial = serial();
    let Some((out, flagged)) = flagged_under("wsl2") else { return };
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
    let Some((_, flagged)) = flagged_under("wsl1") else { return };
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
        "port-tracker",
        "loopback-connect-hang",
        "dns-tunnel-drop",
        "unix-bind-drvfs",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for q in &quirks {
        let confidence = q["confidence"].as_str().unwrap();
        assert!(["verified", "source", "reported"].contains(&confidence), "{q}");
        if confidence == "source" {
            let permalink = q["references"].as_array().unwrap().iter().any(|r| {
                r.as_str().unwrap().starts_with("https://github.com/microsoft/WSL/blob/3e27a6a5")
            });
            assert!(permalink, "a quirk read in WSL's code links to it: {q}");
        }
        assert!(!q["references"].as_array().unwrap().is_empty(), "{q}");
        assert!(!q["platforms"].as_array().unwrap().is_empty(), "{q}");
        assert!(q["inject"]["hook"].is_string(), "{q}");
    }
    let tracker = quirks.iter().find(|q| q["id"] == "port-tracker").unwrap();
    assert_eq!(tracker["profiles"], serde_json::json!(["wsl2-mirrored"]));
    let text = run(wsltrace().args(["emulate", "--list"]));
    assert!(text.stdout.contains("peercred-einval  [wsl1, reported]"), "{}", text.stdout);
    assert!(text.stdout.contains("port-tracker  [wsl2, source]"), "{}", text.stdout);
    assert!(text.stdout.contains("  In:   wsl2-mirrored\n"), "{}", text.stdout);
    assert!(text.stdout.contains("https://github.com/microsoft/WSL/issues/1011"));
}

/// Bad input: one line naming the problem and the valid choices, before anything is set up.
#[test]
fn bad_names_are_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["emulate", "--profile", "wsl3", "--", "true"],
            "unknown profile 'wsl3': valid profiles are wsl1, wsl2, wsl2-nat, wsl2-mirrored",
        ),
        (
            &["emulate", "--quirk", "peercred", "--", "true"],
            "unknown quirk 'peercred': valid quirks are peercred-enoprotoopt, peercred-einval,",
        ),
        (&["emulate", "--profile", "wsl2"], "nothing to run: give the command after --"),
        (
            &["emulate", "--", "true"],
            "nothing to emulate: give --profile wsl1|wsl2|wsl2-nat|wsl2-mirrored or --quirk ID",
        ),
        (
            &["--emulate", "wsl9", "--", "true"],
            "unknown profile or quirk 'wsl9' in --emulate: valid are wsl1, wsl2, wsl2-nat, wsl2-mirrored, peercred-enoprotoopt",
        ),
        (
            &["emulate", "--profile", "wsl2-nat,wsl2-mirrored", "--", "true"],
            "quirks connect-enotconn and loopback-connect-hang both decide connects to a destination without listener: keep one",
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

/// `LABEL = RESULT` lines a test script printed as `res: LABEL = RESULT [...]` on stderr; only
/// the first word of the result is kept.
fn script_results(stderr: &str) -> Results {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("res: "))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.split_whitespace().next().unwrap_or("").to_owned()))
        .collect()
}

/// `python -c SCRIPT ARGS...`, the real interpreter (not a shim).
fn script<'a>(code: &'a str, args: &'a [String]) -> Vec<&'a str> {
    [python(), "-c", code].into_iter().chain(args.iter().map(String::as_str)).collect()
}

/// The script run plainly: what the kernel answers without emulation.
fn plain_script(code: &str, args: &[String]) -> Results {
    script_results(&run(Command::new(python()).args(&script(code, args)[1..])).stderr)
}

/// `wsltrace OPTS -- python -c SCRIPT ARGS`, which must succeed, and the script's results.
/// `None` when this kernel cannot run the `profile`'s quirks (and said so).
fn emulated_script(
    opts: &[&str],
    code: &str,
    args: &[String],
    profile: Option<&str>,
) -> Option<(Output, Results)> {
    let out = run(wsltrace().args(opts).arg("--").args(script(code, args)));
    if profile.is_some_and(|p| refused_profile(&out, p)) {
        return None;
    }
    assert!(out.status.success(), "{opts:?}: {}: {}", out.status, out.stderr);
    let results = script_results(&out.stderr);
    Some((out, results))
}

fn local_port_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let mut words = text.split_whitespace().map(|w| w.parse().unwrap());
    (words.next().unwrap(), words.next().unwrap())
}

/// A port free for TCP (v4 and v6) and UDP, outside this machine's ephemeral window: the kind
/// of port a Windows process holds (one inside the guest's window is never asked of Windows).
fn free_port_outside_window(candidates: impl Iterator<Item = u16>) -> Option<u16> {
    let (first, last) = local_port_range();
    candidates.filter(|p| !(first..=last).contains(p)).find(|&p| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("::1", p)).is_ok()
            && std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok()
    })
}

fn held_port() -> u16 {
    let start = 20000 + (std::process::id() % 5000) as u16;
    free_port_outside_window(start..32000).expect("a free port between 20000 and 32000")
}

const BINDS: &str = r#"
import errno, os, socket, sys
held, free, busy, eph = map(int, sys.argv[1:5])
keep = []
def bind(label, family, kind, addr, listen=False):
    s = socket.socket(family, kind)
    try:
        s.bind(addr)
        if listen:
            s.listen(1)
        r = "0"
    except OSError as e:
        r = errno.errorcode[e.errno]
    keep.append(s)
    print(f"res: {label} = {r}", file=sys.stderr)
I4, I6, T, U = socket.AF_INET, socket.AF_INET6, socket.SOCK_STREAM, socket.SOCK_DGRAM
bind("held-127.0.0.1", I4, T, ("127.0.0.1", held), True)
bind("held-127.0.0.2", I4, T, ("127.0.0.2", held), True)
bind("held-::1", I6, T, ("::1", held))
bind("held-udp", I4, U, ("0.0.0.0", held))
bind("free", I4, T, ("0.0.0.0", free), True)
bind("port-0", I4, T, ("0.0.0.0", 0), True)
bind("port-53", I4, U, ("127.0.0.1", 53))
bind("busy", I4, T, ("127.0.0.1", busy))
bind("unix-abstract", socket.AF_UNIX, T, f"\0wsltrace-test-{os.getpid()}")
if eph:
    bind("windows-ephemeral", I4, T, ("0.0.0.0", eph))
"#;

/// WSL's port tracker under `--emulate wsl2-mirrored`: bind() of a port Windows holds fails
/// with EADDRINUSE before it enters the kernel (the trace shows it refused by seccomp, and the
/// knowledge base names the Windows holder), on 127.0.0.1, ::1 and UDP alike; what WSL lets
/// through without asking Windows binds (127.0.0.2, port 0, port 53, other families, a free
/// port); a port a Linux socket holds fails in the kernel as usual, and is not blamed on
/// Windows. A plain run of the same script binds everything but the busy port.
#[test]
fn port_tracker_refuses_windows_held_ports_before_entry() {
    let _serial = serial();
    let held = held_port();
    let free = free_port_outside_window(held + 1..32000).expect("a second free port");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (first, last) = local_port_range();
    // Windows' ephemeral range outside the guest's window, when this machine leaves some.
    let eph = free_port_outside_window((49152..=65535).filter(|p| !(first..=last).contains(p)))
        .unwrap_or(0);
    let args: Vec<String> =
        [held, free, busy.local_addr().unwrap().port(), eph].iter().map(u16::to_string).collect();
    let plain = plain_script(BINDS, &args);
    for label in ["held-127.0.0.1", "held-127.0.0.2", "held-::1", "held-udp", "free", "port-0"] {
        assert_eq!(plain[label], "0", "{label} without emulation");
    }
    assert_eq!(plain["busy"], "EADDRINUSE");

    let held_arg = held.to_string();
    let opts = ["--emulate", "wsl2-mirrored", "--bind-ports", &held_arg, "--format", "json"];
    let Some((out, emulated)) = emulated_script(&opts, BINDS, &args, Some("wsl2-mirrored")) else {
        return;
    };
    assert!(out.stderr.contains("judging the calls as on wsl2,mirrored"), "{}", out.stderr);
    let mut expected = plain.clone();
    for label in ["held-127.0.0.1", "held-::1", "held-udp"] {
        expected.insert(label.to_owned(), "EADDRINUSE".to_owned());
    }
    if eph != 0 {
        expected.insert("windows-ephemeral".to_owned(), "EADDRINUSE".to_owned());
    }
    assert_eq!(emulated, expected);
    let refused = u64::from(eph != 0) + 3;
    let line = format!("port-tracker {refused}");
    assert!(out.stderr.contains(&line), "{line} not in:\n{}", out.stderr);

    let binds: Vec<Value> = out.events().into_iter().filter(|e| e["syscall"] == "bind").collect();
    let ids = |e: &Value| -> Vec<String> {
        e["anomalies"].as_array().map_or(Vec::new(), |a| {
            a.iter().map(|x| x["id"].as_str().unwrap().to_owned()).collect()
        })
    };
    let at = |ip: &str, port: u16| -> Vec<&Value> {
        binds
            .iter()
            .filter(|e| e["args"]["addr"]["ip"] == ip && e["args"]["addr"]["port"] == port)
            .collect()
    };
    for (ip, port) in [("127.0.0.1", held), ("::1", held), ("0.0.0.0", held)] {
        let calls = at(ip, port);
        assert_eq!(calls.len(), 1, "{ip}:{port} in {}", out.stdout);
        let e = calls[0];
        assert_eq!(
            (e["errno"].as_str(), e["refused_by"].as_str()),
            (Some("EADDRINUSE"), Some("seccomp")),
            "{e}"
        );
        assert!(e["duration_ns"].is_null(), "refused before entry: {e}");
        assert!(ids(e).contains(&"WSL2-MIRRORED-PORT-HELD-BY-WINDOWS".to_owned()), "{e}");
    }
    for (ip, port) in [("127.0.0.2", held), ("0.0.0.0", free), ("0.0.0.0", 0), ("127.0.0.1", 53)] {
        let calls = at(ip, port);
        assert_eq!(calls.len(), 1, "{ip}:{port} in {}", out.stdout);
        assert!(calls[0].get("refused_by").is_none(), "let through: {}", calls[0]);
    }
    let busy_call = at("127.0.0.1", busy.local_addr().unwrap().port());
    assert_eq!(busy_call[0]["errno"], "EADDRINUSE");
    assert!(busy_call[0].get("refused_by").is_none(), "the kernel refused it: {}", busy_call[0]);
    assert!(!ids(busy_call[0]).contains(&"WSL2-MIRRORED-PORT-HELD-BY-WINDOWS".to_owned()));
    // listen() goes through the tracker too, and passes for ports it let bind.
    let listens = out.events().into_iter().filter(|e| e["syscall"] == "listen").count();
    assert_eq!(listens, 3, "{}", out.stdout);
    assert!(!cgroup_of(&out.stderr).exists());
}

/// WSL's tracker lets callers in another network namespace (containers) through: the same
/// bind, under `unshare -n`, succeeds; in the VM's namespace it is refused.
#[test]
fn port_tracker_lets_other_network_namespaces_through() {
    let _serial = serial();
    let held = held_port().to_string();
    let code = "import errno, socket, sys\ns = socket.socket()\ntry:\n    s.bind(('0.0.0.0', int(sys.argv[1])))\n    r = '0'\nexcept OSError as e:\n    r = errno.errorcode[e.errno]\nprint('res: bind =', r, file=sys.stderr)";
    let args = [held.clone()];
    for (wrapper, want) in [(&[][..], "EADDRINUSE"), (&["unshare", "-n"][..], "0")] {
        let out = run(wsltrace()
            .args(["emulate", "--quirk", "port-tracker", "--bind-ports", &held, "--"])
            .args(wrapper)
            .args(script(code, &args)));
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(script_results(&out.stderr)["bind"], want, "{wrapper:?}: {}", out.stderr);
    }
}

const CONNECTS: &str = r#"
import errno, socket, sys, time
dead, live = int(sys.argv[1]), int(sys.argv[2])
def conn(label, addr):
    c = socket.socket()
    c.settimeout(3.5)
    t = time.monotonic()
    try:
        c.connect(addr)
        r = "0"
    except socket.timeout:
        r = "timeout"
    except OSError as e:
        r = errno.errorcode[e.errno]
    print(f"res: {label} = {r} {time.monotonic() - t:.1f}", file=sys.stderr)
conn("dead-127.0.0.1", ("127.0.0.1", dead))
conn("dead-127.0.0.2", ("127.0.0.2", dead))
conn("live-127.0.0.1", ("127.0.0.1", live))
"#;

/// WSL2 mirrored networking's loopback: a connect to 127.0.0.1 where nothing listens hangs
/// (here until the client's own 3.5 s timeout) instead of being refused at once, while
/// 127.0.0.2 is still refused and a live listener still answers. The trace reports the
/// hanging connect as blocked, and the knowledge base names the WSL2 rule.
#[test]
fn mirrored_loopback_connect_hangs_where_nothing_listens() {
    let _serial = serial();
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let args = [dead.to_string(), live.local_addr().unwrap().port().to_string()];
    assert_eq!(plain_script(CONNECTS, &args)["dead-127.0.0.1"], "ECONNREFUSED");
    let opts = ["--emulate", "wsl2-mirrored", "--format", "json"];
    let Some((out, emulated)) = emulated_script(&opts, CONNECTS, &args, Some("wsl2-mirrored"))
    else {
        return;
    };
    assert_eq!(emulated["dead-127.0.0.1"], "timeout", "{}", out.stderr);
    assert_eq!(emulated["dead-127.0.0.2"], "ECONNREFUSED");
    assert_eq!(emulated["live-127.0.0.1"], "0");
    let blocked: Vec<Value> =
        out.records().into_iter().filter(|r| r["type"] == "blocked").collect();
    assert_eq!(blocked.len(), 1, "{}", out.stdout);
    assert_eq!(blocked[0]["args"]["addr"]["ip"], "127.0.0.1");
    assert_eq!(blocked[0]["anomalies"][0]["id"], "WSL2-MIRRORED-LOOPBACK-CONNECT-HANG");
    // Each reset the kernel sent for the retried SYN was dropped: at least the first.
    let line = out
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("wsltrace: emulated (replies dropped): loopback-connect-hang ")
        })
        .unwrap_or_else(|| panic!("no drop count in:\n{}", out.stderr));
    assert!(line.parse::<u64>().unwrap() >= 1, "{line}");
}

const DNS_CLIENT: &str = r#"
import socket, sys
port = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(1.5)
u.sendto(b"query", ("127.0.0.1", port))
try:
    u.recvfrom(512)
    r = "answer"
except socket.timeout:
    r = "timeout"
print("res: udp =", r, file=sys.stderr)
t = socket.socket()
t.settimeout(1.5)
t.connect(("127.0.0.1", port))
print("res: tcp-connect = 0", file=sys.stderr)
t.sendall(b"query")
try:
    t.recv(512)
    r = "answer"
except socket.timeout:
    r = "timeout"
print("res: tcp =", r, file=sys.stderr)
"#;

/// DNS tunnelling's dropped queries: the nameserver (here an echo server on 127.0.0.1, named
/// with --dns-server) answers plain clients, but under emulation UDP queries time out and a
/// TCP connection opens and never gets its answer.
#[test]
fn dns_tunnel_drop_leaves_queries_unanswered() {
    let _serial = serial();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0_u8; 512];
        udp.set_read_timeout(Some(std::time::Duration::from_millis(50))).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
            if let Ok((mut conn, _)) = tcp.accept() {
                use std::io::{Read as _, Write as _};
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
                if let Ok(n) = conn.read(&mut buf) {
                    let _ = conn.write_all(&buf[..n]);
                }
            }
        }
    });
    let args = [port.to_string()];
    let plain = plain_script(DNS_CLIENT, &args);
    assert_eq!((plain["udp"].as_str(), plain["tcp"].as_str()), ("answer", "answer"));
    let server_arg = format!("127.0.0.1:{port}");
    let opts = ["emulate", "--quirk", "dns-tunnel-drop", "--dns-server", &server_arg];
    let (out, emulated) = emulated_script(&opts, DNS_CLIENT, &args, None).unwrap();
    assert_eq!(emulated["udp"], "timeout", "{}", out.stderr);
    assert_eq!(emulated["tcp-connect"], "0");
    assert_eq!(emulated["tcp"], "timeout");
    assert!(out.stderr.contains("wsltrace: emulated (replies dropped): dns-tunnel-drop "));
    drop(server);
}

const PEERCRED_SERVER: &str = r#"
import errno, os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(1)
print("ready", file=sys.stderr, flush=True)
c, _ = s.accept()
try:
    c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    r = "0"
except OSError as e:
    r = errno.errorcode[e.errno]
print("res: server =", r, file=sys.stderr, flush=True)
"#;

const PEERCRED_CLIENT: &str = r#"
import errno, socket, sys, time
for _ in range(100):
    try:
        c = socket.socket(socket.AF_UNIX)
        c.connect(sys.argv[1])
        break
    except OSError:
        time.sleep(0.05)
try:
    c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    r = "0"
except OSError as e:
    r = errno.errorcode[e.errno]
print("res: client =", r, file=sys.stderr, flush=True)
time.sleep(0.3)
"#;

/// The peer-credentials quirk follows the caller, not the socket: an emulated server (ssh-agent,
/// PostgreSQL) fails SO_PEERCRED on the sockets it accepts from clients outside the emulation
/// (those sockets belong to the clients' cgroup), and a client outside is untouched; the other
/// way round, too.
#[test]
fn peercred_quirk_reaches_servers_whose_clients_run_outside() {
    let _serial = serial();
    let quirk = ["emulate", "--quirk", "peercred-enoprotoopt", "--"];
    if !cannot_run(&["peercred-enoprotoopt"]).is_empty() {
        assert!(refused_here(&run(wsltrace().args(quirk).arg("true")), &["peercred-enoprotoopt"]));
        return;
    }
    let dir = std::env::temp_dir().join(format!("wsltrace-peercred-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for emulated_side in ["server", "client"] {
        let path = dir.join(format!("{emulated_side}.sock")).display().to_string();
        let args = [path.clone()];
        let emulate = |code| {
            let mut cmd = wsltrace();
            cmd.args(quirk).args(script(code, &args));
            cmd
        };
        let plain = |code| {
            let mut cmd = Command::new(python());
            cmd.args(&script(code, &args)[1..]);
            cmd
        };
        let (mut server, mut client) = match emulated_side {
            "server" => (emulate(PEERCRED_SERVER), plain(PEERCRED_CLIENT)),
            _ => (plain(PEERCRED_SERVER), emulate(PEERCRED_CLIENT)),
        };
        let server = server.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let client_out = run(&mut client);
        let server_out = server.wait_with_output().unwrap();
        let server_err = String::from_utf8_lossy(&server_out.stderr).into_owned();
        let both = format!("{server_err}{}", client_out.stderr);
        let results = script_results(&both);
        let (server_want, client_want) = match emulated_side {
            "server" => ("ENOPROTOOPT", "0"),
            _ => ("0", "ENOPROTOOPT"),
        };
        assert_eq!(results["server"], server_want, "{emulated_side} emulated:\n{both}");
        assert_eq!(results["client"], client_want, "{emulated_side} emulated:\n{both}");
        assert!(
            both.contains("wsltrace: emulated (calls failed): peercred-enoprotoopt 1"),
            "{both}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
