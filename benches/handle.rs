//! Handle round trip: `handle.status()` from another thread on an idle
//! engine (the library, in this process) with 100 running services, from
//! the call to its answer: the channel, the eventfd that wakes the engine's
//! `poll`, a status snapshot of 100 services, and the answer back. The
//! same call against a busy engine is not measured here.

use std::time::{Duration, Instant};

use supervisor_core::{Command, Engine, Handle, Service, ServiceState};

use super::{Bins, Report, Res, Settings, Summary};

/// Services on the engine.
const SERVICES: usize = 100;

pub fn bench_handle(bins: &Bins, settings: &Settings, report: &mut Report) -> Res<()> {
    println!("handle round trip: status() from another thread, idle engine, {SERVICES} services");
    let mut engine = Engine::new("bench-handle")?;
    for i in 0..SERVICES {
        let mut svc = Service::new(format!("svc-{i:04}"), Command::argv([bins.helper(), "sleep".into()]));
        svc.restart.min_uptime = Duration::from_millis(100);
        engine.add_service(svc)?;
    }
    let handle = engine.handle();
    let calls = if settings.quick { 2_000 } else { 20_000 };
    let caller = std::thread::spawn(move || -> Result<Vec<f64>, String> {
        let result = measure(&handle, calls);
        // Whatever happened, the engine must end.
        handle.shutdown().map_err(|e| e.to_string())?;
        result
    });
    engine.run()?;
    let samples = caller.join().map_err(|_| "the caller thread panicked")??;
    let s = Summary::of(&samples);
    let value = format!("median {:.1} us, p99 {:.1} us (max {:.1}, n {})", s.median, s.p99, s.max, s.n);
    report.check("handle.status() round trip, idle, 100 services", value, "median < 1000 us", s.median < 1000.0);
    Ok(())
}

/// Waits until every service runs, then times `calls` status requests
/// (the first tenth as warm-up), each after the engine has gone back to
/// sleep. Microseconds.
fn measure(handle: &Handle, calls: usize) -> Result<Vec<f64>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snap = handle.status().map_err(|e| e.to_string())?;
        if snap.services.iter().all(|s| s.state == ServiceState::Running) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the services did not all come up".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let warm = calls / 10;
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls + warm {
        // Let the engine fall asleep in poll again: an idle engine is
        // what is measured.
        std::thread::sleep(Duration::from_micros(200));
        let start = Instant::now();
        let snap = handle.status().map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if snap.services.len() != SERVICES {
            return Err(format!("{} services in the status", snap.services.len()));
        }
        if i >= warm {
            samples.push(took.as_secs_f64() * 1e6);
        }
    }
    Ok(samples)
}
