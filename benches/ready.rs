//! Readiness and dependencies, on the library in this process (what
//! `supervisor run` drives):
//!
//! 1. start to ready: 1000 services ready by `notify = "fd:3"`, once
//!    without dependencies and once as a tree three levels deep (10 roots,
//!    90 that each require a root, 900 that each require one of those),
//!    from the first `add_service` until every one is `running`, in turn;
//! 2. `sd_notify` latency: from a service's `READY=1` (its wall clock just
//!    before the send) to the engine's change to `running`;
//! 3. the cost of health checks: 100 services with an exec health check
//!    every second, the engine's own CPU time over a stretch of wall time.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use supervisor_core::{Command, Engine, HealthCheck, Probe, ReadyCheck, ReadyPolicy, Service, ServiceState};

use super::{Bins, Report, Res, Settings, Summary};

/// Turns `engine` until `done`, at most `limit`.
fn turn_until(engine: &mut Engine, limit: Duration, mut done: impl FnMut(&Engine) -> bool) -> Res<()> {
    let deadline = Instant::now() + limit;
    while !done(engine) {
        if Instant::now() > deadline {
            return Err("timed out".into());
        }
        engine.turn(Some(Duration::from_millis(50)))?;
    }
    Ok(())
}

fn all_running(e: &Engine) -> bool {
    e.status().services.iter().all(|s| s.state == ServiceState::Running)
}

/// Shuts the engine down and turns it until it is done.
fn finish(mut engine: Engine) -> Res<()> {
    engine.shutdown();
    turn_until(&mut engine, Duration::from_mins(1), Engine::is_finished)
}

/// A service ready by a newline on fd 3, requiring `requires`.
fn fd_ready(bins: &Bins, name: String, requires: Option<String>) -> Service {
    let mut svc = Service::new(name, Command::argv([bins.helper(), "ready-fd".into(), "3".into()]));
    svc.ready = Some(ReadyPolicy::new(ReadyCheck::Fd(3)).into());
    svc.requires = requires.into_iter().collect();
    svc
}

/// Seconds from the first add until all `n` are running, and from the
/// shutdown until all are gone; `tree`: three levels of dependencies.
fn start_to_ready(bins: &Bins, n: usize, tree: bool) -> Res<(f64, f64)> {
    let mut engine = Engine::new("bench-ready")?;
    let (roots, middle) = (n / 100, n / 100 * 9);
    let t0 = Instant::now();
    for i in 0..n {
        let requires = match i {
            _ if !tree || i < roots => None,
            _ if i < roots + middle => Some(format!("svc-{:04}", i % roots)),
            _ => Some(format!("svc-{:04}", roots + i % middle)),
        };
        engine.add_service(fd_ready(bins, format!("svc-{i:04}"), requires))?;
    }
    turn_until(&mut engine, Duration::from_mins(2), all_running)?;
    let took = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    finish(engine)?;
    Ok((took, t1.elapsed().as_secs_f64()))
}

/// Milliseconds from each service's `READY=1` to its change to `running`.
fn notify_latencies(bins: &Bins, dir: &Path, n: usize) -> Res<Vec<f64>> {
    let mut engine = Engine::new("bench-notify")?;
    engine.listen_notify(dir.join("notify.sock"))?;
    let changes = engine.subscribe();
    for i in 0..n {
        let stamp = dir.join(format!("stamp-{i}"));
        let argv = [bins.helper(), "notify-stamp".into(), stamp.display().to_string()];
        let mut svc = Service::new(format!("svc-{i:04}"), Command::argv(argv));
        svc.ready = Some(ReadyPolicy::new(ReadyCheck::Systemd).into());
        engine.add_service(svc)?;
        // One at a time: the latency of one datagram, not of a queue.
        turn_until(&mut engine, Duration::from_secs(10), |e| {
            e.state(&format!("svc-{i:04}")) == Some(ServiceState::Running)
        })?;
    }
    let mut ready_at = std::collections::HashMap::new();
    for c in changes.try_iter().filter(|c| c.to == ServiceState::Running) {
        ready_at.insert(c.service.clone(), c.at);
    }
    let mut ms = Vec::new();
    for i in 0..n {
        let sent: i128 = std::fs::read_to_string(dir.join(format!("stamp-{i}")))?.trim().parse()?;
        let at = ready_at.get(&format!("svc-{i:04}")).ok_or("no change to running")?;
        let seen = at.duration_since(SystemTime::UNIX_EPOCH)?.as_nanos() as i128;
        ms.push((seen - sent) as f64 / 1e6);
    }
    finish(engine)?;
    Ok(ms)
}

/// The engine's CPU time (this process) as a share of one core, with
/// `n` services whose exec health check runs every second, over `span`.
fn health_cost(bins: &Bins, n: usize, span: Duration) -> Res<(f64, f64)> {
    let mut engine = Engine::new("bench-health")?;
    for i in 0..n {
        let mut svc = Service::new(format!("svc-{i:04}"), Command::argv([bins.helper(), "sleep".into()]));
        svc.restart.min_uptime = Duration::from_millis(100);
        let mut health = HealthCheck::new(Probe::Exec(Command::argv(["/bin/true"])));
        health.interval = Duration::from_secs(1);
        svc.health = Some(health.into());
        engine.add_service(svc)?;
    }
    turn_until(&mut engine, Duration::from_mins(1), |e| {
        e.status().services.iter().all(|s| s.health.as_ref().is_some_and(|h| h.state == "healthy"))
    })?;
    let usage = || nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    let cpu = |u: &nix::sys::resource::Usage| {
        let (a, b) = (u.user_time(), u.system_time());
        a.tv_sec() as f64 + a.tv_usec() as f64 / 1e6 + b.tv_sec() as f64 + b.tv_usec() as f64 / 1e6
    };
    let before = cpu(&usage()?);
    let t0 = Instant::now();
    while t0.elapsed() < span {
        engine.turn(Some(Duration::from_millis(500)))?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let used = cpu(&usage()?) - before;
    let failures: u32 = engine.status().services.iter().map(|s| s.health.as_ref().map_or(0, |h| h.failures)).sum();
    finish(engine)?;
    Ok((used / wall * 100.0, f64::from(failures)))
}

pub fn bench_ready(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    let n = settings.fleet;
    println!("readiness: {n} services ready by fd:3, without dependencies and as a tree three levels deep");
    let (mut flat, mut tree, mut flat_stop, mut tree_stop) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..settings.rounds {
        let (start, stop) = start_to_ready(bins, n, false)?;
        flat.push(start);
        flat_stop.push(stop);
        let (start, stop) = start_to_ready(bins, n, true)?;
        tree.push(start);
        tree_stop.push(stop);
    }
    let (f, t) = (Summary::of(&flat).median, Summary::of(&tree).median);
    let (fs, ts) = (Summary::of(&flat_stop).median, Summary::of(&tree_stop).median);
    report.info(
        &format!("shutdown of {n} services: tree of 3 levels (in reverse order) / no dependencies"),
        format!("median {ts:.3} / {fs:.3} s"),
    );
    report.check(
        &format!("start to all ready, {n} services: tree of 3 levels / no dependencies"),
        format!("median {t:.3} / {f:.3} s = {:.2} x", t / f),
        "<= 1.2 x",
        t / f <= 1.2,
    );

    let dir = tempfile::tempdir()?;
    let count = if settings.quick { 20 } else { 100 };
    let ms = notify_latencies(bins, dir.path(), count)?;
    let s = Summary::of(&ms);
    report.check(
        "sd_notify READY=1 to running",
        format!("median {:.3} ms, p99 {:.3} ms (n {})", s.median, s.p99, s.n),
        "median <= 1 ms",
        s.median <= 1.0,
    );

    let span = Duration::from_secs(if settings.quick { 5 } else { 20 });
    let (share, failures) = health_cost(bins, 100, span)?;
    report.check(
        "100 services, exec health check every 1 s: engine CPU",
        format!("{share:.2} % of one core over {} s ({failures} failed checks)", span.as_secs()),
        "< 2 %",
        share < 2.0,
    );
    Ok(())
}
