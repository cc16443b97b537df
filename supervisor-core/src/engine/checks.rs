//! Readiness and health checks, and the watchdog.
//!
//! A service's checks follow its state and its main process. While it is
//! `starting` with a process, its readiness is watched: the pipe it writes
//! a newline on (`fd:N`), its `sd_notify` datagrams, its output lines, or a
//! probe tried every `interval`. Once `running`, its health probe runs
//! every `interval`, and its watchdog deadline is kept. In any other state
//! it has no checks and no deadline, so a service without checks costs
//! nothing at any turn.
//!
//! A service has at most one probe try in flight: a process of its own
//! (its own process group, killed at the try's deadline, reaped with the
//! other children) or a non-blocking socket in the epoll set. Nothing here
//! waits: a try moves on when its descriptor is ready, and the deadlines
//! are in the engine's set, which `poll` sleeps until.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;

use super::Engine;
use crate::machine::Event;
use crate::model::{human_secs, ExitStatus, Output, Probe, ReadyCheck, Service, ServiceState};
use crate::os::probe::{Connection, Interest, Progress};
use crate::os::{spawn, sys};

/// The most of a probe process's output kept: its last line is shown.
const OUTPUT_KEPT: usize = 4096;

/// The shortest time a try of a readiness probe may take (each try is
/// given its `interval`, and at least this).
const MIN_READY_TRY: Duration = Duration::from_secs(1);

/// What a service's checks are for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    Off,
    Ready,
    Health,
}

/// How the last probe try went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    /// It passed.
    pub(super) passed: bool,
    /// Its output's last line, or what happened ("connected to ...").
    pub(super) output: String,
    /// When it ended.
    pub(super) at: SystemTime,
}

/// A probe try in flight.
#[derive(Debug)]
enum Run {
    /// A command: its pid (its output goes to the service's probe pipe).
    Exec { pid: i32 },
    /// A connection.
    Connect(Connection),
}

/// One service's checks: boxed, and made only for a service that has
/// some (a ready check, a health check or a watchdog), so that the slot of
/// a plain service stays small (reading gives the state of no checks).
#[derive(Debug, Default)]
pub(super) struct Checks(Option<Box<CheckState>>);

/// The state of no checks, which reading the checks of a plain service
/// gives.
static NONE: CheckState = CheckState {
    phase: Phase::Off,
    pid: None,
    ready_pipe: None,
    probe_output: None,
    tail: Vec::new(),
    run: None,
    due: None,
    watchdog_due: None,
    armed: None,
    failures: 0,
    failures_total: 0,
    last: None,
    last_health: None,
    status_text: None,
    main_pid: None,
};

impl std::ops::Deref for Checks {
    type Target = CheckState;
    fn deref(&self) -> &CheckState {
        self.0.as_deref().unwrap_or(&NONE)
    }
}

impl std::ops::DerefMut for Checks {
    /// Makes the state at the first change.
    fn deref_mut(&mut self) -> &mut CheckState {
        self.0.get_or_insert_with(Box::default)
    }
}

impl Checks {
    /// A new process starts: what the old one said or showed goes.
    pub(super) fn new_process(&mut self) {
        if let Some(c) = self.0.as_deref_mut() {
            c.last = None;
            c.last_health = None;
            c.status_text = None;
            c.main_pid = None;
        }
    }

    /// The process the service named its main one (`MAINPID=`), taken.
    pub(super) fn take_main_pid(&mut self) -> Option<i32> {
        self.0.as_deref_mut().and_then(|c| c.main_pid.take())
    }
}

/// What one service's checks are doing.
#[derive(Debug, Default)]
pub(super) struct CheckState {
    phase: Phase,
    /// The process the phase is for.
    pid: Option<i32>,
    /// `notify = "fd:N"`: our end of the pipe, until its first newline.
    ready_pipe: Option<OwnedFd>,
    /// The pipe that probe commands write to (both ends: ours keeps it
    /// from ever ending), made at the first one of a phase and kept
    /// through it, so that a try costs no pipe and no change to the epoll
    /// set.
    probe_output: Option<(OwnedFd, OwnedFd)>,
    /// The end of what the probe command of this try wrote.
    tail: Vec<u8>,
    run: Option<Run>,
    /// When the next try starts or, with a try in flight, its deadline.
    due: Option<Instant>,
    watchdog_due: Option<Instant>,
    /// The deadline in the engine's set: the nearest of the two.
    armed: Option<Instant>,
    /// Health checks failed in a row.
    pub(super) failures: u32,
    /// Health checks failed since the supervisor started.
    pub(super) failures_total: u64,
    /// The last probe try (readiness or health).
    pub(super) last: Option<Outcome>,
    /// The last health check since it became ready.
    pub(super) last_health: Option<Outcome>,
    /// The last `STATUS=` the service sent.
    pub(super) status_text: Option<String>,
    /// The process it named its main one (`MAINPID=`), followed once the
    /// main process ends.
    pub(super) main_pid: Option<i32>,
}

impl CheckState {
    /// Whether its readiness is being waited for.
    pub(super) fn awaits_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Moves the watchdog deadline to `to`, while there is one; whether
    /// it moved.
    pub(super) fn feed_watchdog(&mut self, to: Instant) -> bool {
        if self.phase == Phase::Health && self.watchdog_due.is_some() {
            self.watchdog_due = Some(to);
            return true;
        }
        false
    }

    /// Whether its health is being checked (it is running and ready).
    pub(super) fn phase_is_health(&self) -> bool {
        self.phase == Phase::Health
    }

    /// The descriptor of the readiness pipe, while it is open.
    pub(super) fn ready_fd(&self) -> Option<RawFd> {
        self.ready_pipe.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The descriptor of the try in flight, and whether it waits to write.
    pub(super) fn probe_fd(&self) -> Option<(RawFd, bool)> {
        match self.run.as_ref() {
            Some(Run::Connect(c)) => Some((c.fd(), matches!(c.interest(), Interest::Write))),
            _ => self.probe_output.as_ref().map(|(r, _)| (r.as_raw_fd(), false)),
        }
    }
}

/// The engine's side of the checks: their deadlines, and the probe
/// processes that run.
#[derive(Debug, Default)]
pub(super) struct Registry {
    timers: BTreeSet<(Instant, usize)>,
    /// Probe processes not reaped yet (also the killed ones).
    pub(super) pids: HashMap<i32, usize>,
    /// The socket services send `sd_notify` datagrams to.
    pub(super) notify: Option<crate::os::notify::NotifySocket>,
}

impl Registry {
    /// The nearest deadline of any service's checks.
    pub(super) fn next(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }
}

/// The phase `svc`'s checks should be in, in `state` with main process `pid`.
fn wanted_phase(svc: &Service, state: ServiceState, pid: Option<i32>) -> Phase {
    match (state, pid) {
        (ServiceState::Starting, Some(_)) if svc.ready.is_some() => Phase::Ready,
        (ServiceState::Running, Some(_)) if svc.health.is_some() || svc.watchdog.is_some() => Phase::Health,
        _ => Phase::Off,
    }
}

/// The last non-empty line of `bytes`, for the status.
fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    line.chars().map(|c| if c.is_control() { ' ' } else { c }).take(256).collect()
}

impl Engine {
    /// Brings the checks of the service at `idx` in line with its state
    /// and process (after every transition): starts, moves or stops them.
    pub(super) fn sync_checks(&mut self, idx: usize, now: Instant) {
        let slot = &self.slots[idx];
        let phase = wanted_phase(&slot.svc, slot.m.state(), slot.m.pid());
        let c = &slot.checks;
        if c.phase == phase && (phase == Phase::Off || c.pid == slot.m.pid()) {
            return;
        }
        self.stop_try(idx);
        self.touch(idx);
        let slot = &mut self.slots[idx];
        let c = &mut slot.checks;
        c.phase = phase;
        c.pid = slot.m.pid();
        c.due = None;
        c.watchdog_due = None;
        if phase != Phase::Ready {
            c.ready_pipe = None;
        }
        c.probe_output = None;
        c.tail.clear();
        let lines = match (&slot.svc.ready, phase) {
            (Some(r), Phase::Ready) => match &r.check {
                ReadyCheck::Log(re) => regex_lite::Regex::new(re).ok(),
                _ => None,
            },
            _ => None,
        };
        if let Some(o) = slot.output.as_mut() {
            o.watch_lines(lines);
        }
        match phase {
            Phase::Off => {}
            Phase::Ready => {
                if let Some(r) = slot.svc.ready.as_ref().filter(|r| matches!(r.check, ReadyCheck::Probe(_))) {
                    c.due = Some(now + r.interval);
                }
            }
            Phase::Health => {
                c.failures = 0;
                c.last_health = None;
                c.due = slot.svc.health.as_ref().map(|h| now + h.interval);
                c.watchdog_due = slot.svc.watchdog.map(|w| now + w);
            }
        }
        self.arm_checks(idx);
    }

    /// Puts the nearest deadline of the service's checks in the set.
    pub(super) fn arm_checks(&mut self, idx: usize) {
        let c = &mut self.slots[idx].checks;
        let next = match (c.due, c.watchdog_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if c.armed == next {
            return;
        }
        if let Some(old) = c.armed.take() {
            self.checks.timers.remove(&(old, idx));
        }
        if let Some(t) = next {
            self.checks.timers.insert((t, idx));
        }
        self.slots[idx].checks.armed = next;
    }

    /// Handles the checks whose deadlines passed.
    pub(super) fn fire_checks(&mut self, now: Instant) {
        while let Some(&(t, idx)) = self.checks.timers.first() {
            if t > now {
                break;
            }
            self.checks.timers.remove(&(t, idx));
            self.slots[idx].checks.armed = None;
            let c = &self.slots[idx].checks;
            if c.watchdog_due.is_some_and(|w| w <= now) {
                let every = self.slots[idx].svc.watchdog.unwrap_or_default();
                self.slots[idx].checks.watchdog_due = None;
                let reason = format!("watchdog: no WATCHDOG=1 for {}", human_secs(every));
                log::warn!("{}: {reason}; restarting it", self.slots[idx].svc.name);
                self.queue.push_back((idx, Event::Unhealthy { reason }));
            } else if c.due.is_some_and(|d| d <= now) {
                if c.run.is_some() {
                    let limit = self.try_limit(idx);
                    self.try_ended(idx, false, format!("no answer within {}", human_secs(limit)), now);
                } else {
                    self.start_try(idx, now);
                }
            }
            self.arm_checks(idx);
            self.drain_queue();
        }
    }

    /// How long one try of the service's probe may take.
    fn try_limit(&self, idx: usize) -> Duration {
        let c = &self.slots[idx].checks;
        let svc = &self.slots[idx].svc;
        match c.phase {
            Phase::Health => svc.health.as_ref().map_or(MIN_READY_TRY, |h| h.timeout),
            _ => svc.ready.as_ref().map_or(MIN_READY_TRY, |r| r.interval.max(MIN_READY_TRY)),
        }
    }

    /// The probe of the current phase.
    fn probe_of(&self, idx: usize) -> Option<Probe> {
        let svc = &self.slots[idx].svc;
        match self.slots[idx].checks.phase {
            Phase::Ready => match &svc.ready.as_ref()?.check {
                ReadyCheck::Probe(p) => Some(p.clone()),
                _ => None,
            },
            Phase::Health => Some(svc.health.as_ref()?.probe.clone()),
            Phase::Off => None,
        }
    }

    /// Starts a try of the service's probe.
    fn start_try(&mut self, idx: usize, now: Instant) {
        let Some(probe) = self.probe_of(idx) else { return };
        let limit = self.try_limit(idx);
        self.touch(idx);
        let run = match &probe {
            Probe::Exec(command) => self.spawn_probe(idx, command.clone()).map_err(Progress::Failed),
            other => Connection::start(other).map(Run::Connect),
        };
        match run {
            Ok(run) => {
                let c = &mut self.slots[idx].checks;
                c.run = Some(run);
                c.due = Some(now + limit);
            }
            Err(Progress::Passed(what)) => self.try_ended(idx, true, what, now),
            Err(Progress::Failed(why)) => self.try_ended(idx, false, why, now),
            Err(Progress::Waiting) => self.try_ended(idx, false, "undecided".into(), now),
        }
    }

    /// Starts the probe command, as the service runs, its output to a pipe.
    fn spawn_probe(&mut self, idx: usize, command: crate::model::Command) -> Result<Run, String> {
        let mut svc = self.slots[idx].svc.clone();
        svc.command = command;
        svc.lock = None;
        svc.stdin = crate::model::Input::Null;
        svc.stdout = Output::Transcript;
        svc.stderr = Output::Transcript;
        if self.slots[idx].checks.probe_output.is_none() {
            let (r, w) = sys::pipe().map_err(|e| format!("probe: pipe: {e}"))?;
            // The probe's end blocks, as a program expects of its output.
            sys::set_nonblocking(w.as_raw_fd(), false).map_err(|e| format!("probe: pipe: {e}"))?;
            self.slots[idx].checks.probe_output = Some((r, w));
            self.touch(idx);
        }
        self.read_probe_output(idx);
        self.slots[idx].checks.tail.clear();
        let w = self.slots[idx].checks.probe_output.as_ref().map(|(_, w)| w.as_raw_fd());
        let pipes = spawn::Pipes { stdout: w, stderr: w, ..Default::default() };
        let env = self.spawn_env(idx, false);
        let sp = spawn::spawn(&svc, pipes, &env).map_err(|e| format!("probe: {e}"))?;
        self.checks.pids.insert(sp.pid, idx);
        if let Some(e) = sp.exec_error {
            return Err(format!("probe: {e}"));
        }
        Ok(Run::Exec { pid: sp.pid })
    }

    /// Ends the try in flight, if any: its process is killed (and reaped
    /// later), its connection closed.
    fn stop_try(&mut self, idx: usize) {
        if let Some(Run::Exec { pid, .. }) = self.slots[idx].checks.run.take() {
            // Its own process group (spawn makes one), with what it forked.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pid), Signal::SIGKILL);
        }
        self.touch(idx);
    }

    /// Records how a try went and what follows: readiness, the next try,
    /// or a restart after too many failed health checks.
    fn try_ended(&mut self, idx: usize, passed: bool, output: String, now: Instant) {
        self.stop_try(idx);
        let slot = &mut self.slots[idx];
        let name = &slot.svc.name;
        let c = &mut slot.checks;
        match (c.phase, slot.svc.health.as_ref()) {
            (Phase::Off, _) => c.due = None,
            (Phase::Ready, _) if passed => {
                log::info!("{name}: ready ({output})");
                c.due = None;
                self.queue.push_back((idx, Event::Ready));
            }
            (Phase::Ready, _) => {
                log::debug!("{name}: not ready yet: {output}");
                c.due = slot.svc.ready.as_ref().map(|r| now + r.interval);
            }
            (Phase::Health, None) => c.due = None,
            (Phase::Health, Some(h)) => {
                c.due = Some(now + h.interval);
                if passed {
                    c.failures = 0;
                } else {
                    c.failures += 1;
                    c.failures_total += 1;
                    log::warn!("{name}: health check failed ({} of {}): {output}", c.failures, h.failures);
                    if c.failures >= h.failures {
                        let reason = format!("health check failed {} times in a row: {output}", c.failures);
                        c.due = None;
                        self.queue.push_back((idx, Event::Unhealthy { reason }));
                    }
                }
            }
        }
        let outcome = Outcome { passed, output, at: SystemTime::now() };
        if c.phase == Phase::Health {
            c.last_health = Some(outcome.clone());
        }
        c.last = Some(outcome);
        self.arm_checks(idx);
    }

    /// Moves a try on: a connection whose socket is ready, or the output
    /// of a command.
    pub(super) fn advance_try(&mut self, idx: usize, now: Instant) {
        let Some(Run::Connect(conn)) = self.slots[idx].checks.run.as_mut() else {
            // The output of a command: kept; its exit decides.
            self.read_probe_output(idx);
            return;
        };
        let progress = conn.advance();
        self.touch(idx);
        match progress {
            Progress::Waiting => {}
            Progress::Passed(what) => self.try_ended(idx, true, what, now),
            Progress::Failed(why) => self.try_ended(idx, false, why, now),
        }
    }

    /// Keeps the end of what waits in the probe pipe.
    fn read_probe_output(&mut self, idx: usize) {
        if self.slots[idx].checks.probe_output.is_none() {
            return;
        }
        let c: &mut CheckState = &mut self.slots[idx].checks;
        let Some((r, _)) = c.probe_output.as_ref() else { return };
        let mut buf = [0u8; 1024];
        loop {
            match nix::unistd::read(r, &mut buf) {
                Ok(n) if n > 0 => {
                    c.tail.extend_from_slice(&buf[..n]);
                    let cut = c.tail.len().saturating_sub(OUTPUT_KEPT);
                    c.tail.drain(..cut);
                }
                Err(nix::errno::Errno::EINTR) => {}
                _ => break,
            }
        }
    }

    /// A probe process was reaped.
    pub(super) fn probe_exited(&mut self, pid: i32, status: ExitStatus) {
        let Some(idx) = self.checks.pids.remove(&pid) else { return };
        let now = Instant::now();
        let ours = matches!(self.slots.get(idx).and_then(|s| s.checks.run.as_ref()), Some(Run::Exec { pid: p, .. }) if *p == pid);
        if !ours {
            return;
        }
        self.advance_try(idx, now);
        // Reaped: its pid (and group) may name another process from now
        // on, so the run ends here, not through stop_try's kill.
        self.read_probe_output(idx);
        let c = &mut self.slots[idx].checks;
        c.run = None;
        let line = last_line(&std::mem::take(&mut c.tail));
        let output = match (status, line.is_empty()) {
            (ExitStatus::Code(0), true) => "exit code 0".to_string(),
            (_, true) => status.to_string(),
            (ExitStatus::Code(0), false) => line,
            (_, false) => format!("{status}: {line}"),
        };
        self.try_ended(idx, status == ExitStatus::Code(0), output, now);
    }

    /// Reads the readiness pipe: a newline is the word.
    pub(super) fn read_ready_pipe(&mut self, idx: usize) {
        self.touch(idx);
        let c = &mut self.slots[idx].checks;
        let Some(fd) = c.ready_pipe.as_ref() else { return };
        let mut buf = [0u8; 256];
        let ready = loop {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => {
                    log::debug!("{}: closed its readiness descriptor without a newline", self.slots[idx].svc.name);
                    break false;
                }
                Ok(n) if buf[..n].contains(&b'\n') => break true,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => break false,
            }
        };
        // Either way, the pipe has said all it will.
        self.slots[idx].checks.ready_pipe = None;
        if ready && self.slots[idx].checks.phase == Phase::Ready {
            self.queue.push_back((idx, Event::Ready));
        }
    }

    /// A line of the service's output matched its `log` readiness check.
    pub(super) fn log_matched(&mut self, idx: usize) {
        if self.slots[idx].checks.phase == Phase::Ready {
            self.queue.push_back((idx, Event::Ready));
        }
    }

    /// For `notify = "fd:N"`: a new pipe, its write end for the child at N,
    /// our end kept for the service.
    pub(super) fn ready_pipe_for(&mut self, idx: usize) -> Option<(OwnedFd, RawFd)> {
        let Some(&ReadyCheck::Fd(at)) = self.slots[idx].svc.ready.as_ref().map(|r| &r.check) else { return None };
        match sys::pipe().and_then(|(r, w)| sys::set_nonblocking(w.as_raw_fd(), false).map(|()| (r, w))) {
            Ok((r, w)) => {
                self.slots[idx].checks.ready_pipe = Some(r);
                self.touch(idx);
                Some((w, at))
            }
            Err(e) => {
                log::error!("{}: no readiness pipe: {e}", self.slots[idx].svc.name);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::last_line;

    #[test]
    fn the_last_line_is_shown_clean() {
        assert_eq!(last_line(b"one\ntwo\n\n  \n"), "two");
        assert_eq!(last_line(b"a\tb"), "a b");
        assert_eq!(last_line(b""), "");
        assert_eq!(last_line(&[0xff, b'x']), "\u{fffd}x");
    }
}
