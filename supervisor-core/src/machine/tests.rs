//! Property tests of the pure state machines against a small model of the
//! engine.
//!
//! [`Env`] plays the engine's part for one service: it keeps a fake clock
//! (an `Instant` and offsets from it), carries out the machine's actions
//! and answers with the events the engine would send. A `Spawn` makes one
//! main process with a new pid (answered `Spawned`, or `SpawnFailed` when
//! the case's spawn outcomes say so); a `Run` makes one command process; a
//! signal reaches every live process of the service (`KILL` always ends
//! one, `STOP` holds it, `CONT` lets it go on, the other signals end it,
//! at once or a little later, unless it ignores them); processes end when
//! their fate says or when a step makes them, and are reaped when the
//! engine next looks: `Exited { status, leftovers }` (or, with `follow`,
//! `Adopted` by the descendant left behind), and `AllGone` once the last
//! descendant is gone too; `Timer` comes when the clock passes the armed
//! timer (maybe a few milliseconds late, as `poll` wakes);
//! `FindPattern` and `KillPattern` are answered with `Found` from a count
//! of matching processes.
//!
//! Proptest then drives the machines with random outside steps (requests,
//! exits, time passing, descendants left behind or going away) and checks
//! the invariants after each one; every case ends with a `Stop` that must
//! bring the service to rest.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::{Action, Backoff, Behaviour, Decision, Event};
use crate::model::{
    Command, ExitStatus, Expected, ExternalSpec, Group, Kind, RestartCommand, RestartMode, RestartPolicy, Service,
    ServiceState, Strategy as GroupStrategy, TaskSpec,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Runs a property with `cases` cases on a thread with a deep stack
/// (proptest's nested strategies want more than a test thread's 2 MiB in
/// a debug build), without writing regression files.
fn run_property<S: Strategy + 'static>(
    cases: u32,
    strategy: fn() -> S,
    test: fn(S::Value) -> Result<(), TestCaseError>,
) {
    let outcome = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let config = Config { cases, failure_persistence: None, ..Config::default() };
            let mut runner = TestRunner::new(config);
            runner.run(&strategy(), test).map_err(|e| e.to_string())
        })
        .expect("thread")
        .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

// ---------------------------------------------------------------------------
// The model of the engine and of the processes.

/// What a process of the model is to its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The main process of a daemon, or a task's run.
    Main,
    /// A descendant the main process left (the process group and the
    /// tracked descendants).
    Descendant,
    /// An external service's command.
    Command,
}

/// How a process will behave, drawn by the case.
#[derive(Debug, Clone)]
struct Fate {
    /// It ends on a stop signal other than `KILL` (else it ignores them).
    obeys: bool,
    /// It ends with code 0 when told to stop, not by the signal.
    graceful: bool,
    /// Milliseconds it takes to end once told to stop.
    stop_takes: u64,
    /// It ends on its own after this many milliseconds (never if `None`).
    runs_for: Option<u64>,
    /// How it ends on its own.
    status: ExitStatus,
}

/// How the engine's fork and exec go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpawnOutcome {
    /// `Spawned`.
    Ok,
    /// `Spawned`, then `SpawnFailed { transient: false }`; the child exits 127.
    ExecFails,
    /// Only `SpawnFailed { transient: true }` (fork found no memory).
    ForkFailsTransient,
    /// Only `SpawnFailed { transient: false }` (no such user).
    ForkFailsPermanent,
}

/// The outside world of one case: spawn outcomes and process fates, used
/// in turn, round and round.
#[derive(Debug, Clone)]
struct World {
    spawns: Vec<SpawnOutcome>,
    fates: Vec<Fate>,
    /// How late the engine wakes for a timer, in milliseconds.
    timer_lag: u64,
}

#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    role: Role,
    born: Instant,
    obeys: bool,
    graceful: bool,
    stop_takes: u64,
    /// Held by `SIGSTOP`.
    paused: bool,
    /// A signal that ends it, waiting for `SIGCONT`.
    pending: Option<Signal>,
    /// When and how it ends on its own.
    ends_at: Option<(Instant, ExitStatus)>,
    /// It ended and is not reaped yet.
    dying: Option<ExitStatus>,
    /// It got the service's stop signal or `KILL`.
    stop_signalled: bool,
    /// A pattern service's start command: its success leaves a process
    /// that matches the pattern.
    starts_service: bool,
}

impl Proc {
    fn live(&self) -> bool {
        self.dying.is_none()
    }
    /// Told to stop by `sig` (and not held): it ends at once, or after
    /// `stop_takes`.
    fn told_to_stop(&mut self, sig: Signal, now: Instant) {
        let status = if self.graceful { ExitStatus::Code(0) } else { ExitStatus::Signal(sig) };
        if self.stop_takes == 0 {
            self.dying = Some(status);
        } else {
            let at = now + ms(self.stop_takes);
            if self.ends_at.is_none_or(|(t, _)| t > at) {
                self.ends_at = Some((at, status));
            }
        }
    }
}

/// One outside step of a case.
#[derive(Debug, Clone)]
enum Step {
    /// A request (`Start`, `Once`, `Stop`, `Restart`, `Pause`, `Resume`,
    /// `Check`).
    Request(Event),
    /// The main process (or the running command) ends now, like this.
    Exit(ExitStatus),
    /// Time passes, in milliseconds.
    Advance(u64),
    /// The main process leaves a descendant (that ignores stop signals
    /// unless `obeys`); for an external service, a process that matches
    /// the pattern appears.
    Fork { obeys: bool },
    /// The descendants (the matching processes) end on their own.
    DescendantsGo,
    /// The engine reaps what has ended.
    Reap,
    /// A stop, then the model lets it complete; it must end at rest.
    StopAndSettle,
}

/// A case: the service, its world, the jitter seed and the steps.
#[derive(Debug, Clone)]
struct Case {
    svc: Service,
    world: World,
    seed: u64,
    steps: Vec<Step>,
}

type Res = Result<(), String>;

/// The engine's part for one service.
struct Env {
    svc: Service,
    m: Behaviour,
    t0: Instant,
    now: Instant,
    timer: Option<Instant>,
    procs: Vec<Proc>,
    queue: VecDeque<Event>,
    next_pid: i32,
    world: World,
    spawned: usize,
    /// External services: processes that match the pattern.
    pattern: usize,
    /// External services: they end on `TERM`.
    pattern_obeys: bool,
    /// The last events and what they did, for failure messages.
    trace: VecDeque<String>,
}

const TRACE_LEN: usize = 60;
/// Events at one instant before the model calls it a livelock.
const MAX_EVENTS_AT_ONCE: usize = 10_000;

impl Env {
    fn new(svc: Service, world: World, seed: u64) -> Env {
        let t0 = Instant::now();
        let m = Behaviour::new(&svc, svc.expected, t0, seed);
        Env {
            svc,
            m,
            t0,
            now: t0,
            timer: None,
            procs: Vec::new(),
            queue: VecDeque::new(),
            next_pid: 100,
            world,
            spawned: 0,
            pattern: 0,
            pattern_obeys: true,
            trace: VecDeque::new(),
        }
    }

    fn note(&mut self, line: &str) {
        if self.trace.len() == TRACE_LEN {
            self.trace.pop_front();
        }
        let at = self.now.duration_since(self.t0).as_millis();
        self.trace.push_back(format!("{at:>7} ms  {line}"));
    }

    fn at(&self, t: Instant) -> String {
        format!("{} ms", t.duration_since(self.t0).as_millis())
    }

    /// An action, with its instant (if any) as milliseconds from the start.
    fn show(&self, a: &Action) -> String {
        match a {
            Action::ArmTimer(t) => format!("ArmTimer(at {})", self.at(*t)),
            other => format!("{other:?}"),
        }
    }

    /// A failure message, with the processes and the last events.
    fn fail(&self, what: &str) -> String {
        let timer = self.timer.map_or_else(|| "none".to_string(), |t| self.at(t));
        let mut s = format!("{what}\n  state {}, want_up {}, timer {timer}\n", self.m.state(), self.m.want_up());
        for p in &self.procs {
            s += &format!(
                "  {:?} pid {} born at {}: obeys {}, paused {}, stop_signalled {}, ends {:?}, dying {:?}\n",
                p.role,
                p.pid,
                self.at(p.born),
                p.obeys,
                p.paused,
                p.stop_signalled,
                p.ends_at.map(|(t, st)| (self.at(t), st)),
                p.dying
            );
        }
        s += "  last events:\n";
        for line in &self.trace {
            s += "    ";
            s += line;
            s += "\n";
        }
        s
    }

    fn external(&self) -> bool {
        self.svc.kind.is_external()
    }

    fn pattern_based(&self) -> Option<&Vec<String>> {
        match &self.svc.kind {
            Kind::External(spec) if spec.control.is_none() => spec.start.as_ref(),
            _ => None,
        }
    }

    /// What the engine does when it adds the service.
    fn begin(&mut self) -> Res {
        if self.external() {
            self.deliver(Event::Check)?;
        } else if self.svc.expected == Expected::Running {
            self.deliver(Event::Start)?;
        }
        self.turn()
    }

    fn deliver(&mut self, ev: Event) -> Res {
        self.queue.push_back(ev);
        self.drain()
    }

    /// Feeds the queued events to the machine and carries out its actions.
    fn drain(&mut self) -> Res {
        let mut n = 0;
        while let Some(ev) = self.queue.pop_front() {
            n += 1;
            if n > MAX_EVENTS_AT_ONCE {
                return Err(self.fail("more than 10000 events at one instant: a livelock"));
            }
            let before = self.m.state();
            let actions = self.m.handle(&self.svc, ev.clone(), self.now);
            let after = self.m.state();
            let shown: Vec<String> = actions.iter().map(|a| self.show(a)).collect();
            self.note(&format!("{ev:?} -> [{}]  ({before} -> {after})", shown.join(", ")));
            self.check_actions(after, &actions)?;
            for a in actions {
                self.perform(a)?;
            }
        }
        Ok(())
    }

    /// Invariant 3 as the machine runs: a daemon's timer after a quick
    /// failure is at most `backoff_limit` ahead, and its delay never
    /// passes the limit. And no timer is ever armed in the past.
    fn check_actions(&self, after: ServiceState, actions: &[Action]) -> Res {
        let limit = self.svc.restart.backoff_limit;
        for a in actions {
            if let Action::ArmTimer(t) = a {
                if *t < self.now {
                    return Err(self.fail("a timer armed in the past"));
                }
                if self.m.daemon().is_some() && after == ServiceState::Backoff && *t > self.now + limit {
                    return Err(self.fail(&format!(
                        "backoff timer {:?} ahead, past the limit {limit:?}",
                        t.duration_since(self.now)
                    )));
                }
            }
        }
        if let Some(d) = self.m.daemon() {
            if d.backoff().delay() > limit {
                return Err(self.fail(&format!("backoff delay {:?} past the limit {limit:?}", d.backoff().delay())));
            }
        }
        Ok(())
    }

    fn perform(&mut self, action: Action) -> Res {
        match action {
            Action::ArmTimer(t) => self.timer = Some(t),
            Action::CancelTimer => self.timer = None,
            Action::Signal(sig) => self.signal(sig),
            Action::Spawn => self.spawn(None)?,
            Action::Run(argv) => {
                self.no_command_running("Run")?;
                self.spawn(Some(&argv))?;
            }
            Action::FindPattern => {
                self.no_command_running("FindPattern")?;
                self.queue.push_back(Event::Found { count: self.pattern });
            }
            Action::KillPattern(sig) => {
                self.no_command_running("KillPattern")?;
                self.queue.push_back(Event::Found { count: self.pattern });
                if sig == Signal::SIGKILL || self.pattern_obeys {
                    self.pattern = 0;
                }
            }
        }
        Ok(())
    }

    /// Invariant 1 for external services: never two commands at once.
    fn no_command_running(&self, what: &str) -> Res {
        if let Some(p) = self.procs.iter().find(|p| p.role == Role::Command) {
            return Err(self.fail(&format!("{what} while command pid {} is not reaped: two commands at once", p.pid)));
        }
        Ok(())
    }

    fn spawn(&mut self, argv: Option<&[String]>) -> Res {
        let role = if argv.is_some() { Role::Command } else { Role::Main };
        if role == Role::Main {
            // Invariants 1 and 4: one main process at most; a run (or a
            // restart) never overlaps the previous one, its descendants
            // included.
            if let Some(p) = self.procs.iter().find(|p| p.role == Role::Main) {
                return Err(self.fail(&format!("Spawn while main process pid {} lives: a second main process", p.pid)));
            }
            let left = self.procs.iter().filter(|p| p.role == Role::Descendant).count();
            if left > 0 {
                return Err(self.fail(&format!("Spawn while {left} descendant(s) of the last run live: runs overlap")));
            }
        }
        let outcome = self.world.spawns[self.spawned % self.world.spawns.len()];
        let fate = self.world.fates[self.spawned % self.world.fates.len()].clone();
        self.spawned += 1;
        let starts_service = argv.is_some() && argv == self.pattern_based().map(Vec::as_slice);
        let mut child = |ends_at| {
            let pid = self.next_pid;
            self.next_pid += 1;
            self.procs.push(Proc {
                pid,
                role,
                born: self.now,
                obeys: fate.obeys,
                graceful: fate.graceful,
                stop_takes: fate.stop_takes,
                paused: false,
                pending: None,
                ends_at,
                dying: None,
                stop_signalled: false,
                starts_service,
            });
            pid
        };
        match outcome {
            SpawnOutcome::Ok => {
                let pid = child(fate.runs_for.map(|r| (self.now + ms(r), fate.status)));
                self.queue.push_back(Event::Spawned { pid });
            }
            SpawnOutcome::ExecFails => {
                let pid = child(Some((self.now, ExitStatus::Code(127))));
                self.queue.push_back(Event::Spawned { pid });
                self.queue.push_back(Event::SpawnFailed { error: "exec: no such file".into(), transient: false });
            }
            SpawnOutcome::ForkFailsTransient => {
                self.queue.push_back(Event::SpawnFailed { error: "fork: EAGAIN".into(), transient: true });
            }
            SpawnOutcome::ForkFailsPermanent => {
                self.queue.push_back(Event::SpawnFailed { error: "no user nobody2".into(), transient: false });
            }
        }
        Ok(())
    }

    /// A signal to the main process, its group and its descendants (or to
    /// the command).
    fn signal(&mut self, sig: Signal) {
        let stop = self.svc.stop_signal;
        let now = self.now;
        for p in self.procs.iter_mut().filter(|p| p.live()) {
            match sig {
                Signal::SIGKILL => {
                    p.stop_signalled = true;
                    p.dying = Some(ExitStatus::Signal(Signal::SIGKILL));
                }
                Signal::SIGSTOP => p.paused = true,
                Signal::SIGCONT => {
                    p.paused = false;
                    if let Some(s) = p.pending.take() {
                        p.told_to_stop(s, now);
                    }
                }
                s => {
                    p.stop_signalled |= s == stop;
                    if p.obeys {
                        if p.paused {
                            p.pending = Some(s);
                        } else {
                            p.told_to_stop(s, now);
                        }
                    }
                }
            }
        }
    }

    /// Reaps what ended: descendants silently, the main process or the
    /// command with `Exited`; with `follow`, a main process that exits 0
    /// and leaves a descendant hands over to it (`Adopted`).
    fn reap(&mut self) -> Res {
        loop {
            self.procs.retain(|p| p.role != Role::Descendant || p.live());
            let Some(i) = self.procs.iter().position(|p| p.role != Role::Descendant && !p.live()) else {
                return Ok(());
            };
            let p = self.procs.remove(i);
            let status = p.dying.expect("ended");
            let leftovers = p.role == Role::Main && self.procs.iter().any(|q| q.role == Role::Descendant);
            self.note(&format!("pid {} reaped: {status}", p.pid));
            if leftovers && self.svc.follow && status.success() {
                let heir = self.procs.iter_mut().find(|q| q.role == Role::Descendant).expect("a descendant");
                heir.role = Role::Main;
                // Still the same run, for a task's timeout, and told to
                // stop if it was.
                heir.born = p.born;
                heir.stop_signalled |= p.stop_signalled;
                let pid = heir.pid;
                self.deliver(Event::Adopted { pid })?;
                continue;
            }
            if p.starts_service && status == ExitStatus::Code(0) {
                self.pattern = self.pattern.max(1);
            }
            self.deliver(Event::Exited { status, leftovers })?;
        }
    }

    /// The engine's `AllGone`: no main process, no descendant, and the
    /// machine waits for them (stopping, without a pid).
    fn all_gone_due(&self) -> bool {
        !self.external()
            && self.procs.iter().all(|p| p.role == Role::Command)
            && self.m.state() == ServiceState::Stopping
            && self.m.pid().is_none()
    }

    /// When the engine wakes for the armed timer: a little late, maybe.
    fn timer_fires(&self) -> Option<Instant> {
        self.timer.map(|t| t + ms(self.world.timer_lag))
    }

    /// The end of an engine turn: fires a due timer, reports `AllGone`.
    fn turn(&mut self) -> Res {
        let mut all_gone_sent = false;
        for _ in 0..MAX_EVENTS_AT_ONCE {
            if self.timer_fires().is_some_and(|t| t <= self.now) {
                self.timer = None;
                self.deliver(Event::Timer)?;
                continue;
            }
            if !all_gone_sent && self.all_gone_due() {
                all_gone_sent = true;
                self.deliver(Event::AllGone)?;
                continue;
            }
            return Ok(());
        }
        Err(self.fail("timers keep firing at one instant: a livelock"))
    }

    /// The next instant something happens by itself: a process ends or
    /// the timer fires.
    fn next_instant(&self) -> Option<Instant> {
        let ends = self.procs.iter().filter(|p| p.live() && !p.paused).filter_map(|p| p.ends_at.map(|(t, _)| t)).min();
        [ends, self.timer_fires()].into_iter().flatten().min()
    }

    /// Lets `d` pass: processes end and timers fire in time order.
    fn advance(&mut self, d: Duration) -> Res {
        let target = self.now + d;
        let mut at_once = 0;
        for _ in 0..1_000_000 {
            self.reap()?;
            self.turn()?;
            match self.next_instant() {
                Some(t) if t <= target => {
                    at_once = if t <= self.now { at_once + 1 } else { 0 };
                    if at_once > MAX_EVENTS_AT_ONCE {
                        return Err(self.fail("processes keep ending at one instant: a livelock"));
                    }
                    self.now = self.now.max(t);
                    let now = self.now;
                    for p in self.procs.iter_mut().filter(|p| p.live() && !p.paused) {
                        if let Some((at, status)) = p.ends_at {
                            if at <= now {
                                p.dying = Some(status);
                            }
                        }
                    }
                }
                _ => {
                    self.now = target;
                    self.reap()?;
                    return self.turn();
                }
            }
        }
        Err(self.fail("a million happenings in one step"))
    }

    fn step(&mut self, step: Step) -> Res {
        self.note(&format!("step {step:?}"));
        match step {
            Step::Request(ev) => {
                self.deliver(ev)?;
                self.turn()
            }
            Step::Exit(status) => {
                let main = self.procs.iter_mut().find(|p| p.role != Role::Descendant && p.live());
                if let Some(p) = main {
                    // A process held by SIGSTOP cannot exit: only a KILL
                    // from outside ends it.
                    p.dying = Some(if p.paused { ExitStatus::Signal(Signal::SIGKILL) } else { status });
                }
                self.reap()?;
                self.turn()
            }
            Step::Advance(n) => self.advance(ms(n)),
            Step::Fork { obeys } => {
                if self.external() {
                    self.pattern += 1;
                    self.pattern_obeys = obeys;
                } else if self.procs.iter().any(|p| p.role == Role::Main && p.live() && !p.paused) {
                    let pid = self.next_pid;
                    self.next_pid += 1;
                    self.procs.push(Proc {
                        pid,
                        role: Role::Descendant,
                        born: self.now,
                        obeys,
                        graceful: false,
                        stop_takes: 0,
                        paused: false,
                        pending: None,
                        ends_at: None,
                        dying: None,
                        stop_signalled: false,
                        starts_service: false,
                    });
                }
                Ok(())
            }
            Step::DescendantsGo => {
                if self.external() {
                    self.pattern = 0;
                }
                for p in self.procs.iter_mut().filter(|p| p.role == Role::Descendant && p.live()) {
                    p.dying = Some(ExitStatus::Code(0));
                }
                self.reap()?;
                self.turn()
            }
            Step::Reap => {
                self.reap()?;
                self.turn()
            }
            Step::StopAndSettle => self.settle(),
        }
    }

    /// Invariants after every step.
    fn check_step(&self) -> Res {
        // 1: never more than one main process, or one command.
        for role in [Role::Main, Role::Command] {
            let n = self.procs.iter().filter(|p| p.role == role).count();
            if n > 1 {
                return Err(self.fail(&format!("{n} processes of role {role:?} at once")));
            }
        }
        // 4: a task's run that passed its timeout has been signalled.
        if let Kind::Task(spec) = &self.svc.kind {
            if let Some(t) = spec.timeout {
                for p in self.procs.iter().filter(|p| p.role == Role::Main && p.live()) {
                    if self.now >= p.born + t + ms(self.world.timer_lag) && !p.stop_signalled {
                        return Err(self.fail(&format!(
                            "run pid {} is {:?} old, past its timeout {t:?}, and was not signalled",
                            p.pid,
                            self.now.duration_since(p.born)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn at_rest(&self) -> bool {
        self.procs.is_empty() && self.m.is_at_rest()
    }

    /// Invariant 2: a `Stop`, then as much time and as many process
    /// endings as it takes (everything that gets `KILL` ends; time passes
    /// past every timeout); it must end at rest, wanting nothing, with no
    /// process left.
    fn settle(&mut self) -> Res {
        self.deliver(Event::Stop)?;
        self.turn()?;
        for _ in 0..100_000 {
            self.reap()?;
            self.turn()?;
            if self.at_rest() {
                return self.check_rest();
            }
            match self.next_instant() {
                Some(t) => self.advance(t.saturating_duration_since(self.now))?,
                None => {
                    return Err(
                        self.fail("after a stop: not at rest, or a process lives on, and nothing is left to happen")
                    )
                }
            }
        }
        Err(self.fail("after a stop: still not at rest after 100000 happenings"))
    }

    fn check_rest(&self) -> Res {
        if self.m.want_up() {
            return Err(self.fail("stopped but still wanted up"));
        }
        if !self.external() {
            if self.m.state() != ServiceState::Stopped {
                return Err(self.fail("a stop ended at rest, but not in state stopped"));
            }
            if self.timer.is_some() {
                return Err(self.fail("stopped with a timer still armed"));
            }
        }
        Ok(())
    }
}

/// Plays a case; the first broken invariant fails it.
fn play(case: Case) -> Result<(), TestCaseError> {
    let Case { svc, world, seed, steps } = case;
    let mut env = Env::new(svc, world, seed);
    env.begin().map_err(TestCaseError::fail)?;
    env.check_step().map_err(TestCaseError::fail)?;
    for step in steps {
        env.step(step).map_err(TestCaseError::fail)?;
        env.check_step().map_err(TestCaseError::fail)?;
    }
    env.note("final stop");
    env.settle().map_err(TestCaseError::fail)
}

// ---------------------------------------------------------------------------
// Strategies.

fn duration_ms(lo: u64, hi: u64) -> impl Strategy<Value = Duration> {
    (lo..=hi).prop_map(ms)
}

/// Restart policies with small durations; the step is never zero.
fn policy() -> impl Strategy<Value = RestartPolicy> {
    (
        prop_oneof![3 => Just(RestartMode::Always), 2 => Just(RestartMode::OnFailure), 1 => Just(RestartMode::Never)],
        prop::collection::vec(0..4i32, 0..3),
        duration_ms(1, 2000),
        duration_ms(1, 2000),
        prop_oneof![1 => Just(Duration::ZERO), 8 => duration_ms(0, 10_000)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mode, exit_codes, min_uptime, backoff_step, backoff_limit, forever, jitter)| RestartPolicy {
            mode,
            exit_codes,
            min_uptime,
            backoff_limit,
            backoff_step,
            forever,
            jitter,
        })
}

fn stop_signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        6 => Just(Signal::SIGTERM),
        1 => Just(Signal::SIGINT),
        1 => Just(Signal::SIGHUP),
        1 => Just(Signal::SIGQUIT),
        1 => Just(Signal::SIGKILL),
    ]
}

fn service(kind: impl Strategy<Value = Kind>) -> impl Strategy<Value = Service> {
    (
        kind,
        policy(),
        stop_signal(),
        duration_ms(1, 5000),
        prop_oneof![3 => Just(Expected::Running), 1 => Just(Expected::Stopped)],
        prop::bool::weighted(0.25),
    )
        .prop_map(|(kind, restart, stop_signal, stop_timeout, expected, follow)| {
            let kind_is_external = kind.is_external();
            let mut s = Service::new("svc", Command::argv(["/usr/sbin/daemon", "--foreground"]));
            s.kind = kind;
            s.restart = restart;
            s.stop_signal = stop_signal;
            s.stop_timeout = stop_timeout;
            s.expected = expected;
            s.follow = follow && !kind_is_external;
            s
        })
}

fn task_kind() -> impl Strategy<Value = Kind> {
    (
        duration_ms(100, 3000),
        prop::option::of(duration_ms(1, 5000)),
        prop_oneof![3 => Just(Duration::ZERO), 1 => duration_ms(1, 500)],
    )
        .prop_map(|(interval, timeout, jitter)| Kind::Task(Box::new(TaskSpec { interval, timeout, jitter })))
}

/// Init-script services (`control`), or services started by a command and
/// found in the process table by their pattern.
fn external_kind() -> impl Strategy<Value = Kind> {
    let restart = prop_oneof![
        Just(None),
        Just(Some(RestartCommand::StopStart)),
        Just(Some(RestartCommand::Run(words("/usr/sbin/reload-it")))),
    ];
    (any::<bool>(), restart, duration_ms(1, 5000), duration_ms(100, 5000)).prop_map(
        |(control, restart, timeout, check_interval)| {
            let mut spec = if control {
                ExternalSpec::control(words("/sbin/service httpd"))
            } else {
                ExternalSpec::start(words("/usr/sbin/httpd -k start"))
            };
            spec.restart = restart;
            spec.timeout = timeout;
            spec.check_interval = check_interval;
            Kind::External(Box::new(spec))
        },
    )
}

fn exit_status() -> impl Strategy<Value = ExitStatus> {
    prop_oneof![
        3 => (0..4i32).prop_map(ExitStatus::Code),
        1 => Just(ExitStatus::Code(127)),
        1 => prop_oneof![
            Just(Signal::SIGKILL),
            Just(Signal::SIGTERM),
            Just(Signal::SIGSEGV),
            Just(Signal::SIGHUP),
        ]
        .prop_map(ExitStatus::Signal),
    ]
}

/// What commands answer: LSB codes mostly.
fn command_status() -> impl Strategy<Value = ExitStatus> {
    prop_oneof![
        4 => Just(ExitStatus::Code(0)),
        3 => Just(ExitStatus::Code(3)),
        1 => Just(ExitStatus::Code(1)),
        1 => Just(ExitStatus::Code(4)),
        1 => Just(ExitStatus::Signal(Signal::SIGSEGV)),
    ]
}

fn world(
    runs_for: impl Strategy<Value = Option<u64>>,
    status: impl Strategy<Value = ExitStatus>,
) -> impl Strategy<Value = World> {
    let outcome = prop_oneof![
        8 => Just(SpawnOutcome::Ok),
        1 => Just(SpawnOutcome::ExecFails),
        1 => Just(SpawnOutcome::ForkFailsTransient),
        1 => Just(SpawnOutcome::ForkFailsPermanent),
    ];
    let stop_takes = prop_oneof![2 => Just(0), 1 => 1..300u64];
    let fate = (prop::bool::weighted(0.75), any::<bool>(), stop_takes, runs_for, status).prop_map(
        |(obeys, graceful, stop_takes, runs_for, status)| Fate { obeys, graceful, stop_takes, runs_for, status },
    );
    // The first spawn always works: a world where fork always fails and
    // a zero backoff retries at once would spin at one instant.
    let lag = prop_oneof![1 => Just(0), 1 => 0..30u64];
    (prop::collection::vec(outcome, 0..5), prop::collection::vec(fate, 1..8), lag).prop_map(
        |(mut spawns, fates, timer_lag)| {
            spawns.insert(0, SpawnOutcome::Ok);
            World { spawns, fates, timer_lag }
        },
    )
}

fn steps(requests: Vec<Event>) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => prop::sample::select(requests).prop_map(Step::Request),
        2 => exit_status().prop_map(Step::Exit),
        5 => prop_oneof![3 => 0..1500u64, 1 => 0..12_000u64].prop_map(Step::Advance),
        1 => any::<bool>().prop_map(|obeys| Step::Fork { obeys }),
        1 => Just(Step::DescendantsGo),
        1 => Just(Step::Reap),
        1 => Just(Step::StopAndSettle),
    ];
    prop::collection::vec(step, 1..40)
}

fn case(
    kind: impl Strategy<Value = Kind>,
    world: impl Strategy<Value = World>,
    requests: Vec<Event>,
) -> impl Strategy<Value = Case> {
    (service(kind), world, any::<u64>(), steps(requests)).prop_map(|(svc, world, seed, steps)| Case {
        svc,
        world,
        seed,
        steps,
    })
}

fn daemon_cases() -> impl Strategy<Value = Case> {
    case(
        Just(Kind::Daemon),
        world(prop_oneof![2 => Just(None), 3 => (1..3000u64).prop_map(Some)], exit_status()),
        vec![Event::Start, Event::Once, Event::Stop, Event::Restart, Event::Pause, Event::Resume],
    )
}

fn task_cases() -> impl Strategy<Value = Case> {
    case(
        task_kind(),
        world(prop_oneof![1 => Just(None), 4 => (1..4000u64).prop_map(Some)], exit_status()),
        vec![Event::Start, Event::Once, Event::Stop, Event::Restart, Event::Pause, Event::Resume],
    )
}

fn external_cases() -> impl Strategy<Value = Case> {
    case(
        external_kind(),
        world(prop_oneof![1 => Just(None), 6 => (1..300u64).prop_map(Some)], command_status()),
        vec![Event::Start, Event::Once, Event::Stop, Event::Restart, Event::Check],
    )
}

const CASES: u32 = 256;

// ---------------------------------------------------------------------------
// The properties.

/// Daemons, driven by random requests, exits, descendants and time:
/// never a second main process while one lives, nor a new one while the
/// last one's descendants linger (1); every timer armed after a quick
/// failure, and the backoff delay, within `backoff_limit` (3); and a stop
/// always ends in `stopped` with no process and no timer left (2).
#[test]
fn daemon_one_process_bounded_backoff_and_stops_come_to_rest() {
    run_property(CASES, daemon_cases, play);
}

/// Loop tasks: runs never overlap (no spawn while the last run's process
/// or its descendants live) (1, 4); a run that lived past its timeout has
/// been sent the stop signal (4); a stop ends in `stopped` with nothing
/// left (2).
#[test]
fn task_runs_never_overlap_time_out_and_stop() {
    run_property(CASES, task_cases, play);
}

/// External services, with commands answering random LSB codes, hanging,
/// failing to start: never two commands (or pattern look-ups) at once
/// (1); a stop always ends with the machine down, no pass running or
/// asked for, and no command left (2).
#[test]
fn external_one_command_at_a_time_and_stops_come_to_rest() {
    run_property(CASES, external_cases, play);
}

/// The backoff on its own (3): for any policy with a step above zero and
/// any sequence of exits and run lengths, a delay never exceeds
/// `backoff_limit`, `GiveUp` comes only without `forever`, and each
/// decision is the one the policy calls for.
#[test]
fn backoff_never_exceeds_its_limit() {
    fn strategy() -> impl Strategy<Value = (RestartPolicy, Vec<(ExitStatus, u64)>)> {
        (policy(), prop::collection::vec((exit_status(), 0..15_000u64), 1..60))
    }
    run_property(CASES, strategy, |(p, exits)| {
        let mut b = Backoff::default();
        for (exit, ran) in exits {
            let ran_for = ms(ran);
            let decision = b.on_exit(&p, exit, ran_for);
            match decision {
                Decision::RestartAfter(d) => {
                    prop_assert!(d <= p.backoff_limit, "delay {:?} past the limit {:?}", d, p.backoff_limit);
                    prop_assert!(p.wants_restart(exit) && ran_for < p.min_uptime);
                }
                Decision::GiveUp => prop_assert!(!p.forever, "gave up with forever"),
                Decision::Finished => prop_assert!(!p.wants_restart(exit)),
                Decision::RestartNow => prop_assert!(p.wants_restart(exit) && ran_for >= p.min_uptime),
            }
            prop_assert!(b.delay() <= p.backoff_limit, "delay {:?} past the limit {:?}", b.delay(), p.backoff_limit);
        }
        Ok(())
    });
}

/// Group strategies (5): a failure of the member at `pos` never affects
/// `pos` itself, only members of the group, each once and in order;
/// `one_for_one` affects none, `one_for_all` all the others,
/// `rest_for_one` exactly those after `pos`.
#[test]
fn group_strategies_affect_the_right_members() {
    fn strategy() -> impl Strategy<Value = (usize, GroupStrategy, usize)> {
        let strategy = prop_oneof![
            Just(GroupStrategy::OneForOne),
            Just(GroupStrategy::OneForAll),
            Just(GroupStrategy::RestForOne)
        ];
        (1..12usize, strategy).prop_flat_map(|(n, s)| (Just(n), Just(s), 0..n))
    }
    run_property(CASES, strategy, |(n, strategy, pos)| {
        let g = Group::new("g", (0..n).map(|i| format!("s{i}")).collect(), strategy);
        let affected = g.affected_by(pos);
        prop_assert!(!affected.contains(&pos), "{:?} includes {}", affected, pos);
        prop_assert!(affected.iter().all(|&i| i < n), "{:?} names non-members", affected);
        prop_assert!(affected.windows(2).all(|w| w[0] < w[1]), "{:?} not in order, or twice", affected);
        let expected: Vec<usize> = match strategy {
            GroupStrategy::OneForOne => Vec::new(),
            GroupStrategy::OneForAll => (0..n).filter(|&i| i != pos).collect(),
            GroupStrategy::RestForOne => (pos + 1..n).collect(),
        };
        prop_assert_eq!(affected, expected);
        Ok(())
    });
}
