//! Services controlled by commands, as CERN's simplevisor controls them:
//! a `start`, `stop`, `status` and `restart` command (or a `control`
//! prefix such as `/sbin/service httpd`), with the state read from the
//! LSB return code of `status`: 0 running, 3 stopped, anything else dirty.
//!
//! [`ExternalSpec`] holds the commands and resolves them with simplevisor's
//! precedence rules ([`ExternalSpec::step`]). [`ExternalMachine`] is pure,
//! like [`Machine`](crate::machine::Machine): a *pass* runs `status`, then
//! whatever brings the service to its wanted state (`start`; `stop`; or
//! `stop` then `start` for a dirty one), then `status` again to see what
//! it achieved. Passes run every `check_interval` and for every command;
//! never two commands of one service at once. Each command gets `timeout`;
//! a hung one is killed with its process group.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Action, Event};
use crate::model::{ExitStatus, Expected, ExternalSpec, Health, Operation, PassReport, Service, ServiceState, Step};
use nix::sys::signal::Signal;

/// Passes that the engine may ask for besides the periodic ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Check,
    Restart,
}

#[derive(Debug, Clone)]
struct Job {
    op: Operation,
    deadline: Instant,
    timed_out: bool,
    /// A pattern stop: `KILL` has been sent.
    killed: bool,
    /// A pattern stop: polling for the processes to go.
    polling: bool,
    pid: Option<i32>,
    error: Option<String>,
}

/// How often a pattern stop looks whether the processes are gone.
const PATTERN_POLL: Duration = Duration::from_millis(100);
/// How long a pattern stop waits after `KILL`.
const PATTERN_KILL_WAIT: Duration = Duration::from_secs(5);
/// How long the status after a repair is asked again while it does not
/// show the wanted state yet (a start script that returns before its
/// daemon is up).
const VERIFY_SETTLE: Duration = Duration::from_secs(3);
/// How often it is asked again meanwhile.
const VERIFY_POLL: Duration = Duration::from_millis(250);
/// The code that stands for a command killed for running too long.
pub const TIMED_OUT: i32 = 124;

/// One external service's state and history.
#[derive(Debug, Clone)]
pub struct ExternalMachine {
    want_up: bool,
    state: ServiceState,
    since: Instant,
    job: Option<Job>,
    todo: VecDeque<Operation>,
    verifying: bool,
    /// Until when a verification that disagrees is asked again.
    settle_until: Option<Instant>,
    /// Waiting to ask the status again.
    retry_wait: bool,
    pass: Option<PassReport>,
    last_pass: Option<PassReport>,
    pending: Option<Request>,
    periodic: bool,
    dry_run: bool,
    passes: u64,
    repairs: u64,
    last_exit: Option<ExitStatus>,
    error: Option<String>,
}

impl ExternalMachine {
    /// A machine that knows nothing yet (`checking`); feed it
    /// [`Event::Check`] (or a command) to begin.
    pub fn new(expected: Expected, now: Instant) -> ExternalMachine {
        ExternalMachine {
            want_up: expected == Expected::Running,
            state: ServiceState::Checking,
            since: now,
            job: None,
            todo: VecDeque::new(),
            verifying: false,
            settle_until: None,
            retry_wait: false,
            pass: None,
            last_pass: None,
            pending: None,
            periodic: true,
            dry_run: false,
            passes: 0,
            repairs: 0,
            last_exit: None,
            error: None,
        }
    }

    /// Without periodic checks: one pass per request (`supervisor check`).
    pub fn without_periodic_checks(mut self) -> ExternalMachine {
        self.periodic = false;
        self
    }

    /// Passes only report: nothing is started or stopped.
    pub fn dry_run(mut self) -> ExternalMachine {
        self.dry_run = true;
        self
    }

    /// The state: the last one `status` reported, or `starting`/`stopping`
    /// while a command changes it (or is about to), `checking` before the
    /// first answer.
    pub fn state(&self) -> ServiceState {
        let op = self.job.as_ref().map(|j| j.op).or_else(|| self.todo.front().copied());
        // While the status after a repair runs, the repair is still on.
        let repairing = self.verifying && self.pass.as_ref().is_some_and(|p| !p.actions.is_empty());
        match op {
            Some(Operation::Start | Operation::Restart) => ServiceState::Starting,
            Some(Operation::Stop) => ServiceState::Stopping,
            Some(Operation::Status) if repairing && self.want_up => ServiceState::Starting,
            Some(Operation::Status) if repairing => ServiceState::Stopping,
            _ if self.pending.is_some() && self.pass.is_none() => ServiceState::Checking,
            _ => self.state,
        }
    }
    /// Whether it is wanted running.
    pub fn want_up(&self) -> bool {
        self.want_up
    }
    /// The command running now.
    pub fn pid(&self) -> Option<i32> {
        self.job.as_ref().and_then(|j| j.pid)
    }
    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }
    /// Whether a pass is going on or asked for.
    pub fn busy(&self) -> bool {
        self.pass.is_some() || self.pending.is_some()
    }
    /// The last complete pass.
    pub fn last_pass(&self) -> Option<&PassReport> {
        self.last_pass.as_ref()
    }
    /// Complete passes so far.
    pub fn passes(&self) -> u64 {
        self.passes
    }
    /// Passes that had to start or stop something.
    pub fn repairs(&self) -> u64 {
        self.repairs
    }
    /// How the last command ended.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }
    /// The last command that could not be run, or timed out.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    /// Whether nothing runs and the service is not wanted (a shutdown may
    /// end).
    pub fn is_down(&self) -> bool {
        !self.want_up && self.job.is_none() && self.pass.is_none() && self.pending.is_none()
    }

    fn set_state(&mut self, state: ServiceState, now: Instant) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }

    fn spec(svc: &Service) -> Option<&ExternalSpec> {
        match &svc.kind {
            crate::model::Kind::External(spec) => Some(spec),
            _ => None,
        }
    }

    /// Applies one event and returns what the engine must do.
    pub fn handle(&mut self, svc: &Service, event: Event, now: Instant) -> Vec<Action> {
        let Some(spec) = Self::spec(svc) else { return Vec::new() };
        match event {
            Event::Start | Event::Once => {
                self.want_up = true;
                self.request(spec, Request::Check, now)
            }
            Event::Stop => {
                self.want_up = false;
                self.request(spec, Request::Check, now)
            }
            Event::Restart => {
                self.want_up = true;
                self.request(spec, Request::Restart, now)
            }
            Event::Check => self.request(spec, Request::Check, now),
            Event::Pause
            | Event::Resume
            | Event::Adopted { .. }
            | Event::AllGone
            | Event::Ready
            | Event::Unhealthy { .. } => Vec::new(),
            Event::Spawned { pid } => {
                if let Some(j) = self.job.as_mut() {
                    j.pid = Some(pid);
                }
                Vec::new()
            }
            Event::SpawnFailed { error, .. } => {
                let Some(j) = self.job.as_mut() else { return Vec::new() };
                j.error = Some(error);
                if j.pid.is_some() {
                    // The child exists and exits 127: finish then.
                    return Vec::new();
                }
                self.op_done(spec, 127, now)
            }
            Event::Exited { status, .. } => {
                let Some(j) = self.job.as_ref() else { return Vec::new() };
                self.last_exit = Some(status);
                let code = match status {
                    _ if j.timed_out => TIMED_OUT,
                    ExitStatus::Code(c) => c,
                    ExitStatus::Signal(s) => 128 + s as i32,
                };
                self.op_done(spec, code, now)
            }
            Event::Found { count } => {
                let Some(j) = self.job.as_mut() else { return Vec::new() };
                match j.op {
                    Operation::Status => self.op_done(spec, if count > 0 { 0 } else { 3 }, now),
                    _ if count == 0 => self.op_done(spec, 0, now),
                    _ if now >= j.deadline && !j.killed => {
                        j.killed = true;
                        j.polling = true;
                        j.deadline = now + PATTERN_KILL_WAIT;
                        vec![Action::KillPattern(Signal::SIGKILL), Action::ArmTimer(now + PATTERN_POLL)]
                    }
                    _ if now >= j.deadline => {
                        j.timed_out = true;
                        self.op_done(spec, 1, now)
                    }
                    _ => {
                        j.polling = true;
                        vec![Action::ArmTimer((now + PATTERN_POLL).min(j.deadline))]
                    }
                }
            }
            Event::Timer => match self.job.as_mut() {
                Some(j) if j.polling => {
                    j.polling = false;
                    vec![Action::FindPattern]
                }
                Some(j) if now >= j.deadline && !j.timed_out && j.pid.is_some() => {
                    j.timed_out = true;
                    log::warn!("{}: {} timed out after {:?}; killing it", svc.name, j.op.as_str(), spec.timeout);
                    vec![Action::Signal(Signal::SIGKILL)]
                }
                Some(_) => Vec::new(),
                None if self.retry_wait => {
                    self.retry_wait = false;
                    self.next_op(spec, now)
                }
                None if self.pass.is_none() => self.request(spec, Request::Check, now),
                None => Vec::new(),
            },
        }
    }

    /// Queues a pass; begins it unless one runs.
    fn request(&mut self, spec: &ExternalSpec, req: Request, now: Instant) -> Vec<Action> {
        // A restart asked for wins over a check asked for.
        if self.pending != Some(Request::Restart) {
            self.pending = Some(req);
        }
        if self.pass.is_some() {
            return Vec::new();
        }
        self.begin_pass(spec, now)
    }

    fn begin_pass(&mut self, spec: &ExternalSpec, now: Instant) -> Vec<Action> {
        let Some(req) = self.pending.take() else { return Vec::new() };
        let wanted = if self.want_up { Expected::Running } else { Expected::Stopped };
        self.pass = Some(PassReport { wanted: Some(wanted), ..PassReport::default() });
        self.todo.clear();
        self.settle_until = None;
        self.retry_wait = false;
        match req {
            Request::Check => {
                self.verifying = false;
                self.todo.push_back(Operation::Status);
            }
            Request::Restart if self.dry_run => {
                self.verifying = true;
                self.todo.push_back(Operation::Status);
            }
            Request::Restart => {
                self.verifying = true;
                self.todo.extend([Operation::Restart, Operation::Status]);
            }
        }
        let mut actions = vec![Action::CancelTimer];
        actions.extend(self.next_op(spec, now));
        actions
    }

    fn next_op(&mut self, spec: &ExternalSpec, now: Instant) -> Vec<Action> {
        let Some(op) = self.todo.pop_front() else { return self.end_pass(spec, now) };
        let deadline = now + spec.timeout;
        let job = Job { op, deadline, timed_out: false, killed: false, polling: false, pid: None, error: None };
        match spec.step(op) {
            Step::StopThenStart => {
                self.todo.push_front(Operation::Start);
                self.todo.push_front(Operation::Stop);
                self.next_op(spec, now)
            }
            Step::Run(argv) => {
                self.job = Some(job);
                vec![Action::Run(argv), Action::ArmTimer(deadline)]
            }
            Step::FindPattern => {
                self.job = Some(job);
                vec![Action::FindPattern]
            }
            Step::KillPattern => {
                self.job = Some(job);
                vec![Action::KillPattern(Signal::SIGTERM)]
            }
        }
    }

    fn op_done(&mut self, spec: &ExternalSpec, code: i32, now: Instant) -> Vec<Action> {
        let Some(job) = self.job.take() else { return Vec::new() };
        let pass = self.pass.get_or_insert_with(PassReport::default);
        if job.timed_out {
            self.error = Some(format!("{} timed out", job.op.as_str()));
        } else if let Some(e) = job.error {
            self.error = Some(format!("{}: {e}", job.op.as_str()));
        } else if code == 0 || job.op == Operation::Status {
            self.error = None;
        }
        if job.op != Operation::Status {
            let outcome = if job.timed_out { "timed out".to_string() } else { format!("exit {code}") };
            pass.actions.push(format!("{}: {outcome}", job.op.as_str()));
            return self.next_op(spec, now);
        }
        let health = Health::from_code(code);
        self.set_state(health.state(), now);
        let pass = self.pass.get_or_insert_with(PassReport::default);
        if self.verifying || self.dry_run {
            pass.result = Some(health);
            if pass.found.is_none() && !self.verifying {
                pass.found = Some(health);
            }
            // A start (or stop) that returns before the service is there
            // (or gone): ask again for a little while before saying it
            // failed.
            let wanted = if self.want_up { Health::Running } else { Health::Stopped };
            if self.verifying && !pass.actions.is_empty() && health != wanted {
                let until = *self.settle_until.get_or_insert(now + VERIFY_SETTLE);
                if now < until {
                    self.todo.push_front(Operation::Status);
                    self.retry_wait = true;
                    return vec![Action::ArmTimer((now + VERIFY_POLL).min(until))];
                }
            }
            self.settle_until = None;
            return self.next_op(spec, now);
        }
        pass.found = Some(health);
        self.verifying = true;
        let repair: &[Operation] = match (self.want_up, health) {
            (true, Health::Running) | (false, Health::Stopped) => &[],
            (true, Health::Stopped) => &[Operation::Start, Operation::Status],
            (true, Health::Dirty(_)) => &[Operation::Stop, Operation::Start, Operation::Status],
            (false, _) => &[Operation::Stop, Operation::Status],
        };
        if repair.is_empty() {
            pass.result = Some(health);
        }
        self.todo.extend(repair.iter().copied());
        self.next_op(spec, now)
    }

    fn end_pass(&mut self, spec: &ExternalSpec, now: Instant) -> Vec<Action> {
        let mut pass = self.pass.take().unwrap_or_default();
        let wanted = if self.want_up { Health::Running } else { Health::Stopped };
        pass.ok = pass.result == Some(wanted);
        if !pass.actions.is_empty() {
            self.repairs += 1;
        }
        self.passes += 1;
        self.verifying = false;
        self.last_pass = Some(pass);
        if self.pending.is_some() {
            return self.begin_pass(spec, now);
        }
        if self.periodic {
            vec![Action::ArmTimer(now + spec.check_interval)]
        } else {
            vec![Action::CancelTimer]
        }
    }
}

#[cfg(test)]
mod tests;
