//! Reloading: `reload` requests handed to the host, which reads its
//! configuration again and answers them, and services whose definition is
//! replaced once their old processes are gone.
//!
//! The engine knows nothing of configuration files. The host computes what
//! changed and calls [`Engine::replace_service`] for new and changed
//! services and [`Engine::remove_service`] for removed ones; unchanged
//! services are simply not touched.

use std::collections::VecDeque;

use serde_json::Value;

use super::handle::ReplyTo;
use super::{Engine, EngineError};
use crate::machine::Event;
use crate::model::protocol::{ErrorCode, Response};
use crate::model::{Expected, Service};
use crate::os::persist::SavedService;

/// A `reload` request from the control socket, for the host to answer
/// with [`Engine::answer_reload`].
#[derive(Debug, Clone)]
pub struct ReloadRequest {
    to: ReplyTo,
    id: Value,
    /// Only the plan is wanted: nothing must change.
    pub dry_run: bool,
}

/// A service waiting for its old definition to be down.
#[derive(Debug)]
pub(super) struct Replacement {
    pub(super) idx: usize,
    pub(super) svc: Service,
    /// Whether the new definition is wanted up.
    up: bool,
}

/// The engine's reload state.
#[derive(Debug, Default)]
pub(super) struct Reloads {
    /// The host answers `reload` requests.
    accepting: bool,
    /// Requests not yet taken by the host.
    requests: VecDeque<ReloadRequest>,
    /// Replacements waiting for the old processes to end.
    pub(super) pending: Vec<Replacement>,
}

impl Engine {
    /// Accepts `reload` requests on the control socket; the host takes
    /// them with [`take_reload_request`](Engine::take_reload_request) after
    /// each turn and answers each with
    /// [`answer_reload`](Engine::answer_reload). Without this, `reload` is
    /// answered as not supported.
    pub fn accept_reload(&mut self) {
        self.reload.accepting = true;
    }

    /// The oldest `reload` request not yet taken.
    pub fn take_reload_request(&mut self) -> Option<ReloadRequest> {
        self.reload.requests.pop_front()
    }

    /// Sends `response` (its id replaced by the request's) to the client
    /// of a `reload` request. A client that has gone is skipped.
    pub fn answer_reload(&mut self, req: ReloadRequest, mut response: Response) {
        response.id = req.id;
        self.reply(&req.to, &response);
    }

    /// Whether a shutdown has begun (services added now are not started).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// A `reload` request arrived: queued for the host, or refused.
    pub(super) fn queue_reload(&mut self, to: ReplyTo, id: Value, dry_run: bool) -> Option<Response> {
        if !self.reload.accepting {
            return Some(Response::error(Value::Null, ErrorCode::BadRequest, "this supervisor cannot reload"));
        }
        if self.shutting_down {
            return Some(Response::error(Value::Null, ErrorCode::ShuttingDown, "the supervisor is shutting down"));
        }
        self.reload.requests.push_back(ReloadRequest { to, id, dry_run });
        None
    }

    /// Gives service `svc.name` the definition `svc`:
    ///
    /// - a new name is added, and started if expected running;
    /// - a service whose definition is equal is not touched;
    /// - otherwise the old service is stopped and, once all its processes
    ///   are gone, the new definition takes its place. It is started when
    ///   the old one was wanted up (by its configuration or a command),
    ///   unless `expected` itself changed: then the new `expected` decides.
    ///
    /// Returns whether anything changed.
    ///
    /// # Errors
    ///
    /// [`EngineError::Invalid`] as for
    /// [`add_service`](Engine::add_service) (the running service is then
    /// left as it is); when a new service cannot be set up (its transcript).
    pub fn replace_service(&mut self, svc: Service) -> Result<bool, EngineError> {
        self.nudge();
        self.check_service(&svc)?;
        self.check_notify(&svc)?;
        let Some(&idx) = self.by_name.get(&svc.name) else {
            self.add_wanted(svc, None)?;
            return Ok(true);
        };
        if let Some(p) = self.reload.pending.iter_mut().find(|p| p.idx == idx) {
            if p.svc.expected != svc.expected {
                p.up = svc.expected == Expected::Running;
            }
            p.svc = svc;
            return Ok(true);
        }
        let slot = &self.slots[idx];
        if slot.retired {
            // Being removed (or removed): this is a new service.
            if slot.is_down() {
                self.add_wanted(svc, None)?;
            } else {
                let up = svc.expected == Expected::Running;
                self.reload.pending.push(Replacement { idx, svc, up });
            }
            return Ok(true);
        }
        if slot.svc == svc {
            return Ok(false);
        }
        let up = if slot.svc.expected == svc.expected { slot.m.want_up() } else { svc.expected == Expected::Running };
        log::info!("{}: its definition changed; replacing it", svc.name);
        self.slots[idx].retired = true;
        self.state_dirty = true;
        self.wanted_dirty = true;
        self.reload.pending.push(Replacement { idx, svc, up });
        // What requires it stops first, and waits for the new definition.
        if !self.hold_for_dependents(idx, crate::model::ServiceRequest::Stop) {
            self.queue.push_back((idx, Event::Stop));
        }
        self.drain_queue();
        self.advance_deps();
        self.apply_replacements();
        Ok(true)
    }

    /// Stops service `name` and removes it once it is down (as
    /// [`retire_service`](Engine::retire_service)), cancelling a pending
    /// replacement of it.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownService`].
    pub fn remove_service(&mut self, name: &str) -> Result<(), EngineError> {
        self.nudge();
        let idx = *self.by_name.get(name).ok_or_else(|| EngineError::UnknownService(name.into()))?;
        self.reload.pending.retain(|p| p.idx != idx);
        self.retire_service(name)
    }

    /// The services waiting for their old processes to end before their
    /// new definition starts.
    pub fn replacing(&self) -> Vec<String> {
        self.reload.pending.iter().map(|p| p.svc.name.clone()).collect()
    }

    /// Puts the new definitions of services whose old processes are gone
    /// in place (called at the end of every turn).
    pub(super) fn apply_replacements(&mut self) {
        if self.reload.pending.is_empty() {
            return;
        }
        if self.shutting_down {
            self.reload.pending.clear();
            return;
        }
        let mut i = 0;
        while i < self.reload.pending.len() {
            let idx = self.reload.pending[i].idx;
            if !self.slots[idx].is_down() {
                if self.slots[idx].m.want_up() && self.slots[idx].stop_held.is_none() {
                    // Started again by a command meanwhile: the new
                    // definition is wanted up, the old one goes.
                    self.reload.pending[i].up = true;
                    self.queue.push_back((idx, Event::Stop));
                    self.drain_queue();
                }
                i += 1;
                continue;
            }
            let Replacement { svc, up, .. } = self.reload.pending.remove(i);
            let name = svc.name.clone();
            match self.add_wanted(svc, Some(up)) {
                Ok(()) => log::info!("{name}: new definition in place"),
                Err(e) => log::error!("{name}: cannot set up its new definition: {e}"),
            }
        }
    }

    /// [`add_service`](Engine::add_service) with the wanted state `up`
    /// (`None`: the service's `expected`), whatever a previous supervisor
    /// saved.
    fn add_wanted(&mut self, svc: Service, up: Option<bool>) -> Result<(), EngineError> {
        let name = svc.name.clone();
        if let Some(up) = up {
            let wanted = if up { Expected::Running } else { Expected::Stopped };
            let saved = SavedService { wanted, pid: None, start_time: None };
            self.saved.get_or_insert_with(Default::default).services.insert(name.clone(), saved);
        } else if let Some(s) = self.saved.as_mut() {
            s.services.remove(&name);
        }
        let result = self.add_service(svc);
        if let Some(s) = self.saved.as_mut() {
            s.services.remove(&name);
        }
        result
    }
}
