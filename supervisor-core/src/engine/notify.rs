//! `sd_notify` for the services: the engine's socket, the environment it
//! gives services that use it, and what their datagrams do.
//!
//! A datagram counts for the service its sender belongs to: the main
//! process, a tracked descendant, or any process whose ancestors lead to
//! the main process (`systemd-notify` run from a service's script). The
//! sender's pid is the kernel's (`SCM_CREDENTIALS`), never the datagram's
//! word. All the datagrams of one batch are attributed before any is
//! dropped: dropping closes the descriptors that came with them, which is
//! what lets a `systemd-notify` waiting on `BARRIER=1` exit, and its pid
//! must still name it while it is looked up.

use std::path::Path;
use std::time::Instant;

use super::{Engine, EngineError};
use crate::machine::Event;
use crate::model::{ReadyCheck, Service};
use crate::os::notify::{Message, NotifySocket};
use crate::os::procfs;

/// The most datagrams taken in one turn; the rest wait for the next.
const BATCH: usize = 64;

/// How far up the process tree a sender is followed to a main process.
const MAX_DEPTH: usize = 32;

impl Engine {
    /// Listens for `sd_notify` datagrams at `path` (a Unix datagram socket
    /// made there, mode 0666; a stale one is replaced). Services whose
    /// readiness is [`ReadyCheck::Systemd`] get `NOTIFY_SOCKET=path` and
    /// need it: [`add_service`](Engine::add_service) refuses them before.
    ///
    /// # Errors
    ///
    /// When the socket cannot be made (the path is too long for a socket
    /// address, its directory is missing, another process listens there).
    pub fn listen_notify(&mut self, path: impl AsRef<Path>) -> Result<(), EngineError> {
        let socket = NotifySocket::bind(path.as_ref())?;
        self.checks.notify = Some(socket);
        self.nudge();
        Ok(())
    }

    /// The socket services send `sd_notify` datagrams to, once
    /// [`listen_notify`](Engine::listen_notify) made it.
    #[must_use]
    pub fn notify_socket(&self) -> Option<&Path> {
        self.checks.notify.as_ref().map(NotifySocket::path)
    }

    /// A service ready by `sd_notify` needs the socket.
    pub(super) fn check_notify(&self, svc: &Service) -> Result<(), crate::model::InvalidService> {
        if self.notify_socket().is_none() && matches!(svc.ready.as_ref().map(|r| &r.check), Some(ReadyCheck::Systemd)) {
            let problem = "notify = \"systemd\" needs the engine's notify socket (Engine::listen_notify)";
            return Err(crate::model::InvalidService::new(&svc.name, "ready.check", problem));
        }
        Ok(())
    }

    /// What the engine adds to the environment of a process of the
    /// service at `idx` at each start: the instance marker (not for an
    /// external service's commands, whose daemons are not ours), and for
    /// `sd_notify` `NOTIFY_SOCKET` and `WATCHDOG_USEC` (only for its main
    /// process, `main`). Made at the start rather than kept in the
    /// service: a map entry costs a 544-byte node in each of thousands.
    pub(super) fn spawn_env(&self, idx: usize, main: bool) -> Vec<(&'static str, String)> {
        let svc = &self.slots[idx].svc;
        let mut env = Vec::new();
        if let (Some(m), false) = (&self.marker, svc.kind.is_external()) {
            env.push((crate::os::previous::INSTANCE_ENV, m.clone()));
        }
        let systemd = matches!(svc.ready.as_ref().map(|r| &r.check), Some(ReadyCheck::Systemd));
        if let (true, true, Some(path)) = (main, systemd, self.notify_socket()) {
            env.push(("NOTIFY_SOCKET", path_text(path)));
            if let Some(w) = svc.watchdog {
                env.push(("WATCHDOG_USEC", w.as_micros().to_string()));
            }
        }
        env
    }

    /// Takes the datagrams waiting on the notify socket and acts on them.
    pub(super) fn read_notify(&mut self) {
        let Some(socket) = self.checks.notify.as_ref() else { return };
        let batch = match socket.receive(BATCH) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("notify socket: {e}");
                return;
            }
        };
        let now = Instant::now();
        // Every sender is looked up while the batch (and the descriptors
        // that hold its senders) is still here.
        let owners: Vec<Option<usize>> = batch.iter().map(|d| d.pid.and_then(|pid| self.owner_of(pid))).collect();
        for (datagram, owner) in batch.iter().zip(owners) {
            let Some(idx) = owner else {
                if !datagram.messages.is_empty() {
                    log::debug!("notify: a datagram from pid {:?}, of no service: ignored", datagram.pid);
                }
                continue;
            };
            for m in &datagram.messages {
                self.notified(idx, m, now);
            }
        }
        drop(batch);
        self.drain_queue();
    }

    /// What one message from the service at `idx` does.
    fn notified(&mut self, idx: usize, message: &Message, now: Instant) {
        let name = self.slots[idx].svc.name.clone();
        let systemd = matches!(self.slots[idx].svc.ready.as_ref().map(|r| &r.check), Some(ReadyCheck::Systemd));
        match message {
            Message::Ready if systemd => {
                if self.slots[idx].checks.awaits_ready() {
                    log::info!("{name}: ready (READY=1)");
                    self.queue.push_back((idx, Event::Ready));
                }
            }
            Message::Status(text) => self.slots[idx].checks.status_text = Some(text.clone()),
            Message::Watchdog => self.watchdog_fed(idx, now),
            Message::WatchdogTrigger => {
                let reason = "watchdog: the service asked for a restart (WATCHDOG=trigger)".to_string();
                log::warn!("{name}: {reason}");
                self.queue.push_back((idx, Event::Unhealthy { reason }));
            }
            Message::MainPid(pid) => {
                // Followed when the main process ends and leaves it.
                log::info!("{name}: names pid {pid} its main process (MAINPID)");
                self.slots[idx].checks.main_pid = Some(*pid);
            }
            Message::Stopping => log::info!("{name}: stopping (STOPPING=1)"),
            Message::Reloading => log::info!("{name}: reloading (RELOADING=1)"),
            other => log::debug!("{name}: {other} ignored"),
        }
    }

    /// The service that process `pid` belongs to.
    fn owner_of(&self, pid: i32) -> Option<usize> {
        if let Some(&idx) = self.leaders.get(&pid) {
            return Some(idx);
        }
        if let Some(idx) = self.slots.iter().position(|s| s.members.iter().any(|m| m.pid == pid)) {
            return Some(idx);
        }
        let mut at = pid;
        for _ in 0..MAX_DEPTH {
            let parent = procfs::read_stat(at)?.ppid;
            if let Some(&idx) = self.leaders.get(&parent) {
                return Some(idx);
            }
            if parent <= 1 || parent == std::process::id() as i32 {
                return None;
            }
            at = parent;
        }
        None
    }

    /// `WATCHDOG=1`: the watchdog deadline moves on.
    fn watchdog_fed(&mut self, idx: usize, now: Instant) {
        let Some(every) = self.slots[idx].svc.watchdog else { return };
        if self.slots[idx].checks.feed_watchdog(now + every) {
            self.arm_checks(idx);
        }
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
