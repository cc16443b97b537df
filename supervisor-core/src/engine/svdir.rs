//! daemontools service directories: the `supervise/` directory (control
//! letters in, status records out), `finish` scripts, `svc -x`, and
//! services that come and go with their directories.

use std::time::{Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Engine, EngineError, Slot};
use crate::machine::{Action, Event};
use crate::model::{Command, Output, ServiceRequest};
use crate::model::{ExitStatus, ServiceState};
use crate::os::spawn;
use crate::os::supervise::{RunState, SuperviseDir, SvStatus};

impl Slot {
    /// No process of the service is left, and none is wanted now.
    pub(super) fn is_down(&self) -> bool {
        self.leader.is_none()
            && self.members.is_empty()
            && self.finishing.is_none()
            && matches!(self.m.state(), ServiceState::Stopped | ServiceState::Exited | ServiceState::Fatal)
    }

    fn sv_status(&self) -> SvStatus {
        let state = self.m.state();
        SvStatus {
            since: self.changed_at,
            pid: self.leader,
            paused: state == ServiceState::Paused,
            want_up: Some(self.m.want_up()),
            got_term: state == ServiceState::Stopping && self.leader.is_some(),
            state: match (self.leader, self.finishing) {
                (Some(_), _) => RunState::Run,
                (None, Some(_)) => RunState::Finish,
                (None, None) => RunState::Down,
            },
        }
    }
}

/// The signal a control letter sends, for the letters that only signal.
fn letter_signal(letter: u8) -> Option<Signal> {
    Some(match letter {
        b'h' => Signal::SIGHUP,
        b'a' => Signal::SIGALRM,
        b'i' => Signal::SIGINT,
        b't' => Signal::SIGTERM,
        b'k' => Signal::SIGKILL,
        b'q' => Signal::SIGQUIT,
        b'1' => Signal::SIGUSR1,
        b'2' => Signal::SIGUSR2,
        b'w' => Signal::SIGWINCH,
        _ => return None,
    })
}

impl Engine {
    /// Serves the daemontools `supervise/` directory of service `name`:
    /// control letters written to `supervise/control` (by `svc`, `sv`) are
    /// obeyed, and `supervise/status` follows the service.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownService`].
    pub fn attach_supervise_dir(&mut self, name: &str, dir: SuperviseDir) -> Result<(), EngineError> {
        self.nudge();
        let idx = *self.by_name.get(name).ok_or_else(|| EngineError::UnknownService(name.into()))?;
        self.slots[idx].supervise = Some(dir);
        if !self.supervised.contains(&idx) {
            self.supervised.push(idx);
        }
        self.touch(idx);
        self.write_supervise_status();
        Ok(())
    }

    /// Services whose supervision should end: `svc -x` was received and
    /// they are down.
    pub fn exit_requested(&self) -> Vec<String> {
        self.slots.iter().filter(|s| s.exit_when_down && s.is_down()).map(|s| s.svc.name.clone()).collect()
    }

    /// The names of the services supervised now (retired ones excluded).
    pub fn service_names(&self) -> Vec<String> {
        self.slots.iter().filter(|s| !s.retired).map(|s| s.svc.name.clone()).collect()
    }

    /// Stops a service and removes it from supervision once it is down (its
    /// `supervise/` directory is released then). The name can be added
    /// again afterwards.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownService`].
    pub fn retire_service(&mut self, name: &str) -> Result<(), EngineError> {
        self.nudge();
        let idx = *self.by_name.get(name).ok_or_else(|| EngineError::UnknownService(name.into()))?;
        self.slots[idx].retired = true;
        self.state_dirty = true;
        self.wanted_dirty = true;
        self.queue.push_back((idx, Event::Stop));
        self.drain_queue();
        Ok(())
    }

    /// Obeys the letters that arrived on a service's control FIFO.
    pub(super) fn handle_control_letters(&mut self, idx: usize) {
        let letters = match self.slots[idx].supervise.as_mut() {
            Some(sd) => sd.read_control(),
            None => return,
        };
        for letter in letters {
            let request = match letter {
                b'u' => Some(ServiceRequest::Start),
                b'd' => Some(ServiceRequest::Stop),
                b'o' => Some(ServiceRequest::Once),
                b'p' => Some(ServiceRequest::Pause),
                // CONT is sent whatever the state, as daemontools does.
                b'c' if self.slots[idx].m.state() == ServiceState::Paused => Some(ServiceRequest::Resume),
                b'c' => {
                    if self.slots[idx].leader.is_some() {
                        self.signal_slot(idx, Signal::SIGCONT);
                    }
                    None
                }
                b'x' => {
                    // daemontools: leave once the service is down (always
                    // sent with `d`, as `svc -dx`); runit's `sv exit` sends
                    // `x` alone and means down, then leave. Both hold.
                    self.slots[idx].exit_when_down = true;
                    Some(ServiceRequest::Stop)
                }
                other => {
                    match letter_signal(other) {
                        Some(sig) if self.slots[idx].leader.is_some() => self.signal_slot(idx, sig),
                        Some(_) => {}
                        None if other.is_ascii_whitespace() => {}
                        None => log::debug!("{}: unknown control letter {:?}", self.slots[idx].svc.name, other as char),
                    }
                    None
                }
            };
            if let Some(request) = request {
                self.apply_request(idx, request);
            }
        }
    }

    /// Brings every `supervise/status` up to date (written only when it
    /// changed), and releases the directories of retired services.
    pub(super) fn write_supervise_status(&mut self) {
        let mut released = false;
        for &idx in &self.supervised {
            let s = &mut self.slots[idx];
            if s.retired && s.is_down() {
                s.supervise = None;
                released = true;
                self.touched.borrow_mut().push(idx);
            }
            if s.supervise.is_none() {
                continue;
            }
            let st = s.sv_status();
            if let Some(sd) = s.supervise.as_mut() {
                if let Err(e) = sd.write_status(&st) {
                    log::error!("{}: cannot write supervise/status: {e}", s.svc.name);
                }
            }
        }
        if released {
            let slots = &self.slots;
            self.supervised.retain(|&i| slots[i].supervise.is_some());
        }
    }

    /// Runs the service's `finish` program after its main process ended.
    pub(super) fn start_finish(&mut self, idx: usize, status: ExitStatus) {
        let Some(argv) = self.slots[idx].svc.finish.clone() else { return };
        let (code, sig) = match status {
            ExitStatus::Code(c) => (c, 0),
            ExitStatus::Signal(s) => (-1, s as i32),
        };
        let mut svc = self.slots[idx].svc.clone();
        svc.command = Command::Argv(argv.into_iter().chain([code.to_string(), sig.to_string()]).collect());
        // Its output goes where the service's goes, but not into a
        // transcript pipe, which belongs to the main process.
        for out in [&mut svc.stdout, &mut svc.stderr] {
            if *out == Output::Transcript {
                *out = Output::Inherit;
            }
        }
        let pipes = self.named_pipes_for(&svc);
        let env = self.spawn_env(idx, false);
        match spawn::spawn(&svc, pipes, &env) {
            Ok(sp) if sp.exec_error.is_none() => {
                log::info!("{}: finish started (pid {})", svc.name, sp.pid);
                let deadline = Instant::now() + svc.finish_timeout;
                self.slots[idx].finishing = Some((sp.pid, deadline));
                self.finishers.insert(sp.pid, idx);
            }
            Ok(sp) => {
                log::error!("{}: finish: {}", svc.name, sp.exec_error.unwrap_or_default());
                self.finishers.insert(sp.pid, usize::MAX);
            }
            Err(e) => log::error!("{}: cannot run finish: {e}", svc.name),
        }
    }

    /// A `finish` program ended (or was killed): the held spawn goes on.
    pub(super) fn finish_ended(&mut self, idx: usize, status: ExitStatus) {
        let Some(slot) = self.slots.get_mut(idx) else { return };
        slot.finishing = None;
        log::info!("{}: finish {status}", slot.svc.name);
        if std::mem::take(&mut slot.spawn_held) && slot.m.state() == ServiceState::Starting && slot.m.pid().is_none() {
            self.perform(idx, Action::Spawn);
            self.drain_queue();
        }
    }

    /// Kills `finish` programs past their time.
    pub(super) fn expire_finishers(&mut self, now: Instant) {
        for &idx in self.finishers.values() {
            // (A `finish` whose exec failed has no service: usize::MAX.)
            let Some(s) = self.slots.get_mut(idx) else { continue };
            if let Some((pid, deadline)) = s.finishing {
                if now >= deadline {
                    log::warn!("{}: finish ran too long; killed", s.svc.name);
                    let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    // Reaped as usual; no second kill.
                    s.finishing = Some((pid, now + std::time::Duration::from_secs(3600)));
                }
            }
        }
    }

    /// When the main process started or ended.
    pub(super) fn mark_changed(&mut self, idx: usize) {
        self.slots[idx].changed_at = SystemTime::now();
    }
}
