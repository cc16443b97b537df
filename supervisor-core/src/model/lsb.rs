//! LSB `status` codes: what init scripts, monitoring and simplevisor-style
//! tools expect from "is it running?".

use serde::{Deserialize, Serialize};

use crate::model::Expected;
use crate::model::{ServiceState, ServiceStatus};

/// The answer of an LSB `status` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LsbStatus {
    /// 0: running (or starting, or paused).
    Running,
    /// 1: should run but is dead (backing off, or given up).
    Dead,
    /// 3: not running: stopped, or finished on purpose.
    Stopped,
    /// 4: unknown (no such service).
    Unknown,
}

impl LsbStatus {
    /// The process exit code.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            LsbStatus::Running => 0,
            LsbStatus::Dead => 1,
            LsbStatus::Stopped => 3,
            LsbStatus::Unknown => 4,
        }
    }

    /// The status of one service.
    #[must_use]
    pub fn of(s: &ServiceStatus) -> LsbStatus {
        match s.state {
            // A loop task between runs is up.
            ServiceState::Running | ServiceState::Starting | ServiceState::Paused | ServiceState::Idle => {
                LsbStatus::Running
            }
            // On its way back up (a restart): still counts as running.
            ServiceState::Stopping if s.wanted == Expected::Running => LsbStatus::Running,
            ServiceState::Stopping | ServiceState::Stopped | ServiceState::Exited => LsbStatus::Stopped,
            ServiceState::Backoff | ServiceState::Fatal | ServiceState::Dirty => LsbStatus::Dead,
            ServiceState::Checking => LsbStatus::Unknown,
        }
    }

    /// The status of several: the first that applies of unknown, dead,
    /// stopped, running. `None` for an empty list.
    pub fn combine(all: impl IntoIterator<Item = LsbStatus>) -> Option<LsbStatus> {
        let all: Vec<LsbStatus> = all.into_iter().collect();
        [LsbStatus::Unknown, LsbStatus::Dead, LsbStatus::Stopped, LsbStatus::Running]
            .into_iter()
            .find(|s| all.contains(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LsbStatus::*;

    #[test]
    fn codes_and_precedence() {
        assert_eq!([Running, Dead, Stopped, Unknown].map(LsbStatus::code), [0, 1, 3, 4]);
        assert_eq!(LsbStatus::combine([Running, Stopped]), Some(Stopped));
        assert_eq!(LsbStatus::combine([Stopped, Dead, Running]), Some(Dead));
        assert_eq!(LsbStatus::combine([Dead, Unknown]), Some(Unknown));
        assert_eq!(LsbStatus::combine([Running]), Some(Running));
        assert_eq!(LsbStatus::combine([]), None);
    }
}
