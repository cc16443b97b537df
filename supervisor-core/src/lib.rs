//! Run, watch and control Unix daemons.
//!
//! `supervisor-core` is the engine behind the `supervisor` command, made to
//! be embedded: describe [`Service`]s, add them to an [`Engine`], and call
//! [`Engine::run`] (or [`Engine::turn`] from your own loop).
//!
//! # Theory of operation
//!
//! Each service has a pure state machine (`machine::daemon`): events go in
//! (a command, a process that was spawned or exited, a timer that fired),
//! the state changes, and actions come out (spawn, signal, arm a timer).
//! It reads no clock and does no I/O, so its logic and the zdaemon-style
//! backoff of [`RestartPolicy`] are tested without processes or sleeping.
//!
//! Services come in three [`Kind`]s, each with a machine of its own that
//! speaks the same events and actions (`machine::behaviour`): daemons
//! (`machine::daemon`), loop tasks run every interval without overlap
//! (`machine::task`, atomservice), and external services controlled
//! by `start`/`stop`/`status` commands with LSB exit codes
//! (`machine::external`, simplevisor). [`Group`]s start their
//! members in order, stop them in reverse, and restart the others when one
//! fails, as their [`Strategy`] says.
//!
//! The [`Engine`] is the thin, single-threaded loop around those machines.
//! It sleeps in `poll(2)` until one of these needs it:
//!
//! - a signal: handlers registered with `signal-hook-registry` only write
//!   the signal number into a self-pipe (`SIGCHLD`, and with
//!   [`Engine::stop_on_signals`] `SIGTERM` and `SIGINT`);
//! - a descriptor: the control socket and its clients, the pipes of the
//!   services' transcripts, and a pidfd for each tracked descendant of a
//!   service;
//! - the nearest deadline: backoff, stop timeout, start confirmation.
//!
//! There is no periodic tick: an engine with nothing to do sleeps until
//! something happens.
//!
//! **Spawning** (`os::spawn`) resolves everything in the parent (program in
//! `PATH`, user and groups, output files), then makes the child the way
//! `posix_spawn` does (`clone(CLONE_VM | CLONE_VFORK)`, all signals
//! blocked), so a spawn costs the same with one service or thousands; the
//! child makes only async-signal-safe calls: its own process group, default
//! signal dispositions, stdio, directory, umask, soft resource limits,
//! supplementary groups, gid, uid, exec (a lock file, taken by the parent,
//! is handed down). A failure reaches the parent through a close-on-exec pipe
//! before `spawn` returns, and shows in the status as an error (`exec /x: No
//! such file or directory`) and a `fatal` state, not as a loop of
//! mysterious exits.
//!
//! **Stopping** sends the stop signal to the service's process group and to
//! every descendant found in `/proc` (children that called `setsid` to leave
//! the group included), then `SIGKILL` after the stop timeout. A service is
//! `stopped` only when its main process is reaped and none of its
//! descendants is left; descendants are watched with pidfds, which cannot be
//! fooled by pid reuse. A main process that dies on its own with
//! descendants left behind has them stopped the same way before it is
//! restarted, so orphans never pile up.
//!
//! **Reaping** is done in one place (`os::reap`). A library must not reap its
//! host's children, so by default the engine waits only for pids it
//! spawned. A program that owns its process calls [`Engine::own_process`]:
//! it becomes a child subreaper (orphaned descendants are re-parented to it
//! and attributed to their service by the `SUPERVISOR_SERVICE` environment
//! marker) and reaps with `waitpid(-1)`.
//!
//! **Service directories** ([`servicedir`]): daemontools
//! service directories become services, and their `supervise/` directories
//! are kept byte-compatible with daemontools and runit, so that `svc`,
//! `svstat`, `svok` and `sv` control this engine unchanged.
//!
//! **Control** ([`protocol`]): one JSON request and one JSON
//! response per line on a Unix socket, checked with `SO_PEERCRED`, served
//! with non-blocking I/O and size limits so that no client can stall the
//! engine.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use supervisor_core::{Command, Engine, Service, ServiceState};
//!
//! let mut engine = Engine::new("example")?;
//! let mut svc = Service::new("sleeper", Command::parse("sleep 30")?);
//! svc.restart.min_uptime = Duration::from_millis(100);
//! engine.add_service(svc)?;
//! while engine.state("sleeper") != Some(ServiceState::Running) {
//!     engine.turn(Some(Duration::from_millis(50)))?;
//! }
//! let pid = engine.status().services[0].pid.expect("running");
//! assert!(pid > 0);
//! engine.shutdown();
//! engine.run()?; // returns once the service is stopped
//! assert_eq!(engine.state("sleeper"), Some(ServiceState::Stopped));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
    parse_signal, signal_name, split_words, valid_service_name, Command, Environment, ExitStatus, Expected,
    ExternalSpec, Group, Health, Input, InvalidService, Kind, KindStatus, LastRun, Limits, LsbStatus, Output,
    PassReport, RestartCommand, RestartMode, RestartPolicy, Service, ServiceRequest, ServiceState, ServiceStatus,
    SplitError, StatusSnapshot, Strategy, SupervisorStatus, TaskSpec, Timestamps, TranscriptConfig, MAX_DURATION,
};
pub use nix::sys::signal::Signal;
pub use os::daemon::{DaemonError, Daemonized, Daemonizer, Notifier, Readiness};
pub use os::pidfile::{PidFile, PidFileError, PidState};
pub use os::transcript::{OutputStream, Transcript};

pub mod protocol {
    //! The control protocol: one JSON request and one JSON response per
    //! line on a Unix socket ([`Engine::serve_control`](crate::Engine::serve_control)),
    //! and a client for it.
    pub use crate::front::control::{ClientError, ControlClient};
    pub use crate::model::protocol::*;
    /// A request's `id`: any JSON value, repeated in its response.
    pub use serde_json::Value;
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
    pub use crate::os::limits::{take_lock, LimitError, LockError};
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

    /// The direct children of process `pid` (empty when it has none, is
    /// gone, or the kernel does not say).
    #[must_use]
    pub fn children(pid: i32) -> Vec<i32> {
        crate::os::procfs::children(pid).unwrap_or_default()
    }
}
