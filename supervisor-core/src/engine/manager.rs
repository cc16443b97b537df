//! Reporting to the service manager that started the supervisor (the
//! host's systemd, through `sd_notify`): `READY=1` once every service
//! that should run is ready, `STATUS=` with a summary whenever it
//! changes, `RELOADING=1` and `READY=1` around a reload, `STOPPING=1` at
//! the shutdown, and `WATCHDOG=1` at half the manager's watchdog period.

use std::time::{Duration, Instant};

use super::{Engine, EngineError};
use crate::machine::Behaviour;
use crate::model::ServiceState;
use crate::os::notify::client::{one_line, NotifyClient};

/// What the engine tells its manager, and when.
#[derive(Debug)]
pub(super) struct Manager {
    client: NotifyClient,
    /// `READY=1` went out (since the start, or the last reload).
    ready_sent: bool,
    /// A reload is being applied.
    reloading: bool,
    stopping_sent: bool,
    /// The last `STATUS=`, and the event count it was made at.
    status: String,
    status_seq: Option<u64>,
    /// Half the manager's watchdog period, and the next `WATCHDOG=1`.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
}

impl Engine {
    /// Reports to the service manager that started this process, through
    /// the `sd_notify` socket `notify_socket` (the value of
    /// `NOTIFY_SOCKET`: a path, or `@` and an abstract name): `READY=1`
    /// once every service that should run is ready (or has given up),
    /// `STATUS=` with a one-line summary whenever it changes,
    /// `RELOADING=1` and `READY=1` around [`set_reloading`], `STOPPING=1`
    /// when the shutdown begins, and with `watchdog` (the manager's
    /// `WATCHDOG_USEC`) `WATCHDOG=1` at half that period. Nothing is sent
    /// in a way that could block the loop.
    ///
    /// The host reads the variables, and removes them from its
    /// environment: the services do not get them (the engine gives
    /// `NOTIFY_SOCKET` of its own to those that use `sd_notify`).
    ///
    /// [`set_reloading`]: Engine::set_reloading
    ///
    /// # Errors
    ///
    /// A `notify_socket` that is not an absolute path or `@name`; the
    /// socket cannot be made.
    pub fn notify_service_manager(
        &mut self,
        notify_socket: &str,
        watchdog: Option<Duration>,
    ) -> Result<(), EngineError> {
        self.nudge();
        let client = NotifyClient::new(notify_socket)?;
        let ping_every = watchdog.filter(|w| !w.is_zero()).map(|w| w / 2);
        self.manager = Some(Box::new(Manager {
            client,
            ready_sent: false,
            reloading: false,
            stopping_sent: false,
            status: String::new(),
            status_seq: None,
            ping_every,
            next_ping: ping_every.map(|_| Instant::now()),
        }));
        Ok(())
    }

    /// Tells the service manager (if any) that a reload of the
    /// configuration begins (`RELOADING=1`) or was applied (`READY=1`).
    pub fn set_reloading(&mut self, reloading: bool) {
        let Some(mut m) = self.manager.take() else { return };
        if reloading && !m.reloading {
            let now = crate::os::sys::monotonic_usec();
            m.say(&format!("RELOADING=1\nMONOTONIC_USEC={now}\nSTATUS=reloading the configuration"));
        } else if !reloading && m.reloading && m.ready_sent {
            // Applied: systemd waits for READY=1 to end the reload, not
            // for the services (the first READY=1 waits for them).
            let (summary, _) = self.summary();
            m.say(&format!("READY=1\nSTATUS={}", one_line(&summary)));
            m.status = summary;
        }
        m.status_seq = None;
        m.reloading = reloading;
        self.manager = Some(m);
        self.nudge();
    }

    /// When the next `WATCHDOG=1` is due.
    pub(super) fn manager_deadline(&self) -> Option<Instant> {
        self.manager.as_ref()?.next_ping
    }

    /// After a turn: what the manager should hear now.
    pub(super) fn tell_manager(&mut self) {
        let Some(mut m) = self.manager.take() else { return };
        let now = Instant::now();
        if let (Some(at), Some(every)) = (m.next_ping, m.ping_every) {
            if now >= at {
                m.say("WATCHDOG=1");
                m.next_ping = Some(now + every);
            }
        }
        if self.shutting_down {
            if !m.stopping_sent {
                m.stopping_sent = true;
                m.say("STOPPING=1\nSTATUS=stopping all services");
            }
        } else if !m.reloading && m.status_seq != Some(self.events.seq) {
            m.status_seq = Some(self.events.seq);
            let (summary, settled) = self.summary();
            if !m.ready_sent && settled {
                m.ready_sent = true;
                m.status = summary.clone();
                m.say(&format!("READY=1\nSTATUS={}", one_line(&summary)));
            } else if summary != m.status {
                m.say(&format!("STATUS={}", one_line(&summary)));
                m.status = summary;
            }
        }
        self.manager = Some(m);
    }

    /// A one-line count of the services by state (`4 running, 1 fatal`),
    /// and whether every service that should run is ready, or will not
    /// get there by itself.
    fn summary(&self) -> (String, bool) {
        let mut counts: Vec<(ServiceState, usize)> = Vec::new();
        let mut settled = true;
        for (idx, s) in self.slots.iter().enumerate().filter(|(_, s)| !s.retired) {
            let state = s.m.state();
            match counts.iter_mut().find(|(st, _)| *st == state) {
                Some((_, n)) => *n += 1,
                None => counts.push((state, 1)),
            }
            settled &= !should_run(s) || is_ready(s) || self.stuck(idx, 0);
        }
        counts.sort_by_key(|&(st, _)| ServiceState::ALL.iter().position(|&a| a == st));
        let parts: Vec<String> = counts.iter().map(|(st, n)| format!("{n} {st}")).collect();
        let text = if parts.is_empty() { "no services".to_string() } else { parts.join(", ") };
        (text, settled)
    }
}

impl Engine {
    /// Whether the service at `idx` is not ready and will not get there by
    /// itself: not wanted, finished or given up, or waiting for a
    /// dependency that is stuck so.
    fn stuck(&self, idx: usize, depth: usize) -> bool {
        let s = &self.slots[idx];
        if is_ready(s) {
            return false;
        }
        if !should_run(s) || matches!(s.m.state(), ServiceState::Exited | ServiceState::Fatal) {
            return true;
        }
        let deps = s.svc.requires.iter().chain(&s.svc.after).filter_map(|n| self.by_name.get(n).copied());
        s.waiting && depth < 64 && deps.into_iter().any(|d| self.stuck(d, depth + 1))
    }
}

/// Whether a service is wanted up, or waits to start.
fn should_run(s: &super::Slot) -> bool {
    s.m.want_up() || s.waiting || s.held_start
}

/// Ready: a daemon or an external service runs; a loop task is
/// scheduled.
fn is_ready(s: &super::Slot) -> bool {
    match &s.m {
        Behaviour::Task(_) => matches!(s.m.state(), ServiceState::Idle | ServiceState::Running),
        _ => s.m.state() == ServiceState::Running,
    }
}

impl Manager {
    /// Sends `lines`; a failure is logged, and the supervisor goes on.
    fn say(&self, lines: &str) {
        if let Err(e) = self.client.send(lines) {
            log::debug!("cannot tell the service manager {lines:?}: {e}");
        }
    }
}
