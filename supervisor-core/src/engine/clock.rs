//! Watching the wall clock against the monotonic one.
//!
//! Every deadline of the engine (backoff, `min_uptime`, stop timeouts,
//! task intervals) is kept on the monotonic clock, which no one can set:
//! a step of the wall clock (an administrator's `date -s`, NTP correcting
//! a large error, a virtual machine resumed) changes none of them. Only
//! wall-clock timestamps move: the transcripts' and the log's, task runs'
//! `started`, `supervise/status`. This watch says so in the log, once per
//! step, so that a jump in those timestamps is explained.

use std::time::{Duration, Instant, SystemTime};

/// Smaller differences are jitter between two clock reads, or NTP's slew.
const THRESHOLD: Duration = Duration::from_secs(2);

/// The two clocks as last read together.
#[derive(Debug)]
pub(super) struct ClockWatch {
    mono: Instant,
    wall: SystemTime,
}

/// How the wall clock moved against the monotonic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Forward(Duration),
    Back(Duration),
}

impl ClockWatch {
    pub(super) fn new() -> ClockWatch {
        ClockWatch { mono: Instant::now(), wall: SystemTime::now() }
    }

    /// Reads both clocks; a step of the wall clock since the last reading,
    /// if there was one.
    pub(super) fn check(&mut self) -> Option<Step> {
        self.observe(Instant::now(), SystemTime::now())
    }

    fn observe(&mut self, mono: Instant, wall: SystemTime) -> Option<Step> {
        let elapsed = mono.saturating_duration_since(self.mono);
        let expected = self.wall.checked_add(elapsed).unwrap_or(self.wall);
        self.mono = mono;
        self.wall = wall;
        let step = match wall.duration_since(expected) {
            Ok(ahead) => Step::Forward(ahead),
            Err(behind) => Step::Back(behind.duration()),
        };
        match step {
            Step::Forward(d) | Step::Back(d) if d >= THRESHOLD => Some(step),
            _ => None,
        }
    }
}

/// Logs a step (a warning: timestamps jump, nothing else changes).
pub(super) fn log_step(step: Step) {
    let (how, d) = match step {
        Step::Forward(d) => ("forward", d),
        Step::Back(d) => ("back", d),
    };
    log::warn!(
        "the wall clock stepped {how} by {:.1} s (or the machine was suspended); timeouts, backoff and \
         uptimes follow the monotonic clock and are not affected, timestamps in logs and transcripts jump",
        d.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_seen_once_and_jitter_is_not() {
        let t0 = Instant::now();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut w = ClockWatch { mono: t0, wall: w0 };
        let s = Duration::from_secs;
        // Both advance together, with a little jitter.
        assert_eq!(w.observe(t0 + s(10), w0 + s(10) + Duration::from_millis(300)), None);
        // The wall clock is set back an hour.
        assert_eq!(w.observe(t0 + s(11), w0 + s(11) - s(3600)), Some(Step::Back(s(3600) + Duration::from_millis(300))));
        // Seen once: from there both advance together again.
        assert_eq!(w.observe(t0 + s(20), w0 + s(20) - s(3600)), None);
        // Forward a day.
        assert_eq!(w.observe(t0 + s(21), w0 + s(21 + 86_400 - 3600)), Some(Step::Forward(s(86_400))));
        assert_eq!(w.observe(t0 + s(22), w0 + s(22 + 86_400 - 3600)), None);
    }
}
