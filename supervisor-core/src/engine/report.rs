//! What the engine tells: status snapshots (with what only tasks and
//! external services have) and the log lines of state changes.

use std::time::{Instant, SystemTime};

use super::Engine;
use crate::machine::Behaviour;
use crate::model::Expected;
use crate::model::LastRun;
use crate::model::{KindStatus, ServiceState, ServiceStatus, StatusSnapshot, SupervisorStatus};

impl Engine {
    /// The state of one service.
    pub fn state(&self, name: &str) -> Option<ServiceState> {
        self.by_name.get(name).map(|i| self.slots[*i].m.state())
    }

    /// A snapshot of everything.
    pub fn status(&self) -> StatusSnapshot {
        self.snapshot((0..self.slots.len()).filter(|&i| !(self.slots[i].retired && self.slots[i].is_down())))
    }

    /// The metrics of the engine and every service in Prometheus' text
    /// exposition format: [`metrics::render`](crate::metrics::render) of
    /// the [`status`](Engine::status).
    pub fn metrics(&self) -> String {
        crate::model::metrics::render(&self.status())
    }

    /// A snapshot of the supervisor and the services at `idxs`.
    pub(super) fn snapshot(&self, idxs: impl Iterator<Item = usize>) -> StatusSnapshot {
        let now = Instant::now();
        StatusSnapshot {
            supervisor: SupervisorStatus {
                name: self.name.clone(),
                pid: std::process::id() as i32,
                uptime_s: now.saturating_duration_since(self.started).as_secs_f64(),
                events_dropped: self.events.dropped,
                events_emitted: self.events.seq,
                control_requests: self.fronts.control_requests,
            },
            services: idxs.map(|i| self.service_status(i, now)).collect(),
        }
    }

    pub(super) fn service_status(&self, idx: usize, now: Instant) -> ServiceStatus {
        let s = &self.slots[idx];
        let mut st = ServiceStatus {
            name: s.svc.name.clone(),
            state: s.m.state(),
            pid: s.m.pid(),
            uptime_s: s.m.pid().and(s.m.started_at()).map(|t| now.saturating_duration_since(t).as_secs_f64()),
            since_s: now.saturating_duration_since(s.m.since()).as_secs_f64(),
            restarts: s.m.restarts(),
            expected: s.svc.expected,
            // A service that waits for its dependencies is wanted up.
            wanted: if s.m.want_up() || s.waiting { Expected::Running } else { Expected::Stopped },
            last_exit: s.m.last_exit(),
            error: s.m.error().map(str::to_owned),
            descendants: s.members.len(),
            transcript: s.output.as_ref().map(|o| o.transcript().config().path.clone()),
            dropped_bytes: s.output.as_ref().map_or(0, |o| o.transcript().dropped()),
            transcript_bytes: s.output.as_ref().map_or(0, |o| o.transcript().written()),
            transcript_error: s.output.as_ref().and_then(|o| o.transcript().error().map(str::to_owned)),
            ready: false,
            ready_since: None,
            health: None,
            last_probe: None,
            status_text: None,
            waiting_for: Vec::new(),
            reason: None,
            next_try_in_s: None,
            extra: self.kind_status(idx, now),
        };
        self.explain(idx, now, &mut st);
        st
    }

    fn kind_status(&self, idx: usize, now: Instant) -> KindStatus {
        let s = &self.slots[idx];
        let until = |t: Instant| t.saturating_duration_since(now).as_secs_f64();
        match &s.m {
            Behaviour::Daemon(_) => KindStatus::default(),
            Behaviour::Task(t) => {
                let wall = SystemTime::now();
                let last_run = t.last().map(|r| {
                    let ago = now.saturating_duration_since(r.started);
                    let at = wall.checked_sub(ago).unwrap_or(wall);
                    let since_epoch = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                    LastRun {
                        started: crate::model::rfc3339_micros(since_epoch),
                        duration_s: r.duration.as_secs_f64(),
                        exit: r.exit,
                        timed_out: r.timed_out,
                        error: r.error.clone(),
                    }
                });
                KindStatus {
                    kind: Some("task".into()),
                    last_run,
                    runs: Some(t.runs()),
                    failures: Some(t.failures()),
                    next_in_s: t.next_run().map(until),
                    ..KindStatus::default()
                }
            }
            Behaviour::External(e) => KindStatus {
                kind: Some("external".into()),
                next_in_s: if e.busy() { None } else { s.timer.map(until) },
                last_check: e.last_pass().cloned(),
                checks: Some(e.passes()),
                ..KindStatus::default()
            },
        }
    }

    pub(super) fn log_transition(&self, idx: usize, before: ServiceState, after: ServiceState) {
        let s = &self.slots[idx];
        let name = &s.svc.name;
        match after {
            ServiceState::Running => match &s.m {
                Behaviour::Daemon(m) => log::info!("{name}: running (pid {})", m.pid().unwrap_or(0)),
                Behaviour::Task(_) => log::debug!("{name}: run started"),
                Behaviour::External(_) => log::info!("{name}: running"),
            },
            ServiceState::Stopped if matches!(s.m, Behaviour::External(_)) && before != ServiceState::Stopping => {
                log::info!("{name}: stopped");
            }
            ServiceState::Backoff => {
                // A failed start has an error and no exit of its own.
                let why = s.m.error().map(str::to_string).or_else(|| s.m.last_exit().map(|e| e.to_string()));
                let why = why.unwrap_or_else(|| "failed".into());
                let delay = s.m.daemon().map_or(0.0, |m| m.backoff_delay(&s.svc).as_secs_f64());
                log::warn!("{name}: {why}; backing off for {delay:.2}s");
            }
            ServiceState::Fatal => {
                if let Some(e) = s.m.error() {
                    log::error!("{name}: fatal: {e}");
                } else {
                    let failures = s.m.daemon().map_or(0, |m| m.backoff().failures());
                    log::error!("{name}: fatal after {failures} quick failures");
                }
            }
            // A task's run ended (not: the task was enabled).
            ServiceState::Idle if before != ServiceState::Stopped => {
                if let Behaviour::Task(t) = &s.m {
                    match t.last().filter(|r| !r.success()) {
                        Some(r) => {
                            let how = match (&r.error, r.exit) {
                                (Some(e), _) => e.clone(),
                                _ if r.timed_out => "timed out".to_string(),
                                (None, Some(x)) => x.to_string(),
                                (None, None) => "failed".to_string(),
                            };
                            log::warn!("{name}: run failed: {how} ({} of {} runs failed)", t.failures(), t.runs());
                        }
                        None => log::debug!("{name}: run finished"),
                    }
                }
            }
            ServiceState::Dirty if before != ServiceState::Dirty => {
                log::warn!("{name}: dirty: {}", s.m.error().unwrap_or("status is neither running nor stopped"));
            }
            ServiceState::Exited => {
                log::info!("{name}: {}; not restarted", s.m.last_exit().map(|e| e.to_string()).unwrap_or_default());
            }
            ServiceState::Stopped if before == ServiceState::Stopping => log::info!("{name}: stopped"),
            _ => {}
        }
    }
}
