//! The engine: a single-threaded loop that sleeps in `poll(2)` and drives
//! one state machine per service ([`Behaviour`]: a daemon's, a loop
//! task's or an external service's).
//!
//! It wakes up only for a signal (through the self-pipe), a descriptor (the
//! control socket and its clients, a child's exec-status pipe, the pidfd of
//! a tracked descendant) or the nearest deadline (backoff, stop timeout,
//! start confirmation, a task's next run, an external service's next
//! check or command timeout). With nothing to do it sleeps without a
//! timeout.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::machine::Behaviour;
use crate::machine::{Action, Event};
use crate::model::protocol::Response;
use crate::model::Group;
use crate::model::ServiceState;
use crate::model::{signal_name, Expected, Input, InvalidService, Output, Service, ServiceRequest};
use crate::os::output::ServiceOutput;
use crate::os::persist::{SavedService, SavedState};
use crate::os::pidfile::PidFile;
use crate::os::previous::{self, INSTANCE_ENV};
use crate::os::procfs::{self, ProcTable};
use crate::os::reap::ReapScope;
use crate::os::spawn;
use crate::os::supervise::SuperviseDir;

mod events;
mod external;
mod frontend;
mod groups;
mod handle;
mod host;
mod reload;
mod report;
mod requests;
mod svdir;
mod tasks;
mod tracking;

use crate::os::sys::{self, SignalPipe};
use crate::os::transcript::OutputStream;
use requests::Wait;

pub use events::{StateChange, EVENT_BACKLOG};
pub use handle::{Handle, HandleError};
pub use reload::ReloadRequest;

use handle::{Inbox, ReplyTo};

pub(crate) use frontend::{ClientId, FrontEnd};

/// Errors of engine calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Two services with one name.
    #[error("a service named {0:?} already exists")]
    Duplicate(String),
    /// No service has this name.
    #[error("no service named {0:?}")]
    UnknownService(String),
    /// The engine is shutting down: it only stops services now.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
    /// The service's description breaks a rule (see
    /// [`Service::validate`]), or names what this engine lacks: a user or
    /// group that does not exist, a pipe that was not made.
    #[error(transparent)]
    Invalid(#[from] InvalidService),
    /// System error (poll, pipe, socket).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl EngineError {
    /// As an I/O error (for callers that report I/O errors).
    #[must_use]
    pub fn into_io(self) -> io::Error {
        match self {
            EngineError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        }
    }
}

/// A descendant of a service tracked beside its main process.
#[derive(Debug)]
struct Member {
    pid: i32,
    start_time: u64,
    pidfd: Option<OwnedFd>,
}

#[derive(Debug)]
struct Slot {
    svc: Service,
    m: Behaviour,
    timer: Option<Instant>,
    leader: Option<i32>,
    pgid: Option<i32>,
    members: Vec<Member>,
    output: Option<ServiceOutput>,
    pidfile: Option<PidFile>,
    /// The wanted state last set by a command (not by a shutdown).
    persisted_up: bool,
    leader_start_time: Option<u64>,
    /// The daemontools `supervise/` directory, for service directories.
    supervise: Option<SuperviseDir>,
    /// When the main process last started or ended (for `supervise/status`).
    changed_at: SystemTime,
    /// `svc -x`: the host should stop supervising once the service is down.
    exit_when_down: bool,
    /// A `finish` program that runs, and when it must be killed.
    finishing: Option<(i32, Instant)>,
    /// A spawn waits for `finish` to end.
    spawn_held: bool,
    /// Removed from supervision (its name may be added again).
    retired: bool,
    /// A group member waiting for the members before it to start.
    held_start: bool,
    /// A group member to be stopped once the members after it are down
    /// (true until it is down).
    held_stop: bool,
    /// The stop for `held_stop` was sent.
    group_stop_sent: bool,
}

/// What a polled descriptor belongs to.
#[derive(Debug, Clone, Copy)]
enum Source {
    Signals,
    Control,
    Member(usize, i32),
    Output(usize, OutputStream),
    Supervise(usize),
    Inbox,
}

/// The supervision engine. See the crate documentation for an example.
#[derive(Debug)]
pub struct Engine {
    name: String,
    started: Instant,
    slots: Vec<Slot>,
    by_name: HashMap<String, usize>,
    leaders: HashMap<i32, usize>,
    signals: SignalPipe,
    terminate_on_signals: bool,
    scope: ReapScope,
    control: Option<Box<dyn FrontEnd>>,
    waits: Vec<Wait>,
    shutdown_waiters: Vec<(ReplyTo, Value)>,
    shutting_down: bool,
    finished: bool,
    table: Option<ProcTable>,
    queue: VecDeque<(usize, Event)>,
    caught: Vec<Signal>,
    marker: Option<String>,
    state_path: Option<PathBuf>,
    saved: Option<SavedState>,
    last_saved: Option<SavedState>,
    read_buf: Vec<u8>,
    reopen_hook: Option<ReopenHook>,
    state_dirty: bool,
    named_pipes: HashMap<String, (OwnedFd, OwnedFd)>,
    finishers: HashMap<i32, usize>,
    /// Groups of services, with their start order and strategy.
    groups: Vec<Group>,
    /// External services: one pass per request, and only report.
    one_pass: Option<bool>,
    /// Task runs that are due, held until the host releases them.
    gate_tasks: Option<Vec<usize>>,
    /// `reload` requests for the host, and services being replaced.
    reload: reload::Reloads,
    /// Requests from handles, and the eventfd that wakes the loop.
    inbox: Inbox,
    /// State-change subscribers.
    events: events::Subscribers,
    /// The epoll instance of a host that polls the engine's descriptor.
    host: host::HostCell,
}

/// What the host runs when the transcripts are reopened (its own logs).
struct ReopenHook(Box<dyn FnMut() + Send>);

impl std::fmt::Debug for ReopenHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReopenHook")
    }
}

impl Engine {
    /// A new engine for an instance called `name`, with a `SIGCHLD`
    /// handler installed.
    ///
    /// # Errors
    ///
    /// When the self-pipe or the handler cannot be set up.
    pub fn new(name: impl Into<String>) -> Result<Engine, EngineError> {
        let mut signals = SignalPipe::new()?;
        signals.add(Signal::SIGCHLD)?;
        let started = Instant::now();
        Ok(Engine {
            name: name.into(),
            started,
            slots: Vec::new(),
            by_name: HashMap::new(),
            leaders: HashMap::new(),
            signals,
            terminate_on_signals: false,
            scope: ReapScope::OwnPids,
            control: None,
            waits: Vec::new(),
            shutdown_waiters: Vec::new(),
            shutting_down: false,
            finished: false,
            table: None,
            queue: VecDeque::new(),
            caught: Vec::new(),
            marker: None,
            state_path: None,
            saved: None,
            last_saved: None,
            read_buf: vec![0; 64 * 1024],
            reopen_hook: None,
            state_dirty: true,
            named_pipes: HashMap::new(),
            finishers: HashMap::new(),
            groups: Vec::new(),
            one_pass: None,
            gate_tasks: None,
            reload: reload::Reloads::default(),
            inbox: Inbox::new()?,
            events: events::Subscribers::default(),
            host: host::HostCell::new(),
        })
    }

    /// Declares that this engine owns the whole process: it becomes a child
    /// subreaper, so that descendants which double-fork out of a service
    /// are re-parented to it and tracked, and it reaps with `waitpid(-1)`.
    ///
    /// # Errors
    ///
    /// When `prctl(PR_SET_CHILD_SUBREAPER)` fails.
    pub fn own_process(&mut self) -> Result<(), EngineError> {
        sys::set_child_subreaper()?;
        self.scope = ReapScope::WholeProcess;
        Ok(())
    }

    /// Makes `SIGTERM` and `SIGINT` start a graceful shutdown; `run`
    /// returns once every service is stopped.
    ///
    /// # Errors
    ///
    /// When the handlers cannot be installed.
    pub fn stop_on_signals(&mut self) -> Result<(), EngineError> {
        self.signals.add(Signal::SIGTERM)?;
        self.signals.add(Signal::SIGINT)?;
        self.terminate_on_signals = true;
        Ok(())
    }

    /// Catches `sig`, so that it no longer has its default action (for
    /// `SIGHUP`, `SIGUSR1`, `SIGUSR2`: ending the process). Caught signals
    /// are logged and handed out by [`take_signals`].
    ///
    /// [`take_signals`]: Engine::take_signals
    ///
    /// # Errors
    ///
    /// When the handler cannot be installed (`KILL`, `STOP`).
    pub fn catch_signal(&mut self, sig: Signal) -> Result<(), EngineError> {
        self.signals.add(sig)?;
        Ok(())
    }

    /// The caught signals that arrived since the last call, oldest first.
    pub fn take_signals(&mut self) -> Vec<Signal> {
        std::mem::take(&mut self.caught)
    }

    /// Takes requests from `front` (the control socket) from now on.
    pub(crate) fn attach_front_end(&mut self, front: Box<dyn FrontEnd>) {
        self.nudge();
        self.control = Some(front);
    }

    /// Marks every process of every service with the environment variable
    /// `SUPERVISOR_INSTANCE=marker` (use something unique to the instance,
    /// such as its runtime directory), so that a later supervisor of the
    /// same instance can find what a crashed one left behind.
    pub fn set_instance_marker(&mut self, marker: impl Into<String>) {
        self.marker = Some(marker.into());
    }

    /// Keeps the wanted state of every service and the pid of its process
    /// in the file at `path` (written atomically whenever they change),
    /// and recovers from a previous supervisor of this instance: its
    /// leftover processes (from the file, and by the instance marker) are
    /// stopped (`TERM`, then `KILL` after `grace`) and waited for, and the
    /// wanted states it saved apply to the services added afterwards.
    /// Call it before [`add_service`](Engine::add_service).
    ///
    /// Returns how many leftover processes were stopped.
    ///
    /// # Errors
    ///
    /// When the file exists but cannot be read. A corrupt file is logged
    /// and ignored: the configuration's expected states apply.
    pub fn restore(&mut self, path: &Path, grace: Duration) -> Result<usize, EngineError> {
        let saved = match SavedState::load(path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                log::warn!("ignoring a corrupt state file: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let leftovers = previous::find(saved.as_ref(), self.marker.as_deref());
        let stopped = previous::stop(&leftovers, grace);
        self.saved = saved;
        self.state_path = Some(path.to_path_buf());
        Ok(stopped)
    }

    fn save_state(&mut self) {
        let Some(path) = &self.state_path else { return };
        if !std::mem::take(&mut self.state_dirty) {
            return;
        }
        let state = SavedState {
            // A removed service is forgotten: added again later, its
            // configuration's `expected` applies.
            services: self
                .slots
                .iter()
                .filter(|s| !s.retired)
                .map(|s| {
                    let wanted = if s.persisted_up { Expected::Running } else { Expected::Stopped };
                    (s.svc.name.clone(), SavedService { wanted, pid: s.leader, start_time: s.leader_start_time })
                })
                .collect(),
        };
        if self.last_saved.as_ref() == Some(&state) {
            return;
        }
        // Wanted states must survive a reboot: flush them to disk. Pids
        // only matter until then: a rename is enough, and keeps a restart
        // storm from waiting on the disk.
        let wanted = |s: &SavedState| s.services.iter().map(|(k, v)| (k.clone(), v.wanted)).collect::<Vec<_>>();
        let durable = self.last_saved.as_ref().is_none_or(|old| wanted(old) != wanted(&state));
        match state.save(path, durable) {
            Ok(()) => self.last_saved = Some(state),
            Err(e) => {
                // Logged once per change of state, retried at the next one.
                log::error!("cannot save the state to {}: {e}", path.display());
            }
        }
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a service; if it is expected running, it is started at once.
    ///
    /// # Errors
    ///
    /// [`EngineError::Duplicate`] when the name is taken;
    /// [`EngineError::Invalid`] for a description that breaks a rule of
    /// [`Service::validate`], a `user` or `group` that does not exist, or a
    /// pipe not made with [`add_pipe`](Engine::add_pipe). Nothing changes
    /// then.
    pub fn add_service(&mut self, mut svc: Service) -> Result<(), EngineError> {
        self.nudge();
        let reuse = match self.by_name.get(&svc.name) {
            Some(&i) if self.slots[i].retired && self.slots[i].is_down() => Some(i),
            Some(_) => return Err(EngineError::Duplicate(svc.name)),
            None => None,
        };
        self.check_service(&svc)?;
        // What an external service's commands start is not ours: a later
        // supervisor must not take it for a leftover of this one.
        let external = svc.kind.is_external();
        if let (Some(m), false) = (&self.marker, external) {
            svc.env.vars.insert(INSTANCE_ENV.to_string(), m.clone());
        }
        let now = Instant::now();
        let saved = self.saved.as_ref().and_then(|s| s.services.get(&svc.name));
        let expected = saved.map_or(svc.expected, |s| s.wanted);
        let output = ServiceOutput::new(&svc)?;
        let seed =
            svc.name.bytes().fold(u64::from(std::process::id()), |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let slot = Slot {
            m: match (Behaviour::new(&svc, expected, now, seed), self.one_pass) {
                (Behaviour::External(m), Some(dry_run)) => {
                    let m = m.without_periodic_checks();
                    Behaviour::External(Box::new(if dry_run { m.dry_run() } else { m }))
                }
                (b, _) => b,
            },
            svc,
            timer: None,
            leader: None,
            pgid: None,
            members: Vec::new(),
            output,
            pidfile: None,
            persisted_up: expected == Expected::Running,
            leader_start_time: None,
            supervise: None,
            changed_at: SystemTime::now(),
            exit_when_down: false,
            finishing: None,
            spawn_held: false,
            retired: false,
            held_start: false,
            held_stop: false,
            group_stop_sent: false,
        };
        let idx = if let Some(i) = reuse {
            self.slots[i] = slot;
            i
        } else {
            self.by_name.insert(slot.svc.name.clone(), self.slots.len());
            self.slots.push(slot);
            self.slots.len() - 1
        };
        self.state_dirty = true;
        if !self.shutting_down {
            let later_in_group = self.group_of(idx).is_some_and(|(_, pos)| pos > 0);
            if expected == Expected::Running && later_in_group {
                // Started once the members before it are up.
                self.slots[idx].held_start = true;
            } else if external {
                // Find out, then bring it where it is wanted.
                self.queue.push_back((idx, Event::Check));
            } else if expected == Expected::Running {
                self.queue.push_back((idx, Event::Start));
            }
            self.drain_queue();
            self.advance_groups();
        }
        Ok(())
    }

    /// Checks `svc` on its own and against this engine.
    pub(super) fn check_service(&self, svc: &Service) -> Result<(), InvalidService> {
        svc.validate()?;
        for (field, out) in [("stdout", &svc.stdout), ("stderr", &svc.stderr)] {
            if let Output::Pipe(n) = out {
                if !self.named_pipes.contains_key(n) {
                    let problem = format!("no pipe named {n:?} (make it with Engine::add_pipe first)");
                    return Err(InvalidService::new(&svc.name, field, problem));
                }
            }
        }
        if let Input::Pipe(n) = &svc.stdin {
            if !self.named_pipes.contains_key(n) {
                let problem = format!("no pipe named {n:?} (make it with Engine::add_pipe first)");
                return Err(InvalidService::new(&svc.name, "stdin", problem));
            }
        }
        spawn::check_ids(svc).map_err(|(field, problem)| InvalidService::new(&svc.name, field, problem))
    }

    /// Makes a pipe that services can use by name: [`Output::Pipe`] for
    /// one service's stdout, [`Input::Pipe`] for another's stdin (a
    /// daemontools `log/` service). The engine keeps both ends for as long
    /// as it lives, so the pipe outlives restarts of either side and no
    /// line is lost. Does nothing if the name exists.
    ///
    /// [`Output::Pipe`]: crate::Output::Pipe
    /// [`Input::Pipe`]: crate::Input::Pipe
    ///
    /// # Errors
    ///
    /// When the pipe cannot be made.
    pub fn add_pipe(&mut self, name: &str) -> Result<(), EngineError> {
        if !self.named_pipes.contains_key(name) {
            let (r, w) = sys::pipe()?;
            // Children read and write these: they must block.
            sys::set_nonblocking(r.as_raw_fd(), false)?;
            sys::set_nonblocking(w.as_raw_fd(), false)?;
            self.named_pipes.insert(name.to_string(), (r, w));
        }
        Ok(())
    }

    /// Asks a service to start, stop, restart, pause or resume. Returns
    /// once the request is accepted; the service gets there in later
    /// turns (watch [`state`](Engine::state) or the
    /// [events](Engine::subscribe)).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownService`]; [`EngineError::ShuttingDown`] for
    /// anything but a stop once [`shutdown`](Engine::shutdown) began.
    pub fn command(&mut self, name: &str, request: ServiceRequest) -> Result<(), EngineError> {
        self.nudge();
        let idx = *self.by_name.get(name).ok_or_else(|| EngineError::UnknownService(name.into()))?;
        if self.apply_request(idx, request) {
            Ok(())
        } else {
            Err(EngineError::ShuttingDown)
        }
    }

    /// Carries out `request` for the service at `idx`: the one place where
    /// requests (from the API, handles, the socket, `svc` letters) become
    /// events of its machine. False when a shutdown refuses it.
    pub(super) fn apply_request(&mut self, idx: usize, request: ServiceRequest) -> bool {
        if self.shutting_down && request != ServiceRequest::Stop {
            return false;
        }
        self.release_holds(idx);
        self.queue.push_back((idx, request.into()));
        self.drain_queue();
        true
    }

    /// Sends `sig` to a service's processes (main process, group and
    /// tracked descendants). Returns whether it had a process to signal.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownService`].
    pub fn signal(&mut self, name: &str, sig: Signal) -> Result<bool, EngineError> {
        let idx = *self.by_name.get(name).ok_or_else(|| EngineError::UnknownService(name.into()))?;
        if self.slots[idx].leader.is_none() {
            return Ok(false);
        }
        self.signal_slot(idx, sig);
        Ok(true)
    }

    /// Begins a graceful shutdown: every service is stopped; [`run`]
    /// returns once all are down.
    ///
    /// [`run`]: Engine::run
    pub fn shutdown(&mut self) {
        self.nudge();
        if self.shutting_down {
            return;
        }
        log::info!("shutting down: stopping all services");
        self.shutting_down = true;
        for idx in 0..self.slots.len() {
            self.slots[idx].held_start = false;
            if self.group_of(idx).is_some() {
                // Stopped once the members after it are down.
                self.slots[idx].held_stop = true;
            } else {
                self.queue.push_back((idx, Event::Stop));
            }
        }
        self.drain_queue();
        self.advance_groups();
        self.check_finished();
    }

    /// Whether a shutdown has completed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Runs until a shutdown completes.
    ///
    /// # Errors
    ///
    /// When `poll` fails for a reason other than a signal.
    pub fn run(&mut self) -> Result<(), EngineError> {
        while !self.finished {
            self.turn(None)?;
        }
        if let Some(c) = self.control.as_mut() {
            c.close(Duration::from_secs(1));
        }
        self.control = None;
        Ok(())
    }

    /// One turn of the loop: sleeps in `poll` until something needs
    /// attention (or `max_wait` passes), then handles it.
    ///
    /// # Errors
    ///
    /// When `poll` fails for a reason other than a signal.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> Result<(), EngineError> {
        self.table = None;
        let (mut fds, sources) = self.poll_set();
        let now = Instant::now();
        let mut timeout = self.next_deadline().map(|d| d.saturating_duration_since(now));
        if let Some(m) = max_wait {
            timeout = Some(timeout.map_or(m, |t| t.min(m)));
        }
        // Descendants without a pidfd (kernels before 5.3) cannot wake us.
        // Without pidfds, descendants are checked now and then (the
        // deadline includes it).
        let unwatched = self.slots.iter().any(|s| s.members.iter().any(|m| m.pidfd.is_none()));
        sys::poll(&mut fds, timeout)?;
        let now = Instant::now();

        let mut control_ready = Vec::new();
        let mut sigchld = false;
        let mut inbox = false;
        for (pfd, src) in fds.iter().zip(&sources) {
            if pfd.revents == 0 {
                continue;
            }
            match *src {
                Source::Signals => {
                    for sig in self.signals.drain() {
                        match sig {
                            Signal::SIGCHLD => sigchld = true,
                            Signal::SIGTERM | Signal::SIGINT if self.terminate_on_signals => {
                                log::info!("received SIG{}", signal_name(sig));
                                self.shutdown();
                            }
                            other => {
                                log::info!("received SIG{}", signal_name(other));
                                self.caught.push(other);
                            }
                        }
                    }
                }
                Source::Control => control_ready.push(pfd.fd),
                Source::Output(idx, stream) => {
                    if let Some(o) = self.slots[idx].output.as_mut() {
                        o.read_ready(stream, &mut self.read_buf);
                    }
                }
                Source::Supervise(idx) => self.handle_control_letters(idx),
                Source::Inbox => inbox = true,
                Source::Member(idx, pid) => {
                    self.slots[idx].members.retain(|m| m.pid != pid);
                    sigchld = true;
                }
            }
        }
        if sigchld || unwatched {
            self.reap_children();
        }
        self.expire_finishers(now);
        self.fire_timers(now);
        if let Some(ctl) = self.control.as_mut() {
            let requests = if control_ready.is_empty() {
                ctl.idle(now);
                Vec::new()
            } else {
                ctl.ready(&control_ready, now)
            };
            for (client, req) in requests {
                self.handle_request(ReplyTo::Socket(client), req);
            }
        }
        if inbox {
            self.read_inbox();
        }
        self.drain_queue();
        self.advance_groups();
        self.drain_queue();
        self.apply_replacements();
        self.settle_waits();
        self.check_finished();
        self.save_state();
        self.write_supervise_status();
        self.sync_host();
        Ok(())
    }

    fn poll_set(&self) -> (Vec<libc::pollfd>, Vec<Source>) {
        let mut fds = Vec::new();
        let mut src = Vec::new();
        let mut add = |fd: RawFd, events: i16, s: Source| {
            fds.push(libc::pollfd { fd, events, revents: 0 });
            src.push(s);
        };
        add(self.signals.fd(), libc::POLLIN, Source::Signals);
        add(self.inbox.fd(), libc::POLLIN, Source::Inbox);
        if let Some(c) = &self.control {
            for (fd, ev) in c.poll_fds() {
                add(fd, ev, Source::Control);
            }
        }
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(sd) = &s.supervise {
                add(sd.control_fd(), libc::POLLIN, Source::Supervise(i));
            }
            if let Some(o) = &s.output {
                for (fd, stream) in o.poll_fds() {
                    add(fd, libc::POLLIN, Source::Output(i, stream));
                }
            }
            for m in &s.members {
                if let Some(fd) = &m.pidfd {
                    add(fd.as_raw_fd(), libc::POLLIN, Source::Member(i, m.pid));
                }
            }
        }
        (fds, src)
    }

    fn fire_timers(&mut self, now: Instant) {
        for idx in 0..self.slots.len() {
            if self.slots[idx].timer.is_some_and(|t| t <= now) {
                self.slots[idx].timer = None;
                let run_due = self.gate_tasks.is_some() && self.slots[idx].m.state() == ServiceState::Idle;
                match self.gate_tasks.as_mut() {
                    Some(due) if run_due => due.push(idx),
                    _ => self.queue.push_back((idx, Event::Timer)),
                }
            }
        }
    }

    fn proc_table(&mut self) -> &ProcTable {
        self.table.get_or_insert_with(ProcTable::read)
    }

    fn drain_queue(&mut self) {
        while let Some((idx, ev)) = self.queue.pop_front() {
            let now = Instant::now();
            let slot = &mut self.slots[idx];
            let before = slot.m.state();
            let external = slot.svc.kind.is_external();
            let failure_event = matches!(ev, Event::Exited { .. } | Event::Found { .. }).then(|| ev.clone());
            let exit = match &ev {
                Event::Exited { status, .. } => Some(*status),
                Event::AllGone => slot.m.last_exit(),
                _ => None,
            };
            let old_pid = slot.m.pid();
            let actions = slot.m.handle(&slot.svc, ev, now);
            let after = slot.m.state();
            let failed = failure_event
                .is_some_and(|e| Self::is_failure(external, before, after, &e, self.slots[idx].m.want_up()));
            let slot = &mut self.slots[idx];
            if before != after {
                log::debug!("{}: {} -> {}", slot.svc.name, before, after);
                self.log_transition(idx, before, after);
            }
            for a in actions {
                self.perform(idx, a);
            }
            if before != after {
                // After the actions: a start's event carries its new pid.
                self.emit(idx, before, after, exit, old_pid);
            }
            if failed {
                self.member_failed(idx);
            }
            if !self.shutting_down && self.slots[idx].persisted_up != self.slots[idx].m.want_up() {
                self.slots[idx].persisted_up = self.slots[idx].m.want_up();
                self.state_dirty = true;
            }
        }
    }

    fn perform(&mut self, idx: usize, action: Action) {
        match action {
            Action::ArmTimer(t) => self.slots[idx].timer = Some(t),
            Action::CancelTimer => self.slots[idx].timer = None,
            Action::Signal(sig) => {
                if sig == Signal::SIGKILL {
                    log::warn!("{}: stop timed out; sending KILL", self.slots[idx].svc.name);
                }
                self.signal_slot(idx, sig);
            }
            Action::Run(argv) => self.run_command(idx, argv),
            Action::FindPattern => self.find_pattern(idx, None),
            Action::KillPattern(sig) => self.find_pattern(idx, Some(sig)),
            Action::Spawn => self.spawn_slot(idx, None),
        }
    }

    /// Forks and execs the service's program, or `command` in its place
    /// (an external service's command, which has no pidfile), and tells
    /// its machine how that went.
    fn spawn_slot(&mut self, idx: usize, command: Option<&Service>) {
        {
            if self.slots[idx].finishing.is_some() {
                self.slots[idx].spawn_held = true;
                return;
            }
            // An external service's commands get the directories; the
            // pidfile is what its start command writes.
            let prepared = match command {
                None => crate::os::runtime_dir::before_spawn(&self.slots[idx].svc),
                Some(_) => crate::os::runtime_dir::prepare_for(&self.slots[idx].svc).map_err(|e| e.to_string()),
            };
            if let Err(error) = prepared {
                log::error!("{}: cannot start: {error}", self.slots[idx].svc.name);
                self.queue.push_back((idx, Event::SpawnFailed { error, transient: true }));
                return;
            }
            let slot = &mut self.slots[idx];
            let writers = match slot.output.as_mut().map(ServiceOutput::writers).transpose() {
                Ok(w) => w.unwrap_or_default(),
                Err(e) => {
                    let error = format!("transcript pipe: {e}");
                    log::error!("{}: cannot start: {error}", slot.svc.name);
                    self.queue.push_back((idx, Event::SpawnFailed { error, transient: true }));
                    return;
                }
            };
            let mut pipes = writers.pipes;
            let named = Self::named_pipes_in(&self.named_pipes, &slot.svc);
            pipes.stdout = pipes.stdout.or(named.stdout);
            pipes.stderr = pipes.stderr.or(named.stderr);
            pipes.stdin = named.stdin;
            let spawned = spawn::spawn(command.unwrap_or(&slot.svc), pipes);
            // The child has its copies; ours would keep the pipe open.
            drop(writers);
            match spawned {
                Ok(sp) => {
                    match command {
                        Some(c) => log::debug!("{}: running {} (pid {})", slot.svc.name, c.command, sp.pid),
                        None => log::info!("{}: started pid {}", slot.svc.name, sp.pid),
                    }
                    slot.changed_at = SystemTime::now();
                    if command.is_none() {
                        Self::write_pidfile(slot, sp.pid);
                    }
                    slot.leader_start_time = procfs::read_stat(sp.pid).map(|i| i.start_time);
                    self.state_dirty = true;
                    slot.leader = Some(sp.pid);
                    slot.pgid = Some(sp.pid);
                    self.leaders.insert(sp.pid, idx);
                    self.queue.push_back((idx, Event::Spawned { pid: sp.pid }));
                    if let Some(error) = sp.exec_error {
                        log::error!("{}: {error}", self.slots[idx].svc.name);
                        self.queue.push_back((idx, Event::SpawnFailed { error, transient: false }));
                    }
                }
                Err(e) => {
                    log::error!("{}: cannot start: {e}", slot.svc.name);
                    let transient = e.is_transient();
                    self.queue.push_back((idx, Event::SpawnFailed { error: e.to_string(), transient }));
                }
            }
        }
    }

    /// The descriptors of the named pipes a service uses.
    fn named_pipes_in(pipes: &HashMap<String, (OwnedFd, OwnedFd)>, svc: &Service) -> spawn::Pipes {
        let end = |n: &String, read: bool| pipes.get(n).map(|(r, w)| if read { r.as_raw_fd() } else { w.as_raw_fd() });
        let out = |o: &Output| match o {
            Output::Pipe(n) => end(n, false),
            _ => None,
        };
        spawn::Pipes {
            stdout: out(&svc.stdout),
            stderr: out(&svc.stderr),
            stdin: match &svc.stdin {
                Input::Pipe(n) => end(n, true),
                Input::Null => None,
            },
        }
    }

    fn named_pipes_for(&self, svc: &Service) -> spawn::Pipes {
        Self::named_pipes_in(&self.named_pipes, svc)
    }

    fn write_pidfile(slot: &mut Slot, pid: i32) {
        let Some(path) = crate::os::runtime_dir::pidfile(&slot.svc) else { return };
        let result = match slot.pidfile.as_mut() {
            Some(pf) => pf.write_pid(pid),
            None => PidFile::acquire_with(&path, pid).map(|pf| slot.pidfile = Some(pf)),
        };
        if let Err(e) = result {
            log::error!("{}: {e}", slot.svc.name);
        }
    }

    /// Runs `hook` whenever a `reopen` request arrives, so that the host
    /// can reopen its own log files together with the transcripts.
    pub fn set_reopen_hook(&mut self, hook: impl FnMut() + Send + 'static) {
        self.reopen_hook = Some(ReopenHook(Box::new(hook)));
    }

    /// Reopens the transcript of `name`, or of every service when `None`.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownService`].
    pub fn reopen(&mut self, name: Option<&str>) -> Result<(), EngineError> {
        self.nudge();
        let idxs: Vec<usize> = match name {
            Some(n) => vec![*self.by_name.get(n).ok_or_else(|| EngineError::UnknownService(n.into()))?],
            None => (0..self.slots.len()).collect(),
        };
        for idx in idxs {
            if let Some(o) = self.slots[idx].output.as_mut() {
                o.reopen();
                log::info!("{}: transcript reopened", self.slots[idx].svc.name);
            }
        }
        Ok(())
    }

    fn check_finished(&mut self) {
        if !self.shutting_down || self.finished {
            return;
        }
        let all_down =
            self.slots.iter().all(|s| s.leader.is_none() && s.members.is_empty() && !s.held_stop && s.m.is_at_rest());
        if all_down {
            log::info!("all services stopped");
            self.finished = true;
            for (to, id) in std::mem::take(&mut self.shutdown_waiters) {
                self.reply(&to, &Response::with_services(id, Vec::new()));
            }
        }
    }
}

impl Drop for Engine {
    /// An engine dropped with live services kills them (`SIGKILL` to each
    /// one's process group and tracked descendants), so that no process
    /// outlives its supervisor unnoticed, and reaps them, waiting at most
    /// 5 seconds. Handles get [`HandleError::EngineGone`] from
    /// then on.
    fn drop(&mut self) {
        for idx in 0..self.slots.len() {
            if self.slots[idx].leader.is_some() || !self.slots[idx].members.is_empty() {
                self.signal_slot(idx, Signal::SIGKILL);
            }
        }
        for &pid in self.finishers.keys() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        let known: Vec<i32> = self.leaders.keys().chain(self.finishers.keys()).copied().collect();
        let left = crate::os::reap::reap_within(&known, DROP_REAP_LIMIT);
        if !left.is_empty() {
            log::error!("engine dropped: {} process(es) did not die within {DROP_REAP_LIMIT:?}: {left:?}", left.len());
        }
    }
}

/// How long dropping an engine waits for its killed processes.
const DROP_REAP_LIMIT: Duration = Duration::from_secs(5);

/// The engine moves between threads; handles are shared by them.
const _: () = {
    const fn send<T: Send>() {}
    const fn shared<T: Send + Sync + Clone + 'static>() {}
    send::<Engine>();
    shared::<Handle>();
};
