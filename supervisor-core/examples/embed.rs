//! Embedding the engine in your own program.
//!
//! Runs two services under an [`Engine`], serves the control socket in a
//! temporary directory (try `supervisor`-style JSON requests against it
//! while it runs), prints their status as JSON, crashes one to watch it
//! come back, and shuts down cleanly.
//!
//! ```text
//! cargo run -p supervisor-core --example embed
//! ```

use std::error::Error;
use std::time::{Duration, Instant};

use supervisor_core::{AccessPolicy, Command, Engine, Service, ServiceState, Signal};

fn wait_until(engine: &mut Engine, what: &str, mut done: impl FnMut(&Engine) -> bool) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(engine) {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        // Sleeps in poll(2) until something happens, at most 100 ms here.
        engine.turn(Some(Duration::from_millis(100)))?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let mut engine = Engine::new("embedded")?;
    // Only root and our own user may talk to it.
    engine.serve_control(&dir.path().join("control.sock"), AccessPolicy::default())?;

    let mut clock = Service::new("clock", Command::parse("sh -c 'while :; do date +%T; sleep 1; done'")?);
    clock.restart.min_uptime = Duration::from_millis(200);
    clock.stdout = supervisor_core::Output::Null;
    engine.add_service(clock)?;

    let mut worker = Service::new("worker", Command::Argv(vec!["sleep".into(), "300".into()]));
    worker.restart.min_uptime = Duration::from_millis(200);
    worker.stop_timeout = Duration::from_secs(2);
    engine.add_service(worker)?;

    wait_until(&mut engine, "both services to run", |e| {
        e.state("clock") == Some(ServiceState::Running) && e.state("worker") == Some(ServiceState::Running)
    })?;
    println!("{}", serde_json::to_string_pretty(&engine.status())?);

    let pid = engine.status().services[1].pid.ok_or("worker has no pid")?;
    println!("killing worker (pid {pid}) to see it restarted");
    engine.signal("worker", Signal::SIGKILL)?;
    wait_until(&mut engine, "a new worker", |e| {
        let s = &e.status().services[1];
        s.state == ServiceState::Running && s.pid != Some(pid)
    })?;
    let s = &engine.status().services[1];
    println!("worker is back as pid {:?} after {:?}, restarts: {}", s.pid, s.last_exit, s.restarts);

    engine.shutdown();
    engine.run()?;
    println!("all stopped: {:?}", engine.status().services.iter().map(|s| s.state).collect::<Vec<_>>());
    Ok(())
}
