//! Control requests: commands from the socket, and the answers that wait
//! until services reach the state asked for.

use serde_json::Value;

use super::handle::ReplyTo;
use super::Engine;
use crate::machine::Behaviour;
use crate::model::parse_signal;
use crate::model::protocol::{Command, ErrorCode, Request, Response, Selection, ServiceResult};
use crate::model::ServiceRequest;
use crate::model::ServiceState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WaitKind {
    Up,
    Down,
}

/// An answer held back until its services settle.
#[derive(Debug)]
pub(super) struct Wait {
    to: ReplyTo,
    id: Value,
    kind: WaitKind,
    slots: Vec<usize>,
}

impl Engine {
    pub(super) fn resolve(&self, sel: &Selection) -> Result<Vec<usize>, Box<Response>> {
        // A removed service (retired, and down) is gone for commands.
        let live = |i: usize| !(self.slots[i].retired && self.slots[i].is_down());
        if sel.all {
            return Ok((0..self.slots.len()).filter(|&i| live(i)).collect());
        }
        if sel.names.is_empty() {
            return Err(Box::new(Response::error(Value::Null, ErrorCode::BadRequest, "name the services, or use all")));
        }
        let mut idxs = Vec::new();
        let mut unknown = Vec::new();
        for n in &sel.names {
            match self.by_name.get(n).copied().filter(|&i| live(i)) {
                Some(i) => idxs.push(i),
                // A group stands for its members, in order.
                None => match self.groups.iter().find(|g| &g.name == n) {
                    Some(g) => {
                        idxs.extend(
                            g.services.iter().filter_map(|m| self.by_name.get(m).copied()).filter(|&i| live(i)),
                        );
                    }
                    None => unknown.push(n.as_str()),
                },
            }
        }
        if !unknown.is_empty() {
            let msg = format!("unknown service(s): {}", unknown.join(", "));
            return Err(Box::new(Response::error(Value::Null, ErrorCode::UnknownService, msg)));
        }
        Ok(idxs)
    }

    /// Whether the selection names a group: its members then start in
    /// order and stop in reverse order.
    fn names_a_group(&self, sel: &Selection) -> bool {
        sel.names.iter().any(|n| !self.by_name.contains_key(n) && self.groups.iter().any(|g| &g.name == n))
    }

    pub(super) fn handle_request(&mut self, to: ReplyTo, req: Request) {
        let id = req.id;
        let reply = |engine: &mut Engine, mut resp: Response| {
            resp.id = id.clone();
            engine.reply(&to, &resp);
        };
        let (sel, request, wait) = match req.command {
            Command::Ping => {
                let st = self.snapshot(std::iter::empty());
                return reply(self, Response::with_status(Value::Null, st));
            }
            Command::Status { names } => {
                let sel = Selection { all: names.is_empty(), names };
                match self.resolve(&sel) {
                    Ok(idxs) => {
                        let st = self.snapshot(idxs.into_iter());
                        return reply(self, Response::with_status(Value::Null, st));
                    }
                    Err(e) => return reply(self, *e),
                }
            }
            Command::Reopen { names } => {
                if let Some(hook) = self.reopen_hook.as_mut() {
                    (hook.0)();
                }
                let sel = Selection { all: names.is_empty(), names };
                match self.resolve(&sel) {
                    Ok(idxs) => {
                        let mut results = Vec::new();
                        for idx in idxs {
                            let name = self.slots[idx].svc.name.clone();
                            let has = self.slots[idx].output.is_some();
                            if has {
                                let _ = self.reopen(Some(&name));
                            }
                            results.push(ServiceResult {
                                name,
                                state: self.slots[idx].m.state(),
                                ok: has || sel.all,
                                message: (!has && !sel.all).then(|| "no transcript".to_string()),
                            });
                        }
                        return reply(self, Response::with_services(Value::Null, results));
                    }
                    Err(e) => return reply(self, *e),
                }
            }
            Command::Reload { dry_run } => {
                if let Some(refused) = self.queue_reload(to.clone(), id.clone(), dry_run) {
                    reply(self, refused);
                }
                return;
            }
            Command::Events { names, since_start } => {
                let ReplyTo::Socket(front, client) = to else {
                    let msg = "events are streamed over the control socket; a Handle subscribes with Handle::subscribe";
                    return reply(self, Response::error(Value::Null, ErrorCode::BadRequest, msg));
                };
                let names = if names.is_empty() {
                    None
                } else {
                    match self.resolve(&Selection::named(names)) {
                        Ok(idxs) => Some(idxs.into_iter().map(|i| self.slots[i].svc.name.clone()).collect()),
                        Err(e) => return reply(self, *e),
                    }
                };
                self.watch((front, client), id, names, since_start);
                return;
            }
            Command::Metrics => return reply(self, Response::with_metrics(Value::Null, self.metrics())),
            Command::Shutdown => {
                if self.finished {
                    // Asked again after the end: the answer is the same.
                    return reply(self, Response::with_services(Value::Null, Vec::new()));
                }
                self.shutdown_waiters.push((to, id));
                self.shutdown();
                return;
            }
            Command::Signal { signal, sel } => {
                let sig = match parse_signal(&signal) {
                    Ok(s) => s,
                    Err(msg) => return reply(self, Response::error(Value::Null, ErrorCode::BadRequest, msg)),
                };
                let idxs = match self.resolve(&sel) {
                    Ok(i) => i,
                    Err(e) => return reply(self, *e),
                };
                let mut results = Vec::new();
                for idx in idxs {
                    let running = self.slots[idx].leader.is_some();
                    if running {
                        self.signal_slot(idx, sig);
                    }
                    results.push(ServiceResult {
                        name: self.slots[idx].svc.name.clone(),
                        state: self.slots[idx].m.state(),
                        ok: running,
                        message: (!running).then(|| "not running".to_string()),
                    });
                }
                return reply(self, Response::with_services(Value::Null, results));
            }
            Command::Start { sel, wait } => (sel, ServiceRequest::Start, wait.then_some(WaitKind::Up)),
            Command::Stop { sel, wait } => (sel, ServiceRequest::Stop, wait.then_some(WaitKind::Down)),
            Command::Restart { sel, wait } => (sel, ServiceRequest::Restart, wait.then_some(WaitKind::Up)),
            Command::Once { sel } => (sel, ServiceRequest::Once, None),
            Command::Pause { sel } => (sel, ServiceRequest::Pause, None),
            Command::Resume { sel } => (sel, ServiceRequest::Resume, None),
        };
        if self.shutting_down && request != ServiceRequest::Stop {
            return reply(
                self,
                Response::error(Value::Null, ErrorCode::ShuttingDown, "the supervisor is shutting down"),
            );
        }
        let idxs = match self.resolve(&sel) {
            Ok(i) => i,
            Err(e) => return reply(self, *e),
        };
        use ServiceRequest as R;
        let ordered = self.names_a_group(&sel) && matches!(request, R::Start | R::Stop | R::Restart);
        for &idx in &idxs {
            if !ordered {
                // As for any request: through the dependency graph.
                self.apply_request(idx, request);
                continue;
            }
            self.release_holds(idx);
            // Held, then released in the group's order.
            let slot = &mut self.slots[idx];
            slot.held_stop = matches!(request, R::Stop | R::Restart);
            slot.held_start = matches!(request, R::Start | R::Restart);
        }
        if ordered {
            self.advance_groups();
        }
        self.drain_queue();
        if let Some(kind) = wait {
            self.waits.push(Wait { to, id, kind, slots: idxs });
        } else {
            let results = idxs
                .iter()
                .map(|&i| ServiceResult {
                    name: self.slots[i].svc.name.clone(),
                    state: self.slots[i].m.state(),
                    ok: true,
                    message: None,
                })
                .collect();
            reply(self, Response::with_services(Value::Null, results));
        }
    }

    /// Answers the waits whose services have all settled.
    pub(super) fn settle_waits(&mut self) {
        let mut i = 0;
        while i < self.waits.len() {
            let w = &self.waits[i];
            let outcome: Option<Vec<ServiceResult>> = w.slots.iter().map(|&idx| self.settled(idx, w.kind)).collect();
            match outcome {
                Some(results) => {
                    let w = self.waits.swap_remove(i);
                    self.reply(&w.to, &Response::with_services(w.id, results));
                }
                None => i += 1,
            }
        }
    }

    pub(super) fn settled(&self, idx: usize, kind: WaitKind) -> Option<ServiceResult> {
        let s = &self.slots[idx];
        if s.held_start || s.held_stop || s.stop_held.is_some() {
            // Its turn in its group, or after its dependents, has not come.
            return None;
        }
        let state = s.m.state();
        if s.waiting && kind == WaitKind::Up {
            // Settled only when what it waits for will not come by itself.
            if !self.dependency_failed(idx) {
                return None;
            }
            let message = Some(format!("waiting for {}", self.waiting_for_states(idx).join(", ")));
            return Some(ServiceResult { name: s.svc.name.clone(), state, ok: false, message });
        }
        use ServiceState as S;
        let ok = match (kind, state, &s.m) {
            // An external service: once its pass is over, as it ended.
            (_, _, Behaviour::External(m)) if m.busy() || s.leader.is_some() => return None,
            (WaitKind::Up, S::Running, Behaviour::External(_)) => true,
            (WaitKind::Down, S::Stopped, Behaviour::External(_)) => true,
            (_, _, Behaviour::External(_)) => false,
            (WaitKind::Up, S::Running | S::Paused | S::Idle, _) => true,
            (WaitKind::Up, S::Backoff | S::Fatal | S::Exited | S::Stopped, _) => false,
            (WaitKind::Down, S::Stopped | S::Exited | S::Fatal, _) if s.leader.is_none() => true,
            _ => return None,
        };
        let message = (!ok).then(|| match (s.m.error(), s.m.last_exit()) {
            (Some(e), _) => e.to_string(),
            (None, Some(x)) => format!("{state}: {x}"),
            (None, None) => state.to_string(),
        });
        Some(ServiceResult { name: s.svc.name.clone(), state, ok, message })
    }
}
