//! End-to-end benchmarks of the `supervisor` command, printed beside the
//! targets of the performance issue (see `docs/performance.md`):
//!
//! 1. crash-to-restart latency (from SIGKILL to the clock read at the start
//!    of the new process's `main`, both on `CLOCK_MONOTONIC`);
//! 2. the supervisor's resident memory with 1, 100 and 1000 idle services;
//! 3. its wake-ups (context switches) over an idle period with 100 services;
//! 4. the wall time of a whole `supervisor -c FILE status NAME` command;
//! 5. the time to bring 1000 services up and to stop them, beside a bare
//!    loop that spawns, kills and reaps the same programs;
//! 6. transcript throughput: a service that writes 200 MB of 100-byte lines
//!    as fast as it can, plain and with timestamps and rotation, beside the
//!    same writer piped into `cat > FILE`, and the supervisor's CPU time per
//!    MB (see `transcript.rs`);
//! 7. the round trip of `handle.status()` from another thread to an idle
//!    engine with 100 services, in this process (see `handle.rs`);
//! 8. the restart latency beside 1000 hostile clients and 100 crash loops
//!    against the idle figure, and with 10, 1000 and 10,000 services
//!    (see `load.rs`);
//! 9. readiness: start to ready of 1000 services with and without a tree
//!    of dependencies, `sd_notify` latency, the cost of health checks (see
//!    `ready.rs`);
//! 10. a container's PID 1 with 10 services (a PID namespace of
//!     `unshare`): start to ready, PID 1's memory and the shutdown, ours
//!     beside tini and s6-svscan (see `container.rs`; root only).
//!
//! It drives the release binaries `supervisor` and `sv-test-helper`, found
//! next to this executable's target directory:
//!
//! ```text
//! cargo build --release --workspace && cargo bench --bench supervisor
//! ```
//!
//! Environment: `BENCH_KILLS=N` (number of kills, default 50),
//! `BENCH_QUICK=1` (a smoke run: 10 kills, 100 services instead of 1000,
//! 2 s of idleness, 20 MB of transcript instead of 200 MB),
//! `BENCH_ONLY=PART,...` (run only some parts: `restart`, `rss`, `hundred`,
//! `fleet`, `transcript`, `handle`, `peers`, `load`, `scale`, `ready`,
//! `container`), `BENCH_STATIC_BIN=PATH` (part `container`: a static build
//! of `supervisor` to measure as PID 1 beside the release one). Without the
//! `--bench` argument that `cargo bench` passes (as under `cargo test
//! --benches`), nothing is measured.
//!
//! Every supervisor is run in its own temporary directory, and stopped at
//! the end with `shutdown`; a guard kills whatever is left (any process
//! whose command line names that directory) if a step fails or panics.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;
use supervisor_core::protocol::Command as Request;
use supervisor_core::protocol::ControlClient;
use supervisor_core::{ServiceState, StatusSnapshot};

mod container;
mod handle;
mod load;
mod peers;
mod ready;
mod transcript;

/// Errors are reported, not recovered from.
type Res<T> = Result<T, Box<dyn Error>>;

/// How long a victim of the restart benchmark must have run before it is
/// killed: past the default `min_uptime` (1 s), so that it is restarted at
/// once rather than backed off.
const VICTIM_AGE_NS: i128 = 1_200_000_000;
/// How many services take turns as victims, so that 50 kills do not take
/// 50 × 1.2 s.
const VICTIMS: usize = 8;
/// The service whose status is asked for.
const STATUS_NAME: &str = "svc-0042";
/// `MiB` in the kB (KiB) that `/proc/PID/status` reports.
const KIB_PER_MIB: f64 = 1024.0;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("supervisor bench: run it with `cargo bench --bench supervisor`; skipped");
        return;
    }
    if let Err(e) = run() {
        eprintln!("supervisor bench failed: {e}");
        std::process::exit(1);
    }
}

/// Runs every scenario and prints the table of results.
fn run() -> Res<()> {
    let settings = Settings::from_env()?;
    let bins = Bins::locate()?;
    raise_nofile_limit()?;
    print_machine(&settings);
    let mut report = Report::default();
    if settings.wants("restart") {
        bench_restart(&bins, &settings, &mut report)?;
    }
    if settings.wants("rss") {
        bench_rss_one(&bins, &mut report)?;
    }
    if settings.wants("hundred") {
        bench_hundred(&bins, &settings, &mut report)?;
    }
    if settings.wants("fleet") {
        bench_fleet(&bins, &settings, &mut report)?;
    }
    if settings.wants("transcript") {
        transcript::bench_transcript(&bins, &settings, &mut report)?;
    }
    if settings.wants("handle") {
        handle::bench_handle(&bins, &settings, &mut report)?;
    }
    if settings.wants("peers") {
        peers::bench_peers(&bins, &settings, &mut report)?;
    }
    if settings.wants("load") {
        load::bench_load(&bins, &settings, &mut report)?;
    }
    if settings.wants("scale") {
        load::bench_scale(&bins, &settings, &mut report)?;
    }
    if settings.wants("ready") {
        ready::bench_ready(&bins, &settings, &mut report)?;
    }
    if settings.wants("container") {
        container::bench_container(&bins, &settings, &mut report)?;
    }
    report.print();
    Ok(())
}

// ---------------------------------------------------------------------------
// Settings, binaries, machine

/// What the environment asks for.
#[derive(Debug, Clone)]
struct Settings {
    /// `BENCH_QUICK=1`.
    quick: bool,
    /// Number of kills in the restart benchmark.
    kills: usize,
    /// Services in the large fleet (1000, or 100 in quick mode).
    fleet: usize,
    /// How long the supervisor is left alone to count its wake-ups.
    idle: Duration,
    /// Runs of each timed command.
    runs: usize,
    /// Rounds of the fleet and the bare loop.
    rounds: usize,
    /// Rounds of the transcript runs (each: `cat`, plain, stamped).
    transcript_rounds: usize,
    /// Bytes the transcript writer writes (200 MB, or 20 MB in quick mode).
    transcript_bytes: u64,
    /// The parts to run (`BENCH_ONLY`); all when empty.
    only: Vec<String>,
}

/// The parts that `BENCH_ONLY` can name, in the order they run.
const PARTS: [&str; 11] =
    ["restart", "rss", "hundred", "fleet", "transcript", "handle", "peers", "load", "scale", "ready", "container"];

impl Settings {
    /// Reads `BENCH_QUICK`, `BENCH_KILLS` and `BENCH_ONLY`.
    fn from_env() -> Res<Settings> {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let kills = match std::env::var("BENCH_KILLS") {
            Ok(v) => v.parse().map_err(|e| format!("BENCH_KILLS={v:?}: {e}"))?,
            Err(_) if quick => 10,
            Err(_) => 50,
        };
        if kills == 0 {
            return Err("BENCH_KILLS must be at least 1".into());
        }
        let only: Vec<String> = std::env::var("BENCH_ONLY")
            .unwrap_or_default()
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if let Some(bad) = only.iter().find(|p| !PARTS.contains(&p.as_str())) {
            return Err(format!("BENCH_ONLY: unknown part {bad:?} (parts: {})", PARTS.join(", ")).into());
        }
        Ok(Settings {
            quick,
            kills,
            fleet: if quick { 100 } else { 1000 },
            idle: Duration::from_secs(if quick { 2 } else { 10 }),
            runs: if quick { 20 } else { 50 },
            rounds: if quick { 1 } else { 3 },
            transcript_rounds: if quick { 1 } else { 5 },
            transcript_bytes: if quick { 20_000_000 } else { 200_000_000 },
            only,
        })
    }

    /// Whether `part` is to be run.
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// The release binaries under test.
#[derive(Debug, Clone)]
struct Bins {
    supervisor: PathBuf,
    helper: PathBuf,
}

impl Bins {
    /// Finds the binaries in this executable's target directory
    /// (`target/release/deps/supervisor-HASH` → `target/release`).
    fn locate() -> Res<Bins> {
        let exe = std::env::current_exe()?;
        let dir = exe.parent().and_then(Path::parent).ok_or("cannot find the target directory")?;
        let find = |name: &str| -> Res<PathBuf> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{} is missing: run `cargo build --release --workspace` first (with the same CARGO_TARGET_DIR)",
                    path.display()
                )
                .into())
            }
        };
        Ok(Bins { supervisor: find("supervisor")?, helper: find("sv-test-helper")? })
    }

    /// The helper's path as a string, for configuration files.
    fn helper(&self) -> String {
        self.helper.display().to_string()
    }
}

/// Raises the soft limit on open files to the hard limit; the supervisor
/// and a thousand services inherit it.
fn raise_nofile_limit() -> Res<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(())
}

/// Prints what the numbers were measured on.
fn print_machine(settings: &Settings) {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = cpu_model().unwrap_or_default();
    println!("supervisor bench: {cpus} CPU(s), {model}, kernel {}", kernel.trim());
    println!(
        "settings: {} kills, {} services in the fleet, {:?} idle, {} MB of transcript{}",
        settings.kills,
        settings.fleet,
        settings.idle,
        settings.transcript_bytes / 1_000_000,
        if settings.quick { " (BENCH_QUICK)" } else { "" }
    );
    if !settings.only.is_empty() {
        println!("only: {}", settings.only.join(", "));
    }
}

/// The first `model name` of `/proc/cpuinfo`.
fn cpu_model() -> Option<String> {
    let text = fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

// ---------------------------------------------------------------------------
// Clocks, statistics and /proc

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of the helper's stamps.
fn mono_ns() -> i128 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
}

/// Nanoseconds as milliseconds.
fn ns_to_ms(ns: i128) -> f64 {
    ns as f64 / 1e6
}

/// A duration in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, 90th and 99th percentiles and maximum of samples (nearest
/// rank).
#[derive(Debug, Clone, Copy)]
struct Summary {
    median: f64,
    p90: f64,
    p99: f64,
    max: f64,
    n: usize,
}

impl Summary {
    /// Summarizes `samples`, which must not be empty.
    fn of(samples: &[f64]) -> Summary {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Summary { median: rank(0.5), p90: rank(0.9), p99: rank(0.99), max: v[v.len() - 1], n: v.len() }
    }

    /// `median 1.234 ms, p90 2.345 ms (max 3.456, n 50)`.
    fn ms_text(&self) -> String {
        format!("median {:.3} ms, p90 {:.3} ms (max {:.3}, n {})", self.median, self.p90, self.max, self.n)
    }
}

/// Times `f` `runs` times, in milliseconds.
fn time_runs(runs: usize, mut f: impl FnMut() -> Res<()>) -> Res<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        samples.push(ms(start.elapsed()));
    }
    Ok(Summary::of(&samples))
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `RssAnon`, ...).
fn proc_status_kb(pid: i32, field: &str) -> Res<u64> {
    proc_kb(pid, "status", field)
}

/// A `kB` field of `/proc/PID/smaps_rollup` (`Pss`, `Pss_Anon`, ...).
fn smaps_rollup_kb(pid: i32, field: &str) -> Res<u64> {
    proc_kb(pid, "smaps_rollup", field)
}

/// A `NAME: N kB` field of `/proc/PID/FILE`.
fn proc_kb(pid: i32, file: &str, field: &str) -> Res<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}"))?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/{file}"))?;
    Ok(value.trim().trim_end_matches("kB").trim().parse()?)
}

/// What the memory of a process is made of, in kB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss: u64,
    anon: u64,
    file: u64,
    hwm: u64,
    /// Proportional set size (shared pages divided among their users).
    pss: u64,
    /// Its anonymous part: the process's private memory.
    pss_anon: u64,
}

impl Memory {
    /// Reads `/proc/PID/status`.
    fn of(pid: i32) -> Res<Memory> {
        Ok(Memory {
            rss: proc_status_kb(pid, "VmRSS")?,
            anon: proc_status_kb(pid, "RssAnon")?,
            file: proc_status_kb(pid, "RssFile")?,
            hwm: proc_status_kb(pid, "VmHWM")?,
            pss: smaps_rollup_kb(pid, "Pss")?,
            pss_anon: smaps_rollup_kb(pid, "Pss_Anon")?,
        })
    }

    /// The resident set in MiB.
    fn rss_mib(&self) -> f64 {
        self.rss as f64 / KIB_PER_MIB
    }

    /// `3.2 MiB (anon 1.1, file 2.1, peak 3.5; PSS 2.0, anon 1.1)`.
    fn text(&self) -> String {
        format!(
            "{:.2} MiB (anon {:.2}, file {:.2}, peak {:.2}; PSS {:.2}, anon {:.2})",
            self.rss_mib(),
            self.anon as f64 / KIB_PER_MIB,
            self.file as f64 / KIB_PER_MIB,
            self.hwm as f64 / KIB_PER_MIB,
            self.pss as f64 / KIB_PER_MIB,
            self.pss_anon as f64 / KIB_PER_MIB
        )
    }
}

/// Activity counters of a process, summed over its threads.
#[derive(Debug, Clone, Copy)]
struct Activity {
    voluntary: u64,
    involuntary: u64,
    threads: usize,
    /// User plus system time, in clock ticks.
    cpu_ticks: u64,
}

impl Activity {
    /// Reads `/proc/PID/task/*/status` and `/proc/PID/stat`.
    fn of(pid: i32) -> Res<Activity> {
        let mut a = Activity { voluntary: 0, involuntary: 0, threads: 0, cpu_ticks: 0 };
        for task in fs::read_dir(format!("/proc/{pid}/task"))? {
            let tid: i32 = task?.file_name().to_string_lossy().parse()?;
            let path = format!("/proc/{pid}/task/{tid}/status");
            let text = fs::read_to_string(&path)?;
            let field = |name: &str| -> Res<u64> {
                let v =
                    text.lines().find_map(|l| l.strip_prefix(name)).ok_or_else(|| format!("no {name} in {path}"))?;
                Ok(v.trim_start_matches(':').trim().parse()?)
            };
            a.voluntary += field("voluntary_ctxt_switches")?;
            a.involuntary += field("nonvoluntary_ctxt_switches")?;
            a.threads += 1;
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let rest = &stat[stat.rfind(')').ok_or("bad stat")? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        // rest[0] is field 3; utime and stime are fields 14 and 15.
        a.cpu_ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(a)
    }

    /// Context switches of either kind.
    fn switches(&self) -> u64 {
        self.voluntary + self.involuntary
    }
}

/// Kills every process (but this one) whose command line mentions `tag`,
/// a temporary directory: the last resort of the cleanup guards.
fn kill_tagged(tag: &Path) {
    let tag = tag.as_os_str().as_encoded_bytes();
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else { continue };
        if pid != me && cmdline.windows(tag.len()).any(|w| w == tag) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Polls `f` every `every` until it returns `Some`, or fails after `limit`.
fn wait_for<T>(what: &str, limit: Duration, every: Duration, mut f: impl FnMut() -> Res<Option<T>>) -> Res<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        std::thread::sleep(every);
    }
}

// ---------------------------------------------------------------------------
// Stamps

/// The complete `PID CLOCK_MONOTONIC_NS` lines of a stamp file (a line
/// still being written is left out); empty when there is no file yet.
fn read_stamps(path: &Path) -> Vec<(i32, i128)> {
    let Ok(text) = fs::read_to_string(path) else { return Vec::new() };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| {
            let (pid, ns) = l.trim_end().split_once(' ')?;
            Some((pid.parse().ok()?, ns.parse().ok()?))
        })
        .collect()
}

/// Waits until every file in `paths` holds a stamp; returns the latest
/// first stamp. `check` is called on each round, to fail early.
fn wait_all_stamped(paths: &[PathBuf], limit: Duration, mut check: impl FnMut() -> Res<()>) -> Res<i128> {
    let mut first: Vec<Option<i128>> = vec![None; paths.len()];
    wait_for("every program to stamp", limit, Duration::from_millis(2), || {
        check()?;
        for (path, stamp) in paths.iter().zip(first.iter_mut()) {
            if stamp.is_none() {
                *stamp = read_stamps(path).first().map(|s| s.1);
            }
        }
        Ok(first.iter().all(Option::is_some).then(|| first.iter().flatten().copied().max().unwrap_or(0)))
    })
}

// ---------------------------------------------------------------------------
// A supervisor under test

/// One service of a generated configuration.
#[derive(Debug, Clone)]
struct Svc {
    name: String,
    argv: Vec<String>,
}

/// `svc-0000`, `svc-0001`, ...
fn svc_name(i: usize) -> String {
    format!("svc-{i:04}")
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A `supervisor run` in a temporary directory (configuration, runtime
/// directory, stamps, log). Dropping it shuts the supervisor down, or
/// kills it and its services.
struct Instance {
    bins: Bins,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

impl Instance {
    /// A temporary directory with `stamps/` and `pids/`, and a
    /// configuration made by `services` from the directory's path; nothing
    /// is started yet.
    fn prepare(bins: &Bins, min_uptime: Option<&str>, services: impl FnOnce(&Path) -> Vec<Svc>) -> Res<Instance> {
        Instance::with_services_text(bins, |dir| {
            let mut text = String::new();
            for svc in services(dir) {
                let argv: Vec<String> = svc.argv.iter().map(|a| toml_str(a)).collect();
                text.push_str(&format!("\n[service.{}]\ncommand = [{}]\n", svc.name, argv.join(", ")));
                if let Some(m) = min_uptime {
                    text.push_str(&format!("min_uptime = {}\n", toml_str(m)));
                }
            }
            text
        })
    }

    /// A temporary directory with `stamps/` and `pids/`, and a
    /// configuration whose services part `services` writes (TOML) from the
    /// directory's path; nothing is started yet.
    fn with_services_text(bins: &Bins, services: impl FnOnce(&Path) -> String) -> Res<Instance> {
        let dir = tempfile::Builder::new().prefix("sv-bench-").tempdir_in("/tmp")?;
        fs::create_dir(dir.path().join("stamps"))?;
        fs::create_dir(dir.path().join("pids"))?;
        let mut text = format!(
            "[supervisor]\nname = \"bench\"\nruntime_dir = {}\nlog_level = \"error\"\n",
            toml_str(&dir.path().join("rt").display().to_string())
        );
        text.push_str(&services(dir.path()));
        let config = dir.path().join("supervisor.toml");
        fs::write(&config, text)?;
        Ok(Instance { bins: bins.clone(), dir, config, child: None })
    }

    /// `n` services `svc-NNNN` that run `sv-test-helper sleep pids/NAME`.
    fn sleepers(bins: &Bins, n: usize, min_uptime: &str) -> Res<Instance> {
        let helper = bins.helper();
        Instance::prepare(bins, Some(min_uptime), |dir| {
            (0..n)
                .map(|i| {
                    let pidfile = dir.join("pids").join(svc_name(i)).display().to_string();
                    Svc { name: svc_name(i), argv: vec![helper.clone(), "sleep".into(), pidfile] }
                })
                .collect()
        })
    }

    /// A path in the temporary directory.
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Spawns `supervisor -c CONFIG run`, logging to `supervisor.log`.
    fn launch(&mut self) -> Res<()> {
        let log = fs::File::create(self.path("supervisor.log"))?;
        let child = Command::new(&self.bins.supervisor)
            .arg("-c")
            .arg(&self.config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// The supervisor's pid.
    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Fails with the supervisor's log when it has exited.
    fn check_alive(&mut self) -> Res<()> {
        if let Some(Some(status)) = self.child.as_mut().map(Child::try_wait).transpose()? {
            let log = fs::read_to_string(self.path("supervisor.log")).unwrap_or_default();
            return Err(format!("the supervisor exited ({status}); its log:\n{log}").into());
        }
        Ok(())
    }

    /// Connects to the control socket.
    fn client(&self) -> Res<ControlClient> {
        Ok(ControlClient::connect(&self.path("rt/run/control.sock"))?)
    }

    /// The status of every service, over a fresh connection.
    fn status(&self) -> Res<StatusSnapshot> {
        let resp = self.client()?.call(Request::Status { names: Vec::new() }, Duration::from_secs(30))?;
        resp.status.ok_or_else(|| format!("no status in the answer: {:?}", resp.error).into())
    }

    /// Waits until the supervisor answers on its socket.
    fn wait_ready(&mut self) -> Res<()> {
        wait_for("the control socket", Duration::from_mins(1), Duration::from_millis(2), || {
            self.check_alive()?;
            Ok(self.client().ok())
        })?;
        Ok(())
    }

    /// Waits until every service is in `state`.
    fn wait_all(&mut self, state: ServiceState, limit: Duration) -> Res<()> {
        wait_for(&format!("every service to be {state}"), limit, Duration::from_millis(10), || {
            self.check_alive()?;
            Ok(self.status()?.services.iter().all(|s| s.state == state).then_some(()))
        })
    }

    /// Runs `supervisor -c CONFIG ARGS...`; returns its wall time, or its
    /// output when it fails.
    fn cli(&self, args: &[&str]) -> Res<Duration> {
        let start = Instant::now();
        let out = Command::new(&self.bins.supervisor)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        let wall = start.elapsed();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("supervisor {}: {}: {err}", args.join(" "), out.status).into());
        }
        Ok(wall)
    }

    /// `supervisor shutdown`, then waits for the process; returns the
    /// command's wall time.
    fn shutdown(&mut self) -> Res<Duration> {
        let wall = self.cli(&["shutdown"])?;
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(wall)
    }
}

impl Drop for Instance {
    /// Shuts a supervisor that still runs down through its socket; kills it
    /// if that fails, and then anything left that names the directory.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                if let Ok(mut client) = self.client() {
                    let _ = client.call(Request::Shutdown, Duration::from_secs(30));
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        kill_tagged(self.dir.path());
    }
}

// ---------------------------------------------------------------------------
// Results

/// Whether a row met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Miss,
    /// No target: for information.
    Info,
}

/// One line of the final table.
#[derive(Debug, Clone)]
struct Row {
    metric: String,
    value: String,
    target: String,
    verdict: Verdict,
}

/// The results, printed as a table at the end.
#[derive(Debug, Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// A result with a target.
    fn check(&mut self, metric: &str, value: String, target: &str, met: bool) {
        let verdict = if met { Verdict::Pass } else { Verdict::Miss };
        println!("  {metric}: {value} [target {target}: {verdict:?}]");
        self.rows.push(Row { metric: metric.into(), value, target: target.into(), verdict });
    }

    /// A result without a target.
    fn info(&mut self, metric: &str, value: String) {
        println!("  {metric}: {value}");
        self.rows.push(Row { metric: metric.into(), value, target: "-".into(), verdict: Verdict::Info });
    }

    /// Prints the table.
    fn print(&self) {
        let w0 = self.rows.iter().map(|r| r.metric.len()).max().unwrap_or(0);
        let w1 = self.rows.iter().map(|r| r.value.len()).max().unwrap_or(0);
        let w2 = self.rows.iter().map(|r| r.target.len()).max().unwrap_or(0);
        println!("\n{:<w0$}  {:<w1$}  {:<w2$}  VERDICT", "METRIC", "RESULT", "TARGET");
        for r in &self.rows {
            let verdict = match r.verdict {
                Verdict::Pass => "PASS",
                Verdict::Miss => "MISS",
                Verdict::Info => "-",
            };
            println!("{:<w0$}  {:<w1$}  {:<w2$}  {verdict}", r.metric, r.value, r.target);
        }
        let missed = self.rows.iter().filter(|r| r.verdict == Verdict::Miss).count();
        let checked = self.rows.iter().filter(|r| r.verdict != Verdict::Info).count();
        println!("\n{} of {checked} targets met", checked - missed);
    }
}

// ---------------------------------------------------------------------------
// Scenarios

/// Crash-to-restart latency: `VICTIMS` services that stamp their start take
/// turns being killed with SIGKILL once they have run 1.2 s; the latency is
/// the new process's stamp minus the time of the kill.
fn bench_restart(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    println!("restart latency ({} kills)...", settings.kills);
    let helper = bins.helper();
    let victims = VICTIMS.min(settings.kills);
    let mut inst = Instance::prepare(bins, None, |dir| {
        (0..victims)
            .map(|i| {
                let stamps = dir.join("stamps").join(svc_name(i)).display().to_string();
                Svc { name: svc_name(i), argv: vec![helper.clone(), "stamp".into(), stamps] }
            })
            .collect()
    })?;
    let files: Vec<PathBuf> = (0..victims).map(|i| inst.path(&format!("stamps/{}", svc_name(i)))).collect();
    inst.launch()?;
    inst.wait_ready()?;
    wait_all_stamped(&files, Duration::from_secs(30), || inst.check_alive())?;
    let mut samples = Vec::with_capacity(settings.kills);
    for k in 0..settings.kills {
        inst.check_alive()?;
        samples.push(ns_to_ms(kill_and_time_restart(&files[k % victims])?));
    }
    let s = Summary::of(&samples);
    report.check("restart latency (SIGKILL -> new stamp)", s.ms_text(), "median <= 2 ms", s.median <= 2.0);
    inst.shutdown()?;
    let bare = bare_spawn_latency(bins, settings.runs)?;
    report.info("  part: bare spawn -> stamp (no supervisor)", bare.ms_text());
    Ok(())
}

/// The share of the restart latency that is not the supervisor's: the time
/// from `Command::spawn` of `sv-test-helper stamp` to its stamp.
fn bare_spawn_latency(bins: &Bins, runs: usize) -> Res<Summary> {
    let dir = tempfile::Builder::new().prefix("sv-bench-spawn-").tempdir_in("/tmp")?;
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let file = dir.path().join(svc_name(i));
        let t0 = mono_ns();
        let child = Children(vec![Command::new(&bins.helper).arg("stamp").arg(&file).stdin(Stdio::null()).spawn()?]);
        let stamped = wait_for("a stamp", Duration::from_secs(10), Duration::from_micros(200), || {
            Ok(read_stamps(&file).first().copied())
        })?;
        samples.push(ns_to_ms(stamped.1 - t0));
        drop(child);
    }
    Ok(Summary::of(&samples))
}

/// Kills the process that last stamped `file` once it is old enough, and
/// returns the nanoseconds from the kill to its successor's stamp.
fn kill_and_time_restart(file: &Path) -> Res<i128> {
    let before = read_stamps(file);
    let &(pid, started) = before.last().ok_or("no stamp")?;
    let wait = started + VICTIM_AGE_NS - mono_ns();
    if wait > 0 {
        std::thread::sleep(Duration::from_nanos(wait as u64));
    }
    let killed_at = mono_ns();
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    let (new_pid, stamped_at) =
        wait_for("the restarted process's stamp", Duration::from_secs(10), Duration::from_micros(200), || {
            let now = read_stamps(file);
            Ok((now.len() > before.len()).then(|| now[now.len() - 1]))
        })?;
    if new_pid == pid {
        return Err(format!("pid {pid} stamped twice").into());
    }
    Ok(stamped_at - killed_at)
}

/// Waits until every service runs, lets the supervisor settle, and reads
/// its memory.
fn settled_memory(inst: &mut Instance) -> Res<Memory> {
    inst.wait_all(ServiceState::Running, Duration::from_mins(2))?;
    std::thread::sleep(Duration::from_millis(500));
    Memory::of(inst.pid())
}

/// Resident memory with one idle service.
fn bench_rss_one(bins: &Bins, report: &mut Report) -> Res<()> {
    println!("memory with 1 service...");
    let mut inst = Instance::sleepers(bins, 1, "10ms")?;
    inst.launch()?;
    inst.wait_ready()?;
    let mem = settled_memory(&mut inst)?;
    report.info("RSS, 1 idle service", mem.text());
    inst.shutdown()?;
    Ok(())
}

/// With 100 idle services: resident memory, wake-ups while idle, and the
/// wall time of `supervisor status NAME` (with a breakdown).
fn bench_hundred(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    println!("100 idle services: memory, wake-ups, status...");
    let mut inst = Instance::sleepers(bins, 100, "10ms")?;
    inst.launch()?;
    inst.wait_ready()?;
    let mem = settled_memory(&mut inst)?;
    // Memory is judged on PSS and private memory (part `peers`, beside
    // daemontools); RSS counts the whole of every file page mapped.
    report.info("memory, 100 idle services", mem.text());
    measure_wakeups(&inst, settings.idle, report)?;
    measure_status(&inst, settings.runs, report)?;
    let wall = inst.shutdown()?;
    report.info("shutdown, 100 services (CLI wall)", format!("{:.1} ms", ms(wall)));
    Ok(())
}

/// Counts the supervisor's context switches while nobody talks to it.
fn measure_wakeups(inst: &Instance, idle: Duration, report: &mut Report) -> Res<()> {
    let before = Activity::of(inst.pid())?;
    std::thread::sleep(idle);
    let after = Activity::of(inst.pid())?;
    let wakeups = after.switches() - before.switches();
    let value = format!(
        "{wakeups} ({} voluntary, {} involuntary; {} CPU ticks; {} thread(s)) in {:?}",
        after.voluntary - before.voluntary,
        after.involuntary - before.involuntary,
        after.cpu_ticks - before.cpu_ticks,
        after.threads,
        idle
    );
    report.check("wake-ups while idle, 100 services", value, "0", wakeups == 0);
    Ok(())
}

/// Times `supervisor -c FILE status NAME`, and the parts it is made of:
/// starting the binary (`--version`), loading the configuration
/// (`check-config`), and the request on the socket.
fn measure_status(inst: &Instance, runs: usize, report: &mut Report) -> Res<()> {
    let status = time_runs(runs, || inst.cli(&["status", STATUS_NAME]).map(drop))?;
    report.check("status NAME, 100 services (CLI wall)", status.ms_text(), "median <= 3 ms", status.median <= 3.0);
    let version = time_runs(runs, || inst.cli(&["--version"]).map(drop))?;
    report.info("  part: bare CLI start (--version)", version.ms_text());
    let check = time_runs(runs, || inst.cli(&["check-config"]).map(drop))?;
    report.info("  part: start + load config (check-config)", check.ms_text());
    report.info("  part: connect + status request on the socket", time_socket_status(inst, runs)?.ms_text());
    Ok(())
}

/// Times a connection to the socket and one `status NAME` request on it:
/// the supervisor's share of the `status` command.
fn time_socket_status(inst: &Instance, runs: usize) -> Res<Summary> {
    time_runs(runs, || {
        let names = vec![STATUS_NAME.to_string()];
        inst.client()?.call(Request::Status { names }, Duration::from_secs(10))?;
        Ok(())
    })
}

/// What the bare fork/exec loop took.
#[derive(Debug, Clone, Copy)]
struct Bare {
    /// From the first spawn to the last program's stamp.
    up: Duration,
    /// SIGTERM to all, then reap all.
    down: Duration,
}

/// The programs killed and reaped when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// The baseline: spawns `n` × `sv-test-helper stamp FILE` with
/// `std::process::Command`, waits for every stamp, then sends SIGTERM to
/// all and reaps them.
fn bench_bare_loop(bins: &Bins, n: usize) -> Res<Bare> {
    println!("bare spawn loop of {n} programs...");
    let dir = tempfile::Builder::new().prefix("sv-bench-bare-").tempdir_in("/tmp")?;
    let files: Vec<PathBuf> = (0..n).map(|i| dir.path().join(svc_name(i))).collect();
    let mut children = Children(Vec::with_capacity(n));
    let t0 = mono_ns();
    for f in &files {
        let child = Command::new(&bins.helper).arg("stamp").arg(f).stdin(Stdio::null()).spawn();
        match child {
            Ok(c) => children.0.push(c),
            Err(e) => return Err(e.into()),
        }
    }
    let last = wait_all_stamped(&files, Duration::from_mins(2), || Ok(()))?;
    let up = Duration::from_nanos((last - t0) as u64);
    let start = Instant::now();
    for c in &children.0 {
        kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM)?;
    }
    for c in &mut children.0 {
        c.wait()?;
    }
    let down = start.elapsed();
    children.0.clear();
    println!("  bare loop: up {:.1} ms, SIGTERM + reap {:.1} ms", ms(up), ms(down));
    Ok(Bare { up, down })
}

/// What one round of the fleet took.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// From spawning `supervisor run` to the last service's stamp.
    up: Duration,
    /// `stop --all`, wall time.
    down: Duration,
}

/// The fleet against the bare loop, in interleaved rounds (the medians are
/// compared, as a shared machine is noisy); the last round also measures
/// memory, restarts and `status` with the whole fleet.
fn bench_fleet(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    let n = settings.fleet;
    let (mut bare, mut fleet) = (Vec::new(), Vec::new());
    for round in 0..settings.rounds {
        bare.push(bench_bare_loop(bins, n)?);
        let detail = (round + 1 == settings.rounds).then_some(&mut *report);
        fleet.push(fleet_round(bins, settings, detail)?);
    }
    let list = |v: Vec<f64>| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    let bare_up = Summary::of(&bare.iter().map(|b| ms(b.up)).collect::<Vec<_>>());
    let up: Vec<f64> = fleet.iter().map(|r| ms(r.up)).collect();
    let ratio = Summary::of(&up).median / bare_up.median;
    report.check(
        &format!("{n} services up (spawn run -> last stamp)"),
        format!(
            "{:.0} ms = {ratio:.2} x bare loop ({:.0} ms); runs [{}] vs [{}]",
            Summary::of(&up).median,
            bare_up.median,
            list(up),
            list(bare.iter().map(|b| ms(b.up)).collect())
        ),
        "<= 1.5 x bare loop",
        ratio <= 1.5,
    );
    let down: Vec<f64> = fleet.iter().map(|r| ms(r.down)).collect();
    let stop = Summary::of(&down).median;
    let bare_down = Summary::of(&bare.iter().map(|b| ms(b.down)).collect::<Vec<_>>()).median;
    report.check(
        &format!("{n} services stopped (stop --all wall)"),
        format!("{stop:.0} ms (bare SIGTERM + reap {bare_down:.0} ms); runs [{}]", list(down)),
        "<= 1 s",
        stop <= 1000.0,
    );
    Ok(())
}

/// Starts `settings.fleet` services that stamp their start, times them up,
/// and times `stop --all`; with `detail`, also reports the memory, restart
/// latency and `status` time with the whole fleet running.
fn fleet_round(bins: &Bins, settings: &Settings, detail: Option<&mut Report>) -> Res<Round> {
    let n = settings.fleet;
    println!("{n} services: start{}, stop...", if detail.is_some() { ", memory, restarts, status" } else { "" });
    let helper = bins.helper();
    let mut inst = Instance::prepare(bins, Some("10ms"), |dir| {
        (0..n)
            .map(|i| {
                let stamps = dir.join("stamps").join(svc_name(i)).display().to_string();
                Svc { name: svc_name(i), argv: vec![helper.clone(), "stamp".into(), stamps] }
            })
            .collect()
    })?;
    let files: Vec<PathBuf> = (0..n).map(|i| inst.path(&format!("stamps/{}", svc_name(i)))).collect();
    let t0 = mono_ns();
    inst.launch()?;
    let last = wait_all_stamped(&files, Duration::from_mins(2), || inst.check_alive())?;
    let up = Duration::from_nanos((last - t0) as u64);
    println!("  up in {:.1} ms", ms(up));
    inst.wait_ready()?;
    if let Some(report) = detail {
        fleet_details(&mut inst, &files, settings, report)?;
    }
    inst.wait_all(ServiceState::Running, Duration::from_mins(1))?;
    let down = inst.cli(&["stop", "--all"])?;
    let stopped = inst.status()?.services.iter().filter(|s| s.state == ServiceState::Stopped).count();
    if stopped != n {
        return Err(format!("stop --all returned with {stopped} of {n} services stopped").into());
    }
    println!("  stop --all in {:.1} ms", ms(down));
    inst.shutdown()?;
    Ok(Round { up, down })
}

/// With the whole fleet running: memory, restart latency, and `status`.
fn fleet_details(inst: &mut Instance, files: &[PathBuf], settings: &Settings, report: &mut Report) -> Res<()> {
    let n = files.len();
    let mem = settled_memory(inst)?;
    if n >= 1000 {
        report.info(&format!("memory, {n} idle services"), mem.text());
    } else {
        report.info(&format!("RSS, {n} idle services (quick)"), mem.text());
    }
    let mut restarts = Vec::new();
    for file in files.iter().take(settings.kills.min(10)) {
        restarts.push(ns_to_ms(kill_and_time_restart(file)?));
    }
    report.info(&format!("restart latency, {n} services"), Summary::of(&restarts).ms_text());
    let runs = settings.runs.min(10);
    let status = time_runs(runs, || inst.cli(&["status", STATUS_NAME]).map(drop))?;
    report.info(&format!("status NAME, {n} services (CLI wall)"), status.ms_text());
    let check = time_runs(runs, || inst.cli(&["check-config"]).map(drop))?;
    report.info(&format!("  part: check-config, {n} services"), check.ms_text());
    report.info(&format!("  part: socket status NAME, {n} services"), time_socket_status(inst, runs)?.ms_text());
    Ok(())
}
