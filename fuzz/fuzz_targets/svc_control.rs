//! daemontools control letters (`svc -u`, `-d`, ...) driving the daemon
//! state machine, with the processes simulated.
//!
//! The engine maps each byte read from `supervise/control` to a request
//! (`engine/svdir.rs`, `handle_control_letters`) and feeds the requests,
//! and what happens to the service's processes, to a `Machine`
//! (`machine/daemon.rs`), carrying out the actions it answers with. This
//! target does the same without processes: a tiny model stands in for the
//! engine's slot (its main process, its tracked descendants, its timer,
//! its `finish` script), and the input bytes say what happens and when.
//!
//! The model follows the engine's order within a turn (`engine/turn.rs`):
//! control letters are obeyed as they are read, each drained at once
//! (`apply_request`); then, once per turn, the reaping (`Exited`, then
//! `AllGone` when the main process is gone and no descendant is left),
//! then the timers that are due (`Timer`), then the queue is drained, in
//! order. `Spawn` is answered at once with `Spawned` (and `SpawnFailed`
//! for an exec failure), queued behind what is already queued, as
//! `spawn_slot` does.
//!
//! When the machine arms or cancels its timer, a `Timer` already queued
//! for the service (its deadline passed in this turn) is dropped from the
//! queue, as `Engine::perform` does (`drop_queued_timer`): it is stale
//! (README.md, "Findings", 1).
//!
//! Checked, after every step:
//! - no `Spawn` while a main process lives (or is dead but not reaped);
//! - the machine knows the main process: its `pid()` is the live (or
//!   not yet reaped) main process, and nothing when there is none;
//! - a daemon never asks for the external services' actions;
//! - `SIGKILL` (with another stop signal) only once the stop timeout after
//!   the stop signal has passed; a spawn out of `backoff` only once its
//!   delay has passed;
//! - a stop requested (`d` or `x`, no `u`/`o`/restart after it), then the
//!   process ending and every descendant gone, ends in `stopped` (or
//!   `exited`/`fatal`), with no spawn after the stop.
//!
//! Input: byte 0..3 pick the service's settings; then one step per byte,
//! `op = byte >> 4`, `arg = byte & 15` (see `step`).

#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use supervisor_core::fuzzing::{Action, DaemonMachine, Event};
use supervisor_core::{Command, ExitStatus, Expected, RestartMode, Service, ServiceRequest, ServiceState, Signal};

/// The control letters of daemontools and runit (and `r`, a restart as
/// the control socket sends it), indexed by `arg`.
const LETTERS: &[u8; 16] = b"udopcxhaitkq12wr";

/// Clock steps in milliseconds, around the default 1 s `min_uptime`,
/// 1 s backoff step, 10 s backoff limit and 10 s stop timeout.
const ADVANCE_MS: [u64; 16] =
    [0, 1, 10, 100, 499, 999, 1000, 1001, 1999, 2000, 5000, 9999, 10_000, 10_001, 30_000, 600_000];

/// Exit statuses of the main process, indexed by `arg`.
fn exit_status(arg: u8) -> ExitStatus {
    match arg {
        0 | 9 => ExitStatus::Code(0),
        1 | 10 => ExitStatus::Code(1),
        2 => ExitStatus::Code(2),
        3 => ExitStatus::Code(3),
        4 => ExitStatus::Code(127),
        5 | 11 => ExitStatus::Signal(Signal::SIGTERM),
        6 => ExitStatus::Signal(Signal::SIGKILL),
        7 => ExitStatus::Signal(Signal::SIGSEGV),
        8 => ExitStatus::Signal(Signal::SIGHUP),
        12 => ExitStatus::Code(255),
        13 => ExitStatus::Signal(Signal::SIGINT),
        14 => ExitStatus::Code(100),
        _ => ExitStatus::Signal(Signal::SIGABRT),
    }
}

/// How the next spawn goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpawnOutcome {
    /// A child that runs.
    Ok,
    /// A child whose exec failed: `Spawned`, then `SpawnFailed`
    /// (permanent); it exits 127 at the end of the turn.
    ExecError,
    /// No child: fork failed for a passing reason (or the runtime
    /// directory could not be made).
    Transient,
    /// No child: a permanent failure found before forking.
    Permanent,
}

/// The main process, from spawn until it is reaped.
#[derive(Debug, Clone, Copy)]
struct Leader {
    pid: i32,
    /// How it ended, once it did (a zombie until the end of the turn).
    dead: Option<ExitStatus>,
    /// Its exec failed: it exits 127 by itself.
    exec_failed: bool,
}

/// What happened, kept to explain a failure (read through `Debug`).
#[derive(Debug)]
#[allow(dead_code)]
enum Trace {
    Step(u8, char, u8),
    Event(Event, ServiceState, ServiceState, Vec<Action>),
    TurnEnd,
    /// A queued `Timer` was dropped: the machine armed or cancelled its
    /// timer after it was queued.
    StaleTimerDropped,
}

struct Sim {
    svc: Service,
    finish_configured: bool,
    m: DaemonMachine,
    now: Instant,
    /// Events waiting to be handled (`Engine::queue`).
    queue: VecDeque<Event>,
    timer: Option<Instant>,
    /// The last `ArmTimer`'s deadline (not forgotten when it fires).
    last_armed: Option<Instant>,
    /// The stop timeout of the last stop signal sent.
    kill_not_before: Option<Instant>,
    next_pid: i32,
    leader: Option<Leader>,
    members: u32,
    sigchld: bool,
    finishing: bool,
    spawn_held: bool,
    next_spawn: SpawnOutcome,
    /// The last request was a stop (`d`, `x`), not a start, once or restart.
    stop_wanted: bool,
    spawned_since_stop: bool,
    trace: Vec<Trace>,
}

impl Sim {
    fn fail(&self, what: &str) -> ! {
        let mut s = String::new();
        for t in &self.trace {
            s.push_str(&format!("  {t:?}\n"));
        }
        panic!(
            "invariant broken: {what}\nstate {:?}, machine pid {:?}, leader {:?}, members {}, want_up {}\ntrace:\n{s}",
            self.m.state(),
            self.m.pid(),
            self.leader,
            self.members,
            self.m.want_up()
        );
    }

    fn push(&mut self, ev: Event) {
        self.queue.push_back(ev);
    }

    /// `Engine::drain_queue`: each event in turn, its actions at once.
    fn drain(&mut self) {
        while let Some(ev) = self.queue.pop_front() {
            let before = self.m.state();
            let timer_event = ev == Event::Timer;
            let actions = self.m.handle(&self.svc, ev.clone(), self.now);
            self.trace.push(Trace::Event(ev, before, self.m.state(), actions.clone()));
            self.check_timing(before, timer_event, &actions);
            for a in actions {
                self.perform(a);
            }
        }
        self.check();
    }

    /// The machine's delays are kept: `SIGKILL` only once the stop
    /// timeout after the stop signal has passed; a spawn out of `backoff`
    /// only once its delay has passed.
    fn check_timing(&mut self, before: ServiceState, timer_event: bool, actions: &[Action]) {
        let armed = actions.iter().find_map(|a| match a {
            Action::ArmTimer(t) => Some(*t),
            _ => None,
        });
        let kill = actions.contains(&Action::Signal(Signal::SIGKILL));
        if kill && self.svc.stop_signal != Signal::SIGKILL && self.kill_not_before.is_some_and(|t| self.now < t) {
            self.fail("SIGKILL before the stop timeout passed");
        }
        if before == ServiceState::Backoff
            && timer_event
            && actions.contains(&Action::Spawn)
            && self.last_armed.is_some_and(|t| self.now < t)
        {
            self.fail("spawned out of backoff before its delay passed");
        }
        if actions.contains(&Action::Signal(self.svc.stop_signal)) && armed.is_some() {
            self.kill_not_before = armed;
        }
        if armed.is_some() {
            self.last_armed = armed;
        }
    }

    /// `Engine::drop_queued_timer`: a `Timer` queued before the machine
    /// armed or cancelled its timer is stale, and leaves the queue.
    fn drop_queued_timer(&mut self) {
        let before = self.queue.len();
        self.queue.retain(|e| *e != Event::Timer);
        if self.queue.len() != before {
            self.trace.push(Trace::StaleTimerDropped);
        }
    }

    /// `Engine::perform`.
    fn perform(&mut self, action: Action) {
        match action {
            Action::ArmTimer(t) => {
                self.drop_queued_timer();
                self.timer = Some(t);
            }
            Action::CancelTimer => {
                self.drop_queued_timer();
                self.timer = None;
            }
            Action::Signal(sig) => self.signal(sig),
            Action::Spawn => self.spawn(),
            Action::Run(_) | Action::FindPattern | Action::KillPattern(_) => {
                self.fail("a daemon asked for an external service's action")
            }
        }
    }

    /// `Engine::signal_slot`: the main process, its group and its tracked
    /// descendants. Only KILL ends a process here; the others end when the
    /// input says so.
    fn signal(&mut self, sig: Signal) {
        if sig == Signal::SIGKILL {
            if let Some(l) = self.leader.as_mut() {
                if l.dead.is_none() {
                    l.dead = Some(ExitStatus::Signal(Signal::SIGKILL));
                    self.sigchld = true;
                }
            }
            if self.members > 0 {
                self.members = 0;
                self.sigchld = true;
            }
        }
    }

    /// `Engine::spawn_slot`.
    fn spawn(&mut self) {
        if self.finishing {
            self.spawn_held = true;
            return;
        }
        if let Some(l) = self.leader {
            self.fail(&format!("Spawn while the main process {} lives (dead: {:?})", l.pid, l.dead));
        }
        if self.stop_wanted {
            self.spawned_since_stop = true;
        }
        let outcome = std::mem::replace(&mut self.next_spawn, SpawnOutcome::Ok);
        match outcome {
            SpawnOutcome::Ok | SpawnOutcome::ExecError => {
                self.next_pid += 1;
                let pid = self.next_pid;
                let exec_failed = outcome == SpawnOutcome::ExecError;
                self.leader = Some(Leader { pid, dead: None, exec_failed });
                self.push(Event::Spawned { pid });
                if exec_failed {
                    let error = "exec /nope: No such file or directory".to_string();
                    self.push(Event::SpawnFailed { error, transient: false });
                }
            }
            SpawnOutcome::Transient => self.push(Event::SpawnFailed { error: "fork: EAGAIN".into(), transient: true }),
            SpawnOutcome::Permanent => {
                self.push(Event::SpawnFailed { error: "no user nobody2".into(), transient: false })
            }
        }
    }

    /// `Engine::handle_control_letters`, for one letter, then
    /// `apply_request`.
    fn letter(&mut self, letter: u8) {
        let live = self.leader.is_some();
        let request = match letter {
            b'u' => Some(ServiceRequest::Start),
            b'd' => Some(ServiceRequest::Stop),
            b'o' => Some(ServiceRequest::Once),
            b'p' => Some(ServiceRequest::Pause),
            b'c' if self.m.state() == ServiceState::Paused => Some(ServiceRequest::Resume),
            b'c' => {
                if live {
                    self.signal(Signal::SIGCONT);
                }
                None
            }
            b'x' => Some(ServiceRequest::Stop),
            b'r' => Some(ServiceRequest::Restart),
            b'h' | b'a' | b'i' | b't' | b'q' | b'1' | b'2' | b'w' => None,
            b'k' => {
                if live {
                    self.signal(Signal::SIGKILL);
                }
                None
            }
            _ => None,
        };
        let Some(request) = request else { return };
        match request {
            ServiceRequest::Stop => {
                if !self.stop_wanted {
                    self.spawned_since_stop = false;
                }
                self.stop_wanted = true;
            }
            ServiceRequest::Start | ServiceRequest::Once | ServiceRequest::Restart => self.stop_wanted = false,
            _ => {}
        }
        self.push(Event::from(request));
        self.drain();
    }

    /// The rest of `Engine::turn` after the descriptors: reaping (with
    /// `check_all_gone`), timers, the queue.
    fn end_turn(&mut self) {
        self.trace.push(Trace::TurnEnd);
        if let Some(l) = self.leader.as_mut() {
            if l.exec_failed && l.dead.is_none() {
                l.dead = Some(ExitStatus::Code(127));
                self.sigchld = true;
            }
        }
        if std::mem::take(&mut self.sigchld) {
            if let Some(Leader { dead: Some(status), .. }) = self.leader {
                self.leader = None;
                let leftovers = self.members > 0;
                if self.finish_configured {
                    self.finishing = true;
                }
                self.push(Event::Exited { status, leftovers });
            }
            // check_all_gone, with the machine as it is before the queue
            // is drained.
            if self.leader.is_none()
                && self.m.state() == ServiceState::Stopping
                && self.m.pid().is_none()
                && self.members == 0
            {
                self.push(Event::AllGone);
            }
        }
        if self.timer.is_some_and(|t| t <= self.now) {
            self.timer = None;
            self.push(Event::Timer);
        }
        self.drain();
    }

    /// `Engine::finish_ended`.
    fn finish_ended(&mut self) {
        if !self.finishing {
            return;
        }
        self.finishing = false;
        if std::mem::take(&mut self.spawn_held) && self.m.state() == ServiceState::Starting && self.m.pid().is_none() {
            self.perform(Action::Spawn);
            self.drain();
        }
    }

    /// The invariants that hold whenever the queue is empty.
    fn check(&self) {
        let leader = self.leader.map(|l| l.pid);
        if self.m.pid() != leader {
            self.fail(&format!(
                "the machine's main process {:?} is not the one that lives (or awaits reaping) {:?}",
                self.m.pid(),
                leader
            ));
        }
    }

    fn step(&mut self, byte: u8) {
        let (op, arg) = (byte >> 4, byte & 15);
        self.trace.push(Trace::Step(op, if op < 4 { LETTERS[arg as usize] as char } else { ' ' }, arg));
        match op {
            0..=3 => self.letter(LETTERS[arg as usize]),
            // The main process exits by itself.
            4 | 5 => {
                if let Some(l) = self.leader.as_mut() {
                    if l.dead.is_none() {
                        l.dead = Some(exit_status(arg));
                        self.sigchld = true;
                    }
                }
            }
            // It forks a descendant that leaves its process group.
            6 => {
                if self.leader.is_some_and(|l| l.dead.is_none()) {
                    self.members += 1 + u32::from(arg & 1);
                }
            }
            // A descendant ends; or all of them.
            7 => {
                if self.members > 0 {
                    self.members = if arg < 8 { self.members - 1 } else { 0 };
                    self.sigchld = true;
                }
            }
            8 | 9 => self.now += Duration::from_millis(ADVANCE_MS[arg as usize]),
            // The armed timer fires (the clock moves to it).
            10 => {
                if let Some(t) = self.timer {
                    self.now = self.now.max(t);
                }
                self.end_turn();
            }
            11 => self.end_turn(),
            12 => {
                self.next_spawn = match arg & 3 {
                    0 => SpawnOutcome::Ok,
                    1 => SpawnOutcome::ExecError,
                    2 => SpawnOutcome::Transient,
                    _ => SpawnOutcome::Permanent,
                }
            }
            13 => self.finish_ended(),
            _ => {
                self.now += Duration::from_millis(ADVANCE_MS[arg as usize]);
                self.end_turn();
            }
        }
    }

    /// After the input: if a stop is wanted, every process ends (the stop
    /// signal works), every `finish` ends, the timers fire; the service
    /// must come to rest down.
    fn settle(&mut self) {
        self.end_turn();
        if !self.stop_wanted {
            return;
        }
        for _ in 0..16 {
            if let Some(l) = self.leader.as_mut() {
                if l.dead.is_none() {
                    l.dead = Some(ExitStatus::Signal(Signal::SIGTERM));
                }
            }
            self.members = 0;
            self.sigchld = true;
            self.finish_ended();
            if let Some(t) = self.timer {
                self.now = self.now.max(t);
            }
            self.end_turn();
            if self.leader.is_none() && self.timer.is_none() && !self.finishing {
                break;
            }
        }
        if self.spawned_since_stop {
            self.fail("spawned after a stop request, with no start since");
        }
        if !matches!(self.m.state(), ServiceState::Stopped | ServiceState::Exited | ServiceState::Fatal) {
            self.fail("a stop request, the process ended and no descendant left, yet not at rest");
        }
        if self.m.want_up() {
            self.fail("wanted up after a stop request");
        }
    }
}

fn service(config: &[u8]) -> Option<(Service, bool)> {
    let mut svc = Service::new("fuzz", Command::Argv(vec!["/bin/true".into()]));
    let c = |i: usize| config.get(i).copied().unwrap_or(0);
    svc.stop_signal = match c(0) & 3 {
        0 => Signal::SIGTERM,
        1 => Signal::SIGKILL,
        2 => Signal::SIGCONT,
        _ => Signal::SIGHUP,
    };
    svc.restart.mode = match (c(0) >> 2) & 3 {
        1 => RestartMode::OnFailure,
        2 => RestartMode::Never,
        _ => RestartMode::Always,
    };
    svc.restart.forever = c(0) & 0x10 != 0;
    let finish = c(0) & 0x20 != 0;
    if c(0) & 0x40 != 0 {
        svc.restart.exit_codes = vec![0, 2];
    }
    let ms = |b: u8| Duration::from_millis([1, 500, 1000, 2000, 10_000, 1, 1000, 3000][usize::from(b & 7)]);
    svc.restart.min_uptime = ms(c(1));
    svc.restart.backoff_step = ms(c(1) >> 3);
    svc.restart.backoff_limit = [0, 1000, 3000, 10_000].map(Duration::from_millis)[usize::from(c(1) >> 6)];
    svc.stop_timeout = ms(c(2));
    if finish {
        svc.finish = Some(vec!["/bin/true".into()]);
    }
    svc.validate().ok()?;
    Some((svc, finish))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 || data.len() > 4096 {
        return;
    }
    let Some((svc, finish_configured)) = service(&data[..3]) else { return };
    let now = Instant::now();
    // A service directory without a `down` file: wanted up, started by
    // the engine at once (as a `u` would).
    let expected = if data[2] & 0x80 != 0 { Expected::Stopped } else { Expected::Running };
    let mut sim = Sim {
        m: DaemonMachine::new(expected, now),
        svc,
        finish_configured,
        now,
        queue: VecDeque::new(),
        timer: None,
        last_armed: None,
        kill_not_before: None,
        next_pid: 100,
        leader: None,
        members: 0,
        sigchld: false,
        finishing: false,
        spawn_held: false,
        next_spawn: SpawnOutcome::Ok,
        stop_wanted: false,
        spawned_since_stop: false,
        trace: Vec::new(),
    };
    if expected == Expected::Running {
        sim.push(Event::Start);
        sim.drain();
    }
    for &b in &data[3..] {
        sim.step(b);
    }
    sim.settle();
});
