//! The growing delay between quick failures (zdaemon's backoff).

use std::time::Duration;

use crate::model::{ExitStatus, RestartPolicy};

/// What to do after a service's process exited while it was wanted up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again immediately.
    RestartNow,
    /// Start it again after this delay.
    RestartAfter(Duration),
    /// It finished on purpose (exit code in the list, or the mode says
    /// so): leave it `exited`.
    Finished,
    /// Too many quick failures: give up, `fatal`.
    GiveUp,
}

/// `delay`, less up to a quarter of it, by an amount that depends on the
/// service's name and the number of the failure. Services that fail
/// together (started together, or sharing a dependency that went away)
/// are then not restarted together at every round: their restarts spread
/// over a quarter of the delay instead of coming in one burst. Never more
/// than `delay`, so never past the limit.
pub fn jittered(delay: Duration, name: &str, failure: u32) -> Duration {
    // FNV-1a over the name and the count: cheap, stable, well spread.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes().iter().chain(&failure.to_le_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let cut = (delay / 4).mul_f64((h % 1024) as f64 / 1024.0);
    delay.saturating_sub(cut)
}

/// The growing delay between quick failures of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
    failures: u32,
}

impl Backoff {
    /// The delay that the last quick failure got (zero after a reset).
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Quick failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures (after an explicit start).
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// Decides what follows an exit after a run of `ran_for`.
    pub fn on_exit(&mut self, policy: &RestartPolicy, exit: ExitStatus, ran_for: Duration) -> Decision {
        if !policy.wants_restart(exit) {
            return Decision::Finished;
        }
        self.on_restart(policy, ran_for)
    }

    /// Decides what follows a restart the supervisor chose (a failed
    /// health check, a missed watchdog) after a run of `ran_for`: as an
    /// exit that the policy restarts.
    pub fn on_restart(&mut self, policy: &RestartPolicy, ran_for: Duration) -> Decision {
        if ran_for > policy.backoff_limit {
            self.reset();
        }
        if ran_for >= policy.min_uptime {
            return Decision::RestartNow;
        }
        self.on_quick_failure(policy)
    }

    /// Decides what follows a start that failed without an exit (not
    /// ready in time): a quick failure, whatever the exit codes say.
    pub fn on_quick_failure(&mut self, policy: &RestartPolicy) -> Decision {
        self.failures = self.failures.saturating_add(1);
        let next = self.delay + policy.backoff_step;
        if next > policy.backoff_limit {
            if policy.forever {
                self.delay = policy.backoff_limit;
                return Decision::RestartAfter(self.delay);
            }
            return Decision::GiveUp;
        }
        self.delay = next;
        Decision::RestartAfter(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RestartMode;
    use nix::sys::signal::Signal;

    const QUICK: Duration = Duration::from_millis(100);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn quick_failures_back_off_then_give_up() {
        let p = RestartPolicy::default();
        let mut b = Backoff::default();
        let fail = ExitStatus::Code(1);
        for s in 1..=10 {
            assert_eq!(b.on_exit(&p, fail, QUICK), Decision::RestartAfter(secs(s)));
        }
        assert_eq!(b.on_exit(&p, fail, QUICK), Decision::GiveUp);
        assert_eq!(b.failures(), 11);
    }

    #[test]
    fn forever_retries_at_the_limit() {
        let p = RestartPolicy { forever: true, backoff_limit: secs(2), ..Default::default() };
        let mut b = Backoff::default();
        let fail = ExitStatus::Signal(Signal::SIGSEGV);
        assert_eq!(b.on_exit(&p, fail, QUICK), Decision::RestartAfter(secs(1)));
        assert_eq!(b.on_exit(&p, fail, QUICK), Decision::RestartAfter(secs(2)));
        for _ in 0..5 {
            assert_eq!(b.on_exit(&p, fail, QUICK), Decision::RestartAfter(secs(2)));
        }
    }

    #[test]
    fn long_runs_restart_at_once_and_reset_only_past_the_limit() {
        let p = RestartPolicy::default();
        let mut b = Backoff::default();
        let fail = ExitStatus::Code(1);
        b.on_exit(&p, fail, QUICK);
        b.on_exit(&p, fail, QUICK);
        assert_eq!(b.delay(), secs(2));
        // Ran 5 s: at least min_uptime, so at once, but the delay stays.
        assert_eq!(b.on_exit(&p, fail, secs(5)), Decision::RestartNow);
        assert_eq!(b.on_exit(&p, fail, QUICK), Decision::RestartAfter(secs(3)));
        // Ran longer than the limit: the delay starts over.
        assert_eq!(b.on_exit(&p, fail, secs(11)), Decision::RestartNow);
        assert_eq!(b.on_exit(&p, fail, QUICK), Decision::RestartAfter(secs(1)));
    }

    #[test]
    fn exit_codes_and_modes() {
        let p = RestartPolicy { exit_codes: vec![0, 3], ..Default::default() };
        let mut b = Backoff::default();
        assert_eq!(b.on_exit(&p, ExitStatus::Code(3), QUICK), Decision::Finished);
        assert_eq!(b.on_exit(&p, ExitStatus::Code(4), secs(2)), Decision::RestartNow);

        let p = RestartPolicy { mode: RestartMode::OnFailure, ..Default::default() };
        assert_eq!(b.on_exit(&p, ExitStatus::Code(0), secs(2)), Decision::Finished);
        assert_eq!(b.on_exit(&p, ExitStatus::Signal(Signal::SIGKILL), secs(2)), Decision::RestartNow);

        let p = RestartPolicy { mode: RestartMode::Never, ..Default::default() };
        assert_eq!(b.on_exit(&p, ExitStatus::Code(1), secs(2)), Decision::Finished);
    }

    #[test]
    fn jitter_takes_at_most_a_quarter_and_spreads_services() {
        let d = secs(10);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..100 {
            let j = super::jittered(d, &format!("crash{i:03}"), 1);
            assert!(j <= d && j > d.saturating_sub(d / 4), "{j:?}");
            assert_eq!(j, super::jittered(d, &format!("crash{i:03}"), 1), "the same for the same service and round");
            seen.insert(j);
        }
        assert!(seen.len() > 90, "100 services, {} distinct delays", seen.len());
        assert_eq!(super::jittered(Duration::ZERO, "web", 3), Duration::ZERO);
    }
}
