//! One turn of the loop: wait in `poll(2)`, take what is ready, feed the
//! machines, carry out their actions.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::handle::ReplyTo;
use super::{Engine, EngineError};
use crate::machine::{Action, Event};
use crate::model::protocol::Response;
use crate::model::{signal_name, ServiceState};
use crate::os::procfs::ProcTable;
use crate::os::sys;
use crate::os::transcript::OutputStream;

/// How long one turn fires timers for (see [`Engine::fire_timers`]).
const TIMER_BUDGET: Duration = Duration::from_millis(2);

/// What a polled descriptor belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    Signals,
    /// A descriptor of a front end (the control socket, the metrics
    /// endpoint).
    Front(super::FrontId),
    Member(usize, i32),
    /// The pidfd of a service's main process.
    Leader(usize, i32),
    Output(usize, OutputStream),
    Supervise(usize),
    /// The readiness pipe of a service (`notify = "fd:N"`).
    ReadyPipe(usize),
    /// A probe try of a service: its output, or its socket (`true`: it
    /// waits to write).
    Probe(usize, bool),
    Inbox,
    /// The epoll set of the services' descriptors (`poller.rs`).
    Services,
    /// The `sd_notify` socket.
    Notify,
}

impl Source {
    /// The service a descriptor belongs to.
    pub(super) fn slot(self) -> Option<usize> {
        match self {
            Source::Member(i, _)
            | Source::Leader(i, _)
            | Source::Output(i, _)
            | Source::Supervise(i)
            | Source::ReadyPipe(i)
            | Source::Probe(i, _) => Some(i),
            _ => None,
        }
    }

    /// The `poll` events it waits for.
    pub(super) fn poll_events(self) -> i16 {
        if matches!(self, Source::Probe(_, true)) {
            libc::POLLOUT
        } else {
            libc::POLLIN
        }
    }
}

impl Engine {
    /// Runs until a shutdown completes.
    ///
    /// # Errors
    ///
    /// When `poll` fails for a reason other than a signal.
    pub fn run(&mut self) -> Result<(), EngineError> {
        while !self.finished {
            self.turn(None)?;
        }
        self.fronts.close(Duration::from_secs(1));
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
        self.orphans = None;
        let (mut fds, sources) = self.poll_set();
        let now = Instant::now();
        let mut timeout = self.next_deadline().map(|d| d.saturating_duration_since(now));
        if let Some(m) = max_wait {
            timeout = Some(timeout.map_or(m, |t| t.min(m)));
        }
        // Descendants without a pidfd (kernels before 5.3) cannot wake us.
        // Without pidfds, descendants are checked now and then (the
        // deadline includes it).
        let unwatched = self.unwatched_members;
        sys::poll(&mut fds, timeout)?;
        let now = Instant::now();
        if let Some(step) = self.clock.check() {
            super::clock::log_step(step);
        }

        let mut front_ready = Vec::new();
        let mut sigchld = false;
        // Processes whose pidfds say they ended.
        let mut ended = Vec::new();
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
                Source::Front(id) => front_ready.push((id, pfd.fd)),
                Source::Inbox => inbox = true,
                Source::Notify => self.read_notify(),
                Source::Services => {
                    let ready = self.services.get_mut().ready()?;
                    for src in ready {
                        ended.extend(self.service_ready(src));
                    }
                }
                other => ended.extend(self.service_ready(other)),
            }
        }
        if sigchld || unwatched || !ended.is_empty() || self.sweep_at.is_some_and(|t| t <= now) {
            self.reap_children(&ended, sigchld, now);
        }
        self.expire_finishers(now);
        // Exits first, then timers, then the control socket: a restart
        // never waits behind a busy control socket (hundreds of clients, a
        // line to parse each), and the work each takes in one turn is
        // bounded, so that an exit is seen again soon.
        self.drain_queue();
        self.fire_timers(now);
        self.fire_checks(now);
        // A replaced service whose old process just ended gets its new
        // definition before any request of this turn can find it gone.
        self.apply_replacements();
        // What changed so far (also by the host between turns: a reload
        // that removed a service) is in the state file before any answer
        // of this turn goes out: a client never sees a state that the file
        // does not have yet.
        self.save_state();
        for (front, client, req) in self.fronts.take_requests(&front_ready, now) {
            self.handle_request(ReplyTo::Socket(front, client), req);
        }
        if inbox {
            self.read_inbox();
        }
        self.drain_queue();
        self.advance_groups();
        self.drain_queue();
        self.advance_deps();
        self.apply_replacements();
        self.settle_waits();
        self.apply_exit_policy();
        self.check_finished();
        self.tell_manager();
        self.save_state();
        self.write_supervise_status();
        self.sync_host();
        Ok(())
    }

    /// Takes what a service's descriptor has; the pid of a process of it
    /// that ended.
    fn service_ready(&mut self, src: Source) -> Option<i32> {
        if let Some(idx) = src.slot() {
            self.touch(idx);
        }
        match src {
            Source::Output(idx, stream) => {
                if let Some(o) = self.slots[idx].output.as_mut() {
                    o.read_ready(stream, &mut self.read_buf);
                    if o.take_matched() {
                        self.log_matched(idx);
                    }
                }
                None
            }
            Source::ReadyPipe(idx) => {
                self.read_ready_pipe(idx);
                None
            }
            Source::Probe(idx, _) => {
                self.advance_try(idx, Instant::now());
                None
            }
            Source::Supervise(idx) => {
                self.handle_control_letters(idx);
                None
            }
            Source::Member(idx, pid) => {
                self.slots[idx].members.retain(|m| m.pid != pid);
                Some(pid)
            }
            Source::Leader(_, pid) => Some(pid),
            Source::Signals | Source::Front(_) | Source::Inbox | Source::Services | Source::Notify => None,
        }
    }

    /// Notes that the descriptors of the service at `idx` may have changed
    /// (a process started or ended, a pipe closed, a directory opened):
    /// the epoll set is brought up to date for these services only.
    pub(super) fn touch(&self, idx: usize) {
        self.touched.borrow_mut().push(idx);
    }

    /// Arms (`Some`) or cancels (`None`) the timer of the service at `idx`.
    pub(super) fn set_timer(&mut self, idx: usize, at: Option<Instant>) {
        if let Some(old) = self.slots[idx].timer.take() {
            self.timers.remove(&(old, idx));
        }
        if let Some(t) = at {
            self.timers.insert((t, idx));
        }
        self.slots[idx].timer = at;
    }

    /// The descriptors to poll: the engine's own, and the services' epoll
    /// set (brought up to date first).
    pub(super) fn poll_set(&self) -> (Vec<libc::pollfd>, Vec<Source>) {
        let mut fds = Vec::new();
        let mut src = Vec::new();
        let mut add = |fd: RawFd, events: i16, s: Source| {
            fds.push(libc::pollfd { fd, events, revents: 0 });
            src.push(s);
        };
        add(self.signals.fd(), libc::POLLIN, Source::Signals);
        add(self.inbox.fd(), libc::POLLIN, Source::Inbox);
        if let Some(n) = &self.checks.notify {
            add(n.fd(), libc::POLLIN, Source::Notify);
        }
        for (id, fd, ev) in self.fronts.poll_fds() {
            add(fd, ev, Source::Front(id));
        }
        let mut services = self.services.borrow_mut();
        services.sync(&self.slots, &mut self.touched.borrow_mut());
        add(services.fd(), libc::POLLIN, Source::Services);
        for &(fd, s) in services.fallback() {
            add(fd, s.poll_events(), s);
        }
        (fds, src)
    }

    /// Fires the timers that are due, each handled at once, for at most
    /// [`TIMER_BUDGET`]: a hundred services due together (crash loops, a
    /// start of many) are started over several turns, each of which looks
    /// at exits first. (A start holds the loop until its child has called
    /// `exec`.) The rest stay due, and the next turn comes at once.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        let started = Instant::now();
        while let Some(&(t, idx)) = self.timers.first() {
            if t > now || started.elapsed() > TIMER_BUDGET {
                break;
            }
            self.set_timer(idx, None);
            let run_due = self.gate_tasks.is_some() && self.slots[idx].m.state() == ServiceState::Idle;
            match self.gate_tasks.as_mut() {
                Some(due) if run_due => due.push(idx),
                _ => self.queue.push_back((idx, Event::Timer)),
            }
            self.drain_queue();
        }
    }

    pub(super) fn proc_table(&mut self) -> &ProcTable {
        self.table.get_or_insert_with(ProcTable::read)
    }

    pub(super) fn drain_queue(&mut self) {
        while let Some((idx, ev)) = self.queue.pop_front() {
            let now = Instant::now();
            self.touch(idx);
            let critical_end = self.critical_exit(idx, &ev);
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
                self.deps_changed();
                self.log_transition(idx, before, after);
            }
            for a in actions {
                self.perform(idx, a);
            }
            if before != after {
                // After the actions: a start's event carries its new pid.
                self.emit(idx, before, after, exit, old_pid);
            }
            self.sync_checks(idx, now);
            self.note_end(idx, exit.filter(|_| critical_end), before);
            if failed {
                self.member_failed(idx);
            }
            let wanted = self.slots[idx].m.want_up() || self.slots[idx].waiting;
            if !self.shutting_down && self.slots[idx].persisted_up != wanted {
                self.slots[idx].persisted_up = wanted;
                self.state_dirty = true;
                self.wanted_dirty = true;
            }
        }
    }

    /// A `Timer` for the service at `idx` that was queued (its deadline
    /// passed in this turn) before the machine re-armed or cancelled its
    /// timer is stale: delivered, it would act on a deadline the machine
    /// no longer has (a start confirmed with no process, a KILL with no
    /// stop timeout, a backoff skipped).
    fn drop_queued_timer(&mut self, idx: usize) {
        self.queue.retain(|(i, e)| !(*i == idx && *e == Event::Timer));
    }

    pub(super) fn perform(&mut self, idx: usize, action: Action) {
        self.touch(idx);
        match action {
            Action::ArmTimer(t) => {
                self.drop_queued_timer(idx);
                self.set_timer(idx, Some(t));
            }
            Action::CancelTimer => {
                self.drop_queued_timer(idx);
                self.set_timer(idx, None);
            }
            Action::Signal(sig) => {
                if sig == Signal::SIGKILL {
                    log::warn!("{}: stop timed out; sending KILL", self.slots[idx].svc.name);
                    self.note_kill(idx);
                }
                self.signal_slot(idx, sig);
            }
            Action::Run(argv) => self.run_command(idx, argv),
            Action::FindPattern => self.find_pattern(idx, None),
            Action::KillPattern(sig) => self.find_pattern(idx, Some(sig)),
            Action::Spawn => self.spawn_slot(idx, None),
        }
    }

    pub(super) fn check_finished(&mut self) {
        if !self.shutting_down || self.finished {
            return;
        }
        let all_down =
            self.slots.iter().all(|s| s.leader.is_none() && s.members.is_empty() && !s.held_stop && s.m.is_at_rest());
        if all_down && self.others_gone() {
            log::info!("all services stopped");
            self.finished = true;
            for (to, id) in std::mem::take(&mut self.shutdown_waiters) {
                self.reply(&to, &Response::with_services(id, Vec::new()));
            }
        }
    }
}
