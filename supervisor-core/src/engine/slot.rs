//! One service as the engine holds it: its description, its machine, its
//! processes and descriptors.

use std::os::fd::OwnedFd;
use std::time::{Instant, SystemTime};

use super::checks::Checks;
use crate::machine::Behaviour;
use crate::model::Service;
use crate::os::output::ServiceOutput;
use crate::os::pidfile::PidFile;
use crate::os::supervise::SuperviseDir;

/// A descendant of a service tracked beside its main process.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) pid: i32,
    pub(super) start_time: u64,
    pub(super) pidfd: Option<OwnedFd>,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) svc: Service,
    pub(super) m: Behaviour,
    pub(super) timer: Option<Instant>,
    pub(super) leader: Option<i32>,
    /// A pidfd of the main process: readable once it has ended, so that
    /// its exit is reaped without looking at every child.
    pub(super) leader_fd: Option<OwnedFd>,
    /// The main process was started in the service's cgroup: its
    /// `cgroup.procs` names every process of this run.
    pub(super) cgroup: bool,
    pub(super) pgid: Option<i32>,
    pub(super) members: Vec<Member>,
    pub(super) output: Option<ServiceOutput>,
    pub(super) pidfile: Option<PidFile>,
    /// The wanted state last set by a command (not by a shutdown).
    pub(super) persisted_up: bool,
    pub(super) leader_start_time: Option<u64>,
    /// The daemontools `supervise/` directory, for service directories.
    pub(super) supervise: Option<SuperviseDir>,
    /// When the main process last started or ended (for `supervise/status`).
    pub(super) changed_at: SystemTime,
    /// `svc -x`: the host should stop supervising once the service is down.
    pub(super) exit_when_down: bool,
    /// A `finish` program that runs, and when it must be killed.
    pub(super) finishing: Option<(i32, Instant)>,
    /// A spawn waits for `finish` to end.
    pub(super) spawn_held: bool,
    /// Removed from supervision (its name may be added again).
    pub(super) retired: bool,
    /// A group member waiting for the members before it to start.
    pub(super) held_start: bool,
    /// A group member to be stopped once the members after it are down
    /// (true until it is down).
    pub(super) held_stop: bool,
    /// The stop for `held_stop` was sent.
    pub(super) group_stop_sent: bool,
    /// Readiness and health checks, the watchdog.
    pub(super) checks: Checks,
    /// Who or what stopped it, for the status ("stopped by a command").
    pub(super) stopped_by: Option<String>,
    /// Wanted up, and waiting for its dependencies before it starts.
    pub(super) waiting: bool,
    /// A stop or restart held until the services that depend on it are
    /// down.
    pub(super) stop_held: Option<crate::model::ServiceRequest>,
}
