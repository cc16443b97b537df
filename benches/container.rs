//! Part `container`: a container's PID 1 with 10 services (issue #13).
//!
//! A container here is a PID namespace made by `unshare --pid --fork
//! --mount-proc --kill-child`, whose first process (PID 1) is in turn:
//!
//! - ours: `supervisor -c FILE run`, 10 services that run
//!   `sh -c 'echo > FIFO; echo >&3; exec sleep 1000000'` with
//!   `ready.notify = "fd:3"`, and `NOTIFY_SOCKET` set to a datagram socket
//!   of the bench; the release `supervisor`, and the binary that
//!   `BENCH_STATIC_BIN` names too (a static build) when it is set; each
//!   with a cgroup per service (as root, where the cgroup tree is
//!   writable) and with `cgroups = false` (as in a container whose cgroup
//!   tree is read-only);
//! - tini (`/usr/bin/tini`, and `/usr/bin/tini-static` when present): a
//!   `sh -c` that starts the same 10 `sh` in the background and waits; the
//!   floor, a PID 1 that only reaps and forwards signals;
//! - `s6-svscan` (Debian's `s6`, when installed) on a scan directory of 10
//!   services that do the same: the process tree that s6-overlay leaves
//!   running (s6-svscan as PID 1, one `s6-supervise` per service),
//!   without s6-overlay's start-up scripts.
//!
//! For each, in rounds (5; 2 with `BENCH_QUICK`), medians: the time from
//! spawning `unshare` until all 10 services have written their line on
//! the FIFO, and for ours until `READY=1` arrives on the socket; PID 1's
//! PSS and anonymous (private) memory once settled (its pid outside the
//! namespace is the child of `unshare`); and the shutdown, from SIGTERM to
//! PID 1 until `unshare` has exited. Also, as parts of the start: the
//! namespace alone (`unshare ... /bin/true`) and the start of our binary
//! (`supervisor --version`).
//!
//! Needs root (PID namespaces) and `unshare`; without them the part says
//! so and measures nothing.

use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{kill_tagged, ms, svc_name, toml_str, Bins, Memory, Report, Res, Settings, Summary, KIB_PER_MIB};

/// Services in the container.
const SERVICES: usize = 10;
/// How the namespace is made; the PID 1's command line follows.
const UNSHARE: [&str; 5] = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
/// How long a start or a shutdown may take before the round fails.
const LIMIT: Duration = Duration::from_secs(30);

/// What runs as PID 1.
#[derive(Debug, Clone)]
enum Init {
    /// `supervisor -c FILE run`, with this binary; `false`: with
    /// `cgroups = false`, as where the cgroup tree is read-only.
    Ours(PathBuf, bool),
    /// `tini -- sh -c SCRIPT`, with this binary.
    Tini(PathBuf),
    /// `s6-svscan SCANDIR`.
    S6,
}

/// One PID 1 under test and its samples.
struct Contender {
    label: String,
    init: Init,
    rounds: Vec<Sample>,
}

/// What PID 1's PSS is made of, in kB: its own executable, shared
/// libraries (with their RSS, for what a container of its own would
/// share less), and the rest (anonymous memory: heap, stacks).
#[derive(Debug, Clone, Copy, Default)]
struct PssParts {
    exe: u64,
    libs: u64,
    libs_rss: u64,
    rest: u64,
}

impl PssParts {
    /// Reads `/proc/PID/smaps`, grouping the mappings by file.
    fn of(pid: i32) -> Res<PssParts> {
        let exe = fs::read_link(format!("/proc/{pid}/exe"))?.display().to_string();
        let text = fs::read_to_string(format!("/proc/{pid}/smaps"))?;
        let mut parts = PssParts::default();
        let mut path = String::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or_default();
            if !first.ends_with(':') {
                path = words.nth(4).unwrap_or_default().to_string();
                continue;
            }
            let kb = || words.clone().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let lib = path.contains(".so");
            match first {
                "Pss:" if path == exe => parts.exe += kb(),
                "Pss:" if lib => parts.libs += kb(),
                "Pss:" => parts.rest += kb(),
                "Rss:" if lib => parts.libs_rss += kb(),
                _ => {}
            }
        }
        Ok(parts)
    }
}

/// What one round measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Spawn of `unshare` to the 10th line on the FIFO.
    ran: Duration,
    /// Spawn of `unshare` to `READY=1` (ours only).
    ready: Option<Duration>,
    /// PID 1, settled.
    mem: Memory,
    /// PID 1's PSS by origin.
    parts: PssParts,
    /// PSS of PID 1 and its children that are not services (s6-supervise).
    tree_pss: u64,
    /// From ours' log: "starting" to the last "started" (the spawns), and
    /// from there to the last "running" (seconds).
    phases: Option<(f64, f64)>,
    /// SIGTERM to PID 1 until `unshare` exited.
    down: Duration,
    /// `unshare`'s exit code (PID 1's).
    code: i32,
}

/// Whether the ELF file at `path` names a program interpreter (is linked
/// dynamically).
fn is_dynamic(path: &Path) -> Res<bool> {
    let elf = fs::read(path)?;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return Err(format!("{}: not a 64-bit ELF file", path.display()).into());
    }
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into()?) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    Ok((0..count).any(|i| {
        let at = phoff + i * size;
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == PT_INTERP)
    }))
}

/// A service's shell command: a line on the FIFO, then readiness on
/// fd 3 (ours), then `sleep`.
fn service_script(fifo: &Path, ready_fd: bool) -> String {
    let ready = if ready_fd { "echo >&3; " } else { "" };
    format!("echo > {}; {ready}exec sleep 1000000", fifo.display())
}

/// A PID namespace whose PID 1 runs, with what the bench reads from it.
struct Container {
    dir: tempfile::TempDir,
    unshare: Option<Child>,
}

impl Container {
    /// Writes `init`'s configuration in a new temporary directory, makes
    /// the FIFO and the notify socket, spawns `unshare`, and waits until
    /// the services ran (and ours said `READY=1`).
    fn start(init: &Init) -> Res<(Container, Duration, Option<Duration>)> {
        let dir = tempfile::Builder::new().prefix("sv-bench-ct-").tempdir_in("/tmp")?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        // Open for writing too: the services' writes never block and the
        // reader never sees an end of file.
        let mut lines = fs::OpenOptions::new().read(true).write(true).open(&fifo)?;
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_nonblocking(true)?;

        let mut cmd = Command::new(UNSHARE[0]);
        cmd.args(&UNSHARE[1..]);
        match init {
            Init::Ours(bin, cgroups) => {
                let config = dir.path().join("supervisor.toml");
                let rt = toml_str(&dir.path().join("rt").display().to_string());
                let mut text = format!("[supervisor]\nname = \"bench\"\nruntime_dir = {rt}\ncgroups = {cgroups}\n");
                let script = toml_str(&service_script(&fifo, true));
                for i in 0..SERVICES {
                    text += &format!(
                        "\n[service.{}]\ncommand = [\"/bin/sh\", \"-c\", {script}]\nready.notify = \"fd:3\"\n",
                        svc_name(i)
                    );
                }
                fs::write(&config, text)?;
                cmd.arg(bin).arg("-c").arg(&config).arg("run").env("NOTIFY_SOCKET", &notify_path);
            }
            Init::Tini(bin) => {
                let one = service_script(&fifo, false);
                let list: Vec<String> = (0..SERVICES).map(svc_name).collect();
                let script = format!("for s in {}; do sh -c '{one}' & done; wait", list.join(" "));
                cmd.arg(bin).args(["--", "/bin/sh", "-c", &script]);
            }
            Init::S6 => {
                let scan = dir.path().join("scan");
                for i in 0..SERVICES {
                    let svc = scan.join(svc_name(i));
                    fs::create_dir_all(&svc)?;
                    let run = svc.join("run");
                    fs::write(&run, format!("#!/bin/sh\n{}\n", service_script(&fifo, false)))?;
                    fs::set_permissions(&run, fs::Permissions::from_mode(0o755))?;
                }
                cmd.arg("s6-svscan").arg(&scan);
            }
        }
        let log = fs::File::create(dir.path().join("pid1.log"))?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);

        let t0 = Instant::now();
        let mut ct = Container { dir, unshare: Some(cmd.spawn()?) };
        let want_ready = matches!(init, Init::Ours(..));
        let (mut ran, mut ready, mut count) = (None, None, 0);
        let deadline = t0 + LIMIT;
        while ran.is_none() || (want_ready && ready.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(
                    format!("{init:?}: {count} of {SERVICES} services ran, READY=1: {ready:?}; {}", ct.log()).into()
                );
            }
            let mut fds =
                [PollFd::new(lines.as_fd(), PollFlags::POLLIN), PollFd::new(notify.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(left.min(Duration::from_millis(100))).unwrap_or(PollTimeout::MAX);
            poll(&mut fds, ms)?;
            let now = Instant::now();
            let (line, datagram) = (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false));
            if line {
                let mut buf = [0u8; 256];
                let n = lines.read(&mut buf)?;
                count += buf[..n].split(|&b| b == b'\n').count() - 1;
                if count >= SERVICES && ran.is_none() {
                    ran = Some(now - t0);
                }
            }
            if datagram {
                let mut buf = [0u8; 4096];
                while let Ok(n) = notify.recv(&mut buf) {
                    if ready.is_none() && buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1") {
                        ready = Some(now - t0);
                    }
                }
            }
            if let Some(status) = ct.unshare.as_mut().map(Child::try_wait).transpose()?.flatten() {
                return Err(format!("{init:?}: PID 1 exited ({status}) at start; {}", ct.log()).into());
            }
        }
        Ok((ct, ran.unwrap_or_default(), ready))
    }

    /// PID 1's log (its standard output and error).
    fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("pid1.log")).unwrap_or_default()
    }

    /// The same, for an error message.
    fn log(&self) -> String {
        format!("its log:\n{}", self.log_text())
    }

    /// PID 1's pid outside the namespace: the child of `unshare`.
    fn pid1(&self) -> Res<i32> {
        let u = self.unshare.as_ref().ok_or("not running")?.id();
        let text = fs::read_to_string(format!("/proc/{u}/task/{u}/children"))?;
        let pid: i32 = text.split_whitespace().next().ok_or("unshare has no child")?.parse()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).ok_or("no NSpid")?;
        if !nspid.ends_with("\t1") {
            return Err(format!("pid {pid} is not PID 1 of its namespace: {nspid}").into());
        }
        Ok(pid)
    }

    /// SIGTERM to PID 1; the time until `unshare` has exited, and its
    /// exit code.
    fn stop(&mut self) -> Res<(Duration, i32)> {
        let pid = self.pid1()?;
        let mut child = self.unshare.take().ok_or("not running")?;
        let t0 = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGTERM)?;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((t0.elapsed(), status.code().unwrap_or(-1)));
            }
            if t0.elapsed() > LIMIT {
                self.unshare = Some(child);
                return Err(format!("PID 1 did not exit within {LIMIT:?} of SIGTERM").into());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Container {
    /// Kills PID 1 (the kernel kills the rest of the namespace), then
    /// anything left that names the directory.
    fn drop(&mut self) {
        if let Ok(pid) = self.pid1() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(mut child) = self.unshare.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_tagged(self.dir.path());
    }
}

/// One round: start, settle, read the memory, stop.
fn round(init: &Init) -> Res<Sample> {
    let (mut ct, ran, ready) = Container::start(init)?;
    std::thread::sleep(Duration::from_millis(500));
    let pid = ct.pid1()?;
    let mem = Memory::of(pid)?;
    let parts = PssParts::of(pid)?;
    let mut tree_pss = mem.pss;
    if matches!(init, Init::S6) {
        for child in supervisor_core::process::children(pid) {
            tree_pss += super::smaps_rollup_kb(child, "Pss")?;
        }
    }
    let phases = if matches!(init, Init::Ours(..)) { Some(log_phases(&ct.log_text())?) } else { None };
    let (down, code) = ct.stop()?;
    Ok(Sample { ran, ready, mem, parts, tree_pss, phases, down, code })
}

/// The seconds of the day of a log line (`2026-12-05T10:36:06.079829Z
/// INFO ...`).
fn log_time(line: &str) -> Option<f64> {
    let clock = line.split_once('T')?.1.split_once('Z')?.0;
    let mut parts = clock.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + sec.parse::<f64>().ok()?)
}

/// From the supervisor's log: "starting N service(s)" to the last
/// "started pid", and from there to the last "running".
fn log_phases(log: &str) -> Res<(f64, f64)> {
    let last = |what: &str| log.lines().filter(|l| l.contains(what)).filter_map(log_time).next_back();
    let start = last(" starting ").ok_or("no \"starting\" in the log")?;
    let spawned = last(": started pid ").ok_or("no \"started\" in the log")?;
    let running = last(": running (pid ").ok_or("no \"running\" in the log")?;
    Ok((spawned - start, running - spawned))
}

/// Wall times of `argv` run to completion, `runs` times, in ms.
fn command_wall(argv: &[&str], runs: usize) -> Res<Summary> {
    super::time_runs(runs, || {
        let out = Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(format!("{argv:?}: {}", out.status).into());
        }
        Ok(())
    })
}

/// Where `program` is on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// `12.3 ms (10.1-15.6)`: the median and the range of `v`, in ms.
fn mid_range(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let s = Summary::of(v);
    format!("{:.1} ms ({min:.1}-{:.1})", s.median, s.max)
}

/// Median of `f` over the samples.
fn median(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    Summary::of(&samples.iter().map(f).collect::<Vec<_>>()).median
}

/// Part `container`.
pub(super) fn bench_container(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    if !nix::unistd::geteuid().is_root() || on_path("unshare").is_none() {
        report.info("container (PID namespace)", "not measured: needs root and unshare".into());
        return Ok(());
    }
    let mut contenders = Vec::new();
    let mut ours = vec![bins.supervisor.clone()];
    if let Ok(path) = std::env::var("BENCH_STATIC_BIN") {
        ours.push(PathBuf::from(path));
    }
    for bin in ours {
        let kind = if is_dynamic(&bin)? { "dynamic" } else { "static" };
        for (cgroups, what) in [(true, ""), (false, ", cgroups = false")] {
            let label = format!("ours ({kind}{what})");
            contenders.push(Contender { label, init: Init::Ours(bin.clone(), cgroups), rounds: Vec::new() });
        }
    }
    for tini in ["/usr/bin/tini", "/usr/bin/tini-static"] {
        let path = PathBuf::from(tini);
        if path.is_file() {
            let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
            let label = if is_dynamic(&path)? { format!("{name} (dynamic)") } else { name };
            contenders.push(Contender { label, init: Init::Tini(path), rounds: Vec::new() });
        }
    }
    if let Some(path) = on_path("s6-svscan") {
        let label = if is_dynamic(&path)? { "s6-svscan (dynamic)" } else { "s6-svscan" };
        contenders.push(Contender { label: label.into(), init: Init::S6, rounds: Vec::new() });
    } else {
        report.info("container: s6-svscan", "not measured: s6 is not installed".into());
    }

    let rounds = if settings.quick { 2 } else { 5 };
    let names: Vec<&str> = contenders.iter().map(|c| c.label.as_str()).collect();
    println!("a container's PID 1 with {SERVICES} services, {rounds} rounds: {}...", names.join(", "));
    for _ in 0..rounds {
        for c in &mut contenders {
            let x = round(&c.init)?;
            let ready = x.ready.map_or(String::new(), |r| format!(", READY=1 {:.1} ms", ms(r)));
            println!("  {}: ran {:.1} ms{ready}, PSS {} kB, down {:.1} ms", c.label, ms(x.ran), x.mem.pss, ms(x.down));
            c.rounds.push(x);
        }
    }

    for c in &contenders {
        let s = &c.rounds;
        let ran = mid_range(&s.iter().map(|x| ms(x.ran)).collect::<Vec<_>>());
        let ready = s.iter().filter_map(|x| x.ready).map(ms).collect::<Vec<_>>();
        let mut start = if ready.is_empty() {
            format!("all {SERVICES} ran {ran}")
        } else {
            format!("all {SERVICES} ran {ran}, READY=1 {}", mid_range(&ready))
        };
        let pss = median(s, |x| x.mem.pss as f64);
        let mut memory = format!(
            "PSS {pss:.0} kB (anonymous {:.0} kB; RSS {:.2} MiB)",
            median(s, |x| x.mem.pss_anon as f64),
            median(s, |x| x.mem.rss as f64) / KIB_PER_MIB
        );
        memory += &format!(
            "; PSS of the executable {:.0}, libraries {:.0} (RSS {:.0}), the rest {:.0} kB",
            median(s, |x| x.parts.exe as f64),
            median(s, |x| x.parts.libs as f64),
            median(s, |x| x.parts.libs_rss as f64),
            median(s, |x| x.parts.rest as f64)
        );
        if matches!(c.init, Init::S6) {
            memory += &format!("; with the {SERVICES} s6-supervise {:.0} kB", median(s, |x| x.tree_pss as f64));
        }
        let phases: Vec<(f64, f64)> = s.iter().filter_map(|x| x.phases).collect();
        if !phases.is_empty() {
            start += &format!(
                " (its log: the {SERVICES} spawns {:.1} ms, then to the last running {:.1} ms)",
                Summary::of(&phases.iter().map(|p| p.0 * 1e3).collect::<Vec<_>>()).median,
                Summary::of(&phases.iter().map(|p| p.1 * 1e3).collect::<Vec<_>>()).median
            );
        }
        let codes: Vec<String> = s.iter().map(|x| x.code.to_string()).collect();
        report.info(&format!("container, {}: start (spawn unshare ->)", c.label), format!("median {start}"));
        report.info(&format!("container, {}: PID 1 memory", c.label), format!("median {memory}"));
        report.info(
            &format!("container, {}: SIGTERM to PID 1 -> unshare exited", c.label),
            format!(
                "median {} (exit codes {}; n {})",
                mid_range(&s.iter().map(|x| ms(x.down)).collect::<Vec<_>>()),
                codes.join(" "),
                s.len()
            ),
        );
    }

    let runs = if settings.quick { 5 } else { 20 };
    let bare = command_wall(&[UNSHARE[0], UNSHARE[1], UNSHARE[2], UNSHARE[3], UNSHARE[4], "/bin/true"], runs)?;
    report.info("  part: the namespace alone (unshare ... /bin/true)", bare.ms_text());
    for c in &contenders {
        if let Init::Ours(bin, true) = &c.init {
            let bin = bin.display().to_string();
            let version = command_wall(&[&bin, "--version"], runs)?;
            report.info(&format!("  part: {}: supervisor --version", c.label), version.ms_text());
        }
    }
    Ok(())
}
