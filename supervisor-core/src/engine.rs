//! The engine: a single-threaded loop that sleeps in `poll(2)` and drives
//! one state machine per service ([`Behaviour`]: a daemon's, a loop
//! task's or an external service's).
//!
//! It wakes up only for a signal (through the self-pipe), a descriptor (the
//! control socket and its clients, a child's exec-status pipe, the pidfd of
//! a tracked descendant) or the nearest deadline (backoff, stop timeout,
//! start confirmation, a task's next run, an external service's next
//! check or command timeout), or a request from a handle (an eventfd).
//! With nothing to do it sleeps without a timeout.
//!
//! Here: the engine's state, adding services and taking requests. Beside
//! it: the loop itself (`turn`), starting processes (`spawning`), tracking
//! and signalling them (`tracking`), requests and their answers
//! (`requests`, `handle`, `frontend`), events (`events`), a host's own loop
//! (`host`), status and logs (`report`), and what each kind of service or
//! front end needs (`tasks`, `external`, `groups`, `svdir`, `reload`,
//! `saved`).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::machine::{Behaviour, Event};
use crate::model::{Expected, Group, Input, InvalidService, Output, Service, ServiceRequest};
use crate::os::cgroup::CgroupTree;
use crate::os::output::ServiceOutput;
use crate::os::persist::SavedState;
use crate::os::procfs::ProcTable;
use crate::os::reap::ReapScope;
use crate::os::spawn;
use crate::os::sys::SignalPipe;

mod checks;
mod clock;
mod deps;
mod events;
mod explain;
mod external;
mod frontend;
mod groups;
mod handle;
mod host;
mod init;
mod manager;
mod notify;
mod outcome;
mod poller;
mod reload;
mod report;
mod requests;
mod saved;
mod slot;
mod spawning;
mod svdir;
mod tasks;
mod tracking;
mod turn;

pub use events::{StateChange, EVENT_BACKLOG};
pub use handle::{Handle, HandleError};
pub use reload::ReloadRequest;

pub(crate) use frontend::{ClientId, FrontEnd, FrontId, Role};
use handle::{Inbox, ReplyTo};
use requests::Wait;
use slot::{Member, Slot};

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
    /// The control socket and the metrics endpoint, when served.
    fronts: frontend::FrontEnds,
    waits: Vec<Wait>,
    shutdown_waiters: Vec<(ReplyTo, Value)>,
    shutting_down: bool,
    finished: bool,
    table: Option<ProcTable>,
    /// Children of ours that no service spawned, with the service their
    /// marker names (`tracking.rs`); made when needed, dropped when the
    /// children change.
    orphans: Option<Vec<(i32, String)>>,
    queue: VecDeque<(usize, Event)>,
    caught: Vec<Signal>,
    marker: Option<String>,
    state_path: Option<PathBuf>,
    saved: Option<SavedState>,
    /// The state file was written once.
    saved_once: bool,
    read_buf: Vec<u8>,
    reopen_hook: Option<ReopenHook>,
    state_dirty: bool,
    /// A wanted state changed (or a service came or went) since the state
    /// file was written: written at once, and flushed.
    wanted_dirty: bool,
    /// When the state file was last written.
    saved_at: Option<Instant>,
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
    /// The wall clock against the monotonic one, to log steps.
    clock: clock::ClockWatch,
    /// The services' descriptors, in an epoll set.
    services: std::cell::RefCell<poller::ServicePoll>,
    /// Services whose descriptors may have changed since the epoll set
    /// was last brought up to date (see [`Engine::touch`]).
    touched: std::cell::RefCell<Vec<usize>>,
    /// Every armed timer, as (deadline, service): the nearest is first.
    timers: BTreeSet<(Instant, usize)>,
    /// The deadlines of the checks, and the probe processes.
    checks: checks::Registry,
    /// What the dependency graph needs to know between turns.
    deps: deps::Graph,
    /// When the engine ends by itself, and with what exit code.
    outcome: outcome::Outcome,
    /// An init's duties, when it acts as one ([`Engine::act_as_init`]).
    init: Option<Box<init::Init>>,
    /// The service manager that started this process, when the engine
    /// reports to it ([`Engine::notify_service_manager`]).
    manager: Option<Box<manager::Manager>>,
    /// Services with a `supervise/` directory.
    supervised: Vec<usize>,
    /// One cgroup per service, where this process may make them (only
    /// when the engine owns the process).
    cgroups: Option<CgroupTree>,
    /// Whether cgroups are used where they can be ([`Engine::set_cgroups`]).
    cgroups_wanted: bool,
    /// Main processes without a pidfd (none could be opened): waited for
    /// by pid at every `SIGCHLD`.
    unwatched_leaders: HashSet<i32>,
    /// When children without pidfds (orphans re-parented to us) are next
    /// reaped with `waitpid(-1)`, after a `SIGCHLD` that may have stood
    /// for more than the exits seen.
    sweep_at: Option<Instant>,
    /// How long after such a `SIGCHLD` the sweep comes (`tracking.rs`).
    sweep_every: Duration,
    /// A child was reaped through its pidfd since the last `SIGCHLD` (which
    /// may come a turn later, and is then explained).
    unsignalled_exits: bool,
    /// Some tracked descendant has no pidfd: descendants are looked at
    /// now and then.
    unwatched_members: bool,
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
            fronts: frontend::FrontEnds::default(),
            waits: Vec::new(),
            shutdown_waiters: Vec::new(),
            shutting_down: false,
            finished: false,
            table: None,
            orphans: None,
            queue: VecDeque::new(),
            caught: Vec::new(),
            marker: None,
            state_path: None,
            saved: None,
            saved_once: false,
            read_buf: vec![0; 64 * 1024],
            reopen_hook: None,
            state_dirty: true,
            wanted_dirty: true,
            saved_at: None,
            named_pipes: HashMap::new(),
            finishers: HashMap::new(),
            groups: Vec::new(),
            one_pass: None,
            gate_tasks: None,
            reload: reload::Reloads::default(),
            inbox: Inbox::new()?,
            events: events::Subscribers::default(),
            host: host::HostCell::new(),
            clock: clock::ClockWatch::new(),
            services: std::cell::RefCell::new(poller::ServicePoll::new()?),
            touched: std::cell::RefCell::new(Vec::new()),
            timers: BTreeSet::new(),
            checks: checks::Registry::default(),
            deps: deps::Graph::default(),
            outcome: outcome::Outcome::default(),
            init: None,
            manager: None,
            supervised: Vec::new(),
            cgroups: None,
            cgroups_wanted: true,
            unwatched_leaders: HashSet::new(),
            sweep_at: None,
            sweep_every: tracking::ORPHAN_SWEEP,
            unsignalled_exits: false,
            unwatched_members: false,
        })
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

    /// Takes requests from `front` (the control socket, the metrics
    /// endpoint) from now on, in place of the one of its role.
    pub(crate) fn attach_front_end(&mut self, front: Box<dyn FrontEnd>) {
        self.nudge();
        self.fronts.attach(front);
    }

    /// Binds the control socket again if its file is gone or is not the
    /// one bound (removed, or its directory with it, while the inotify
    /// watch that brings it back by itself was lost). Connected clients
    /// keep their connections. True when a control socket serves
    /// afterwards, false when there is none or it cannot be made (logged).
    pub fn repair_control_socket(&mut self) -> bool {
        self.nudge();
        self.fronts.of_role(Role::Control).is_some_and(FrontEnd::repair)
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
    pub fn add_service(&mut self, svc: Service) -> Result<(), EngineError> {
        self.nudge();
        let reuse = match self.by_name.get(&svc.name) {
            Some(&i) if self.slots[i].retired && self.slots[i].is_down() => Some(i),
            Some(_) => return Err(EngineError::Duplicate(svc.name)),
            None => None,
        };
        self.check_service(&svc)?;
        self.note_dependencies(&svc);
        // What an external service's commands start is not ours: a later
        // supervisor must not take it for a leftover of this one.
        let external = svc.kind.is_external();
        self.check_notify(&svc)?;
        let now = Instant::now();
        let saved = self.saved.as_ref().and_then(|s| s.services.get(&svc.name));
        let expected = saved.map_or(svc.expected, |s| s.wanted);
        let output = ServiceOutput::new(&svc);
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
            leader_fd: None,
            cgroup: false,
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
            checks: checks::Checks::default(),
            stopped_by: None,
            waiting: false,
            stop_held: None,
        };
        let idx = if let Some(i) = reuse {
            self.set_timer(i, None);
            self.slots[i] = slot;
            i
        } else {
            self.by_name.insert(slot.svc.name.clone(), self.slots.len());
            self.slots.push(slot);
            self.slots.len() - 1
        };
        self.link(idx);
        self.touch(idx);
        self.state_dirty = true;
        self.wanted_dirty = true;
        if !self.shutting_down {
            let later_in_group = self.group_of(idx).is_some_and(|(_, pos)| pos > 0);
            if expected == Expected::Running && later_in_group {
                // Started once the members before it are up.
                self.slots[idx].held_start = true;
            } else if external {
                // Find out, then bring it where it is wanted.
                self.queue.push_back((idx, Event::Check));
            } else if expected == Expected::Running {
                self.start_or_wait(idx, Event::Start);
            }
            self.drain_queue();
            self.advance_groups();
        }
        Ok(())
    }

    /// Checks `svc` on its own and against this engine.
    pub(super) fn check_service(&self, svc: &Service) -> Result<(), InvalidService> {
        svc.validate()?;
        self.check_dependencies(svc)?;
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
        match request {
            ServiceRequest::Stop | ServiceRequest::Restart => {
                if request == ServiceRequest::Stop {
                    self.slots[idx].stopped_by = Some("stopped by a command".into());
                }
                if !self.hold_for_dependents(idx, request) {
                    let event = request.into();
                    if request == ServiceRequest::Restart && self.slots[idx].m.is_at_rest() {
                        self.start_or_wait(idx, event);
                    } else {
                        self.queue.push_back((idx, event));
                    }
                }
            }
            ServiceRequest::Start | ServiceRequest::Once => self.start_or_wait(idx, request.into()),
            ServiceRequest::Pause | ServiceRequest::Resume => self.queue.push_back((idx, request.into())),
        }
        self.drain_queue();
        self.advance_deps();
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
            self.slots[idx].stopped_by = Some("stopped for the shutdown".into());
            if self.group_of(idx).is_some() {
                // Stopped once the members after it are down.
                self.slots[idx].held_stop = true;
            } else {
                self.stop_in_order(idx);
            }
        }
        self.drain_queue();
        self.advance_groups();
        self.advance_deps();
        self.check_finished();
    }

    /// Whether a shutdown has completed.
    pub fn is_finished(&self) -> bool {
        self.finished
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
            self.touch(idx);
            if let Some(o) = self.slots[idx].output.as_mut() {
                o.reopen();
                log::info!("{}: transcript reopened", self.slots[idx].svc.name);
            }
        }
        Ok(())
    }
}

/// The engine moves between threads; handles are shared by them.
const _: () = {
    const fn send<T: Send>() {}
    const fn shared<T: Send + Sync + Clone + 'static>() {}
    send::<Engine>();
    shared::<Handle>();
};
