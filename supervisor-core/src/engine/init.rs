//! The duties of an init process ([`Engine::act_as_init`]): reap every
//! orphan at once, and end only when every other process is gone.
//!
//! Once every service is down at a shutdown, the processes that no
//! service owns (started by `docker exec`, orphans that left their
//! service's group and environment) get `SIGTERM`, then `SIGKILL` after a
//! grace period; the shutdown completes when none is left, so that a
//! container's processes never meet only the kernel's `SIGKILL` when its
//! PID 1 exits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Engine, EngineError};
use crate::os::procfs::ProcTable;
use crate::os::reap::reap_any;

/// How long processes get to go after `SIGKILL` (one stuck in the kernel,
/// on a dead NFS mount, cannot hold the exit longer).
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How often the processes left are looked for while they are asked to
/// go: some are not our children (`docker exec`), so that no signal says
/// when they end.
pub(super) const RECHECK: Duration = Duration::from_millis(20);

/// An init's state.
#[derive(Debug)]
pub(super) struct Init {
    /// Whether this process is PID 1 of its PID namespace: every other
    /// process in it is ours to stop. Otherwise, its descendants.
    pid1: bool,
    grace: Duration,
    phase: Phase,
    /// The processes sent the phase's signal.
    signalled: HashSet<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Term { until: Instant },
    Kill { until: Instant },
    Done,
}

impl Engine {
    /// Makes the engine act as an init process: the PID 1 of a container,
    /// or (when it is not PID 1) a child subreaper for everything it
    /// starts. It [owns the process](Engine::own_process), reaps every
    /// child at each `SIGCHLD` (no orphan stays a zombie), and a shutdown
    /// completes only once every other process is gone: after the
    /// services have stopped in order, the processes that no service owns
    /// get `SIGTERM`, then `SIGKILL` after `grace`. As PID 1 these are
    /// all the other processes of its PID namespace (those that
    /// `docker exec` started too); otherwise its descendants.
    ///
    /// # Errors
    ///
    /// As [`own_process`](Engine::own_process).
    pub fn act_as_init(&mut self, grace: Duration) -> Result<(), EngineError> {
        self.own_process()?;
        let pid1 = std::process::id() == 1;
        if pid1 && !proc_is_ours() {
            log::warn!("/proc is not this PID namespace's: only descendants are stopped at the end");
        }
        self.init = Some(Box::new(Init { pid1, grace, phase: Phase::Serving, signalled: HashSet::new() }));
        Ok(())
    }

    /// Whether the engine acts as an init process.
    pub(super) fn is_init(&self) -> bool {
        self.init.is_some()
    }

    /// When an init next looks for the processes left.
    pub(super) fn init_deadline(&self, now: Instant) -> Option<Instant> {
        match self.init.as_ref()?.phase {
            Phase::Term { until } | Phase::Kill { until } => Some(until.min(now + RECHECK)),
            Phase::Serving | Phase::Done => None,
        }
    }

    /// Once every service is down at a shutdown: true when no other
    /// process is left (always, for an engine that is not an init).
    /// Otherwise asks those left to go, and is asked again.
    pub(super) fn others_gone(&mut self) -> bool {
        let Some(init) = self.init.as_mut() else {
            return true;
        };
        if init.phase == Phase::Done {
            return true;
        }
        let now = Instant::now();
        for (pid, status) in reap_any() {
            log::debug!("reaped pid {pid} ({status})");
        }
        let left = init.left();
        if left.is_empty() {
            init.phase = Phase::Done;
            return true;
        }
        match init.phase {
            Phase::Serving => {
                log::info!(
                    "{} process(es) that no service owns are left ({}): sending TERM, and KILL after {:?}",
                    left.len(),
                    list(&left),
                    init.grace
                );
                init.phase = Phase::Term { until: now + init.grace };
            }
            Phase::Term { until } if now >= until => {
                log::warn!("{} process(es) still left ({}): sending KILL", left.len(), list(&left));
                init.phase = Phase::Kill { until: now + KILL_WAIT };
                init.signalled.clear();
            }
            Phase::Kill { until } if now >= until => {
                log::error!("{} process(es) did not go after KILL ({}): exiting anyway", left.len(), list(&left));
                init.phase = Phase::Done;
                return true;
            }
            _ => {}
        }
        let sig = if matches!(init.phase, Phase::Kill { .. }) { Signal::SIGKILL } else { Signal::SIGTERM };
        for pid in left {
            // Each once per phase: a second TERM means "now" to some.
            if init.signalled.insert(pid) {
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
        false
    }
}

impl Init {
    /// The live processes, other than this one, that are ours to stop.
    fn left(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let table = ProcTable::read();
        if self.pid1 && proc_is_ours() {
            table.all().filter(|p| p.pid != me && !p.zombie && !p.kernel).map(|p| p.pid).collect()
        } else {
            table.descendants(me)
        }
    }
}

/// Whether `/proc` shows this process's PID namespace (it is not a
/// container's without its own `/proc` mount).
fn proc_is_ours() -> bool {
    std::fs::read_link("/proc/self").is_ok_and(|p| p.as_os_str() == std::process::id().to_string().as_str())
}

/// Pids for a log line: the first few.
fn list(pids: &[i32]) -> String {
    let mut s: Vec<String> = pids.iter().take(8).map(i32::to_string).collect();
    if pids.len() > 8 {
        s.push("...".into());
    }
    s.join(" ")
}
