//! A real server under wsltrace: an nginx master and its workers on loopback (its own
//! configuration in a temporary prefix, a free port), loaded by ApacheBench; requests per
//! second with wsltrace attached (`-f --pid MASTER`, the workers already running) over
//! requests per second untraced, the runs of each round interleaved.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::{
    Settings, median, min,
    process::{self, Lines},
    runs::{self, ATTACHED, Tools},
};

const WORKERS: u32 = 2;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// How nginx is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMode {
    Untraced,
    /// `wsltrace -f --pid MASTER -q -o FILE`: every event to a file, findings on the terminal.
    QuietFile,
    /// `wsltrace -f --pid MASTER > FILE`: the text trace, a line per call, to a file.
    TextFile,
}

impl ServerMode {
    pub fn label(self) -> &'static str {
        match self {
            ServerMode::Untraced => "untraced",
            ServerMode::QuietFile => "wsltrace -f --pid MASTER -q -o FILE",
            ServerMode::TextFile => "wsltrace -f --pid MASTER > FILE (text)",
        }
    }
}

/// One ab run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ServerRun {
    pub requests_per_s: f64,
    /// Requests ab counted as failed (none expected).
    pub failed: u64,
    pub tracer_cpu_ns: Option<u64>,
    pub events: Option<u64>,
    pub lost: Option<u64>,
}

#[derive(Serialize)]
pub struct ServerSummary {
    pub mode: ServerMode,
    pub label: &'static str,
    /// Traced requests/s over the untraced requests/s of the same round (higher is better).
    pub ratio_median: f64,
    pub ratio_min: f64,
    pub requests_per_s_median: f64,
    pub tracer_cpu_ms: Option<f64>,
    /// wsltrace's CPU per event delivered, start-up and shutdown included.
    pub tracer_ns_per_event: Option<f64>,
    pub events: u64,
    pub lost: u64,
    pub runs: Vec<ServerRun>,
}

#[derive(Serialize)]
pub struct Server {
    pub workload: String,
    pub rounds: u64,
    pub modes: Vec<ServerSummary>,
}

impl Server {
    /// The worse of the traced modes' median ratios.
    pub fn worst_ratio(&self) -> Option<f64> {
        self.modes
            .iter()
            .filter(|m| m.mode != ServerMode::Untraced)
            .map(|m| m.ratio_median)
            .min_by(f64::total_cmp)
    }
}

/// Requests per ab run and concurrent clients.
fn load(settings: &Settings) -> (u64, u64) {
    (if settings.quick { 10_000 } else { 30_000 }, 16)
}

pub fn measure(tools: &Tools, settings: &Settings) -> Result<Server> {
    let nginx = Nginx::start(&tools.scratch)?;
    let (requests, clients) = load(settings);
    let modes = [ServerMode::Untraced, ServerMode::QuietFile, ServerMode::TextFile];
    let mut samples: Vec<Vec<ServerRun>> = vec![Vec::new(); modes.len()];
    // A first run warms nginx and the page cache; it is not counted.
    ab(nginx.port, requests / 4, clients)?;
    for round in 0..settings.rounds {
        let mut order: Vec<usize> = (0..modes.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let run = run(tools, &nginx, modes[i], requests, clients)
                .with_context(|| format!("nginx, {}", modes[i].label()))?;
            eprintln!(
                "bench: nginx round {}/{}: {:<42} {:>9.0} requests/s{}",
                round + 1,
                settings.rounds,
                modes[i].label(),
                run.requests_per_s,
                match (run.events, run.lost) {
                    (Some(events), Some(lost)) => format!(", {events} events, {lost} lost"),
                    _ => String::new(),
                }
            );
            samples[i].push(run);
        }
    }
    let untraced = samples[0].clone();
    let summaries = modes
        .iter()
        .zip(samples)
        .map(|(&mode, runs)| {
            let ratios: Vec<f64> = runs
                .iter()
                .zip(&untraced)
                .map(|(r, u)| r.requests_per_s / u.requests_per_s.max(1.0))
                .collect();
            let cpu: Vec<f64> =
                runs.iter().filter_map(|r| Some(r.tracer_cpu_ns? as f64 / 1e6)).collect();
            let events: u64 = runs.iter().filter_map(|r| r.events).sum();
            let cpu_total: u64 = runs.iter().filter_map(|r| r.tracer_cpu_ns).sum();
            ServerSummary {
                mode,
                label: mode.label(),
                ratio_median: median(&ratios),
                ratio_min: min(&ratios),
                requests_per_s_median: median(
                    &runs.iter().map(|r| r.requests_per_s).collect::<Vec<_>>(),
                ),
                tracer_cpu_ms: (!cpu.is_empty()).then(|| median(&cpu)),
                tracer_ns_per_event: (events > 0).then(|| cpu_total as f64 / events as f64),
                events,
                lost: runs.iter().filter_map(|r| r.lost).sum(),
                runs,
            }
        })
        .collect();
    Ok(Server {
        workload: format!(
            "nginx, {WORKERS} workers, a 612-byte static page on 127.0.0.1; `ab -n {requests} -c \
             {clients}` (a new connection per request)"
        ),
        rounds: settings.rounds,
        modes: summaries,
    })
}

fn run(
    tools: &Tools,
    nginx: &Nginx,
    mode: ServerMode,
    requests: u64,
    clients: u64,
) -> Result<ServerRun> {
    let trace_file = tools.scratch.join("nginx-trace");
    let _ = fs::remove_file(&trace_file);
    let mut tracer = match mode {
        ServerMode::Untraced => {
            let (requests_per_s, failed) = ab(nginx.port, requests, clients)?;
            let run =
                ServerRun { requests_per_s, failed, tracer_cpu_ns: None, events: None, lost: None };
            return Ok(run);
        }
        ServerMode::QuietFile => {
            let mut cmd = Command::new(&tools.wsltrace);
            cmd.args(["-q", "-o"]).arg(&trace_file).stdout(Stdio::null());
            cmd
        }
        ServerMode::TextFile => {
            let out = File::create(&trace_file).context("creating the text trace file")?;
            let mut cmd = Command::new(&tools.wsltrace);
            cmd.stdout(out);
            cmd
        }
    };
    let mut tracer = tracer
        .args(["-f", "--pid"])
        .arg(nginx.master.id().to_string())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting wsltrace")?;
    let mut lines = Lines::watch(tracer.stderr.take().context("wsltrace's stderr")?);
    let attached = lines.wait_for(ATTACHED, START_TIMEOUT, "wsltrace");
    let measured = attached.and_then(|_| ab(nginx.port, requests, clients));
    // Ctrl-C ends the trace; nginx runs on.
    // SAFETY: kill with our own child's pid (not yet reaped) and a signal number.
    unsafe { libc::kill(tracer.id() as libc::pid_t, libc::SIGINT) };
    let done = process::wait(&mut tracer, RUN_TIMEOUT, "wsltrace")?;
    let stderr = lines.finish();
    // The detaching child wsltrace leaves; nginx itself runs on.
    process::reap_orphans_besides(nginx.master.id(), Duration::from_secs(60));
    let _ = fs::remove_file(&trace_file);
    let (requests_per_s, failed) = measured?;
    if done.code != 0 && done.code != 128 + libc::SIGINT {
        bail!("wsltrace failed (exit {}):\n{}", done.code, stderr.join("\n"));
    }
    let account = runs::last_line(&stderr)?;
    Ok(ServerRun {
        requests_per_s,
        failed,
        tracer_cpu_ns: Some(done.cpu_ns),
        events: Some(account.events),
        lost: Some(account.lost),
    })
}

/// `ab -n REQUESTS -c CLIENTS`: (requests per second, failed requests).
fn ab(port: u16, requests: u64, clients: u64) -> Result<(f64, u64)> {
    let out = Command::new("ab")
        .args(["-q", "-n", &requests.to_string(), "-c", &clients.to_string()])
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .output()
        .context("running ab (apache2-utils)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("ab failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    }
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let rate = field("Requests per second:").context("ab printed no requests per second")?;
    let failed = field("Failed requests:").unwrap_or(0.0) as u64;
    Ok((rate, failed))
}

/// nginx with its own configuration under `scratch/nginx`: stopped, workers too, on drop.
struct Nginx {
    master: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    fn start(scratch: &Path) -> Result<Nginx> {
        let dir = scratch.join("nginx");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("html")).context("creating nginx's prefix")?;
        // Debian's default page is 612 bytes; any page of that size will do.
        fs::write(dir.join("html/index.html"), "x".repeat(611) + "\n")?;
        // A free loopback port, freed again for nginx.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes {WORKERS};\nuser root;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {d}/html; }}\n}}\n"
        );
        fs::write(dir.join("nginx.conf"), conf)?;
        let master = Command::new("nginx")
            .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c"])
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        let nginx = Nginx { master, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let log = fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                bail!("nginx did not come up on port {port}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: a graceful stop, the workers with it.
        // SAFETY: kill with our own child's pid (not yet reaped) and a signal number.
        unsafe { libc::kill(self.master.id() as libc::pid_t, libc::SIGQUIT) };
        if process::wait(&mut self.master, Duration::from_secs(10), "nginx").is_err() {
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
