//! Restart latency under load and at scale (parts `load` and `scale`).
//!
//! - `load`: the crash-to-restart latency of [`VICTIMS`] services, first
//!   beside 100 idle services, then beside 1000 hostile control clients
//!   (silent, half-written, one byte at a time, oversized lines, connect
//!   and hang up, about 1000 connections a second) and 100 services that
//!   crash-loop (each restarted every second, for ever); and the
//!   supervisor's memory (PSS and its anonymous part) before, during and
//!   after the load. Target: p99 under load at most twice the idle p99,
//!   judged with the supervisor at real-time priority (see [`bench_load`]).
//! - `scale`: with 10, 1000 and 10,000 idle services (10 and 1000 in quick
//!   mode; see [`NO_OUTPUT`]): the restart latency, the memory, and a
//!   `status` of one service over the socket. Target: the median latency with the most services at
//!   most 1.5 times that with 10. `BENCH_CGROUPS=false` runs it with
//!   `[supervisor] cgroups = false`.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

use super::{
    kill_and_time_restart, ns_to_ms, svc_name, time_socket_status, toml_str, wait_all_stamped, wait_for, Bins,
    Instance, Memory, Report, Res, Settings, Summary, VICTIMS,
};

/// Everything the victims need: they stamp each start, and are killed
/// once they have run past `min_uptime`.
fn victims_toml(helper: &str, dir: &Path) -> String {
    let mut t = String::new();
    for i in 0..VICTIMS {
        let stamps = dir.join("stamps").join(svc_name(i)).display().to_string();
        t.push_str(&format!(
            "[service.{}]\ncommand = [{}, \"stamp\", {}]\n",
            svc_name(i),
            toml_str(helper),
            toml_str(&stamps)
        ));
    }
    t
}

/// `n` idle services after the victims, each with the `extra` keys.
fn sleepers_toml(helper: &str, n: usize, extra: &str) -> String {
    let mut t = String::new();
    for i in VICTIMS..VICTIMS + n {
        t.push_str(&format!(
            "[service.{}]\ncommand = [{}, \"sleep\"]\nmin_uptime = \"50ms\"\n{extra}",
            svc_name(i),
            toml_str(helper)
        ));
    }
    t
}

/// The idle services of the `scale` part write nowhere: with a transcript
/// each would hold two pipes, and 10,000 of them would need more than the
/// 20,000 descriptors that the hard limit gives on the machines we measure
/// on.
const NO_OUTPUT: &str = "stdout = \"null\"\nstderr = \"null\"\n";

/// `n` services that exit at once with 1, for ever: each is restarted
/// every second (`backoff_limit`), about `n` restarts a second in all.
fn crash_loops_toml(helper: &str, n: usize) -> String {
    let mut t = String::new();
    for i in 0..n {
        t.push_str(&format!(
            "[service.crash{i:03}]\ncommand = [{}, \"exit\", \"1\"]\nforever = true\nbackoff_limit = \"1s\"\n",
            toml_str(helper)
        ));
    }
    t
}

/// The victims' stamp files.
fn stamp_files(inst: &Instance) -> Vec<PathBuf> {
    (0..VICTIMS).map(|i| inst.path(&format!("stamps/{}", svc_name(i)))).collect()
}

/// Starts `inst`, waits for the victims' first stamps and for the number
/// of running services to reach `running`.
fn start(inst: &mut Instance, running: usize) -> Res<()> {
    inst.launch()?;
    inst.wait_ready()?;
    let files = stamp_files(inst);
    wait_all_stamped(&files, Duration::from_mins(3), || inst.check_alive())?;
    wait_for("the services to run", Duration::from_mins(3), Duration::from_millis(500), || {
        inst.check_alive()?;
        let st = inst.status()?;
        Ok((st.services.iter().filter(|s| s.state == supervisor_core::ServiceState::Running).count() >= running)
            .then_some(()))
    })
}

/// `kills` restarts of the victims, in turn; milliseconds.
fn restarts(inst: &mut Instance, kills: usize) -> Res<Summary> {
    let files = stamp_files(inst);
    let mut samples = Vec::with_capacity(kills);
    for k in 0..kills {
        inst.check_alive()?;
        samples.push(ns_to_ms(kill_and_time_restart(&files[k % VICTIMS])?));
    }
    Ok(Summary::of(&samples))
}

fn p99_text(s: &Summary) -> String {
    format!("median {:.3} ms, p99 {:.3} ms (max {:.3}, n {})", s.median, s.p99, s.max, s.n)
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn memory_text(m: &Memory) -> String {
    format!("PSS {:.2} MiB, anonymous {:.2} MiB", mib(m.pss), mib(m.pss_anon))
}

/// Puts the supervisor of `inst` at real-time priority (`SCHED_FIFO` 10),
/// which the services it starts from then on inherit; false when that is
/// not allowed (no `CAP_SYS_NICE`).
fn real_time(inst: &Instance) -> bool {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: a plain system call on a pid, with a valid parameter.
    unsafe { libc::sched_setscheduler(inst.pid(), libc::SCHED_FIFO, &raw const param) == 0 }
}

/// The latency idle, then under load, at normal or at real-time priority.
struct Round {
    quiet: Summary,
    loaded: Summary,
    status: Summary,
    connections: usize,
    memory: [Memory; 3],
}

fn round(bins: &Bins, settings: &Settings, clients: usize, rt: bool) -> Res<Option<Round>> {
    let helper = bins.helper();
    let mut idle =
        Instance::with_services_text(bins, |dir| victims_toml(&helper, dir) + &sleepers_toml(&helper, 100, ""))?;
    start(&mut idle, VICTIMS + 100)?;
    if rt && !real_time(&idle) {
        idle.shutdown()?;
        return Ok(None);
    }
    let quiet = restarts(&mut idle, settings.kills)?;
    idle.shutdown()?;

    let mut inst = Instance::with_services_text(bins, |dir| {
        victims_toml(&helper, dir) + &sleepers_toml(&helper, 100, "") + &crash_loops_toml(&helper, 100)
    })?;
    start(&mut inst, VICTIMS + 100)?;
    if rt {
        real_time(&inst);
    }
    let before = Memory::of(inst.pid())?;
    let hostile = Hostile::start(&inst.path("rt/run/control.sock"), clients);
    std::thread::sleep(Duration::from_secs(2));
    let loaded = restarts(&mut inst, settings.kills)?;
    let during = Memory::of(inst.pid())?;
    let status = time_socket_status(&inst, settings.runs)?;
    let figures = hostile.stop();
    std::thread::sleep(Duration::from_secs(6));
    let after = Memory::of(inst.pid())?;
    inst.shutdown()?;
    Ok(Some(Round { quiet, loaded, status, connections: figures.connections, memory: [before, during, after] }))
}

/// Part `load`. It runs twice: at normal priority, where the tail is
/// mostly the CPU that the bench's own client threads take from the
/// supervisor on a small machine, and with the supervisor (and what it
/// starts) at real-time priority, which leaves only the supervisor's own
/// work in the figure: the target is judged there.
pub(super) fn bench_load(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    let clients = if settings.quick { 200 } else { 1000 };
    println!("restart latency, idle and under load ({} kills each), at normal priority...", settings.kills);
    let Some(normal) = round(bins, settings, clients, false)? else { return Err("no round".into()) };
    report.info("restart latency, 100 idle services beside", p99_text(&normal.quiet));
    report.info(
        &format!("  load: {clients} hostile clients, 100 crash loops"),
        format!("{} connections, {} requests answered while loaded", normal.connections, normal.status.n),
    );
    let ratio = |r: &Round| r.loaded.p99 / r.quiet.p99;
    report
        .info("restart latency under load", format!("{} ({:.2} x idle p99)", p99_text(&normal.loaded), ratio(&normal)));
    report.info("  status of one service under load (socket)", normal.status.ms_text());
    let [before, during, after] = &normal.memory;
    report.info("  memory before / during / after the load", {
        format!("{} / {} / {}", memory_text(before), memory_text(during), memory_text(after))
    });
    println!("the same with the supervisor at real-time priority (SCHED_FIFO)...");
    match round(bins, settings, clients, true)? {
        Some(rt) => {
            report.info("SCHED_FIFO: restart latency, idle", p99_text(&rt.quiet));
            report.check(
                "SCHED_FIFO: restart latency under load",
                format!("{} ({:.2} x idle p99)", p99_text(&rt.loaded), ratio(&rt)),
                "p99 <= 2 x idle p99",
                rt.loaded.p99 <= 2.0 * rt.quiet.p99,
            );
        }
        None => report.info("SCHED_FIFO: restart latency under load", "not measured: needs CAP_SYS_NICE".into()),
    }
    Ok(())
}

/// Part `scale`.
pub(super) fn bench_scale(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    let helper = bins.helper();
    let sizes: &[usize] = if settings.quick { &[10, 1000] } else { &[10, 1000, 10_000] };
    let mut first: Option<Summary> = None;
    for &n in sizes {
        println!("{n} services...");
        let idle = n.saturating_sub(VICTIMS);
        // `BENCH_CGROUPS=false`: the same, found through /proc.
        let keys = match std::env::var("BENCH_CGROUPS").as_deref() {
            Ok("false") => "cgroups = false\n",
            _ => "",
        };
        let mut inst = Instance::with_services_text(bins, |dir| {
            keys.to_owned() + &victims_toml(&helper, dir) + &sleepers_toml(&helper, idle, NO_OUTPUT)
        })?;
        let t0 = Instant::now();
        start(&mut inst, VICTIMS + idle)?;
        let up = t0.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let memory = Memory::of(inst.pid())?;
        let status = time_socket_status(&inst, settings.runs)?;
        let latency = restarts(&mut inst, settings.kills)?;
        let down = inst.shutdown()?;
        report.info(&format!("{n} services: restart latency"), p99_text(&latency));
        report.info(&format!("{n} services: memory"), memory_text(&memory));
        report.info(&format!("{n} services: status of one (socket)"), status.ms_text());
        report.info(
            &format!("{n} services: up, shutdown"),
            format!("{:.2} s, {:.2} s", up.as_secs_f64(), down.as_secs_f64()),
        );
        match &first {
            None => first = Some(latency),
            Some(base) if n == *sizes.last().unwrap_or(&n) => {
                let ratio = latency.median / base.median;
                report.check(
                    &format!("restart latency, {n} services against {}", sizes[0]),
                    format!("{ratio:.2} x (median {:.3} ms against {:.3} ms)", latency.median, base.median),
                    "<= 1.5 x",
                    ratio <= 1.5,
                );
            }
            Some(_) => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Hostile clients

/// What the hostile clients did.
struct Figures {
    connections: usize,
}

/// Threads that keep hostile connections open to a control socket.
struct Hostile {
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

/// A non-blocking connection, or none when the listener's queue is full.
fn dial(path: &Path, count: &AtomicUsize) -> Option<UnixStream> {
    let fd: OwnedFd =
        socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None).ok()?;
    let addr = UnixAddr::new(path).ok()?;
    use std::os::fd::AsRawFd;
    connect(fd.as_raw_fd(), &addr).ok()?;
    count.fetch_add(1, Ordering::Relaxed);
    Some(UnixStream::from(fd))
}

/// Whether the server closed `s` (or it broke).
fn closed(s: &mut UnixStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

impl Hostile {
    /// `n` clients: 60 % silent, 20 % with a half-written request, 10 %
    /// writing one byte every 100 ms, and 10 % connecting, sending an
    /// oversized or bad line and hanging up, over and over.
    fn start(path: &Path, n: usize) -> Hostile {
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        let kinds: [(usize, &'static [u8], Duration); 3] = [
            (n * 6 / 10, b"", Duration::from_millis(200)),
            (n * 2 / 10, b"{\"cmd\":\"sta", Duration::from_millis(200)),
            (n / 10, b"a", Duration::from_millis(100)),
        ];
        for (count, bytes, every) in kinds {
            let (stop, connections, path) = (stop.clone(), connections.clone(), path.to_path_buf());
            threads.push(std::thread::spawn(move || {
                use std::io::Write;
                let mut held: Vec<Option<UnixStream>> = (0..count).map(|_| None).collect();
                while !stop.load(Ordering::Relaxed) {
                    for slot in &mut held {
                        let fresh = slot.is_none();
                        if slot.as_mut().is_some_and(closed) || fresh {
                            *slot = dial(&path, &connections);
                            if let Some(s) = slot.as_mut() {
                                let _ = s.write(if bytes == b"a" { b"" } else { bytes });
                            }
                        } else if bytes == b"a" {
                            let _ = slot.as_mut().map(|s| s.write(b"a"));
                        }
                    }
                    std::thread::sleep(every);
                }
            }));
        }
        // About 1000 connections a second, half of them with a line over
        // the limit.
        for _ in 0..2 {
            let (stop, connections, path) = (stop.clone(), connections.clone(), path.to_path_buf());
            threads.push(std::thread::spawn(move || {
                use std::io::Write;
                let big = vec![b'x'; 200_000];
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(mut s) = dial(&path, &connections) {
                        let _ = s.write(if i.is_multiple_of(2) { &big[..] } else { b"not json\n" });
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }));
        }
        Hostile { stop, connections, threads }
    }

    fn stop(self) -> Figures {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        Figures { connections: self.connections.load(Ordering::Relaxed) }
    }
}
