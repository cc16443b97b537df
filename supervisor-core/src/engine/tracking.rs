//! Reaping and the descendants of services: who belongs to a service, who
//! is left when its main process is gone, and signalling all of them.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Engine, EngineError, Member};
use crate::machine::Event;
use crate::model::signal_name;
use crate::model::ServiceState;
use crate::os::cgroup::CgroupTree;
use crate::os::procfs;
use crate::os::reap::{reap_any, reap_pids, ReapScope};
use crate::os::spawn::SERVICE_ENV;
use crate::os::sys;

/// How soon after a `SIGCHLD` that may have stood for more exits than the
/// pidfds told, the children no pidfd watches are reaped: at first, and
/// again after a sweep that found one.
pub(super) const ORPHAN_SWEEP: Duration = Duration::from_secs(1);
/// A sweep that finds nothing doubles the wait for the next, up to this.
const ORPHAN_SWEEP_MAX: Duration = Duration::from_secs(32);

impl Engine {
    /// Declares that this engine owns the whole process: it becomes a child
    /// subreaper, so that descendants which double-fork out of a service
    /// are re-parented to it and tracked, and it reaps with `waitpid(-1)`.
    ///
    /// Where it may (root, or a delegated cgroup), it also puts each
    /// service in a cgroup of its own (version 2, no controllers), under
    /// `supervisor-PID` in its own cgroup: a service's processes are then
    /// found from its `cgroup.procs`, in time proportional to their number.
    ///
    /// # Errors
    ///
    /// When `prctl(PR_SET_CHILD_SUBREAPER)` fails.
    pub fn own_process(&mut self) -> Result<(), EngineError> {
        sys::set_child_subreaper()?;
        self.scope = ReapScope::WholeProcess;
        self.set_cgroups(self.cgroups_wanted);
        Ok(())
    }

    /// Whether services are put in cgroups of their own where the engine
    /// may make them (the default, once it owns the process: see
    /// [`own_process`](Engine::own_process)). With `false` (for a host
    /// whose service manager must not see cgroups made under it), a
    /// service's processes are found in `/proc`: the same ones, at a cost
    /// that grows with the number of services. Applies to processes
    /// started from then on.
    pub fn set_cgroups(&mut self, enabled: bool) {
        self.cgroups_wanted = enabled;
        if !enabled {
            self.cgroups = None;
        } else if self.cgroups.is_none() && self.scope == ReapScope::WholeProcess {
            match CgroupTree::create() {
                Ok(tree) => {
                    log::debug!("services are tracked in cgroups under {}", tree.base().display());
                    self.cgroups = Some(tree);
                }
                Err(why) => log::debug!("no cgroup per service ({why}): processes are found in /proc"),
            }
        }
    }
}

impl Engine {
    /// Reaps what ended: the processes whose pidfds said so (`ended`);
    /// after a `SIGCHLD`, the children the engine has no pidfd of
    /// (`finish` programs, main processes whose pidfd could not be
    /// opened); owning the process, orphans re-parented to it.
    ///
    /// Each exit costs a wait for one pid. `waitpid(-1)`, which the kernel
    /// answers by looking at every child, runs only when a `SIGCHLD` came
    /// that no known child's end explains (an orphan's exit; a pidfd is
    /// often seen a turn before its process's `SIGCHLD`), and in a sweep
    /// after one that may have stood for more exits than were seen: a
    /// second later, or up to 32 s later while sweeps find nothing (an
    /// orphan whose `SIGCHLD` merged with a known child's stays a zombie
    /// that long at most).
    pub(super) fn reap_children(&mut self, ended: &[i32], sigchld: bool, now: Instant) {
        let mut reaped = reap_pids(ended.iter().copied());
        self.unsignalled_exits |= !reaped.is_empty();
        if sigchld {
            let unwatched: Vec<i32> =
                self.finishers.keys().chain(&self.unwatched_leaders).chain(self.checks.pids.keys()).copied().collect();
            reaped.extend(reap_pids(unwatched.into_iter()));
            let explained = !reaped.is_empty() || std::mem::take(&mut self.unsignalled_exits);
            if self.scope == ReapScope::WholeProcess {
                // An init reaps every orphan at once: in a container they
                // may be many, and each waits for nobody else.
                if !explained || self.is_init() {
                    reaped.extend(reap_any());
                } else if self.sweep_at.is_none() {
                    self.sweep_at = Some(now + self.sweep_every);
                }
            }
        }
        if self.sweep_at.is_some_and(|t| t <= now) {
            self.sweep_at = None;
            let found = reap_any();
            self.sweep_every =
                if found.is_empty() { (self.sweep_every * 2).min(ORPHAN_SWEEP_MAX) } else { ORPHAN_SWEEP };
            reaped.extend(found);
        }
        if !reaped.is_empty() {
            // The children of those that ended are ours now, and the
            // process table has changed: both are read again when needed
            // (once for the whole batch, not once per service).
            self.orphans = None;
            self.table = None;
        }
        for (pid, status) in reaped {
            if let Some(idx) = self.finishers.remove(&pid) {
                self.finish_ended(idx, status);
            } else if self.checks.pids.contains_key(&pid) {
                self.probe_exited(pid, status);
            } else if let Some(idx) = self.leaders.remove(&pid) {
                self.unwatched_leaders.remove(&pid);
                self.touch(idx);
                let slot = &mut self.slots[idx];
                slot.leader = None;
                slot.leader_fd = None;
                slot.leader_start_time = None;
                self.state_dirty = true;
                slot.pidfile = None;
                if let Some(o) = slot.output.as_mut() {
                    o.drain(&mut self.read_buf);
                }
                if slot.svc.kind.is_external() {
                    log::debug!("{}: command pid {pid} {status}", slot.svc.name);
                } else {
                    log::info!("{}: pid {pid} {status}", slot.svc.name);
                }
                // An external service's command may leave the service it
                // started running: that is not ours to track or stop.
                let leftovers = if self.slots[idx].svc.kind.is_external() {
                    self.slots[idx].members.clear();
                    false
                } else {
                    self.find_leftovers(idx)
                };
                if leftovers && status.success() && self.adopt(idx) {
                    continue;
                }
                self.mark_changed(idx);
                self.start_finish(idx, status);
                if leftovers {
                    log::info!(
                        "{}: {} descendant(s) of pid {pid} still running",
                        self.slots[idx].svc.name,
                        self.slots[idx].members.len()
                    );
                }
                self.queue.push_back((idx, Event::Exited { status, leftovers }));
            } else {
                // A descendant (its pidfd took it off its service's
                // members), or an orphan no service knew.
                log::debug!("reaped pid {pid} ({status})");
            }
        }
        // Prune members that died without a pidfd to tell us.
        if self.unwatched_members {
            self.unwatched_members = false;
            for idx in 0..self.slots.len() {
                let s = &mut self.slots[idx];
                if s.members.iter().any(|m| m.pidfd.is_none()) {
                    s.members.retain(|m| m.pidfd.is_some() || member_alive(m));
                    self.unwatched_members |= s.members.iter().any(|m| m.pidfd.is_none());
                    self.touch(idx);
                }
            }
        }
        self.check_all_gone();
    }

    /// For slots whose main process is gone while they wait for
    /// descendants: report `AllGone` once none is left. Only the services
    /// touched since the last turn began can have lost one.
    pub(super) fn check_all_gone(&mut self) {
        let mut touched = self.touched.borrow().clone();
        touched.sort_unstable();
        touched.dedup();
        for idx in touched {
            let s = &self.slots[idx];
            if s.leader.is_some() || s.m.state() != ServiceState::Stopping || s.m.pid().is_some() {
                continue;
            }
            if s.members.is_empty() && !self.find_leftovers(idx) {
                self.queue.push_back((idx, Event::AllGone));
            }
        }
    }

    /// Refreshes a slot's tracked descendants; true if any is alive.
    pub(super) fn find_leftovers(&mut self, idx: usize) -> bool {
        if self.track_cgroup(idx) {
            return !self.slots[idx].members.is_empty();
        }
        let Some(pgid) = self.slots[idx].pgid else {
            return !self.slots[idx].members.is_empty();
        };
        let group_alive = kill(Pid::from_raw(-pgid), None).is_ok();
        let orphans = self.unknown_children_of(idx);
        if group_alive || !orphans.is_empty() || !self.slots[idx].members.is_empty() {
            // The table is this turn's (or newer, after a reap): a process
            // forked since is found at the next look.
            self.track_members(idx, &orphans);
        }
        !self.slots[idx].members.is_empty()
    }

    /// Children of this process that the engine did not spawn and that carry
    /// the service's marker: descendants re-parented to us (subreaper), not
    /// yet among the service's members.
    ///
    /// The children are listed once for all services, and each one's
    /// marker read once, until the set of children changes (a reap, a new
    /// turn): stopping or reaping thousands of services costs one look at
    /// the children per turn, not one per service.
    pub(super) fn unknown_children_of(&mut self, idx: usize) -> Vec<i32> {
        if self.scope != ReapScope::WholeProcess {
            return Vec::new();
        }
        if self.orphans.is_none() {
            let me = std::process::id() as i32;
            let kids = procfs::children(me).unwrap_or_default();
            let orphans = kids
                .into_iter()
                .filter(|p| {
                    !self.leaders.contains_key(p)
                        && !self.finishers.contains_key(p)
                        && !self.checks.pids.contains_key(p)
                })
                .filter_map(|p| procfs::environ_value(p, SERVICE_ENV).map(|name| (p, name)))
                .collect();
            self.orphans = Some(orphans);
        }
        let slot = &self.slots[idx];
        self.orphans
            .iter()
            .flatten()
            .filter(|(p, name)| *name == slot.svc.name && !slot.members.iter().any(|m| m.pid == *p))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Makes the processes in the slot's cgroup (but its main process) its
    /// members; false when it has none to read (then the process table
    /// tells).
    fn track_cgroup(&mut self, idx: usize) -> bool {
        let slot = &self.slots[idx];
        let procs = match (&self.cgroups, slot.cgroup) {
            (Some(tree), true) => match tree.procs(&slot.svc.name) {
                Ok(p) => p,
                Err(e) => {
                    log::debug!("{}: cgroup.procs: {e}", slot.svc.name);
                    return false;
                }
            },
            _ => return false,
        };
        self.touch(idx);
        let mut unwatched = false;
        let slot = &mut self.slots[idx];
        slot.members.retain(|m| procs.contains(&m.pid));
        for pid in procs {
            if Some(pid) == slot.leader || slot.members.iter().any(|m| m.pid == pid) {
                continue;
            }
            let pidfd = sys::pidfd_open(pid).ok();
            let Some(info) = procfs::read_stat(pid).filter(|i| !i.zombie) else { continue };
            unwatched |= pidfd.is_none();
            slot.members.push(Member { pid, start_time: info.start_time, pidfd });
        }
        self.unwatched_members |= unwatched;
        true
    }

    /// Adds every live descendant of the slot's processes to its members.
    pub(super) fn track_members(&mut self, idx: usize, extra_roots: &[i32]) {
        self.touch(idx);
        let pgid = self.slots[idx].pgid.unwrap_or(0);
        let mut roots: Vec<i32> = self.slots[idx].leader.into_iter().collect();
        roots.extend(self.slots[idx].members.iter().map(|m| m.pid));
        roots.extend_from_slice(extra_roots);
        let leader = self.slots[idx].leader;
        let found = self.proc_table().members(pgid, &roots);
        let mut unwatched = false;
        let slot = &mut self.slots[idx];
        for p in found {
            if Some(p.pid) == leader || slot.members.iter().any(|m| m.pid == p.pid && m.start_time == p.start_time) {
                continue;
            }
            slot.members.retain(|m| m.pid != p.pid);
            let pidfd = sys::pidfd_open(p.pid).ok();
            // The pid may have been reused between the scan and the open.
            if procfs::read_stat(p.pid).map(|i| i.start_time) != Some(p.start_time) {
                continue;
            }
            unwatched |= pidfd.is_none();
            slot.members.push(Member { pid: p.pid, start_time: p.start_time, pidfd });
        }
        slot.members.retain(member_alive);
        self.unwatched_members |= unwatched;
    }

    /// Sends `sig` to the main process's group and every descendant.
    pub(super) fn signal_slot(&mut self, idx: usize, sig: Signal) {
        if sig != Signal::SIGCONT && !self.track_cgroup(idx) {
            // Descendants that left the tree by a double fork are children
            // of ours (the subreaper) with the service's marker: they get
            // the signal with the rest, not only the KILL at the end.
            let escaped = self.unknown_children_of(idx);
            self.track_members(idx, &escaped);
        }
        // Each process gets the signal once: the service's process group
        // as a whole; then the groups that descendants made for themselves
        // (setsid), through their leaders; then, one by one, descendants in
        // groups of their own whose leader is not ours.
        let slot = &self.slots[idx];
        let group = slot.pgid.unwrap_or(0);
        let pgid_of = |pid: i32| procfs::read_stat(pid).map(|i| i.pgid);
        if group > 0 {
            let _ = kill(Pid::from_raw(-group), sig);
        }
        if let Some(pid) = slot.leader {
            if pgid_of(pid).is_some_and(|g| g != group) {
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
        let outside: Vec<(&Member, i32)> =
            slot.members.iter().filter_map(|m| pgid_of(m.pid).filter(|g| *g != group).map(|g| (m, g))).collect();
        let led: Vec<i32> = outside.iter().filter(|(m, g)| m.pid == *g).map(|(_, g)| *g).collect();
        for g in &led {
            let _ = kill(Pid::from_raw(-g), sig);
        }
        for (m, g) in &outside {
            if led.contains(g) {
                continue;
            }
            match &m.pidfd {
                Some(fd) => {
                    let _ = sys::pidfd_send_signal(fd, sig);
                }
                None if member_alive(m) => {
                    let _ = kill(Pid::from_raw(m.pid), sig);
                }
                None => {}
            }
        }
        if sig != Signal::SIGCONT {
            log::debug!("{}: sent SIG{} to {} process(es)", slot.svc.name, signal_name(sig), 1 + slot.members.len());
        }
    }
}

impl Engine {
    /// `follow`: makes the process that the exited main process left behind
    /// the new main process. Only a child of ours (re-parented to this
    /// subreaper) can be, so that its exit is reaped and seen.
    fn adopt(&mut self, idx: usize) -> bool {
        // The process the service named with MAINPID=, or (`follow`) any.
        let named = self.slots[idx].checks.take_main_pid();
        if !(self.slots[idx].svc.follow || named.is_some()) || self.scope != ReapScope::WholeProcess {
            return false;
        }
        let me = std::process::id() as i32;
        let slot = &mut self.slots[idx];
        let ours =
            |m: &Member| named.is_none_or(|p| p == m.pid) && procfs::read_stat(m.pid).is_some_and(|i| i.ppid == me);
        let Some(pos) = slot.members.iter().position(ours) else {
            return false;
        };
        let mut m = slot.members.remove(pos);
        log::info!("{}: went to the background; following pid {}", slot.svc.name, m.pid);
        slot.leader = Some(m.pid);
        slot.leader_fd = m.pidfd.take();
        let unwatched = slot.leader_fd.is_none();
        slot.leader_start_time = Some(m.start_time);
        slot.changed_at = std::time::SystemTime::now();
        Self::write_pidfile(slot, m.pid);
        self.leaders.insert(m.pid, idx);
        if unwatched {
            self.unwatched_leaders.insert(m.pid);
        }
        self.touch(idx);
        self.state_dirty = true;
        self.queue.push_back((idx, Event::Adopted { pid: m.pid }));
        true
    }
}

/// Whether a tracked descendant still runs (the same process, not a reused
/// pid, and not a zombie).
pub(super) fn member_alive(m: &Member) -> bool {
    procfs::read_stat(m.pid).is_some_and(|i| i.start_time == m.start_time && !i.zombie)
}

impl Drop for Engine {
    /// An engine dropped with live services kills them (`SIGKILL` to each
    /// one's process group and tracked descendants), so that no process
    /// outlives its supervisor unnoticed, and reaps them, waiting at most
    /// 5 seconds. Handles get [`HandleError::EngineGone`](crate::HandleError::EngineGone) from
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
        for &pid in self.checks.pids.keys() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pid), Signal::SIGKILL);
        }
        let known: Vec<i32> =
            self.leaders.keys().chain(self.finishers.keys()).chain(self.checks.pids.keys()).copied().collect();
        let left = crate::os::reap::reap_within(&known, DROP_REAP_LIMIT);
        if !left.is_empty() {
            log::error!("engine dropped: {} process(es) did not die within {DROP_REAP_LIMIT:?}: {left:?}", left.len());
        }
    }
}

/// How long dropping an engine waits for its killed processes.
const DROP_REAP_LIMIT: Duration = Duration::from_secs(5);
