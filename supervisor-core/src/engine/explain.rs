//! Why a service is where it is: the `reason` of every state that is not
//! `running`, its readiness and health, for the status.

use std::time::{Duration, Instant, SystemTime};

use super::checks::Outcome;
use super::Engine;
use crate::model::{human_secs, HealthStatus, Probe, ProbeStatus, ReadyCheck, ServiceState, ServiceStatus};

/// `1st`, `2nd`, `3rd`, `11th`, `22nd`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A wall-clock time `ago` before now, as RFC 3339.
fn wall_ago(ago: Duration) -> String {
    let wall = SystemTime::now();
    let at = wall.checked_sub(ago).unwrap_or(wall);
    crate::model::rfc3339_micros(at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

fn wall(at: SystemTime) -> String {
    crate::model::rfc3339_micros(at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

/// What a probe is, in a few words.
fn describe_probe(p: &Probe) -> String {
    match p {
        Probe::Exec(c) => format!("exec {c}"),
        Probe::Tcp(a) => format!("tcp {a}"),
        Probe::Unix(path) => format!("unix {}", path.display()),
        Probe::Http(t) => format!("http://{}{}", t.host, t.path),
    }
}

impl Engine {
    /// Fills in the readiness, health and reason of `st`, the status of
    /// the service at `idx`.
    pub(super) fn explain(&self, idx: usize, now: Instant, st: &mut ServiceStatus) {
        let s = &self.slots[idx];
        let state = s.m.state();
        st.ready = state == ServiceState::Running;
        st.ready_since = st.ready.then(|| wall_ago(now.saturating_duration_since(s.m.since())));
        st.status_text = s.checks.status_text.clone();
        st.last_probe = s.checks.last.as_ref().map(|o: &Outcome| ProbeStatus {
            passed: o.passed,
            output: o.output.clone(),
            at: wall(o.at),
        });
        st.health = s.svc.health.as_ref().map(|_| {
            let last = s.checks.last_health.as_ref().filter(|_| st.ready && s.checks.phase_is_health());
            let checked = last.is_some();
            let state = match (checked, s.checks.failures) {
                (false, _) => "pending",
                (true, 0) => "healthy",
                (true, _) => "unhealthy",
            };
            HealthStatus {
                state: state.into(),
                failures: s.checks.failures,
                failures_total: s.checks.failures_total,
                last_output: last.map(|o| o.output.clone()),
            }
        });
        st.waiting_for = self.waiting_for(idx);
        let timer_in = s.timer.map(|t| t.saturating_duration_since(now));
        let error = s.m.error();
        let failures = s.m.daemon().map_or(0, |m| m.backoff().failures());
        let last_run = || {
            let ran = s.m.started_at().map(|t| s.m.since().saturating_duration_since(t));
            match (error, s.m.last_exit(), ran) {
                (Some(e), _, _) => e.to_string(),
                (None, Some(x), Some(r)) => format!("{x} after {}", human_secs(r)),
                (None, Some(x), None) => x.to_string(),
                (None, None, _) => "failed".into(),
            }
        };
        st.reason = match state {
            ServiceState::Running => None,
            ServiceState::Backoff => {
                st.next_try_in_s = timer_in.map(|d| d.as_secs_f64());
                let next = timer_in.map_or(String::new(), |d| format!("; next try in {}", human_secs(d)));
                Some(format!("{}, {} failure in a row{next}", last_run(), ordinal(failures.max(1))))
            }
            ServiceState::Fatal => Some(if failures > 1 {
                format!("gave up after {failures} failures in a row: {}", last_run())
            } else {
                format!("gave up: {}", last_run())
            }),
            ServiceState::Starting if !st.waiting_for.is_empty() => {
                Some(format!("waiting for {}", self.waiting_for_states(idx).join(", ")))
            }
            ServiceState::Starting => {
                let why = self.starting_reason(idx, now);
                // Why the process before this one went, until this one runs.
                Some(match s.m.daemon().and_then(|m| m.previous_error()) {
                    Some(before) => format!("restarted after: {before}; {why}"),
                    None => why,
                })
            }
            ServiceState::Stopped if !st.waiting_for.is_empty() => {
                Some(format!("waiting for {}", self.waiting_for_states(idx).join(", ")))
            }
            ServiceState::Stopped => s.stopped_by.clone().or_else(|| {
                (!s.m.want_up() && !s.svc.kind.is_external()).then(|| "not started: it is wanted stopped".to_string())
            }),
            ServiceState::Exited => s.m.last_exit().map(|x| format!("{x}: finished")),
            ServiceState::Stopping => Some(match (s.stopped_by.as_deref(), error) {
                (_, Some(e)) if s.m.want_up() => format!("restarting: {e}"),
                (Some(by), _) => by.to_string(),
                (None, _) => "stopping".to_string(),
            }),
            _ => error.map(str::to_owned),
        };
    }

    /// What a `starting` service with a process waits for.
    fn starting_reason(&self, idx: usize, now: Instant) -> String {
        let s = &self.slots[idx];
        let Some(r) = s.svc.ready.as_ref() else {
            let up = s.m.started_at().map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            return format!(
                "up for {} of the {} it must stay up (min_uptime)",
                human_secs(up),
                human_secs(s.svc.restart.min_uptime)
            );
        };
        let what = match &r.check {
            ReadyCheck::Systemd => "READY=1 over sd_notify".to_string(),
            ReadyCheck::Fd(n) => format!("a newline on descriptor {n}"),
            ReadyCheck::Log(re) => format!("an output line matching {re:?}"),
            ReadyCheck::Probe(p) => match &s.checks.last {
                Some(o) => format!("{} to pass (last try: {})", describe_probe(p), o.output),
                None => format!("{} to pass (not tried yet)", describe_probe(p)),
            },
        };
        let left = s.timer.map(|t| t.saturating_duration_since(now));
        match left {
            Some(left) => format!("waiting for {what}; gives up in {}", human_secs(left)),
            None => format!("waiting for {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ordinals_read_well() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111].map(super::ordinal).to_vec();
        assert_eq!(got, ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]);
    }
}
