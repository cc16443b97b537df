//! Holding loop tasks' runs until the host has looked at its
//! configuration (atomservice re-reads it at the top of every loop).

use super::Engine;
use crate::machine::Event;

impl Engine {
    /// Holds back every loop task's run when it is due until the host
    /// calls [`release_task_runs`](Engine::release_task_runs): a host that
    /// re-reads its configuration before each run (atomservice) checks
    /// [`task_runs_due`](Engine::task_runs_due) after each turn.
    pub fn gate_task_runs(&mut self) {
        self.gate_tasks.get_or_insert_with(Vec::new);
    }

    /// Whether task runs wait for [`release_task_runs`](Engine::release_task_runs).
    pub fn task_runs_due(&self) -> bool {
        self.gate_tasks.as_ref().is_some_and(|d| !d.is_empty())
    }

    /// Starts the task runs that are due.
    pub fn release_task_runs(&mut self) {
        self.nudge();
        let due = self.gate_tasks.as_mut().map(std::mem::take).unwrap_or_default();
        for idx in due {
            self.queue.push_back((idx, Event::Timer));
        }
        self.drain_queue();
    }
}
