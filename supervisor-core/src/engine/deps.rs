//! The dependency graph: `requires` and `after` between services.
//!
//! A service names only services added before it, so the graph an engine
//! holds has no cycle by construction, except through a service replaced
//! by a reload: that is checked when it comes back.
//!
//! How the graph drives starts and stops:
//!
//! - A service wanted up whose dependencies are not there yet *waits*: it
//!   stays `stopped`, wanted up (and saved so), and starts once every
//!   service it `requires` is ready (`running`) and every service it is
//!   `after` is ready or at rest (stopped, exited, fatal). Starting it
//!   starts what it requires first.
//! - Stopping (or restarting) a service first stops the services that
//!   require it, which then wait for it; its own stop is held until they
//!   are down. At a shutdown every service waits for all its dependents,
//!   `after` included: the whole stop goes in reverse dependency order.
//! - A required service that stops being ready (it died, failed its
//!   health check, was stopped or gave up) stops its dependents, which
//!   wait for it to be ready again instead of crash-looping.
//!
//! Only a turn in which some service changed state looks at the graph,
//! and engines without dependencies never do.

use super::Engine;
use crate::machine::Event;
use crate::model::{InvalidService, Kind, Service, ServiceRequest, ServiceState};

/// The engine's view of the graph.
#[derive(Debug, Default)]
pub(super) struct Graph {
    /// Some service has dependencies.
    any: bool,
    /// Some service changed state since the graph was last looked at.
    changed: bool,
    /// By slot: the slots it names in `requires` (`true`) and `after`.
    out: Vec<Vec<(usize, bool)>>,
    /// By slot: the slots that name it.
    into: Vec<Vec<(usize, bool)>>,
}

impl Engine {
    /// The names in `svc.requires` and `svc.after` are services of this
    /// engine that can be waited for (daemons and external services), and
    /// they make no cycle through `svc`.
    pub(super) fn check_dependencies(&self, svc: &Service) -> Result<(), InvalidService> {
        for (field, list) in [("requires", &svc.requires), ("after", &svc.after)] {
            for dep in list {
                let Some(def) = self.definition(dep) else {
                    return Err(InvalidService::new(&svc.name, field, format!("no service {dep:?} (add it first)")));
                };
                if matches!(def.kind, Kind::Task(_)) {
                    let problem =
                        format!("{dep:?} is a task, which is never ready: wait for daemons or external services");
                    return Err(InvalidService::new(&svc.name, field, problem));
                }
            }
        }
        if let Some(cycle) = self.cycle_through(svc) {
            let field = if svc.requires.contains(&cycle[1]) { "requires" } else { "after" };
            return Err(InvalidService::new(&svc.name, field, format!("a cycle: {}", cycle.join(" -> "))));
        }
        Ok(())
    }

    /// Notes a service added with `requires` or `after`.
    pub(super) fn note_dependencies(&mut self, svc: &Service) {
        self.deps.any |= !svc.requires.is_empty() || !svc.after.is_empty();
    }

    /// Puts the edges of the service just placed at `idx` (a new one, or
    /// a new definition in the slot of an old one) in the graph.
    pub(super) fn link(&mut self, idx: usize) {
        let svc = &self.slots[idx].svc;
        let g = &mut self.deps;
        if svc.requires.is_empty() && svc.after.is_empty() && g.out.get(idx).is_none_or(Vec::is_empty) {
            // No edges, before or now: nothing to keep (an engine without
            // dependencies keeps no graph at all).
            return;
        }
        let n = self.slots.len();
        g.out.resize_with(n, Vec::new);
        g.into.resize_with(n, Vec::new);
        for (d, _) in std::mem::take(&mut g.out[idx]) {
            g.into[d].retain(|&(i, _)| i != idx);
        }
        let find = |name: &String| self.by_name.get(name).copied();
        let out: Vec<(usize, bool)> = svc
            .requires
            .iter()
            .filter_map(find)
            .map(|d| (d, true))
            .chain(svc.after.iter().filter_map(find).map(|d| (d, false)))
            .collect();
        for &(d, r) in &out {
            g.into[d].push((idx, r));
        }
        g.out[idx] = out;
    }

    /// Saves the service at `idx` as wanted up or not.
    fn persist_wanted(&mut self, idx: usize, up: bool) {
        if self.slots[idx].persisted_up != up {
            self.slots[idx].persisted_up = up;
            self.state_dirty = true;
            self.wanted_dirty = true;
        }
    }

    /// Notes a change of state: the graph is looked at in this turn.
    pub(super) fn deps_changed(&mut self) {
        self.deps.changed = self.deps.any;
    }

    /// The slots named by `idx`'s `requires` (`true`) and `after` (one
    /// being replaced by a reload included: its slot takes the new
    /// definition).
    fn deps_of(&self, idx: usize) -> Vec<(usize, bool)> {
        self.deps.out.get(idx).cloned().unwrap_or_default()
    }

    /// The slots that name `idx` in their `requires` (`true`) or `after`.
    fn dependents_of(&self, idx: usize) -> Vec<(usize, bool)> {
        self.deps.into.get(idx).cloned().unwrap_or_default()
    }

    /// Whether dependency `d` lets its dependent start: ready, or (for
    /// `after`) at rest and not about to start.
    fn dep_met(&self, d: usize, required: bool) -> bool {
        let s = &self.slots[d];
        if s.stop_held.is_some() {
            // Going down once its dependents are.
            return false;
        }
        match s.m.state() {
            ServiceState::Running | ServiceState::Paused => true,
            ServiceState::Stopped | ServiceState::Exited | ServiceState::Fatal => !required && !s.waiting,
            _ => false,
        }
    }

    /// Whether a dependency the service at `idx` waits for will not get
    /// there by itself: it gave up, finished, or is stopped and not wanted.
    pub(super) fn dependency_failed(&self, idx: usize) -> bool {
        self.deps_of(idx).into_iter().filter(|&(d, r)| !self.dep_met(d, r)).any(|(d, _)| {
            let s = &self.slots[d];
            s.stop_held.is_none() && s.m.is_at_rest() && !s.m.want_up() && !s.waiting
                || s.m.state() == ServiceState::Fatal
                || s.waiting && self.dependency_failed(d)
        })
    }

    /// The dependencies the service at `idx` waits for, by name.
    pub(super) fn waiting_for(&self, idx: usize) -> Vec<String> {
        self.unmet(idx).into_iter().map(|d| self.slots[d].svc.name.clone()).collect()
    }

    /// The same, each with where it stands: `db (starting)`.
    pub(super) fn waiting_for_states(&self, idx: usize) -> Vec<String> {
        self.unmet(idx)
            .into_iter()
            .map(|d| {
                let s = &self.slots[d];
                let state = if s.stop_held.is_some() { "stopping".to_string() } else { s.m.state().to_string() };
                format!("{} ({state})", s.svc.name)
            })
            .collect()
    }

    /// The dependencies not met of a service that waits.
    fn unmet(&self, idx: usize) -> Vec<usize> {
        if !self.slots[idx].waiting {
            return Vec::new();
        }
        self.deps_of(idx).into_iter().filter(|&(d, req)| !self.dep_met(d, req)).map(|(d, _)| d).collect()
    }

    /// Starts the service at `idx` with `event` (a start, once, restart),
    /// or holds it until its dependencies are met; starts what it
    /// requires first.
    pub(super) fn start_or_wait(&mut self, idx: usize, event: Event) {
        self.slots[idx].stopped_by = None;
        if !self.deps.any || self.slots[idx].svc.requires.is_empty() && self.slots[idx].svc.after.is_empty() {
            self.queue.push_back((idx, event));
            return;
        }
        for (d, required) in self.deps_of(idx) {
            let s = &self.slots[d];
            if required && !s.m.want_up() && !s.waiting {
                self.start_or_wait(d, Event::Start);
            }
        }
        self.drain_queue();
        if self.deps_of(idx).into_iter().all(|(d, req)| self.dep_met(d, req)) {
            self.slots[idx].waiting = false;
            self.queue.push_back((idx, event));
        } else {
            self.slots[idx].waiting = true;
            self.persist_wanted(idx, true);
            if self.slots[idx].m.state() != ServiceState::Stopped && !self.slots[idx].m.is_at_rest() {
                self.queue.push_back((idx, Event::Stop));
            }
        }
        self.deps.changed = true;
    }

    /// A stop or restart of the service at `idx` by a command: the
    /// services that require it stop first (and wait for it), and its own
    /// request waits until they are down. Returns whether it was held.
    pub(super) fn hold_for_dependents(&mut self, idx: usize, request: ServiceRequest) -> bool {
        self.slots[idx].waiting = false;
        if !self.deps.any {
            return false;
        }
        let name = self.slots[idx].svc.name.clone();
        let up: Vec<usize> =
            self.dependents_of(idx).into_iter().filter(|&(d, req)| req && !self.is_down(d)).map(|(d, _)| d).collect();
        for &d in &up {
            self.stop_for_dependency(d, &format!("{name} is stopping"));
        }
        if up.is_empty() {
            return false;
        }
        self.slots[idx].stop_held = Some(request);
        self.deps.changed = true;
        true
    }

    /// Stops a dependent because `why`; it waits to start again.
    fn stop_for_dependency(&mut self, idx: usize, why: &str) {
        let s = &mut self.slots[idx];
        let wanted = s.m.want_up() || s.waiting;
        s.stopped_by = Some(format!("stopped: it requires a service that is not ready ({why})"));
        if wanted {
            s.waiting = true;
        }
        log::info!("{}: stopping: {why}", s.svc.name);
        // Its own dependents go first.
        self.hold_for_dependents(idx, ServiceRequest::Stop);
        if self.slots[idx].stop_held.is_none() {
            self.queue.push_back((idx, Event::Stop));
        }
        self.slots[idx].waiting = wanted;
        if wanted {
            self.persist_wanted(idx, true);
        }
    }

    /// At a shutdown: stops the service at `idx` now, or once every
    /// service that depends on it (`after` included) is down.
    pub(super) fn stop_in_order(&mut self, idx: usize) {
        self.slots[idx].waiting = false;
        let held = self.deps.any && self.dependents_of(idx).into_iter().any(|(d, _)| !self.is_down(d));
        if held {
            self.slots[idx].stop_held = Some(ServiceRequest::Stop);
            self.deps.changed = true;
        } else {
            self.queue.push_back((idx, Event::Stop));
        }
    }

    /// Looks at the graph after changes of state: held stops whose
    /// dependents are down go on, waiting services whose dependencies are
    /// met start, and services whose required dependency stopped being
    /// ready stop and wait.
    pub(super) fn advance_deps(&mut self) {
        while std::mem::take(&mut self.deps.changed) {
            for idx in 0..self.slots.len() {
                if let Some(req) = self.slots[idx].stop_held {
                    let all = self.shutting_down;
                    let down = self.dependents_of(idx).into_iter().all(|(d, r)| (!r && !all) || self.is_down(d));
                    if down {
                        self.slots[idx].stop_held = None;
                        self.queue.push_back((idx, req.into()));
                        // Its new state counts for the services after it.
                        self.drain_queue();
                    }
                    continue;
                }
                if self.shutting_down || self.slots[idx].retired {
                    continue;
                }
                let deps = self.deps_of(idx);
                if deps.is_empty() {
                    continue;
                }
                let met = deps.iter().all(|&(d, r)| self.dep_met(d, r));
                let s = &self.slots[idx];
                if s.waiting && met {
                    self.slots[idx].waiting = false;
                    self.slots[idx].stopped_by = None;
                    self.queue.push_back((idx, Event::Start));
                    self.drain_queue();
                } else if !s.waiting && s.m.want_up() && !s.m.is_at_rest() {
                    let lost = deps.iter().find(|&&(d, r)| r && !self.dep_met(d, r));
                    if let Some(&(d, _)) = lost {
                        let why = format!("{} is {}", self.slots[d].svc.name, self.slots[d].m.state());
                        self.stop_for_dependency(idx, &why);
                    }
                }
            }
            self.drain_queue();
        }
    }

    /// The definition of service `name` that holds from now on: its
    /// replacement when a reload is replacing it, none when it is being
    /// removed.
    fn definition(&self, name: &str) -> Option<&Service> {
        let &i = self.by_name.get(name)?;
        if let Some(p) = self.reload.pending.iter().find(|p| p.idx == i) {
            return Some(&p.svc);
        }
        (!self.slots[i].retired).then_some(&self.slots[i].svc)
    }

    /// A path from `svc` through its dependencies back to it, as names
    /// (the first and last are its own), when there is one.
    fn cycle_through(&self, svc: &Service) -> Option<Vec<String>> {
        let deps_of = |name: &str| -> Vec<String> {
            if name == svc.name {
                return svc.requires.iter().chain(&svc.after).cloned().collect();
            }
            self.definition(name).map_or_else(Vec::new, |s| s.requires.iter().chain(&s.after).cloned().collect())
        };
        // Depth first, with the path kept; each name is explored once.
        let mut seen = std::collections::HashSet::new();
        let mut path = vec![svc.name.clone()];
        let mut stack = vec![deps_of(&svc.name).into_iter()];
        while let Some(next) = stack.last_mut().map(Iterator::next) {
            match next {
                None => {
                    stack.pop();
                    path.pop();
                }
                Some(dep) if dep == svc.name => {
                    path.push(dep);
                    return Some(path);
                }
                Some(dep) => {
                    if seen.insert(dep.clone()) {
                        stack.push(deps_of(&dep).into_iter());
                        path.push(dep);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Command, Expected, Kind, Service, TaskSpec};
    use crate::{Engine, EngineError};

    fn svc(name: &str, requires: &[&str], after: &[&str]) -> Service {
        let mut s = Service::new(name, Command::argv(["true"]));
        s.expected = Expected::Stopped;
        s.requires = requires.iter().map(ToString::to_string).collect();
        s.after = after.iter().map(ToString::to_string).collect();
        s
    }

    fn problem(r: Result<impl std::fmt::Debug, EngineError>) -> String {
        match r {
            Err(EngineError::Invalid(e)) => format!("{}: {}", e.field, e.problem),
            other => panic!("expected an invalid service, got {other:?}"),
        }
    }

    #[test]
    fn dependencies_name_earlier_services_that_can_be_ready_and_make_no_cycle() {
        let mut e = Engine::new("deps").unwrap();
        assert!(problem(e.add_service(svc("web", &["db"], &[]))).contains("no service \"db\""));
        e.add_service(svc("db", &[], &[])).unwrap();
        let mut task = svc("backup", &["db"], &[]);
        task.kind = Kind::Task(Box::new(TaskSpec::every(std::time::Duration::from_secs(60))));
        e.add_service(task).unwrap();
        assert!(problem(e.add_service(svc("x", &[], &["backup"]))).contains("is a task"));
        e.add_service(svc("web", &["db"], &[])).unwrap();
        e.add_service(svc("api", &[], &["web"])).unwrap();
        // A reload that makes db wait for api closes a cycle.
        let p = problem(e.replace_service(svc("db", &["api"], &[])));
        assert_eq!(p, "requires: a cycle: db -> api -> web -> db");
        assert!(problem(e.add_service(svc("self", &["self"], &[]))).contains("itself"));
    }
}
