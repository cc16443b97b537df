//! What survives the supervisor: the instance marker on every process, and
//! the state file (wanted states and pids) that a later supervisor of the
//! same instance recovers from.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Engine, EngineError};
use crate::model::Expected;
use crate::os::persist::{save_entries, SavedService, SavedState};
use crate::os::previous;

/// At most one write of the state file per this long for a change of
/// pids alone (see [`Engine::save_state`]).
pub(super) const PID_SAVE_INTERVAL: Duration = Duration::from_secs(1);

impl Engine {
    /// Marks every process of every service with the environment variable
    /// `SUPERVISOR_INSTANCE=marker` (use something unique to the instance,
    /// such as its runtime directory), so that a later supervisor of the
    /// same instance can find what a crashed one left behind.
    pub fn set_instance_marker(&mut self, marker: impl Into<String>) {
        self.marker = Some(marker.into());
    }

    /// Keeps the wanted state of every service and the pid of its process
    /// in the file at `path` (written atomically whenever they change),
    /// and recovers from a previous supervisor of this instance: its
    /// leftover processes (from the file, and by the instance marker) are
    /// stopped (`TERM`, then `KILL` after `grace`) and waited for, and the
    /// wanted states it saved apply to the services added afterwards.
    /// Call it before [`add_service`](Engine::add_service).
    ///
    /// Returns how many leftover processes were stopped.
    ///
    /// # Errors
    ///
    /// When the file exists but cannot be read. A corrupt file is logged
    /// and ignored: the configuration's expected states apply.
    pub fn restore(&mut self, path: &Path, grace: Duration) -> Result<usize, EngineError> {
        let saved = match SavedState::load(path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                log::warn!("ignoring a corrupt state file: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let leftovers = previous::find(saved.as_ref(), self.marker.as_deref());
        let stopped = previous::stop(&leftovers, grace);
        self.saved = saved;
        self.state_path = Some(path.to_path_buf());
        Ok(stopped)
    }

    /// Writes the state file when something in it changed. Wanted states
    /// are written at once and flushed to disk (they must survive a
    /// reboot); a change of pids alone is written at most once per
    /// [`PID_SAVE_INTERVAL`], so that a restart among thousands of services
    /// does not rewrite them all every time. (Pids only help the next
    /// supervisor find what this one left after a `kill -9`; it finds them
    /// by the instance marker too, [`crate::os::previous`].)
    pub(super) fn save_state(&mut self) {
        let Some(path) = &self.state_path else { return };
        if !self.state_dirty {
            return;
        }
        let urgent = self.wanted_dirty || !self.saved_once || self.finished;
        if !urgent && self.saved_at.is_some_and(|t| t.elapsed() < PID_SAVE_INTERVAL) {
            return;
        }
        self.state_dirty = false;
        self.saved_at = Some(Instant::now());
        let durable = std::mem::take(&mut self.wanted_dirty) || !self.saved_once;
        // A removed service is forgotten: added again later, its
        // configuration's `expected` applies.
        let entries = self.slots.iter().filter(|s| !s.retired).map(|s| {
            let wanted = if s.persisted_up { Expected::Running } else { Expected::Stopped };
            (s.svc.name.as_str(), SavedService { wanted, pid: s.leader, start_time: s.leader_start_time })
        });
        match save_entries(path, durable, crate::os::procfs::boot_id(), entries) {
            Ok(()) => self.saved_once = true,
            Err(e) => {
                // Logged once per change of state, retried at the next one.
                log::error!("cannot save the state to {}: {e}", path.display());
            }
        }
    }
}
