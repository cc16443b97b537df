//! Starting processes: a service's main process or an external service's
//! command, with its pipes, runtime directory and pidfile.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::SystemTime;

use super::{Engine, EngineError, Slot};
use crate::machine::Event;
use crate::model::{Input, Output, Service};
use crate::os::output::ServiceOutput;
use crate::os::pidfile::PidFile;
use crate::os::{procfs, spawn, sys};

impl Engine {
    /// Makes a pipe that services can use by name: [`Output::Pipe`] for
    /// one service's stdout, [`Input::Pipe`] for another's stdin (a
    /// daemontools `log/` service). The engine keeps both ends for as long
    /// as it lives, so the pipe outlives restarts of either side and no
    /// line is lost. Does nothing if the name exists.
    ///
    /// [`Output::Pipe`]: crate::Output::Pipe
    /// [`Input::Pipe`]: crate::Input::Pipe
    ///
    /// # Errors
    ///
    /// When the pipe cannot be made.
    pub fn add_pipe(&mut self, name: &str) -> Result<(), EngineError> {
        if !self.named_pipes.contains_key(name) {
            let (r, w) = sys::pipe()?;
            // Children read and write these: they must block.
            sys::set_nonblocking(r.as_raw_fd(), false)?;
            sys::set_nonblocking(w.as_raw_fd(), false)?;
            self.named_pipes.insert(name.to_string(), (r, w));
        }
        Ok(())
    }

    /// Forks and execs the service's program, or `command` in its place
    /// (an external service's command, which has no pidfile), and tells
    /// its machine how that went.
    pub(super) fn spawn_slot(&mut self, idx: usize, command: Option<&Service>) {
        {
            if self.slots[idx].finishing.is_some() {
                self.slots[idx].spawn_held = true;
                return;
            }
            // An external service's commands get the directories; the
            // pidfile is what its start command writes.
            let prepared = match command {
                None => crate::os::runtime_dir::before_spawn(&self.slots[idx].svc),
                Some(_) => crate::os::runtime_dir::prepare_for(&self.slots[idx].svc).map_err(|e| e.to_string()),
            };
            if let Err(error) = prepared {
                log::error!("{}: cannot start: {error}", self.slots[idx].svc.name);
                self.queue.push_back((idx, Event::SpawnFailed { error, transient: true }));
                return;
            }
            let slot = &mut self.slots[idx];
            let writers = match slot.output.as_mut().map(ServiceOutput::writers).transpose() {
                Ok(w) => w.unwrap_or_default(),
                Err(e) => {
                    let error = format!("transcript pipe: {e}");
                    log::error!("{}: cannot start: {error}", slot.svc.name);
                    self.queue.push_back((idx, Event::SpawnFailed { error, transient: true }));
                    return;
                }
            };
            let mut pipes = writers.pipes;
            let named = Self::named_pipes_in(&self.named_pipes, &slot.svc);
            pipes.stdout = pipes.stdout.or(named.stdout);
            pipes.stderr = pipes.stderr.or(named.stderr);
            pipes.stdin = named.stdin;
            // The main process joins the service's cgroup; an external
            // service's commands start what is not ours to track.
            let cgroup = match (&self.cgroups, command) {
                (Some(tree), None) => {
                    tree.prepare(&slot.svc.name).map_err(|e| log::debug!("{}: no cgroup: {e}", slot.svc.name)).ok()
                }
                _ => None,
            };
            pipes.cgroup = cgroup.as_ref().map(AsRawFd::as_raw_fd);
            let ready = if command.is_none() { self.ready_pipe_for(idx) } else { None };
            pipes.ready = ready.as_ref().map(|(w, at)| (w.as_raw_fd(), *at));
            let env = self.spawn_env(idx, command.is_none());
            let slot = &mut self.slots[idx];
            let spawned = spawn::spawn(command.unwrap_or(&slot.svc), pipes, &env);
            // The child has its copies; ours would keep the pipes open.
            drop(writers);
            drop(ready);
            match spawned {
                Ok(sp) => {
                    match command {
                        Some(c) => log::debug!("{}: running {} (pid {})", slot.svc.name, c.command, sp.pid),
                        None => log::info!("{}: started pid {}", slot.svc.name, sp.pid),
                    }
                    slot.changed_at = SystemTime::now();
                    if command.is_none() {
                        Self::write_pidfile(slot, sp.pid);
                        slot.checks.new_process();
                    }
                    slot.leader_start_time = procfs::read_stat(sp.pid).map(|i| i.start_time);
                    self.state_dirty = true;
                    slot.leader = Some(sp.pid);
                    slot.pgid = Some(sp.pid);
                    slot.cgroup = cgroup.is_some() && sp.cgroup_error.is_none();
                    match &sp.cgroup_error {
                        Some(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                            log::info!("this kernel cannot start processes in a cgroup ({e}): no cgroup per service");
                            self.cgroups = None;
                        }
                        Some(e) => log::warn!("{}: cannot start in its cgroup: {e}; found in /proc", slot.svc.name),
                        None => {}
                    }
                    // Our child, not reaped yet: the pid cannot name another.
                    slot.leader_fd = sys::pidfd_open(sp.pid).ok();
                    if slot.leader_fd.is_none() {
                        self.unwatched_leaders.insert(sp.pid);
                    }
                    self.leaders.insert(sp.pid, idx);
                    self.queue.push_back((idx, Event::Spawned { pid: sp.pid }));
                    if let Some(error) = sp.exec_error {
                        log::error!("{}: {error}", self.slots[idx].svc.name);
                        self.queue.push_back((idx, Event::SpawnFailed { error, transient: false }));
                    }
                }
                Err(e) => {
                    log::error!("{}: cannot start: {e}", slot.svc.name);
                    let transient = e.is_transient();
                    self.queue.push_back((idx, Event::SpawnFailed { error: e.to_string(), transient }));
                }
            }
        }
    }

    /// The descriptors of the named pipes a service uses.
    pub(super) fn named_pipes_in(pipes: &HashMap<String, (OwnedFd, OwnedFd)>, svc: &Service) -> spawn::Pipes {
        let end = |n: &String, read: bool| pipes.get(n).map(|(r, w)| if read { r.as_raw_fd() } else { w.as_raw_fd() });
        let out = |o: &Output| match o {
            Output::Pipe(n) => end(n, false),
            _ => None,
        };
        spawn::Pipes {
            stdout: out(&svc.stdout),
            stderr: out(&svc.stderr),
            stdin: match &svc.stdin {
                Input::Pipe(n) => end(n, true),
                Input::Null => None,
            },
            ..spawn::Pipes::default()
        }
    }

    pub(super) fn named_pipes_for(&self, svc: &Service) -> spawn::Pipes {
        Self::named_pipes_in(&self.named_pipes, svc)
    }

    pub(super) fn write_pidfile(slot: &mut Slot, pid: i32) {
        let Some(path) = crate::os::runtime_dir::pidfile(&slot.svc) else { return };
        let result = match slot.pidfile.as_mut() {
            Some(pf) => pf.write_pid(pid),
            None => PidFile::acquire_with(&path, pid).map(|pf| slot.pidfile = Some(pf)),
        };
        if let Err(e) = result {
            log::error!("{}: {e}", slot.svc.name);
        }
    }
}
