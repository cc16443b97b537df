//! Processes left by a previous supervisor of the same instance (one that
//! was killed with `SIGKILL`, or crashed): found, stopped and waited for
//! before anything is started again, so that no service ever runs twice.
//!
//! They are found two ways: the pids (with start times) saved in the state
//! file, with their process groups and descendants; and every process whose
//! environment carries the instance marker (`SUPERVISOR_INSTANCE`), which
//! also catches descendants that left their group and children started
//! just before the state file was written.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::os::persist::SavedState;
use crate::os::procfs::{self, ProcInfo, ProcTable};
use crate::os::spawn::SERVICE_ENV;
use crate::os::sys;

/// The environment variable that marks every process of an instance.
pub const INSTANCE_ENV: &str = "SUPERVISOR_INSTANCE";

/// Finds the live processes of a previous incarnation.
pub fn find(saved: Option<&SavedState>, marker: Option<&str>) -> Vec<ProcInfo> {
    let table = ProcTable::read();
    let me = std::process::id() as i32;
    let mut found: Vec<ProcInfo> = Vec::new();
    let mut add = |p: ProcInfo| {
        if p.pid != me && !p.zombie && !found.iter().any(|f| f.pid == p.pid) {
            found.push(p);
        }
    };
    if let Some(saved) = saved {
        for (_, pid, start) in saved.live_pids() {
            if table.get(pid).is_some_and(|p| p.start_time == start) {
                for p in table.members(pid, &[pid]) {
                    add(p);
                }
            }
        }
    }
    if let Some(marker) = marker {
        for p in table.all() {
            if procfs::environ_has(p.pid, INSTANCE_ENV, marker) {
                for q in table.members(-1, &[p.pid]) {
                    add(q);
                }
            }
        }
    }
    found
}

/// A live process of service `name` that a supervisor of the instance
/// marked `marker` left behind (it runs with no supervisor watching it):
/// the main process recorded in the state file at `state_file` (the same
/// process: same start time), or any process marked as this service of
/// this instance. `None` when there is none.
#[must_use]
pub fn leftover_process(state_file: &Path, marker: &str, name: &str) -> Option<i32> {
    let table = ProcTable::read();
    if let Ok(Some(saved)) = SavedState::load(state_file) {
        for (_, pid, start) in saved.live_pids().filter(|(n, _, _)| *n == name) {
            if table.get(pid).is_some_and(|p| p.start_time == start && !p.zombie) {
                return Some(pid);
            }
        }
    }
    let p = table.all().find(|p| {
        !p.zombie && procfs::environ_has(p.pid, SERVICE_ENV, name) && procfs::environ_has(p.pid, INSTANCE_ENV, marker)
    })?;
    Some(p.pid)
}

/// Sends `TERM` (and `CONT`), waits up to `grace`, then `KILL`s what is
/// left and waits for it to go. Returns how many processes there were.
pub fn stop(procs: &[ProcInfo], grace: Duration) -> usize {
    let mut live: Vec<(ProcInfo, Option<OwnedFd>)> = procs
        .iter()
        .filter_map(|p| {
            let fd = sys::pidfd_open(p.pid).ok();
            // Only the very process that was found, never a reused pid.
            (procfs::read_stat(p.pid).map(|i| i.start_time) == Some(p.start_time)).then_some((*p, fd))
        })
        .collect();
    let count = live.len();
    if count == 0 {
        return 0;
    }
    log::warn!("stopping {count} process(es) left by a previous supervisor of this instance");
    for sig in [Signal::SIGTERM, Signal::SIGCONT] {
        send(&live, sig);
    }
    wait_gone(&mut live, Instant::now() + grace);
    if !live.is_empty() {
        log::warn!("{} leftover process(es) ignored TERM; sending KILL", live.len());
        send(&live, Signal::SIGKILL);
        wait_gone(&mut live, Instant::now() + Duration::from_secs(5));
    }
    count
}

fn send(live: &[(ProcInfo, Option<OwnedFd>)], sig: Signal) {
    for (p, fd) in live {
        match fd {
            Some(fd) => {
                let _ = sys::pidfd_send_signal(fd, sig);
            }
            None => {
                let _ = kill(Pid::from_raw(p.pid), sig);
            }
        }
        if p.pgid == p.pid {
            let _ = kill(Pid::from_raw(-p.pgid), sig);
        }
    }
}

fn gone(p: &ProcInfo, fd: Option<&OwnedFd>) -> bool {
    match fd {
        Some(fd) => {
            let mut pfd = [libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            sys::poll(&mut pfd, Some(Duration::ZERO)).is_ok_and(|n| n == 1)
        }
        None => procfs::read_stat(p.pid).is_none_or(|i| i.start_time != p.start_time || i.zombie),
    }
}

fn wait_gone(live: &mut Vec<(ProcInfo, Option<OwnedFd>)>, deadline: Instant) {
    loop {
        live.retain(|(p, fd)| !gone(p, fd.as_ref()));
        if live.is_empty() || Instant::now() >= deadline {
            return;
        }
        // Wait on the pidfds themselves: no busy loop.
        let mut fds: Vec<libc::pollfd> = live
            .iter()
            .filter_map(|(_, fd)| {
                fd.as_ref().map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            })
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        let step = if fds.len() == live.len() { left } else { left.min(Duration::from_millis(20)) };
        let _ = sys::poll(&mut fds, Some(step));
    }
}
