//! What the engine does for external services: runs their commands and
//! looks for their pattern in the process table.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Engine;
use crate::machine::Behaviour;
use crate::machine::Event;
use crate::model::{Command, Kind};
use crate::os::procfs;

impl Engine {
    /// Makes the external services added from now on check once, when
    /// added or asked, instead of every `check_interval`; with `dry_run`
    /// they only report (`supervisor check`). See
    /// [`check_pass_done`](Engine::check_pass_done).
    pub fn check_once(&mut self, dry_run: bool) {
        self.nudge();
        self.one_pass = Some(dry_run);
    }

    /// Whether every external service has finished a pass and runs none.
    pub fn check_pass_done(&self) -> bool {
        self.slots.iter().all(|s| match &s.m {
            Behaviour::External(m) => m.passes() > 0 && !m.busy() && s.leader.is_none(),
            _ => true,
        })
    }

    /// Runs one of an external service's commands, with the service's
    /// environment (and `path` as `PATH`), user and directory.
    pub(super) fn run_command(&mut self, idx: usize, argv: Vec<String>) {
        let mut cmd = self.slots[idx].svc.clone();
        if let Kind::External(spec) = &cmd.kind {
            if let Some(path) = &spec.path {
                cmd.env.vars.insert("PATH".into(), path.clone());
            }
        }
        cmd.command = Command::Argv(argv);
        cmd.pidfile = None;
        cmd.lock = None;
        self.spawn_slot(idx, Some(&cmd));
    }

    /// Counts (and signals, with `sig`) the processes that match an
    /// external service's pattern, and tells its machine.
    pub(super) fn find_pattern(&mut self, idx: usize, sig: Option<Signal>) {
        let slot = &self.slots[idx];
        let Kind::External(spec) = &slot.svc.kind else { return };
        let found = match spec.pattern_regex() {
            Ok(re) => {
                // Our own commands are not the service.
                let ours: Vec<i32> = self.leaders.keys().copied().collect();
                procfs::matching(&re, &ours)
            }
            Err(e) => {
                log::error!("{}: {e}", slot.svc.name);
                Vec::new()
            }
        };
        if let Some(sig) = sig {
            for &pid in &found {
                log::info!("{}: sending SIG{} to pid {pid}", slot.svc.name, crate::model::signal_name(sig));
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
        log::debug!("{}: {} process(es) match the pattern", slot.svc.name, found.len());
        self.queue.push_back((idx, Event::Found { count: found.len() }));
    }
}
