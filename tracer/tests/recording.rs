//! Recordings (`-o`) and `wsltrace analyze`, against the running kernel: what is recorded live
//! reads back the same; files survive SIGINT, SIGTERM and SIGKILL; damaged input is reported
//! by line; files are created safely and belong to the sudo user.

mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use common::{
    Output, Tracer, WSLTRACE, Workload, demo_command, outcome, parse_records, run, wsltrace,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// Tests that flood the ring buffer take a core each: one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A scratch directory, removed when the test ends.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("wsltrace-rec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The raw lines of a recording (decompressed if it is zstd): the whole lines, and a last
/// line without newline if there is one. A zstd stream cut short ends the lines quietly.
fn raw_lines(path: &Path) -> (Vec<String>, Option<String>) {
    let file = std::fs::File::open(path).expect("open recording");
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "zst") {
        let mut decoder = zstd::Decoder::new(file).expect("zstd");
        let mut buf = [0_u8; 4096];
        loop {
            match decoder.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    } else {
        BufReader::new(file).read_to_end(&mut bytes).expect("read recording");
    }
    let text = String::from_utf8(bytes).expect("UTF-8");
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let partial = lines.pop_if(|l| !l.ends_with('\n'));
    (lines.into_iter().map(|l| l.trim_end().to_owned()).collect(), partial)
}

/// Every line of a complete recording, parsed.
fn records(path: &Path) -> Vec<Value> {
    let (lines, partial) = raw_lines(path);
    assert_eq!(partial, None, "{} ends mid-line", path.display());
    parse_records(&lines.join("\n"))
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

/// A header first, a footer last, and the footer's counts are those of the records between.
fn assert_complete(records: &[Value]) {
    assert_eq!(records.first().map(|r| &r["type"]), Some(&json!("header")), "{records:?}");
    assert_eq!(records[0]["format"], "wsltrace-recording");
    assert_eq!(records[0]["schema_version"], "1.4");
    let kind = common::probe_kind().unwrap_or_else(|| "tracepoint".to_owned());
    assert_eq!(records[0]["probe_kind"], kind.as_str(), "the header names the probe kind");
    let footer = records.last().expect("records");
    assert_eq!(footer["type"], "footer", "the last record is not a footer");
    let events = of_type(records, "event");
    let lost: u64 = of_type(records, "loss").iter().map(|l| l["lost"].as_u64().unwrap()).sum();
    let mut per_syscall: BTreeMap<String, u64> = BTreeMap::new();
    for ev in &events {
        *per_syscall.entry(ev["syscall"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(footer["events"], events.len() as u64);
    assert_eq!(footer["lost"], lost);
    assert_eq!(footer["exits"], of_type(records, "exit").len() as u64);
    assert_eq!(footer["syscalls"], json!(per_syscall));
}

fn analyze(args: &[&str]) -> Output {
    run(wsltrace().arg("analyze").args(args))
}

/// wsltrace as root without sudo's variables, whatever environment the tests run in.
fn as_root() -> std::process::Command {
    let mut cmd = wsltrace();
    cmd.env_remove("SUDO_UID").env_remove("SUDO_GID");
    cmd
}

/// An event without what differs between two tracers watching the same call (each program
/// reads the clock itself).
fn untimed(ev: &Value) -> Value {
    let mut ev = ev.clone();
    for key in ["ts", "ts_ns", "duration_ns"] {
        ev.as_object_mut().expect("object").remove(key);
    }
    ev
}

/// A file's records as `analyze --format json` outputs them (events, losses, exits).
fn analysed_events(args: &[&str]) -> (Output, Vec<Value>) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = analyze(&all);
    let events = out.events();
    (out, events)
}

/// Live: `demo all` to the terminal as JSON and to a recording. Analyze: the recording.
/// Same records, same findings, same summary, for plain and zstd files.
#[test]
fn live_and_analyze_agree() {
    let dir = Dir::new("roundtrip");
    for name in ["all.jsonl", "all.jsonl.zst"] {
        let live = run(wsltrace().args(["demo", "all", "--format", "json", "-o", &dir.s(name)]));
        assert!(live.status.success(), "{}", live.stderr);
        let recorded = records(&dir.path(name));
        assert_complete(&recorded);
        assert!(recorded[0]["command_line"].to_string().contains(name));
        assert!(
            recorded[0]["facts"]["machine"]["kernel_release"]
                .as_str()
                .is_some_and(|k| !k.is_empty())
        );

        let out = analyze(&["--format", "json", &dir.s(name)]);
        assert!(out.status.success(), "{}", out.stderr);
        // Everything the terminal got, in order: events with their findings, exits, losses.
        assert_eq!(out.records(), live.records(), "{name}");
        assert!(live.events().len() > 50);
        assert_eq!(out.summary(), live.summary());
    }

    // -c: the live summary and the one analyze computes from the recording are identical.
    let live =
        run(wsltrace().args(["demo", "all", "-c", "--format", "json", "-o", &dir.s("c.jsonl")]));
    assert!(live.status.success(), "{}", live.stderr);
    let live_summary = live.records();
    assert_eq!(live_summary.len(), 1, "-c prints one object: {}", live.stdout);
    let out = analyze(&["-c", "--format", "json", &dir.s("c.jsonl")]);
    assert_eq!(out.records(), live_summary);
    let summary = &live_summary[0];
    assert_eq!(summary["type"], "summary");
    let connect = summary["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["syscall"] == "connect")
        .expect("connect row");
    assert_eq!(connect["errnos"], json!({"ECONNREFUSED": 1, "ENOENT": 1}));
    let lat = &connect["latency_ns"];
    assert!(
        lat["p50"].as_u64() <= lat["p99"].as_u64() && lat["p99"].as_u64() <= lat["max"].as_u64()
    );
    assert_eq!(summary["events"], of_type(&records(&dir.path("c.jsonl")), "event").len());

    // And as a table.
    let table = analyze(&["-c", &dir.s("c.jsonl")]);
    assert!(table.status.success());
    let row = table.stdout.lines().find(|l| l.trim_start().starts_with("connect")).unwrap();
    assert!(row.contains("ECONNREFUSED 1, ENOENT 1"), "{row}");
    assert!(table.stdout.contains("lost events: 0"));
}

/// With stdout on /dev/null nothing is formatted for it, and the recording is the same.
#[test]
fn recording_with_stdout_discarded() {
    let dir = Dir::new("devnull");
    let out = wsltrace()
        .args(["demo", "all", "-o", &dir.s("quiet.jsonl")])
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let recorded = records(&dir.path("quiet.jsonl"));
    assert_complete(&recorded);
    let events = of_type(&recorded, "event");
    assert!(events.len() > 50, "{}", events.len());
    // The closing line still counts every event, and the findings are still summarised.
    let last = stderr.lines().last().unwrap();
    assert_eq!(common::parse_summary(last), Some((events.len() as u64, 0)), "{stderr}");
    assert!(stderr.contains("CONNECT-REFUSED"), "{stderr}");
}

/// `-e` live (in the kernel) and `analyze -e` of an unfiltered recording of the same calls
/// (two tracers on one workload) select the same calls.
#[test]
fn live_errno_filter_equals_analyze_errno_filter() {
    let dir = Dir::new("errno");
    let errnos = "ECONNREFUSED,EADDRINUSE,ENOENT,EINVAL";
    let mut workload = Workload::start(&["all", "--wait"]);
    let pid = workload.pid.to_string();
    let filtered = Tracer::attach(&["--pid", &pid, "--format", "json", "-e", errnos]);
    let recorder = Tracer::attach(&["--pid", &pid, "-c", "-o", &dir.s("all.jsonl")]);
    workload.go();
    assert!(workload.wait().success());
    let filtered = filtered.finish();
    assert!(recorder.finish().status.success());

    let live: Vec<Value> = filtered.events().iter().map(untimed).collect();
    let (out, analysed) = analysed_events(&["-e", errnos, &dir.s("all.jsonl")]);
    assert!(out.status.success(), "{}", out.stderr);
    let analysed: Vec<Value> = analysed.iter().map(untimed).collect();
    assert_eq!(live, analysed);
    let outcomes: Vec<String> = live.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            "bind=EADDRINUSE",
            "connect=ECONNREFUSED",
            "connect=ENOENT",
            "shutdown=EINVAL",
            "accept=EINVAL",
            "setsockopt=EINVAL"
        ]
        .map(str::to_owned)
    );
    // The recording holds every call; analyze says how many it filtered out.
    let all = of_type(&records(&dir.path("all.jsonl")), "event").len();
    assert!(out.stderr.contains(&format!("({} filtered out)", all - live.len())), "{}", out.stderr);
}

/// The filters `analyze` applies, on a recording of `demo all`.
#[test]
fn analyze_filters() {
    let dir = Dir::new("filters");
    let file = dir.s("all.jsonl");
    let live = run(wsltrace().args(["demo", "all", "--format", "json", "-o", &file]));
    assert!(live.status.success());
    let all = live.events();
    let pid = all[0]["pid"].as_u64().unwrap().to_string();
    let count = |args: &[&str]| {
        let mut args = args.to_vec();
        args.push(&file);
        let (out, events) = analysed_events(&args);
        assert!(out.status.success(), "{args:?}: {}", out.stderr);
        events
    };
    let syscalls = |events: Vec<Value>| -> Vec<String> {
        events.iter().map(|e| e["syscall"].as_str().unwrap().to_owned()).collect()
    };

    assert_eq!(count(&["-s", "listen"]).len(), 3);
    assert_eq!(count(&["--failed"]).len(), 9);
    assert_eq!(count(&["--pid", &pid]).len(), all.len());
    assert_eq!(count(&["--pid", "1"]).len(), 0);
    assert_eq!(count(&["--comm", "wsltrace"]).len(), all.len());
    assert_eq!(count(&["--comm", "nginx"]).len(), 0);
    assert_eq!(count(&["--since", "+1h"]).len(), 0);
    assert_eq!(count(&["--until", "+1h"]).len(), all.len());
    let first_ts = all[0]["ts"].as_str().unwrap();
    let last_ts = all.last().unwrap()["ts"].as_str().unwrap();
    assert_eq!(count(&["--since", first_ts, "--until", last_ts]).len(), all.len());
    assert_eq!(count(&["--since", last_ts]).len(), 1);

    // The unix socket of the demo: every call on a socket bound or connected to its path (the
    // fd table says which), not just the calls that name it.
    let sock = format!("/tmp/wsltrace-demo-{pid}/app.sock");
    assert_eq!(
        syscalls(count(&["--addr", &sock])),
        ["bind", "listen", "connect", "accept", "getsockopt", "close", "close", "close"]
    );
    assert_eq!(
        syscalls(count(&["--addr", &format!("@wsltrace-demo-{pid}")])),
        ["bind", "getsockname", "close"]
    );
    // The refused connect's port, any address and exactly.
    let refused = all.iter().find(|e| e["errno"] == "ECONNREFUSED").unwrap();
    let port = refused["args"]["addr"]["port"].as_u64().unwrap();
    let on_port = count(&["--addr", &format!(":{port}")]);
    assert!(on_port.iter().any(|e| e["errno"] == "ECONNREFUSED"));
    assert_eq!(count(&["--addr", &format!("127.0.0.1:{port}"), "-s", "connect"]).len(), 1);
    assert_eq!(count(&["--addr", "[::1]:1"]).len(), 0);

    // --anomalies-only keeps exactly the events with findings: the knowledge base's, as
    // recorded live and re-evaluated with today's rules.
    let (_, everything) = analysed_events(&[&file]);
    let flagged_ids = |events: &[Value]| -> Vec<(String, Vec<String>)> {
        events
            .iter()
            .filter(|e| e["anomalies"].as_array().is_some_and(|a| !a.is_empty()))
            .map(|e| {
                let ids = e["anomalies"].as_array().unwrap().iter();
                (
                    e["syscall"].as_str().unwrap().to_owned(),
                    ids.map(|f| f["id"].as_str().unwrap().to_owned()).collect(),
                )
            })
            .collect()
    };
    let expected = flagged_ids(&everything);
    assert_eq!(
        expected,
        [
            ("bind".to_owned(), vec!["ADDRESS-IN-USE".to_owned()]),
            ("connect".to_owned(), vec!["CONNECT-REFUSED".to_owned()]),
            ("connect".to_owned(), vec!["UNIX-CONNECT-NO-FILE".to_owned()]),
        ]
    );
    let (out, flagged) = analysed_events(&["--anomalies-only", &file]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(flagged_ids(&flagged), expected);
    assert_eq!(flagged.len(), expected.len());

    // A finding recorded by rules analyze does not have (a user's --rules at trace time) is
    // kept next to today's.
    let finding = json!({"id":"TEST-RULE","severity":"warning","title":"t","fix":"f"});
    let edited: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|line| {
            let mut rec: Value = serde_json::from_str(line).unwrap();
            if rec["errno"] == "ECONNREFUSED" {
                rec["anomalies"] = json!([finding]);
            }
            rec.to_string()
        })
        .collect();
    std::fs::write(dir.path("flagged.jsonl"), edited.join("\n") + "\n").unwrap();
    let (_, flagged) = analysed_events(&["--anomalies-only", &dir.s("flagged.jsonl")]);
    let refused = flagged.iter().find(|e| e["errno"] == "ECONNREFUSED").unwrap();
    let ids: Vec<&str> = refused["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["TEST-RULE", "CONNECT-REFUSED"]);
    let summary = analyze(&["-c", "--format", "json", &dir.s("flagged.jsonl")]).records();
    let rows = summary[0]["findings"].as_array().unwrap();
    assert!(
        rows.contains(&json!({"id":"TEST-RULE","severity":"warning","title":"t","count":1})),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    let text = analyze(&["-c", &dir.s("flagged.jsonl")]);
    assert!(text.stdout.contains("TEST-RULE"), "{}", text.stdout);

    // analyze -o: a filtered recording that keeps the original environment.
    let out = analyze(&["-e", "ECONNREFUSED", "-o", &dir.s("refused.jsonl"), &file]);
    assert!(out.status.success(), "{}", out.stderr);
    let derived = records(&dir.path("refused.jsonl"));
    assert_complete(&derived);
    assert_eq!(of_type(&derived, "event").len(), 1);
    let source = records(&dir.path("all.jsonl"));
    assert_eq!(derived[0]["facts"], source[0]["facts"]);
    assert_eq!(derived[0]["start"], source[0]["start"]);
    assert_eq!(derived[0]["derived_from"], json!([file]));
    assert_eq!(derived[0]["filters"], json!({"errnos":["ECONNREFUSED"]}));
}

/// Userspace filters apply live too (the kernel cannot match addresses).
#[test]
fn live_userspace_filters() {
    let dir = Dir::new("live-filters");
    let out = run(wsltrace()
        .args(["--format", "json", "--addr", "127.0.0.1", "-o", &dir.s("f.jsonl"), "--"])
        .args(demo_command(&["refused"])));
    assert!(out.status.success(), "{}", out.stderr);
    let syscalls: Vec<String> =
        out.events().iter().map(|e| e["syscall"].as_str().unwrap().to_owned()).collect();
    // The probe socket bound to 127.0.0.1 is closed too; the client socket never had a
    // 127.0.0.1 address of its own (its connect was refused).
    assert_eq!(syscalls, ["bind", "getsockname", "close", "connect"]);
    assert!(out.stderr.contains("(3 filtered out)"), "{}", out.stderr);
    // The recording holds what passed the filters, and says which they were.
    let recorded = records(&dir.path("f.jsonl"));
    assert_complete(&recorded);
    assert_eq!(of_type(&recorded, "event").len(), 4);
    assert_eq!(recorded[0]["filters"], json!({"addrs":["127.0.0.1"]}));
}

/// Starts a flood of calls under a recording tracer and waits until the file shows events
/// while the tracer still runs (it is flushed periodically, not only at the end).
fn recording_flood(file: &str) -> (Workload, Tracer) {
    let mut workload =
        Workload::start(&["burst", "--wait", "--count", "100000000", "--threads", "1"]);
    let pid = workload.pid.to_string();
    let tracer = Tracer::attach(&["--pid", &pid, "-c", "--format", "json", "-o", file]);
    workload.go();
    let started = Instant::now();
    let path = Path::new(file);
    while !raw_lines(path).0.iter().any(|l| l.contains("\"type\":\"event\"")) {
        assert!(started.elapsed() < Duration::from_secs(10), "no event reached {file}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Mid-stream: the tracer is busy.
    std::thread::sleep(Duration::from_millis(300));
    (workload, tracer)
}

/// SIGINT and SIGTERM in the middle of a flood: every line whole, a footer whose counts
/// are the file's; analyze reads it without a problem.
#[test]
fn sigint_and_sigterm_leave_complete_recordings() {
    let _heavy = heavy();
    let dir = Dir::new("signals");
    for (signal, name) in [(Signal::SIGINT, "int.jsonl"), (Signal::SIGTERM, "term.jsonl.zst")] {
        let (workload, tracer) = recording_flood(&dir.s(name));
        tracer.signal(signal);
        let out = tracer.finish();
        drop(workload);
        assert_eq!(out.status.code(), Some(128 + signal as i32), "{}", out.stderr);
        let recorded = records(&dir.path(name));
        assert_complete(&recorded);
        let footer = recorded.last().unwrap();
        // The -c summary printed at the end counts the same.
        let summary = &out.records()[0];
        assert_eq!((&summary["events"], &summary["lost"]), (&footer["events"], &footer["lost"]));
        let check = analyze(&[&dir.s(name)]);
        assert!(check.status.success(), "{name}: {}", check.stderr);
        let (events, lost) = check.summary();
        assert_eq!(
            (json!(events), json!(lost)),
            (footer["events"].clone(), footer["lost"].clone())
        );
    }
}

/// On ext4 a recording's blocks are reserved ahead of its writes (`fallocate` with KEEP_SIZE:
/// the file's size is only what was written) and what is left of the reservation is given back
/// when the recording ends: plain and compressed, each ended by a signal mid-flood.
#[test]
fn room_reserved_ahead_of_a_recording_is_given_back() {
    let _heavy = heavy();
    let dir = Dir::new("reserved");
    let fs = nix::sys::statfs::statfs(&dir.0).expect("statfs of the test dir");
    if fs.filesystem_type() != nix::sys::statfs::EXT4_SUPER_MAGIC {
        eprintln!("{} is not on ext4: nothing is reserved there; not checked", dir.0.display());
        return;
    }
    let allocated = |path: &Path| {
        let meta = std::fs::metadata(path).expect("the recording");
        (meta.len(), meta.blocks() * 512)
    };
    for name in ["plain.jsonl", "compressed.jsonl.zst"] {
        let (workload, tracer) = recording_flood(&dir.s(name));
        let (len, blocks) = allocated(&dir.path(name));
        // At least half of the 8 MB step is kept reserved past what was written.
        assert!(
            blocks >= len + (1 << 20),
            "{name}: {blocks} bytes allocated for {len} while tracing"
        );
        tracer.signal(Signal::SIGINT);
        let out = tracer.finish();
        drop(workload);
        assert_eq!(out.status.code(), Some(130), "{}", out.stderr);
        assert_complete(&records(&dir.path(name)));
        let (len, blocks) = allocated(&dir.path(name));
        assert!(
            len > 0 && blocks < len + 8192,
            "{name}: {blocks} bytes allocated for {len} at the end"
        );
    }
}

/// A long recording gives its pages back to the page cache as it grows (written back, then
/// dropped, two 8 MB windows behind its end): a recording of 160 MB and more ends with less
/// than half of it cached. Not where the file's pages are its storage (tmpfs).
#[test]
fn a_long_recording_does_not_stay_in_the_page_cache() {
    let _heavy = heavy();
    let dir = Dir::new("drop-behind");
    let fs = nix::sys::statfs::statfs(&dir.0).expect("statfs of the test dir");
    if fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC {
        eprintln!("{} is in memory: its pages cannot be given back; not checked", dir.0.display());
        return;
    }
    let name = "long.jsonl";
    let (workload, tracer) = recording_flood(&dir.s(name));
    let started = Instant::now();
    let len = || std::fs::metadata(dir.path(name)).map_or(0, |m| m.len());
    while len() < 160 << 20 {
        assert!(started.elapsed() < Duration::from_secs(60), "{} bytes recorded in 60 s", len());
        std::thread::sleep(Duration::from_millis(50));
    }
    tracer.signal(Signal::SIGINT);
    let out = tracer.finish();
    drop(workload);
    assert_eq!(out.status.code(), Some(130), "{}", out.stderr);
    // Measured before the file is read back, which caches it.
    let (len, cached) = (len(), cached(&dir.path(name)));
    assert!(cached < len / 2, "{cached} bytes of the {len}-byte recording in the page cache");
    assert_complete(&records(&dir.path(name)));
}

/// How many bytes of the file at `path` are in the page cache (`mincore` of a mapping).
fn cached(path: &Path) -> u64 {
    use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
    let file = std::fs::File::open(path).expect("the recording");
    let len = file.metadata().expect("its size").len() as usize;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .expect("sysconf")
        .expect("a page size") as usize;
    let Some(size) = std::num::NonZeroUsize::new(len) else { return 0 };
    // SAFETY: a read-only shared mapping of a file no one writes any more, never read here.
    let map = unsafe { mmap(None, size, ProtFlags::PROT_READ, MapFlags::MAP_SHARED, &file, 0) }
        .expect("mmap of the recording");
    let mut resident = vec![0u8; len.div_ceil(page)];
    // SAFETY: the mapping is `len` bytes long and `resident` has a byte for each of its pages.
    let rc = unsafe { libc::mincore(map.as_ptr(), len, resident.as_mut_ptr()) };
    // SAFETY: the mapping made above, of that length, unmapped once.
    unsafe { munmap(map, len) }.expect("munmap");
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    resident.iter().filter(|&&b| b & 1 != 0).count() as u64 * page as u64
}

/// SIGKILL: no footer, at most one partial line, the last; analyze reads every whole line,
/// reports where the file was cut, and exits non-zero.
#[test]
fn sigkill_leaves_a_readable_recording() {
    let _heavy = heavy();
    let dir = Dir::new("sigkill");
    let file = dir.s("killed.jsonl");
    let (workload, tracer) = recording_flood(&file);
    tracer.signal(Signal::SIGKILL);
    let out = tracer.finish();
    drop(workload);
    let signal = std::os::unix::process::ExitStatusExt::signal(&out.status);
    assert_eq!(signal, Some(Signal::SIGKILL as i32));

    let (lines, partial) = raw_lines(Path::new(&file));
    let whole = parse_records(&lines.join("\n"));
    assert_eq!(whole[0]["type"], "header");
    assert!(of_type(&whole, "footer").is_empty());
    let events = of_type(&whole, "event").len() as u64;
    assert!(events > 0);

    let check = analyze(&[&file]);
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(check.summary().0, events);
    let reported = match &partial {
        Some(_) => format!("{file}:{}: the last line is cut short", lines.len() + 1),
        None => format!("{file}:{}: no footer", lines.len()),
    };
    assert!(check.stderr.contains(&reported), "{reported} in\n{}", check.stderr);
}

/// Damaged input: each problem named with its file and line; what can be read is; exit 1.
#[test]
fn damaged_recordings_are_reported_by_line() {
    let dir = Dir::new("damaged");
    let good = dir.path("good.jsonl");
    let live = run(wsltrace().args(["demo", "refused", "-o", good.to_str().unwrap()]));
    assert!(live.status.success(), "{}", live.stderr);
    let lines: Vec<String> =
        std::fs::read_to_string(&good).unwrap().lines().map(Into::into).collect();
    let (_, expected) = analysed_events(&[good.to_str().unwrap()]);
    assert_eq!(expected.len(), 7);
    let write = |name: &str, lines: &[String], tail: &str| {
        let path = dir.path(name);
        std::fs::write(&path, lines.join("\n") + tail).unwrap();
        path.display().to_string()
    };
    let with_line = |at: usize, line: &str| {
        let mut l = lines.clone();
        l.insert(at, line.to_owned());
        l
    };

    let cases: Vec<(String, String, usize)> = vec![
        // (file, message, events still read)
        (
            write("garbage.jsonl", &with_line(2, "GARBAGE \u{1}{"), "\n"),
            "garbage.jsonl:3: not a JSON object".into(),
            7,
        ),
        (
            write("unknown.jsonl", &with_line(3, r#"{"type":"frobnicate","x":1}"#), "\n"),
            r#"unknown.jsonl:4: unknown record type "frobnicate""#.into(),
            7,
        ),
        (
            write("badevent.jsonl", &with_line(3, r#"{"type":"event","pid":"x"}"#), "\n"),
            "badevent.jsonl:4: this event record cannot be read".into(),
            7,
        ),
        (
            // The last line cut in the middle, footer gone: a killed wsltrace.
            write("cut.jsonl", &lines[..7], &format!("\n{}", &lines[7][..40])),
            "cut.jsonl:8: the last line is cut short".into(),
            6,
        ),
        (
            write("nofooter.jsonl", &lines[..lines.len() - 1], "\n"),
            format!("nofooter.jsonl:{}: no footer", lines.len() - 1),
            7,
        ),
        (
            write("missing.jsonl", &[&lines[..3], &lines[4..]].concat(), "\n"),
            "missing.jsonl:9: the footer counts 7 events and 0 lost, the file holds 6 events"
                .into(),
            6,
        ),
    ];
    for (file, message, events) in &cases {
        let (out, read) = analysed_events(&[file]);
        assert_eq!(out.status.code(), Some(1), "{file}");
        assert!(out.stderr.contains(message), "{message} in\n{}", out.stderr);
        assert_eq!(read.len(), *events, "{file}");
        assert!(read.iter().all(|e| expected.contains(e)), "{file}: events changed");
    }

    // A newer major schema is refused; a newer minor is read (its new types are noted only).
    let mut newer = lines.clone();
    newer[0] = newer[0].replace(r#""schema_version":"1.4""#, r#""schema_version":"2.0""#);
    let newer = write("newer.jsonl", &newer, "\n");
    let (out, read) = analysed_events(&[&newer, good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("newer.jsonl:1: recorded with schema 2.0, newer than this wsltrace reads (1.x): upgrade wsltrace"),
        "{}",
        out.stderr
    );
    assert_eq!(read, expected, "the other file is still analysed");
    let mut minor = with_line(3, r#"{"type":"frobnicate"}"#);
    minor[0] = minor[0].replace(r#""schema_version":"1.4""#, r#""schema_version":"1.7""#);
    let minor = write("minor.jsonl", &minor, "\n");
    let (out, read) = analysed_events(&[&minor]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("note: ") && out.stderr.contains("minor.jsonl:4: unknown record type")
    );
    assert_eq!(read, expected);

    // A zstd recording cut short: the lines before the cut are read, the cut is reported.
    let zst = dir.path("burst.jsonl.zst");
    let live = run(wsltrace().args([
        "demo",
        "burst",
        "--count",
        "5000",
        "--threads",
        "1",
        "--format",
        "json",
        "-o",
        zst.to_str().unwrap(),
    ]));
    assert!(live.status.success());
    let bytes = std::fs::read(&zst).unwrap();
    let cut = dir.path("cut.jsonl.zst");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (out, read) = analysed_events(&[cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("the zstd data end in the middle of a frame"), "{}", out.stderr);
    let line = out.stderr.lines().find(|l| l.contains("cut.jsonl.zst:")).unwrap();
    assert!(line.split(':').nth(3).is_some_and(|n| n.parse::<u64>().is_ok()), "{line}");
    assert!(!read.is_empty() && read.len() < live.events().len(), "{}", read.len());
    assert_eq!(read, live.events()[..read.len()], "a prefix of the recorded events");

    // Not a recording at all, and a file that does not exist: named, and the others read.
    std::fs::write(dir.path("empty.jsonl"), "").unwrap();
    let (out, read) =
        analysed_events(&[&dir.s("empty.jsonl"), &dir.s("nothing.jsonl"), good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("empty.jsonl: empty"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing.jsonl: cannot read it"), "{}", out.stderr);
    assert_eq!(read, expected);
}

/// `--rotate`: numbered parts, each framed, the last marked; analyze reads the set in order
/// from its base name or from the parts in any order.
#[test]
fn rotation_into_numbered_parts() {
    let dir = Dir::new("rotate");
    for (base, size) in [("rot.jsonl", "16K"), ("rot.jsonl.zst", "4K")] {
        let out = run(wsltrace()
            .args(["-c", "-o", &dir.s(base), "--rotate", size, "--"])
            .args(demo_command(&["burst", "--count", "3000", "--threads", "1"])));
        assert!(out.status.success(), "{}", out.stderr);
        assert!(!dir.path(base).exists());
        let (stem, ext) = base.split_once('.').unwrap();
        let parts: Vec<PathBuf> = (1..)
            .map(|n| dir.path(&format!("{stem}.{n:03}.{ext}")))
            .take_while(|p| p.exists())
            .collect();
        assert!(parts.len() >= 3, "{base}: {parts:?}");
        let mut events = 0;
        let mut lost = 0;
        let mut session = None;
        for (i, part) in parts.iter().enumerate() {
            let recorded = records(part);
            assert_complete(&recorded);
            let (header, footer) = (&recorded[0], recorded.last().unwrap());
            assert_eq!(header["part"], i + 1);
            assert_eq!(footer["last_part"], i + 1 == parts.len());
            assert_eq!(*session.get_or_insert(header["session"].clone()), header["session"]);
            events += footer["events"].as_u64().unwrap();
            lost += footer["lost"].as_u64().unwrap();
        }
        // burst makes count + 2 calls per thread.
        assert_eq!(events + lost, 3002, "{base}");

        let (whole, in_order) = analysed_events(&[&dir.s(base)]);
        assert!(whole.status.success(), "{}", whole.stderr);
        assert_eq!(in_order.len() as u64, events);
        let ts: Vec<u64> = in_order.iter().map(|e| e["ts_ns"].as_u64().unwrap()).collect();
        let mut reversed: Vec<&str> = parts.iter().map(|p| p.to_str().unwrap()).collect();
        reversed.reverse();
        let (_, shuffled) = analysed_events(&reversed);
        assert_eq!(shuffled, in_order);
        assert!(ts.first() < ts.last());

        // --append with --rotate continues the numbering.
        let out = run(wsltrace()
            .args(["-c", "-o", &dir.s(base), "--rotate", size, "--append", "--"])
            .args(demo_command(&["refused"])));
        assert!(out.status.success(), "{}", out.stderr);
        let next = dir.path(&format!("{stem}.{:03}.{ext}", parts.len() + 1));
        let recorded = records(&next);
        assert_complete(&recorded);
        assert_eq!(recorded[0]["part"], 1);
        assert_eq!(of_type(&recorded, "event").len(), 7);
    }
}

/// Under sudo the recording (every part) belongs to the invoking user, who can analyse it.
#[test]
fn recordings_belong_to_the_sudo_user() {
    use std::os::unix::process::CommandExt as _;
    let dir = Dir::new("owner");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run(wsltrace()
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65533")
        .args(["-c", "-o", &dir.s("mine.jsonl"), "--rotate", "4K", "--"])
        .args(demo_command(&["all"])));
    assert!(out.status.success(), "{}", out.stderr);
    let parts: Vec<PathBuf> =
        std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(parts.len() >= 2, "{parts:?}");
    for part in &parts {
        let meta = part.metadata().unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (65534, 65533, 0o600),
            "{part:?}"
        );
    }
    // The owner, unprivileged, reads it.
    let as_user = run(wsltrace()
        .args(["analyze", "-c", "--format", "json", &dir.s("mine.jsonl")])
        .uid(65534)
        .gid(65533));
    assert!(as_user.status.success(), "{}", as_user.stderr);
    assert!(as_user.records()[0]["events"].as_u64() > Some(50));
}

/// wsltrace never writes through a link, nor into a file it did not create unless
/// --append, and then only into a plain file of the invoking user.
#[test]
fn output_files_are_created_safely() {
    let dir = Dir::new("safe");
    let target = dir.path("precious");
    std::fs::write(&target, "keep\n").unwrap();
    let link = dir.path("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dangling = dir.path("dangling.jsonl");
    std::os::unix::fs::symlink(dir.path("created-through-link"), &dangling).unwrap();
    let refused = |args: &[&str], message: &str| {
        let out = run(as_root().args(args).arg("--").args(demo_command(&["refused"])));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {}", out.stderr);
        assert!(
            lines[0].starts_with("wsltrace: error: ") && lines[0].contains(message),
            "{}",
            lines[0]
        );
    };
    for path in [&link, &dangling] {
        let path = path.to_str().unwrap();
        refused(&["-o", path], "is a symbolic link: wsltrace never writes through links");
        refused(&["-o", path, "--append"], "is a symbolic link");
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
    assert!(!dir.path("created-through-link").exists());

    // An existing file: refused without --append, left as it was.
    let file = dir.s("events.jsonl");
    std::fs::write(&file, "").unwrap();
    refused(
        &["-o", &file],
        "already exists: wsltrace only writes files it creates; choose a new name, remove it, or add --append",
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"");
    std::fs::remove_file(&file).unwrap();

    // --append: a second session after the first, each framed; analyze reads both.
    append_two_sessions(&file);
    let recorded = records(Path::new(&file));
    let headers = of_type(&recorded, "header");
    assert_eq!((headers.len(), of_type(&recorded, "footer").len()), (2, 2));
    assert_ne!(headers[0]["session"], headers[1]["session"]);
    let second = recorded.iter().position(|r| r["type"] == "header" && r != &recorded[0]).unwrap();
    assert_complete(&recorded[..second]);
    assert_complete(&recorded[second..]);
    let (out, events) = analysed_events(&[&file]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(events.len(), 14);

    // A crashed session's partial line is closed before appending: only that line is lost.
    let crashed = dir.s("crashed.jsonl");
    std::fs::write(
        &crashed,
        format!(
            "{}\n{{\"type\":\"ev",
            std::fs::read_to_string(&file).unwrap().lines().next().unwrap()
        ),
    )
    .unwrap();
    let out = run(as_root()
        .args(["-c", "-o", &crashed, "--append", "--"])
        .args(demo_command(&["refused"])));
    assert!(out.status.success(), "{}", out.stderr);
    let (out, events) = analysed_events(&[&crashed]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("crashed.jsonl:2: not a JSON object"), "{}", out.stderr);
    assert!(
        out.stderr.contains("crashed.jsonl:2: no footer before the next header"),
        "{}",
        out.stderr
    );
    assert_eq!(events.len(), 7);

    // Someone else's file, or one with another name (a hard link): never appended to.
    let theirs = dir.s("theirs.jsonl");
    std::fs::write(&theirs, "").unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    refused(&["-o", &theirs, "--append"], "belongs to uid 65534, not to you (uid 0)");
    let out = run(as_root()
        .env("SUDO_UID", "65534")
        .args(["-c", "-o", &theirs, "--append", "--"])
        .args(demo_command(&["refused"])));
    assert!(out.status.success(), "the sudo user's own file: {}", out.stderr);
    std::fs::hard_link(&target, dir.path("hard.jsonl")).unwrap();
    refused(&["-o", &dir.s("hard.jsonl"), "--append"], "hard links");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");

    // zstd: a second session is a second frame; after a damaged frame nothing could be read
    // back, so appending is refused.
    let zst = dir.s("events.jsonl.zst");
    append_two_sessions(&zst);
    let (out, events) = analysed_events(&[&zst]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(events.len(), 14);
    let bytes = std::fs::read(&zst).unwrap();
    let damaged = dir.s("damaged.jsonl.zst");
    std::fs::write(&damaged, &bytes[..bytes.len() - 10]).unwrap();
    refused(&["-o", &damaged, "--append"], "does not end with a complete zstd frame");
}

/// The recording is on disk shortly after each call, not only when the trace ends: a server
/// that makes a few calls and then waits has them in the file while it waits.
#[test]
fn recordings_are_flushed_while_tracing() {
    let dir = Dir::new("flush");
    let file = dir.s("server.jsonl");
    let tracer =
        Tracer::attach(&["-c", "-o", &file, "--", WSLTRACE, "demo", "--untraced", "server"]);
    let mut child = tracer.child;
    // The server announces itself on stderr, after wsltrace's own "tracing" line.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("listening") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the server never said it listened");
    }
    let listening = Instant::now();
    let port: u16 = line.split_whitespace().nth(2).expect("listening PID PORT").parse().unwrap();
    // socket, setsockopt, bind, listen, getsockname: then it blocks in accept.
    while of_type(&parse_records(&raw_lines(Path::new(&file)).0.join("\n")), "event").len() < 5 {
        assert!(listening.elapsed() < Duration::from_secs(2), "the calls did not reach the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    let delay = listening.elapsed();
    let _ = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(child.wait().unwrap().success());
    assert_complete(&records(Path::new(&file)));
    eprintln!("recorded calls were in the file {delay:?} after the server said it listened");
}

/// Two traced sessions appended to `file`, one after the other.
fn append_two_sessions(file: &str) {
    for _ in 0..2 {
        let out = run(as_root()
            .args(["-c", "-o", file, "--append", "--"])
            .args(demo_command(&["refused"])));
        assert!(out.status.success(), "{}", out.stderr);
    }
}
