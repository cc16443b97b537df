//! Run, watch and control Unix daemons from your own program.
//!
//! `supervisor-core` is the engine behind the `supervisor` command, made to
//! be embedded in agents, deploy tools and test harnesses: describe
//! [`Service`]s, add them to an [`Engine`], run it, and reach it from any
//! thread through a [`Handle`].
//!
//! ```
//! use supervisor_core::{Command, Engine, Handle, Service, ServiceState, StateChange};
//!
//! let mut engine = Engine::new("agent")?;
//! engine.add_service(Service::new("web", Command::argv(["sleep", "30"])))?;
//! let events = engine.subscribe();            // std::sync::mpsc::Receiver<StateChange>
//! let handle: Handle = engine.handle();       // Clone + Send + Sync + 'static
//! let other = std::thread::spawn(move || {
//!     handle.stop("web")?;                    // wakes the engine at once; Ok once it accepted
//!     let snap = handle.status()?;            // the same StatusSnapshot as the socket serves
//!     handle.shutdown()                       // run() returns once everything is stopped
//! });
//! engine.run()?;
//! other.join().expect("the thread")?;
//! let last: Option<StateChange> = events.try_iter().last();
//! assert_eq!(last.map(|c| c.to), Some(ServiceState::Stopped));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Theory of operation
//!
//! The crate is built in layers, each using only the ones below it:
//!
//! 1. **Descriptions** (`model/`): plain data with no I/O and no clock:
//!    [`Service`] and its parts, [`ServiceState`], [`StatusSnapshot`], the
//!    requests and answers of the [`protocol`]. [`Service::validate`] is
//!    where the rules of a sound description live.
//! 2. **Pure state machines** (`machine/`): one per service, by its
//!    [`Kind`]: a daemon kept running with zdaemon's backoff
//!    ([`RestartPolicy`]), a loop task run every interval without overlap
//!    (atomservice), or an external service controlled by `start`, `stop`
//!    and `status` commands with LSB exit codes (simplevisor). Events go in
//!    (a request, a process that was spawned or exited, a timer that
//!    fired), the state changes, and actions come out (spawn, signal, arm a
//!    timer). They read no clock and do no I/O, so every transition is
//!    tested without processes or sleeping.
//! 3. **Operating-system plumbing** (`os/`): spawning, reaping, `/proc`,
//!    pidfiles, transcripts, the files a supervisor keeps. All of the
//!    crate's `unsafe` code is here, each block with its reason.
//! 4. **The engine** (`engine/`): the thin, single-threaded loop that
//!    feeds the machines and carries out their actions.
//! 5. **Front ends** (`front/`): the control socket, the metrics endpoint
//!    ([`Engine::serve_metrics`]) and daemontools service directories.
//!    They reach the engine through the same typed requests
//!    ([`ServiceRequest`], [`protocol::Command`]) as [`Engine::command`]
//!    and a [`Handle`].
//!
//! **Waiting.** The engine sleeps in `poll(2)` until one of these needs it,
//! with no periodic tick:
//!
//! - a signal: handlers registered with `signal-hook-registry` only write
//!   the signal number into a self-pipe (`SIGCHLD`, and with
//!   [`Engine::stop_on_signals`] `SIGTERM` and `SIGINT`);
//! - a request from a [`Handle`]: a channel, and an eventfd that wakes the
//!   engine at once;
//! - a descriptor: the control socket and its clients, the metrics
//!   endpoint and its clients, the pipes of the services' transcripts, a
//!   pidfd for each tracked descendant, the `sd_notify` socket ([`Engine::listen_notify`]), a readiness pipe
//!   (`notify = "fd:N"`), a probe's socket or output;
//! - the nearest deadline ([`Engine::next_deadline`]): a backoff, a stop
//!   timeout, a task's next run, a probe's next try or deadline, a
//!   watchdog.
//!
//! **Readiness and dependencies.** A daemon with a [`ReadyPolicy`] is
//! `starting` until it is ready ([`ReadyCheck`]: `READY=1` over
//! `sd_notify`, a newline on a descriptor, a [`Probe`] that passes, a line
//! of its output), then `running`; a [`HealthCheck`] restarts it when it
//! fails, and so does a missed watchdog. [`Service::requires`] and
//! [`Service::after`] make a graph that starts services once what they
//! need is ready, stops them before it, and stops them while it is not
//! ready, instead of letting them crash-loop; a shutdown goes in reverse
//! dependency order. Every state that is not `running` says why
//! ([`ServiceStatus::reason`]).
//!
//! [`Engine::run`] turns until a shutdown is complete. A program with a
//! loop of its own instead waits on the engine's descriptor (the engine
//! implements [`AsFd`](std::os::fd::AsFd): an epoll descriptor, readable
//! whenever the engine has work) until [`Engine::next_deadline`], and calls
//! [`Engine::turn`] with `Some(Duration::ZERO)`, which never blocks.
//!
//! **Telling.** [`Engine::subscribe`] hands out every [`StateChange`], in
//! order, through a bounded channel per subscriber: a slow subscriber
//! loses events (counted in [`SupervisorStatus::events_dropped`]) and never
//! holds the engine up. [`Engine::status`] and [`Handle::status`] give the
//! [`StatusSnapshot`] that the control socket serves.
//!
//! **Spawning** resolves everything in the parent (program in `PATH`, user
//! and groups, output files), then makes the child the way `posix_spawn`
//! does (`clone(CLONE_VM | CLONE_VFORK)`, all signals blocked), so a spawn
//! costs the same with one service or thousands; the child makes only
//! async-signal-safe calls: its own process group, default signal
//! dispositions, stdio, directory, umask, soft resource limits,
//! supplementary groups, gid, uid, exec. A failure reaches the parent
//! through a close-on-exec pipe before the spawn returns, and shows in the
//! status as an error (`exec /x: No such file or directory`) and a `fatal`
//! state, not as a loop of mysterious exits.
//!
//! **Stopping** sends the stop signal to the service's process group and to
//! every descendant found in `/proc` (children that called `setsid` to leave
//! the group included), then `SIGKILL` after the stop timeout. A service is
//! `stopped` only when its main process is reaped and none of its
//! descendants is left; descendants are watched with pidfds, which cannot be
//! fooled by pid reuse.
//!
//! **Reaping** is done in one place. A library must not reap its host's
//! children, so by default the engine waits only for pids it spawned. A
//! program that owns its process calls [`Engine::own_process`]: it becomes a
//! child subreaper (orphaned descendants are re-parented to it and
//! attributed to their service by the `SUPERVISOR_SERVICE` environment
//! marker) and reaps with `waitpid(-1)`. Where it may, it also makes each
//! service's main process in a cgroup of its own (tracking only, no
//! controllers), whose `cgroup.procs` lists every process of the service:
//! see [`Engine::set_cgroups`].
//!
//! **Dropping** an engine with live services kills them (`SIGKILL` to each
//! one's process group and descendants) and reaps them, waiting at most
//! 5 seconds; its handles then answer [`HandleError::EngineGone`]. For a
//! graceful end, call [`Engine::shutdown`] (or [`Handle::shutdown`]) and
//! let [`Engine::run`] return.
//!
//! **Bad input** is an error, never a panic: [`Engine::add_service`]
//! refuses a description that breaks a rule with an [`InvalidService`]
//! that names the service and the field, and nothing changes.
//!
//! The repository's `docs/embedding.md` walks through all of this;
//! `examples/agent.rs` drives the engine from a `poll(2)` loop of its own.
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("supervisor-core runs on Linux only: it relies on /proc, pidfds, PR_SET_CHILD_SUBREAPER and clone(2)");

mod engine;
mod front;
mod machine;
mod model;
mod os;

pub use engine::{Engine, EngineError, Handle, HandleError, ReloadRequest, StateChange, EVENT_BACKLOG};
pub use front::control::AccessPolicy;
pub use model::{
    parse_signal, signal_name, split_words, valid_service_name, Command, Environment, ExitStatus, ExitWhen, Expected,
    ExternalSpec, Group, Health, HealthCheck, HealthStatus, HttpTarget, Input, InvalidService, Kind, KindStatus,
    LastRun, Limits, LsbStatus, Output, PassReport, Probe, ProbeStatus, ReadyCheck, ReadyPolicy, RestartCommand,
    RestartMode, RestartPolicy, Service, ServiceRequest, ServiceState, ServiceStatus, SplitError, StatusSnapshot,
    Strategy, SupervisorStatus, TaskSpec, Timestamps, TranscriptConfig, MAX_DURATION,
};
pub use nix::sys::signal::Signal;
pub use os::daemon::{DaemonError, Daemonized, Daemonizer, Notifier, Readiness};
pub use os::pidfile::{PidFile, PidFileError, PidState};
pub use os::transcript::{OutputStream, Transcript};

pub mod protocol {
    //! The control protocol: one JSON request and one JSON response per
    //! line on a Unix socket ([`Engine::serve_control`](crate::Engine::serve_control)),
    //! and a client for it.
    pub use crate::front::client::{ClientError, ControlClient};
    pub use crate::model::protocol::*;
    /// A request's `id`: any JSON value, repeated in its response.
    pub use serde_json::Value;
}

pub mod metrics {
    //! Prometheus metrics: the text exposition of a status snapshot
    //! ([`render`], [`Engine::metrics`](crate::Engine::metrics)), served
    //! over HTTP at `GET /metrics` by
    //! [`Engine::serve_metrics`](crate::Engine::serve_metrics), on a TCP
    //! address or a Unix socket ([`MetricsAddr`]).
    pub use crate::model::metrics::{render, MetricsAddr, MetricsAddrError, CONTENT_TYPE, PREFIX};
}

pub mod servicedir {
    //! daemontools service directories: a directory with a `run` script
    //! becomes a [`Service`](crate::Service) ([`ServiceDir`]), and its
    //! `supervise/` directory ([`SuperviseDir`]) is kept byte-compatible
    //! with daemontools and runit, so that their `svc`, `svstat`, `svok` and
    //! `sv` control an [`Engine`](crate::Engine) unchanged.
    pub use crate::front::servicedir::{daemontools_policy, ServiceDir};
    pub use crate::os::supervise::{is_supervised, send_control, RunState, SuperviseDir, SuperviseError, SvStatus};
}

pub mod limits {
    //! Soft resource limits and lock files, as daemontools' `softlimit` and
    //! `setlock` set them.
    pub use crate::model::{parse_size, Limits, SizeError, UNLIMITED};
    pub use crate::os::limits::{raise_open_files_limit, take_lock, LimitError, LockError};
}

pub mod runtime_dir {
    //! Per-service runtime directories, as copkg lays them out
    //! (`log/ etc/ console/ data/ run/`), the `{runtime_dir}`,
    //! `{coordinate}` and `{name}` placeholders, and what tells that a
    //! directory may be removed.
    pub use crate::os::previous::leftover_process;
    pub use crate::os::runtime_dir::{
        check_removable, expand, expand_argv, expand_command, make_private_dir, pid_file, uses_placeholders, InUse,
        PlaceholderError, MODE, PID_FILE, SUBDIRS,
    };
}

pub mod process {
    //! Read-only questions about other processes, from `/proc`.

    /// Whether process `pid` exists and is not a zombie.
    #[must_use]
    pub fn is_alive(pid: i32) -> bool {
        crate::os::procfs::read_stat(pid).is_some_and(|p| !p.zombie)
    }

    /// Waits at most `timeout` for process `pid` (not a child of this one)
    /// to be gone: through a pidfd where the kernel has them (5.3), which
    /// wakes at its exit, else by looking every 2 ms. True when it is gone.
    #[must_use]
    pub fn wait_gone(pid: i32, timeout: std::time::Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now() + timeout;
        if let Ok(fd) = crate::os::sys::pidfd_open(pid) {
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(n) if n > 0 => return true,
                    Ok(_) if left.is_zero() => return !is_alive(pid),
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => break,
                }
            }
        }
        while is_alive(pid) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        true
    }

    /// The direct children of process `pid` (empty when it has none, is
    /// gone, or the kernel does not say).
    #[must_use]
    pub fn children(pid: i32) -> Vec<i32> {
        crate::os::procfs::children(pid).unwrap_or_default()
    }
}

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by
/// default): thin wrappers of crate-internal items, with no stability
/// promise. Not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Instant;

    pub use crate::machine::{Action, Event};
    /// The `sd_notify` datagram parser (`os/notify.rs`) and what it reads.
    pub use crate::os::notify::{parse as notify_parse, Message as NotifyMessage, MAX_STATUS_CHARS};
    use crate::{ExitStatus, Expected, Service, ServiceState};

    /// The longest request head the metrics endpoint reads.
    pub const METRICS_MAX_HEAD: usize = crate::front::metrics::http::MAX_HEAD;

    /// The metrics endpoint's reading of a request head received so far
    /// (`front/metrics/http.rs`): `None` while it waits for more, else the
    /// whole response it sends (with `body` as the exposition).
    #[must_use]
    pub fn metrics_request(head: &[u8], body: &str) -> Option<Vec<u8>> {
        use crate::front::metrics::http::{parse, response, Parsed};
        match parse(head) {
            Parsed::Partial => None,
            Parsed::Done(route) => Some(response(route, body)),
        }
    }

    /// The daemon state machine (`machine/daemon.rs`), as the engine drives
    /// it for a service of kind daemon.
    #[derive(Debug, Clone)]
    pub struct DaemonMachine(crate::machine::Machine);

    impl DaemonMachine {
        /// A machine in state `stopped`, wanting `expected`.
        #[must_use]
        pub fn new(expected: Expected, now: Instant) -> DaemonMachine {
            DaemonMachine(crate::machine::Machine::new(expected, now))
        }

        /// Applies one event; the actions the engine must carry out.
        pub fn handle(&mut self, svc: &Service, event: Event, now: Instant) -> Vec<Action> {
            self.0.handle(svc, event, now)
        }

        /// The current state.
        #[must_use]
        pub fn state(&self) -> ServiceState {
            self.0.state()
        }

        /// Whether it is wanted up.
        #[must_use]
        pub fn want_up(&self) -> bool {
            self.0.want_up()
        }

        /// The main process it knows of.
        #[must_use]
        pub fn pid(&self) -> Option<i32> {
            self.0.pid()
        }

        /// Automatic restarts so far.
        #[must_use]
        pub fn restarts(&self) -> u32 {
            self.0.restarts()
        }

        /// How the last process ended.
        #[must_use]
        pub fn last_exit(&self) -> Option<ExitStatus> {
            self.0.last_exit()
        }
    }
}
