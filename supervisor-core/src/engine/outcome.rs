//! How the engine ends by itself, and the exit code it leaves: a critical
//! service's end, every service finished ([`ExitWhen::AllExited`]), or a
//! shutdown, clean or not.

use crate::machine::Event;
use crate::model::{ExitStatus, ExitWhen, ServiceState};

use super::Engine;

/// The exit code of a service whose program could not be started, as a
/// shell has it for a command not found.
const NOT_STARTED: u8 = 127;

/// What decides the exit code.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    when: ExitWhen,
    /// The code a policy fixed as it began the shutdown.
    code: Option<u8>,
    /// Services that needed `SIGKILL` to stop during the shutdown.
    killed: Vec<String>,
    /// The event count when the services were last found not all
    /// finished: only a change of state can finish them (or a reload,
    /// which sets the policy again).
    looked_at: Option<u64>,
}

impl Engine {
    /// When the engine ends by itself: by default it runs until a
    /// shutdown ([`Engine::shutdown`], a signal with
    /// [`stop_on_signals`](Engine::stop_on_signals), a request);
    /// [`ExitWhen::AllExited`] begins one once every service has finished.
    pub fn set_exit_when(&mut self, when: ExitWhen) {
        self.nudge();
        self.outcome.when = when;
        // Services may have come or gone too (a reload sets it).
        self.outcome.looked_at = None;
    }

    /// The exit code for a program that ends with this engine, once
    /// [`run`](Engine::run) returned:
    ///
    /// - the code of the [`critical`](crate::Service::critical) service
    ///   whose end began the shutdown: its exit code, `128 + N` after
    ///   signal N, 127 when its program could not be started;
    /// - with [`ExitWhen::AllExited`], once every service finished, the
    ///   worst (highest) of their codes;
    /// - otherwise 0 when every service stopped within its
    ///   `stop_timeout`, 1 when one needed `SIGKILL`.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self.outcome.code {
            Some(code) => code,
            None => u8::from(!self.outcome.killed.is_empty()),
        }
    }

    /// Before the machine of the service at `idx` takes `ev`: an exit
    /// that nobody asked for, of a critical service, is its last (the
    /// shutdown follows at the end of the turn). True then.
    pub(super) fn critical_exit(&mut self, idx: usize, ev: &Event) -> bool {
        let slot = &mut self.slots[idx];
        let up = matches!(slot.m.state(), ServiceState::Starting | ServiceState::Running | ServiceState::Paused);
        if !slot.svc.critical || self.shutting_down || !up || !slot.m.want_up() || !matches!(ev, Event::Exited { .. }) {
            return false;
        }
        // As after `once`: not restarted, whatever the exit.
        let _ = slot.m.handle(&slot.svc, Event::Once, std::time::Instant::now());
        true
    }

    /// After the machine of the service at `idx` moved from `before` to
    /// `after`: a critical service that ended (`exited`, with `status`) or
    /// went fatal fixes the exit code, and the shutdown begins at the end
    /// of the turn ([`Engine::apply_exit_policy`]).
    pub(super) fn note_end(&mut self, idx: usize, exited: Option<ExitStatus>, before: ServiceState) {
        let slot = &self.slots[idx];
        let fatal = slot.m.state() == ServiceState::Fatal && before != ServiceState::Fatal;
        if !slot.svc.critical || self.shutting_down || self.outcome.code.is_some() || (exited.is_none() && !fatal) {
            return;
        }
        let code = exited.or(slot.m.last_exit()).map_or(NOT_STARTED, ExitStatus::shell_code);
        let how = exited.map_or_else(|| "went fatal".to_string(), |s| s.to_string());
        log::warn!(
            "{} is critical and {how}: stopping everything; the supervisor exits with code {code}",
            slot.svc.name
        );
        self.outcome.code = Some(code);
    }

    /// A `SIGKILL` that a stop needed: during the shutdown, it makes the
    /// exit code 1.
    pub(super) fn note_kill(&mut self, idx: usize) {
        if self.shutting_down && self.slots[idx].svc.stop_signal != nix::sys::signal::Signal::SIGKILL {
            self.outcome.killed.push(self.slots[idx].svc.name.clone());
        }
    }

    /// Begins the shutdown that a policy asks for: a critical service
    /// ended, or (with [`ExitWhen::AllExited`]) every service finished.
    pub(super) fn apply_exit_policy(&mut self) {
        if self.shutting_down {
            return;
        }
        let all_exited = self.outcome.when == ExitWhen::AllExited && self.outcome.code.is_none();
        if all_exited && self.outcome.looked_at != Some(self.events.seq) {
            self.outcome.looked_at = Some(self.events.seq);
            if self.all_finished() {
                let code = self.slots.iter().filter(|s| !s.retired).map(finished_code).max().unwrap_or(0);
                log::info!("every service has finished: the supervisor exits with code {code}");
                self.outcome.code = Some(code);
            }
        }
        if self.outcome.code.is_some() {
            self.shutdown();
        }
    }

    /// Whether every service has finished: it is at rest with nothing
    /// left running, and will not start by itself.
    fn all_finished(&self) -> bool {
        self.slots.iter().filter(|s| !s.retired).all(|s| {
            let over = matches!(s.m.state(), ServiceState::Exited | ServiceState::Fatal);
            let idle = !s.m.want_up() && !s.waiting && !s.held_start && !s.spawn_held;
            s.leader.is_none() && s.members.is_empty() && s.m.is_at_rest() && (over || idle)
        })
    }
}

/// The exit code a finished service stands for: how it exited or gave
/// up; 0 for one stopped (on request, or never started).
fn finished_code(s: &super::Slot) -> u8 {
    match (s.m.state(), s.m.last_exit()) {
        (ServiceState::Exited | ServiceState::Fatal, Some(status)) => status.shell_code(),
        (ServiceState::Fatal, None) => NOT_STARTED,
        _ => 0,
    }
}
