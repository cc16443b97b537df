//! Driving the engine from your own event loop.
//!
//! An agent, a deploy tool or a test harness often has a loop of its own
//! already. It needs three things from an [`Engine`], and nothing else:
//!
//! - [`AsFd::as_fd`]: one descriptor, readable whenever the engine has work;
//! - [`Engine::next_deadline`]: when to turn the engine anyway (a backoff
//!   ends, a stop times out), or `None`;
//! - [`Engine::turn`]`(Some(Duration::ZERO))`: does that work and never
//!   blocks.
//!
//! Here the host loop is a plain `poll(2)` on the main thread, which prints
//! every [`StateChange`]; a `mio` loop would register the same descriptor
//! (`mio::unix::SourceFd`). A second thread controls the services through a
//! [`Handle`], as an agent's request handlers would, then shuts down.
//!
//! ```text
//! cargo run -p supervisor-core --example agent
//! ```

use std::error::Error;
use std::os::fd::AsFd;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use supervisor_core::{Command, Engine, Handle, Output, Service, ServiceState, ServiceStatus, Signal, StateChange};

type BoxError = Box<dyn Error + Send + Sync>;

/// A service that counts as running after 200 ms instead of 1 s.
fn quick(mut svc: Service) -> Service {
    svc.restart.min_uptime = Duration::from_millis(200);
    svc
}

/// Asks for the status until service `name` satisfies `done`.
fn wait_for(handle: &Handle, name: &str, done: impl Fn(&ServiceStatus) -> bool) -> Result<ServiceStatus, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = handle.status()?.services.into_iter().find(|s| s.name == name).ok_or("no such service")?;
        if done(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {name}").into());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// What the controlling thread does; any thread may hold a handle.
fn control(handle: &Handle) -> Result<(), BoxError> {
    let running = |s: &ServiceStatus| s.state == ServiceState::Running;
    let first = wait_for(handle, "web", running)?.pid;
    println!("controller: web runs as pid {}; restarting it", first.unwrap_or_default());
    handle.restart("web")?;

    let second = wait_for(handle, "web", |s| running(s) && s.pid != first)?.pid;
    println!("controller: web is back as pid {}; USR1 kills sleep", second.unwrap_or_default());
    let signalled = handle.signal("web", Signal::SIGUSR1)?;
    println!("controller: signal sent: {signalled}");
    wait_for(handle, "web", |s| running(s) && s.pid != second)?;

    if let Err(e) = handle.stop("db") {
        println!("controller: stop db: {e}");
    }
    for s in handle.status()?.services {
        let pid = s.pid.unwrap_or_default();
        println!("controller: {} is {} (pid {pid}), {} restart(s)", s.name, s.state, s.restarts);
    }
    println!("controller: shutting down");
    Ok(())
}

/// How long `poll` may sleep: until the engine's next deadline, rounded up
/// to a millisecond so that it is not woken a little early, or for ever.
fn timeout_until(deadline: Option<Instant>) -> PollTimeout {
    deadline.map_or(PollTimeout::NONE, |d| {
        let ms = d.saturating_duration_since(Instant::now()).as_micros().div_ceil(1000);
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
    })
}

fn print_change(t0: SystemTime, change: &StateChange) {
    let at = change.at.duration_since(t0).unwrap_or_default().as_secs_f64();
    let pid = change.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
    let exit = change.exit.map(|x| format!("; the last one {x}")).unwrap_or_default();
    println!("{at:6.3}s {:<5} {} -> {}{pid}{exit}", change.service, change.from, change.to);
}

fn main() -> Result<(), Box<dyn Error>> {
    let t0 = SystemTime::now();
    let mut engine = Engine::new("agent")?;
    // Subscribed before the services are added, to see their first start.
    let events = engine.subscribe();
    engine.add_service(quick(Service::new("web", Command::argv(["sleep", "30"]))))?;
    let mut clock = quick(Service::new("clock", Command::parse("sh -c 'while :; do date +%T; sleep 1; done'")?));
    clock.stdout = Output::Null;
    engine.add_service(clock)?;

    let handle = engine.handle();
    let controller = thread::spawn(move || {
        let result = control(&handle);
        // In any case, or the host loop below would never end. Returns once
        // every service is stopped.
        handle.shutdown()?;
        result
    });

    // The host's own loop: wait on the engine's descriptor until its next
    // deadline, turn it without blocking, read the events.
    while !engine.is_finished() {
        let mut fds = [PollFd::new(engine.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout_until(engine.next_deadline())) {
            // A signal (SIGCHLD) interrupts poll: the engine has work then.
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        engine.turn(Some(Duration::ZERO))?;
        for change in events.try_iter() {
            print_change(t0, &change);
        }
    }
    controller.join().map_err(|_| "the controller thread panicked")?.map_err(|e| e as Box<dyn Error>)?;
    println!("all stopped");
    Ok(())
}
